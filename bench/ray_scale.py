"""`--engine ray` against `--jobs 2` on one machine (the engine's overhead), and the single writer's rate.

1. Throughput (video seconds indexed per wall second) of ``vqa index FOLDER --profile tiny --jobs 2`` and
   of ``vqa index FOLDER --profile tiny --engine ray --address ADDR`` on the same generated videos (cached
   under bench/out/), each on a fresh database, best of ``--repeat`` interleaved runs, printed with their
   ratio. The Ray cluster (``ray start --head --num-cpus N``) is started once before the runs and
   stopped after them (``ray stop``: every Ray process of this user on this machine); its start time is
   printed apart, since a cluster outlives the commands sent to it. Each ray run includes its workers'
   start and model loading, as a user sees it.
2. `vqa eval`: items (question x method) answered per wall second, locally and with ``--engine ray``
   (``--workers`` actors), on the same already-indexed database: ``--questions`` multiple-choice questions
   per video, methods uniform, topk and vqa, the tiny answerer; each run a fresh process on a fresh
   results file, the workers' start and model loading included.
3. The one writer: rows per second (and MB/s) that :func:`pipelines.engines.transfer.import_video` commits
   into a fresh database on this disk, for what a worker sends back for one hour of video under the
   default profile (3,600 frames with 768-d embeddings and 256-px thumbnails, 240 scenes and captions,
   1,400 timed lines and their 384-d sentence vectors), ``--hours`` such videos.

Usage: python bench/ray_scale.py [--videos 12] [--seconds 20] [--workers 2] [--repeat 2] [--hours 4]
       [--questions 2] [--eval-only]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import MODELS, bench_env, index_fresh, run_measured, vqa_cmd
from batch import batch_videos

RAY_PORT = 6391  # not Ray's default, so that the bench's head node is its own


def ray_cli() -> str:
    found = shutil.which("ray", path=str(Path(sys.executable).parent)) or shutil.which("ray")
    if not found:
        raise SystemExit("this bench needs Ray: pip install 'vqa[ray]'")
    return found


def start_cluster(cpus: int) -> tuple[str, float]:
    # Ray >= 2.5x: a cluster started where a token exists (~/.ray/auth_token) requires it; a client connecting
    # by address sends it only in token mode. Both sides in token mode (a token is made if there is none).
    os.environ.setdefault("RAY_AUTH_MODE", "token")
    env = bench_env(Path(tempfile.mkdtemp(prefix="vqa-bench-ray-")))
    t0 = time.perf_counter()
    subprocess.run([ray_cli(), "start", "--head", f"--port={RAY_PORT}", f"--num-cpus={cpus}", "--num-gpus=0",
                    "--include-dashboard=false", "--disable-usage-stats"], check=True, env=env,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return f"127.0.0.1:{RAY_PORT}", time.perf_counter() - t0


def stop_cluster() -> None:
    subprocess.run([ray_cli(), "stop"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


# -- the writer ---------------------------------------------------------------------------------------------
def hour_of_rows(video: int) -> dict:
    """What a worker sends back for one hour of video under the default profile (sizes as there)."""
    import numpy as np

    from index.keys import run_key, to_blob
    from pipelines.stages.stills import to_jpeg

    rng = np.random.default_rng(video)
    vid = f"{video:032x}"
    frame = np.zeros((144, 256, 3), np.uint8)
    frame[:] = rng.integers(0, 255, (1, 256, 3), dtype=np.uint8)  # stripes: a plausible thumbnail size
    frame[40:100, 60:200] = rng.integers(0, 255, (60, 140, 3), dtype=np.uint8) // 8 * 8
    jpeg = to_jpeg(frame, 256)
    keys = {s: run_key(vid, s, "bench", {}) for s in ("scenes", "frames", "captions", "transcript", "ocr", "textvec")}
    now = time.time()
    runs = [(k, vid, s, "bench", "bench", "{}", "done", 1, "bench", now, now, 0.0, "{}", None) for s, k in keys.items()]
    unit = lambda n: rng.standard_normal(n).astype(np.float32)  # noqa: E731
    frames = [(keys["frames"], i, float(i), to_blob(unit(768)), jpeg) for i in range(3600)]
    scenes = [(keys["scenes"], i, 15.0 * i, 15.0 * i + 15, 15.0 * i + 7.5, jpeg) for i in range(240)]
    captions = [(keys["captions"], i, 15.0 * i, 15.0 * i + 15, f"a person does thing {i} in a room") for i in range(240)]
    texts = [(keys["transcript"] if i < 900 else keys["ocr"] if i < 1160 else keys["captions"], i, vid,
              "speech" if i < 900 else "screen" if i < 1160 else "caption", 2.5 * i, 2.5 * i + 2.4,
              f"and then we said something about item {i} near the gate", 0.9, None) for i in range(1400)]
    tvec = [(keys["textvec"], t[0], t[1], to_blob(unit(384))) for t in texts]
    cols = {"runs": ["key", "video_id", "stage", "model", "model_fp", "params", "status", "pid", "host",
                     "started_at", "finished_at", "seconds", "stats", "error"],
            "frames": ["run_key", "idx", "t", "embedding", "jpeg"],
            "scenes": ["run_key", "idx", "start", "end", "rep_t", "rep_jpeg"],
            "captions": ["run_key", "scene_idx", "start", "end", "text"],
            "texts": ["run_key", "idx", "video_id", "source", "start", "end", "text", "confidence", "box"],
            "text_vectors": ["run_key", "text_run", "idx", "embedding"]}
    video_row = (vid, f"/videos/{video}.mp4", 10**9, 3600.0, 30.0, 1280, 720, "h264", 0, 1, "aac", now, now)
    return {"videos": (["id", "path", "size", "duration", "fps", "width", "height", "codec", "rotation",
                        "has_audio", "audio_codec", "created_at", "updated_at"], [video_row]),
            "video_paths": (["path", "video_id", "size", "mtime_ns", "seen_at"],
                            [(f"/videos/{video}.mp4", vid, 10**9, 0, now)]),
            "runs": (cols["runs"], runs), "frames": (cols["frames"], frames), "scenes": (cols["scenes"], scenes),
            "captions": (cols["captions"], captions), "texts": (cols["texts"], texts),
            "text_vectors": (cols["text_vectors"], tvec)}


def writer_rate(hours: int) -> tuple[float, float, int, float]:
    """(rows per second, MB per second, rows and MB per hour of video) of the driver's import on this disk."""
    from index.store import Store
    from pipelines.engines.transfer import import_video, row_count

    payloads = [hour_of_rows(i) for i in range(hours)]
    nbytes = sum(len(v) for p in payloads for _, rows in p.values() for r in rows for v in r
                 if isinstance(v, (bytes, str)))
    folder = Path(tempfile.mkdtemp(prefix="vqa-bench-writer-"))
    try:
        store = Store(folder / "vqa.db")
        t0 = time.perf_counter()
        rows = sum(import_video(store, p) for p in payloads)
        wall = time.perf_counter() - t0
        store.close()
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return rows / wall, nbytes / wall / 1e6, row_count(payloads[0]), nbytes / hours / 1e6


