"""Index speed and memory, as ratios against references measured in the same run.

1. ``vqa index --profile tiny`` wall time on a generated 10-minute 1280x720 30 fps video, divided by the
   wall time of ``ffmpeg -i VIDEO -f null -`` (a plain full decode) on the same file. Target <= 1.10.
2. Peak RSS of ``vqa index`` on a 60-minute video divided by a 6-minute one. Target <= 1.1. The 60-minute
   video's time ratio (index wall / plain decode wall) is printed too.
3. The floor under both ratios: the very decode ``vqa index`` runs (its ffmpeg graph: the 1 fps frames for
   CLIP, the scene analysis grid and the every-frame side stream for exact cuts), in a process of its own
   that reads every frame and does nothing with it (``--decode-only``). What the index adds above this
   line is Python: imports, models, the scene analysis; what this line adds above the plain decode is
   ffmpeg's own work for the index's outputs.
4. The scene cuts' precision, recall and offset on the generated cut videos of bench/scene_detectors.py
   (default detector), with each cut window read again from the file (as before) and from the decode's own
   every-frame side stream (as now: picked pixels, ``media.picked_scale``), and how many windows each read
   again; and the same cases at 1280x720 with the analysis grid's small frames averaged from every pixel
   (before) or from a picked grid (now).

Usage: python bench/index_speed.py [--minutes 10] [--long 60] [--short 6] [--skip-memory] [--skip-cuts]
       python bench/index_speed.py --decode-only VIDEO   (the floor alone, on one video)
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from pathlib import Path

from _common import index_fresh, long_video, run_measured

from pipelines.stages.media import ffmpeg_binary, ffmpeg_choice


def index_once(video: Path) -> tuple[float, int]:
    return index_fresh(video, "--profile", "tiny")


def decode_only(video: str) -> None:
    """The decode ``vqa index --profile tiny`` runs on ``video``, with the same rates and sizes, every frame
    read off its pipes and dropped."""
    from pipelines.backends.profiles import get_profile
    from pipelines.plan import IndexOptions
    from pipelines.stages.media import SideStream, decode, probe
    from pipelines.stages.segment import KEEP_FPS

    opts = IndexOptions()
    scene = opts.scene
    side = SideStream(scene.width, (lambda t, f: None) if scene.refine else None, fps=scene.fps,
                      sampled=lambda t, f: None, feed_width=scene.fine_width)
    fps = max(KEEP_FPS, opts.embed_fps)
    n = sum(1 for _ in decode(video, fps=fps, width=get_profile("tiny").decode_width, info=probe(video), side=side))
    if n == 0:
        raise SystemExit(f"{video}: no frames decoded")


def floor(video: Path) -> float:
    wall, _, rc = run_measured([sys.executable, __file__, "--decode-only", str(video)])
    if rc != 0:
        raise SystemExit(f"--decode-only {video} failed (exit {rc})")
    return wall


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--decode-only", metavar="VIDEO")
    ap.add_argument("--minutes", type=float, default=10)
    ap.add_argument("--long", type=float, default=60)
    ap.add_argument("--short", type=float, default=6)
    ap.add_argument("--skip-memory", action="store_true")
    ap.add_argument("--skip-cuts", action="store_true")
    a = ap.parse_args()
    if a.decode_only:
        return decode_only(a.decode_only)
    if not a.skip_cuts:
        cut_accuracy()

    video = long_video(a.minutes)
    index_once(long_video(0.25))  # warm-up: builds the tiny models and fills the page cache
    ff, _, _ = run_measured([ffmpeg_binary(), "-hide_banner", "-nostdin", "-i", str(video), "-f", "null", "-"])
    wall, rss = index_once(video)
    fl = floor(video)
    print(f"video: {video.name}")
    print(f"ffmpeg -i VIDEO -f null -   : {ff:7.1f} s")
    print(f"the index's decode alone    : {fl:7.1f} s  = {fl / ff:.2f} x the plain decode (the floor)")
    print(f"vqa index --profile tiny    : {wall:7.1f} s  (peak RSS {rss} MiB)")
    print(f"time ratio index / decode   : {wall / ff:7.2f}   (target <= 1.10)")
    choice = ffmpeg_choice()
    print(f"ffmpeg: {choice.describe()}")
    other = shutil.which("ffmpeg")
    if other and os.path.realpath(other) != os.path.realpath(choice.path):  # the one passed over, for reference
        ff2, _, _ = run_measured([other, "-hide_banner", "-nostdin", "-i", str(video), "-f", "null", "-"])
        wall2, _ = index_fresh(video, "--profile", "tiny", env={"VQA_FFMPEG": other})
        print(f"with {other}: plain decode {ff2:.1f} s, vqa index {wall2:.1f} s = {wall2 / ff2:.2f}; "
              f"the chosen ffmpeg's vqa index / this plain decode {wall / ff2:.2f}")
    if a.skip_memory:
        return
    short = long_video(a.short, size="640x360", rate=25, scene_s=20)
    longer = long_video(a.long, size="640x360", rate=25, scene_s=20)
    _, rss_short = index_once(short)
    ff_long, _, _ = run_measured([ffmpeg_binary(), "-hide_banner", "-nostdin", "-i", str(longer), "-f", "null", "-"])
    wall_long, rss_long = index_once(longer)
    fl_long = floor(longer)
    print(f"video: {longer.name}: vqa index {wall_long:.1f} s / ffmpeg decode {ff_long:.1f} s = "
          f"time ratio {wall_long / ff_long:.2f}   (target <= 1.10); the index's decode alone "
          f"{fl_long:.1f} s = {fl_long / ff_long:.2f}")
    print(f"peak RSS {a.short:g} min: {rss_short} MiB; {a.long:g} min: {rss_long} MiB")
    print(f"memory ratio long / short   : {rss_long / rss_short:7.2f}   (target <= 1.1)")


def cut_accuracy() -> None:
    """Precision, recall, |offset| of the default detector's cuts on the generated cases: at their own size
    (320x180) with each cut window read again from the file (as before) and taken from the decode's side
    stream (as now); at 1280x720 with the side stream's small frames area-averaged from every pixel (as
    before) and picked on a grid, then averaged (``media.small_scale``, as now); the every-frame side
    stream is picked pixels throughout (``media.picked_scale``)."""
    from scene_detectors import decoded, generated, probe, score, segment

    import pipelines.stages.media as media
    from pipelines.stages.segment import SceneParams

    pick = media.SIDE_PICK
    for size, mode, side_pick, label in ((None, "reread", pick, "windows read again"),
                                         (None, "decode", pick, "windows from the decode"),
                                         ("1280x720", "decode", 10**6, "grid frames from every pixel"),
                                         ("1280x720", "decode", pick, "grid frames from picked pixels")):
        media.SIDE_PICK = side_pick
        tp = fp = fn = one = reread = 0
        offsets: list[float] = []
        for path, cuts, fade in generated(size).values():
            info = probe(str(path))
            found, _, again = segment(path, decoded(path, info), info.duration, SceneParams(), mode)
            a, b, c, offs, o = score(found, cuts, fade, 1.0 / max(info.fps, 1.0))
            tp, fp, fn, one, reread = tp + a, fp + b, fn + c, one + o, reread + again
            offsets += offs
        mean = 1000 * sum(abs(x) for x in offsets) / max(len(offsets), 1)
        print(f"scene cuts at {size or '320x180'}, {label}: precision {tp / max(tp + fp, 1):.2f}, recall "
              f"{tp / max(tp + fn, 1):.2f}, within one frame {one}/{tp}, |offset| mean {mean:.0f} ms; "
              f"windows read again {reread}")
    media.SIDE_PICK = pick

if __name__ == "__main__":
    main()
