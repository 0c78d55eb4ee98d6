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
    # cuts at 3.3, 4.0 and 6.6 s (on the 25 fps frames: 3.32, 4.04, 6.64): the 0.7 s shot shows one frame of
    # the 1 fps grid, at 4.0 s, after a 0.68 s head, and the shot from 6.64 s its first at 7.0 s (a 0.36 s head)
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
    assert any(a <= 3.35 and b >= 3.9 for a, b in got), got  # the short shot's head
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
    from pipelines.search.select import first_frames

    boxes, wvecs = frame_windows(clip, [frames[t] for t in ts])
    windows = store.held_windows(frun["key"], window_spec())
    for i, t in enumerate(ts):
        assert np.array_equal(windows[t][0], boxes[i])
        assert np.abs(windows[t][1] - wvecs[i]).max() < 1e-5
    assert store.held_windows(frun["key"], window_spec(proposals=0)) == {}

    # and those of each shot's first grid frame, cropped from its stored thumbnail as a question crops it
    import io

    from PIL import Image

    first = [float(times[j]) for j in first_frames(times, shots)]
    assert len(first) == len(shots), (first, shots)  # each shot holds a grid frame here
    assert first == sorted(store.held_first_frames(frun["key"], window_spec()).tolist())
    jpegs = store.frame_jpegs(frun["key"], first)
    boxes, wvecs = frame_windows(clip, [np.asarray(Image.open(io.BytesIO(jpegs[t])).convert("RGB")) for t in first])
    for i, t in enumerate(first):
        assert np.array_equal(windows[round(t, 3)][0], boxes[i])
        assert np.abs(windows[round(t, 3)][1] - wvecs[i]).max() < 1e-5


def _without(db, dst, *wheres):
    shutil.copy(db, dst)
    con = sqlite3.connect(dst)
    for where in wheres:
        con.execute(where)
    con.commit()
    con.close()
    return dst


def test_the_zoom_reads_them_and_finds_the_same_keyframes(cli, short_shots_video, tmp_path):
    from index.store import Store
    from pipelines.ask import AskOptions, search_keyframes
    from pipelines.backends.profiles import Models, get_profile

    path, _ = short_shots_video
    assert cli("index", str(path), "--profile", "tiny").exit_code == 0
    assert _probe_rows(cli.db)
    no_first = "delete from frame_windows where kind = 'first'"
    probes = _without(cli.db, tmp_path / "probes.db", no_first)  # the probe frames and their windows only
    bare = _without(cli.db, tmp_path / "bare.db", no_first, "delete from probe_frames",  # as an older index
                    "delete from frame_windows")

    models = Models(get_profile("tiny"))
    opts = AskOptions(visual="on")  # the tiny CLIP's weights are random: searched with it all the same
    outs = {name: search_keyframes(Store(db), models, str(path), "a colour test pattern", [], opts)
            for name, db in (("probes", probes), ("bare", bare), ("all", cli.db))}
    served = [t["zoom_from_index"] for t in outs["probes"].result.trace if "zoom_from_index" in t]
    assert served and served[0]["frames"] >= 2
    assert not any("zoom_from_index" in t for t in outs["bare"].result.trace)

    def rnd(name, r):
        return [t for t in outs[name].result.trace if t.get("round") == r][0]

    assert rnd("probes", 1)["ranges"] == rnd("bare", 1)["ranges"]
    assert [round(k.t, 3) for k in outs["probes"].result.keyframes] == \
        [round(k.t, 3) for k in outs["bare"].result.keyframes]
    assert np.allclose([k.score for k in outs["probes"].result.keyframes],
                       [k.score for k in outs["bare"].result.keyframes], atol=1e-4)
    # the windows of the zoom's frames: read for the probe frames, cropped for the rest, scored the same
    assert rnd("probes", 1)["regions"] == rnd("bare", 1)["regions"]
    # with each shot's first frame held, every question scores those windows too, from the start
    assert rnd("all", 0)["regions"]["frames"] > rnd("bare", 0)["regions"]["frames"]


