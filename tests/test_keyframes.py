"""Keyframe search core: decomposition, fusion, zoom and selection on synthetic score curves."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from pipelines.search import (
    Keyframe,
    Normalizer,
    SearchParams,
    SearchResult,
    SubQuery,
    apply_priors,
    decompose_question,
    decompose_with_llm,
    frame_budgets,
    fuse_scores,
    keyframe_search,
    peak_extent,
    scene_ids,
    select_keyframes,
    unseen_scene_ranges,
    zoom_ranges,
)

# --------------------------------------------------------------------------------------------------
# synthetic footage: a continuous relevance curve sampled wherever the search asks
# --------------------------------------------------------------------------------------------------


def bump(t, center, width, height):
    return height * np.exp(-0.5 * ((np.asarray(t, float) - center) / width) ** 2)


def needle_curve(t, *, start, end, height=0.9, hint=0.0, base=0.2):
    """A needle shot [start, end) scoring ``height``; with ``hint`` > 0 the frames within 1 s of it look
    partly alike (score rises linearly towards it), as neighbouring frames do in real footage."""
    t = np.asarray(t, float)
    s = np.full(t.shape, base)
    if hint:
        d = np.maximum(np.maximum(start - t, t - end), 0.0)
        s = np.maximum(s, base + hint * np.clip(1.0 - d, 0.0, 1.0))
    s[(t >= start) & (t < end)] = height
    return s


def grid_densify(curve, log=None):
    """densify(ranges, fps): frames on the fps grid inside each range, scored by ``curve``."""

    def densify(ranges, fps):
        ts = []
        for a, b in ranges:
            ts.extend(np.arange(np.ceil(a * fps - 1e-9), np.floor(b * fps + 1e-9) + 1) / fps)
        ts = np.asarray(ts, float)
        if log is not None:
            log.append((list(ranges), fps, len(ts)))
        return ts, curve(ts)

    return densify


# --------------------------------------------------------------------------------------------------
# decomposition
# --------------------------------------------------------------------------------------------------


def texts(subs, role=None):
    return [s.text for s in subs if role is None or s.role == role]


def test_decompose_colour_shape_target_and_question():
    subs = decompose_question("When does the purple star appear?")
    assert subs[0] == SubQuery("a purple star", "target", 1.0)
    q = [s for s in subs if s.role == "question"]
    assert [s.text for s in q] == ["When does the purple star appear?"]
    assert q[0].weight < subs[0].weight
    assert len(subs) == 2


@pytest.mark.parametrize("question,targets,cues", [
    ("Which appears first, the red car or the blue bus?", ["a red car", "a blue bus"], []),
    ("What colour is the car next to the red house?", ["a car"], ["a red house"]),
    ("What is the man in a hat holding after he opens the door?", ["a man in a hat"], ["a door"]),
    ("How many dogs and cats are in the garden?", ["dogs", "cats"], ["a garden"]),
    ("Where is the red ball and the blue cube?", ["a red ball", "a blue cube"], []),
    ("Before the train arrives, what does the dog chase?", ["a dog"], ["a train"]),
    ('When does the sign saying "EXIT 12" appear?', ["EXIT 12", "a sign"], []),
    ("Is an orange umbrella visible?", ["an orange umbrella"], []),
])
def test_decompose_noun_phrases(question, targets, cues):
    subs = decompose_question(question)
    assert texts(subs, "target") == targets
    assert texts(subs, "cue") == cues
    assert texts(subs, "question") == [question]


def test_decompose_options_caption_form_and_generic_question():
    subs = decompose_question("Which of these objects is shown at some point in the video?",
                              ["A. yellow circle", "(B) blue squares", "C) She runs away", "D. a red star"])
    assert texts(subs, "target") == []  # "objects", "point", "video" are not things to look for
    assert texts(subs, "option") == ["a yellow circle", "blue squares", "She runs away", "a red star"]
    assert all(s.weight > 0 for s in subs)


def test_targets_and_cues_are_embedded_in_an_ensemble_of_captions():
    """CLIP's prompt ensembling: a target or cue phrase is embedded in each caption template, its
    article dropped, and the normalised embeddings averaged; the question and the options as they are.
    With the tiny profile's CLIP (random weights, real open_clip code)."""
    from pipelines import defaults
    from pipelines.backends.profiles import Models, get_profile
    from pipelines.search import embed_subqueries

    subs = decompose_question("What is the man in a hat holding after he opens the door?", ["a red star"])
    man, door = subs[0], [s for s in subs if s.role == "cue"][0]
    assert man.prompts() == [t.format("man in a hat") for t in defaults.PROMPT_TEMPLATES]
    assert door.prompts(("a photo of the {}.",)) == ["a photo of the door."]
    assert [s.prompts() for s in subs if s.role in ("question", "option")] == [[subs[-2].text], ["a red star"]]
    assert man.prompts(()) == ["a man in a hat"]

    clip = Models(get_profile("tiny")).clip()

    def unit(v):
        return v / np.linalg.norm(v, axis=-1, keepdims=True)

    q = embed_subqueries(clip.embed_texts, subs)
    assert q.shape == (len(subs), clip.dim) and np.allclose(np.linalg.norm(q, axis=1), 1.0, atol=1e-5)
    for row, sub in zip(q, subs):
        want = unit(unit(clip.embed_texts(sub.prompts())).mean(axis=0))
        assert np.allclose(row, want, atol=1e-5), sub
    plain = unit(clip.embed_texts([man.text]))[0]
    assert not np.allclose(q[0], plain, atol=1e-3)  # the ensemble, not the phrase alone
    assert np.allclose(embed_subqueries(clip.embed_texts, subs, templates=())[0], plain, atol=1e-5)


