"""Needle-in-a-haystack sets for bench/search_quality.py, drawn from a toy world (a renderer of coloured
shapes, ``world.py``, given by --toyworld): long videos of drifting shapes joined by hard cuts, one
short needle shot showing an object that appears nowhere else, and distractor shots that share its
colour or its shape.

    python bench/search_haystacks.py --toyworld DIR --out OUT --seed 11 [--n 10] [--scale 0.5]
        [--needle-objects 1|2|3|mixed] [--only 9]

``--needle-objects 3``: the needle is one of three objects in its shot (smaller, among others: what
whole-frame CLIP ranks low); ``1``: it is alone; ``mixed``: 1-3 like every other shot. Writes OUT/*.mp4,
OUT/truth.json (needle interval, object, objects in the needle shot) and OUT/bench.jsonl in the native
evaluation format (a "when" item and a multiple-choice "which" item per video). A measuring tool only.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

FPS = 10
W, H = 320, 180
# (minutes, needle seconds): needles from wide to narrower than the 1 fps index interval
PLAN = [(3, 2.0), (4, 0.7), (6, 1.0), (6, 0.5), (8, 3.0), (10, 0.6), (10, 1.5), (12, 0.8), (15, 2.5), (20, 0.9),
        (5, 0.4), (7, 1.2)]


def load_module(folder: Path, name: str):
    spec = importlib.util.spec_from_file_location(name, folder / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod


def ffmpeg_exe() -> str:
    try:
        import imageio_ffmpeg
        return imageio_ffmpeg.get_ffmpeg_exe()
    except ImportError:
        return "ffmpeg"


def shot_plan(rng, total: float, needle_s: float) -> tuple[list[float], int]:
    durs: list[float] = []
    while sum(durs) < total - needle_s:
        durs.append(float(np.round(rng.uniform(4, 40) * FPS) / FPS))
    durs[-1] = round(total - needle_s - sum(durs[:-1]), 1)
    if durs[-1] < 2 and len(durs) > 1:
        last = durs.pop()
        durs[-1] = round(durs[-1] + last, 1)
    k = int(rng.integers(1, max(len(durs), 2)))
    durs.insert(k, needle_s)
    return durs, k


def make_video(world, vid: str, out: Path, rng, seconds: float, needle_s: float, needle_objects: str) -> dict:
    needle = (world.COLOR_NAMES[int(rng.integers(8))], world.SHAPES[int(rng.integers(8))])
    others = [(c, s) for c in world.COLOR_NAMES for s in world.SHAPES if (c, s) != needle]
    near = [p for p in others if (p[0] == needle[0]) != (p[1] == needle[1])]
    durs, k_needle = shot_plan(rng, seconds, needle_s)
    path = out / f"{vid}.mp4"
    cmd = [ffmpeg_exe(), "-v", "error", "-y", "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{W}x{H}",
           "-r", str(FPS), "-i", "-", "-c:v", "libx264", "-preset", "veryfast", "-crf", "23",
           "-pix_fmt", "yuv420p", "-g", "250", str(path)]
    proc = subprocess.Popen(cmd, stdin=subprocess.PIPE)
    t, shots, needle_shot = 0.0, [], None
    for i, d in enumerate(durs):
        n_obj = 1 + int(rng.choice(3, p=[0.45, 0.35, 0.2]))
        if i == k_needle:
            forced = [needle]
            if needle_objects != "mixed":
                n_obj = int(needle_objects)
        elif rng.random() < 0.5:
            forced = [near[int(rng.integers(len(near)))]]
        else:
            forced = []
        for _ in range(100):
            sc = world.random_scene(rng, n_objects=n_obj, width=W, height=H, forced=forced)
            if i == k_needle or needle not in {(o.color, o.shape) for o in sc.objects}:
                break
        bg = world.render_background(sc.background, W, H)
        n = int(round(d * FPS))
        vel = rng.uniform(-3, 3, (len(sc.objects), 2))
        spin = rng.uniform(-6, 6, len(sc.objects))
        for f in range(n):
            s = f / FPS
            fr = world.moved(sc, vel[:, 0] * s, vel[:, 1] * s, spin * s)
            proc.stdin.write(np.asarray(world.render(fr, bg), dtype=np.uint8).tobytes())
        shot = {"start": round(t, 2), "end": round(t + n / FPS, 2),
                "objects": [world.object_phrase(o) for o in sc.objects]}
        if i == k_needle:
            needle_shot = {**shot, "radius": round(float(sc.objects[0].r), 1)}
        shots.append(shot)
        t += n / FPS
    proc.stdin.close()
    if proc.wait() != 0:
        raise RuntimeError(f"ffmpeg failed for {path}")
    phrase = f"{world.article(needle[0])} {needle[0]} {needle[1]}"
    return {"id": vid, "video": path.name, "duration": round(t, 2), "fps": FPS, "needle": phrase,
            "needle_start": needle_shot["start"], "needle_end": needle_shot["end"], "needle_seconds": needle_s,
            "needle_objects": len(needle_shot["objects"]), "needle_radius": needle_shot["radius"],
            "shots": len(shots), "cuts": [s["start"] for s in shots[1:]]}


def bench_items(truth: dict, rng, colors, shapes) -> list[dict]:
    c, s = truth["needle"].split()[-2:]
    ev = [truth["needle_start"], truth["needle_end"]]
    extra = {"evidence": ev, "duration": truth["duration"], "needle_objects": truth["needle_objects"]}
    items = [{"id": f"{truth['id']}-when", "video": truth["video"], "question": f"When does the {c} {s} appear?",
              "options": [], "answer": "", "task": "temporal", **extra}]
    wrong: list[str] = []
    while len(wrong) < 3:
        oc, os_ = colors[int(rng.integers(8))], shapes[int(rng.integers(8))]
        if (oc, os_) != (c, s) and (oc == c or os_ == s) and f"{oc} {os_}" not in wrong:
            wrong.append(f"{oc} {os_}")
    opts = wrong + [f"{c} {s}"]
    order = rng.permutation(4)
    opts = [opts[i] for i in order]
    items.append({"id": f"{truth['id']}-which", "video": truth["video"],
                  "question": "Which of these objects is shown at some point in the video?",
                  "options": [f"{L}. {o}" for L, o in zip("ABCD", opts, strict=True)],
                  "answer": "ABCD"[list(order).index(3)], "task": "multiple-choice", **extra})
    return items


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--toyworld", required=True, type=Path, help="folder holding world.py")
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--seed", type=int, required=True)
    ap.add_argument("--n", type=int, default=10, help=f"videos (at most {len(PLAN)})")
    ap.add_argument("--scale", type=float, default=1.0, help="multiply every video's length")
    ap.add_argument("--only", type=int, nargs="*", help="only these videos of the plan (0-based), e.g. 9 "
                                                         "with --scale 1.5 for one 30-minute video")
    ap.add_argument("--needle-objects", default="mixed", choices=("mixed", "1", "2", "3"))
    args = ap.parse_args()
    world = load_module(args.toyworld, "world")
    args.out.mkdir(parents=True, exist_ok=True)
    truths, items = [], []
    for i, (minutes, needle_s) in enumerate(PLAN[:args.n]):
        if args.only is not None and i not in args.only:
            continue
        rng = np.random.default_rng([args.seed, i])
        tr = make_video(world, f"s{args.seed}v{i:02d}", args.out, rng, minutes * 60 * args.scale, needle_s,
                        args.needle_objects)
        truths.append(tr)
        items += bench_items(tr, rng, world.COLOR_NAMES, world.SHAPES)
        print(json.dumps({k: tr[k] for k in ("id", "duration", "needle", "needle_start", "needle_end",
                                              "needle_objects")}), flush=True)
    (args.out / "truth.json").write_text(json.dumps(truths, indent=1))
    with open(args.out / "bench.jsonl", "w") as f:
        for it in items:
            f.write(json.dumps(it) + "\n")


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    main()
