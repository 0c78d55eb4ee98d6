"""Probe frames: `vqa index` decodes, at the zoom rate, the shots its 1 fps grid under-samples (a shot that
holds no grid frame, a shot's head before its first grid frame), embeds them and their windows, and a
question's zoom reads those ranges and windows from the index instead of decoding and cropping them, with
the same keyframes and scores as a decode gives."""

from __future__ import annotations

import shutil
import sqlite3

import numpy as np
import pytest

from tests.synth import make_scenes_video


@pytest.fixture(scope="module")
def short_shots_video(tmp_path_factory):
    path = tmp_path_factory.mktemp("probe") / "short shots.mp4"
    # cuts at 3.3, 4.0 and 6.6 s: the 0.7 s shot [3.3, 4.0) holds no frame of the 1 fps grid, and the shot
    # from 6.6 s shows its first grid frame at 7.0 s (a 0.4 s head before it)
    cuts = make_scenes_video(path, [3.3, 0.7, 2.6, 3.4], audio=False)
    return path, cuts


def _probe_rows(db):
    con = sqlite3.connect(db)
    rows = con.execute("select a, b, fps, t, embedding from probe_frames order by idx").fetchall()
    con.close()
    return rows


def test_index_stores_the_zoom_frames_of_under_sampled_shots(cli, short_shots_video):
    from index.store import Store
    from pipelines import defaults
    from pipelines.backends.profiles import Models, get_profile
    from pipelines.search.driver import unseen_scene_ranges
    from pipelines.stages.media import decode_ranges

    path, cuts = short_shots_video
    assert cli("index", str(path), "--profile", "tiny").exit_code == 0
    rows = _probe_rows(cli.db)
    store = Store(cli.db)
    video = store.find_video(str(path))
    frun, srun = store.latest_run(video["id"], "frames"), store.latest_run(video["id"], "scenes")
    times, _ = store.frame_matrix(frun["key"])
    shots = [(s["start"], s["end"]) for s in store.scenes(srun["key"])]
    assert len(shots) == 4, shots  # the short shot is a shot of its own

    # the ranges are those a question's zoom asks for first: every unseen shot and shot head
    want = unseen_scene_ranges(times, np.zeros(len(times)), shots, 1000, min_len=1.0 / defaults.ZOOM_FPS,
                               heads=defaults.SHOT_HEADS, head_min=defaults.HEAD_MIN)
    got = sorted({(round(a, 3), round(b, 3)) for a, b, *_ in rows})
    assert got == sorted((round(a, 3), round(b, 3)) for a, b in want)
    assert any(a <= 3.35 and b >= 3.9 for a, b in got), got  # the shot the grid never saw
    assert any(abs(a - 6.6) < 0.05 and abs(b - 7.0) < 1e-6 for a, b in got), got  # the head before 7.0 s
    assert {r[2] for r in rows} == {defaults.ZOOM_FPS}
    short = [r[3] for r in rows if 3.3 <= r[3] < 4.0]
    assert len(short) >= 2  # the 0.7 s shot is seen at 4 fps

    # each stored vector is the CLIP's embedding of the very frame the zoom decodes there
    clip = Models(get_profile("tiny")).clip()
    decoded = decode_ranges(str(path), want, fps=defaults.ZOOM_FPS, width=get_profile("tiny").decode_width)
    frames = {round(t, 3): f for g in decoded for t, f in g}
    stored = {round(r[3], 3): np.frombuffer(r[4], dtype=np.float32) for r in rows}
    assert sorted(stored) == sorted(frames)
    ts = sorted(frames)
    emb = clip.embed_images([frames[t] for t in ts])
    assert np.abs(emb - np.stack([stored[t] for t in ts])).max() < 1e-5

    # and their windows (the spatial zoom's), embedded as a question would embed them, for this spec only
    from pipelines.search.regions import frame_windows, window_spec

    boxes, wvecs = frame_windows(clip, [frames[t] for t in ts])
    windows = store.probe_windows(frun["key"], ts, window_spec())
    assert sorted(windows) == ts
    for i, t in enumerate(ts):
        assert np.array_equal(windows[t][0], boxes[i])
        assert np.abs(windows[t][1] - wvecs[i]).max() < 1e-5
    assert store.probe_windows(frun["key"], ts, window_spec(proposals=0)) == {}


def test_the_zoom_reads_them_and_finds_the_same_keyframes(cli, short_shots_video, tmp_path):
    from index.store import Store
    from pipelines.ask import AskOptions, search_keyframes
    from pipelines.backends.profiles import Models, get_profile

    path, _ = short_shots_video
    assert cli("index", str(path), "--profile", "tiny").exit_code == 0
    assert _probe_rows(cli.db)
    bare = tmp_path / "no probes.db"  # an index made before probe frames were stored
    shutil.copy(cli.db, bare)
    con = sqlite3.connect(bare)
    con.execute("delete from probe_frames")
    con.commit()
    con.close()

    models = Models(get_profile("tiny"))
    opts = AskOptions(visual="on")  # the tiny CLIP's weights are random: searched with it all the same
    outs = {}
    for name, db in (("probes", cli.db), ("bare", bare)):
        outs[name] = search_keyframes(Store(db), models, str(path), "a colour test pattern", [], opts)
    served = [t["zoom_from_index"] for t in outs["probes"].result.trace if "zoom_from_index" in t]
    assert served and served[0]["ranges"] >= 1 and served[0]["frames"] >= 2
    assert not any("zoom_from_index" in t for t in outs["bare"].result.trace)
    zoom = [t for t in outs["probes"].result.trace if t.get("round") == 1]
    assert zoom and zoom[0]["ranges"] == [t for t in outs["bare"].result.trace if t.get("round") == 1][0]["ranges"]
    assert [round(k.t, 3) for k in outs["probes"].result.keyframes] == \
        [round(k.t, 3) for k in outs["bare"].result.keyframes]
    assert np.allclose([k.score for k in outs["probes"].result.keyframes],
                       [k.score for k in outs["bare"].result.keyframes], atol=1e-4)
    # the windows of the zoom's frames: read for the probe frames, cropped for the rest, scored the same
    assert zoom[0]["regions"] == [t for t in outs["bare"].result.trace if t.get("round") == 1][0]["regions"]
