"""Videos made with ffmpeg's lavfi sources, with known cut times (used by the tests and bench/)."""

from __future__ import annotations

import re
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


def ffmpeg_has_option(option: str) -> bool:
    """Whether the ffmpeg vqa runs knows a command-line option (e.g. ``-display_rotation``, missing in 5.1)."""
    proc = subprocess.run([ffmpeg_binary(), "-hide_banner", "-h", "full"], capture_output=True, text=True)
    return any(line.startswith((option + " ", option + "[")) for line in proc.stdout.splitlines())


def rotate_copy(src: str | Path, dst: str | Path, degrees: int) -> None:
    """A stream copy of ``src`` that players show rotated by ``degrees``: ``-display_rotation`` where
    ffmpeg has it (6.0 on), else the ``rotate`` tag, which older muxers turn into the display matrix.
    (``-display_rotation`` is counter-clockwise, the ``rotate`` tag clockwise.)"""
    if ffmpeg_has_option("-display_rotation"):
        _run([ffmpeg_binary(), "-y", "-hide_banner", "-loglevel", "error", "-display_rotation", str(degrees),
              "-i", str(src), "-c", "copy", str(dst)])
    else:
        _run([ffmpeg_binary(), "-y", "-hide_banner", "-loglevel", "error", "-i", str(src), "-c", "copy",
              "-metadata:s:v:0", f"rotate={(360 - degrees) % 360}", str(dst)])


# Encodings that random access must survive; each file shows a moving test pattern (every frame differs).
CODEC_VARIANTS = {
    # x264 with open GOPs: keyframes are non-IDR I-frames with recovery points, B-frames lead them
    "open_gop": ["-c:v", "libx264", "-preset", "veryfast", "-bf", "3",
                 "-x264-params", "open-gop=1:keyint=25:min-keyint=25:scenecut=0", "-pix_fmt", "yuv420p"],
    # High 4:4:4 Predictive, open GOP as well (the profile of Debian's cockatoo.mp4)
    "high444": ["-c:v", "libx264", "-preset", "veryfast", "-bf", "2",
                "-x264-params", "open-gop=1:keyint=30:min-keyint=30:scenecut=0", "-pix_fmt", "yuv444p"],
    # B-pyramid with closed GOPs: the mp4 gets an edit list for the reorder delay
    "bframes": ["-c:v", "libx264", "-preset", "medium", "-bf", "4", "-x264-params",
                "keyint=40:min-keyint=40:scenecut=0:b-pyramid=normal", "-pix_fmt", "yuv420p"],
    # MPEG-4 part 2 with B-frames in AVI (packed bitstream, like Megamind.avi)
    "mpeg4_avi": ["-c:v", "mpeg4", "-q:v", "4", "-bf", "2", "-g", "24"],
    # MPEG-TS: timestamps do not start at zero
    "mpegts": ["-c:v", "libx264", "-preset", "veryfast", "-bf", "3", "-g", "25", "-pix_fmt", "yuv420p",
               "-f", "mpegts"],
}


