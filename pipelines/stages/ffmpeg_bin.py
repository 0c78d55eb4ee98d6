"""Which ffmpeg binary vqa runs, and its version.

Order: ``VQA_FFMPEG`` (a path or a command name) if set; else the ``ffmpeg`` on PATH when it is at least
``MIN_VERSION``; else the binary that the ``imageio-ffmpeg`` package ships; a PATH ffmpeg older than
``MIN_VERSION`` is used only when no bundled binary exists. A PATH ffmpeg older than ``THREADED_VERSION``
gives way to a bundled one that is not (see there), unless only the PATH one can decode on the GPU this
machine has. ``vqa doctor`` prints the choice and why.
"""

from __future__ import annotations

import functools
import os
import re
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pipelines.errors import MediaError

# What vqa's command lines need (protocol_whitelist, -copyts/-start_at_zero, -noaccurate_seek, the fps
# filter's round/eof_action, the h264 decoder's x264_build): all present from 4.2 on; tested with 4.2,
# 5.1 (Debian 12) and 9.0.
MIN_VERSION = (4, 2)
# From 7.0 on, ffmpeg decodes, filters and writes each output in threads of its own; before, the filter
# graph ran on the main thread between decoded frames. vqa's index pass is one graph with three outputs
# (bench/index_speed.py, 10-min 720p, the graph alone: 1.46x the plain decode with 5.1, 1.20x with 9.0;
# the whole `vqa index` 24.0 s with 5.1, 20.8 s with 9.0), and each short read starts a process (the
# Debian 5.1 build, dynamically linked, takes 70-100 ms to start; the static bundled one 10-20 ms).
THREADED_VERSION = (7, 0)
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
            if rel is None or rel >= THREADED_VERSION:
                return FFmpeg(found, text, rel, "PATH")
            if rel >= MIN_VERSION:
                faster = _threaded_bundled(found)
                if faster is None:
                    return FFmpeg(found, text, rel, "PATH")
                return FFmpeg(*faster, "bundled (imageio-ffmpeg)",
                              f"the ffmpeg on PATH ({found}, {text}) is older than {_v(THREADED_VERSION)}, "
                              f"whose threaded pipeline indexes faster; VQA_FFMPEG={found} uses it")
            passed_over = f"the ffmpeg on PATH ({found}, {text}) is older than {_v(MIN_VERSION)}"
    bundled = _bundled()
    if bundled:
        text, rel = version_of(bundled)
        return FFmpeg(bundled, text, rel, "bundled (imageio-ffmpeg)", passed_over)
    if found and not passed_over.endswith("does not run"):
        text, rel = version_of(found)
        return FFmpeg(found, text, rel, "PATH", f"older than {_v(MIN_VERSION)} and no bundled binary: may fail")
    raise MediaError("ffmpeg not found: install ffmpeg (>= 4.2) or the imageio-ffmpeg package, or set VQA_FFMPEG")


def _threaded_bundled(path_ffmpeg: str) -> tuple[str, str, tuple[int, int]] | None:
    """The bundled ffmpeg (path, version, release) when it is at least ``THREADED_VERSION`` and can do what
    the PATH one would do here: where a CUDA device is visible and only the PATH one lists the cuda hwaccel,
    None (decoding on the GPU is worth more than the threads)."""
    bundled = _bundled()
    if not bundled:
        return None
    try:
        text, rel = version_of(bundled)
    except MediaError:
        return None
    if rel is None or rel < THREADED_VERSION:
        return None
    if cuda_visible() and "cuda" in hwaccels(path_ffmpeg) and "cuda" not in hwaccels(bundled):
        return None
    return bundled, text, rel


def _v(rel: tuple[int, int]) -> str:
    return f"{rel[0]}.{rel[1]}"


def ffmpeg_binary() -> str:
    """The path of the ffmpeg binary vqa runs (see the module's docstring)."""
    return ffmpeg_choice().path


def ffprobe_binary() -> str | None:
    return shutil.which("ffprobe")


# -- hardware decoding ---------------------------------------------------------------------------------------
# ``VQA_HWACCEL``: ``auto`` (default) decodes whole passes with ``-hwaccel cuda`` when this ffmpeg lists cuda
# among its hwaccels and a CUDA device is visible; short reads at chosen times stay in software (a GPU context
# per ffmpeg process costs more than it saves there). ``none`` never uses it; a name ffmpeg lists (``cuda``,
# ``vaapi`` …) uses it for every decode. The frames stay the sequential software decode's: ffmpeg downloads
# each decoded frame to system memory (``-hwaccel_output_format`` left default) and the filter chain first
# converts it to the stream's own pixel format (NV12 to yuv420p is a lossless reshuffle), so scaling and the
# RGB conversion see exactly what they see in software. A hardware decode that fails to start is run again
# in software, and hardware decoding is given up for the rest of the process.
HWACCEL_ENV = "VQA_HWACCEL"
_OFF = ("none", "off", "no", "0", "false", "software", "sw")
_hw_failed: dict[str, str] = {}  # ffmpeg binary -> why its hardware decoding was given up in this process


