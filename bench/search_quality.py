"""Keyframe-search quality on needle-in-a-haystack sets: hit rate (a keyframe inside the evidence),
precision and F1 of the keyframes at +-1 s of it, per method, side by side.

    python bench/search_quality.py --data DIR [DIR ...] --clip-config CFG.json --clip-checkpoint CKPT.pt \\
        [--k 8] [--index-fps 1] [--width 256] [--items when,which] [--methods ...] [--param name=value ...]
        [--json OUT.json] [-v]

Each DIR holds the videos and a ``bench.jsonl`` in the native evaluation format (``id``, ``video``,
``question``, ``options``, ``evidence`` = [start, end] seconds; ``needle_objects`` when the set says how
many objects share the needle's shot, see bench/search_haystacks.py). Per video, as the indexer does,
one ``pipelines.stages.media.decode`` pass at the scene-analysis rate feeds the scene segmenter and, on
a coarser grid, the CLIP given (an open_clip model-config JSON plus checkpoint, loaded through
``pipelines.stages.clip``); the index frames stay in memory as the thumbnails the spatial zoom crops.
Per item, the question is decomposed and every method picks K keyframes:

- ``uniform``: K evenly spaced index frames;
- ``clip-top``: the K index frames with the highest fused CLIP score (same sub-queries, no search);
- ``before``: ``keyframe_search`` with the time zoom and the shots, no concentration, no regions
  (the search as it was);
- ``focus``: the same with keyframes concentrated around a confident peak;
- ``search``: focus plus the spatial zoom (windows of the frames that matter): what ``vqa ask`` does;
- ``moments-before`` / ``moments``: what ``vqa search`` returns (the top-K moments' middles, no zoom /
  the whole search).

Prints hit, precision and F1 @ +-1 s for all items and per group (evidence < 1 s or not; needle alone or
among others), frames scored and seconds per item (the JSON also gives, per item, the best score on the
evidence and how many other shots score above it: whether a miss was never seen or seen and outranked) (with ``--repeat N`` the median of N runs from scratch: latency). A measuring tool only: the product never imports it.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from pipelines import defaults  # noqa: E402
from pipelines import search as kf  # noqa: E402
from pipelines.eval.metrics import temporal_metrics  # noqa: E402
from pipelines.search.regions import frame_regions, frame_windows  # noqa: E402
from pipelines.stages.media import decode, decode_ranges, probe, ranges_left  # noqa: E402

METHODS = ("uniform", "clip-top", "before", "focus", "search", "moments-before", "moments")
DELTA = 1.0


def parse_params(pairs: list[str], base: kf.SearchParams) -> kf.SearchParams:
    fields = {f.name: f for f in dataclasses.fields(kf.SearchParams)}
    updates = {}
    for pair in pairs:
        name, _, value = pair.partition("=")
        if name not in fields:
            raise SystemExit(f"unknown search parameter {name!r}; known: {', '.join(fields)}")
        current = getattr(base, name)
        if value.lower() == "none":
            updates[name] = None
        elif isinstance(current, bool):
            updates[name] = value.lower() in ("1", "true", "yes")
        elif isinstance(current, int) and not isinstance(current, bool):
            updates[name] = int(value)
        elif isinstance(current, float) or current is None:
            updates[name] = float(value)
        else:
            updates[name] = value
    return dataclasses.replace(base, **updates)


def index_video(clip, path: str, *, info, index_fps: float, scene_fps: float, width: int):
    """One decode at the scene rate: shots from the segmenter, CLIP vectors and pixels of the frames on
    the index grid (first frame at or after each grid step), like the indexer."""
    from pipelines.stages.segment import SceneParams, SceneSegmenter

    segmenter = SceneSegmenter(SceneParams(fps=scene_fps))
    times, frames = [], []
    step, next_t = 1.0 / index_fps, -1e9
    for t, f in decode(path, fps=max(scene_fps, index_fps), width=width, info=info):
        segmenter.feed(t, f)
        if t + 1e-6 >= next_t:
            times.append(t)
            frames.append(f)
            next_t = next_t + step if next_t > -1e8 else t + step
            if next_t <= t:  # a gap in the stream: re-anchor
                next_t = t + step
    shots = [(s.start, s.end) for s in segmenter.finish(info.duration)]
    return np.asarray(times), clip.embed_images(frames), shots, frames


def probe_frames(clip, path: str, info, times: np.ndarray, shots, width: int) -> dict:
    """What ``vqa index`` stores where its grid under-samples the shots (``Indexer._probe_frames``): the
    zoom ranges of those shots, decoded at the zoom rate when the video is indexed, embedded, kept as
    the stored thumbnails (JPEG) are, with their windows embedded (``regions.frame_windows``, as the
    index stores them); (start, end, fps) -> (times, embeddings, frames, windows, window vectors)."""
    import io

    from PIL import Image

    from pipelines.probes import PROBE_FPS, probe_ranges
    from pipelines.stages.stills import to_jpeg

    fps = PROBE_FPS
    ranges = probe_ranges(times, shots)
    got = decode_ranges(path, ranges, fps=fps, width=width, info=info) if ranges else []
    frames = [f for g in got for _, f in g]
    embs = clip.embed_images(frames) if frames else np.zeros((0, 1), dtype=np.float32)
    thumbs = [np.asarray(Image.open(io.BytesIO(to_jpeg(f, width))).convert("RGB")) for f in frames]
    boxes, wvecs = frame_windows(clip, frames, grids=GRIDS[0], overlap=OVERLAP[0], proposals=PROPOSALS[0])
    out, at = {}, 0
    for (a, b), g in zip(ranges, got):
        out[(round(a, 3), round(b, 3), round(fps, 3))] = (np.asarray([t for t, _ in g], dtype=np.float64),
                                                          embs[at:at + len(g)], thumbs[at:at + len(g)],
                                                          boxes[at:at + len(g)], wvecs[at:at + len(g)])
        at += len(g)
    return out


def make_densify(clip, path: str, info, qv: np.ndarray, width: int, pixels: dict, stored: dict | None = None):
    """densify(ranges, fps): decode each range at ``fps``, embed, score against the sub-queries; the
    decoded frames go to ``pixels`` (time -> frame) for the spatial zoom. Frames in ``stored``
    (``probe_frames``: what the index holds) are read from there and only the rest decoded
    (``media.ranges_left``), as `vqa ask` does."""

    at: dict[float, np.ndarray] = {}  # time -> sims (Q,): probe frames, and frames decoded for this item
    probe_px: dict[float, np.ndarray] = {}
    for key, val in (stored or {}).items():
        if key == "first":
            continue
        ts, embs, thumbs, _, _ = val
        for t, row, px in zip(ts, embs @ qv.T if len(ts) else [], thumbs):
            at[round(float(t), 3)] = row
            probe_px[round(float(t), 3)] = px

    def densify(ranges, fps):
        hand, todo = ranges_left(ranges, fps, info.duration, set(at))
        got = decode_ranges(path, todo, fps=fps, width=width, info=info) if todo else []
        frames = [f for g in got for _, f in g]  # embedded in one batch, as vqa ask's densify does
        times = [t for g in got for t, _ in g]
        if frames:
            for t, f, row in zip(times, frames, clip.embed_images(frames) @ qv.T):
                at[round(t, 3)] = row
                pixels[round(t, 3)] = f
        for t in hand:
            if round(t, 3) in probe_px:
                pixels.setdefault(round(t, 3), probe_px[round(t, 3)])
        keep = sorted({round(t, 3) for t in hand + times
                       if any(a - 1e-6 <= t <= b + 1e-6 for a, b in ranges)})  # each range's own frames
        if not keep:
            return np.zeros(0), np.zeros((qv.shape[0], 0))
        return np.asarray(keep, dtype=np.float64), np.stack([at[t] for t in keep]).T

    densify.held = [key[:2] for key in (stored or {}) if key != "first"]  # ranges read, not decoded (as vqa ask)
    return densify


def make_regions(clip, qv: np.ndarray, pixels: dict, grids: tuple[int, ...], stored: dict | None = None):
    """vqa ask's own ``frame_regions`` over the frames this bench keeps in memory; the windows of the
    probe frames and of each shot's first frame (``stored``) embedded ahead, as the index holds them."""
    ahead = {round(float(t), 3): (b, v) for ts, _, _, bs, vs in (stored or {}).values()
             for t, b, v in zip(ts, bs, vs)}
    return frame_regions(clip, qv, lambda times: [pixels[round(float(t), 3)] for t in times], grids=grids,
                         proposals=PROPOSALS[0], overlap=OVERLAP[0],
                         ahead=lambda times: {float(t): ahead[round(float(t), 3)] for t in times
                                              if round(float(t), 3) in ahead},
                         held=(stored or {}).get("first", (None,))[0])


