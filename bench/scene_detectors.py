"""Scene cuts: precision, recall and offset of each PySceneDetect detector, with and without the cut
refinement at the source frame rate, on generated videos with known cuts and on real footage.

Generated (tests/synth.py): hard cuts between distinct sources at times off the 10 fps analysis grid
(25 and 30 fps sources); cuts between scenes of one pattern in different colours; one continuous shot
with strong motion, a zooming fractal, the game of life, a flash (three white frames), an occlusion (a
dark shape sweeping over most of the picture); slides (black text on white: a new slide, then one
line added to it); a 1.5 s cross-fade (no hard cut: one detection inside
the fade is not counted as false). Real footage (optional: ``--real DIR`` holding Debian's files):
``Megamind.avi`` (opencv-doc; hard cuts at 4.129, 6.465, 8.383 s, the first frames of the new shots)
and ``cockatoo.mp4`` (python3-imageio; one handheld shot, a wing passes over the lens: no cut).

A detection within 0.25 s of a true cut is a hit; the offset (found - true) of hits is printed in ms;
"1f" counts hits within one source frame. Everything goes through the product's decode and segmenter.

Measured (this repo, 2-core CPU shared, bundled ffmpeg 9.0; 22 true cuts, 12 cases): with refinement
every detector has precision 1.00, recall 1.00, all 22 cuts on the new shot's first frame (offset 0 ms);
without refinement (the 10 fps analysis grid alone) the same cuts land 17-80 ms late (mean 46 ms; the
three Megamind cuts +71, +35, +17 ms) and only 10 of 22 within one frame. Before the hold and
sharpness rules (and the still-picture rule) ``content`` had precision 0.73 / recall 0.84 on these
cases: cockatoo became 5 scenes, the flash and the occlusion split their shot, the slide changes and
3 of 5 near-identical colour cuts were missed. Refinement costs one short random-access read per cut.
Default: ``content`` (all four now score the same here; it is PySceneDetect's default).

Refinement "reread" reads each cut window again from the file (one random-access read per cut, as
before); "decode" takes the windows' frames from the decode's own every-frame side stream (what `vqa
index` does now: no second read).

Usage: python bench/scene_detectors.py [--real DIR]
"""

from __future__ import annotations

import argparse
import subprocess
import time
from pathlib import Path

from _common import OUT

from pipelines.stages.ffmpeg_bin import ffmpeg_binary
from pipelines.stages.media import SideStream, decode, probe
from pipelines.stages.segment import DETECTORS, FINE_WIDTH, KEEP_FPS, SceneParams, SceneSegmenter
from tests.synth import make_one_shot_video, make_scenes_video, make_slides_video

HIT = 0.25
SLIDES = [("Welcome to the course\n- what we will cover", 3.04), ("Second topic\n- one more line\n- and another", 2.52),
          ("Second topic\n- one more line\n- and another\n- a line appears", 2.2), ("Questions", 3.0)]
REAL = {"Megamind.avi": [4.129, 6.465, 8.383], "cockatoo.mp4": []}


def fade_video(path: Path, size: str = "320x180") -> tuple[float, float]:
    subprocess.run([ffmpeg_binary(), "-y", "-loglevel", "error", "-f", "lavfi", "-i",
                    f"testsrc2=size={size}:rate=25:duration=5", "-f", "lavfi", "-i",
                    f"smptebars=size={size}:rate=25:duration=5", "-filter_complex",
                    "[0:v][1:v]xfade=transition=fade:duration=1.5:offset=3.5,format=yuv420p[v]", "-map", "[v]",
                    "-c:v", "libx264", "-preset", "ultrafast", str(path)], check=True)
    return 3.5, 5.0


def generated(size: str | None = None) -> dict[str, tuple[Path, list[float], tuple[float, float] | None]]:
    """The generated cases, at their own small sizes, or all at ``size`` (``"1280x720"``: what the side
    stream's small frames are made from on HD sources)."""
    cases: dict[str, tuple[Path, list[float], tuple[float, float] | None]] = {}
    tag = f"_{size}" if size else ""
    kw_size = {"size": size} if size else {}

    def scenes(name: str, durations: list[float], **kw) -> None:
        path = OUT / f"cuts_{name}{tag}.mp4"
        cases[name] = (path, make_scenes_video(path, durations, audio=False, labels=False, **kw_size, **kw), None)

    scenes("distinct 25fps", [3.04, 2.44, 4.0, 1.64, 3.2, 2.12, 2.8, 3.56])
    scenes("distinct 30fps", [2.5, 1.9333333, 3.1, 2.3666667, 2.0], rate=30)
    scenes("new colours", [2.44, 3.2, 2.04, 2.8, 3.64, 2.4],
           sources=["color=c=0x2050c0", "color=c=0x3060d0", "color=c=0xc05020", "color=c=0xd06030",
                    "color=c=0x20a040", "color=c=0x30b050"])
    for name, src in (("motion", "testsrc2"), ("zooming fractal", "mandelbrot"), ("game of life", "life")):
        scenes(name, [8.0], sources=[src])
    for event in ("flash", "occlusion"):
        path = OUT / f"cuts_{event}{tag}.mp4"
        cases[event] = (make_one_shot_video(path, event, **kw_size), [], None)
    slides = OUT / f"cuts_slides{tag}.mp4"
    cases["slides"] = (slides, make_slides_video(slides, SLIDES, **kw_size), None)
    fade = OUT / f"cuts_crossfade{tag}.mp4"
    cases["cross-fade"] = (fade, [], fade_video(fade, size or "320x180"))
    return cases


