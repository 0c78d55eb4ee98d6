"""Spatial zoom: window geometry, region lifting on synthetic sims, and region scoring of rendered
frames with a real tiny open_clip model (built locally, loaded through the product's loader)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from PIL import Image, ImageDraw

from pipelines.search import SearchParams, keyframe_search
from pipelines.search.regions import (
    clip_region_scorer,
    content_boxes,
    crop,
    frame_boxes,
    region_boxes,
    region_candidates,
    region_lift,
)

W, H = 320, 180


def test_windows_are_overlapping_squares_covering_the_frame():
    boxes = region_boxes((2,), overlap=0.5, aspect=W / H)
    assert boxes.shape == (10, 4)  # 2 rows x 5 columns of 120 px squares on 320 x 180
    px = boxes * [W, H, W, H]
    assert np.allclose(px[:, 2] - px[:, 0], 120) and np.allclose(px[:, 3] - px[:, 1], 120)
    assert px[:, 0].min() == 0 and np.isclose(px[:, 2].max(), W) and np.isclose(px[:, 3].max(), H)
    assert np.allclose(np.diff(np.unique(px[:, 0])), 50)  # evenly spread, overlapping
    assert region_boxes((3,), aspect=W / H).shape == (21, 4)
    assert np.allclose(region_boxes((1,), aspect=W / H) * [W, H, W, H], [[70, 0, 250, 180]])
    tall = region_boxes((2,), aspect=9 / 16) * [180, 320, 180, 320]
    assert tall.shape == (10, 4) and np.allclose(tall[:, 2] - tall[:, 0], 120)


def test_crop_takes_the_window_pixels():
    frame = np.arange(H * W * 3, dtype=np.int64).reshape(H, W, 3)
    c = crop(frame, (0.25, 0.5, 0.5, 1.0))
    assert c.shape == (90, 80, 3) and c[0, 0, 0] == frame[90, 80, 0]
    assert crop(frame, (0.5, 0.5, 0.5, 0.5)).shape == (1, 1, 3)


def test_region_lift_takes_the_best_window_only_when_it_beats_the_frame():
    times = np.array([1.0, 2.0, 3.0])
    whole = np.array([0.0, 2.0, 1.0])
    sims = np.zeros((1, 3, 4))
    sims[0, 0, 2] = 3.0  # frame 0: window 2 scores 3 > 0
    sims[0, 1, 1] = 1.0  # frame 1: its windows score less than the frame (2)
    boxes = np.array([[0, 0, .5, .5], [.5, 0, 1, .5], [0, .5, .5, 1], [.5, .5, 1, 1]])
    new, where, info = region_lift(times, whole, sims, boxes, lambda q: q[0])
    assert new.tolist() == [3.0, 2.0, 1.0]
    assert where[0].tolist() == [0, .5, .5, 1] and np.isnan(where[1:]).all()
    assert info["lifted"] == 1 and info["best"]["t"] == 1.0 and info["best"]["whole"] == 0.0
    # a penalty keeps the whole frame when the window wins by less; priors count for windows too
    assert region_lift(times, whole, sims, boxes, lambda q: q[0], penalty=3.5)[2]["lifted"] == 0
    new, _, _ = region_lift(times, whole, sims, boxes, lambda q: q[0], priors=[(2.5, 3.5, 5.0)])
    assert new[2] == 5.0


def test_windows_are_brought_to_their_frames_scale_before_they_compete():
    """Windows that all score 0.05 above their frames (crops of these frames just score higher) lift
    nothing once calibrated; the one window that stands out among them still does."""
    times = np.arange(4.0)
    whole_raw = np.array([[0.20, 0.22, 0.21, 0.20]])
    sims = np.tile(whole_raw[:, :, None] + 0.05, (1, 1, 3))
    sims[0, 2, 1] = 0.40
    boxes = np.array([[0, 0, .5, 1], [.25, 0, .75, 1], [.5, 0, 1, 1]])
    whole = whole_raw[0] * 10

    def fuse(q):
        return q[0] * 10

    raw_new, raw_where, _ = region_lift(times, whole, sims, boxes, fuse)
    assert (~np.isnan(raw_where[:, 0])).sum() == 4  # uncalibrated: every frame "found" in a window
    new, where, info = region_lift(times, whole, sims, boxes, fuse, whole_raw=whole_raw)
    assert info["lifted"] == 1 and where[2].tolist() == [.25, 0, .75, 1]
    assert new[2] == pytest.approx((0.40 - 0.05) * 10) and new[[0, 1, 3]].tolist() == whole[[0, 1, 3]].tolist()


def test_windows_scored_on_their_own_scale_stay_comparable_with_frames_not_scored():
    """Crops of these frames all score ~0.05 above whole frames (a crop is closer to a one-object
    caption). On the frames' scale every frame whose windows were scored outranks every frame whose
    windows were not (the budget decides, not the evidence); on the windows' own scale they stay
    comparable, and the window that stands out among windows still wins."""
    rng = np.random.default_rng(0)
    times = np.arange(40.0)
    whole = 0.20 + 0.01 * rng.standard_normal((1, 40))
    wins = whole[:, :, None] + 0.05 + 0.01 * rng.standard_normal((1, 40, 6))
    wins[0, 12, 4] = 0.40  # the small target, in window 4 of frame 12
    whole[0, 12] = 0.215  # its whole frame is middling
    boxes = region_boxes((2,), aspect=16 / 9)[:6]

    def regions(ts):
        return wins[:, [int(t) for t in ts]], boxes

    base = SearchParams(k=1, zoom_rounds=0, peak_margin=None, region_frames=20, region_shots=0.0)
    plain = keyframe_search(times, whole, weights=[1.0], params=base).curve_scores
    scored = np.argsort(-whole[0], kind="stable")[:20]
    gains = {}
    for norm in ("frames", "windows"):
        res = keyframe_search(times, whole, weights=[1.0], regions=regions,
                              params=dataclasses.replace(base, region_norm=norm))
        assert 12 in scored and res.times == [12.0]
        assert res.keyframes[0].region == pytest.approx(tuple(boxes[4]))
        gains[norm] = float(np.median(res.curve_scores[scored] - plain[scored]))
    # frames' scale: +0.05 over a spread of 0.01 is ~5 z for every scored frame (the unscored stay
    # put); windows' scale: only the max-of-six-windows edge (~1 z)
    assert gains["frames"] > 4.0 and gains["windows"] < 2.0
    with pytest.raises(ValueError):
        keyframe_search(times, whole, weights=[1.0], regions=regions,
                        params=dataclasses.replace(base, region_norm="pixels"))


def test_region_candidates_best_of_each_shot_then_best_overall():
    t = np.arange(0.0, 60.0)
    s = np.zeros(60)
    s[[5, 6, 25, 45, 46, 47]] = [3.0, 2.9, 1.0, 2.0, 1.9, 1.8]
    shots = [(0.0, 20.0), (20.0, 40.0), (40.0, 60.0)]
    assert region_candidates(t, s, 3, scenes=shots) == [5, 45, 6]  # two shots' best, then the best left
    assert region_candidates(t, s, 6, scenes=shots)[:3] == [5, 45, 25]
    assert region_candidates(t, s, 2, min_gap=2.0) == [5, 45]  # no shots: the best, 2 s apart
    assert region_candidates(t, s, 2, done=[5]) == [6, 45]
    assert region_candidates(t, s, 0) == []
    # the whole budget to shots: one frame per shot, best shots first, before any second frame of a shot
    assert region_candidates(t, s, 3, scenes=shots, shot_share=1.0) == [5, 45, 25]
    assert region_candidates(t, s, 4, scenes=shots, shot_share=1.0) == [5, 45, 25, 6]


# --- rendered frames, a real tiny CLIP ----------------------------------------------------------------

BG = (90, 90, 90)
RED, GREEN, BLUE, YELLOW = (230, 30, 30), (30, 200, 40), (40, 60, 230), (240, 220, 30)


def draw(size, objects):
    im = Image.new("RGB", size, BG)
    d = ImageDraw.Draw(im)
    for kind, (x, y, r), colour in objects:
        (d.ellipse if kind == "disc" else d.rectangle)([x - r, y - r, x + r, y + r], fill=colour)
    return np.asarray(im)


@pytest.fixture(scope="module")
def clip():
    from pipelines.backends.tiny import tiny_clip
    from pipelines.stages.clip import ClipEmbedder

    cfg, ckpt = tiny_clip()
    return ClipEmbedder(f"{cfg}@{ckpt}", device="cpu")


def scenes():
    """The target (a small red disc as the query shows it) inside window 6 of a busy frame; two decoys."""
    sticker = draw((120, 120), [("disc", (60, 60, 18), RED)])
    busy = draw((W, H), [("sq", (20, 20, 16), GREEN), ("sq", (270, 40, 40), BLUE), ("disc", (290, 150, 25), YELLOW)])
    busy = busy.copy()
    busy[60:180, 50:170] = sticker  # window 6 of the 2-grid: x 50-170, y 60-180
    alike = draw((W, H), [("sq", (160, 90, 30), RED)])  # a decoy alone that shares the target's colour
    other = busy.copy()
    other[60:180, 50:170] = draw((120, 120), [("disc", (60, 60, 18), YELLOW)])
    return sticker, [alike, busy, other]


def test_small_target_among_distractors_found_by_regions_missed_by_the_whole_frame(clip):
    sticker, frames = scenes()
    q = clip.embed_images([sticker])  # the query: what the target looks like on its own
    whole = (clip.embed_images(frames) @ q.T)[:, 0]
    assert int(np.argmax(whole)) == 0  # the whole frame ranks the busy frame below the decoy
    boxes = region_boxes((2,), aspect=W / H)
    sims = clip_region_scorer(clip, q, boxes)(frames)
    assert sims.shape == (1, 3, 10)
    best = sims[0].max(axis=1)
    assert int(np.argmax(best)) == 1 and best[1] > 0.999  # the window holding the target matches it
    assert int(np.argmax(sims[0, 1])) == 6
    assert best[1] > whole[1] and best[1] > best[2]


def test_search_with_regions_keeps_the_window_that_made_the_frame(clip):
    sticker, frames = scenes()
    q = clip.embed_images([sticker])
    times = np.array([10.0, 20.0, 30.0])
    pixels = dict(zip(times.tolist(), frames, strict=True))
    whole = (clip.embed_images(frames) @ q.T).T  # (1, 3)
    boxes = region_boxes((2,), aspect=W / H)
    scorer = clip_region_scorer(clip, q, boxes)

    def regions(ts):
        return scorer([pixels[float(t)] for t in ts]), boxes

    # a random tiny CLIP scores everything within a few thousandths: any peak counts (min_peak)
    params = SearchParams(k=1, zoom_rounds=0, peak_margin=None, region_frames=3, min_peak=-10.0)
    plain = keyframe_search(times, whole, weights=[1.0], params=params)
    zoomed = keyframe_search(times, whole, weights=[1.0], params=params, regions=regions)
    assert plain.times == [10.0] and zoomed.times == [20.0]
    assert plain.keyframes[0].region is None
    assert zoomed.keyframes[0].region == pytest.approx(tuple(boxes[6]))
    d = zoomed.as_dict()
    assert d["keyframes"][0]["region"] == [round(float(x), 3) for x in boxes[6]]
    assert d["trace"][0]["regions"]["frames"] == 3 and d["trace"][0]["regions"]["best"]["t"] == 20.0


def _noisy(size, seed=0):
    rng = np.random.default_rng(seed)
    y = np.linspace(40, 160, size[1])[:, None, None]  # a gradient, with grain
    return np.clip(np.broadcast_to(y, (size[1], size[0], 3)) + rng.normal(0, 10, (size[1], size[0], 3)), 0, 255)


@pytest.mark.parametrize("background", ["plain", "gradient and grain"])
def test_content_boxes_put_one_window_around_each_thing_that_stands_out(background):
    """Three objects far apart and one close pair: each gets a window of its own around it (its centre
    inside, no other object's centre inside), largest first; background alone proposes nothing."""
    objects = [("disc", (60, 50, 22), RED), ("sq", (250, 60, 12), BLUE), ("disc", (150, 140, 8), YELLOW)]
    frame = draw((W, H), objects)
    if background != "plain":
        base = _noisy((W, H))
        mask = np.any(frame != BG, axis=2)
        frame = np.where(mask[..., None], frame, base).astype(np.uint8)
    boxes = content_boxes(frame, 5) * [W, H, W, H]
    assert len(boxes) == 3
    for (_, (x, y, r), _), b in zip(objects, boxes):  # largest first: the order drawn
        assert b[0] <= x - r and b[2] >= x + r and b[1] <= y - r and b[3] >= y + r, (b, x, y)
        others = [(ox, oy) for _, (ox, oy, _), _ in objects if (ox, oy) != (x, y)]
        assert not any(b[0] <= ox <= b[2] and b[1] <= oy <= b[3] for ox, oy in others), b
        assert np.isclose(b[2] - b[0], b[3] - b[1]) and b[2] - b[0] >= 0.25 * H - 1e-6  # squares, not tiny
    assert len(content_boxes(frame, 2)) == 2
    empty = _noisy((W, H)).astype(np.uint8) if background != "plain" else draw((W, H), [])
    assert len(content_boxes(empty, 5)) == 0


def test_a_proposal_finds_the_target_a_grid_window_shares_with_a_distractor(clip):
    """The target (a small red disc) right next to a larger decoy: every grid window that holds the
    target also holds the decoy, so the grid's best window scores them together; a proposal around the
    target alone matches it as the query does; frames keep a fixed window count (padding never wins)."""
    alone = draw((W, H), [("disc", (150, 90, 18), RED)])
    q = clip.embed_images([crop(alone, content_boxes(alone, 1)[0])])  # the target as it looks alone
    frame = draw((W, H), [("sq", (200, 90, 26), BLUE), ("disc", (150, 90, 18), RED)])
    plain = draw((W, H), [("sq", (200, 90, 26), BLUE)])
    grid = region_boxes((2,), aspect=W / H)
    boxes = np.stack([frame_boxes(f, grid, 3) for f in (frame, plain)])
    assert boxes.shape == (2, 13, 4)
    sims = clip_region_scorer(clip, q, boxes)([frame, plain])
    grid_sims = clip_region_scorer(clip, q, grid)([frame])
    assert np.allclose(sims[0, 0, :10], grid_sims[0, 0], atol=1e-5)  # the grid part is the grid's
    best = int(np.argmax(sims[0, 0]))
    assert best >= 10 and sims[0, 0, best] > grid_sims[0, 0].max()
    x0, y0, x1, y1 = boxes[0, best] * [W, H, W, H]
    assert x0 <= 132 and x1 >= 168 and not (x0 <= 200 <= x1)  # around the target, not the decoy's centre
    new, where, _ = region_lift(np.array([1.0, 2.0]), np.array([-1.0, -1.0]), sims, boxes, lambda s: s[0])
    assert where[0] == pytest.approx(boxes[0, best]) and new[0] > new[1]


def test_a_zoom_range_over_two_shots_scores_windows_of_each_shots_best_new_frame():
    """A range that probes a short shot also covers the start of the next one: the short shot's frame
    (where a needle shorter than the index interval hides) gets its windows even when a frame of the
    other shot scores higher as a whole."""
    times = np.arange(0.0, 20.0)
    scores = np.zeros((1, len(times)))
    asked: list[list[float]] = []

    def densify(ranges, fps):
        t = np.asarray([x for a, b in ranges for x in np.arange(np.ceil(a * fps), np.floor(b * fps) + 1) / fps
                        if x not in times])
        return t, np.where(t >= 10.5, 1.0, 0.5)[None, :]  # the next shot's frames score higher whole

    def regions(ts):
        asked.append([float(x) for x in ts])
        return np.zeros((1, len(ts), 1)), np.asarray([[0.0, 0.0, 1.0, 1.0]])

    shots = [(0.0, 10.1), (10.1, 10.5), (10.5, 20.0)]  # the middle shot holds no index frame
    params = SearchParams(k=4, zoom_rounds=1, region_frames=1, region_zoom=1, min_peak=-10.0)
    keyframe_search(times, scores, weights=[1.0], densify=densify, params=params, scenes=shots,
                    regions=regions)
    zoomed = [t for batch in asked[1:] for t in batch]
    assert 10.25 in zoomed  # the short shot's only new frame
    assert any(t >= 10.5 for t in zoomed)  # and the next shot's best


def test_zoom_windows_within_a_budget_go_to_the_best_new_frames():
    """With ``region_zoom_max`` the windows scored after a zoom round are those of the best new frames
    (whole-frame score) among each range's per-shot best, at most that many; without it, every range's."""
    times = np.arange(0.0, 60.0)
    scores = np.zeros((1, len(times)))
    for c, h in ((10, 0.9), (25, 0.8), (40, 0.7), (52, 0.6)):
        scores[0, c] = h

    def densify(ranges, fps):
        t = np.asarray([x for a, b in ranges for x in np.arange(np.ceil(a * fps), np.floor(b * fps) + 1) / fps
                        if x not in times])
        return t, np.interp(t, times, scores[0])[None, :]

    def run(cap):
        asked: list[list[float]] = []

        def regions(ts):
            asked.append([float(x) for x in ts])
            return np.zeros((1, len(ts), 1)), np.asarray([[0.0, 0.0, 1.0, 1.0]])

        params = SearchParams(k=4, zoom_rounds=1, zoom_ranges=4, region_frames=1, region_zoom=1,
                              region_zoom_max=cap, min_peak=-10.0)
        keyframe_search(times, scores, weights=[1.0], densify=densify, params=params, regions=regions)
        return asked[1]

    every = run(0)
    assert len(every) == 4 and {round(t) for t in every} == {10, 25, 40, 52}
    two = run(2)
    assert len(two) == 2 and {round(t) for t in two} == {10, 25}


def test_a_window_repeated_for_a_frame_is_embedded_once(clip):
    """frame_boxes pads a frame's proposals with copies of its first window: the copies score the same
    and are not embedded again."""
    sticker, frames = scenes()
    q = clip.embed_images([sticker])
    grid = region_boxes((2,), aspect=W / H)
    per = np.stack([np.concatenate([grid, grid[:1], grid[:1]]) for _ in frames])  # (3, 12, 4): 2 copies each
    embedded: list[int] = []

    class Counting:
        def embed_images(self, crops):
            embedded.append(len(crops))
            return clip.embed_images(crops)

    sims = clip_region_scorer(Counting(), q, per)(frames)
    assert sims.shape == (1, 3, 12) and embedded == [3 * 10]
    assert np.allclose(sims[:, :, 10], sims[:, :, 0]) and np.allclose(sims[:, :, 11], sims[:, :, 0])
    assert np.allclose(sims[:, :, :10], clip_region_scorer(clip, q, grid)(frames), atol=1e-5)
