"""Index speed and memory, as ratios against references measured in the same run.

1. ``vqa index --profile tiny`` wall time on a generated 10-minute 1280x720 30 fps video, divided by the
   wall time of ``ffmpeg -i VIDEO -f null -`` (a plain full decode) on the same file. Target <= 1.10.
2. Peak RSS of ``vqa index`` on a 60-minute video divided by a 6-minute one. Target <= 1.1.

Usage: python bench/index_speed.py [--minutes 10] [--long 60] [--short 6]
"""

from __future__ import annotations

import argparse
from pathlib import Path

from _common import index_fresh, long_video, run_measured

from pipelines.stages.media import ffmpeg_binary


def index_once(video: Path) -> tuple[float, int]:
    return index_fresh(video, "--profile", "tiny")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--minutes", type=float, default=10)
    ap.add_argument("--long", type=float, default=60)
    ap.add_argument("--short", type=float, default=6)
    ap.add_argument("--skip-memory", action="store_true")
    a = ap.parse_args()

    video = long_video(a.minutes)
    index_once(long_video(0.25))  # warm-up: builds the tiny models and fills the page cache
    ff, _, _ = run_measured([ffmpeg_binary(), "-hide_banner", "-nostdin", "-i", str(video), "-f", "null", "-"])
    wall, rss = index_once(video)
    print(f"video: {video.name}")
    print(f"ffmpeg -i VIDEO -f null -   : {ff:7.1f} s")
    print(f"vqa index --profile tiny    : {wall:7.1f} s  (peak RSS {rss} MiB)")
    print(f"time ratio index / decode   : {wall / ff:7.2f}   (target <= 1.10)")
    if a.skip_memory:
        return
    short = long_video(a.short, size="640x360", rate=25, scene_s=20)
    longer = long_video(a.long, size="640x360", rate=25, scene_s=20)
    _, rss_short = index_once(short)
    _, rss_long = index_once(longer)
    print(f"peak RSS {a.short:g} min: {rss_short} MiB; {a.long:g} min: {rss_long} MiB")
    print(f"memory ratio long / short   : {rss_long / rss_short:7.2f}   (target <= 1.1)")


if __name__ == "__main__":
    main()
