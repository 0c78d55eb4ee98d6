"""The resumable loop of `vqa eval`: one runner call per (item, method) not yet finished, one fsynced
result line each, then the summary of the whole file.

    runner = make_runner(store, models, indexer, k=8)   # pipelines.eval.runner
    summary = run_eval(items, ["uniform", "topk", "vqa"], runner, "results.jsonl")
    print(format_table(summary))

Nothing here draws random numbers: the same items and runner give the same results file and summary.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path

from pipelines.eval.items import DEFAULT_DELTA_S, EvalDataError, EvalItem
from pipelines.eval.results import error_line, jsonable, latest_results, result_line, scan
from pipelines.eval.summary import EvalSummary, summarize

Runner = Callable[[EvalItem, str], Mapping]
# What answers the pairs still to run: one runner result (or the exception it raised) per pair, in their
# order, as they finish; the local one calls the runner here, `--engine ray` spreads them over a cluster.
Dispatch = Callable[[Sequence[tuple[EvalItem, str]]], Iterable[Mapping | BaseException]]


class ItemError(Exception):
    """An item's failure raised elsewhere (on a cluster's worker), carried as the text of its error line."""

    def __init__(self, text: str):
        super().__init__(text)
        self.text = text


def local_dispatch(runner: Runner) -> Dispatch:
    """The pairs answered one after the other by ``runner``, in this process."""

    def run(pairs: Sequence[tuple[EvalItem, str]]) -> Iterator[Mapping | BaseException]:
        for item, method in pairs:
            try:
                yield runner(item, method)
            except Exception as e:  # noqa: BLE001 - a failed item is recorded, never stops the run
                yield e

    return run


def run_eval(items: Sequence[EvalItem], methods: Sequence[str], runner: Runner, out_path: str | os.PathLike, *,
             resume: bool = True, progress: Callable[[int, int, dict], None] | None = None,
             delta: float = DEFAULT_DELTA_S, dispatch: Dispatch | None = None) -> EvalSummary:
    """Run ``runner(item, method)`` for every pair not already finished in ``out_path``; summarise the file.

    The runner returns a dict with ``keyframes`` ([{t, score}], seconds), ``answer`` (None when only
    searching), ``timings`` (ms; ``search_ms`` is summarised), ``settings``, ``frames_scored``, and may
    add ``fps`` and ``duration`` (seconds) of the video it read. Each pair becomes one JSON line,
    flushed and fsynced. An exception from the runner becomes an error line and the run goes on; error
    lines are retried on resume. ``resume=False`` starts the file over. ``dispatch`` answers the pairs
    elsewhere (results in their order, as they finish; default: ``runner`` here, one after the other).
    """
    methods = list(methods)
    if not methods or len(set(methods)) != len(methods) or not all(isinstance(m, str) and m for m in methods):
        raise ValueError(f"methods must be distinct non-empty names, got {methods!r}")
    ids = Counter(it.id for it in items)
    dup = [i for i, n in ids.items() if n > 1]
    if dup:
        raise EvalDataError(f"duplicate item ids: {', '.join(dup[:5])}")
    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    done: set[tuple[str, str]] = set()
    if resume and out.exists():
        records, end = scan(out)
        with out.open("r+b") as f:  # drop a partial last line; end the last complete one with "\n"
            f.truncate(end)
            if end:
                f.seek(end - 1)
                if f.read(1) != b"\n":
                    f.write(b"\n")
        done = {key for key, r in latest_results(records).items() if not r.get("error")}
    elif out.exists():
        out.write_bytes(b"")
    total = len(items) * len(methods)
    finished = sum(1 for it in items for m in methods if (it.id, m) in done)
    todo = [(item, method) for item in items for method in methods if (item.id, method) not in done]
    results = (dispatch or local_dispatch(runner))(todo)
    answered = iter(results)
    try:
        with out.open("a", encoding="utf-8") as f:
            for n, res in enumerate(answered):
                item, method = todo[n]
                line = _line(item, method, res, delta)
                f.write(json.dumps(jsonable(line), ensure_ascii=False, allow_nan=False) + "\n")
                f.flush()
                os.fsync(f.fileno())
                finished += 1
                if progress is not None:
                    progress(finished, total, line)
    finally:
        if hasattr(answered, "close"):  # a generator holding a cluster lets it go now, not when collected
            answered.close()
    return summarize(out, methods=methods, delta=delta)


def _line(item: EvalItem, method: str, res: Mapping | BaseException, delta: float) -> dict:
    if isinstance(res, BaseException):
        line = error_line(item, method, res)
        if isinstance(res, ItemError):
            line["error"] = res.text
        return line
    try:
        return result_line(item, method, res, delta)
    except Exception as e:  # noqa: BLE001 - a result that is no result line is that item's error
        return error_line(item, method, e)