PROPOSALS = [defaults.REGION_PROPOSALS]
OVERLAP = [defaults.REGION_OVERLAP]
GRIDS = [defaults.REGION_GRID]
REPEAT = [1]


def uniform_pick(times: np.ndarray, duration: float, k: int) -> np.ndarray:
    targets = (np.arange(k) + 0.5) * duration / k
    return times[np.unique(np.abs(times[None, :] - targets[:, None]).argmin(axis=1))]


def moment_middles(res, shots, duration: float, k: int) -> np.ndarray:
    """What `vqa search` shows for the visual channel (``search.visual_moments``: each keyframe's hump
    inside its shot, merged when they share time, best first, those within the moment band of the best);
    the middle of each of the first ``k``."""
    return np.asarray([(a + b) / 2 for a, b, _ in kf.visual_moments(res, shots, duration)[:k]])


def curve_stats(res, evidence, shots) -> dict:
    """The best and runner-up distinct peaks of the final curve (fused z), and whether the best is on the
    evidence (+-1 s): what the concentration's confidence sees."""
    from pipelines.search.select import _peaks, scene_ids

    t, s = res.curve_times, res.curve_scores
    if not len(t):
        return {}
    groups = scene_ids(t, shots) if shots else None
    top = _peaks(t, s, 2, tolerance=res.params.tolerance, min_gap=0.75, groups=groups)
    s1 = float(s[top[0]])
    s2 = float(s[top[1]]) if len(top) > 1 else None
    on = evidence[0] - DELTA <= t[top[0]] <= evidence[1] + DELTA
    inside = (t >= evidence[0]) & (t <= evidence[1])
    ev = float(s[inside].max()) if inside.any() else None  # the evidence's best frame, and how many shots beat it
    above = None
    if ev is not None and groups is not None:
        above = len({int(g) for g, x, i in zip(groups, s, inside) if x > ev and not i and g >= 0})
    return {"s1": round(s1, 3), "s2": None if s2 is None else round(s2, 3), "median": round(float(np.median(s)), 3),
            "best_on_evidence": bool(on), "evidence_best": None if ev is None else round(ev, 3),
            "evidence_frames": int(inside.sum()), "shots_above": above}


