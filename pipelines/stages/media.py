"""Decode videos with ffmpeg (what a file is, before decoding: ``mediainfo``, whose names this re-exports).

One decode pass per video: ffmpeg samples (``fps=``) and scales (``scale=``) in its own process and
pipes raw RGB frames; Python reads them one at a time, so memory is bounded by one frame, never by
the video's length. The ``showinfo`` filter reports each output frame's presentation time on stderr,
so timestamps are the video's own, also on variable-frame-rate files.

Reads at chosen times (``read_frame_at``, ``decode(start=…)``) go through ``seek.frames_at`` and give
the frames this sequential decode shows at those times. Paths are always opened as ``file:`` URLs with
the file protocol only, so a local name that looks like a URL is never fetched. Which ffmpeg runs is
decided in ``ffmpeg_bin`` (``VQA_FFMPEG``, PATH when recent enough, else the bundled binary).
"""

from __future__ import annotations

import os
import queue
import subprocess
import threading
from collections import deque
from collections.abc import Callable, Container, Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from pipelines.errors import MediaError
from pipelines.stages.ffmpeg_bin import ffmpeg_binary, ffmpeg_choice, ffprobe_binary  # noqa: F401 - re-exported
from pipelines.stages.mediainfo import (  # noqa: F401 - re-exported: media's names for what a file is
    VIDEO_EXTENSIONS,
    VideoInfo,
    check_file,
    even_size,
    input_args,
    local_url,
    open_container,
    probe,
)
from pipelines.stages.seek import _FRAME as _PTS  # ffmpeg's showinfo and log lines, read alike
from pipelines.stages.seek import _LOG_PREFIX, _TB, is_problem


def passthrough() -> list[str]:
    """Output option: every filtered frame is written once, none duplicated or dropped by the muxer's
    frame-rate logic (so each frame on the pipe matches one ``showinfo`` line)."""
    rel = ffmpeg_choice().release
    return ["-vsync", "passthrough"] if rel is not None and rel < (5, 1) else ["-fps_mode", "passthrough"]


RANGE_CHUNK = 64  # grid times per random-access read


def grid(start: float, end: float, fps: float) -> list[float]:
    """The sequential decode's sampling times ``k / fps`` in ``[start, end)`` (at least one)."""
    k0 = int(np.ceil(start * fps - 1e-9))
    k1 = max(k0 + 1, int(np.ceil(end * fps - 1e-9)))
    return [k / fps for k in range(k0, k1)]


def ranges_left(ranges: Sequence[tuple[float, float]], fps: float, duration: float | None,
                have: Container[float]) -> tuple[list[float], list[tuple[float, float]]]:
    """Split what ``decode_ranges(ranges, fps=fps)`` would read into the times already at hand (``have``:
    times rounded to the millisecond, e.g. the index's probe frames, which lie on the same ``k / fps``
    grid) and the ranges still to decode, one per run of consecutive missing times (each still giving
    exactly those times). Returns (times at hand, ranges to decode)."""
    step = 1.0 / fps
    at_hand: list[float] = []
    todo: list[tuple[float, float]] = []
    for a, b in ranges:
        end = a + max(b - a, step)
        ts = grid(a, min(end, duration) if duration else end, fps)
        run: list[float] = []
        for t in ts + [None]:
            if t is not None and round(t, 3) not in have:
                run.append(t)
                continue
            if run:  # from the run's first time to just past its last: the grid gives exactly the run
                todo.append((run[0] if run[0] > a else a, run[-1] + step / 2))
                run = []
            if t is not None:
                at_hand.append(t)
    return at_hand, todo


