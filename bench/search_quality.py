"""Keyframe-search quality on a needle-in-a-haystack set: does any of the K keyframes fall inside the
evidence interval?

    python bench/search_quality.py --data DIR --clip-config CFG.json --clip-checkpoint CKPT.pt \\
        [--k 8] [--index-fps 1] [--width 160] [--items when,which] [--param zoom_fps=2 ...] [-v]

DIR holds the videos and a ``bench.jsonl`` in the native evaluation format (``id``, ``video``,
``question``, ``options``, ``evidence`` = [start, end] seconds). Per video, as the indexer does, one
``pipelines.stages.media.decode`` pass at the scene-analysis rate feeds ``pipelines.stages.segment.SceneSegmenter``
and, on a coarser grid, the CLIP given (an open_clip model-config JSON plus checkpoint, loaded through
``pipelines.stages.clip``); per item, the question is decomposed and every method picks K keyframes:

- ``uniform``: K evenly spaced index frames;
- ``clip-top``: the K index frames with the highest fused CLIP score (same sub-queries, no search);
- ``search-nozoom``: ``keyframe_search`` without zoom (with the shots);
- ``search-noscenes``: ``keyframe_search`` with zoom, without the shots;
- ``search``: ``keyframe_search`` with the shots and a real densify (decode the zoom ranges at the zoom
  rate, embed, score): what ``vqa ask`` does.

Prints the hit rate (all items, evidence < 1 s, >= 1 s), frames scored and seconds per item. A
measuring tool only: the product never imports it.
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
from pipelines.stages.media import decode, probe  # noqa: E402

METHODS = ("uniform", "clip-top", "search-nozoom", "search-noscenes", "search")


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
    """One decode at the scene rate: shots from the segmenter, CLIP vectors of the frames on the index
    grid (first frame at or after each grid step), like the indexer."""
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
    return np.asarray(times), clip.embed_images(frames), shots


def embed_frames(clip, path: str, *, fps: float, width: int, info, start=None, duration=None):
    times, frames = [], []
    for t, f in decode(path, fps=fps, width=width, info=info, start=start, duration=duration):
        times.append(t)
        frames.append(f)
    if not frames:
        return np.zeros(0), np.zeros((0, clip.dim), dtype=np.float32)
    return np.asarray(times), clip.embed_images(frames)


def make_densify(clip, path: str, info, qv: np.ndarray, width: int):
    """densify(ranges, fps): decode each range at ``fps``, embed, score against the sub-queries."""

    def densify(ranges, fps):
        nt, ne = [], []
        for a, b in ranges:
            t_, e_ = embed_frames(clip, path, fps=fps, width=width, info=info, start=a,
                                  duration=max(b - a, 1.0 / fps))
            keep = (t_ >= a - 1e-6) & (t_ <= b + 1e-6)
            nt.append(t_[keep])
            ne.append(e_[keep])
        nt_arr = np.concatenate(nt) if nt else np.zeros(0)
        ne_arr = np.concatenate(ne) if ne else np.zeros((0, qv.shape[1]), dtype=np.float32)
        return nt_arr, (ne_arr @ qv.T).T

    return densify


def uniform_pick(times: np.ndarray, duration: float, k: int) -> np.ndarray:
    targets = (np.arange(k) + 0.5) * duration / k
    return times[np.unique(np.abs(times[None, :] - targets[:, None]).argmin(axis=1))]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True, help="folder with the videos and bench.jsonl")
    ap.add_argument("--clip-config", required=True, help="open_clip model-config JSON")
    ap.add_argument("--clip-checkpoint", required=True, help="checkpoint for that config")
    ap.add_argument("--k", type=int, default=defaults.K)
    ap.add_argument("--index-fps", type=float, default=defaults.EMBED_FPS)
    ap.add_argument("--scene-fps", type=float, default=10.0, help="scene-analysis rate (the indexer's)")
    ap.add_argument("--width", type=int, default=160, help="decode width (frames are resized for CLIP)")
    ap.add_argument("--items", default="", help="comma-separated id suffixes to keep (e.g. 'when')")
    ap.add_argument("--param", action="append", default=[], help="SearchParams override, name=value")
    ap.add_argument("--json", help="write per-item results here")
    ap.add_argument("-v", "--verbose", action="store_true")
    args = ap.parse_args()

    from pipelines.stages.clip import ClipEmbedder, ClipSpec

    params = parse_params(args.param, kf.SearchParams(k=args.k))
    clip = ClipEmbedder(ClipSpec.parse(args.clip_config, args.clip_checkpoint), device="cpu", batch_size=256)
    data = Path(args.data)
    items = [json.loads(line) for line in (data / "bench.jsonl").read_text().splitlines() if line.strip()]
    if args.items:
        keep = tuple(args.items.split(","))
        items = [it for it in items if it["id"].rsplit("-", 1)[-1] in keep]
    by_video = defaultdict(list)
    for it in items:
        by_video[it["video"]].append(it)

    print(f"{len(items)} items, {len(by_video)} videos, k={params.k}, index {args.index_fps:g} fps, "
          f"params {json.dumps({k: v for k, v in params.as_dict().items() if k != 'k'})}")
    rows = []
    for video, vitems in by_video.items():
        path = str(data / video)
        info = probe(path)
        t0 = time.perf_counter()
        times, embs, shots = index_video(clip, path, info=info, index_fps=args.index_fps,
                                         scene_fps=args.scene_fps, width=args.width)
        index_s = time.perf_counter() - t0
        for it in vitems:
            subs = kf.decompose_question(it["question"], it.get("options") or [])
            qv = clip.embed_texts([s.text for s in subs])
            weights = [s.weight for s in subs]
            sims = (embs @ qv.T).T
            start, end = it["evidence"][:2]
            picks: dict[str, tuple[np.ndarray, int, float]] = {}
            picks["uniform"] = (uniform_pick(times, info.duration, params.k), len(times), 0.0)
            fused = kf.fuse_scores(sims, weights, method=params.method, any_weight=params.any_weight,
                                   any_temperature=params.any_temperature)
            picks["clip-top"] = (times[np.argsort(-fused, kind="stable")[: params.k]], len(times), 0.0)

            densify = make_densify(clip, path, info, qv, args.width)
            for name, p, dens, sc in (("search-nozoom", dataclasses.replace(params, zoom_rounds=0), None, shots),
                                      ("search-noscenes", params, densify, ()),
                                      ("search", params, densify, shots)):
                t1 = time.perf_counter()
                res = kf.keyframe_search(times, sims, weights=weights, densify=dens, params=p,
                                         bounds=(0.0, info.duration), scenes=sc)
                picks[name] = (np.asarray(res.times), res.frames_scored, time.perf_counter() - t1)
            row = {"id": it["id"], "evidence": [start, end], "short": (end - start) < 1.0,
                   "subqueries": [s.text for s in subs], "index_s": round(index_s, 2), "shots": len(shots)}
            for name, (kt, n, secs) in picks.items():
                row[name] = {"hit": bool(np.any((kt >= start) & (kt <= end))), "frames": int(n),
                             "seconds": round(secs, 3), "times": [round(float(x), 2) for x in np.sort(kt)]}
            rows.append(row)
            if args.verbose:
                print(f"  {it['id']:14s} [{start:7.2f}, {end:7.2f}] "
                      + " ".join(f"{m}={'HIT' if row[m]['hit'] else '-'}" for m in METHODS)
                      + f"  search t={row['search']['times']}")

    print(f"\n{'method':15s} {'hit all':>8s} {'< 1 s':>7s} {'>= 1 s':>7s} {'frames/item':>12s} {'s/item':>7s}")
    short = np.array([r["short"] for r in rows], dtype=bool)
    for m in METHODS:
        hits = np.array([r[m]["hit"] for r in rows], dtype=float)
        frames = np.mean([r[m]["frames"] for r in rows]) if rows else 0.0
        secs = np.mean([r[m]["seconds"] for r in rows]) if rows else 0.0

        def rate(mask, hits=hits):
            return f"{hits[mask].mean():.2f}" if mask.any() else "  -"

        print(f"{m:15s} {rate(np.ones(len(rows), bool)):>8s} {rate(short):>7s} {rate(~short):>7s} "
              f"{frames:12.0f} {secs:7.2f}")
    print(f"(items: {len(rows)}; evidence < 1 s: {int(short.sum())}, >= 1 s: {int((~short).sum())})")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
