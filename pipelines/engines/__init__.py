"""How work is dispatched: ``local`` (this process; ``--jobs N`` threads, see :mod:`pipelines.batch`) or
``ray`` (a Ray cluster: :mod:`pipelines.engines.ray_engine` for `vqa index`, :mod:`pipelines.engines.ray_ask`
for `vqa ask --batch`, :mod:`pipelines.engines.ray_eval` for `vqa eval`; :mod:`~pipelines.engines.cluster` reaches the cluster and holds the actors,
:mod:`~pipelines.engines.worker` is what runs in them, :mod:`~pipelines.engines.transfer` moves rows
between their scratch stores and the one database). Nothing here imports Ray until a command asks for it."""

from __future__ import annotations

from pipelines.errors import UsageError, VqaError

ENGINES = ("local", "ray")
INSTALL_HINT = "pip install 'vqa[ray]'"


def check_engine(name: str) -> str:
    if name not in ENGINES:
        raise UsageError(f"unknown --engine '{name}' (choose from {', '.join(ENGINES)})")
    return name


def ray_module():
    """The ``ray`` package, or one line saying how to install it."""
    try:
        import ray
    except ImportError:
        raise VqaError(f"--engine ray needs Ray, which is not installed: {INSTALL_HINT}") from None
    return ray


def progress_line(done: int, total: int, video_seconds: float | None, elapsed: float, failed: int = 0) -> str:
    """One progress line for work spread over a cluster: videos (or items) done of all, the video time
    they held and its rate (when given), and the time left at the rate so far."""
    left = (total - done) * elapsed / done if done else None
    eta = "?" if left is None else _clock(left)
    fails = f", {failed} failed" if failed else ""
    if video_seconds is None:
        return f"[{done}/{total}{fails}] in {_clock(elapsed)}, ETA {eta}"
    rate = video_seconds / elapsed if elapsed > 0 else 0.0
    return (f"[{done}/{total}{fails}] {video_seconds:.0f} s of video in {_clock(elapsed)} "
            f"({rate:.1f} video-s/s), ETA {eta}")


def _clock(seconds: float) -> str:
    s = int(round(seconds))
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}"