def decode(
    path: str,
    *,
    fps: float,
    width: int,
    info: VideoInfo | None = None,
    start: float | None = None,
    duration: float | None = None,
    threads: int = 0,
    warnings: list[str] | None = None,
    side: SideStream | None = None,
) -> Iterator[tuple[float, np.ndarray]]:
    """Yield ``(timestamp_seconds, RGB uint8 frame)`` sampled at ``fps`` and scaled to ``width``.

    Times are on the grid ``k / fps`` of the file's own timeline; the frame at ``t`` is the last frame of
    the video whose presentation time is ``<= t``. A sequential decode never asks for more frames than the
    file has: ``fps`` above the file's average rate (a slideshow, one frame a minute) is lowered to it. Sampling and scaling happen inside ffmpeg. With
    ``start`` the range ``[start, start + duration)`` is read by random access (``seek.frames_at``),
    which gives the very frames a decode from the beginning gives at those times.
    Decode errors go to ``warnings`` (when given) in words. Raises MediaError (after the frames it got)
    when ffmpeg fails, or when the frames stop well short of the video's end while ffmpeg reports
    errors (a truncated file): a partial decode is never silent.
    ffmpeg runs in its own process group, so a Ctrl-C in the terminal reaches only us, never cuts the
    stream short behind our back.
    With ``side`` (a sequential decode only), the same decode also gives every frame of the video, at the
    source's own rate and scaled small, to ``side.feed(t, frame)``, and those small frames on the grid
    ``k / side.fps`` to ``side.sampled(t, frame)`` (both called on this thread, in time order, before each
    sampled frame is yielded: the grid frames before its time, the others up to ``SIDE_LEAD`` past it):
    one ffmpeg graph split in two (``split``), so what needs every frame (where exactly a shot changes) or
    many small ones (the scene analysis) costs no second decode and no large frames.
    """
    info = info or probe(path)
    w, h = even_size(info, width)
    if start is not None and start > 0:
        from pipelines.stages.seek import frames_at

        end = start + (duration if duration is not None else info.duration)
        times = [t for t in grid(start, min(end, info.duration), fps)]
        for i in range(0, len(times), RANGE_CHUNK):
            chunk = times[i:i + RANGE_CHUNK]
            yield from zip(chunk, frames_at(path, chunk, w=w, h=h, threads=threads, warnings=warnings))
        return
    if 0 < info.fps < fps:  # a slideshow, a time-lapse, one frame a minute: never more frames than it has
        fps = info.fps  # (the grid would repeat each of its frames up to fps / info.fps times)
    yield from _sequential(path, info, fps, w, h, duration, threads, warnings, side=side)


def decode_ranges(path: str, ranges: Sequence[tuple[float, float]], *, fps: float, width: int,
                  info: VideoInfo | None = None, threads: int = 0,
                  warnings: list[str] | None = None) -> list[list[tuple[float, np.ndarray]]]:
    """For each ``(a, b)``, what ``decode(path, fps=fps, width=width, start=a, duration=max(b - a, 1 / fps))``
    yields: the same times and the very same frames, read for all ranges at once (``seek.frames_in_ranges``:
    one ffmpeg process for many ranges, where a process per range cost more than its decoding)."""
    from pipelines.stages.seek import frames_in_ranges

    info = info or probe(path)
    w, h = even_size(info, width)
    out: list[list[tuple[float, np.ndarray]] | None] = [None] * len(ranges)
    groups: list[list[float]] = []
    where: list[int] = []
    for k, (a, b) in enumerate(ranges):
        if a is None or a <= 0:  # from the beginning: the sequential decode, as decode() reads it
            out[k] = list(decode(path, fps=fps, width=width, info=info, start=a, duration=max(b - a, 1.0 / fps),
                                 threads=threads, warnings=warnings))
            continue
        groups.append(grid(a, min(a + max(b - a, 1.0 / fps), info.duration), fps))
        where.append(k)
    for k, ts, frames in zip(where, groups, frames_in_ranges(path, groups, w=w, h=h, threads=threads,
                                                            warnings=warnings)):
        out[k] = list(zip(ts, frames))
    return out  # type: ignore[return-value]


@dataclass
class SideStream:
    """Small frames from the same sequential decode: every frame of the source to ``feed(t, frame)``,
    ``feed_width`` wide (default ``width``), as cheap as a small frame can be made (``picked_scale``: nearest
    source pixels, the decoder's own I420 planes, no colour conversion); and with ``fps`` the frames on
    the grid ``k / fps`` (the very frames a decode at ``fps`` gives, only small: ``width`` wide, even,
    aspect kept, RGB, scaled as ``small_scale`` says) to ``sampled(t, rgb)``. Either may be None."""

    width: int
    feed: Callable[[float, np.ndarray], None] | None
    fps: float | None = None
    sampled: Callable[[float, np.ndarray], None] | None = None
    feed_width: int | None = None


# The every-frame side stream's frames: the source's own pixels picked on a grid (``neighbor``), kept as
# the decoder's YUV 4:2:0 planes, one (h * 3 / 2, w) uint8 array (``picked_rgb`` converts one). Averaging
# (``area``) every frame and converting it to RGB cost a sixth to a third of the plain decode on the
# bench's videos; picking costs about a tenth, and a cut stays the largest change between two frames.
def picked_scale(w: int, h: int) -> str:
    """The filters that make a picked frame of w x h (the every-frame side stream's)."""
    return f"scale={w}:{h}:flags=neighbor,format=yuv420p"


