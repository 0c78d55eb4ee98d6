"""Selection over a fused relevance curve: distinct peaks, zoom ranges, keyframes, pixel budgets.

- ``zoom_ranges(times, scores, *, n_ranges, interval, ...) -> [(start, end)]``: where to decode densely.
- ``select_keyframes(times, scores, k, *, min_gap, seed, scenes=(), ...) -> indices`` (time order): one
  keyframe per distinct relevant peak (per shot first, with ``scenes``), then coverage by
  inverse-transform sampling of a relevance density.
- ``frame_budgets(scores_of_selected, total_pixels, min_pixels, max_pixels) -> [int]`` (QuoTA).
Scores are in fused z units (``tolerance``, ``min_peak`` too).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np


def _peaks(t: np.ndarray, s: np.ndarray, n: int, *, tolerance: float, min_gap: float,
           min_score: float = -np.inf, taken: Sequence[int] = (), groups: np.ndarray | None = None,
           beside: Sequence[int] = ()) -> list[int]:
    """Greedy distinct peaks of a time-sorted curve, best first.

    A frame is suppressed by a chosen peak p when it lies within ``min_gap`` seconds of p, or when every
    frame between p and it scores at least its own score minus ``tolerance`` (no dip: same hump), or,
    with ``groups`` (scene ids, -1: none), when it is in p's scene; with groups neither a hump nor the
    gap reaches across a cut (another shot is other evidence, however its scores join p's and however
    near it is: a needle shot a quarter second after a look-alike's last frame). ``taken`` frames
    suppress as if chosen before, and are not returned; ``beside`` frames (context shown around a peak,
    not peaks of their own) only suppress the frames within ``min_gap`` of them in their shot: a context
    frame in the shot next to the peak leaves that shot's own best frame free to be its peak.
    """
    n_frames = len(s)
    suppressed = np.zeros(n_frames, dtype=bool)
    ungrouped = None if groups is None else np.asarray(groups) < 0

    def suppress(i: int) -> None:
        near = np.abs(t - t[i]) < min_gap
        suppressed[near if ungrouped is None or groups[i] < 0 else near & ungrouped] = True
        suppressed[i] = True
        if groups is not None and groups[i] >= 0:
            suppressed[groups == groups[i]] = True
        hump = np.zeros(n_frames, dtype=bool)
        if i + 1 < n_frames:  # right side: running min of the frames strictly between i and j
            right = s[i + 1:]
            between = np.minimum(np.concatenate(([np.inf], np.minimum.accumulate(right)[:-1])), s[i])
            hump[i + 1:] = between >= right - tolerance
        if i > 0:
            left = s[:i][::-1]
            between = np.minimum(np.concatenate(([np.inf], np.minimum.accumulate(left)[:-1])), s[i])
            hump[:i] = (between >= left - tolerance)[::-1]
        suppressed[hump if ungrouped is None or groups[i] < 0 else hump & ungrouped] = True

    for i in taken:
        suppress(int(i))
    for i in beside:
        near = np.abs(t - t[i]) < min_gap
        suppressed[near if groups is None or groups[i] < 0 else near & (groups == groups[i])] = True
        suppressed[i] = True
    picks: list[int] = []
    order = np.argsort(-s, kind="stable")  # ties: the earlier frame first
    while len(picks) < n:
        order = order[~suppressed[order]]
        if not len(order) or s[order[0]] < min_score:
            break
        picks.append(int(order[0]))
        suppress(int(order[0]))
    return picks


def scene_ids(times: np.ndarray, scenes: Sequence[tuple[float, float]]) -> np.ndarray:
    """Index of the scene ``[start, end)`` holding each time, -1 outside every scene."""
    t = np.asarray(times, dtype=np.float64)
    out = np.full(t.shape, -1, dtype=np.int64)
    if not len(scenes):
        return out
    sc = np.asarray(sorted(scenes), dtype=np.float64).reshape(-1, 2)
    j = np.searchsorted(sc[:, 0], t, side="right") - 1
    ok = (j >= 0) & (t < sc[np.maximum(j, 0), 1])
    out[ok] = j[ok]
    return out


def first_frames(times: np.ndarray, scenes: Sequence[tuple[float, float]]) -> list[int]:
    """Index (into ``times``) of the first frame of each scene that holds one, in scene order: where a
    shot too short for the segmenter, merged into the next one, shows on the index's grid."""
    t = np.asarray(times, dtype=np.float64)
    ids = scene_ids(t, scenes)
    out: dict[int, int] = {}
    for i in np.argsort(t, kind="stable"):
        if ids[i] >= 0 and int(ids[i]) not in out:
            out[int(ids[i])] = int(i)
    return [out[k] for k in sorted(out)]


def sampling_interval(times: np.ndarray) -> float:
    """Median spacing of the (index) frame times, 1.0 when it cannot be told."""
    t = np.unique(np.asarray(times, dtype=np.float64))
    if len(t) < 2:
        return 1.0
    return float(np.median(np.diff(t)))


def zoom_ranges(times: np.ndarray, scores: np.ndarray, *, n_ranges: int, interval: float,
                radius: float = 1.0, tolerance: float = 1.0, min_score: float = -np.inf,
                priors: Sequence[tuple[float, float, float]] = (),
                explored: Sequence[tuple[float, float]] = (), bounds: tuple[float, float] | None = None
                ) -> list[tuple[float, float]]:
    """Time ranges to densify: ``radius * interval`` seconds around each of the ``n_ranges`` best distinct
    peaks (peaks inside ``explored`` ranges skipped), plus each prior's range (padded to at least one
    interval), merged, non-overlapping, sorted, clipped to ``bounds`` (default: the frames' span)."""
    t = np.asarray(times, dtype=np.float64)
    s = np.asarray(scores, dtype=np.float64)
    order = np.argsort(t, kind="stable")
    t, s = t[order], s[order]
    if bounds is None:
        bounds = (float(t[0]) if len(t) else 0.0, float(t[-1]) if len(t) else 0.0)
    lo_b, hi_b = bounds
    half = radius * interval
    taken = []  # the best frame of each explored range stands for a peak already zoomed into
    for a, b in explored:
        inside = np.flatnonzero((t >= a) & (t <= b))
        if len(inside):
            taken.append(int(inside[np.argmax(s[inside])]))
    out: list[tuple[float, float]] = []
    if n_ranges > 0 and len(t):
        for i in _peaks(t, s, n_ranges, tolerance=tolerance, min_gap=2 * half, min_score=min_score,
                        taken=taken):
            out.append((t[i] - half, t[i] + half))
    for start, end, _w in sorted(priors, key=lambda p: -p[2]):
        if any(a <= start and end <= b for a, b in explored):
            continue
        pad = max(0.0, (interval - (end - start)) / 2.0)
        out.append((start - pad, end + pad))
    return merge_ranges([(max(a, lo_b), min(b, hi_b)) for a, b in out if min(b, hi_b) > max(a, lo_b)])


def merge_ranges(ranges: list[tuple[float, float]]) -> list[tuple[float, float]]:
    merged: list[list[float]] = []
    for a, b in sorted(ranges):
        if merged and a <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], b)
        else:
            merged.append([a, b])
    return [(float(a), float(b)) for a, b in merged]


