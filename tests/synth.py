"""Videos made with ffmpeg's lavfi sources, with known cut times (used by the tests and bench/)."""

from __future__ import annotations

import subprocess
from pathlib import Path

from pipelines.stages.media import ffmpeg_binary

# Visually distinct sources: hard cuts between any two of them are unambiguous.
SOURCES = ["testsrc2", "smptebars", "mandelbrot", "rgbtestsrc", "color=c=0x2050c0", "cellauto",
           "color=c=0xd03020", "pal100bars", "life", "color=c=0x30a040"]
COLORS = ["0xd02020", "0x20a040", "0x2040d0", "0xe0c020", "0x9020b0", "0x20b0c0", "0xf07010", "0x808080"]


def _run(cmd: list[str]) -> None:
    proc = subprocess.run(cmd, capture_output=True)
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr.decode("utf-8", "replace")[-2000:])


def make_scenes_video(path: str | Path, durations: list[float], *, size: str = "320x180", rate: int = 25,
                      audio: bool = True, labels: bool = True, sources: list[str] | None = None,
                      crf: int = 30, preset: str = "ultrafast") -> list[float]:
    """Concatenate one source per scene; return the cut times (seconds)."""
    sources = sources or SOURCES
    cmd = [ffmpeg_binary(), "-y", "-hide_banner", "-loglevel", "error"]
    for i, d in enumerate(durations):
        src = sources[i % len(sources)]
        sep = ":" if "=" in src else "="
        cmd += ["-f", "lavfi", "-t", f"{d}", "-i", f"{src}{sep}size={size}:rate={rate}"]
    if audio:
        for i, d in enumerate(durations):
            cmd += ["-f", "lavfi", "-i", f"sine=frequency={300 + 110 * i}:sample_rate=16000:duration={d}"]
    n = len(durations)
    parts = []
    for i in range(n):
        chain = f"[{i}:v]format=yuv420p,setsar=1"
        if labels:
            chain += (f",drawtext=text='SCENE {i + 1}':fontsize=24:fontcolor=white:box=1:boxcolor=black"
                      ":x=10:y=10")
        parts.append(chain + f"[v{i}]")
    ins = "".join(f"[v{i}]" + (f"[{n + i}:a]" if audio else "") for i in range(n))
    graph = ";".join(parts) + f";{ins}concat=n={n}:v=1:a={1 if audio else 0}[v]" + ("[a]" if audio else "")
    cmd += ["-filter_complex", graph, "-map", "[v]"]
    if audio:
        cmd += ["-map", "[a]", "-c:a", "aac", "-b:a", "32k"]
    cmd += ["-c:v", "libx264", "-preset", preset, "-crf", str(crf), "-pix_fmt", "yuv420p", str(path)]
    _run(cmd)
    cuts, t = [], 0.0
    for d in durations[:-1]:
        t += d
        cuts.append(round(t, 6))
    return cuts


def make_color_video(path: str | Path, durations: list[float], *, size: str = "160x90", rate: int = 30,
                     vfr: bool = False) -> list[tuple[float, float, str]]:
    """Solid colour scenes; with ``vfr`` the frame rate changes within the file (30 fps, then every
    third frame dropped from 1 s on), so frame index / average fps would give wrong times.
    Returns (start, end, colour) per scene."""
    cmd = [ffmpeg_binary(), "-y", "-hide_banner", "-loglevel", "error"]
    for i, d in enumerate(durations):
        cmd += ["-f", "lavfi", "-i", f"color=c={COLORS[i % len(COLORS)]}:size={size}:rate={rate}:duration={d}"]
    n = len(durations)
    graph = "".join(f"[{i}:v]" for i in range(n)) + f"concat=n={n}:v=1:a=0[c]"
    if vfr:
        graph += ";[c]select='lt(t\\,1)+not(mod(n\\,3))'[v]"
    else:
        graph += ";[c]null[v]"
    cmd += ["-filter_complex", graph, "-map", "[v]"]
    if vfr:
        cmd += ["-fps_mode", "vfr"]
    cmd += ["-c:v", "libx264", "-preset", "ultrafast", "-crf", "18", "-pix_fmt", "yuv420p", str(path)]
    _run(cmd)
    out, t = [], 0.0
    for i, d in enumerate(durations):
        out.append((t, t + d, COLORS[i % len(COLORS)]))
        t += d
    return out


def hex_rgb(color: str) -> tuple[int, int, int]:
    v = int(color, 16)
    return (v >> 16) & 255, (v >> 8) & 255, v & 255