def test_decompose_deduplicates():
    subs = decompose_question("Is the red car next to the red car?", ["red car"])
    assert texts(subs).count("a red car") == 1


def test_decompose_with_llm_json_reply():
    prompts = []

    def generate(prompt):
        prompts.append(prompt)
        return 'Sure: {"targets": ["purple star"], "cues": ["a green ring", "the blue square"]}'

    subs = decompose_with_llm("When does the purple star appear?", ["A. 12 s", "B. 40 s"], generate)
    assert "When does the purple star appear?" in prompts[0] and "40 s" in prompts[0]
    assert texts(subs, "target") == ["a purple star"]
    assert texts(subs, "cue") == ["a green ring", "a blue square"]
    assert texts(subs, "question") == ["When does the purple star appear?"]
    assert texts(subs, "option") == ["12 s", "40 s"]


def test_decompose_with_llm_line_reply():
    subs = decompose_with_llm("Where is the cat?", (), lambda p: "target: black cat\ncues: sofa, window")
    assert texts(subs, "target") == ["a black cat"]
    assert texts(subs, "cue") == ["a sofa", "a window"]


@pytest.mark.parametrize("reply", ["I don't know.", "", '{"answer": 3}', "{not json"])
def test_decompose_with_llm_falls_back(reply):
    q = "When does the purple star appear?"
    assert decompose_with_llm(q, (), lambda p: reply) == decompose_question(q)
    assert decompose_with_llm(q, (), None) == decompose_question(q)


# --------------------------------------------------------------------------------------------------
# fusion and priors
# --------------------------------------------------------------------------------------------------


def test_fuse_normalises_narrow_cosine_band():
    rng = np.random.default_rng(0)
    a = 0.25 + 0.01 * rng.standard_normal(200)  # a CLIP-like narrow band
    a[50] = 0.32
    b = 0.1 + 0.2 * rng.standard_normal(200)  # a wide-band query
    f = fuse_scores(np.stack([a, b]), [1.0, 0.0])
    assert int(np.argmax(f)) == 50
    assert f[50] > 4.0  # ~7 robust standard deviations, not 0.07 cosine


def test_fuse_any_target_counts_one_strong_match():
    z = np.array([[4.0, 2.2], [0.0, 2.2]])  # frame 0: one target strongly; frame 1: both moderately
    norm_free = Normalizer(np.zeros(2), np.ones(2))
    from pipelines.search.scores import _fuse
    mean_only = _fuse(norm_free.transform(z), [1, 1], 0.0, 0.5)
    assert mean_only[1] > mean_only[0]
    fused = _fuse(norm_free.transform(z), [1, 1], 0.5, 0.5)
    assert fused[0] > fused[1]


def test_fuse_reference_statistics_for_new_frames():
    rng = np.random.default_rng(1)
    old = rng.normal(0.2, 0.05, (2, 100))
    new = rng.normal(0.2, 0.05, (2, 7))
    w = [1.0, 0.3]
    together = fuse_scores(np.concatenate([old, new], axis=1), w, reference=old)
    assert np.allclose(fuse_scores(new, w, reference=old), together[100:])
    assert np.allclose(fuse_scores(old, w), together[:100])


def test_fuse_rank_method_is_monotone():
    s = np.array([[0.1, 0.3, 0.2, 0.5, 0.4]])
    f = fuse_scores(s, [1.0], method="rank")
    assert list(np.argsort(f)) == [0, 2, 1, 4, 3]


def test_fuse_constant_scores_stay_flat():
    f = fuse_scores(np.full((3, 50), 0.27), [1.0, 0.5, 0.3])
    assert np.allclose(f, f[0])


def test_fuse_rejects_weight_mismatch():
    with pytest.raises(ValueError):
        fuse_scores(np.zeros((2, 5)), [1.0])