def select_keyframes(times: np.ndarray, scores: np.ndarray, k: int, *, min_gap: float, seed: int = 0,
                     tolerance: float = 1.0, min_peak: float = 0.5, temperature: float = 1.0,
                     concentration: float = 0.5, jitter: float = 0.5, max_peaks: int | None = None,
                     scenes: Sequence[tuple[float, float]] = (), peak_margin: float | None = None,
                     rival_band: float | None = None,
                     context_spacing: float = 0.5) -> np.ndarray:
    """Indices (into ``times``) of up to ``k`` keyframes, in time order.

    1. Peaks: distinct humps of the relevance curve (see ``_peaks``) scoring at least ``min_peak``, best
       first, at most ``max_peaks`` (default ``k``). 2. Coverage: the remaining slots by inverse-transform
       sampling (BOLT) of a density mixing uniform time (weight ``1 - concentration``) with
       ``exp(score / temperature)``, at evenly spaced quantiles whose common phase is jittered by ``seed``;
       every pick at least ``min_gap`` seconds from the others. Peaky curves get frames concentrated
       around their peaks, flat curves an even spread. Deterministic for a given seed.
    With ``scenes`` ((start, end) pairs, e.g. the index's shots), peaks go one per scene first, and a
    coverage pick prefers a scene not yet shown within its quantile cell.
    With ``peak_margin`` (a share of the best peak's height over the median), the evidence decides first:
    the best peak's confidence is its lead over the runner-up distinct peak in those units (see
    ``peak_confidence``), and that share of the other ``k - 1`` slots, less one per rival peak within
    the margin, goes to frames around it (before, at and after; the nearest in time, at least
    ``context_spacing`` s apart); only the rest go to further peaks and coverage.
    """
    t_in = np.asarray(times, dtype=np.float64)
    s_in = np.asarray(scores, dtype=np.float64)
    if t_in.shape != s_in.shape:
        raise ValueError("times and scores differ in shape")
    n = len(t_in)
    if k <= 0 or n == 0:
        return np.zeros(0, dtype=np.int64)
    order = np.argsort(t_in, kind="stable")
    t, s = t_in[order], s_in[order]
    s = np.where(np.isfinite(s), s, -1e9)
    groups = scene_ids(t, scenes) if len(scenes) else None
    n_peaks = k if max_peaks is None else min(k, max_peaks)
    focus: list[int] = []
    if peak_margin:
        conf, best, rivals = peak_confidence(t, s, tolerance=tolerance, min_gap=min_gap, min_peak=min_peak,
                                             margin=peak_margin, groups=groups, limit=k - 1, band=rival_band)
        n_focus = min(int(math.floor(conf * (k - 1) + 0.5)), k - 1 - rivals)
        if best is not None and n_focus > 0:
            focus = [best, *_context(t, best, n_focus, context_spacing, s=s, groups=groups, tolerance=tolerance)]
            n_peaks = max(n_peaks - len(focus), 0)
    picks = focus + _peaks(t, s, n_peaks, tolerance=tolerance, min_gap=min_gap, min_score=min_peak,
                           groups=groups, taken=focus[:1], beside=focus[1:])
    if groups is not None and len(picks) < n_peaks + len(focus):  # then further peaks inside shown scenes
        picks += _peaks(t, s, n_peaks + len(focus) - len(picks), tolerance=tolerance, min_gap=min_gap,
                        min_score=min_peak, taken=picks)
    if len(picks) < k:
        picks += _coverage(t, s, k - len(picks), picks, min_gap=min_gap, seed=seed,
                           temperature=temperature, concentration=concentration, jitter=jitter,
                           groups=groups)
    if not picks:
        return np.zeros(0, dtype=np.int64)
    return order[np.sort(np.asarray(picks, dtype=np.int64))]  # sorted positions = time order


