"""Keyframes where the evidence is: a confident peak draws the keyframes around it, an uncertain curve
keeps peaks plus coverage (synthetic score arrays)."""

from __future__ import annotations

import numpy as np

from pipelines.search import SearchParams, keyframe_search, select_keyframes
from pipelines.search.select import peak_confidence


def bump(t, center, width, height):
    return height * np.exp(-0.5 * ((np.asarray(t, float) - center) / width) ** 2)


T = np.arange(0.0, 100.0, 0.25)


def curve(*peaks, base=0.0):
    return base + sum(bump(T, c, 0.4, h) for c, h in peaks)


def test_confident_peak_gathers_all_keyframes_before_at_and_after():
    s = curve((40.0, 6.0), (70.0, 1.0))
    idx = select_keyframes(T, s, 8, min_gap=0.75, peak_margin=0.3, context_spacing=0.5)
    kt = T[idx]
    assert len(kt) == 8 and 40.0 in kt
    assert np.all(np.abs(kt - 40.0) <= 2.0)  # 8 frames 0.5 s apart around 40 s
    assert (kt < 40.0).sum() >= 3 and (kt > 40.0).sum() >= 3  # context on both sides
    assert np.all(np.diff(np.sort(kt)) >= 0.5 - 1e-9)
    # the same curve without concentration: one frame per peak, the rest spread over the video
    plain = T[select_keyframes(T, s, 8, min_gap=0.75)]
    assert 40.0 in plain and np.sum(np.abs(plain - 40.0) <= 2.0) <= 3


def test_two_equal_peaks_keep_the_spread():
    s = curve((30.0, 5.0), (70.0, 5.0))
    conf, best, rivals = peak_confidence(T, s, tolerance=1.0, min_gap=0.75, min_peak=0.5, margin=0.3)
    assert conf == 0.0 and T[best] == 30.0 and rivals == 1
    with_focus = select_keyframes(T, s, 8, min_gap=0.75, peak_margin=0.3, seed=3)
    assert np.array_equal(with_focus, select_keyframes(T, s, 8, min_gap=0.75, seed=3))
    assert {30.0, 70.0} <= set(T[with_focus])


def test_frames_around_the_peak_grow_with_its_margin():
    near = []
    for runner_up in (5.5, 4.5, 3.5, 2.0):  # a lead of 1/12 to 2/3 of the best peak's height
        s = curve((40.0, 6.0), (70.0, runner_up))
        kt = T[select_keyframes(T, s, 8, min_gap=0.75, peak_margin=0.3, context_spacing=0.5)]
        near.append(int(np.sum(np.abs(kt - 40.0) <= 2.0)))
        assert (70.0 in kt) == (runner_up > 6.0 * (1 - 2 * 0.3))  # a rival within the margin keeps its frame
    assert near == sorted(near) and near[0] < near[-1]
    assert near[0] <= 4 and near[-1] == 8


def test_confidence_of_a_lone_peak_and_of_a_flat_curve():
    t = np.arange(0.0, 20.0)
    assert peak_confidence(t, bump(t, 10, 1.0, 3.0), tolerance=1.0, min_gap=0.75, min_peak=0.5,
                           margin=0.3) == (1.0, 10, 0)
    assert peak_confidence(t, np.zeros(20), tolerance=1.0, min_gap=0.75, min_peak=0.5, margin=0.3) == (0.0, None, 0)


def test_search_focuses_after_the_zoom_finds_the_needle():
    """A needle between index frames: the zoom finds it, then the keyframes gather around it."""
    def sims(ts):
        return 0.2 + bump(ts, 50.4, 0.15, 0.3)

    t = np.arange(0.0, 100.0)
    s = sims(t) + bump(t, 50.0, 0.6, 0.05)  # the index only sees a hint around 50 s

    def densify(ranges, fps):
        ts = np.concatenate([np.arange(a, b + 1e-9, 1.0 / fps) for a, b in ranges])
        return ts, sims(ts)

    off = keyframe_search(t, s, densify=densify, params=SearchParams(k=8, peak_margin=None))
    on = keyframe_search(t, s, densify=densify, params=SearchParams(k=8, peak_margin=0.3, context_spacing=0.25))
    hits_off = [k.t for k in off.keyframes if abs(k.t - 50.4) <= 1.0]
    hits_on = [k.t for k in on.keyframes if abs(k.t - 50.4) <= 1.0]
    assert len(hits_off) >= 1 and len(hits_on) >= 7 > len(hits_off)
    assert on.params.as_dict()["peak_margin"] == 0.3


def test_a_hump_over_a_cut_shows_each_of_its_shots():
    """A look-alike shot just before the needle tops the hump by a hair: the frames around the peak
    still include the needle shot's best frame, not only the look-alike's neighbours."""
    t = np.concatenate([np.arange(0.0, 48.0), np.arange(48.0, 53.01, 0.25), np.arange(54.0, 100.0)])
    s = np.zeros(len(t))
    look_alike = (t >= 47.7) & (t < 52.7)
    s[look_alike] = 5.0 - 0.3 * np.abs(t[look_alike] - 51.75)  # tops at 51.75
    needle = (t >= 52.7) & (t < 54.7)
    s[needle] = 4.8  # 52.75, 53.0, 54.0
    shots = [(0.0, 47.7), (47.7, 52.7), (52.7, 54.7), (54.7, 100.0)]
    idx = select_keyframes(t, s, 4, min_gap=0.75, peak_margin=0.3, context_spacing=0.25, scenes=shots)
    kt = t[idx]
    assert 51.75 in kt and np.any((kt >= 52.7) & (kt < 54.7))
    # without the shots, the nearest frames only (all in the look-alike shot)
    plain = t[select_keyframes(t, s, 4, min_gap=0.75, peak_margin=0.3, context_spacing=0.25)]
    assert not np.any((plain >= 52.7) & (plain < 54.7))


