"""Latency of the keyframe-search core (no model, no decoding): an hour indexed at 1 fps (3,600 frames)
x 3 sub-queries, CLIP-like cosine scores with a few relevant shots.

    python bench/search_latency.py [--frames 3600] [--queries 3] [--repeat 30]

Prints the median milliseconds of ``keyframe_search`` (a) without zoom, (b) with a densify that adds
nothing new, (c) with an in-memory densify (the default rounds x 4 ranges at 4 fps), and of
``decompose_question``, next to the 20 ms target.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pipelines import defaults  # noqa: E402
from pipelines.search import SearchParams, decompose_question, keyframe_search  # noqa: E402

TARGET_MS = 20.0


def synthetic_scores(n: int, q: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, callable]:
    """Index times, (Q, N) sims, and a continuous sims(t) for densify: shots with piecewise-constant
    CLIP-like cosines (0.15-0.30) plus noise, and a few relevant shots per sub-query."""
    rng = np.random.default_rng(seed)
    duration = float(n)
    cuts = np.sort(rng.uniform(0, duration, n // 15))
    shot_level = rng.uniform(0.15, 0.25, (q, len(cuts) + 1))
    for j in range(q):
        shot_level[j, rng.choice(len(cuts) + 1, 4, replace=False)] += rng.uniform(0.04, 0.1, 4)

    def sims(ts: np.ndarray) -> np.ndarray:
        ts = np.asarray(ts, float)
        shot = np.searchsorted(cuts, ts)
        noise = 0.004 * np.sin(ts[None, :] * np.arange(1, q + 1)[:, None] * 1.7)
        return shot_level[:, shot] + noise

    times = np.arange(n, dtype=float)
    return times, sims(times), sims


def grid_densify(sims):
    def densify(ranges, fps):
        ts = np.concatenate([np.arange(np.ceil(a * fps), np.floor(b * fps) + 1) / fps for a, b in ranges])
        return ts, sims(ts)

    return densify


def nothing_new(q: int):
    def densify(ranges, fps):
        return np.zeros(0), np.zeros((q, 0))

    return densify


def median_ms(fn, repeat: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--frames", type=int, default=3600)
    ap.add_argument("--queries", type=int, default=3)
    ap.add_argument("--repeat", type=int, default=30)
    ap.add_argument("--k", type=int, default=defaults.K)
    args = ap.parse_args()
    times, sims, curve = synthetic_scores(args.frames, args.queries)
    w = [1.0, 0.5, 0.3][: args.queries] + [0.8] * max(0, args.queries - 3)
    priors = [(1234.2, 1236.0, 1.5)]
    cases = {
        "no zoom (zoom_rounds=0)": lambda: keyframe_search(times, sims, weights=w,
                                                           params=SearchParams(k=args.k, zoom_rounds=0)),
        "zoom, densify adds nothing": lambda: keyframe_search(times, sims, weights=w, densify=nothing_new(args.queries),
                                                              params=SearchParams(k=args.k), priors=priors),
        "zoom, in-memory densify": lambda: keyframe_search(times, sims, weights=w, densify=grid_densify(curve),
                                                           params=SearchParams(k=args.k), priors=priors),
    }
    print(f"keyframe_search on {args.frames} frames x {args.queries} sub-queries, k={args.k} "
          f"(median of {args.repeat}; target <= {TARGET_MS:g} ms)")
    for name, fn in cases.items():
        ms = median_ms(fn, args.repeat)
        print(f"  {name:30s} {ms:8.2f} ms   {ms / TARGET_MS:5.2f} x target")
    res = cases["zoom, in-memory densify"]()
    print(f"  (in-memory densify: {res.frames_scored} frames scored over {len(res.trace) - 1} zoom rounds)")
    q = "When does the man in a red hat open the blue door next to the car?"
    ms = median_ms(lambda: decompose_question(q, ["A. before the dog", "B. after the dog"]), args.repeat)
    print(f"  {'decompose_question':30s} {ms:8.2f} ms")


if __name__ == "__main__":
    main()