def test_held_frames_are_scored_by_their_windows_from_the_start():
    """A frame whose windows the index holds is lifted in round 0 even when the whole-frame score ranks it
    below every frame the budget picks: a small target in a shot that ranks low as a whole."""
    from pipelines.search import SearchParams, keyframe_search

    t = np.arange(60, dtype=float)
    s = np.sin(t / 3.0) * 0.01 + 0.2
    s[[10, 20, 30, 40, 50]] += 0.05  # the frames the budget would pick
    s[45] = 0.17  # the needle's frame: low as a whole
    shots = [(float(a), float(a + 5)) for a in range(0, 60, 5)]

    def regions(times):
        sims = np.full((1, len(times), 4), 0.2)
        sims[0, np.isclose(times, 45.0), 2] = 0.6  # one window of it holds the target
        return sims, np.tile([[0.0, 0.0, 0.5, 0.5]], (len(times), 4, 1))

    params = SearchParams(k=4, zoom_rounds=0, region_frames=3)
    regions.held = np.asarray([45.0, 50.0])
    with_held = keyframe_search(t, s, params=params, scenes=shots, regions=regions)
    assert 45.0 in with_held.times and with_held.keyframes[with_held.times.index(45.0)].region is not None
    del regions.held
    without = keyframe_search(t, s, params=params, scenes=shots, regions=regions)
    assert 45.0 not in without.times
    import dataclasses

    regions.held = np.asarray([45.0])
    assert 45.0 not in keyframe_search(t, s, params=dataclasses.replace(params, region_held=False), scenes=shots,
                                       regions=regions).times


def test_ranges_left_reads_only_what_is_missing(short_shots_video):
    """Zoom ranges that overlap frames at hand (the index's probe frames) decode only the missing times, and
    together they are exactly what decoding the whole ranges gives: the same times, the same frames."""
    from pipelines.stages.media import decode_ranges, probe, ranges_left

    path, _ = short_shots_video
    info = probe(str(path))
    ranges = [(2.6, 4.6), (6.64, 7.0), (8.2, 8.3)]
    whole = {round(t, 3): f for g in decode_ranges(str(path), ranges, fps=4.0, width=160, info=info) for t, f in g}
    have = {3.5, 3.75, 4.25, 6.75}
    hand, todo = ranges_left(ranges, 4.0, info.duration, have)
    assert sorted(hand) == sorted(have)
    # the grid times 2.75 ... 4.5, 6.75 and 8.25: the runs of missing ones are read, each exactly
    assert todo == [(2.75, 3.375), (4.0, 4.125), (4.5, 4.625), (8.25, 8.375)]
    rest = {round(t, 3): f for g in decode_ranges(str(path), todo, fps=4.0, width=160, info=info) for t, f in g}
    assert not set(rest) & have and sorted(set(rest) | have) == sorted(whole)
    assert all(np.array_equal(rest[t], whole[t]) for t in rest)
    hand, todo = ranges_left(ranges, 4.0, info.duration, set())
    assert hand == [] and todo == [(2.75, 4.625), (6.75, 6.875), (8.25, 8.375)]
    again = {round(t, 3) for g in decode_ranges(str(path), todo, fps=4.0, width=160, info=info) for t, _ in g}
    assert sorted(again) == sorted(whole)


def test_every_range_the_index_holds_is_scored_past_the_limit(cli, tmp_path):
    """More under-sampled shots than a question probes by decoding (``unseen_scenes``): with the ranges
    in the index, round 1 scores every one of them, read and not decoded; an index without them decodes
    only the limit's worth."""
    from index.store import Store
    from pipelines.ask import AskOptions, search_keyframes
    from pipelines.backends.profiles import Models, get_profile
    from pipelines.search.driver import SearchParams

    path = tmp_path / "many short shots.mp4"
    make_scenes_video(path, [1.3, 0.55] * 24, audio=False)
    assert cli("index", str(path), "--profile", "tiny").exit_code == 0
    rows = _probe_rows(cli.db)
    held = sorted({(round(a, 3), round(b, 3)) for a, b, *_ in rows})
    assert len(held) > SearchParams().unseen_scenes, held
    bare = _without(cli.db, tmp_path / "bare.db", "delete from probe_frames", "delete from frame_windows")

    models = Models(get_profile("tiny"))
    outs = {name: search_keyframes(Store(db), models, str(path), "a colour test pattern", [], AskOptions(visual="on"))
            for name, db in (("probes", cli.db), ("bare", bare))}

    def covered(name):
        asked = [t for t in outs[name].result.trace if t.get("round") == 1][0]["ranges"]
        return [rg for rg in held if any(a <= rg[0] + 1e-3 and rg[1] - 1e-3 <= b for a, b in asked)]

    assert covered("probes") == held
    assert len(covered("bare")) < len(held)
    served = [t["zoom_from_index"] for t in outs["probes"].result.trace if "zoom_from_index" in t][0]
    assert served["frames"] >= len(rows)