def run_item(it, ctx, params, methods, region_grids, variants) -> dict:
    clip, times, embs, shots, info, path, width, pixels0, stored = ctx
    subs = kf.decompose_question(it["question"], it.get("options") or [])
    qv = kf.embed_subqueries(clip.embed_texts, subs)
    weights = [s.weight for s in subs]
    sims = (embs @ qv.T).T
    start, end = it["evidence"][:2]
    picks: dict[str, tuple[np.ndarray, int, float, dict]] = {}
    if "uniform" in methods:
        picks["uniform"] = (uniform_pick(times, info.duration, params.k), len(times), 0.0, {})
    if "clip-top" in methods:
        fused = kf.fuse_scores(sims, weights, method=params.method, any_weight=params.any_weight,
                               any_temperature=params.any_temperature)
        picks["clip-top"] = (times[np.argsort(-fused, kind="stable")[: params.k]], len(times), 0.0, {})
    before = dataclasses.replace(params, peak_margin=None)
    runs = {"before": (before, False, params.k), "focus": (params, False, params.k),
            "search": (params, True, params.k),
            "moments-before": (dataclasses.replace(before, zoom_rounds=0), False, 2 * params.k),
            "moments": (params, True, 2 * params.k)}
    pixels = dict(pixels0)
    shared = make_densify(clip, path, info, qv, width, pixels, stored)
    for name, pairs in variants.items():  # the whole search with other parameters ("moments...": as `vqa search`)
        runs[name] = (parse_params(pairs, params), True, 2 * params.k if name.startswith("moments") else params.k)
    for name, (p, use_regions, k) in runs.items():
        if name not in methods:
            continue
        densify = shared if p.zoom_rounds else None
        regions = make_regions(clip, qv, pixels, region_grids, stored) if use_regions else None
        t1 = time.perf_counter()
        res = kf.keyframe_search(times, sims, weights=weights, densify=densify,
                                 params=dataclasses.replace(p, k=k), bounds=(0.0, info.duration),
                                 scenes=shots, regions=regions)
        secs = time.perf_counter() - t1
        if REPEAT[0] > 1:  # latency: the median of fresh runs, each decoding and embedding all over again
            runs_s = [secs]
            for _ in range(REPEAT[0] - 1):
                px = dict(pixels0)
                dn = make_densify(clip, path, info, qv, width, px, stored) if p.zoom_rounds else None
                rg = make_regions(clip, qv, px, region_grids, stored) if use_regions else None
                t1 = time.perf_counter()
                kf.keyframe_search(times, sims, weights=weights, densify=dn, params=dataclasses.replace(p, k=k),
                                   bounds=(0.0, info.duration), scenes=shots, regions=rg)
                runs_s.append(time.perf_counter() - t1)
            secs = float(np.median(runs_s))
        kt = moment_middles(res, shots, info.duration, params.k) if name.startswith("moments") \
            else np.asarray(res.times)
        extra = {"trace": res.trace, "regions": [k_.as_dict() for k_ in res.keyframes if k_.region],
                 **curve_stats(res, (start, end), shots)}
        picks[name] = (kt, res.frames_scored, secs, extra)
    row = {"id": it["id"], "evidence": [start, end], "short": (end - start) < 1.0,
           "alone": it.get("needle_objects", 1) == 1, "subqueries": [s.text for s in subs], "shots": len(shots)}
    for name, (kt, n, secs, extra) in picks.items():
        m = temporal_metrics(kt.tolist(), [(start, end)], DELTA)
        row[name] = {"hit": bool(m["hit"]), "precision": m["precision"], "f1": m["f1"], "frames": int(n),
                     "seconds": round(secs, 3), "times": [round(float(x), 2) for x in np.sort(kt)], **extra}
    return row


