"""Per-method summary of a results file, and the table `vqa eval` prints (one column per method)."""

from __future__ import annotations

import math
import os
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from pipelines.eval.items import DEFAULT_DELTA_S
from pipelines.eval.metrics import accuracy, accuracy_by, temporal_metrics
from pipelines.eval.results import latest_results, read_results


@dataclass(frozen=True)
class MethodSummary:
    method: str
    items: int  # distinct ids with a result line
    errors: int  # whose latest line is an error
    answered: int  # with a non-empty answer
    graded: int  # answered and with a gold answer
    correct: int
    accuracy: float | None
    by_task_type: dict[str, tuple[int, int]] = field(default_factory=dict)  # {task: (correct, graded)}
    by_duration_class: dict[str, tuple[int, int]] = field(default_factory=dict)
    with_evidence: int = 0
    precision: float | None = None  # means over items with evidence, at the summary's delta
    recall: float | None = None
    f1: float | None = None
    hit_rate: float | None = None
    frames_scored: float | None = None  # mean
    search_ms: float | None = None  # mean of timings["search_ms"]
    # the speech channel the items had: {"benchmark": n, "none": n, "transcript": n} (runner's "subtitles")
    subtitles: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class EvalSummary:
    methods: tuple[MethodSummary, ...]
    delta: float

    def method(self, name: str) -> MethodSummary:
        for m in self.methods:
            if m.method == name:
                return m
        raise KeyError(name)

    def as_dict(self) -> dict:
        return asdict(self)


def _mean(values: Iterable[Any]) -> float | None:
    vals = [float(v) for v in values if isinstance(v, (int, float)) and not isinstance(v, bool)
            and math.isfinite(float(v))]
    return sum(vals) / len(vals) if vals else None


def summarize_records(records: Iterable[Mapping], *, methods: Sequence[str] = (),
                      delta: float = DEFAULT_DELTA_S) -> EvalSummary:
    """Per-method summary of result lines (the latest line per (id, method) counts)."""
    latest = latest_results(records)
    order = list(dict.fromkeys([*methods, *(m for _, m in latest)]))
    out = []
    for method in order:
        lines = [r for (_, m), r in latest.items() if m == method]
        ok = [r for r in lines if not r.get("error")]
        answered = [r for r in ok if r.get("answer") not in (None, "")]
        graded = [r for r in ok if r.get("correct") is not None]
        with_ev = [r for r in ok if r.get("evidence")]
        metrics = [temporal_metrics([k["t"] for k in r.get("keyframes") or []],
                                    [tuple(iv) for iv in r["evidence"]], delta) for r in with_ev]
        out.append(MethodSummary(
            method=method, items=len(lines), errors=len(lines) - len(ok), answered=len(answered),
            graded=len(graded), correct=sum(bool(r["correct"]) for r in graded), accuracy=accuracy(ok),
            by_task_type=accuracy_by(ok, "task_type"), by_duration_class=accuracy_by(ok, "duration_class"),
            with_evidence=len(with_ev),
            precision=_mean(m["precision"] for m in metrics), recall=_mean(m["recall"] for m in metrics),
            f1=_mean(m["f1"] for m in metrics), hit_rate=_mean(float(m["hit"]) for m in metrics),
            frames_scored=_mean(r.get("frames_scored") for r in ok),
            search_ms=_mean((r.get("timings") or {}).get("search_ms") for r in ok),
            subtitles=dict(sorted(Counter(str(r["subtitles"]) for r in ok if r.get("subtitles")).items()))))
    return EvalSummary(methods=tuple(out), delta=float(delta))


def summarize(path: str | os.PathLike, *, methods: Sequence[str] = (), delta: float = DEFAULT_DELTA_S) -> EvalSummary:
    """Summary of a whole results file, so a resumed run reports what an uninterrupted one would."""
    return summarize_records(read_results(path), methods=methods, delta=delta)


def _pct(c: int, n: int) -> str:
    return f"{100.0 * c / n:.1f}% ({c}/{n})" if n else "-"


def _num(v: float | None, fmt: str) -> str:
    return "-" if v is None else format(v, fmt)


def format_table(summary: EvalSummary) -> str:
    """One table, one column per method (e.g. uniform | topk | vqa), one row per measure."""
    ms = summary.methods
    d = f"{summary.delta:g}s"
    rows: list[tuple[str, list[str]]] = [
        ("items", [str(m.items) for m in ms]),
        ("errors", [str(m.errors) for m in ms]),
        ("answered", [str(m.answered) for m in ms]),
        ("accuracy", [_pct(m.correct, m.graded) for m in ms]),
    ]
    for key, label in (("by_task_type", "task"), ("by_duration_class", "duration")):
        groups = sorted({g for m in ms for g in getattr(m, key)})
        for g in groups:
            rows.append((f"  {label}: {g}", [_pct(*getattr(m, key).get(g, (0, 0))) for m in ms]))
    rows += [
        ("with evidence", [str(m.with_evidence) for m in ms]),
        (f"precision@{d}", [_num(m.precision, ".3f") for m in ms]),
        (f"recall@{d}", [_num(m.recall, ".3f") for m in ms]),
        (f"F1@{d}", [_num(m.f1, ".3f") for m in ms]),
        ("hit rate", ["-" if m.hit_rate is None else f"{100 * m.hit_rate:.1f}%" for m in ms]),
        ("frames scored (mean)", [_num(m.frames_scored, ".1f") for m in ms]),
        ("search ms (mean)", [_num(m.search_ms, ".1f") for m in ms]),
    ]
    if any(m.subtitles for m in ms):  # with subtitles: the benchmark's; none: no speech text; transcript: vqa's own
        rows.append(("subtitles", [", ".join(f"{k} {n}" for k, n in m.subtitles.items()) or "-" for m in ms]))
    header = ["", *(m.method for m in ms)]
    widths = [max(len(header[0]), *(len(r[0]) for r in rows))]
    for j in range(len(ms)):
        widths.append(max(len(header[j + 1]), *(len(r[1][j]) for r in rows)))

    def fmt(cells: Sequence[str]) -> str:
        first = cells[0].ljust(widths[0])
        rest = [c.rjust(w) for c, w in zip(cells[1:], widths[1:], strict=True)]
        return "  ".join([first, *rest]).rstrip()

    lines = [fmt(header), fmt(["-" * w for w in widths])]
    lines += [fmt([label, *cells]) for label, cells in rows]
    return "\n".join(lines)
