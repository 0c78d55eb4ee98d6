"""Random access that shows what a sequential decode shows.

A sequential decode (``media.decode`` without ``start``) samples the video on the grid ``k / fps``: the
frame shown at time ``t`` is the last frame of the video whose presentation time is ``<= t``. A read at
``t`` here gives that same frame on every file ffmpeg reads:

- ffmpeg seeks (``-ss`` before ``-i``, ``-noaccurate_seek``) to the keyframe at or before ``t`` and
  decodes forward; ``-copyts -start_at_zero`` keeps the file's own timeline (the one the sequential
  decode reports), so nothing depends on where the seek landed; the frame for ``t`` is picked here from
  the decoded frames' own times (open GOP, B-frames, variable frame rate, edit lists).
- The h264 decoder learns x264's version from an SEI message in the first frame and works around old
  x264 bugs (High 4:4:4 before build 151); a seek past that frame loses it and decodes garbage. The
  version is read from the first packet here and handed to ffmpeg (``-x264_build``).
- ffmpeg's errors are read, never ignored: when a read logs decode errors it is repeated from an earlier
  keyframe, until two reads from different keyframes agree frame for frame (errors that touched only
  frames before the range: leading frames of an open GOP) or the read starts at the file's beginning,
  which is the sequential decode itself. Every retry, and every error that remains, becomes a warning.
"""

from __future__ import annotations

import os
import re
import subprocess
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from pipelines.errors import MediaError
from pipelines.stages.ffmpeg_bin import per_file

EPS = 1e-6
MAX_TRIES = 4  # seeks before the read falls back to decoding from the beginning


@dataclass
class _Attempt:
    seek: float | None
    frames: list[np.ndarray | None] = field(default_factory=list)
    first_pts: float | None = None
    problems: list[str] = field(default_factory=list)
    returncode: int = 0


@per_file
def x264_build(path: str) -> int | None:
    """The x264 build that wrote the file (from the SEI in its first packets), or None."""
    from pipelines.stages.media import open_container

    try:
        with open_container(path) as container:
            vs = container.streams.video[0]
            if vs.codec_context.name != "h264":
                return None
            for i, packet in enumerate(container.demux(vs)):
                m = re.search(rb"x264 - core (\d+)", bytes(packet))
                if m:
                    return int(m.group(1))
                if i >= 4:
                    break
    except Exception:  # noqa: BLE001 - a hint only; without it ffmpeg decodes as usual
        return None
    return None


_FRAME = re.compile(rb"\bn:\s*(\d+)\s+pts:\s*(-?\d+)\s+pts_time:\s*(-?[\d.e+-]+)")
_TB = re.compile(rb"config in time_base:\s*(\d+)/(\d+)")
# What a decoder says about frames that lead an open GOP right after a seek (they refer to pictures before
# the seek point and are dropped): expected, and the reads' agreement shows they touched nothing asked for.
_SEEK_NOISE = re.compile(r"mmco|co located POCs|reference picture|Missing reference|reference frames? exceed|"
                         r"Could not find ref|RPS|missing ref", re.IGNORECASE)
_LOG_PREFIX = re.compile(r"^(\s*\[[^\]]*\]\s*)+")


def is_problem(line: bytes) -> bool:
    """A line of ffmpeg's log (``-loglevel level+info``) that says a frame may be wrong."""
    return b"[error]" in line or b"[fatal]" in line or b"corrupt decoded frame" in line


def clean(line: bytes) -> str:
    return _LOG_PREFIX.sub("", line.decode("utf-8", "replace")).strip().rstrip(".")


