"""Helpers shared by the benchmark scripts: generated videos (cached under bench/out/) and timing of
child processes with their peak memory."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
OUT = ROOT / "bench" / "out"
OUT.mkdir(parents=True, exist_ok=True)
MODELS = Path(tempfile.gettempdir()) / "vqa-bench-models"  # models vqa builds, shared by runs (outside timings)

from tests.synth import make_scenes_video  # noqa: E402


def long_video(minutes: float, size: str = "1280x720", rate: int = 30, scene_s: float = 15.0) -> Path:
    """A generated video of ``minutes`` with a hard cut every ``scene_s`` seconds (cached)."""
    path = OUT / f"long_{minutes:g}min_{size}_{rate}fps.mp4"
    if not path.exists():
        n = max(1, int(round(minutes * 60 / scene_s)))
        tmp = path.with_suffix(".tmp.mp4")
        make_scenes_video(tmp, [scene_s] * n, size=size, rate=rate, audio=True, labels=True, crf=28,
                          preset="ultrafast")
        os.replace(tmp, path)
    return path


def run_measured(cmd: list[str], env: dict | None = None) -> tuple[float, int, int]:
    """(wall seconds, peak RSS in MiB of the child, exit code)."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    err = proc.stderr.read().decode("utf-8", "replace") if proc.stderr else ""
    if proc.returncode != 0:
        print(err[-2000:], file=sys.stderr)
    return wall, usage.ru_maxrss // 1024, proc.returncode


def bench_env(home: Path) -> dict:
    env = dict(os.environ)
    env.update(HF_HUB_OFFLINE="1", VQA_HOME=str(home), VQA_MODELS=str(MODELS))
    return env


def index_fresh(target: Path, *args: str, env: dict | None = None) -> tuple[float, int]:
    """``vqa index TARGET ARGS...`` on a fresh database (``env``: more environment): (wall seconds, peak RSS
    MiB); exits on failure."""
    home = Path(tempfile.mkdtemp(prefix="vqa-bench-"))
    try:
        wall, rss, rc = run_measured([*vqa_cmd(), "index", str(target), "--db", str(home / "vqa.db"), *args],
                                     env={**bench_env(home), **(env or {})})
        if rc != 0:
            raise SystemExit(f"vqa index {target} {' '.join(args)} failed (exit {rc})")
        return wall, rss
    finally:
        shutil.rmtree(home, ignore_errors=True)


def vqa_cmd() -> list[str]:
    return [sys.executable, "-m", "vqa_cli.app"]
