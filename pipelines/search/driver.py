"""The coarse-to-fine driver: normalise and fuse, zoom in time (decode densely around the best peaks and
the shots the index never saw), then select K keyframes. Pure over arrays; decoding and scoring of new
frames come from the caller's ``densify``.

    subs = decompose_question(question, options)            # what must be seen -> [SubQuery]
    sims = clip_frame_embs @ clip_text_embs(subs).T          # (N, Q) cosine sims -> pass .T as (Q, N)
    result = keyframe_search(times, sims.T, weights=[s.weight for s in subs], densify=my_densify,
                             params=SearchParams(k=8), priors=priors, scenes=shots,
                             bounds=(0.0, duration))
    result.keyframes      # [Keyframe(t, score, round)] in time order
    result.as_dict()      # JSON-serialisable, with a per-round trace

- ``keyframe_search(times, scores, *, densify=None, params=SearchParams(), priors=(), weights=None,
  bounds=None, scenes=()) -> SearchResult``; ``scenes`` are the index's shots as (start, end): shots
  too short to hold an index frame are probed in the first zoom round (``unseen_scene_ranges``) and
  keyframes go one per shot first.
  ``densify(ranges, fps) -> (new_times, new_scores)`` decodes and scores extra frames in ``ranges`` at
  ``fps``. ``scores`` is one curve ``(N,)`` (densify returns ``(M,)`` on the same scale) or raw
  per-sub-query sims ``(Q, N)`` with ``weights`` (densify returns raw ``(Q, M)``); both are normalised
  with the index frames' statistics (a 1-D curve like cosines: spread floored at 0.01), so new frames
  are comparable.
- ``peak_extent(times, scores, t0, *, tolerance, scenes, pad, bounds) -> (start, end)``: the moment a
  keyframe stands for (its hump of the curve, inside its shot, at most ``MOMENT_SPAN`` s from it, halfway
  to the next frames scored); ``SearchResult.curve_times`` /
  ``curve_scores`` hold every frame scored, for that.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field

import numpy as np

from pipelines import defaults
from pipelines.search.regions import region_candidates, region_lift
from pipelines.search.scores import Normalizer, _fuse, apply_priors
from pipelines.search.select import (
    merge_ranges,
    peak_confidence,
    sampling_interval,
    scene_ids,
    select_keyframes,
    zoom_ranges,
)


@dataclass(frozen=True)
class SearchParams:
    k: int = defaults.K
    zoom_rounds: int = defaults.ZOOM_ROUNDS
    zoom_ranges: int = defaults.ZOOM_RANGES
    zoom_fps: float | None = defaults.ZOOM_FPS  # None: zoom_factor x the index frame rate
    zoom_factor: float = 4.0
    zoom_radius: float = 1.0  # seconds around a peak, in index sampling intervals
    unseen_scenes: int = 16  # round 1 also probes up to this many scenes that hold no index frame
    min_gap: float | None = None  # seconds between keyframes; None: 0.75 x the index interval
    seed: int = defaults.SEED
    tolerance: float = 1.0  # fused-score dip that separates two peaks
    min_peak: float = defaults.MIN_PEAK  # fused score a peak needs to be chosen for relevance (else coverage)
    temperature: float = 1.0  # coverage density exp(score / T)
    concentration: float = 0.5  # coverage: share of the relevance density vs uniform time
    jitter: float = 0.5  # seed-driven phase jitter of the coverage quantiles (0: none)
    method: str = "zscore"  # sub-query normalisation: "zscore" or "rank"
    any_weight: float = 0.5
    any_temperature: float = 0.5
    peak_margin: float | None = defaults.PEAK_MARGIN  # confident peak: keyframes gather around it (None: off)
    rival_band: float | None = defaults.RIVAL_BAND  # a peak this close (share of the height) keeps a frame
    context_spacing: float = defaults.CONTEXT_SPACING  # seconds between the keyframes around it
    region_frames: int = defaults.REGION_FRAMES  # frames whose windows are scored (needs a region scorer)
    region_penalty: float = defaults.REGION_PENALTY  # fused z a window's score gives up against whole frames
    region_calibrate: bool = defaults.REGION_CALIBRATE  # windows brought to their frames' scale first
    region_shots: float = defaults.REGION_SHOTS  # share of region_frames given to the best frame of each shot
    region_zoom: int = defaults.REGION_ZOOM  # new frames per zoom range whose windows are scored
    region_zoom_max: int = defaults.REGION_ZOOM_MAX  # at most this many in a round, best first (0: no cap)
    head_min: float = defaults.HEAD_MIN  # a shot's head before its first index frame probed when longer
    shot_heads: bool = defaults.SHOT_HEADS  # round 1 also probes the head of each shot before its first frame
    region_norm: str = defaults.REGION_NORM  # windows z-scored with the frames' statistics or their own
    moment_band: float | None = defaults.MOMENT_BAND  # `vqa search`: moments this close to the best (None: all)
    region_held: bool = defaults.REGION_HELD  # index frames whose windows the index holds are scored from the start

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Keyframe:
    t: float
    score: float
    round: int  # 0: an index frame; r: found by zoom round r
    region: tuple[float, float, float, float] | None = None  # the window that made it relevant (fractions)

    def as_dict(self) -> dict:
        d = {"t": round(float(self.t), 3), "score": round(float(self.score), 4), "round": int(self.round)}
        if self.region is not None:
            d["region"] = [round(float(x), 3) for x in self.region]
        return d


@dataclass(frozen=True)
class SearchResult:
    keyframes: list[Keyframe]
    trace: list[dict]
    frames_scored: int
    params: SearchParams
    # every frame scored (index and zoom frames), time-sorted, with its fused score: for moment extents
    curve_times: np.ndarray = field(default_factory=lambda: np.zeros(0), repr=False)
    curve_scores: np.ndarray = field(default_factory=lambda: np.zeros(0), repr=False)
    # how sure the curve is of its best moment (``select.peak_confidence``: 0 hedging, 1 one clear peak)
    confidence: float = 0.0

    @property
    def times(self) -> list[float]:
        return [k.t for k in self.keyframes]

    def as_dict(self) -> dict:
        return {"keyframes": [k.as_dict() for k in self.keyframes], "trace": self.trace,
                "frames_scored": int(self.frames_scored), "params": self.params.as_dict()}


Densify = Callable[[list[tuple[float, float]], float], tuple[np.ndarray, np.ndarray]]
# regions(times) -> ((Q, M, R) raw sims of R windows of each frame, (R, 4) windows as fractions); an
# attribute ``held`` (times) may name index frames whose windows cost nothing (embedded ahead by the index)
Regions = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]


def keyframe_search(times: np.ndarray, scores: np.ndarray, *, densify: Densify | None = None,
                    params: SearchParams = SearchParams(),
                    priors: Sequence[tuple[float, float, float]] = (),
                    weights: Sequence[float] | np.ndarray | None = None,
                    bounds: tuple[float, float] | None = None,
                    scenes: Sequence[tuple[float, float]] = (), regions: Regions | None = None) -> SearchResult:
    """Coarse-to-fine keyframe search (T*-style zoom, then peak + coverage selection).

    ``scores``: one curve ``(N,)`` or per-sub-query ``(Q, N)`` sims with ``weights``; either way they
    are normalised with the index frames' robust statistics (``Normalizer``), and the new frames from
    ``densify`` (same shape convention, ``(M,)`` or ``(Q, M)``) with the same statistics. Priors are
    added after normalisation (z units). Each round picks zoom ranges around the best distinct peaks not
    yet explored (round 1 adds the priors' ranges), calls ``densify(ranges, fps)``, merges the new
    frames, and stops early when no range got a better frame.
    ``bounds``: the video's (start, end) for clipping ranges (default: the frames' span).
    ``scenes``: the index's shots as (start, end); round 1 then also probes shots too short to hold an
    index frame and, with ``params.shot_heads``, each shot's head before its first index frame (where a
    shot shorter than the segmenter's minimum hides; best neighbours first, at most
    ``params.unseen_scenes``, and beyond that every such range named by ``densify.held``: ranges whose
    frames the index holds, read instead of decoded), and selection takes peaks one per shot first (see
    ``select_keyframes``).
    ``regions``: the spatial zoom. Before the first zoom round the windows of the best frame of each of
    the best shots (``params.region_shots`` of the budget) and of the best frames
    (``params.region_frames`` in all) are scored, and after each round those of the
    ``params.region_zoom`` best new frames of each shot in each range; with ``params.region_held``, the
    index frames named by ``regions.held`` (windows the index embedded: each shot's first frame, where a
    short shot hides) are scored by their windows from the start too; a frame whose best window beats it takes that
    window's score and remembers the window (``Keyframe.region``, and the trace). With
    ``region_norm="windows"`` the windows are z-scored with their own statistics (those of the first
    windows scored), not the whole frames': crops of a frame score higher than the frame in general, so
    on the frames' scale every frame whose windows were scored would outrank every frame whose were not.
    """
    t = np.asarray(times, dtype=np.float64).reshape(-1)
    raw = np.asarray(scores, dtype=np.float64)
    if raw.ndim == 2:
        if weights is None:
            raise ValueError("per-sub-query scores (Q, N) need weights (Q,)")
    else:  # one fused curve: normalised the same way, so any scale (cosines, z-scores) works
        raw, weights = raw.reshape(1, -1), [1.0]
    norm = Normalizer.fit(raw, params.method)
    fused = _fuse(norm.transform(raw), weights, params.any_weight, params.any_temperature)
    if fused.shape[0] != t.shape[0]:
        raise ValueError(f"{t.shape[0]} times but {fused.shape[0]} scores")
    interval = sampling_interval(t)
    min_gap = params.min_gap if params.min_gap is not None else 0.75 * interval
    zoom_fps = params.zoom_fps if params.zoom_fps else params.zoom_factor / interval
    all_t = t
    all_s = apply_priors(t, fused, priors)
    rounds = np.zeros(len(t), dtype=np.int64)
    frames_scored = len(t)
    trace: list[dict] = [{"round": 0, "ranges": [], "fps": round(1.0 / interval, 4) if interval else None,
                          "frames_scored": int(len(t)),
                          "best_score": _r(all_s.max()) if len(all_s) else None}]
    explored: list[tuple[float, float]] = []
    where = np.full((len(t), 4), np.nan)  # the window that lifted each frame
    all_raw = raw  # every frame's raw per-sub-query sims (windows are calibrated against them)
    done: list[int] = []

    def lift(idx: list[int]) -> dict | None:
        if regions is None or not idx:
            return None
        sims, boxes = regions(all_t[idx])
        sims = np.asarray(sims, dtype=np.float64).reshape(raw.shape[0], len(idx), -1)
        if params.region_norm == "windows" and not wnorm:  # the first windows scored set the scale
            wnorm.append(Normalizer.fit(sims.reshape(raw.shape[0], -1), params.method))
        new, box, info = region_lift(all_t[idx], all_s[idx], sims, np.asarray(boxes), fuse_win,
                                     penalty=params.region_penalty, priors=priors,
                                     whole_raw=all_raw[:, idx] if params.region_calibrate else None)
        all_s[idx] = new
        lifted = ~np.isnan(box[:, 0])
        where[np.asarray(idx)[lifted]] = box[lifted]
        done.extend(idx)
        return info

    def fuse_win(per_query: np.ndarray) -> np.ndarray:
        n = wnorm[0] if wnorm else norm
        return _fuse(n.transform(per_query), weights, params.any_weight, params.any_temperature)

    if params.region_norm not in ("frames", "windows"):
        raise ValueError(f"unknown region_norm {params.region_norm!r} (frames or windows)")
    wnorm: list[Normalizer] = []  # "windows": the statistics of the first windows scored

    if regions is not None and params.region_frames > 0 and len(t):
        cand = region_candidates(all_t, all_s, params.region_frames, scenes=scenes, min_gap=interval,
                                 shot_share=params.region_shots)
        held = getattr(regions, "held", None) if params.region_held else None
        if held is not None and len(held):  # windows the index holds: every question scores them
            keys = {round(float(x), 3) for x in held}
            chosen = set(cand)
            cand += [i for i in range(len(t)) if i not in chosen and round(float(all_t[i]), 3) in keys]
        info = lift(cand)
        if info:
            trace[0]["regions"] = info
            trace[0]["best_score"] = _r(all_s.max())
    if bounds is None and len(t):
        bounds = (float(t.min()), float(t.max()))
    for r in range(1, params.zoom_rounds + 1):
        if densify is None or not len(all_t):
            break
        ranges = zoom_ranges(all_t, all_s, n_ranges=params.zoom_ranges, interval=interval,
                             radius=params.zoom_radius, tolerance=params.tolerance,
                             priors=priors if r == 1 else (), explored=explored, bounds=bounds)
        if r == 1 and len(scenes) and params.unseen_scenes > 0:
            unseen = unseen_scene_ranges(t, all_s[:len(t)], scenes, 1 << 30, min_len=1.0 / zoom_fps,
                                         heads=params.shot_heads, head_min=params.head_min)
            # past the limit, the ranges whose frames the index already holds (``densify.held``) cost
            # nothing to score: all of them
            held = {(round(a, 3), round(b, 3)) for a, b in getattr(densify, "held", ())}
            ranges = merge_ranges(ranges + unseen[:params.unseen_scenes]
                                  + [rg for rg in unseen[params.unseen_scenes:]
                                     if (round(rg[0], 3), round(rg[1], 3)) in held])
        if not ranges:
            break
        new_t, new_raw = densify(ranges, zoom_fps)
        new_t = np.asarray(new_t, dtype=np.float64).reshape(-1)
        new_raw = np.asarray(new_raw, dtype=np.float64)
        new_raw = new_raw.reshape(raw.shape[0], -1)
        new_s = _fuse(norm.transform(new_raw), weights, params.any_weight, params.any_temperature) \
            if new_raw.shape[1] else np.zeros(0)
        if new_s.shape[0] != new_t.shape[0]:
            raise ValueError(f"densify returned {new_t.shape[0]} times but {new_s.shape[0]} scores")
        new_s = apply_priors(new_t, new_s, priors)
        # keep only frames not already present (same time within a millisecond)
        fresh = np.ones(len(new_t), dtype=bool)
        if len(new_t):
            srt = np.sort(all_t)
            pos = np.clip(np.searchsorted(srt, new_t), 1, max(len(srt) - 1, 1))
            near = np.minimum(np.abs(srt[pos - 1] - new_t), np.abs(srt[np.minimum(pos, len(srt) - 1)] - new_t))
            fresh = near > 1e-3
        improved = False
        for a, b in ranges:
            inside_new = fresh & (new_t >= a) & (new_t <= b)
            if not inside_new.any():
                continue
            inside_old = (all_t >= a) & (all_t <= b)
            old_best = all_s[inside_old].max() if inside_old.any() else -np.inf
            if new_s[inside_new].max() > old_best + 1e-6:
                improved = True
        frames_scored += int(len(new_t))
        explored = merge_ranges(explored + ranges)
        all_t = np.concatenate([all_t, new_t[fresh]])
        all_s = np.concatenate([all_s, new_s[fresh]])
        where = np.concatenate([where, np.full((int(fresh.sum()), 4), np.nan)])
        all_raw = np.concatenate([all_raw, new_raw[:, fresh]], axis=1)
        rounds = np.concatenate([rounds, np.full(int(fresh.sum()), r, dtype=np.int64)])
        trace.append({"round": r, "ranges": [[_r(a), _r(b)] for a, b in ranges], "fps": _r(zoom_fps),
                      "frames_scored": int(len(new_t)), "new_frames": int(fresh.sum()),
                      "best_score": _r(new_s.max()) if len(new_s) else None, "improved": improved})
        if regions is not None and params.region_frames > 0:
            n_old = len(all_t) - int(fresh.sum())
            best_new: list[int] = []
            for a, b in ranges:  # the best new frames of each shot in each range (a short shot, where a
                j = np.flatnonzero((all_t[n_old:] >= a) & (all_t[n_old:] <= b))  # needle hides, gets its own)
                j = j[np.argsort(-all_s[n_old + j], kind="stable")]
                shot = scene_ids(all_t[n_old + j], scenes) if len(scenes) else np.zeros(len(j), dtype=np.int64)
                for sid in dict.fromkeys(shot.tolist()):
                    best_new += [n_old + int(x) for x in j[shot == sid][:params.region_zoom]
                                 if n_old + int(x) not in best_new]
            if params.region_zoom_max > 0:  # the budget: the best of them by their whole-frame score
                best_new = sorted(best_new, key=lambda x: -all_s[x])[:params.region_zoom_max]
            info = lift(best_new)
            if info:
                trace[-1]["regions"] = info
                improved = improved or info["lifted"] > 0
        if not improved:
            break
    idx = select_keyframes(all_t, all_s, params.k, min_gap=min_gap, seed=params.seed, scenes=scenes,
                           tolerance=params.tolerance, min_peak=params.min_peak,
                           temperature=params.temperature, concentration=params.concentration,
                           jitter=params.jitter, peak_margin=params.peak_margin, rival_band=params.rival_band,
                           context_spacing=params.context_spacing)
    kfs = [Keyframe(float(all_t[i]), float(all_s[i]), int(rounds[i]),
                    None if np.isnan(where[i, 0]) else tuple(float(x) for x in where[i])) for i in idx]
    order = np.argsort(all_t, kind="stable")
    conf = 0.0
    if params.peak_margin and len(all_t):
        ts, ss = all_t[order], np.where(np.isfinite(all_s[order]), all_s[order], -1e9)
        conf, _, _ = peak_confidence(ts, ss, tolerance=params.tolerance, min_gap=min_gap, min_peak=params.min_peak,
                                     margin=params.peak_margin, limit=params.k - 1, band=params.rival_band,
                                     groups=scene_ids(ts, scenes) if len(scenes) else None)
    return SearchResult(kfs, trace, frames_scored, params, all_t[order], all_s[order], confidence=float(conf))


def peak_extent(times: np.ndarray, scores: np.ndarray, t0: float, *, tolerance: float = 1.0,
                scenes: Sequence[tuple[float, float]] = (), pad: float | None = None,
                bounds: tuple[float, float] | None = None,
                span: float | None = defaults.MOMENT_SPAN) -> tuple[float, float]:
    """The moment around the frame at ``t0``: the run of neighbouring frames scoring at least its score
    minus ``tolerance`` (the hump it tops, as ``_peaks`` sees it), at most ``span`` seconds from it
    (None: no limit), not crossing a boundary of its scene; each end reaches halfway to the next frame
    scored (zoom frames are denser than index frames), or ``pad`` seconds when given; clipped to the
    scene and to ``bounds``. The span keeps a moment tight around its evidence: a keyframe in a long flat
    shot (context beside a needle, coverage) stands for the second around it, not for the whole shot,
    whose middle can be far from anything the keyframe shows."""
    t = np.asarray(times, dtype=np.float64)
    s = np.asarray(scores, dtype=np.float64)
    order = np.argsort(t, kind="stable")
    t, s = t[order], s[order]
    if not len(t):
        return (t0, t0)
    i = int(np.argmin(np.abs(t - t0)))
    groups = scene_ids(t, scenes) if len(scenes) else np.full(len(t), -1)
    floor = s[i] - tolerance
    reach = span if span else np.inf

    def joins(j: int) -> bool:
        return bool(s[j] >= floor and groups[j] == groups[i] and abs(t[j] - t[i]) <= reach)

    lo = i
    while lo > 0 and joins(lo - 1):
        lo -= 1
    hi = i
    while hi + 1 < len(t) and joins(hi + 1):
        hi += 1
    if pad is None:  # halfway to the neighbouring frames (the run's own spacing at the video's ends)
        gap = np.diff(t)
        own = float(np.median(gap[lo:hi])) if hi > lo else (float(np.median(gap)) if len(gap) else 1.0)
        start = t[lo] - (t[lo] - t[lo - 1] if lo > 0 else own) / 2.0
        end = t[hi] + (t[hi + 1] - t[hi] if hi + 1 < len(t) else own) / 2.0
    else:
        start, end = t[lo] - pad, t[hi] + pad
    if groups[i] >= 0:
        a, b = sorted(scenes)[int(groups[i])]
        start, end = max(start, a), min(end, b)
    if bounds is not None:
        start, end = max(start, bounds[0]), min(end, bounds[1])
    return (float(start), float(max(end, start)))


def visual_moments(res: SearchResult, scenes: Sequence[tuple[float, float]], duration: float,
                   band: float | None = None) -> list[tuple[float, float, Keyframe]]:
    """What `vqa search` shows for the frames: each keyframe's moment (``peak_extent``: its hump inside its
    shot), best first, one per stretch of time (a keyframe whose moment overlaps a better one's adds
    nothing; one within ``MOMENT_SPAN`` of a better one in the same shot widens it). Keyframes are chosen
    for an answerer, so they include context and coverage frames; a search result is a match: with
    ``band`` (default ``res.params.moment_band``) only the moments whose score reaches that share of the
    best one's height over the curve's median are results (the best always is).
    A confident peak is then one moment, not one among coverage picks; a flat curve keeps its peers.
    The more confident the search (``res.confidence``), the nearer the band comes to the rivals that kept
    a keyframe beside a confident peak (within ``rival_band`` of its height): a clear best moment is
    shown with the moments that may still be the answer, not with every peak the band would admit."""
    band = res.params.moment_band if band is None else band
    curve = np.asarray(res.curve_scores, dtype=np.float64)
    curve = curve[np.isfinite(curve)]
    keys = sorted(res.keyframes, key=lambda k: -k.score)
    if band is not None and keys and len(curve):
        median = float(np.median(curve))
        below = 1.0 - band  # how far below the best a moment may score, as a share of its height
        if res.params.rival_band is not None and res.params.rival_band < below:
            below -= (below - res.params.rival_band) * min(max(res.confidence, 0.0), 1.0)
        floor = keys[0].score - below * (keys[0].score - median)
        keys = [k for k in keys if k.score >= floor or k is keys[0]]
    out: list[tuple[float, float, Keyframe]] = []
    ids = scene_ids(np.asarray([k.t for k in keys]), scenes).tolist() if len(scenes) else [-1] * len(keys)
    shot = dict(zip(keys, ids))  # each keyframe's shot, looked up once
    for k in keys:
        a, b = peak_extent(res.curve_times, res.curve_scores, k.t, tolerance=res.params.tolerance,
                           scenes=scenes, bounds=(0.0, duration))
        if any(a < e and s < b for s, e, _ in out):
            continue
        # within a second of a better moment of its shot (a dip between two zoom frames split one hump):
        # the same moment, which reaches over it, not another result
        near = [i for i, (s, e, best) in enumerate(out)
                if shot[best] == shot[k] >= 0 and min(abs(a - e), abs(s - b)) <= defaults.MOMENT_SPAN]
        if near:
            s, e, best = out[near[0]]
            out[near[0]] = (min(s, a), max(e, b), best)
            continue
        out.append((a, b, k))
    return out


def unseen_scene_ranges(times: np.ndarray, scores: np.ndarray, scenes: Sequence[tuple[float, float]],
                        limit: int, *, min_len: float = 0.0, heads: bool = False,
                        head_min: float = 0.25) -> list[tuple[float, float]]:
    """Scenes holding no frame of ``times`` (shorter than the sampling interval, or between samples),
    at most ``limit``, those whose neighbouring frames score best first; each widened to ``min_len``.
    ``heads``: also the head of each shot before its first frame when longer than ``head_min`` s (a shot
    shorter than the segmenter's minimum length merges into the next one: its head)."""
    t = np.asarray(times, dtype=np.float64)
    s = np.asarray(scores, dtype=np.float64)
    order = np.argsort(t, kind="stable")
    t, s = t[order], s[order]
    found = []
    for a, b in scenes:
        lo, hi = np.searchsorted(t, a, side="left"), np.searchsorted(t, b, side="left")
        if b <= a:
            continue
        if hi > lo:  # some frame shows the shot; its head, before that frame, may hide a shot too short to cut
            if not heads or t[lo] - a <= head_min:
                continue
            b = float(t[lo])
            hint = max(s[lo - 1] if lo > 0 else -np.inf, s[lo])
        else:
            hint = max(s[lo - 1] if lo > 0 else -np.inf, s[hi] if hi < len(t) else -np.inf)
        pad = max(0.0, (min_len - (b - a)) / 2.0)
        found.append((-hint, a, (max(a - pad, 0.0), b + pad)))
    found.sort(key=lambda x: (x[0], x[1]))
    return [rng for _, _, rng in found[:limit]]


def _r(x: float) -> float:
    return round(float(x), 4)