def _read(path: str, w: int, h: int, times: Sequence[float], seek: float | None, x264: int | None,
          threads: int, between: list | None = None, hw: bool = True) -> _Attempt:
    """Decode from ``seek`` (None: the beginning) and pick, for each of the sorted ``times``, the last
    frame whose presentation time is <= it (the first frame when none is). With ``between`` (a list),
    every decoded frame from the one shown at ``times[0]`` to the one shown at ``times[-1]`` is appended
    to it as ``(pts, frame)``. A hardware decode (``ffmpeg_bin.hwaccel_args``) that fails to start is read
    again in software."""
    from pipelines.stages.ffmpeg_bin import hwaccel_args, hwaccel_failed
    from pipelines.stages.media import ffmpeg_binary, input_args, passthrough

    hw_in, hw_vf = hwaccel_args(path, "seek") if hw else ([], "")
    cmd = [ffmpeg_binary(), "-hide_banner", "-nostdin", "-loglevel", "level+info", "-threads", str(threads), *hw_in]
    if x264 is not None:
        cmd += ["-x264_build", str(x264)]
    if seek is not None:
        cmd += ["-ss", f"{seek:.6f}", "-noaccurate_seek"]
    cmd += ["-copyts", "-start_at_zero", *input_args(path), *passthrough()]
    cmd += ["-map", "0:v:0", "-an", "-sn", "-dn", "-vf",
            f"{hw_vf}scale={w}:{h}:flags=area,format=rgb24,showinfo=checksum=0",
            "-f", "rawvideo", "-pix_fmt", "rgb24", "pipe:1"]
    frame_bytes = w * h * 3
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            bufsize=frame_bytes * 2, process_group=0)
    att = _Attempt(seek)
    pts_list: list[float] = []
    got = threading.Condition()
    state = {"tb": None, "done": False}

    def read_stderr() -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            tb = _TB.search(line)
            m = _FRAME.search(line) if b"showinfo" in line else None
            with got:
                if tb and b"showinfo" in line:
                    state["tb"] = (int(tb.group(1)), int(tb.group(2)))
                elif m:
                    num_den = state["tb"]
                    t = int(m.group(2)) * num_den[0] / num_den[1] if num_den else float(m.group(3))
                    pts_list.append(t)
                    got.notify_all()
                elif is_problem(line) and len(att.problems) < 20:
                    att.problems.append(clean(line))
        with got:
            state["done"] = True
            got.notify_all()

    reader = threading.Thread(target=read_stderr, daemon=True)
    reader.start()
    out: list[np.ndarray | None] = [None] * len(times)
    i = 0
    prev: np.ndarray | None = None
    n = 0
    try:
        assert proc.stdout is not None
        while i < len(times):
            buf = proc.stdout.read(frame_bytes)
            if not buf or len(buf) < frame_bytes:
                break
            with got:
                got.wait_for(lambda k=n: len(pts_list) > k or state["done"], timeout=30)
                pts = pts_list[n] if len(pts_list) > n else None
            if pts is None:
                raise MediaError("ffmpeg gave a frame without its time", path)
            n += 1
            frame = np.frombuffer(buf, dtype=np.uint8).reshape(h, w, 3)
            if att.first_pts is None:
                att.first_pts = pts
            while i < len(times) and pts > times[i] + EPS:
                out[i] = prev if prev is not None else frame
                i += 1
            if between is not None and i < len(times):
                if pts <= times[0] + EPS:
                    between[:] = [(pts, frame)]  # the frame shown at times[0] (so far)
                else:
                    between.append((pts, frame))
            prev = frame
        while i < len(times) and prev is not None:  # the video ended: its last frame stays on screen
            out[i] = prev
            i += 1
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        reader.join(timeout=5)
    att.frames = out
    att.returncode = proc.returncode if i < len(times) else 0
    if hw_in and att.first_pts is None and proc.returncode != 0:  # hardware decoding did not start
        hwaccel_failed(att.problems[0] if att.problems else f"exit code {proc.returncode}")
        return _read(path, w, h, times, seek, x264, threads, between, hw=False)
    return att


def frames_between(path: str, a: float, b: float, *, w: int, h: int) -> list[tuple[float, np.ndarray]]:
    """Every frame of the video from the one shown at ``a`` to the one shown at ``b`` (``(pts, frame)``,
    scaled to w x h), for finding where in between something changes; empty when the read logged decode
    errors (the caller keeps what it had)."""
    out: list = []
    att = _read(path, w, h, [a, b], a if a > 0 else None, x264_build(path), 0, between=out)
    if att.problems or att.first_pts is None or (a > 0 and att.first_pts > a + EPS):
        return []
    return out


def _s(t: float | None) -> str:
    return "?" if t is None else f"{t:.2f} s"


def _same(a: _Attempt, b: _Attempt) -> bool:
    return len(a.frames) == len(b.frames) and all(
        x is not None and y is not None and np.array_equal(x, y) for x, y in zip(a.frames, b.frames))