def make_codec_variant(path: str | Path, kind: str, *, seconds: float = 6.0, size: str = "192x108",
                       rate: int = 25) -> Path:
    """A moving test pattern encoded as ``kind`` (a CODEC_VARIANTS key, or ``vfr``, ``edit_list``,
    ``pps_change``, ``rotated``); returns ``path``."""
    path = Path(path)
    src = f"testsrc2=size={size}:rate={rate}:duration={seconds}"
    base = [ffmpeg_binary(), "-y", "-hide_banner", "-loglevel", "error"]
    if kind in CODEC_VARIANTS:
        _run(base + ["-f", "lavfi", "-i", src, *CODEC_VARIANTS[kind], str(path)])
    elif kind == "vfr":  # 25 fps for 2 s, then 10 fps, then 30 fps: timestamps only, no constant rate
        expr = "if(lt(N\\,50)\\,N/25\\,if(lt(N\\,80)\\,2+(N-50)/10\\,5+(N-80)/30))"
        _run(base + ["-f", "lavfi", "-i", f"testsrc2=size={size}:rate=30:duration={seconds + 2}",
                     "-vf", f"setpts='{expr}/TB'", "-c:v", "libx264", "-preset", "veryfast", "-bf", "2",
                     "-g", "20", "-pix_fmt", "yuv420p", "-video_track_timescale", "3000", str(path)])
    elif kind == "edit_list":  # a stream copy cut between keyframes: the mp4's edit list starts mid-GOP
        full = path.with_name(path.stem + "_full.mp4")
        make_codec_variant(full, "bframes", seconds=seconds + 3, size=size, rate=rate)
        _run(base + ["-ss", "2.3", "-i", str(full), "-c", "copy", str(path)])
    elif kind == "pps_change":
        # H.264 whose parameter sets change mid-stream and are sent once, in-band, where they change
        # (a spliced recording): a seek into the second part's second GOP decodes it with the first
        # part's parameter sets; a decode that started earlier is right
        one, two = path.with_name(path.stem + "_1.h264"), path.with_name(path.stem + "_2.h264")
        enc = ["-c:v", "libx264", "-preset", "veryfast", "-bf", "0", "-g", str(rate), "-pix_fmt", "yuv420p"]
        _run(base + ["-f", "lavfi", "-i", f"testsrc2=size={size}:rate={rate}:duration=3", *enc, "-f", "h264",
                     str(one)])
        _run(base + ["-f", "lavfi", "-i", f"testsrc2=size={size}:rate={rate}:duration=2,hue=h=90", *enc,
                     "-x264-params", "cabac=0:8x8dct=0", "-f", "h264", str(two)])
        data = two.read_bytes()
        starts = [m.start() for m in re.finditer(b"\x00\x00\x01", data)]
        kept, seen = bytearray(b"\x00"), set()
        for i, s in enumerate(starts):  # keep the first SPS (7) and PPS (8) only
            nal = data[s:starts[i + 1] if i + 1 < len(starts) else len(data)]
            if nal[3] & 0x1F in (7, 8) and nal[3] & 0x1F in seen:
                continue
            seen.add(nal[3] & 0x1F)
            kept += nal
        joined = path.with_name(path.stem + "_joined.h264")
        joined.write_bytes(one.read_bytes() + bytes(kept))
        _run(base + ["-r", str(rate), "-i", str(joined), "-c", "copy", str(path)])
    elif kind == "rotated":
        plain = path.with_name(path.stem + "_plain.mp4")
        make_codec_variant(plain, "open_gop", seconds=seconds, size=size, rate=rate)
        rotate_copy(plain, path, 90)
    else:
        raise ValueError(f"unknown variant {kind}")
    return path


def make_one_shot_video(path: str | Path, event: str, *, seconds: float = 8.0, size: str = "320x180",
                        rate: int = 25) -> Path:
    """One continuous shot (a moving test pattern) with an ``event`` that is not a cut: ``flash`` (three
    white frames at 4 s), ``occlusion`` (a dark shape sweeping over most of the picture, 3.5-4.3 s, like
    a hand or a wing passing the lens), or ``none``."""
    path = Path(path)
    w, h = (int(v) for v in size.split("x"))
    cmd = [ffmpeg_binary(), "-y", "-hide_banner", "-loglevel", "error", "-f", "lavfi", "-i",
           f"testsrc2=size={size}:rate={rate}:duration={seconds}"]
    if event == "flash":
        graph = f"[0:v]drawbox=x=0:y=0:w={w}:h={h}:color=white:t=fill:enable='between(n,{4 * rate},{4 * rate + 2})'[v]"
    elif event == "occlusion":
        cmd += ["-f", "lavfi", "-i", f"color=c=0x202020:size={int(w * 0.8)}x{h}:rate={rate}:duration={seconds}"]
        graph = (f"[0:v][1:v]overlay=x='-{int(w * 0.8)}+(t-3.5)*{(w * 1.8) / 0.8:.1f}':y=0"
                 ":enable='between(t,3.5,4.3)'[v]")
    elif event == "none":
        graph = "[0:v]null[v]"
    else:
        raise ValueError(f"unknown event {event}")
    _run(cmd + ["-filter_complex", graph, "-map", "[v]", "-c:v", "libx264", "-preset", "veryfast",
                "-pix_fmt", "yuv420p", str(path)])
    return path