def eval_walls(folder: Path, address: str, questions: int, repeat: int) -> tuple[int, float, float]:
    """(items, best local wall, best ray wall) of `vqa eval` over ``folder``'s videos, indexed once first."""
    home = Path(tempfile.mkdtemp(prefix="vqa-bench-eval-"))
    try:
        env, db = bench_env(home), str(home / "vqa.db")
        wall, _, rc = run_measured([*vqa_cmd(), "index", str(folder), "--db", db, "--profile", "tiny", "--jobs", "2"],
                                   env=env)
        if rc != 0:
            raise SystemExit(f"vqa index {folder} failed (exit {rc})")
        asks = [("Which pattern fills the screen?", ["colour bars", "a fractal", "a test pattern"]),
                ("Is there any text on screen?", ["yes", "no"]), ("What colour dominates?", ["red", "green", "blue"])]
        bench = home / "bench.jsonl"
        with bench.open("w") as f:
            for v in sorted(folder.glob("*.mp4")):
                for q in range(questions):
                    question, options = asks[q % len(asks)]
                    f.write(json.dumps({"id": f"{v.stem}-{q}", "video": str(v), "question": question,
                                        "options": options, "answer": "A"}) + "\n")
        items = sum(1 for _ in bench.open()) * 3
        base = [*vqa_cmd(), "eval", str(bench), "--db", db, "--profile", "tiny", "--frames", "4", "--no-resume",
                "--no-progress"]
        walls = {"local": float("inf"), "ray": float("inf")}
        for _ in range(repeat):
            for name, extra in (("local", []), ("ray", ["--engine", "ray", "--address", address])):
                wall, _, rc = run_measured([*base, "--out", str(home / f"{name}.jsonl"), *extra], env=env)
                if rc != 0:
                    raise SystemExit(f"vqa eval ({name}) failed (exit {rc})")
                walls[name] = min(walls[name], wall)
        return items, walls["local"], walls["ray"]
    finally:
        shutil.rmtree(home, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--videos", type=int, default=12)
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--size", default="640x360")
    ap.add_argument("--workers", type=int, default=2, help="Ray workers, and the CPUs the cluster gets.")
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--hours", type=int, default=4, help="Hours of video the writer bench imports.")
    ap.add_argument("--writer-only", action="store_true", help="Only the writer's rate (no Ray needed).")
    ap.add_argument("--questions", type=int, default=2, help="`vqa eval` questions per video.")
    ap.add_argument("--eval-only", action="store_true", help="Only the `vqa eval` comparison.")
    a = ap.parse_args()

    if a.writer_only:
        return print_writer(a.hours)
    os.environ.update(HF_HUB_OFFLINE="1", VQA_MODELS=str(MODELS))
    folder, total = batch_videos(a.videos, a.seconds, a.size)
    warm, _ = batch_videos(1, 2.0, a.size)
    index_fresh(warm, "--profile", "tiny")  # builds the tiny models and warms the page cache
    address, start_s = start_cluster(a.workers)
    walls = {"jobs": float("inf"), "ray": float("inf")}
    try:
        for _ in range(0 if a.eval_only else a.repeat):
            walls["jobs"] = min(walls["jobs"], index_fresh(folder, "--profile", "tiny", "--jobs", "2")[0])
            walls["ray"] = min(walls["ray"], index_fresh(folder, "--profile", "tiny", "--engine", "ray",
                                                         "--address", address, "--jobs", str(a.workers))[0])
        items, eval_local, eval_ray = eval_walls(folder, address, a.questions, a.repeat)
    finally:
        stop_cluster()
    print(f"videos: {a.videos} x {a.seconds:g} s ({a.size}), {total:g} video seconds; profile tiny; "
          f"{os.cpu_count()} CPUs")
    print(f"ray start --head --num-cpus {a.workers}: {start_s:.1f} s (once per cluster, not in the runs)")
    if not a.eval_only:
        print(f"--jobs 2               : {walls['jobs']:7.1f} s wall -> {total / walls['jobs']:6.2f} video s per wall s")
        print(f"--engine ray ({a.workers} workers): {walls['ray']:7.1f} s wall -> {total / walls['ray']:6.2f} video s per wall s")
        print(f"throughput ratio ray / jobs 2: {walls['jobs'] / walls['ray']:.2f}")
    print(f"vqa eval, {items} items (uniform, topk, vqa; tiny answerer): local {eval_local:.1f} s -> "
          f"{items / eval_local:.2f} items/s; --engine ray ({a.workers} workers) {eval_ray:.1f} s -> "
          f"{items / eval_ray:.2f} items/s; ratio ray / local {eval_local / eval_ray:.2f}")
    if not a.eval_only:
        print_writer(a.hours)


def print_writer(hours: int) -> None:
    rate, mbs, per_hour, mb_hour = writer_rate(hours)
    print(f"single writer: {rate:,.0f} rows/s ({mbs:.0f} MB/s) importing {hours} h of default-profile rows "
          f"({per_hour:,} rows, {mb_hour:.0f} MB per hour of video) -> {rate * 3600 / per_hour:,.0f} video hours "
          "per writer hour")


if __name__ == "__main__":
    main()