def peak_confidence(t: np.ndarray, s: np.ndarray, *, tolerance: float, min_gap: float, min_peak: float,
                    margin: float, groups: np.ndarray | None = None, limit: int = 8,
                    band: float | None = None) -> tuple[float, int | None, int]:
    """How sure the curve is of its best moment: (confidence in [0, 1], index of the best peak, rivals).

    The best distinct peak's lead over the runner-up (in another hump, and another scene with
    ``groups``), relative to its height over the curve's median, over ``margin`` (capped at 1; 1 with no
    runner-up). Rivals: the other distinct peaks (at most ``limit``) within twice ``margin`` of that
    height below it, each of which may still be the answer. (0, None, 0) when the best is below ``min_peak``."""
    top = _peaks(t, s, limit + 1, tolerance=tolerance, min_gap=min_gap, groups=groups)
    if not top or s[top[0]] < min_peak:
        return 0.0, None, 0
    height = max(float(s[top[0]] - np.median(s)), 1e-9)
    if len(top) < 2:
        return 1.0, top[0], 0
    lead = float(s[top[0]] - s[top[1]]) / height
    band = 2.0 * margin if band is None else band
    rivals = sum(1 for i in top[1:] if s[top[0]] - s[i] < band * height)
    return float(min(max(lead / max(margin, 1e-9), 0.0), 1.0)), top[0], rivals


def _context(t: np.ndarray, i: int, m: int, spacing: float, *, s: np.ndarray | None = None,
             groups: np.ndarray | None = None, tolerance: float = 1.0) -> list[int]:
    """Up to ``m`` frames nearest in time to frame ``i`` (both sides), each ``spacing`` s from the others.
    With scores ``s`` and shots ``groups``, first the best frame of each other shot within the context's
    span that is on the same hump (no dip deeper than ``tolerance`` below it on the way to ``i``): when a
    hump spans a cut (a look-alike next to the needle), each of its shots is shown, not only the one
    that tops it by a hair."""
    chosen = [i]
    if s is not None and groups is not None and groups[i] >= 0 and m > 0:
        span = max((m / 2.0 + 1.0) * spacing, 1.0)  # and at least a second: what precision counts as near
        near = np.flatnonzero((np.abs(t - t[i]) <= span) & (groups >= 0) & (groups != groups[i]))
        best: dict[int, int] = {}
        for j in near[np.argsort(-s[near], kind="stable")]:
            a, b = sorted((int(j), i))
            if int(groups[j]) not in best and s[a:b + 1].min() >= s[j] - tolerance:
                best[int(groups[j])] = int(j)
        for j in sorted(best.values(), key=lambda j: -s[j])[:m]:
            if all(abs(t[j] - t[c]) >= spacing - 1e-9 for c in chosen):
                chosen.append(j)
    for j in np.argsort(np.abs(t - t[i]), kind="stable"):
        if len(chosen) > m:
            break
        if all(abs(t[j] - t[c]) >= spacing - 1e-9 for c in chosen):
            chosen.append(int(j))
    return chosen[1:]