def test_a_rival_within_the_band_keeps_its_frame_whatever_the_margin():
    """The band of rival peaks that keep a keyframe is its own setting: a lower margin (more frames
    around the best peak) need not drop a runner-up that may still be the answer."""
    s = curve((40.0, 6.0), (70.0, 3.3))  # the runner-up 45% of the height below the best
    narrow = T[select_keyframes(T, s, 8, min_gap=0.75, peak_margin=0.2, context_spacing=0.5)]
    wide = T[select_keyframes(T, s, 8, min_gap=0.75, peak_margin=0.2, rival_band=0.6, context_spacing=0.5)]
    assert 70.0 not in narrow and np.sum(np.abs(narrow - 40.0) <= 2.0) == 8  # band 2 x 0.2: no rival
    assert 70.0 in wide and np.sum(np.abs(wide - 40.0) <= 2.0) == 7


def _result(times, s, keyframe_times, **params):
    from pipelines.search import Keyframe, SearchResult

    times, s = np.asarray(times, float), np.asarray(s, float)
    keys = [Keyframe(float(t), float(s[np.argmin(np.abs(times - t))]), 0) for t in keyframe_times]
    return SearchResult(keys, [], len(times), SearchParams(**params), curve_times=times, curve_scores=s)


def test_search_moments_are_the_matches_not_the_coverage_frames():
    """`vqa search` shows a keyframe's moment when it is a match: a confident peak is one moment, the
    coverage frames an answerer gets beside it are no results; two equal peaks are both results."""
    from pipelines.search import visual_moments

    s = curve((40.0, 6.0), (70.0, 1.0))
    keys = [39.5, 39.75, 40.0, 40.25, 40.5, 12.0, 70.0, 90.0]  # around the peak, a lesser peak, coverage
    moments = visual_moments(_result(T, s, keys), [], 100.0)
    assert len(moments) == 1 and moments[0][0] <= 40.0 <= moments[0][1] and moments[0][2].t == 40.0
    everything = visual_moments(_result(T, s, keys, moment_band=None), [], 100.0)
    assert len(everything) == 4 and everything[0][2].t == 40.0  # the old list: the peak, then 70, 12, 90
    two = visual_moments(_result(T, curve((30.0, 5.0), (70.0, 5.0)), [30.0, 70.0, 50.0]), [], 100.0)
    assert sorted(round(k.t) for _, _, k in two) == [30, 70]


def test_a_confident_search_shows_its_best_moment_with_the_rivals_only():
    """The moment band narrows with the search's confidence: a peak half the best one's height is a
    result beside a best moment the curve hedges on, none beside one it is sure of (its rivals are
    those within ``rival_band``, as for the keyframes); a peak within the rival band stays a result."""
    from dataclasses import replace

    from pipelines.search import visual_moments

    s = curve((40.0, 6.0), (70.0, 3.0))  # the runner-up half the height below the best
    res = _result(T, s, [40.0, 70.0], moment_band=0.4, rival_band=0.4)
    hedging = visual_moments(replace(res, confidence=0.0), [], 100.0)
    sure = visual_moments(replace(res, confidence=1.0), [], 100.0)
    assert sorted(round(k.t) for _, _, k in hedging) == [40, 70]
    assert [round(k.t) for _, _, k in sure] == [40]
    close = _result(T, curve((40.0, 6.0), (70.0, 4.2)), [40.0, 70.0], moment_band=0.4, rival_band=0.4)
    assert sorted(round(k.t) for _, _, k in visual_moments(replace(close, confidence=1.0), [], 100.0)) == [40, 70]
    # the search itself says how sure it is: one clear peak, full confidence; two equal ones, none
    one = keyframe_search(T, curve((40.0, 6.0), (70.0, 1.0), base=0.1), params=SearchParams(k=8, zoom_rounds=0))
    two = keyframe_search(T, curve((30.0, 5.0), (70.0, 5.0), base=0.1), params=SearchParams(k=8, zoom_rounds=0))
    assert one.confidence == 1.0 and two.confidence == 0.0


def test_a_hump_split_by_a_dip_is_one_moment_of_its_shot():
    """Two keyframes a quarter second apart in one shot, a dip between them (zoom frames), are one moment
    that reaches over both; the same two in different shots (a cut between them) are two."""
    from pipelines.search import visual_moments

    s = curve((40.0, 6.0), (40.75, 5.0))
    s[np.abs(T - 40.5) < 0.1] = 0.0  # the dip: another hump as the curve sees it
    res = _result(T, s, [40.0, 40.75], moment_band=None)
    one = visual_moments(res, [(0.0, 60.0), (60.0, 100.0)], 100.0)
    assert len(one) == 1 and one[0][0] <= 40.0 and one[0][1] >= 40.75 and one[0][2].t == 40.0
    two = visual_moments(res, [(0.0, 40.5), (40.5, 100.0)], 100.0)
    assert sorted(round(k.t, 2) for _, _, k in two) == [40.0, 40.75]