def frames_at(path: str, times: Sequence[float], *, w: int, h: int, threads: int = 0,
              warnings: list[str] | None = None) -> list[np.ndarray]:
    """The frames a sequential decode shows at each of ``times`` (seconds, any order), scaled to w x h."""
    order = sorted(range(len(times)), key=lambda k: times[k])
    ts = [max(0.0, float(times[k])) for k in order]
    if not ts:
        return []
    x264 = x264_build(path)
    name = os.path.basename(path)
    where = f"{ts[0]:.2f} s" if len(ts) == 1 or ts[-1] - ts[0] < 0.005 else f"{ts[0]:.2f}-{ts[-1]:.2f} s"
    seek: float | None = ts[0] if ts[0] > 0 else None
    prev: _Attempt | None = None
    tries = 0
    while True:
        tries += 1
        att = _read(path, w, h, ts, seek, x264, threads)
        landed_late = seek is not None and (att.first_pts is None or att.first_pts > ts[0] + EPS)
        if landed_late:  # the demuxer's seek went past the time asked for: seek earlier
            seek = None if tries >= MAX_TRIES or seek <= 1.0 else max(0.0, seek - 2.0 ** tries)
            seek = seek or None
            continue
        if any(f is None for f in att.frames):
            if att.returncode != 0 or att.problems:
                said = att.problems[0] if att.problems else f"exit code {att.returncode}"
                raise MediaError(f"ffmpeg could not decode the frame at {where} ({said})", path)
            raise MediaError(f"no frame at {where}", path)
        if not att.problems:
            if prev is not None and warnings is not None and not _same(prev, att):
                warnings.append(f"{name}: reading {where} from the keyframe at {_s(prev.first_pts)} gave decode "
                                f"errors ({prev.problems[0]}) and wrong frames; read again from "
                                f"{'the beginning' if seek is None else _s(att.first_pts)}")
            break
        if seek is None:  # from the beginning: this is the sequential decode, errors and all
            if warnings is not None:
                warnings.append(f"{name}: decode errors around {where} also in a sequential decode "
                                f"({att.problems[0]}): the frames are as ffmpeg conceals them")
            break
        went_back = prev is None or (att.first_pts or 0.0) < (prev.first_pts or 0.0) - EPS
        if went_back and prev is not None and _same(prev, att):  # two keyframes, same frames
            if warnings is not None and not all(_SEEK_NOISE.search(p) for p in att.problems + prev.problems):
                warnings.append(f"{name}: decode errors while reading {where} ({att.problems[0]}); reads from the "
                                f"keyframes at {_s(prev.first_pts)} and {_s(att.first_pts)} agree on the frames")
            break
        if went_back:
            prev = att
        start = min(att.first_pts if att.first_pts is not None else seek, seek)
        back = 1e-3 if went_back else 2.0 ** tries  # the demuxer landed on the same keyframe: step further
        seek = None if tries >= MAX_TRIES or start <= back else start - back
    result: list[np.ndarray] = [None] * len(times)  # type: ignore[list-item]
    for k, f in zip(order, att.frames):
        result[k] = f
    return result


# --- many ranges, one ffmpeg ---------------------------------------------------------------------------

LOOKBACK = 2.0  # seconds before a range's first time that a batched read keeps (to find the frame shown there)
TRIM_MARGIN = 0.25  # seconds after a range's last time that a batched read still decodes
MAX_INPUTS = 24  # ranges per ffmpeg process in a batched read
_RANGE_TAG = re.compile(rb"showinfo@r(\d+)")


