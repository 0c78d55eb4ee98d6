"""Speech and on-screen-text channels on a 10-minute 720p video with narration and changing text.

The video is the shipped demo (narration + on-screen text changing every few seconds) looped to 10
minutes and scaled to 1280x720. Prints: transcription speed (audio seconds per wall second of the
transcript stage), OCR cost (frames seen / frames detected / crops recognised, wall seconds), and the
``offline`` profile's whole ``vqa index`` wall time divided by the video's duration (target <= 0.25).

Usage: python bench/channels.py [--minutes 10]
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import tempfile
from pathlib import Path

from _common import OUT, ROOT, bench_env, run_measured, vqa_cmd

from pipelines.stages.media import ffmpeg_binary


def looped_demo(minutes: float) -> Path:
    path = OUT / f"demo_loop_{minutes:g}min_720p.mp4"
    if not path.exists():
        tmp = path.with_suffix(".tmp.mp4")
        subprocess.run([ffmpeg_binary(), "-y", "-hide_banner", "-loglevel", "error", "-stream_loop", "-1", "-i",
                        str(ROOT / "assets" / "demo.mp4"), "-t", str(minutes * 60), "-vf", "scale=1280:720",
                        "-c:v", "libx264", "-preset", "ultrafast", "-crf", "26", "-c:a", "aac", "-b:a", "48k",
                        str(tmp)], check=True)
        tmp.rename(path)
    return path


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--minutes", type=float, default=10)
    a = ap.parse_args()
    video = looped_demo(a.minutes)
    duration = a.minutes * 60
    home = Path(tempfile.mkdtemp(prefix="vqa-bench-"))
    env = bench_env(home)
    try:
        # warm-up on the short demo: builds/loads models once, fills the page cache
        run_measured([*vqa_cmd(), "index", str(ROOT / "assets" / "demo.mp4"), "--profile", "offline",
                      "--db", str(home / "warm.db")], env=env)
        wall, rss, rc = run_measured([*vqa_cmd(), "index", str(video), "--profile", "offline", "--db",
                                      str(home / "vqa.db")], env=env)
        if rc:
            raise SystemExit("vqa index failed")
        from index.store import Store

        store = Store(home / "vqa.db")
        runs = {r["stage"]: r for r in store.db.query("select stage, seconds, stats from runs")}
        store.close()
    finally:
        shutil.rmtree(home, ignore_errors=True)
    tr = runs["transcript"]
    ocr = json.loads(runs["ocr"]["stats"])
    print(f"video: {video.name} ({duration:.0f} s, 1280x720)")
    print(f"transcription: {duration / tr['seconds']:.1f} audio-s per wall-s "
          f"({json.loads(tr['stats'])['segments']} segments, {tr['seconds']:.1f} s)")
    print(f"OCR: {ocr.get('frames_seen')} frames seen, {ocr.get('frames_detected')} detected, "
          f"{ocr.get('crops_recognised')} crops recognised, {ocr.get('seconds', 0):.1f} s of OCR work, "
          f"{ocr.get('lines')} text intervals")
    for stage in ("scenes", "frames", "ocr", "captions", "transcript", "textvec"):
        if stage in runs:
            print(f"  stage {stage:<10} {runs[stage]['seconds']:7.1f} s")
    print(f"vqa index --profile offline: {wall:.1f} s wall, peak RSS {rss} MiB")
    print(f"ratio index wall / video duration: {wall / duration:.3f}   (target <= 0.25)")


if __name__ == "__main__":
    main()
