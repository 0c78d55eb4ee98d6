"""Spatial zoom: score regions of the frames that matter, so that a small target among others scores as
it would alone (a whole-frame embedding averages it with everything else in the frame).

- ``region_boxes(grids=(2,), overlap=0.5, aspect=16/9) -> (R, 4)``: overlapping square windows as
  fractions of the frame (x0, y0, x1, y1); grid ``g`` puts ``g`` windows across the short side.
- ``crop(frame, box) -> array``: the pixels of one window (a view, any frame size).
- ``region_candidates(times, scores, budget, *, scenes, done)``: which frames get their regions scored:
  the best frame of each of the best shots, then the best frames overall, at most ``budget``.
- ``RegionScorer``: ``scorer(frames) -> (Q, M, R)`` cosine sims of each window of each frame with each
  sub-query; ``clip_region_scorer(clip, qvecs, boxes)`` builds one from any CLIP-like embedder
  (``embed_images(list of HxWx3 uint8) -> (n, D)`` normalised); ``frame_regions(clip, qvecs, frames_at)``
  is the ``regions`` callback of ``keyframe_search``, ``stored_frames(store, run_key, decoded)`` the
  ``frames_at`` of an indexed video (zoom frames, else stored thumbnails).
Pure numpy apart from the embedder the caller passes; the driver decides what the scores mean.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np

from pipelines import defaults
from pipelines.search.select import scene_ids

RegionScorer = Callable[[list[np.ndarray]], np.ndarray]


def region_boxes(grids: Sequence[int] = (2,), overlap: float = 0.5, aspect: float = 16 / 9) -> np.ndarray:
    """Square windows (in pixels of a frame of this ``aspect`` = width / height), as fractions.

    Grid ``g``: the window side is the short side / (1 + (g - 1) (1 - overlap)), so ``g`` windows overlapping
    by ``overlap`` span the short side; along the long side as many as it takes at the same stride, spread
    evenly from edge to edge. Grid 1 is the central square."""
    out = []
    w, h = (aspect, 1.0) if aspect >= 1 else (1.0, 1.0 / aspect)
    short = min(w, h)
    for g in grids:
        g = max(int(g), 1)
        side = short / (1.0 + (g - 1) * (1.0 - overlap))
        stride = side * (1.0 - overlap) if g > 1 else side
        nx = 1 if g == 1 else max(1, math.ceil((w - side) / stride - 1e-9) + 1)
        ny = 1 if g == 1 else max(1, math.ceil((h - side) / stride - 1e-9) + 1)
        xs = [(w - side) / 2] if nx == 1 else np.linspace(0.0, w - side, nx)
        ys = [(h - side) / 2] if ny == 1 else np.linspace(0.0, h - side, ny)
        for y in ys:
            for x in xs:
                out.append((x / w, y / h, (x + side) / w, (y + side) / h))
    return np.asarray(out, dtype=np.float64).reshape(-1, 4)


def content_boxes(frame: np.ndarray, n: int = defaults.REGION_PROPOSALS, *, min_area: float = 0.002,
                  margin: float = 0.3, min_side: float = 0.25) -> np.ndarray:
    """Up to ``n`` square windows (fractions, like ``region_boxes``) each around one thing that stands
    out from the frame's background: the background is a median far wider than a small object (on a
    quarter-size copy), the things are the connected areas that differ from it by more than Otsu's
    threshold (at least 32 levels, noise opened away), largest first, each boxed with ``margin`` of its
    size around it and at least ``min_side`` of the short side. A grid window holding a small target and
    a distractor scores them together; a window around the target alone scores it as it would alone."""
    import cv2

    h, w = frame.shape[:2]
    if n <= 0 or h < 8 or w < 8:
        return np.zeros((0, 4), dtype=np.float64)
    rgb = np.ascontiguousarray(frame[..., :3], dtype=np.uint8)
    sw, sh = max(w // 4, 2), max(h // 4, 2)
    small = cv2.resize(rgb, (sw, sh), interpolation=cv2.INTER_AREA)
    k = max(3, (min(sw, sh) // 2) | 1)  # an object up to a quarter of the short side is not background
    bg = cv2.resize(cv2.medianBlur(small, min(k, 255)), (w, h), interpolation=cv2.INTER_LINEAR)
    diff = cv2.absdiff(rgb, bg).max(axis=2)
    diff = cv2.GaussianBlur(diff, (3, 3), 0)
    thr, _ = cv2.threshold(diff, 0, 255, cv2.THRESH_BINARY | cv2.THRESH_OTSU)
    mask = (diff > max(float(thr), 32.0)).astype(np.uint8)
    mask = cv2.morphologyEx(mask, cv2.MORPH_OPEN, np.ones((3, 3), np.uint8))
    count, _, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
    found = [stats[i] for i in range(1, count) if stats[i, cv2.CC_STAT_AREA] >= min_area * h * w]
    found.sort(key=lambda st: -int(st[cv2.CC_STAT_AREA]))
    short = min(w, h)
    out = []
    for x, y, bw, bh, _ in found[:n]:
        side = min(max(max(bw, bh) * (1.0 + 2.0 * margin), min_side * short), short)
        cx, cy = x + bw / 2.0, y + bh / 2.0
        x0 = min(max(cx - side / 2.0, 0.0), w - side)
        y0 = min(max(cy - side / 2.0, 0.0), h - side)
        out.append((x0 / w, y0 / h, (x0 + side) / w, (y0 + side) / h))
    return np.asarray(out, dtype=np.float64).reshape(-1, 4)


def frame_boxes(frame: np.ndarray, grid_boxes: np.ndarray, proposals: int) -> np.ndarray:
    """The windows scored for one frame: the grid's, then up to ``proposals`` around what stands out
    (``content_boxes``), padded to a fixed count with copies of the first grid window, or of the whole
    frame without a grid (a copy scores the same, so it never wins on its own)."""
    boxes = np.asarray(grid_boxes, dtype=np.float64).reshape(-1, 4)
    if proposals <= 0:
        return boxes
    found = content_boxes(frame, proposals)
    first = boxes[:1] if len(boxes) else np.asarray([[0.0, 0.0, 1.0, 1.0]])  # no grid: the whole frame
    return np.concatenate([boxes, found, np.repeat(first, proposals - len(found), axis=0)])


def crop(frame: np.ndarray, box: Sequence[float]) -> np.ndarray:
    """The pixels of ``frame`` (H, W, C) inside ``box`` (fractions), at least one pixel each way."""
    h, w = frame.shape[:2]
    x0, y0 = int(round(box[0] * w)), int(round(box[1] * h))
    x1, y1 = max(int(round(box[2] * w)), x0 + 1), max(int(round(box[3] * h)), y0 + 1)
    return frame[y0:y1, x0:x1]


def clip_region_scorer(clip, qvecs: np.ndarray, boxes: np.ndarray) -> RegionScorer:
    """``scorer(frames) -> (Q, M, R)`` sims of every window of every frame with each sub-query vector
    (``qvecs`` (Q, D), normalised), through ``clip.embed_images`` in one batch (a frame's repeated
    window once). ``boxes``: the same
    (R, 4) windows for every frame, or (M, R, 4), each frame's own."""
    q = np.asarray(qvecs, dtype=np.float32)

    def scorer(frames: list[np.ndarray]) -> np.ndarray:
        per = np.asarray(boxes, dtype=np.float64)
        per = np.broadcast_to(per, (len(frames), *per.shape)) if per.ndim == 2 else per
        r = per.shape[1] if per.ndim == 3 else 0
        if not frames or not r:
            return np.zeros((q.shape[0], len(frames), r), dtype=np.float32)
        emb = _embed_windows(clip, frames, per)
        return (emb.reshape(-1, emb.shape[-1]) @ q.T).T.reshape(q.shape[0], len(frames), r)

    return scorer


