"""A count of model loads per process, so that 'one load per model' can be checked and reported."""

from __future__ import annotations

from collections import Counter

LOADS: Counter[str] = Counter()


def record_load(kind: str, spec: str) -> None:
    """Call once each time a model's weights are actually loaded (not when a cached instance is reused)."""
    LOADS[f"{kind}:{spec}"] += 1