def table(rows: list[dict], methods: list[str]) -> list[str]:
    groups = {"all": np.ones(len(rows), bool), "< 1 s": np.array([r["short"] for r in rows], bool)}
    groups[">= 1 s"] = ~groups["< 1 s"]
    groups["alone"] = np.array([r["alone"] for r in rows], bool)
    groups["among others"] = ~groups["alone"]
    head = f"{'method':15s}" + "".join(f"{g:>14s}" for g in groups) + f"{'P all':>7s}{'F1 all':>7s}" \
        + f"{'frames':>8s}{'s/item':>8s}"
    out = [head, f"{'':15s}" + "".join(f"{'hit  (F1)':>14s}" for _ in groups)]
    for m in methods:
        hits = np.array([r[m]["hit"] for r in rows], float)
        f1 = np.array([r[m]["f1"] for r in rows], float)
        prec = np.array([r[m]["precision"] for r in rows], float)
        cells = "".join(f"{hits[g].mean():>8.2f} ({f1[g].mean():.2f})" if g.any() else f"{'-':>14s}"
                        for g in groups.values())
        out.append(f"{m:15s}{cells}{prec.mean():7.2f}{f1.mean():7.2f}"
                   f"{np.mean([r[m]['frames'] for r in rows]):8.0f}{np.mean([r[m]['seconds'] for r in rows]):8.2f}")
    out.append("(items: " + ", ".join(f"{g} {int(mask.sum())}" for g, mask in groups.items()) + f"; F1 and P at "
               f"+-{DELTA:g} s)")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True, nargs="+", help="folders with the videos and bench.jsonl")
    ap.add_argument("--clip-config", required=True, help="open_clip model-config JSON")
    ap.add_argument("--clip-checkpoint", required=True, help="checkpoint for that config")
    ap.add_argument("--k", type=int, default=defaults.K)
    ap.add_argument("--index-fps", type=float, default=defaults.EMBED_FPS)
    ap.add_argument("--scene-fps", type=float, default=10.0, help="scene-analysis rate (the indexer's)")
    ap.add_argument("--width", type=int, default=defaults.THUMB_WIDTH, help="decode width of every frame")
    ap.add_argument("--items", default="", help="comma-separated id suffixes to keep (e.g. 'when')")
    ap.add_argument("--methods", default=",".join(METHODS))
    ap.add_argument("--grids", default=",".join(map(str, defaults.REGION_GRID)), help="region grids, e.g. 2,3")
    ap.add_argument("--param", action="append", default=[], help="SearchParams override, name=value")
    ap.add_argument("--proposals", type=int, default=defaults.REGION_PROPOSALS,
                    help="windows per frame around what stands out (regions.content_boxes), besides the grid")
    ap.add_argument("--overlap", type=float, default=defaults.REGION_OVERLAP,
                    help="share of a grid window that overlaps its neighbour (fewer windows when smaller)")
    ap.add_argument("--variant", action="append", default=[],
                    help="NAME:param=value,...: also the whole search with these parameters (a NAME "
                         "starting with 'moments': the moments of `vqa search` with them)")
    ap.add_argument("--json", help="write per-item results here")
    ap.add_argument("--fresh", action="store_true", help="index again, no cache (the cache sits next to "
                                                         "each video, for one CLIP)")
    ap.add_argument("--repeat", type=int, default=1, help="time each search this many times from scratch (own "
                                                           "decoding and embedding) and report the median")
    ap.add_argument("--no-probes", action="store_true", help="decode every zoom range at question time (as "
                                                              "an index made before probe frames were stored)")
    ap.add_argument("--held-every", type=int, default=0, help="also hold the windows of every N-th index frame "
                                                               "(measuring; the index holds each shot's first)")
    ap.add_argument("-v", "--verbose", action="store_true")
    args = ap.parse_args()
    PROPOSALS[0] = args.proposals
    OVERLAP[0] = args.overlap
    GRIDS[0] = tuple(int(g) for g in args.grids.split(",") if g)
    REPEAT[0] = args.repeat

    from pipelines.stages.clip import ClipEmbedder, ClipSpec

    variants = {}
    for v in args.variant:
        name, _, pairs = v.partition(":")
        variants[name] = [x for x in pairs.split(",") if x]
    methods = [m for m in args.methods.split(",") if m] + list(variants)
    grids = tuple(int(g) for g in args.grids.split(",") if g)
    params = parse_params(args.param, kf.SearchParams(k=args.k))
    clip = ClipEmbedder(ClipSpec.parse(args.clip_config, args.clip_checkpoint), device="cpu", batch_size=256)
    items = []
    for d in args.data:
        for line in (Path(d) / "bench.jsonl").read_text().splitlines():
            if line.strip():
                items.append({**json.loads(line), "_dir": d})
    if args.items:
        keep = tuple(args.items.split(","))
        items = [it for it in items if it["id"].rsplit("-", 1)[-1] in keep]
    by_video = defaultdict(list)
    for it in items:
        by_video[str(Path(it["_dir"]) / it["video"])].append(it)

    print(f"{len(items)} items, {len(by_video)} videos, k={params.k}, index {args.index_fps:g} fps, grids {grids}, "
          f"params {json.dumps({k: v for k, v in params.as_dict().items() if k != 'k'})}")
    rows = []
    for path, vitems in by_video.items():
        info = probe(path)
        cache = Path(path).with_suffix(f".index-{args.index_fps:g}fps-{args.width}px.npz")
        if cache.exists():  # the index of a video depends on the CLIP: --fresh when it changes
            z = np.load(cache)
            times, embs, frames = z["times"], z["embs"], list(z["frames"])
            shots = [tuple(x) for x in z["shots"].tolist()]
        else:
            times, embs, shots, frames = index_video(clip, path, info=info, index_fps=args.index_fps,
                                                     scene_fps=args.scene_fps, width=args.width)
            if not args.fresh:
                np.savez(cache, times=times, embs=embs, frames=np.stack(frames), shots=np.asarray(shots))
        pixels0 = {round(float(t), 3): f for t, f in zip(times, frames, strict=True)}
        stored = probe_frames(clip, path, info, times, shots, args.width) if not args.no_probes else {}
        if not args.no_probes and shots:  # and the windows of each shot's first frame, as the index holds them
            first = kf.first_frames(times, shots)
            if args.held_every:  # measuring: windows of more index frames held (the index holds the first)
                first = sorted(set(first) | set(range(0, len(times), args.held_every)))
            fb, fv = frame_windows(clip, [frames[i] for i in first], grids=GRIDS[0], overlap=OVERLAP[0],
                                   proposals=PROPOSALS[0])
            stored["first"] = (times[first], None, None, fb, fv)
        ctx = (clip, times, embs, shots, info, path, args.width, pixels0, stored)
        for it in vitems:
            row = run_item(it, ctx, params, methods, grids, variants)
            rows.append(row)
            if args.verbose:
                print(f"  {it['id']:14s} [{row['evidence'][0]:7.2f}, {row['evidence'][1]:7.2f}] "
                      + " ".join(f"{m}={'HIT' if row[m]['hit'] else '-'}/{row[m]['f1']:.2f}" for m in methods)
                      + f"  search t={row.get('search', {}).get('times')}", flush=True)
    print()
    print("\n".join(table(rows, methods)))
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1, default=float))


if __name__ == "__main__":
    main()