def test_apply_priors_boosts_inside_ranges_only():
    t = np.arange(10.0)
    out = apply_priors(t, np.zeros(10), [(2.0, 4.0, 1.5), (3.5, 5.0, 1.0)])
    assert list(out) == [0, 0, 1.5, 1.5, 2.5, 1.0, 0, 0, 0, 0]


# --------------------------------------------------------------------------------------------------
# zoom ranges
# --------------------------------------------------------------------------------------------------


def test_zoom_ranges_around_peaks_merged_and_priors():
    t = np.arange(100.0)
    s = bump(t, 20, 1.5, 6.0) + bump(t, 60, 1.5, 4.0) + bump(t, 80, 1.5, 2.5)  # z units
    r = zoom_ranges(t, s, n_ranges=2, interval=1.0)
    assert r == [(19.0, 21.0), (59.0, 61.0)]
    r = zoom_ranges(t, s, n_ranges=2, interval=1.0, radius=2.0, priors=[(60.5, 62.5, 1.0), (90.2, 90.4, 0.5)])
    assert np.allclose(r, [(18.0, 22.0), (58.0, 62.5), (89.8, 90.8)])
    for (_a0, b0), (a1, _b1) in zip(r, r[1:], strict=False):
        assert b0 < a1


def test_zoom_ranges_skip_explored_peaks():
    t = np.arange(100.0)
    s = bump(t, 20, 1.5, 6.0) + bump(t, 60, 1.5, 4.0) + bump(t, 80, 1.5, 2.5)
    r = zoom_ranges(t, s, n_ranges=2, interval=1.0, explored=[(19.0, 21.0)])
    assert r == [(59.0, 61.0), (79.0, 81.0)]


# --------------------------------------------------------------------------------------------------
# selection
# --------------------------------------------------------------------------------------------------


def test_single_peak_selected_with_concentration_and_coverage():
    t = np.arange(60.0)
    s = bump(t, 30, 2.0, 3.0)
    idx = select_keyframes(t, s, 8, min_gap=0.75, seed=0)
    assert len(idx) == 8 and list(idx) == sorted(idx)
    assert 30 in idx
    near = np.sum(np.abs(t[idx] - 30) <= 5)
    assert near >= 2  # an even spread would put about 1.3 of 8 frames within 5 s of the peak
    assert t[idx].min() < 15 and t[idx].max() > 45  # and the rest still covers the video


def test_two_separated_peaks():
    t = np.arange(100.0)
    s = bump(t, 20, 2.0, 3.0) + bump(t, 80, 2.0, 2.0)
    assert list(select_keyframes(t, s, 2, min_gap=0.75, seed=0)) == [20, 80]
    idx = select_keyframes(t, s, 6, min_gap=0.75, seed=3)
    assert {20, 80} <= set(idx.tolist())


def test_a_hump_does_not_reach_across_a_cut():
    """A short shot right after the best shot scores a little lower than the best shot's shoulder, with no
    dip between them: one hump for the curve alone, but another shot, hence another peak, with the shots."""
    from pipelines.search.select import _peaks

    t = np.arange(80.0, 92.0, 0.25)
    s = bump(t, 85.0, 3.0, 7.8)
    short = (t >= 87.4) & (t < 88.1)
    s[short] = 6.6  # the needle, just after the best shot, above the best shot's own frames near the cut
    s[t >= 88.1] = 1.0
    shots = [(80.0, 87.4), (87.4, 88.1), (88.1, 92.0)]
    groups = scene_ids(t, shots)
    alone = _peaks(t, s, 3, tolerance=1.0, min_gap=0.75)
    assert not any(short[i] for i in alone)  # the needle is the best peak's shoulder
    with_shots = _peaks(t, s, 3, tolerance=1.0, min_gap=0.75, groups=groups)
    assert abs(t[with_shots[0]] - 85.0) < 1e-9 and short[with_shots[1]]


def test_a_needle_shot_just_after_a_lookalike_keeps_its_own_peak():
    # a look-alike at the end of one shot (127.75 s) and the needle, a 0.5 s shot of its own a quarter
    # second later, scoring a hair lower: within min_gap of each other, but other shots, other evidence
    from pipelines.search.select import _peaks

    t = np.concatenate([np.arange(100.0, 160.0, 1.0), [127.25, 127.5, 127.75, 128.0, 128.25]])
    t.sort()
    s = np.full(len(t), 0.2)
    s[np.isclose(t, 127.75)] = 2.19
    s[np.isclose(t, 128.0) | np.isclose(t, 128.25)] = 2.16
    s[np.isclose(t, 150.0)] = 2.4
    shots = [(100.0, 127.8), (127.8, 128.3), (128.3, 160.0)]
    needle = (t >= 127.8) & (t < 128.3)
    groups = scene_ids(t, shots)
    assert not any(needle[i] for i in _peaks(t, s, 3, tolerance=1.0, min_gap=0.75))
    assert any(needle[i] for i in _peaks(t, s, 3, tolerance=1.0, min_gap=0.75, groups=groups))
    picked = select_keyframes(t, s, 8, min_gap=0.75, scenes=shots, peak_margin=0.1, rival_band=0.4)
    assert any(needle[i] for i in picked) and any(np.isclose(t[i], 127.75) for i in picked)


