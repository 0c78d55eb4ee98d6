"""Batch indexing throughput: video seconds indexed per wall-clock second.

``vqa index FOLDER --profile tiny --jobs N`` over 24 short generated videos (cached under bench/out/),
with ``--jobs 1`` and ``--jobs 2``, each on a fresh database; the tiny models are built beforehand.
Wall time is the whole command, process start and model loading included, as a user sees it.
Each setting runs ``--repeat`` times, interleaved, and the best wall time counts (other load on the
machine only ever slows a run down). Prints both throughputs and their ratio (jobs 2 / jobs 1).

Usage: python bench/batch.py [--videos 24] [--seconds 30] [--size 640x360] [--captions] [--repeat 2]
"""

from __future__ import annotations

import argparse
from pathlib import Path

from _common import OUT, index_fresh

from tests.synth import SOURCES, make_scenes_video


def batch_videos(n: int, seconds: float, size: str) -> tuple[Path, float]:
    """(folder, total seconds) of ``n`` distinct videos, each ``seconds`` long with a cut every 2 s."""
    folder = OUT / f"batch_{n}x{seconds:g}s_{size}"
    folder.mkdir(parents=True, exist_ok=True)
    scenes = max(1, round(seconds / 2))
    for i in range(n):
        path = folder / f"clip{i:02d}.mp4"
        if not path.exists():
            tmp = folder / f".clip{i:02d}.tmp.mp4"
            srcs = [SOURCES[(i + k * 3) % len(SOURCES)] for k in range(scenes)]
            make_scenes_video(tmp, [seconds / scenes] * scenes, size=size, rate=25, audio=True, labels=True,
                              sources=srcs, crf=28)
            tmp.rename(path)
    return folder, n * seconds


def index_folder(folder: Path, jobs: int, extra: list[str]) -> float:
    return index_fresh(folder, "--profile", "tiny", "--jobs", str(jobs), *extra)[0]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--videos", type=int, default=24)
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--size", default="640x360")
    ap.add_argument("--captions", action="store_true", help="Include the (tiny) captioner stage.")
    ap.add_argument("--repeat", type=int, default=2)
    a = ap.parse_args()

    folder, total = batch_videos(a.videos, a.seconds, a.size)
    extra = [] if a.captions else ["--no-captions"]
    warm, warm_total = batch_videos(1, 2.0, a.size)
    index_folder(warm, 1, [])  # builds the models and warms the page cache
    startup = min(index_folder(warm, 1, extra) for _ in range(a.repeat))
    walls = {1: float("inf"), 2: float("inf")}
    for _ in range(a.repeat):
        for jobs in walls:
            walls[jobs] = min(walls[jobs], index_folder(folder, jobs, extra))
    print(f"videos: {a.videos} x {a.seconds:g} s ({a.size}), {total:g} video seconds; profile tiny"
          f"{'' if a.captions else ', --no-captions'}")
    for jobs, wall in walls.items():
        print(f"--jobs {jobs}: {wall:7.1f} s wall  -> {total / wall:6.2f} video s per wall s")
    print(f"throughput ratio jobs 2 / jobs 1: {walls[1] / walls[2]:.2f}")
    print(f"(for scale: one {warm_total:g} s video, process start and model loading included: {startup:.1f} s)")


if __name__ == "__main__":
    main()