def _coverage(t: np.ndarray, s: np.ndarray, m: int, taken: list[int], *, min_gap: float, seed: int,
              temperature: float, concentration: float, jitter: float, groups: np.ndarray | None = None
              ) -> list[int]:
    """``m`` frames by inverse-transform sampling at evenly spaced quantiles (one seeded phase) of
    ``(1 - concentration) * uniform-in-time + concentration * relevance`` density; nearest free frame in
    quantile order when the target is within ``min_gap`` of a pick."""
    n = len(t)
    if n == 1:
        return [] if taken else [0]
    # each frame stands for the time up to its neighbours, so dense zoom regions gain no extra mass
    edges = np.concatenate(([t[0]], (t[1:] + t[:-1]) / 2.0, [t[-1]]))
    dt = np.maximum(np.diff(edges), 1e-9)
    logit = np.clip(s, -8.0, 8.0) / max(temperature, 1e-3)
    rel = dt * np.exp(logit - logit.max())
    c = min(max(concentration, 0.0), 1.0)
    dens = (1.0 - c) * dt / dt.sum() + c * rel / rel.sum()
    cdf = np.cumsum(dens) - dens / 2.0  # each frame at the middle of its mass
    cdf /= cdf[-1] + dens[-1] / 2.0
    phase = 0.5 + jitter * (np.random.default_rng(seed).random() - 0.5)
    out: list[int] = []
    ok = np.ones(n, dtype=bool)
    for i in taken:
        ok &= np.abs(t - t[i]) >= min_gap
        ok[i] = False
    shown = {int(groups[i]) for i in taken} if groups is not None else set()
    for u in (np.arange(m) + phase) / m:
        if not ok.any():
            break
        cand = np.flatnonzero(ok)
        if groups is not None:  # prefer a scene not shown yet, within this quantile's cell
            fresh = cand[(np.abs(cdf[cand] - u) <= 0.5 / m) & ~np.isin(groups[cand], list(shown))]
            if len(fresh):
                cand = fresh
        best = int(cand[np.argmin(np.abs(cdf[cand] - u))])
        out.append(best)
        if groups is not None:
            shown.add(int(groups[best]))
        ok &= np.abs(t - t[best]) >= min_gap
        ok[best] = False
    return out


def frame_budgets(scores_of_selected: Sequence[float] | np.ndarray, total_pixels: int, min_pixels: int,
                  max_pixels: int, *, temperature: float = 1.0, multiple: int = 1) -> list[int]:
    """Pixel budget per selected frame, growing with relevance (softmax at ``temperature``), each within
    [min_pixels, max_pixels] (min relaxed when the total cannot give it to all), summing to <= total,
    rounded down to ``multiple``."""
    s = np.asarray(scores_of_selected, dtype=np.float64).reshape(-1)
    n = len(s)
    if n == 0 or total_pixels <= 0:
        return [0] * n
    lo = min(min_pixels, total_pixels // n)
    hi = max(max_pixels, lo)
    s = np.where(np.isfinite(s), s, np.nanmin(s[np.isfinite(s)]) if np.isfinite(s).any() else 0.0)
    w = np.exp((s - s.max()) / max(temperature, 1e-6))
    w /= w.sum()
    budget = np.full(n, float(lo))
    free = np.ones(n, dtype=bool)
    remaining = float(total_pixels) - lo * n
    # water-filling: share the remaining pixels by weight, capping at hi and re-sharing the excess
    for _ in range(n):
        if remaining <= 1e-9 or not free.any():
            break
        share = remaining * w[free] / w[free].sum()
        room = hi - budget[free]
        give = np.minimum(share, room)
        idx = np.flatnonzero(free)
        budget[idx] += give
        remaining -= float(give.sum())
        free[idx[give >= room - 1e-9]] = False
    mult = max(int(multiple), 1)
    out = [int(math.floor(b / mult) * mult) for b in budget]
    return out