@dataclass(frozen=True)
class HwAccel:
    name: str | None  # the -hwaccel to pass; None: software decoding
    why: str

    def describe(self) -> str:
        return f"hardware decoding: {self.name or 'off'} ({self.why})"


@functools.lru_cache(maxsize=8)
def hwaccels(path: str) -> tuple[str, ...]:
    """The hardware acceleration methods an ffmpeg binary was built with (``ffmpeg -hwaccels``)."""
    try:
        proc = subprocess.run([path, "-hide_banner", "-hwaccels"], capture_output=True, text=True, timeout=20,
                              stdin=subprocess.DEVNULL)
    except (OSError, subprocess.SubprocessError):
        return ()
    lines = (proc.stdout or "").splitlines()
    start = next((i + 1 for i, ln in enumerate(lines) if ln.lower().startswith("hardware acceleration")), len(lines))
    return tuple(ln.strip() for ln in lines[start:] if ln.strip())


def cuda_visible() -> bool:
    """Whether a CUDA device is there to decode on: not hidden by ``CUDA_VISIBLE_DEVICES``, and the driver's
    device node exists or ``nvidia-smi -L`` lists a GPU."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None and visible.strip() in ("", "-1"):
        return False
    return os.path.exists("/dev/nvidia0") or _smi_lists_gpu()


@functools.lru_cache(maxsize=1)
def _smi_lists_gpu() -> bool:
    """Whether ``nvidia-smi -L`` lists a GPU (asked once per process)."""
    smi = shutil.which("nvidia-smi")
    if not smi:
        return False
    try:
        proc = subprocess.run([smi, "-L"], capture_output=True, text=True, timeout=20, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.SubprocessError):
        return False
    return proc.returncode == 0 and "GPU" in (proc.stdout or "")


def hwaccel_choice(purpose: str = "pass") -> HwAccel:
    """Which hardware decoding a decode gets (``purpose``: ``pass`` for a whole-video decode, ``seek`` for a
    short read at chosen times), and why."""
    mode = (os.environ.get(HWACCEL_ENV) or "auto").strip().lower()
    if mode in _OFF:
        return HwAccel(None, f"{HWACCEL_ENV}={mode}")
    if mode == "auto" and purpose != "pass":  # decided before anything is probed: seeks are a hot path
        return HwAccel(None, "auto: short reads decode in software")
    ff = ffmpeg_binary()
    if ff in _hw_failed:
        return HwAccel(None, f"it did not start in this process: {_hw_failed[ff]}")
    if mode == "auto":
        if not cuda_visible():  # a stat first; `ffmpeg -hwaccels` (a process) only on a machine with a GPU
            return HwAccel(None, "auto: no CUDA device visible")
        if "cuda" not in hwaccels(ff):
            return HwAccel(None, f"auto: this ffmpeg ({ff}) has no cuda hwaccel")
        return HwAccel("cuda", "auto: ffmpeg has cuda and a CUDA device is visible")
    listed = hwaccels(ff)
    if mode not in listed:
        return HwAccel(None, f"{HWACCEL_ENV}={mode}, but this ffmpeg ({ff}) offers only "
                             f"{', '.join(listed) or 'none'}")
    return HwAccel(mode, f"{HWACCEL_ENV}={mode}")


def per_file(read: Callable[[str], Any]) -> Callable[[str], Any]:
    """``read(path)`` remembered per file (absolute path, size, mtime): a file that changes is read again;
    one that cannot be stat'ed gives None."""
    cached = functools.lru_cache(maxsize=64)(lambda path, _size, _mtime_ns: read(path))

    @functools.wraps(read)
    def wrapper(path: str) -> Any:
        try:
            st = os.stat(path)
        except OSError:
            return None
        return cached(os.path.abspath(path), st.st_size, st.st_mtime_ns)

    return wrapper


@per_file
def _pix_fmt(path: str) -> str | None:
    from pipelines.stages.media import open_container

    try:
        with open_container(path) as container:
            return container.streams.video[0].codec_context.pix_fmt or None
    except Exception:  # noqa: BLE001 - unknown pixel format: no hardware decoding for this file
        return None


def hwaccel_args(path: str, purpose: str = "pass") -> tuple[list[str], str]:
    """What a decode of ``path`` adds for hardware decoding: the input options (before ``-i``) and the
    prefix of its ``-vf`` chain (the conversion to the stream's own pixel format); ``([], "")`` for
    software decoding (also when the file's pixel format cannot be told)."""
    choice = hwaccel_choice(purpose)
    pix = _pix_fmt(path) if choice.name else None
    if not pix:
        return [], ""
    return ["-hwaccel", choice.name], f"format={pix},"


def hwaccel_failed(reason: str) -> None:
    """A hardware decode did not start: this process decodes in software from now on."""
    _hw_failed[ffmpeg_binary()] = reason or "ffmpeg failed"