def decoded(path: Path, info) -> list[tuple[str, float, object]]:
    """What `vqa index` gives the segmenter from its one decode, in the order it gives it: ("keep", t, frame)
    for the sampled frames (384 px, ``KEEP_FPS``), ("grid", t, small) for the small frames on the analysis
    grid, ("fine", t, small) for every frame of the source."""
    events: list = []
    side = SideStream(SceneParams().width, lambda t, f: events.append(("fine", t, f)), fps=SceneParams().fps,
                      sampled=lambda t, f: events.append(("grid", t, f)), feed_width=FINE_WIDTH)
    for t, f in decode(str(path), fps=KEEP_FPS, width=384, info=info, side=side):
        events.append(("keep", t, f))
    return events


def segment(path: Path, events: list, duration: float, params: SceneParams,
            refine: str) -> tuple[list[float], float, int]:
    """``refine``: "no" (the analysis grid alone), "reread" (each cut window read again from the file, as
    before), "decode" (the windows' frames from the decode's own every-frame side stream, as `vqa index`
    does now). ``events``: from ``decoded``, replayed in their order."""
    t0 = time.perf_counter()
    seg = SceneSegmenter(params, source=str(path) if refine != "no" else None)
    for kind, t, f in events:
        if kind == "grid":
            seg.analyse(t, f)
        elif kind == "keep":
            seg.keep(t, f)
        elif refine == "decode":
            seg.fine(t, f)
    found = [s.start for s in seg.finish(duration)[1:]]
    return found, time.perf_counter() - t0, seg.reread


def score(found: list[float], cuts: list[float], fade: tuple[float, float] | None, frame: float):
    hits, offsets = 0, []
    for c in cuts:
        near = [f for f in found if abs(f - c) <= HIT]
        if near:
            hits += 1
            offsets.append(min(near, key=lambda f: abs(f - c)) - c)
    false = [f for f in found if not any(abs(f - c) <= HIT for c in cuts)]
    if fade:
        inside = [f for f in false if fade[0] - HIT <= f <= fade[1] + HIT]
        false = [f for f in false if f not in inside[:1]]
    one_frame = sum(abs(o) <= frame + 1e-6 for o in offsets)
    return hits, len(false), len(cuts) - hits, offsets, one_frame


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--real", type=Path, help="folder with Megamind.avi and/or cockatoo.mp4")
    args = ap.parse_args()
    cases = generated()
    if args.real:
        for name, cuts in REAL.items():
            if (args.real / name).exists():
                cases[f"real {name}"] = (args.real / name, cuts, None)
    events = {}
    for name, (path, _, _) in cases.items():
        info = probe(str(path))
        events[name] = (info, decoded(path, info))
    settings = [(det, None) for det in DETECTORS]
    print(f"{'detector':<10} {'refine':<6} {'case':<22} {'TP':>3} {'FP':>3} {'FN':>3} {'1f':>3}  offsets ms")
    totals = {}
    for det, thr in settings:
        for refine in ("no", "reread", "decode"):
            tp_all = fp_all = fn_all = one_all = 0
            offs_all: list[float] = []
            ms = 0.0
            reread = 0
            for name, (path, cuts, fade) in cases.items():
                info, evs = events[name]
                found, secs, again = segment(path, evs, info.duration,
                                             SceneParams(detector=det, threshold=thr), refine)
                reread += again
                tp, fp, fn, offs, one = score(found, cuts, fade, 1.0 / max(info.fps, 1.0))
                tp_all, fp_all, fn_all, one_all = tp_all + tp, fp_all + fp, fn_all + fn, one_all + one
                offs_all += offs
                ms += 1000 * secs / max(sum(k == "grid" for k, _, _ in evs), 1)
                shown = " ".join(f"{1000 * o:+.0f}" for o in offs)
                print(f"{det:<10} {refine:<6} {name:<22} {tp:>3} {fp:>3} {fn:>3} {one:>3}  {shown}")
            p = tp_all / max(tp_all + fp_all, 1)
            r = tp_all / max(tp_all + fn_all, 1)
            mean = 1000 * sum(abs(o) for o in offs_all) / max(len(offs_all), 1)
            worst = 1000 * max((abs(o) for o in offs_all), default=0.0)
            totals[(det, refine)] = (p, r, one_all, tp_all, mean, worst, ms / len(cases), reread)
    print()
    for (det, refine), (p, r, one, tp, mean, worst, ms, reread) in totals.items():
        print(f"{det:<10} refine {refine:<6}  precision {p:.2f}  recall {r:.2f}  "
              f"within 1 frame {one}/{tp}  |offset| mean {mean:.0f} ms, max {worst:.0f} ms  {ms:.2f} ms/frame"
              f"  windows re-read {reread}")


if __name__ == "__main__":
    main()
