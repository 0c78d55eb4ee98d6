"""Which ffmpeg binary vqa runs, and its version.

Order: ``VQA_FFMPEG`` (a path or a command name) if set; else the ``ffmpeg`` on PATH when it is at least
``MIN_VERSION``; else the binary that the ``imageio-ffmpeg`` package ships; a PATH ffmpeg older than
``MIN_VERSION`` is used only when no bundled binary exists. ``vqa doctor`` prints the choice and why.
"""

from __future__ import annotations

import functools
import os
import re
import shutil
import subprocess
from dataclasses import dataclass

from pipelines.errors import MediaError

# What vqa's command lines need (protocol_whitelist, -copyts/-start_at_zero, -noaccurate_seek, the fps
# filter's round/eof_action, the h264 decoder's x264_build): all present from 4.2 on; tested with 4.2,
# 5.1 (Debian 12) and 9.0.
MIN_VERSION = (4, 2)
# libavcodec major -> ffmpeg release, for builds whose version string is a git hash
_LAVC_TO_RELEASE = {56: (2, 8), 57: (3, 4), 58: (4, 4), 59: (5, 1), 60: (6, 1), 61: (7, 1), 62: (8, 0)}


@dataclass(frozen=True)
class FFmpeg:
    path: str
    version: str  # as the binary prints it, e.g. "5.1.9-0+deb12u1"
    release: tuple[int, int] | None  # (major, minor), None when it cannot be told
    source: str  # "VQA_FFMPEG", "PATH" or "bundled (imageio-ffmpeg)"
    note: str = ""  # why this one (e.g. the PATH ffmpeg that was passed over)

    def describe(self) -> str:
        out = f"ffmpeg {self.version} ({self.path}, from {self.source})"
        return out + (f"; {self.note}" if self.note else "")


def version_of(path: str) -> tuple[str, tuple[int, int] | None]:
    """The version string and (major, minor) of an ffmpeg binary; MediaError when it does not run."""
    try:
        proc = subprocess.run([path, "-hide_banner", "-version"], capture_output=True, text=True, timeout=20,
                              stdin=subprocess.DEVNULL)
    except (OSError, subprocess.SubprocessError) as e:
        raise MediaError(f"cannot run ffmpeg: {e}", path) from e
    out = proc.stdout or ""
    m = re.search(r"ffmpeg version (\S+)", out)
    if proc.returncode != 0 or not m:
        raise MediaError("not a working ffmpeg (its -version printed no version)", path)
    text = m.group(1)
    rel = re.match(r"n?(\d+)\.(\d+)", text)
    if rel:
        return text, (int(rel.group(1)), int(rel.group(2)))
    lavc = re.search(r"libavcodec\s+(\d+)\.", out)
    return text, _LAVC_TO_RELEASE.get(int(lavc.group(1))) if lavc else None


def _bundled() -> str | None:
    try:
        import imageio_ffmpeg
    except ImportError:  # pragma: no cover - imageio-ffmpeg is a dependency
        return None
    try:
        return imageio_ffmpeg.get_ffmpeg_exe()
    except RuntimeError:
        return None


@functools.lru_cache(maxsize=1)
def ffmpeg_choice() -> FFmpeg:
    explicit = os.environ.get("VQA_FFMPEG")
    if explicit:
        path = shutil.which(explicit) or explicit
        if not os.path.isfile(path):
            raise MediaError(f"VQA_FFMPEG names no such file or command: {explicit}")
        text, rel = version_of(path)
        note = "" if rel is None or rel >= MIN_VERSION else f"older than {_v(MIN_VERSION)}, which vqa is tested with"
        return FFmpeg(path, text, rel, "VQA_FFMPEG", note)
    found = shutil.which("ffmpeg")
    passed_over = ""
    if found:
        try:
            text, rel = version_of(found)
        except MediaError as e:
            text, rel, passed_over = "", None, f"the ffmpeg on PATH ({found}) does not run: {e}"
        if not passed_over:
            if rel is None or rel >= MIN_VERSION:
                return FFmpeg(found, text, rel, "PATH")
            passed_over = f"the ffmpeg on PATH ({found}, {text}) is older than {_v(MIN_VERSION)}"
    bundled = _bundled()
    if bundled:
        text, rel = version_of(bundled)
        return FFmpeg(bundled, text, rel, "bundled (imageio-ffmpeg)", passed_over)
    if found and not passed_over.endswith("does not run"):
        text, rel = version_of(found)
        return FFmpeg(found, text, rel, "PATH", f"older than {_v(MIN_VERSION)} and no bundled binary: may fail")
    raise MediaError("ffmpeg not found: install ffmpeg (>= 4.2) or the imageio-ffmpeg package, or set VQA_FFMPEG")


def _v(rel: tuple[int, int]) -> str:
    return f"{rel[0]}.{rel[1]}"


def ffmpeg_binary() -> str:
    """The path of the ffmpeg binary vqa runs (see the module's docstring)."""
    return ffmpeg_choice().path


def ffprobe_binary() -> str | None:
    return shutil.which("ffprobe")