def _read_many(path: str, w: int, h: int, groups: Sequence[Sequence[float]], x264: int | None) -> tuple[
        list[_Attempt], list[str], int]:
    """One ffmpeg process reading every group of sorted times: each group is an input of its own (the same
    file, seeked to the keyframe at or before the group's first time), trimmed to ``LOOKBACK`` seconds
    before its first time up to its last, with an output pipe of its own. The frames are picked as
    ``_read`` picks them. Returns an attempt per group (``first_pts``: its first frame after the trim),
    ffmpeg's problem lines (for all groups: they cannot be told apart) and its exit code."""
    from pipelines.stages.media import ffmpeg_binary, input_args, passthrough

    cmd = [ffmpeg_binary(), "-hide_banner", "-nostdin", "-loglevel", "level+info", "-copyts", "-start_at_zero"]
    graph = []
    for k, ts in enumerate(groups):
        cmd += ["-threads", "1"]  # one decoder thread each: the inputs run side by side, none waits on a pool
        if x264 is not None:
            cmd += ["-x264_build", str(x264)]
        if ts[0] > 0:
            cmd += ["-ss", f"{ts[0]:.6f}", "-noaccurate_seek"]
        cmd += input_args(path)
        # trim's times are rounded to the stream's time base: its end leaves a margin (later frames are not picked)
        graph.append(f"[{k}:v:0]trim=start={max(0.0, ts[0] - LOOKBACK):.6f}:end={ts[-1] + TRIM_MARGIN:.6f},"
                     f"scale={w}:{h}:flags=area,format=rgb24,showinfo@r{k}=checksum=0[o{k}]")
    cmd += ["-filter_complex", ";".join(graph)]
    pipes = [os.pipe() for _ in groups]
    for k, (_, wfd) in enumerate(pipes):
        cmd += ["-map", f"[o{k}]", *passthrough(), "-f", "rawvideo", "-pix_fmt", "rgb24", f"pipe:{wfd}"]
    try:
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                process_group=0, pass_fds=[wfd for _, wfd in pipes])
    except BaseException:
        for rfd, _ in pipes:
            os.close(rfd)
        raise
    finally:
        for _, wfd in pipes:
            os.close(wfd)  # ffmpeg holds the write ends now
    atts = [_Attempt(ts[0] if ts[0] > 0 else None) for ts in groups]
    pts: list[list[float]] = [[] for _ in groups]
    tbs: dict[int, tuple[int, int]] = {}
    problems: list[str] = []
    got = threading.Condition()
    state = {"done": False}

    def read_stderr() -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            tag = _RANGE_TAG.search(line)
            if tag:
                k = int(tag.group(1))
                tb = _TB.search(line)
                m = _FRAME.search(line)
                with got:
                    if tb:
                        tbs[k] = (int(tb.group(1)), int(tb.group(2)))
                    elif m and k < len(pts):
                        pts[k].append(int(m.group(2)) * tbs[k][0] / tbs[k][1] if k in tbs else float(m.group(3)))
                        got.notify_all()
            elif is_problem(line) and len(problems) < 20:
                problems.append(clean(line))
        with got:
            state["done"] = True
            got.notify_all()

    def read_frames(k: int) -> None:
        times, att, n, i, prev = groups[k], atts[k], 0, 0, None
        out: list[np.ndarray | None] = [None] * len(times)
        nbytes = w * h * 3
        with os.fdopen(pipes[k][0], "rb", buffering=nbytes * 2) as pipe:
            while True:
                buf = pipe.read(nbytes)
                if not buf or len(buf) < nbytes:
                    break
                with got:
                    got.wait_for(lambda n=n: len(pts[k]) > n or state["done"], timeout=30)
                    t = pts[k][n] if len(pts[k]) > n else None
                if t is None:
                    break  # a frame without its time: the group is read again on its own
                n += 1
                frame = np.frombuffer(buf, dtype=np.uint8).reshape(h, w, 3)
                if att.first_pts is None:
                    att.first_pts = t
                while i < len(times) and t > times[i] + EPS:
                    out[i] = prev
                    i += 1
                prev = frame
        while i < len(times) and prev is not None:  # the trim (or the video) ended: its last frame stays
            out[i] = prev
            i += 1
        att.frames = out

    readers = [threading.Thread(target=read_frames, args=(k,), daemon=True) for k in range(len(groups))]
    err = threading.Thread(target=read_stderr, daemon=True)
    err.start()
    for r in readers:
        r.start()
    try:
        for r in readers:
            r.join()
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        err.join(timeout=5)
    return atts, problems, proc.returncode


def frames_in_ranges(path: str, groups: Sequence[Sequence[float]], *, w: int, h: int, threads: int = 0,
                     warnings: list[str] | None = None) -> list[list[np.ndarray]]:
    """``frames_at`` for each group of times (a zoom round's ranges), the same frames, with a few ffmpeg
    processes instead of one per group (a process start costs more than a short range's decoding): one
    per core, each reading its share of the groups (at most ``MAX_INPUTS``) with one decoder thread. A group the batched read cannot vouch for (ffmpeg logged a problem or failed, the
    seek landed after its first time, its first frame came after it, or a frame is missing) is read again
    on its own by ``frames_at``, with its retries and warnings."""
    from pipelines.stages.ffmpeg_bin import hwaccel_args

    sorted_groups = [sorted(max(0.0, float(t)) for t in g) for g in groups]
    out: list[list[np.ndarray] | None] = [None] * len(groups)
    batch = [k for k, g in enumerate(sorted_groups) if g]
    if len(batch) > 1 and not hwaccel_args(path, "seek")[0]:
        from concurrent.futures import ThreadPoolExecutor

        x264 = x264_build(path)
        n_proc = max(1, min(os.cpu_count() or 1, len(batch) // 2, 8), -(-len(batch) // MAX_INPUTS))
        chunks = [batch[i::n_proc] for i in range(n_proc)]  # each process decodes on one core
        with ThreadPoolExecutor(n_proc) as pool:
            results = list(pool.map(lambda ks: _read_many(path, w, h, [sorted_groups[k] for k in ks], x264), chunks))
        for ks, (atts, problems, rc) in zip(chunks, results):
            for k, att in zip(ks, atts):
                ts = sorted_groups[k]
                if (not problems and rc == 0 and att.first_pts is not None and att.first_pts <= ts[0] + EPS
                        and all(f is not None for f in att.frames)):
                    by_time = dict(zip(ts, att.frames))
                    out[k] = [by_time[max(0.0, float(t))] for t in groups[k]]
    for k, g in enumerate(groups):
        if out[k] is None:
            out[k] = frames_at(path, list(g), w=w, h=h, threads=threads, warnings=warnings) if len(g) else []
    return out  # type: ignore[return-value]
