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
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from pipelines.eval.items import DEFAULT_DELTA_S, EvalDataError, EvalItem
from pipelines.eval.results import error_line, jsonable, latest_results, result_line, scan
from pipelines.eval.summary import EvalSummary, summarize

Runner = Callable[[EvalItem, str], Mapping]


def run_eval(items: Sequence[EvalItem], methods: Sequence[str], runner: Runner, out_path: str | os.PathLike, *,
             resume: bool = True, progress: Callable[[int, int, dict], None] | None = None,
             delta: float = DEFAULT_DELTA_S) -> EvalSummary:
    """Run ``runner(item, method)`` for every pair not already finished in ``out_path``; summarise the file.

    The runner returns a dict with ``keyframes`` ([{t, score}], seconds), ``answer`` (None when only
    searching), ``timings`` (ms; ``search_ms`` is summarised), ``settings``, ``frames_scored``, and may
    add ``fps`` and ``duration`` (seconds) of the video it read. Each pair becomes one JSON line,
    flushed and fsynced. An exception from the runner becomes an error line and the run goes on; error
    lines are retried on resume. ``resume=False`` starts the file over.
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
    with out.open("a", encoding="utf-8") as f:
        for item in items:
            for method in methods:
                if (item.id, method) in done:
                    continue
                try:
                    line = result_line(item, method, runner(item, method), delta)
                except Exception as e:  # noqa: BLE001 - a failed item is recorded, never stops the run
                    line = error_line(item, method, e)
                f.write(json.dumps(jsonable(line), ensure_ascii=False, allow_nan=False) + "\n")
                f.flush()
                os.fsync(f.fileno())
                finished += 1
                if progress is not None:
                    progress(finished, total, line)
    return summarize(out, methods=methods, delta=delta)