def picked_frame(w: int, h: int) -> tuple[int, int]:
    """The array shape of a picked frame of w x h: the Y plane, then U and V (each w/2 x h/2)."""
    return (h * 3 // 2, w)


def picked_rgb(frame: np.ndarray) -> np.ndarray:
    """A picked frame as RGB (h x w x 3); an RGB frame as it is."""
    if frame.ndim == 3:
        return frame
    import cv2

    return cv2.cvtColor(np.ascontiguousarray(frame), cv2.COLOR_YUV2RGB_I420)


SIDE_PICK = 4  # source width / small width from which the side stream picks pixels before averaging


def small_scale(info: VideoInfo, w: int, h: int) -> str:
    """The ``scale`` filter that makes the side stream's small frames: an area average (every source pixel
    counts), except from a source at least ``SIDE_PICK`` times wider, where averaging every pixel of
    every frame cost a third of the decode itself (0.5 ms a 720p frame): there every pixel of a grid
    twice the small size is picked (``neighbor``), then area-averaged in 2 x 2 blocks, so each small pixel
    is the mean of four evenly spread source pixels (measured on the 10-min 720p video: about 1.5 s of CPU
    over the plain decode, against 9 s for the area average; cut accuracy in bench/index_speed.py)."""
    if info.width and info.width >= SIDE_PICK * w:
        return f"scale={2 * w}:{2 * h}:flags=neighbor,scale={w}:{h}:flags=area"
    return f"scale={w}:{h}:flags=area"


SIDE_LEAD = 0.5  # seconds: every-frame side frames are handed this far ahead of the sampled frame at most


def _sequential(path: str, info: VideoInfo, fps: float, w: int, h: int, duration: float | None, threads: int,
                warnings: list[str] | None, hw: bool = True,
                side: SideStream | None = None) -> Iterator[tuple[float, np.ndarray]]:
    from pipelines.stages.ffmpeg_bin import hwaccel_args, hwaccel_failed

    frame_bytes = w * h * 3
    hw_in, hw_vf = hwaccel_args(path, "pass") if hw else ([], "")  # hardware decoding: see ffmpeg_bin
    cmd = [ffmpeg_binary(), "-hide_banner", "-nostdin", "-loglevel", "level+info", "-threads", str(threads),
           *hw_in, "-copyts", "-start_at_zero", *input_args(path)]
    limit = ["-t", f"{duration:.3f}"] if duration is not None else []
    raw = [*passthrough(), "-f", "rawvideo", "-pix_fmt", "rgb24"]

    # The fps filter drops/duplicates on a constant grid, which is what keeps VFR input honest;
    # eof_action=pass keeps the only frame of a one-frame video.
    def on_grid(rate: float) -> str:
        return f"fps={rate:g}:round=up:eof_action=pass"

    sampled = f"{on_grid(fps)},scale={w}:{h}:flags=area,format=rgb24,showinfo@main=checksum=0"
    # side outputs: name -> (read end, write end); "side" every frame, "grid" the small frames on a grid
    fds: dict[str, tuple[int, int]] = {}
    if side is None or (side.feed is None and side.sampled is None):
        side = None
        cmd += [*limit, "-map", "0:v:0", "-an", "-sn", "-dn", "-vf", hw_vf + sampled, *raw, "pipe:1"]
    else:
        sw, sh = even_size(info, side.width)
        fw, fh = even_size(info, side.feed_width or side.width)
        shapes = {"side": picked_frame(fw, fh), "grid": (sh, sw, 3)}
        small = f"{small_scale(info, sw, sh)},format=rgb24"
        side_fps = side.fps or fps
        if 0 < info.fps < side_fps:  # never more frames than the file has (as ``decode`` does)
            side_fps = info.fps
        # one branch per output: every frame picked small (as cheap as can be), the grid sampled before
        # it is scaled (fewer frames to scale)
        branches = [(name, chain) for name, chain, wanted in (
            ("side", f"{picked_scale(fw, fh)},showinfo@side=checksum=0", side.feed),
            ("grid", f"{on_grid(side_fps)},{small},showinfo@grid=checksum=0", side.sampled)) if wanted is not None]
        graph = [f"[0:v:0]{hw_vf}split={1 + len(branches)}[m]" + "".join(f"[{n}]" for n, _ in branches),
                 f"[m]{sampled}[om]", *(f"[{n}]{chain}[o{n}]" for n, chain in branches)]
        cmd += ["-filter_complex", ";".join(graph), "-map", "[om]", *limit, *raw, "pipe:1"]
        for name, _ in branches:
            fds[name] = os.pipe()
            _widen(fds[name][1])
            fmt = ["-pix_fmt", "yuv420p"] if name == "side" else ["-pix_fmt", "rgb24"]
            cmd += ["-map", f"[o{name}]", *limit, *passthrough(), "-f", "rawvideo", *fmt, f"pipe:{fds[name][1]}"]
    try:
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                bufsize=frame_bytes * 2, process_group=0,
                                pass_fds=tuple(wr for _, wr in fds.values()))
    except BaseException:
        for rd, _ in fds.values():
            os.close(rd)
        raise
    finally:
        for _, wr in fds.values():
            os.close(wr)  # ffmpeg holds the write ends now
    _widen(proc.stdout.fileno())
    times: dict[bytes, queue.Queue] = {b"main": queue.Queue(), b"side": queue.Queue(), b"grid": queue.Queue()}
    arrived: dict[str, deque[tuple[float, np.ndarray]]] = {"side": deque(), "grid": deque()}
    tail: deque[bytes] = deque(maxlen=20)
    errors: list[bytes] = []
    n_errors = [0]

    def read_stderr() -> None:
        assert proc.stderr is not None
        tbs: dict[bytes, tuple[int, int]] = {}
        for line in proc.stderr:
            at = line.find(b"showinfo@")
            if at >= 0:
                name = line[at + 9:at + 13]
                m = _PTS.search(line)
                if m:
                    tb = tbs.get(name)
                    times[name].put(int(m.group(2)) * tb[0] / tb[1] if tb else float(m.group(3)))
                else:
                    g = _TB.search(line)
                    if g:
                        tbs[name] = (int(g.group(1)), int(g.group(2)))
                continue
            tail.append(line.rstrip())
            if is_problem(line):
                n_errors[0] += 1
                if len(errors) < 5:
                    errors.append(line.rstrip())
        for q in times.values():
            q.put(None)

    def read_small(name: str, rate: float) -> None:  # drained as fast as ffmpeg writes, so the sampled stream never waits
        shape = shapes[name]
        with os.fdopen(fds[name][0], "rb", buffering=int(np.prod(shape)) * 4) as pipe:
            arrived[name].extend(_raw_frames(pipe, shape, times[name.encode()], 1.0 / max(rate, 1.0)))

    def hand_side(upto: float | None) -> None:
        """Give ``side`` what has arrived, in time order (every frame before the grid frame at the same
        time): the grid frames before ``upto`` (the sampled frame about to be yielded, so that each consumer
        of both has every sampled frame before the grid frames after it), the others up to
        ``SIDE_LEAD`` past it; everything when ``upto`` is None (the streams ended)."""
        every, grid = arrived["side"], arrived["grid"]
        lead = None if upto is None else upto + SIDE_LEAD
        while True:
            take_every = bool(every) and (lead is None or every[0][0] <= lead)
            take_grid = bool(grid) and (upto is None or grid[0][0] < upto)
            if take_every and (not take_grid or every[0][0] <= grid[0][0]):
                side.feed(*every.popleft())
            elif take_grid:
                side.sampled(*grid.popleft())
            else:
                return

    reader = threading.Thread(target=read_stderr, daemon=True)
    reader.start()
    small_readers = [threading.Thread(target=read_small, args=(name, info.fps if name == "side" else side_fps),
                                      daemon=True) for name in fds]
    for r in small_readers:
        r.start()
    n = 0
    last_t = None
    try:
        assert proc.stdout is not None
        for t, frame in _raw_frames(proc.stdout, (h, w, 3), times[b"main"], 1.0 / fps):
            last_t = t
            if side is not None:
                hand_side(t)
            yield t, frame
            n += 1
        proc.wait()  # the stream ended: let ffmpeg exit on its own and say how it went
        reader.join(timeout=5)
        for r in small_readers:
            r.join(timeout=30)
        if side is not None:
            hand_side(None)
    finally:
        if proc.poll() is None:  # the consumer stopped early (or was interrupted): we stop ffmpeg
            proc.kill()
            proc.wait()
            reader.join(timeout=5)
            for r in small_readers:
                r.join(timeout=5)
    if proc.returncode != 0 and n == 0 and hw_in:  # hardware decoding did not start: once more in software
        hwaccel_failed(_tail_message(deque(errors[:1] or tail)))
        yield from _sequential(path, info, fps, w, h, duration, threads, warnings, hw=False, side=side)
        return
    if proc.returncode != 0:  # ffmpeg's first error says more than its last words ("Conversion failed!")
        what = "could not decode the video" if n == 0 else f"failed after {n} frame{'s' if n != 1 else ''}"
        raise MediaError(f"ffmpeg {what} ({_tail_message(deque(errors[:1] or tail))})", path)
    end = info.duration if duration is None else min(info.duration, duration)
    if errors and (last_t if last_t is not None else 0.0) < end - max(1.0, 2.0 / fps):
        got = "no frames" if last_t is None else f"frames only up to {last_t:.1f} s"
        said = [ln for ln in errors if b"partial file" in ln] or errors[:1]  # the most telling line
        raise MediaError(f"truncated or corrupt: {got} of {end:.1f} s (ffmpeg: {_tail_message(deque(said))})",
                         path)
    if errors and warnings is not None:
        warnings.append(f"{os.path.basename(path)}: {n_errors[0]} decode error{'s' if n_errors[0] != 1 else ''} "
                        f"(ffmpeg: {_tail_message(deque(errors[:1]))}): those frames are as ffmpeg conceals them")


