"""What a video file is, before any frame is decoded: readable or not (``check_file``), its duration, rate,
display size, codec, rotation and audio (``probe``, with PyAV: no ffprobe needed), and how ffmpeg and PyAV
open it (``local_url``, ``input_args``: the file protocol only, so a local name that looks like a URL is
never fetched). ``media`` decodes; it re-exports these names."""

from __future__ import annotations

import os
import re
import subprocess
from dataclasses import asdict, dataclass

from pipelines.errors import MediaError
from pipelines.stages.ffmpeg_bin import ffmpeg_binary

VIDEO_EXTENSIONS = {
    ".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi", ".mpg", ".mpeg", ".ts", ".m2ts", ".mts",
    ".wmv", ".flv", ".3gp", ".ogv", ".vob", ".mxf",
}


def local_url(path: str) -> str:
    """The ``file:`` URL ffmpeg and PyAV open for a local path: a name that looks like a URL
    (``http:/host/v.mp4``) is still read from the disk, never fetched."""
    return "file:" + os.path.abspath(path)


def input_args(path: str) -> list[str]:
    """ffmpeg's input options for a local file: the file protocol only (also for whatever the file
    refers to: playlists, references in a .mov), then ``-i file:/abs/path``."""
    return ["-protocol_whitelist", "file", "-i", local_url(path)]


def open_container(path: str):
    """PyAV container over a local file, with the file protocol only."""
    import av

    return av.open(local_url(path), metadata_errors="ignore", options={"protocol_whitelist": "file"})


@dataclass(frozen=True)
class VideoInfo:
    path: str
    duration: float
    fps: float
    width: int  # as displayed (rotation applied)
    height: int
    codec: str
    rotation: int
    has_audio: bool
    audio_codec: str | None = None

    def as_dict(self) -> dict:
        return asdict(self)


def check_file(path: str) -> None:
    """Fail early, in words, on what is not a readable, non-empty regular file."""
    if not os.path.exists(path):
        if os.path.islink(path):
            import errno

            try:
                os.stat(path)
            except OSError as e:
                if e.errno == errno.ELOOP:
                    raise MediaError("symbolic link loop (the link leads back to itself)", path) from None
            raise MediaError(f"broken symbolic link (to {os.readlink(path)})", path)
        raise MediaError("no such file", path)
    if os.path.isdir(path):
        raise MediaError("is a directory, not a video file", path)
    if not os.path.isfile(path):
        raise MediaError("not a regular file (a pipe or device?)", path)
    if not os.access(path, os.R_OK):
        raise MediaError("permission denied", path)
    if os.path.getsize(path) == 0:
        raise MediaError("empty file (0 bytes)", path)


def probe(path: str) -> VideoInfo:
    """Duration, frame rate, display size, codec, rotation and audio presence (PyAV: no ffprobe needed)."""
    check_file(path)
    import av

    try:
        with open_container(path) as container:
            vstreams = container.streams.video
            if not vstreams:
                kind = "audio-only file" if container.streams.audio else "no video stream"
                raise MediaError(f"not a video: {kind}", path)
            vs = vstreams[0]
            ctx = vs.codec_context
            width, height = int(ctx.width or 0), int(ctx.height or 0)
            if width <= 0 or height <= 0:
                raise MediaError("video stream has no frame size (corrupt header?)", path)
            duration = None
            if vs.duration is not None and vs.time_base is not None:
                duration = float(vs.duration * vs.time_base)
            if not duration and container.duration:
                duration = container.duration / 1_000_000
            rate = vs.average_rate or vs.base_rate or vs.guessed_rate
            fps = float(rate) if rate else 0.0
            rotation = _rotation(vs) or _frame_rotation(container, vs)
            if rotation in (90, 270):
                width, height = height, width
            astreams = container.streams.audio
            audio_codec = astreams[0].codec_context.name if astreams else None
            codec = ctx.name
    except MediaError:
        raise
    except av.error.InvalidDataError as e:
        raise MediaError(f"not a video, or truncated/corrupt (ffmpeg: {_ffmpeg_says(path, e)})", path) from e
    except av.error.FFmpegError as e:
        raise MediaError(f"cannot read video (ffmpeg: {_ffmpeg_says(path, e)})", path) from e
    if not duration or duration <= 0:
        raise MediaError("cannot determine duration (truncated or corrupt file?)", path)
    return VideoInfo(path=path, duration=duration, fps=fps, width=width, height=height, codec=codec,
                     rotation=rotation, has_audio=bool(audio_codec), audio_codec=audio_codec)


def _ffmpeg_says(path: str, e: Exception) -> str:
    """ffmpeg's own words about a file it cannot open (e.g. 'moov atom not found')."""
    try:
        proc = subprocess.run([ffmpeg_binary(), "-hide_banner", "-nostdin", "-v", "error", *input_args(path),
                               "-t", "0", "-f", "null", "-"], capture_output=True, timeout=30)
        lines = [re.sub(r"^\[[^\]]*\]\s*", "", ln).strip()
                 for ln in proc.stderr.decode("utf-8", "replace").splitlines()]
        lines = [ln for ln in lines if ln and not ln.startswith(("Error opening input", "Error opening file"))]
        if lines:
            return lines[0].rstrip(".").replace(local_url(path), os.path.basename(path)).replace(
                path, os.path.basename(path))
    except (OSError, subprocess.SubprocessError):
        pass
    return _ffmpeg_message(e)


def _ffmpeg_message(e: Exception) -> str:
    msg = getattr(e, "strerror", None) or str(e)
    return re.sub(r"^\[Errno [-\d]+\]\s*", "", str(msg)).strip().rstrip(":").lower() or type(e).__name__


def _rotation(vs) -> int:
    rot = 0
    try:
        meta = vs.metadata or {}
        if "rotate" in meta:
            rot = int(float(meta["rotate"]))
    except (ValueError, TypeError):
        rot = 0
    if not rot:
        try:  # PyAV >= 13 exposes the display matrix through side data
            side = getattr(vs, "side_data", None) or {}
            for key in ("DISPLAYMATRIX", "displaymatrix"):
                if key in side:
                    rot = int(round(float(side[key])))
        except Exception:  # noqa: BLE001 - rotation is best effort, never a failure
            rot = 0
    return int(rot) % 360


def _frame_rotation(container, vs, max_packets: int = 64) -> int:
    """The display rotation of the first decoded frame (recent PyAV exposes it only there), or 0."""
    import av

    try:
        for i, packet in enumerate(container.demux(vs)):
            for frame in packet.decode():
                return int(round(getattr(frame, "rotation", 0) or 0)) % 360
            if i >= max_packets:
                break
    except av.error.FFmpegError:
        pass
    return 0


def even_size(info: VideoInfo, width: int) -> tuple[int, int]:
    """Output size for a target width (never upscaled), both sides even, aspect kept."""
    w = min(width, info.width)
    w -= w % 2
    h = int(round(info.height * w / info.width / 2.0)) * 2
    return max(w, 2), max(h, 2)
