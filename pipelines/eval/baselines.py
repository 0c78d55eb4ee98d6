"""The baselines' frame choice: K evenly spaced times, and plain top-K over scores."""

from __future__ import annotations

import math
from collections.abc import Sequence


def uniform_times(duration: float, k: int) -> list[float]:
    """K evenly spaced times (seconds): the centres of K equal segments of ``[0, duration]``."""
    if not (isinstance(duration, (int, float)) and math.isfinite(duration) and duration > 0):
        raise ValueError(f"duration must be a positive number of seconds, got {duration!r}")
    if k < 0:
        raise ValueError("k must be >= 0")
    return [(i + 0.5) * duration / k for i in range(k)]


def topk_indices(scores: Sequence[float], k: int) -> list[int]:
    """Indexes of the K highest scores (ties: the earlier frame), returned in time order. NaN ranks last."""
    if k < 0:
        raise ValueError("k must be >= 0")

    def rank(i: int) -> tuple[int, float, int]:
        s = float(scores[i])
        return (1, 0.0, i) if math.isnan(s) else (0, -s, i)

    return sorted(sorted(range(len(scores)), key=rank)[:k])