def _widen(fd: int) -> None:
    """Let a frame pipe hold 1 MiB (Linux's default limit for a user; 64 KiB otherwise): two small side
    frames filled the default, so ffmpeg stopped whenever Python held the GIL for a few milliseconds
    (the scene analysis), and the decode waited on the analysis instead of running beside it. Measured
    on the 10-min 720p and 6-min 360p videos, four runs each: `vqa index` 12% faster."""
    try:
        import fcntl

        fcntl.fcntl(fd, getattr(fcntl, "F_SETPIPE_SZ", 1031), 1 << 20)
    except (OSError, ImportError):
        pass


def _raw_frames(pipe, shape: tuple[int, ...], times: queue.Queue, step: float) -> Iterator[tuple[float, np.ndarray]]:
    """Frames of ``shape`` (h x w x 3 RGB, or a picked frame's) off a raw pipe, each with the time its
    ``showinfo`` line gave (``times``), or its place on the ``step`` grid when stderr closed early."""
    nbytes, k = int(np.prod(shape)), 0
    while True:
        buf = pipe.read(nbytes)
        if not buf or len(buf) < nbytes:
            return
        try:
            t = times.get(timeout=10.0)
        except queue.Empty:
            t = None
        yield (k * step if t is None else t), np.frombuffer(buf, dtype=np.uint8).reshape(shape)
        k += 1


