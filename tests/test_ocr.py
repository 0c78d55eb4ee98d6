"""On-screen text with the real RapidOCR (PP-OCRv4) models: exact reads, time intervals, cost follows change."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from pipelines.backends.loads import LOADS  # noqa: E402
from pipelines.errors import ModelError  # noqa: E402
from pipelines.stages.media import decode, ffmpeg_binary  # noqa: E402
from pipelines.stages.ocr import (  # noqa: E402
    OcrOptions,
    OcrScanner,
    TextInterval,
    cell_means,
    expand_quad,
    iou,
    load_ocr,
    merge_intervals,
    normalise_text,
)

W, H, FPS = 640, 360, 5


def font(size: int = 40):
    from PIL import ImageFont

    return ImageFont.load_default(size=size)  # Pillow's bundled TrueType font: no system fonts needed


def draw(texts: list[tuple[str, int]], *, bg=(30, 60, 120), fg=(255, 255, 255), square: tuple[int, int] | None = None,
         size: int = 40, x: int | None = None) -> np.ndarray:
    """A W x H RGB frame with each (text, top y) centred (or at ``x``), and an optional moving square."""
    from PIL import Image, ImageDraw

    img = Image.new("RGB", (W, H), bg)
    d = ImageDraw.Draw(img)
    if square:
        d.rectangle([square[0], square[1], square[0] + 60, square[1] + 60], fill=(230, 140, 30))
    f = font(size)
    for text, y in texts:
        d.text((x if x is not None else (W - d.textlength(text, font=f)) / 2, y), text, font=f, fill=fg)
    return np.asarray(img)


def encode(path: Path, frames) -> None:
    """Raw RGB frames piped into ffmpeg: an H.264 mp4 at FPS."""
    cmd = [ffmpeg_binary(), "-y", "-hide_banner", "-loglevel", "error", "-f", "rawvideo", "-pix_fmt", "rgb24",
           "-s", f"{W}x{H}", "-r", str(FPS), "-i", "pipe:0", "-c:v", "libx264", "-preset", "ultrafast",
           "-crf", "23", "-pix_fmt", "yuv420p", str(path)]
    proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stderr=subprocess.PIPE)
    for frame in frames:
        proc.stdin.write(frame.tobytes())
    proc.stdin.close()
    assert proc.wait() == 0, proc.stderr.read().decode()[-1500:]


def scan(engine, path: Path, duration: float, **params) -> tuple[list[TextInterval], dict]:
    scanner = OcrScanner(engine, **params)
    for t, frame in decode(str(path), fps=FPS, width=W, duration=duration):
        scanner.feed(t, frame)
    return scanner.finish(duration), scanner.stats


@pytest.fixture(scope="module")
def engine():
    return load_ocr("rapidocr")


# 60 s of text that changes a few times: (start, end, text, top y)
SCHEDULE = [(0.0, 20.0, "Welcome aboard", 40), (20.0, 40.0, "Gate code 4817", 150),
            (26.0, 34.0, "Platform B closed", 260), (41.0, 60.0, "Fish market closes at 11:30", 150)]


@pytest.fixture(scope="module")
def changing_video(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("ocr") / "changing.mp4"
    cache: dict[tuple, np.ndarray] = {}

    def frames():
        for n in range(60 * FPS):
            t = n / FPS
            on = tuple((text, y) for start, end, text, y in SCHEDULE if start <= t < end)
            if on not in cache:
                cache[on] = draw(list(on))
            yield cache[on]

    encode(path, frames())
    return path


@pytest.fixture(scope="module")
def moving_video(tmp_path_factory) -> Path:
    """A square bouncing along the bottom all the time; a static title; a code that changes at 30 s."""
    path = tmp_path_factory.mktemp("ocr") / "moving.mp4"

    def frames():
        for n in range(60 * FPS):
            t = n / FPS
            x = int(abs((n * 23) % (2 * (W - 60)) - (W - 60)))
            code = "Gate code 4817" if t < 30 else "Gate code 9305"
            yield draw([("Harbor Tour", 30), (code, 130)], square=(x, 280))

    encode(path, frames())
    return path


# ---------------------------------------------------------------- pure core


def test_normalise_text():
    assert normalise_text("  Gate  CODE: 4817. ") == normalise_text("gate code 4817") == "gate code 4817"
    assert normalise_text("Ｇate") == "gate"  # full-width forms fold
    assert normalise_text("...") == ""


def test_iou_and_cell_means():
    assert iou((0, 0, 10, 10), (0, 0, 10, 10)) == 1.0
    assert iou((0, 0, 10, 10), (5, 0, 15, 10)) == pytest.approx(50 / 150)
    assert iou((0, 0, 10, 10), (20, 20, 30, 30)) == 0.0
    diff = np.zeros((90, 160))
    diff[:10, :10] = 100  # the top-left cell of a 16 x 9 grid (10 x 10 px cells)
    cells = cell_means(diff, (16, 9))
    assert cells.shape == (9, 16) and cells[0, 0] == 100 and cells.sum() == 100


def test_expand_quad_grows_along_its_axes():
    q = np.array([[10, 10], [110, 10], [110, 30], [10, 30]], dtype=np.float32)
    np.testing.assert_allclose(expand_quad(q, 0.5), [[0, 0], [120, 0], [120, 40], [0, 40]])


def test_merge_intervals_joins_same_text_across_short_gaps_only():
    a = TextInterval(0.0, 5.0, "Gate code 4817", (0, 0, 10, 10), 0.9)
    b = TextInterval(5.4, 9.0, "GATE CODE 4817.", (0, 0, 12, 10), 0.95)
    c = TextInterval(20.0, 25.0, "Gate code 4817", (0, 0, 10, 10), 0.9)
    d = TextInterval(2.0, 6.0, "Pier 9", (0, 50, 10, 60), 0.8)
    out = merge_intervals([c, b, d, a], gap=1.0)
    assert [(i.start, i.end, i.text) for i in out] == [
        (0.0, 9.0, "GATE CODE 4817."), (2.0, 6.0, "Pier 9"), (20.0, 25.0, "Gate code 4817")]


# ---------------------------------------------------------------- with the real models


READABLE = ["Gate code 4817", "Harbor Tour", "Fish market closes at 11:30", "Ticket price 12 euros",
            "Platform B closed", "Exit 24 North", "Room 305 Level 2", "Open 9am to 5pm", "Speed limit 30",
            "hello world 2024"]


def test_engine_is_built_once_per_process(engine):
    count = LOADS["ocr:rapidocr"]  # (other tests of this process may have cleared the counts since)
    assert load_ocr("rapidocr") is engine and LOADS["ocr:rapidocr"] == count  # the same engine, no new build
    with pytest.raises(ModelError, match="rapidocr"):
        load_ocr("tesseract")


@pytest.mark.parametrize("k", range(len(READABLE)))
def test_reads_text_on_generated_frames_exactly(engine, k):
    text = READABLE[k]
    bg, fg = [((30, 60, 120), (255, 255, 255)), ((240, 240, 240), (0, 0, 0)), ((120, 40, 20), (255, 230, 0))][k % 3]
    y = 60 + (k % 3) * 90
    scanner = OcrScanner(engine)
    scanner.feed(0.0, draw([(text, y)], bg=bg, fg=fg))
    out = scanner.finish(2.0)
    assert [i.text for i in out] == [text]
    x0, y0, x1, y1 = out[0].box
    assert y - 5 <= y0 < y + 20 < y1 <= y + 60 and 0 <= x0 < W // 2 < x1 <= W
    assert (out[0].start, out[0].end) == (0.0, 2.0) and out[0].confidence > 0.8


def test_two_lines_in_one_frame(engine):
    scanner = OcrScanner(engine)
    scanner.feed(0.0, draw([("Harbor Tour", 40), ("Gate code 4817", 200)]))
    assert [i.text for i in scanner.finish(1.0)] == ["Harbor Tour", "Gate code 4817"]


def test_text_that_grows_ends_the_shorter_reading(engine):
    scanner = OcrScanner(engine)
    for n in range(20):  # 4 s at 5 fps; the line grows at 2 s, the old pixels stay where they were
        t = n / FPS
        scanner.feed(t, draw([("Gate code" if t < 2 else "Gate code 4817", 100)], x=40))
    got = [(i.text, i.start, i.end) for i in scanner.finish(4.0)]
    assert got == [("Gate code", 0.0, 2.0), ("Gate code 4817", 2.0, 4.0)]
    assert scanner.stats["frames_detected"] == 2 and scanner.stats["crops_recognised"] == 2


def test_cost_follows_text_change_not_length(engine, changing_video):
    intervals, stats = scan(engine, changing_video, 60.0)
    got = [(i.text, i.start, i.end) for i in intervals]
    want = [(text, start, end) for start, end, text, _ in SCHEDULE]
    assert [g[0] for g in got] == [w[0] for w in sorted(want, key=lambda w: w[1])]
    for (_, gs, ge), (_, ws, we) in zip(got, sorted(want, key=lambda w: w[1]), strict=True):
        assert abs(gs - ws) <= 0.25 and abs(ge - we) <= 0.25, got
    assert stats["frames_seen"] == 60 * FPS
    # 5 text changes (+ the first frame and the 30 s safety check): a handful of detections, one read per text.
    assert stats["frames_detected"] <= 12, stats
    assert stats["crops_recognised"] <= 6, stats


def test_background_motion_backs_off_but_text_changes_keep_their_times(engine, moving_video):
    intervals, stats = scan(engine, moving_video, 60.0)
    got = [(i.text, i.start, i.end) for i in intervals]
    assert [g[0] for g in got] == ["Harbor Tour", "Gate code 4817", "Gate code 9305"], got
    assert got[0][1:] == (0.0, 60.0)
    assert got[1][1] == 0.0 and abs(got[1][2] - 30.0) <= 0.25 and abs(got[2][1] - 30.0) <= 0.25
    # Motion changes cells in every frame; detections back off to one per max_backoff (8 s) instead.
    assert stats["frames_seen"] == 300 and stats["frames_detected"] <= 16, stats
    # Without the backoff, motion alone costs a detection every 0.5 s: 30 in the first 15 s of this video.
    _, eager = scan(engine, moving_video, 15.0, options=OcrOptions(max_backoff=0.5))
    assert eager["frames_detected"] >= 25 > stats["frames_detected"]


def test_fingerprint_follows_options(engine):
    a, b = OcrScanner(engine), OcrScanner(engine, min_interval=1.0)
    assert a.fingerprint == OcrScanner(engine).fingerprint != b.fingerprint
    assert a.fingerprint.startswith(engine.fingerprint)