def _embed_windows(clip, frames: list[np.ndarray], boxes: np.ndarray) -> np.ndarray:
    """(M, R, D) embeddings of each frame's windows ``boxes`` (M, R, 4), in one batch; a window listed twice
    for a frame (the padding of ``frame_boxes``) is embedded once."""
    crops, where = [], np.zeros(boxes.shape[:2], dtype=np.int64)
    for m, (f, bs) in enumerate(zip(frames, boxes)):
        uniq, inverse = np.unique(np.asarray(bs), axis=0, return_inverse=True)
        where[m] = len(crops) + inverse.reshape(-1)
        crops += [np.ascontiguousarray(crop(f, b)) for b in uniq]
    emb = np.asarray(clip.embed_images(crops), dtype=np.float32)
    return emb[where.reshape(-1)].reshape(*boxes.shape[:2], -1)


def window_spec(grids: Sequence[int] = defaults.REGION_GRID, overlap: float = defaults.REGION_OVERLAP,
                proposals: int = defaults.REGION_PROPOSALS) -> str:
    """The windows a frame gets, in words (stored with windows embedded ahead, which only count for the
    same spec)."""
    return f"grid {','.join(str(int(g)) for g in grids)} overlap {overlap:g} proposals {int(proposals)}"


def frame_windows(clip, frames: list[np.ndarray], *, grids: Sequence[int] = defaults.REGION_GRID,
                  overlap: float = defaults.REGION_OVERLAP, proposals: int = defaults.REGION_PROPOSALS
                  ) -> tuple[np.ndarray, np.ndarray]:
    """The windows of each frame (``frame_boxes``: the grid's and ``proposals`` around what stands out)
    and their embeddings: ((M, R, 4) windows as fractions, (M, R, D) unit vectors), a window listed twice
    for a frame embedded once. Question-independent: what ``frame_regions`` scores, computed ahead."""
    if not frames:
        return np.zeros((0, 0, 4)), np.zeros((0, 0, 0), dtype=np.float32)
    h, w = frames[0].shape[:2]
    grid = region_boxes(grids, overlap, aspect=w / h)
    boxes = np.stack([frame_boxes(f, grid, proposals) for f in frames])
    return boxes, _embed_windows(clip, frames, boxes)