def _tail_message(tail: deque[bytes]) -> str:
    """The last meaningful line ffmpeg wrote, without its ``[component @ 0x…] [level]`` prefixes."""
    lines = [_LOG_PREFIX.sub("", ln.decode("utf-8", "replace")).strip() for ln in tail]
    lines = [ln for ln in lines if ln and not ln.startswith(("Input #", "Output #", "Stream ", "Duration"))]
    return lines[-1].rstrip(".") if lines else "unknown error"


def read_frame_at(path: str, t: float, *, width: int, info: VideoInfo | None = None,
                  warnings: list[str] | None = None) -> np.ndarray:
    """The frame a sequential decode shows at time ``t`` (seconds), for evidence frames at answer time."""
    return read_frames_at(path, [t], width=width, info=info, warnings=warnings)[0]


def read_frames_at(path: str, times: list[float], *, width: int, info: VideoInfo | None = None,
                   warnings: list[str] | None = None) -> list[np.ndarray]:
    """The frames a sequential decode shows at each of ``times`` (one decode pass for all of them)."""
    from pipelines.stages.seek import frames_at

    info = info or probe(path)
    w, h = even_size(info, width)
    return frames_at(path, [max(0.0, t) for t in times], w=w, h=h, warnings=warnings)


def extract_audio(path: str, *, sample_rate: int = 16000) -> tuple[np.ndarray, str | None]:
    """Mono float32 PCM of the first audio stream, or an empty array and the reason when there is none."""
    cmd = [ffmpeg_binary(), "-hide_banner", "-nostdin", "-loglevel", "error", *input_args(path), "-map", "0:a:0",
           "-vn", "-ac", "1", "-ar", str(sample_rate), "-f", "f32le", "pipe:1"]
    proc = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, process_group=0)
    audio = np.frombuffer(proc.stdout, dtype=np.float32)
    if proc.returncode != 0 and audio.size == 0:
        msg = proc.stderr.decode("utf-8", "replace").strip().splitlines()
        return audio, (msg[-1] if msg else "ffmpeg could not decode the audio")
    return audio, None