def test_a_context_frame_leaves_the_next_shot_its_own_peak():
    # measured (s303v06): the best peak (209.0 s) opens a shot; the needle shot before it (206.7-208.2)
    # tops at 206.75, and its last frame (208.0) is on the best peak's hump: shown as context around the
    # peak, that frame must not stand for the needle's shot and keep its best frame out
    t = np.unique(np.concatenate([np.arange(150.0, 260.0, 1.0), [206.75, 208.25, 208.5, 208.75, 209.25, 209.5,
                                                                  209.75]]))
    s = np.full(len(t), 0.2)
    for at, v in ((206.0, -0.65), (206.75, 4.96), (207.0, 4.88), (208.0, 1.79), (208.25, 4.19), (208.5, 1.11),
                  (208.75, 1.03), (209.0, 5.16), (209.25, 0.8), (209.5, 0.66), (209.75, 0.72), (210.0, 0.97),
                  (160.0, 5.04), (170.0, 5.0), (180.0, 4.81), (240.0, 4.8), (250.0, 4.77),  # other peaks
                  (152.0, 1.5), (186.0, 1.6), (195.0, 1.4), (225.0, 1.3), (235.0, 1.2), (255.0, 1.1)):
        s[np.isclose(t, at)] = v
    cuts = [150.0, 155.0, 165.0, 175.0, 185.0, 190.0, 206.7, 208.2, 221.5, 230.0, 238.0, 245.0, 253.0, 260.0]
    shots = list(zip(cuts[:-1], cuts[1:]))  # a shot for each peak
    picked = t[select_keyframes(t, s, 16, min_gap=0.75, scenes=shots, peak_margin=0.1, rival_band=0.4,
                                context_spacing=0.25)]
    assert np.isclose(picked, 209.0).any() and np.isclose(picked, 208.0).any()  # the peak and its context
    assert np.isclose(picked, 206.75).any()  # and the needle shot's own best frame


def test_flat_scores_evenly_spread():
    t = np.arange(100.0)
    idx = select_keyframes(t, np.full(100, 0.3), 5, min_gap=0.75, seed=0, jitter=0.0)
    assert list(idx) == [10, 30, 49, 69, 89]
    for seed in range(5):  # a seed only shifts the whole grid
        gaps = np.diff(select_keyframes(t, np.full(100, 0.3), 5, min_gap=0.75, seed=seed))
        assert gaps.max() - gaps.min() <= 1


def test_duplicates_suppressed_one_per_hump():
    rng = np.random.default_rng(0)
    t = np.arange(100.0)
    s = np.zeros(100)
    s[40:51] = 5.0 + 0.05 * rng.standard_normal(11)  # a long plateau: one event
    s[70:73] = 3.0  # a second, weaker event
    idx = select_keyframes(t, s, 2, min_gap=0.75, seed=0)
    assert 40 <= idx[0] <= 50 and 70 <= idx[1] <= 72
    # duplicated time stamps (the same frame scored twice) never both selected
    t2 = np.concatenate([t, t[40:51]])
    s2 = np.concatenate([s, s[40:51]])
    idx = select_keyframes(t2, s2, 30, min_gap=0.75, seed=0)
    assert len(set(t2[idx].tolist())) == len(idx)
    assert np.diff(np.sort(t2[idx])).min() >= 0.75


def test_selection_respects_min_gap_and_time_order():
    rng = np.random.default_rng(5)
    t = np.sort(rng.uniform(0, 300, 700))
    s = rng.standard_normal(700)
    idx = select_keyframes(t, s, 16, min_gap=5.0, seed=1)
    assert len(idx) == 16
    assert np.all(np.diff(t[idx]) >= 5.0)
    # unsorted input: indices refer to the input, returned in time order
    perm = rng.permutation(700)
    idx2 = select_keyframes(t[perm], s[perm], 16, min_gap=5.0, seed=1)
    assert np.all(np.diff(t[perm][idx2]) > 0)
    assert sorted(t[perm][idx2].tolist()) == sorted(t[idx].tolist())


def test_determinism_and_seeds_differ_only_where_flat():
    t = np.arange(200.0)
    s = bump(t, 50, 1.5, 4.0) + bump(t, 150, 1.5, 3.0)
    runs = {seed: select_keyframes(t, s, 8, min_gap=0.75, seed=seed) for seed in range(6)}
    assert np.array_equal(runs[0], select_keyframes(t, s, 8, min_gap=0.75, seed=0))
    assert len({tuple(r.tolist()) for r in runs.values()}) > 1  # the seed does matter ...
    for r in runs.values():
        assert {50, 150} <= set(r.tolist())  # ... but never for the peaks
        flat_picks = [i for i in r if s[i] < 0.05]
        assert len(flat_picks) >= 3


