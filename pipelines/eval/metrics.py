"""Measures of a results file: keyframes against evidence (temporal precision / recall / F1 / hit),
and answers against gold (multiple choice through :func:`parse_choice`, open questions by text)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from pipelines.eval.items import DEFAULT_DELTA_S, norm_text, parse_choice


def _distance(t: float, interval: tuple[float, float]) -> float:
    s, e = interval
    return max(s - t, 0.0, t - e)


def temporal_metrics(keyframe_times: Sequence[float], evidence: Sequence[tuple[float, float]],
                     delta: float = DEFAULT_DELTA_S) -> dict:
    """Keyframes (seconds) against evidence intervals (seconds).

    precision: share of keyframes within ``delta`` s of some interval; recall: share of intervals with a
    keyframe within ``delta`` s; f1 of the two; hit: some keyframe inside an interval (ends included, no
    tolerance). All None when there is no evidence; 0 when there are no keyframes.
    """
    ev = [(float(s), float(e)) for s, e in evidence]
    times = [float(t) for t in keyframe_times]
    out = {"precision": None, "recall": None, "f1": None, "hit": None, "delta": float(delta),
           "keyframes": len(times), "evidence": len(ev)}
    if not ev:
        return out
    if not times:
        return {**out, "precision": 0.0, "recall": 0.0, "f1": 0.0, "hit": False}
    near = [min(_distance(t, iv) for iv in ev) <= delta for t in times]
    covered = [min(_distance(t, iv) for t in times) <= delta for iv in ev]
    p = sum(near) / len(times)
    r = sum(covered) / len(ev)
    f1 = 2 * p * r / (p + r) if p + r > 0 else 0.0
    hit = any(s <= t <= e for t in times for s, e in ev)
    return {**out, "precision": p, "recall": r, "f1": f1, "hit": hit}


def is_correct(answer: Any, gold: str | None, options: Sequence[str]) -> bool | None:
    """Multiple choice: the reply picks the gold letter (see :func:`parse_choice`). Open questions:
    the same text up to case, spacing and a final period. None when either side is missing."""
    if answer is None or gold is None:
        return None
    if options:
        return parse_choice(answer, options) == gold
    return norm_text(answer) == norm_text(gold)


def accuracy_by(records: Iterable[Mapping], key: str) -> dict[str, tuple[int, int]]:
    """``{group: (correct, graded)}`` over result lines with a verdict, grouped by ``record[key]``
    (lines without that key count under ``"unknown"``)."""
    out: dict[str, list[int]] = {}
    for r in records:
        if r.get("error") or r.get("correct") is None:
            continue
        group = str(r.get(key) or "unknown")
        c = out.setdefault(group, [0, 0])
        c[0] += bool(r["correct"])
        c[1] += 1
    return {k: (v[0], v[1]) for k, v in sorted(out.items())}


def accuracy(records: Iterable[Mapping]) -> float | None:
    """Share of graded result lines that are correct; None when none is graded."""
    graded = [bool(r["correct"]) for r in records if not r.get("error") and r.get("correct") is not None]
    return sum(graded) / len(graded) if graded else None