def frame_regions(clip, qvecs: np.ndarray, frames_at: Callable[[np.ndarray], list[np.ndarray]], *,
                  grids: Sequence[int] = defaults.REGION_GRID, overlap: float = defaults.REGION_OVERLAP,
                  proposals: int = defaults.REGION_PROPOSALS,
                  ahead: Callable[[np.ndarray], dict] | None = None, held: np.ndarray | None = None):
    """``regions(times) -> ((Q, M, R) sims, (M, R, 4) windows)`` for ``keyframe_search``: the frames at
    ``times`` come from ``frames_at(times)`` (decoded zoom frames, stored thumbnails...), their windows
    (the grid's and ``proposals`` around what stands out in each) are scored with ``clip`` against
    ``qvecs``. ``ahead(times) -> {time: ((R, 4) windows, (R, D) vectors)}``: frames whose windows were
    embedded ahead (``frame_windows``, with this spec; the index's probe frames and each shot's first
    frame), scored without a crop. ``held``: the index frames among those (``regions.held``, which
    ``keyframe_search`` scores by their windows from the start, since they cost nothing)."""
    q = np.asarray(qvecs, dtype=np.float32)

    def regions(times: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        times = np.asarray(times, dtype=np.float64)
        known = ahead(times) if ahead is not None and len(times) else {}
        rest = [i for i, t in enumerate(times) if float(t) not in known]
        frames = frames_at(times[rest]) if rest else []
        boxes, vecs = frame_windows(clip, frames, grids=grids, overlap=overlap, proposals=proposals)
        r = boxes.shape[1] if len(rest) else next(iter(known.values()))[0].shape[0] if known else \
            len(region_boxes(grids, overlap)) + max(proposals, 0)
        all_boxes = np.zeros((len(times), r, 4))
        sims = np.zeros((q.shape[0], len(times), r), dtype=np.float32)
        for j, i in enumerate(rest):
            all_boxes[i] = boxes[j]
            sims[:, i] = (vecs[j] @ q.T).T
        for i, t in enumerate(times):
            if float(t) in known:
                b, v = known[float(t)]
                all_boxes[i] = b
                sims[:, i] = (np.asarray(v, dtype=np.float32) @ q.T).T
        return sims, all_boxes

    regions.held = np.zeros(0) if held is None else np.asarray(held, dtype=np.float64)
    return regions


def stored_frames(store, run_key: str, decoded: dict[float, np.ndarray]) -> Callable[[np.ndarray], list]:
    """``frames_at(times)``: a frame the zoom decoded at that time (``decoded``, keyed by time rounded to
    the millisecond), else the index's probe frame at that time (``store.probe_jpegs``), else its stored
    thumbnail nearest to it."""

    def frames_at(times: np.ndarray) -> list[np.ndarray]:
        import io

        from PIL import Image

        out: list[np.ndarray | None] = [decoded.get(round(float(t), 3)) for t in times]
        missing = [float(t) for t, f in zip(times, out, strict=True) if f is None]
        jpegs = store.probe_jpegs(run_key, missing) if missing else {}
        rest = [t for t in missing if t not in jpegs]
        jpegs.update(store.frame_jpegs(run_key, rest) if rest else {})
        for i, t in enumerate(times):
            if out[i] is None:
                out[i] = np.asarray(Image.open(io.BytesIO(jpegs[float(t)])).convert("RGB"))
        return out

    return frames_at


def region_candidates(times: np.ndarray, scores: np.ndarray, budget: int, *,
                      scenes: Sequence[tuple[float, float]] = (), done: Sequence[int] = (),
                      min_gap: float = 1.0, shot_share: float = 0.5) -> list[int]:
    """Up to ``budget`` frame indices whose regions should be scored, best first: with ``scenes``, the
    best frame of each shot, shots by that frame's score, for ``shot_share`` of the budget; then the best
    frames overall, ``min_gap`` s apart from those chosen. Frames in ``done`` are not chosen again."""
    t = np.asarray(times, dtype=np.float64)
    s = np.asarray(scores, dtype=np.float64)
    if budget <= 0 or not len(t):
        return []
    skip = np.zeros(len(t), dtype=bool)
    skip[list(done)] = True
    order = [int(i) for i in np.argsort(-s, kind="stable") if not skip[i]]
    out: list[int] = []
    if len(scenes):
        groups = scene_ids(t, scenes)
        seen: set[int] = set()
        for i in order:
            if len(out) >= int(math.ceil(budget * min(max(shot_share, 0.0), 1.0))):
                break
            if groups[i] >= 0 and groups[i] not in seen:
                seen.add(int(groups[i]))
                out.append(i)
    chosen = set(out)
    for i in order:
        if len(out) >= budget:
            break
        if i not in chosen and all(abs(t[i] - t[j]) >= min_gap for j in out):
            out.append(i)
            chosen.add(i)
    return out


def region_lift(times: np.ndarray, whole: np.ndarray, sims: np.ndarray, boxes: np.ndarray,
                fuse: Callable[[np.ndarray], np.ndarray], *, penalty: float = 0.0,
                priors: Sequence[tuple[float, float, float]] = (),
                whole_raw: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, dict]:
    """Frames scored by their best window: ``sims`` (Q, M, R) raw sims of each window with each sub-query
    are fused window by window (``fuse((Q, n) raw) -> (n,)``, the whole frames' normalisation), priors
    added; a frame whose best window minus ``penalty`` beats its whole-frame score ``whole`` (M,) takes
    that score. Returns (new scores (M,), the lifting window of each frame (M, 4), NaN where the whole
    frame stayed best, a summary for the trace).
    ``whole_raw`` (Q, M): the frames' own raw sims; then the windows are first brought to the frames'
    scale (per sub-query, the windows' median minus the frames' median is taken off when positive):
    a crop is not better evidence than its frame just because crops of these frames score higher."""
    from pipelines.search.scores import apply_priors

    t = np.asarray(times, dtype=np.float64)
    q, m, r = sims.shape
    if whole_raw is not None and m > 1:
        shift = np.median(sims.reshape(q, -1), axis=1) - np.median(np.asarray(whole_raw).reshape(q, m), axis=1)
        sims = sims - np.maximum(shift, 0.0)[:, None, None]
    fused = np.asarray(fuse(np.asarray(sims, dtype=np.float64).reshape(q, m * r)), dtype=np.float64)
    fused = apply_priors(np.repeat(t, r), fused, priors).reshape(m, r)
    best = fused.argmax(axis=1)
    val = fused[np.arange(m), best] - penalty
    lift = val > whole
    out = np.where(lift, val, whole)
    where = np.full((m, 4), np.nan)
    per = np.asarray(boxes, dtype=np.float64)
    where[lift] = per[np.flatnonzero(lift), best[lift]] if per.ndim == 3 else per[best[lift]]
    info = {"frames": int(m), "windows": int(m * r), "lifted": int(lift.sum())}
    if lift.any():
        j = int(np.flatnonzero(lift)[np.argmax(val[lift])])
        info["best"] = {"t": round(float(t[j]), 3), "box": [round(float(x), 3) for x in where[j]],
                        "score": round(float(val[j]), 4), "whole": round(float(whole[j]), 4)}
    return out, where, info