def test_select_edge_cases():
    assert select_keyframes(np.zeros(0), np.zeros(0), 4, min_gap=1.0).size == 0
    assert list(select_keyframes(np.array([3.0]), np.array([1.0]), 4, min_gap=1.0)) == [0]
    assert len(select_keyframes(np.arange(3.0), np.zeros(3), 8, min_gap=0.5)) == 3
    with pytest.raises(ValueError):
        select_keyframes(np.arange(3.0), np.zeros(4), 2, min_gap=0.5)


def test_scenes_one_peak_per_shot_first():
    t = np.arange(100.0)
    s = bump(t, 10, 1.5, 5.0) + bump(t, 35, 1.5, 4.5) + bump(t, 80, 1.5, 3.0)  # two humps in shot A
    assert list(select_keyframes(t, s, 2, min_gap=0.75)) == [10, 35]
    shots = [(0.0, 50.0), (50.0, 100.0)]
    assert list(select_keyframes(t, s, 2, min_gap=0.75, scenes=shots)) == [10, 80]
    assert list(select_keyframes(t, s, 3, min_gap=0.75, scenes=shots)) == [10, 35, 80]


def test_scenes_coverage_prefers_a_shot_not_shown():
    t = np.arange(100.0)
    flat = np.zeros(100)
    plain = select_keyframes(t, flat, 3, min_gap=0.75, jitter=0.0)
    assert list(plain) == [16, 49, 82]
    idx = select_keyframes(t, flat, 3, min_gap=0.75, jitter=0.0, scenes=[(0.0, 60.0), (60.0, 100.0)])
    assert idx[0] == 16 and idx[2] == 82
    assert 60 <= idx[1] <= 67  # the middle pick moves into the unseen shot, within its quantile cell


def test_scene_ids_and_unseen_scene_ranges():
    shots = [(0.0, 3.2), (3.2, 3.7), (3.7, 6.0), (6.0, 6.4), (8.1, 8.3), (8.3, 10.0)]
    t = np.arange(10.0)
    assert list(scene_ids(t, shots)) == [0, 0, 0, 0, 2, 2, 3, -1, -1, 5]
    s = np.zeros(10)
    s[8] = 2.0  # the frames around 8.1-8.3 score best: probe that shot first
    assert unseen_scene_ranges(t, s, shots, 5) == [(8.1, 8.3), (3.2, 3.7)]
    assert unseen_scene_ranges(t, s, shots, 1) == [(8.1, 8.3)]
    r = unseen_scene_ranges(t, s, shots, 5, min_len=0.5)
    assert np.allclose(r, [(7.95, 8.45), (3.2, 3.7)])
    # heads: the start of a shot before its first frame (0.3 s and 0.7 s here; 0 s heads are skipped)
    assert unseen_scene_ranges(t, s, shots, 5, heads=True) == [(8.1, 8.3), (8.3, 9.0), (3.2, 3.7), (3.7, 4.0)]
    assert unseen_scene_ranges(t, s, shots, 5, heads=True, head_min=0.5) == [(8.1, 8.3), (8.3, 9.0), (3.2, 3.7)]


def test_short_shot_merged_into_the_next_found_in_its_head():
    """The segmenter cut at 40.3 s but not 0.5 s later (shorter than its minimum shot): the needle is
    the head of the shot 40.3-70 s, before its first index frame at 41 s."""
    def curve(ts):
        return np.maximum(needle_curve(ts, start=40.3, end=40.8), 0.2 + bump(ts, 20, 3.0, 0.5))

    t = np.arange(0.0, 90.0)
    shots = [(0.0, 15.0), (15.0, 40.3), (40.3, 70.0), (70.0, 90.0)]
    params = SearchParams(k=4, peak_margin=None)
    off = keyframe_search(t, curve(t), densify=grid_densify(curve), scenes=shots,
                          params=dataclasses.replace(params, shot_heads=False))
    assert not any(40.3 <= kf.t < 40.8 for kf in off.keyframes)
    res = keyframe_search(t, curve(t), densify=grid_densify(curve), scenes=shots,
                          params=dataclasses.replace(params, shot_heads=True))
    assert [kf.round for kf in res.keyframes if 40.3 <= kf.t < 40.8] == [1]
    assert any(a <= 40.3 and 40.8 <= b for a, b in res.trace[1]["ranges"])


# --------------------------------------------------------------------------------------------------
# coarse-to-fine search
# --------------------------------------------------------------------------------------------------


