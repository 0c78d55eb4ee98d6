"""A picture that stays unchanged (a still, a slide held for minutes) is stored once with the time range it
covers, and read back as every sample it stands for; a small change in it (a detail appearing) is kept."""

from __future__ import annotations

import io
import sqlite3

import numpy as np
from PIL import Image

from index.store import Store
from pipelines.stages.media import decode, ffmpeg_binary, probe
from pipelines.stages.stills import same_picture
from tests.conftest import jsonl
from tests.synth import _run

STILL_S, DETAIL_S, MOVING_S = 30, 10, 6
BOX = (150, 80, 12, 12)  # x, y, w, h of the red detail that appears after STILL_S, in 320×180 pixels


def _make(tmp_path):
    png, mp4 = tmp_path / "slide.png", tmp_path / "held slide.mp4"
    ff = ffmpeg_binary()
    _run([ff, "-y", "-loglevel", "error", "-f", "lavfi", "-i", "testsrc2=size=320x180:rate=25", "-frames:v", "1",
          str(png)])
    x, y, w, h = BOX
    _run([ff, "-y", "-loglevel", "error",
          "-loop", "1", "-framerate", "25", "-t", str(STILL_S), "-i", str(png),
          "-loop", "1", "-framerate", "25", "-t", str(DETAIL_S), "-i", str(png),
          "-f", "lavfi", "-t", str(MOVING_S), "-i", "testsrc2=size=320x180:rate=25",
          "-filter_complex", "[0:v]format=yuv420p,setsar=1[a];"
          f"[1:v]drawbox=x={x}:y={y}:w={w}:h={h}:color=red:t=fill,format=yuv420p,setsar=1[b];"
          "[2:v]format=yuv420p,setsar=1[c];[a][b][c]concat=n=3:v=1[v]",
          "-map", "[v]", "-c:v", "libx264", "-preset", "ultrafast", "-crf", "30", str(mp4)])
    return mp4


def test_same_picture_on_decoded_frames(tmp_path):
    """On the frames a decode gives: codec noise within the still passes, the small red detail does not,
    and moving frames never do."""
    mp4 = _make(tmp_path)
    frames = list(decode(str(mp4), fps=1, width=320, info=probe(str(mp4))))
    pairs = [(a, b) for a, b in zip(frames, frames[1:])]
    within_still = [same_picture(fa, fb) for (ta, fa), (tb, fb) in pairs if 2 <= ta and tb < STILL_S - 0.5]
    assert within_still and all(within_still)
    detail = [same_picture(fa, fb) for (ta, fa), (tb, fb) in pairs if ta < STILL_S <= tb]
    assert detail == [False]
    moving = [same_picture(fa, fb) for (ta, fa), (tb, fb) in pairs if ta >= STILL_S + DETAIL_S]
    assert moving and not any(moving)
    # synthetic: noise of ±1 everywhere passes; a 12×12 block changed in a 180×320 frame does not
    rng = np.random.default_rng(0)
    a = rng.integers(0, 256, (180, 320, 3), dtype=np.uint8)
    noisy = np.clip(a.astype(int) + rng.integers(-1, 2, a.shape), 0, 255).astype(np.uint8)
    assert same_picture(a, noisy)
    b = a.copy()
    b[80:92, 150:162] = [255, 0, 0]
    assert not same_picture(a, b)
    assert not same_picture(a, a[:, :300])


def test_held_picture_stored_once(cli, tmp_path):
    mp4 = _make(tmp_path)
    res = cli("index", str(mp4), "--profile", "tiny", "--no-captions", "--jsonl")
    assert res.exit_code == 0, res.stderr
    vid = jsonl(res.stdout)[0]["video_id"]
    store = Store(cli.db)
    run = store.latest_run(vid, "frames")
    rows = list(store.db.query("select idx, t, t_end, n from frames where run_key = ? order by idx", [run["key"]]))
    total = STILL_S + DETAIL_S + MOVING_S
    # the still (its first samples may differ by the encoder's start-up noise), the detail, the moving part
    still = [r for r in rows if r["t"] < STILL_S - 0.5]
    assert 1 <= len(still) <= 3 and max(r["n"] or 1 for r in still) >= STILL_S - 3
    (detail,) = [r for r in rows if STILL_S - 0.5 <= r["t"] < STILL_S + DETAIL_S - 0.5]
    assert detail["n"] == DETAIL_S and abs(detail["t"] - STILL_S) <= 1.0 and detail["t_end"] > detail["t"] + 8
    moving = [r for r in rows if r["t"] >= STILL_S + DETAIL_S - 0.5]
    assert len(moving) >= MOVING_S - 1 and all(r["n"] is None for r in moving)
    # rows are far fewer than samples; the run says both
    samples = sum(r["n"] or 1 for r in rows)
    assert abs(samples - total) <= 1 and len(rows) <= MOVING_S + 6
    import json
    stats = json.loads(run["stats"])
    assert stats["frames"] == samples and stats["stored"] == len(rows)

    # read back as every sample, one a second as sampled, each with its picture
    times, vecs = store.frame_matrix(run["key"])
    assert len(times) == samples and vecs.shape[0] == samples
    assert np.all(np.diff(times) > 0.5) and np.all(np.diff(times) < 1.5)
    mid_detail = float(times[np.argmin(np.abs(times - (STILL_S + DETAIL_S / 2)))])
    jpg = np.asarray(Image.open(io.BytesIO(store.frame_jpegs(run["key"], [mid_detail])[mid_detail])).convert("RGB"))
    sx = jpg.shape[1] / 320
    x, y, w, h = BOX
    patch = jpg[int((y + 3) * sx):int((y + h - 3) * sx), int((x + 3) * sx):int((x + w - 3) * sx)].reshape(-1, 3)
    assert patch[:, 0].mean() > 150 and patch[:, 1].mean() < 100  # the red detail, not the bare slide
    # a time inside a held picture's range is that picture, however far from its first sample; outside all
    # ranges the nearest row; one call for many times gives what a call for each gives
    jpeg_of = {r["idx"]: j["jpeg"] for r in rows
               for j in store.db.query("select jpeg from frames where run_key = ? and idx = ?", [run["key"], r["idx"]])}
    last = rows[-1]
    asks = {detail["t_end"] - 0.2: detail["idx"], -3.0: rows[0]["idx"], (last["t_end"] or last["t"]) + 9: last["idx"]}
    got = store.frame_jpegs(run["key"], list(asks))
    assert {t: jpeg_of[i] for t, i in asks.items()} == got
    assert all(store.frame_jpegs(run["key"], [t]) == {t: got[t]} for t in asks)
    store.close()

    # search and ask read it as any other video
    res = cli("search", str(mp4), "a red square", "--profile", "tiny", "--json")
    assert res.exit_code == 0, res.stderr
    with sqlite3.connect(cli.db) as db:
        assert db.execute("pragma integrity_check").fetchone()[0] == "ok"
