"""Scores: per-sub-query normalisation, fusion into one relevance curve, and priors from other channels.

- ``Normalizer.fit(per_query)`` / ``.transform(per_query)`` and ``fuse_scores(per_query, weights,
  reference=None) -> (N,)``: robust per-sub-query z-scores (or ranks) fused by a weighted mean blended
  with a soft "any target" maximum. New frames (zoom rounds) must be normalised with the statistics of
  the index frames: pass ``reference`` (or use one fitted ``Normalizer``).
- ``apply_priors(times, scores, priors) -> scores``: adds ``weight`` (fused z units) to frames inside
  each ``(start, end, weight)`` range (scene-caption matches, transcript / on-screen-text hits).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class Normalizer:
    """Per-sub-query robust statistics of the index frames' similarities."""

    center: np.ndarray  # (Q,)
    scale: np.ndarray  # (Q,)
    method: str = "zscore"
    reference: np.ndarray | None = field(default=None, repr=False)  # (Q, M) sorted, for "rank"

    @classmethod
    def fit(cls, per_query: np.ndarray, method: str = "zscore", min_scale: float = 0.01) -> Normalizer:
        """``min_scale`` (cosine units) floors the spread, so near-constant scores stay near zero
        instead of blowing noise up to unit scale."""
        s = np.atleast_2d(np.asarray(per_query, dtype=np.float64))
        if s.shape[1] == 0:
            return cls(np.zeros(s.shape[0]), np.ones(s.shape[0]), method)
        med = np.median(s, axis=1)
        mad = np.median(np.abs(s - med[:, None]), axis=1) * 1.4826
        std = s.std(axis=1)
        scale = np.maximum(np.where(mad > 1e-9, mad, std), max(min_scale, 1e-9))
        ref = np.sort(s, axis=1) if method == "rank" else None
        if method not in ("zscore", "rank"):
            raise ValueError(f"unknown normalisation {method!r} (zscore or rank)")
        return cls(med, scale, method, ref)

    def transform(self, per_query: np.ndarray) -> np.ndarray:
        s = np.atleast_2d(np.asarray(per_query, dtype=np.float64))
        if self.method == "rank" and self.reference is not None and self.reference.shape[1]:
            m = self.reference.shape[1]
            # rank in the reference distribution, mapped to a normal-like scale (probit-free: logit)
            r = np.stack([np.searchsorted(ref, row, side="right") for ref, row in zip(self.reference, s, strict=True)])
            p = (r + 0.5) / (m + 1.0)
            return np.log(p / (1.0 - p))
        return (s - self.center[:, None]) / self.scale[:, None]


def fuse_scores(per_query: np.ndarray, weights: np.ndarray | Sequence[float], *,
                reference: np.ndarray | None = None, method: str = "zscore", any_weight: float = 0.5,
                any_temperature: float = 0.5) -> np.ndarray:
    """(Q, N) cosine sims -> (N,) relevance in z units.

    Each sub-query is normalised across frames (statistics from ``reference``, default ``per_query``);
    the fused score is ``(1 - any_weight) * weighted mean + any_weight * soft max``, the soft max being a
    weighted log-sum-exp at ``any_temperature`` so that one strongly matched target counts.
    """
    norm = Normalizer.fit(per_query if reference is None else reference, method)
    return _fuse(norm.transform(per_query), weights, any_weight, any_temperature)


def _fuse(z: np.ndarray, weights, any_weight: float, any_temperature: float) -> np.ndarray:
    w = np.asarray(weights, dtype=np.float64).reshape(-1)
    if z.shape[0] != w.shape[0]:
        raise ValueError(f"{z.shape[0]} sub-query score rows but {w.shape[0]} weights")
    w = np.maximum(w, 0.0)
    if w.sum() <= 0:
        w = np.ones_like(w)
    w = w / w.sum()
    mean = w @ z
    if z.shape[0] == 1 or any_weight <= 0:
        return mean
    t = max(any_temperature, 1e-3)
    # soft max over sub-queries; weights enter as log-priors so low-weight queries count less
    a = z / t + np.log(np.maximum(w, 1e-12))[:, None]
    mx = a.max(axis=0)
    smax = t * (mx + np.log(np.exp(a - mx).sum(axis=0)))
    return (1.0 - any_weight) * mean + any_weight * smax


def apply_priors(times: np.ndarray, scores: np.ndarray, priors: Sequence[tuple[float, float, float]]
                 ) -> np.ndarray:
    """Add each prior's weight to the scores of frames with start <= t <= end (a new array)."""
    t = np.asarray(times, dtype=np.float64)
    out = np.asarray(scores, dtype=np.float64).copy()
    for start, end, weight in priors:
        out[(t >= start) & (t <= end)] += weight
    return out