def test_needle_between_index_frames_found_only_by_zoom():
    def curve(ts):  # a 0.4 s needle at 60.3 s, neighbours partly alike; a wider decoy bump at 30 s
        return np.maximum(needle_curve(ts, start=60.3, end=60.7, hint=0.15), 0.2 + bump(ts, 30, 3.0, 0.3))

    t = np.arange(0.0, 120.0)
    coarse = curve(t)
    assert not np.any((t >= 60.3) & (t < 60.7))  # no index frame sees it
    params = SearchParams(k=4, zoom_rounds=0)
    plain = keyframe_search(t, coarse, params=params)
    assert not any(60.3 <= kf.t < 60.7 for kf in plain.keyframes)

    log = []
    res = keyframe_search(t, coarse, densify=grid_densify(curve, log), params=SearchParams(k=4))
    hit = [kf for kf in res.keyframes if 60.3 <= kf.t < 60.7]
    assert len(hit) == 1 and hit[0].t == 60.5 and hit[0].round == 1
    assert res.keyframes == sorted(res.keyframes, key=lambda k: k.t)
    assert max(res.keyframes, key=lambda k: k.score) is hit[0]
    ranges, fps, n = log[0]
    assert fps == 4.0 and any(a <= 60.5 <= b for a, b in ranges)
    assert res.trace[1]["improved"] is True
    assert res.frames_scored == len(t) + sum(x[2] for x in log)


def test_needle_with_per_query_scores_and_weights():
    """Raw (Q, N) sims: the new frames are normalised with the index frames' statistics."""

    def sims(ts):
        target = 0.22 + 0.08 * (needle_curve(ts, start=60.3, end=60.7, hint=0.3, base=0.0))
        question = 0.18 + 0.01 * np.cos(np.asarray(ts, float))
        return np.stack([target, question])

    t = np.arange(0.0, 120.0)
    res = keyframe_search(t, sims(t), weights=[1.0, 0.3], densify=grid_densify(sims),
                          params=SearchParams(k=3))
    assert any(60.3 <= kf.t < 60.7 for kf in res.keyframes)
    with pytest.raises(ValueError):
        keyframe_search(t, sims(t), params=SearchParams(k=3))


def test_prior_text_hit_finds_needle_without_visual_hint():
    def curve(ts):
        return np.maximum(needle_curve(ts, start=90.2, end=90.6, hint=0.0),
                          0.2 + bump(ts, 30, 3.0, 0.5) + bump(ts, 70, 3.0, 0.4))

    t = np.arange(0.0, 120.0)
    blind = keyframe_search(t, curve(t), densify=grid_densify(curve), params=SearchParams(k=4))
    assert not any(90.2 <= kf.t < 90.6 for kf in blind.keyframes)  # nothing points there

    res = keyframe_search(t, curve(t), densify=grid_densify(curve), params=SearchParams(k=4),
                          priors=[(90.2, 90.6, 1.0)])
    hit = [kf for kf in res.keyframes if 90.2 <= kf.t < 90.6]
    assert hit and hit[0].round == 1
    assert any(a <= 90.2 and 90.6 <= b for a, b in res.trace[1]["ranges"])


def test_short_shot_between_index_frames_probed_with_scenes():
    def curve(ts):  # a 0.5 s shot at 40.3 s, nothing alike around it; decoys elsewhere
        return np.maximum(needle_curve(ts, start=40.3, end=40.8), 0.2 + bump(ts, 20, 3.0, 0.5))

    t = np.arange(0.0, 90.0)
    shots = [(0.0, 15.0), (15.0, 40.3), (40.3, 40.8), (40.8, 70.0), (70.0, 90.0)]
    blind = keyframe_search(t, curve(t), densify=grid_densify(curve), params=SearchParams(k=4))
    assert not any(40.3 <= kf.t < 40.8 for kf in blind.keyframes)
    res = keyframe_search(t, curve(t), densify=grid_densify(curve), scenes=shots,
                          params=SearchParams(k=4, peak_margin=None))  # one frame per shot (no context)
    assert [kf.round for kf in res.keyframes if 40.3 <= kf.t < 40.8] == [1]
    off = keyframe_search(t, curve(t), densify=grid_densify(curve), scenes=shots,
                          params=SearchParams(k=4, unseen_scenes=0))
    assert not any(40.3 <= kf.t < 40.8 for kf in off.keyframes)