def make_box_shots_video(path: str | Path, shots: list[tuple[float, str, str]], *, size: str = "320x180",
                         rate: int = 25) -> list[float]:
    """Shots of a plain background with a square drifting across it, one (seconds, background, square
    colour) each, joined by hard cuts; returns the cut times. Two shots whose backgrounds differ little
    make a cut the detectors' content score stays under (one square moves, the rest of the picture is
    still)."""
    w, h = (int(v) for v in size.split("x"))
    side = h // 4
    cmd = [ffmpeg_binary(), "-y", "-hide_banner", "-loglevel", "error"]
    parts = []
    n = len(shots)
    for d, bg, _ in shots:
        cmd += ["-f", "lavfi", "-t", f"{d}", "-i", f"color=c={bg}:size={size}:rate={rate}"]
    for i, (d, _, box) in enumerate(shots):
        cmd += ["-f", "lavfi", "-t", f"{d}", "-i", f"color=c={box}:size={side}x{side}:rate={rate}"]
        x = f"{w // 8 + 7 * i}+t*{w // 10}"
        parts.append(f"[{i}:v][{n + i}:v]overlay=x='{x}':y={h // 3},format=yuv420p,setsar=1[v{i}]")
    graph = ";".join(parts) + ";" + "".join(f"[v{i}]" for i in range(n)) + f"concat=n={n}:v=1:a=0[v]"
    _run(cmd + ["-filter_complex", graph, "-map", "[v]", "-c:v", "libx264", "-preset", "veryfast",
                "-crf", "18", "-pix_fmt", "yuv420p", str(path)])
    cuts, t = [], 0.0
    for d, _, _ in shots[:-1]:
        t += d
        cuts.append(round(t, 6))
    return cuts


def make_jumping_box_video(path: str | Path, *, seconds: float = 6.0, size: str = "320x180", rate: int = 15,
                           every: float = 0.5) -> Path:
    """One shot of a still picture (a test pattern, frozen) with a large dark square that jumps to the next
    of four places every ``every`` seconds and stays there: a hand moving in a video whose frames repeat (a
    webcam that drops frames), nothing like a cut."""
    w, h = (int(v) for v in size.split("x"))
    side = h // 2
    x = f"mod(floor(t/{every}),4)*{(w - side) // 3}"
    _run([ffmpeg_binary(), "-y", "-hide_banner", "-loglevel", "error",
          "-f", "lavfi", "-i", f"testsrc2=size={size}:rate={rate}:duration=0.1",
          "-f", "lavfi", "-t", f"{seconds}", "-i", f"color=c=0x302018:size={side}x{side}:rate={rate}",
          "-filter_complex", f"[0:v]loop=loop=-1:size=1,trim=duration={seconds},setpts=N/{rate}/TB[bg];"
                             f"[bg][1:v]overlay=x='{x}':y={h // 4},format=yuv420p[v]",
          "-map", "[v]", "-c:v", "libx264", "-preset", "veryfast", "-crf", "18", str(path)])
    return Path(path)


def make_slides_video(path: str | Path, slides: list[tuple[str, float]], *, size: str = "640x360",
                      rate: int = 25) -> list[float]:
    """Still slides (black text on one white background, ``(text, seconds)`` each) shown one after the
    other, like a recorded lecture; returns the slide-change times."""
    cmd = [ffmpeg_binary(), "-y", "-hide_banner", "-loglevel", "error"]
    for _, seconds in slides:
        cmd += ["-f", "lavfi", "-i", f"color=c=white:size={size}:rate={rate}:duration={seconds}"]
    parts = []
    for i, (text, _) in enumerate(slides):
        title, *lines = text.split("\n")
        chain = f"[{i}:v]drawtext=text='{title}':fontsize=36:fontcolor=black:x=40:y=40"
        for j, line in enumerate(lines):
            chain += f",drawtext=text='{line}':fontsize=24:fontcolor=black:x=60:y={130 + 40 * j}"
        parts.append(chain + f",format=yuv420p[s{i}]")
    n = len(slides)
    graph = ";".join(parts) + ";" + "".join(f"[s{i}]" for i in range(n)) + f"concat=n={n}:v=1:a=0[v]"
    _run(cmd + ["-filter_complex", graph, "-map", "[v]", "-c:v", "libx264", "-preset", "veryfast", str(path)])
    changes, t = [], 0.0
    for _, seconds in slides[:-1]:
        t += seconds
        changes.append(round(t, 6))
    return changes