def test_unseen_shots_past_the_limit_are_scored_when_the_index_holds_their_frames():
    """Twelve half-second shots between index frames and a limit of four: the needle's, next to the
    weakest neighbours, is past the limit and never probed, unless the index holds its frames
    (``densify.held``, what `vqa index` decodes ahead): then every held range is scored and none other."""
    def curve(ts):  # the needle at 80.3 s; its neighbours score lowest of all
        return np.maximum(needle_curve(ts, start=80.3, end=80.8), 0.3 - 0.1 * bump(ts, 80, 6.0, 1.0))

    t = np.arange(0.0, 120.0)
    starts = [5.3 + 9 * i for i in range(12)] + [80.3]
    shots, prev = [], 0.0
    for a in sorted(starts):
        shots += [(prev, a), (a, a + 0.5)]
        prev = a + 0.5
    shots.append((prev, 120.0))
    params = SearchParams(k=4, unseen_scenes=4, peak_margin=None)
    log: list = []
    blind = keyframe_search(t, curve(t), densify=grid_densify(curve, log), scenes=shots, params=params)
    assert not any(80.3 <= kf.t < 80.8 for kf in blind.keyframes)
    asked = [rg for rg in log[0][0] if rg[1] - rg[0] <= 0.6]
    assert len(asked) == 4 and not any(a <= 80.3 < b for a, b in asked)

    log.clear()
    densify = grid_densify(curve, log)
    densify.held = [(a, b) for a, b in shots if b - a <= 0.5]  # the index decoded every short shot
    res = keyframe_search(t, curve(t), densify=densify, scenes=shots, params=params)
    assert [kf.round for kf in res.keyframes if 80.3 <= kf.t < 80.8] == [1]
    assert sorted(rg for rg in log[0][0] if rg[1] - rg[0] <= 0.6) == sorted(densify.held)


def test_prior_alone_selects_frame_inside_when_visual_is_flat():
    t = np.arange(0.0, 60.0)
    res = keyframe_search(t, np.zeros(60), densify=grid_densify(lambda ts: np.zeros(len(ts))),
                          params=SearchParams(k=3), priors=[(41.6, 42.1, 3.0)])
    assert any(41.6 <= kf.t <= 42.1 for kf in res.keyframes)


def test_search_stops_when_zoom_adds_nothing_better():
    t = np.arange(0.0, 100.0)
    s = bump(t, 40, 2.0, 3.0)
    log = []
    res = keyframe_search(t, s, densify=grid_densify(lambda ts: bump(ts, 40, 2.0, 3.0) - 1.0, log),
                          params=SearchParams(k=4, zoom_rounds=3, peak_margin=None))  # no context frames
    assert len(log) == 1 and len(res.trace) == 2 and res.trace[1]["improved"] is False
    assert all(kf.round == 0 for kf in res.keyframes)


def test_second_round_explores_new_peaks_and_trace_is_json():
    def curve(ts):
        return 0.2 + sum(bump(ts, c, 1.0, h) for c, h in [(11, 1.0), (31, 0.9), (51, 0.8), (71, 0.7)])

    t = np.arange(0.0, 80.0, 2.0)  # index frames miss every peak by 1 s
    log = []
    res = keyframe_search(t, curve(t), densify=grid_densify(curve, log),
                          params=SearchParams(k=4, zoom_rounds=2, zoom_ranges=2, zoom_fps=2.0))
    assert len(log) == 2
    for ranges, peaks in zip((log[0][0], log[1][0]), ((11, 31), (51, 71)), strict=True):
        assert len(ranges) == 2 and all(any(a <= p <= b for a, b in ranges) for p in peaks)
    assert sorted(res.times) == [11.0, 31.0, 51.0, 71.0]
    d = json.loads(json.dumps(res.as_dict()))
    assert [r["round"] for r in d["trace"]] == [0, 1, 2]
    assert d["frames_scored"] == len(t) + log[0][2] + log[1][2]
    assert d["params"]["k"] == 4 and len(d["keyframes"]) == 4
    assert set(d["keyframes"][0]) == {"t", "score", "round"}


def test_search_without_densify_and_result_types():
    t = np.arange(0.0, 30.0)
    res = keyframe_search(t, bump(t, 12, 1.0, 2.0), params=SearchParams(k=3, zoom_rounds=2))
    assert isinstance(res, SearchResult) and all(isinstance(k, Keyframe) for k in res.keyframes)
    assert res.frames_scored == 30 and len(res.trace) == 1
    assert 12.0 in res.times
    empty = keyframe_search(np.zeros(0), np.zeros(0), densify=grid_densify(lambda ts: ts))
    assert empty.keyframes == []


def test_peak_extent_spans_the_hump_inside_its_shot():
    t = np.arange(0.0, 40.0)  # 1 fps
    s = np.zeros(40)
    s[10:15] = [3.0, 3.6, 4.0, 3.4, 3.1]  # one hump, 10..14 s, within 1.0 of its top
    s[16:19] = 3.9  # a second hump after a dip at 15 s
    assert peak_extent(t, s, 12.0, span=None) == (9.5, 14.5)
    assert peak_extent(t, s, 12.0, tolerance=0.5, span=None) == (10.5, 12.5)
    assert peak_extent(t, s, 17.0, span=None) == (15.5, 18.5)
    assert peak_extent(t, s, 12.0, span=1.0) == (10.5, 13.5)  # at most a second each way
    # a cut at 12.5 s: the moment stays inside the keyframe's shot
    shots = [(0.0, 12.5), (12.5, 40.0)]
    assert peak_extent(t, s, 12.0, scenes=shots, span=None) == (9.5, 12.5)
    assert peak_extent(t, s, 13.0, scenes=shots) == (12.5, 14.5)
    # clipped to the video; zoom frames (denser) are part of the curve like any other
    assert peak_extent(t, np.full(40, 1.0), 0.0, bounds=(0.0, 39.2), span=None) == (0.0, 39.2)
    tz = np.concatenate([t, [20.25, 20.5, 20.75]])
    sz = np.concatenate([np.zeros(40), [5.0, 5.2, 5.0]])
    assert peak_extent(tz, sz, 20.5, pad=0.125) == (20.125, 20.875)
    # without a pad each end reaches halfway to the next frame scored: the zoom frames' own spacing
    assert peak_extent(tz, sz, 20.5) == (20.125, 20.875)


def test_a_moment_stays_within_its_span_of_the_keyframe():
    """A keyframe in a long flat shot beside a needle (context, or coverage) stands for the second
    around it, not for the whole flat shot: the middle of its moment stays near what it shows."""
    zoom = np.setdiff1d(np.arange(19.0, 22.01, 0.25), np.arange(19.0, 23.0))
    t = np.sort(np.concatenate([np.arange(0.0, 40.0), zoom]))
    s = 0.2 + 0.05 * np.sin(3.0 * t)  # flat shots, a little noise
    s[(t >= 20.25) & (t <= 20.75)] = [4.0, 5.0, 4.2]  # the needle: its own shot, 20.2-20.8 s
    shots = [(0.0, 20.2), (20.2, 20.8), (20.8, 40.0)]
    assert peak_extent(t, s, 20.5, scenes=shots) == (20.2, 20.8)
    for t0 in (19.75, 21.0, 21.25):  # context frames of the needle, in the flat shots beside it
        a, b = peak_extent(t, s, t0, scenes=shots, span=1.0)
        assert t0 - 1.5 <= a <= t0 <= b <= t0 + 1.5 and abs((a + b) / 2 - t0) <= 0.75
        a, b = peak_extent(t, s, t0, scenes=shots, span=None)  # the old rule: the whole flat shot
        assert abs((a + b) / 2 - t0) > 5.0


def test_search_result_keeps_the_scored_curve_in_time_order():
    t = np.arange(0.0, 30.0)
    curve = lambda ts: bump(ts, 12.3, 0.3, 1.0)  # noqa: E731
    res = keyframe_search(t, curve(t), densify=grid_densify(curve), params=SearchParams(k=3, zoom_rounds=1))
    assert len(res.curve_times) == len(res.curve_scores) == res.trace[0]["frames_scored"] + res.trace[1]["new_frames"]
    assert np.all(np.diff(res.curve_times) > 0)
    top = res.curve_times[np.argmax(res.curve_scores)]
    assert top == max(res.keyframes, key=lambda k: k.score).t and abs(top - 12.3) < 0.2


def test_densify_length_mismatch_is_an_error():
    t = np.arange(0.0, 30.0)
    with pytest.raises(ValueError):
        keyframe_search(t, bump(t, 12, 1.0, 2.0), densify=lambda r, f: (np.array([1.5, 2.5]), np.array([1.0])))


# --------------------------------------------------------------------------------------------------
# budgets
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("scores,total,lo,hi", [
    ([3.0, 1.0, 0.0, -1.0], 1_000_000, 50_000, 400_000),
    ([0.5] * 8, 1_000_000, 50_000, 400_000),
    ([2.0, 1.0], 10_000_000, 50_000, 400_000),
    ([5.0, 1.0, 0.0], 100_000, 50_000, 400_000),  # the total cannot give everyone the minimum
    ([9.0, 0.0, 0.0, 0.0, 0.0], 1_000_000, 10_000, 300_000),
])
def test_frame_budgets(scores, total, lo, hi):
    b = frame_budgets(scores, total, lo, hi)
    assert len(b) == len(scores) and all(isinstance(x, int) for x in b)
    assert sum(b) <= total
    assert all(x <= hi for x in b)
    floor = min(lo, total // len(scores))
    assert all(x >= floor - 1 for x in b)
    order = np.argsort(-np.asarray(scores), kind="stable")
    assert all(b[order[i]] >= b[order[i + 1]] for i in range(len(b) - 1))
    if len(set(scores)) == 1:
        assert max(b) - min(b) <= 1
    if total >= hi * len(scores):
        assert b == [hi] * len(scores)


def test_frame_budgets_multiple_and_empty():
    b = frame_budgets([1.0, 0.0], 200_000, 20_000, 150_000, multiple=28 * 28)
    assert all(x % (28 * 28) == 0 for x in b) and sum(b) <= 200_000
    assert frame_budgets([], 1000, 10, 100) == []
