"""pipelines/eval/: benchmark loaders, keyframe-search metrics, baselines, resumable runs.

Videos are generated with ffmpeg; the runner used here does real work on them (probe, decode, score
frames by colour), so the results and summaries below are computed, not canned.
"""

from __future__ import annotations

import csv
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from pipelines.eval.baselines import topk_indices, uniform_times  # noqa: E402
from pipelines.eval.detect import sniff_format  # noqa: E402
from pipelines.eval.items import (  # noqa: E402
    EvalDataError,
    EvalItem,
    duration_bucket,
    frame_index,
    parse_choice,
    parse_evidence,
)
from pipelines.eval.load import describe_skipped, load_items  # noqa: E402
from pipelines.eval.metrics import is_correct, temporal_metrics  # noqa: E402
from pipelines.eval.results import read_results  # noqa: E402
from pipelines.eval.run import run_eval  # noqa: E402
from pipelines.eval.summary import format_table, summarize, summarize_records  # noqa: E402
from pipelines.stages.media import decode, ffmpeg_binary, probe, read_frame_at  # noqa: E402

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module", autouse=True)
def _vqa_home(tmp_path_factory):
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("VQA_HOME", str(tmp_path_factory.mktemp("vqa_home")))
        mp.setenv("HF_HUB_OFFLINE", "1")
        yield


def _ffmpeg(*args: str) -> None:
    proc = subprocess.run([ffmpeg_binary(), "-hide_banner", "-loglevel", "error", "-y", *args], capture_output=True)
    assert proc.returncode == 0, proc.stderr.decode("utf-8", "replace")[-800:]


def _place(src: Path, dest: Path) -> Path:
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src, dest)
    return dest


def _abs(p: Path) -> str:
    return os.path.abspath(p)


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    """A 3 s testsrc2 video; copies of it stand in for each benchmark's videos."""
    path = tmp_path_factory.mktemp("clip") / "testsrc.mp4"
    _ffmpeg("-f", "lavfi", "-i", "testsrc2=size=160x90:rate=10", "-t", "3", "-pix_fmt", "yuv420p", str(path))
    return path


# ---------------------------------------------------------------------------------------------------
# Loaders, one layout each


def test_native_jsonl_fields_and_skips(tmp_path, clip):
    vids = tmp_path / "vids"
    _place(clip, vids / "clip.mp4")
    _place(clip, vids / "sub" / "other.mkv")
    absolute = _place(clip, tmp_path / "elsewhere" / "abs.mp4")
    ann = tmp_path / "items.jsonl"
    lines = [
        {"id": "q1", "video": "clip.mp4", "question": "What is shown?", "options": ["A. bars", "B. a cat"],
         "answer": "A", "evidence": [[2.0, 2.5], [0.5, 1.0]], "task_type": "ocr"},
        {"id": "q2", "video": "clip", "question": "Describe it.", "answer": "Colour bars", "evidence": [1.0, 2.0],
         "duration": 3.0},
        {"id": "q3", "video": "sub/other", "question": "Pick one", "options": ["red", "blue"], "answer": "blue",
         "fps": 10},
        {"id": "q4", "video": "missing.mp4", "question": "?", "options": ["x", "y"], "answer": "A"},
        "just a string",
        {"id": "q1", "video": "clip.mp4", "question": "again", "options": ["x", "y"], "answer": "B"},
        {"id": "q6", "video": str(absolute), "question": "by index", "options": ["x", "y"], "answer": 1},
        {"id": "q7", "video": "clip.mp4", "question": "bad answer", "options": ["x", "y"], "answer": "Z"},
        {"id": "q8", "video": "clip.mp4", "question": "bad evidence", "evidence": [[3, 1]]},
    ]
    text = "\n".join(json.dumps(x) for x in lines[:5]) + '\n{"id": "q5", "vid\n' + "\n".join(
        json.dumps(x) for x in lines[5:]) + "\n"
    ann.write_text(text)

    skipped = []
    items = load_items(ann, "native", vids, skipped=skipped)
    assert [i.id for i in items] == ["q1", "q2", "q3", "q6"]
    q1, q2, q3, q6 = items
    assert q1 == EvalItem(id="q1", video=_abs(vids / "clip.mp4"), question="What is shown?",
                          options=("bars", "a cat"), answer="A", evidence=((0.5, 1.0), (2.0, 2.5)),
                          task_type="ocr", source_format="native")
    assert q2.video == _abs(vids / "clip.mp4")  # bare id: the usual extensions are tried
    assert (q2.options, q2.answer, q2.evidence) == ((), "Colour bars", ((1.0, 2.0),))
    assert (q2.duration, q2.duration_class) == (3.0, "short")
    assert (q3.video, q3.answer, q3.fps) == (_abs(vids / "sub" / "other.mkv"), "B", 10.0)
    assert (q6.video, q6.answer) == (_abs(absolute), "B")

    assert [(s.record, s.id, s.reason) for s in skipped] == [
        (3, "q4", "video-not-found"), (4, None, "bad-record"), (5, None, "bad-record"),
        (6, "q1", "duplicate-id"), (8, "q7", "bad-answer"), (9, "q8", "bad-record")]
    assert "line 6" in skipped[2].detail
    described = describe_skipped(skipped)
    assert described[0].startswith("3 skipped (bad-record)")
    assert any("video-not-found" in d and "missing.mp4" in d for d in described)

    with pytest.raises(EvalDataError, match="missing.mp4"):  # no skipped list: nothing is dropped silently
        load_items(ann, "native", vids)
    assert [i.id for i in load_items(ann, "native", vids, limit=2, skipped=[])] == ["q1", "q2"]
    assert load_items(ann, "native", vids, limit=0) == []


def test_lv_haystack_frame_indexes_become_seconds(tmp_path, clip):
    vid = "c864505c-9d49-4da4-bf7e-254b4c348c03"
    _place(clip, tmp_path / "videos" / f"{vid}.mp4")
    meta = {"frame_rate": 30.0, "video_duration": 1959.1, "vclip_interval_in_video": [1439.9423042879966,
                                                                                       1919.9633329333333],
            "CLIP-reference-interval-video": [1528.999997769442, 1543.999997769442]}
    options = {"A": "Ice cubes", "B": "Crushed garlic", "C": "Milk", "D": "Chopped herbs", "E": "Grated cheese"}
    # Current rows (HF datasets): indexes counted on the whole video.
    rows = [{"video_id": vid, "vclip_id": "d581ffb6", "question": "What did I put in the whisked egg?",
             "options": options, "answer": "A", "frame_indexes_video": [46140, 46128], "video_metadata": meta},
            {"video_id": vid, "question": "No fps here", "options": options, "answer": "B",
             "frame_indexes_video": [10], "video_metadata": {}}]
    ann = tmp_path / "lvhaystack.json"
    ann.write_text(json.dumps(rows))
    skipped = []
    (item,) = load_items(ann, "lv-haystack", tmp_path / "videos", skipped=skipped)
    assert item.id == f"{vid}:0"
    assert item.video == _abs(tmp_path / "videos" / f"{vid}.mp4")
    assert item.fps == 30.0
    assert item.evidence == ((46128 / 30, 46129 / 30), (46140 / 30, 46141 / 30))  # frame i: [i/fps, (i+1)/fps]
    assert item.options == tuple(options.values()) and item.answer == "A"
    assert (item.duration, item.duration_class) == (1959.1, "long")
    assert [(s.record, s.reason) for s in skipped] == [(1, "no-fps")]

    # The first release (column-oriented, TStar's HaystackBench/LVHaystack_tiny.json): indexes counted
    # from the start of the clip. Published row 0: frames 2937 and 2949 of a clip starting at 1439.94 s,
    # whose reference interval on the video is [1529.0, 1544.0] s.
    cols = {"video_id": [vid], "vclip_id": ["d581ffb6"], "question": ["What did I put in the whisked egg?"],
            "options": [options], "answer": ["A"], "frame_indexes": [[2937, 2949]], "video_metadata": [meta]}
    old = tmp_path / "LVHaystack_tiny.json"
    old.write_text(json.dumps(cols))
    assert sniff_format(old) == "lv-haystack"
    (item,) = load_items(old, "auto", tmp_path / "videos")
    assert item.evidence[0] == pytest.approx((1439.9423042879966 + 2937 / 30, 1439.9423042879966 + 2938 / 30))
    lo, hi = meta["CLIP-reference-interval-video"]
    assert all(lo <= s <= e <= hi for s, e in item.evidence)
    assert frame_index(item.evidence[1][0] - 1439.9423042879966, 30.0) == 2949


def test_videomme_flat_rows_and_nested_template(tmp_path, clip):
    root = tmp_path / "Video-MME"
    _place(clip, root / "data" / "fFjv93ACGo8.mp4")
    _place(clip, root / "data" / "xyzXYZ12345.mp4")
    _place(clip, root / "data" / "001.mp4")
    rows = [
        {"video_id": "001", "duration": "short", "domain": "Knowledge", "sub_category": "Humanity & History",
         "url": "https://www.youtube.com/watch?v=fFjv93ACGo8", "videoID": "fFjv93ACGo8", "question_id": "001-1",
         "task_type": "Counting Problem", "question": "How many kinds of fruit?",
         "options": ["A. Apples.", "B. Candles.", "C. Berries.", "D. The three kinds are of the same number."],
         "answer": "C"},
        {"video_id": "002", "duration": "long", "domain": "Sports", "sub_category": "Football",
         "url": "https://www.youtube.com/watch?v=xyzXYZ12345", "question_id": "002-3",
         "task_type": "Temporal Reasoning", "question": "What happens first?",
         "options": ["A. A goal.", "B. A foul.", "C. A corner.", "D. A save."], "answer": "D"},
    ]
    flat = root / "videomme" / "test.json"
    flat.parent.mkdir(parents=True)
    flat.write_text(json.dumps(rows))
    assert sniff_format(flat) == "videomme"
    a, b = load_items(flat, "videomme", root)
    assert (a.id, a.video, a.answer, a.task_type, a.duration_class) == (
        "001-1", _abs(root / "data" / "fFjv93ACGo8.mp4"), "C", "Counting Problem", "short")
    assert a.options == ("Apples.", "Candles.", "Berries.", "The three kinds are of the same number.")
    assert b.video == _abs(root / "data" / "xyzXYZ12345.mp4")  # YouTube id taken from the url
    assert (b.answer, b.duration_class) == ("D", "long")

    nested = [{"video_id": "001", "duration_category": "short", "video_category": "Knowledge",
               "video_subcategory": "Humanity & History", "questions": [
                   {"question_id": "001-1", "task_type": "Object Reasoning", "question": "Which is not correct?",
                    "choices": ["A. It was Moina Michael.", "B. Poppy grows.", "C. A symbol.", "D. Written in WW1."],
                    "answer": "A", "response": "D"},
                   {"question_id": "001-2", "task_type": "Attribute Perception", "question": "Wearing?",
                    "choices": ["A. Black shirts.", "B. Blue shirts.", "C. Red skirts.", "D. Brown hat."],
                    "answer": "D", "response": "D"}]}]
    tmpl = tmp_path / "output_test_template.json"
    tmpl.write_text(json.dumps(nested))
    assert sniff_format(tmpl) == "videomme"
    items = load_items(tmpl, "auto", root)
    assert [(i.id, i.answer, i.task_type, i.duration_class) for i in items] == [
        ("001-1", "A", "Object Reasoning", "short"), ("001-2", "D", "Attribute Perception", "short")]
    assert items[1].options[3] == "Brown hat." and items[0].video == _abs(root / "data" / "001.mp4")


def test_mlvu_task_files_answer_text_and_colliding_basenames(tmp_path, clip):
    root = tmp_path / "MLVU"
    _place(clip, root / "video" / "1_plotQA" / "movie101_66.mp4")
    _place(clip, root / "video" / "8_sub_scene" / "movie101_66.mp4")
    (root / "json").mkdir(parents=True)
    (root / "json" / "1_plotQA.json").write_text(json.dumps([
        {"video": "movie101_66.mp4", "duration": 246, "question": "What color is the main male character?",
         "candidates": ["Yellow", "Red", "Green", "Blue"], "answer": "Green", "question_type": "plotQA"},
        {"video": "movie101_66.mp4", "duration": 246, "question": "Broken", "candidates": ["Yellow", "Red"],
         "answer": "Purple", "question_type": "plotQA"}]))
    (root / "json" / "8_sub_scene.json").write_text(json.dumps([
        {"video": "movie101_66.mp4", "duration": 246, "question": "Describe the scene with the dog.",
         "answer": "A man walks a dog along the river.", "question_type": "sub_scene",
         "scoring_points": ["man", "dog"]}]))
    assert sniff_format(root) == "mlvu"
    skipped = []
    plot, scene = load_items(root, "auto", None, skipped=skipped)
    assert (plot.id, plot.task_type, plot.answer, plot.options) == (
        "1_plotQA:0", "plotQA", "C", ("Yellow", "Red", "Green", "Blue"))
    assert (plot.duration, plot.duration_class) == (246.0, "medium")
    assert plot.video == _abs(root / "video" / "1_plotQA" / "movie101_66.mp4")
    assert scene.video == _abs(root / "video" / "8_sub_scene" / "movie101_66.mp4")  # not the plotQA file
    assert (scene.options, scene.answer, scene.task_type) == ((), "A man walks a dog along the river.", "sub_scene")
    assert [(s.id, s.reason) for s in skipped] == [("1_plotQA:1", "bad-answer")]
    # One task file with the video folder given explicitly.
    items = load_items(root / "json" / "8_sub_scene.json", "mlvu", root / "video")
    assert [i.video for i in items] == [scene.video]


def test_longvideobench_lvb_val(tmp_path, clip):
    root = tmp_path / "LongVideoBench"
    _place(clip, root / "videos" / "86CxyhFV9MI.mp4")
    rec = {"video_id": "86CxyhFV9MI", "question": "In the video, which subtitles appear with the red car?",
           "question_wo_referring_query": "Which subtitles appear?", "candidates": ["a", "b", "c", "d", "e"],
           "correct_choice": 4, "position": [4030, 7571], "topic_category": "NP-News-Programs",
           "question_category": "TOS", "level": "L2-Relation", "id": "86CxyhFV9MI_0",
           "video_path": "86CxyhFV9MI.mp4", "subtitle_path": "86CxyhFV9MI_en.json", "duration_group": 600,
           "starting_timestamp_for_subtitles": 0, "duration": 527.0, "view_count": 93803}
    test_rec = {**rec, "id": "86CxyhFV9MI_1", "duration_group": 3600}
    del test_rec["correct_choice"]
    ann = root / "lvb_val.json"
    ann.write_text(json.dumps([rec, test_rec]))
    assert sniff_format(ann) == "longvideobench"
    a, b = load_items(ann, "auto", None)
    assert (a.id, a.answer, a.task_type, a.duration_class, a.duration) == (
        "86CxyhFV9MI_0", "E", "TOS", "180-600s", 527.0)
    assert a.video == _abs(root / "videos" / "86CxyhFV9MI.mp4") and a.options == ("a", "b", "c", "d", "e")
    # `position`: frame indexes at the video file's own rate (10 fps here), each frame [i/fps, (i+1)/fps]
    assert a.fps == 10.0 and [iv for ev in a.evidence for iv in ev] == pytest.approx([403.0, 403.1, 757.1, 757.2])
    assert (b.answer, b.duration_class) == (None, "900-3600s")


def test_egoschema_answered_subset_only(tmp_path, clip):
    root = tmp_path / "egoschema"
    uids = ["0074f737-11cb-497d-8d07-77c3a8127391", "001934bb-81bd-4cd8-a574-0472ef3f6678"]
    for u in uids:
        _place(clip, root / "videos" / f"{u}.mp4")
    questions = [{"q_uid": u, "google_drive_id": "x", "question": f"What is c doing ({n})?",
                  **{f"option {k}": f"option text {k}" for k in range(5)}} for n, u in enumerate(uids)]
    (root / "questions.json").write_text(json.dumps(questions))
    (root / "subset_answers.json").write_text(json.dumps({uids[0]: 3}))
    assert sniff_format(root) == sniff_format(root / "questions.json") == "egoschema"
    skipped = []
    (item,) = load_items(root, "auto", None, skipped=skipped)
    assert (item.id, item.answer, item.options[3]) == (uids[0], "D", "option text 3")
    assert item.video == _abs(root / "videos" / f"{uids[0]}.mp4")
    assert [(s.id, s.reason) for s in skipped] == [(uids[1], "no-answer")]
    (root / "subset_answers.json").unlink()
    with pytest.raises(EvalDataError, match="subset_answers.json"):
        load_items(root, "egoschema", None, skipped=[])


def test_nextqa_csv_with_video_map(tmp_path, clip):
    root = tmp_path / "NExTVideo"
    _place(clip, root / "1025" / "4010069381.mp4")
    _place(clip, root / "1014" / "4882821564.mp4")
    (root / "map_vid_vidorID.json").write_text(json.dumps({"4010069381": "1025/4010069381",
                                                           "4882821564": "1014/4882821564"}))
    ann = tmp_path / "nextqa" / "val.csv"
    ann.parent.mkdir()
    with ann.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["video", "frame_count", "width", "height", "question", "answer", "qid", "type",
                    "a0", "a1", "a2", "a3", "a4"])
        w.writerow(["4010069381", 369, 640, 480, "how do the two man play the instrument", 0, 6, "CH",
                    "roll the handle", "tap their feet", "strum the string", "hit with sticks", "pat with hand"])
        w.writerow(["4882821564", 2697, 640, 480, "why did the boy pick up one present", 2, 1, "CW",
                    "share with the girl", "approach lady sitting there", "unwrap it", "playing with toy train",
                    "gesture something"])
    assert sniff_format(ann) == "nextqa"
    a, b = load_items(ann, "auto", root)
    assert (a.id, a.answer, a.task_type, a.options[0]) == ("4010069381_6", "A", "CH", "roll the handle")
    assert a.video == _abs(root / "1025" / "4010069381.mp4")
    assert (b.id, b.answer, b.task_type) == ("4882821564_1", "C", "CW")


def test_unknown_layouts_are_refused(tmp_path):
    odd = tmp_path / "odd.json"
    odd.write_text(json.dumps([{"foo": 1}]))
    with pytest.raises(EvalDataError, match="pass --format"):
        load_items(odd, "auto", None)
    with pytest.raises(EvalDataError, match="unknown format"):
        load_items(odd, "nope", None)
    with pytest.raises(EvalDataError, match="no such file"):
        load_items(tmp_path / "absent.jsonl", "native", None)


# ---------------------------------------------------------------------------------------------------
# Metrics and baselines (hand-computed)


def test_temporal_metrics_hand_computed():
    m = temporal_metrics([1.0, 10.0, 30.0], [(8.0, 12.0), (50.0, 60.0)], delta=5.0)
    # keyframe 1.0 is 7 s from [8, 12]; 10.0 is inside; 30.0 is 18 s and 20 s away -> precision 1/3.
    # [8, 12] has 10.0; [50, 60] is 20 s from 30.0 -> recall 1/2; F1 = 2PR/(P+R) = 0.4.
    assert m["precision"] == pytest.approx(1 / 3)
    assert m["recall"] == pytest.approx(0.5)
    assert m["f1"] == pytest.approx(0.4)
    assert m["hit"] is True
    edge = temporal_metrics([13.0], [(8.0, 12.0)], delta=1.0)  # 1 s away: within delta, but not a hit
    assert (edge["precision"], edge["recall"], edge["hit"]) == (1.0, 1.0, False)
    assert temporal_metrics([12.0], [(8.0, 12.0)], delta=0.0)["hit"] is True  # ends count, no tolerance
    assert temporal_metrics([13.0], [(8.0, 12.0)], delta=0.5)["f1"] == 0.0
    none = temporal_metrics([], [(1.0, 2.0)])
    assert (none["precision"], none["recall"], none["f1"], none["hit"]) == (0.0, 0.0, 0.0, False)
    assert temporal_metrics([1.0], [])["precision"] is None


def test_uniform_and_topk_baselines():
    assert uniform_times(10.0, 4) == [1.25, 3.75, 6.25, 8.75]
    assert uniform_times(6.0, 3) == [1.0, 3.0, 5.0]
    assert uniform_times(5.0, 0) == []
    with pytest.raises(ValueError):
        uniform_times(0.0, 3)
    assert topk_indices([0.1, 0.9, 0.5, 0.9, 0.2], 3) == [1, 2, 3]  # time order, not score order
    assert topk_indices([1.0, 1.0, 1.0], 2) == [0, 1]  # ties: the earlier frame
    assert topk_indices([float("nan"), 0.0, -1.0], 2) == [1, 2]
    assert topk_indices(np.array([3.0, 1.0]), 5) == [0, 1]


def test_choices_evidence_and_buckets():
    opts = ("red", "green", "blue")
    assert [parse_choice(x, opts) for x in ["B", "b", "(B)", "B.", "B. green", "green", "Blue.", 2, "D", "maybe"]] == [
        "B", "B", "B", "B", "B", "B", "C", "C", None, None]
    assert is_correct("C", "C", opts) is True and is_correct("blue", "A", opts) is False
    assert is_correct(None, "A", opts) is None and is_correct("x", None, opts) is None
    assert is_correct("A man walks a dog.", "a man  walks a dog", ()) is True
    assert parse_evidence([1, 2]) == ((1.0, 2.0),)
    assert parse_evidence([[5, 6], [1, 2.5]]) == ((1.0, 2.5), (5.0, 6.0))
    assert [duration_bucket(s) for s in (None, 239.9, 240, 1200, 1200.5)] == [None, "short", "medium", "medium", "long"]


# ---------------------------------------------------------------------------------------------------
# A real runner over generated colour videos


COLORS = {"red": (255, 0, 0), "green": (0, 128, 0), "blue": (0, 0, 255), "yellow": (255, 255, 0)}
NAMES = list(COLORS)
SEGMENT_S = 2.0
K = 3
METHODS = ["uniform", "topk"]


def _colour_of(frame: np.ndarray) -> str:
    mean = frame.reshape(-1, 3).mean(axis=0)
    return min(COLORS, key=lambda c: float(((mean - np.array(COLORS[c])) ** 2).sum()))


def color_runner(item: EvalItem, method: str) -> dict:
    """Keyframes by method, then answers "which colour comes just before <target>?" from the video."""
    t0 = time.perf_counter()
    info = probe(item.video)
    target = re.search(r"turns (\w+)\?", item.question).group(1)
    if method == "uniform":
        times = uniform_times(info.duration, K)
        frames = [read_frame_at(item.video, t, width=64, info=info) for t in times]
        scores: list = [None] * K
        scored = 0
    elif method == "topk":
        decoded = list(decode(item.video, fps=2, width=64, info=info))
        all_scores = [-float(((f.reshape(-1, 3).mean(axis=0) - np.array(COLORS[target])) ** 2).sum())
                      for _, f in decoded]
        idx = topk_indices(all_scores, K)
        times = [decoded[i][0] for i in idx]
        frames = [decoded[i][1] for i in idx]
        scores = [all_scores[i] for i in idx]
        scored = len(decoded)
    else:
        raise ValueError(f"unknown method {method}")
    t1 = time.perf_counter()
    shown = [t for t, f in zip(times, frames, strict=True) if _colour_of(f) == target]
    look = max(min(shown) - 1.5, 0.0) if shown else times[0]
    colour = _colour_of(read_frame_at(item.video, look, width=64, info=info))
    return {"keyframes": [{"t": t, "score": s} for t, s in zip(times, scores, strict=True)],
            "answer": "ABCD"[item.options.index(colour)], "frames_scored": scored,
            "timings": {"search_ms": (t1 - t0) * 1000, "answer_ms": (time.perf_counter() - t1) * 1000},
            "settings": {"k": K, "method": method, "seed": 0}, "duration": info.duration, "fps": info.fps}


@pytest.fixture(scope="module")
def colour_set(tmp_path_factory) -> tuple[Path, list[EvalItem]]:
    """Six 6 s videos of three 2 s colour segments; each question names the middle colour."""
    root = tmp_path_factory.mktemp("colours")
    lines = []
    for i in range(6):
        seq = [NAMES[(i + j) % 4] for j in range(3)]
        args: list[str] = []
        for c in seq:
            args += ["-f", "lavfi", "-i", f"color=c={c}:size=64x36:rate=10:duration={SEGMENT_S}"]
        _ffmpeg(*args, "-filter_complex", "[0][1][2]concat=n=3:v=1:a=0", "-pix_fmt", "yuv420p",
                str(root / f"v{i}.mp4"))
        lines.append({"id": f"v{i}", "video": f"v{i}", "task_type": f"t{i % 2}",
                      "question": f"What colour is on screen just before it turns {seq[1]}?",
                      "options": NAMES, "answer": seq[0], "evidence": [[SEGMENT_S, 2 * SEGMENT_S]]})
    ann = root / "colours.jsonl"
    ann.write_text("".join(json.dumps(x) + "\n" for x in lines))
    return ann, load_items(ann, "native", None)


def _without_timing(summary) -> dict:
    d = summary.as_dict()
    for m in d["methods"]:
        m.pop("search_ms")
    return d


def _table_without_timing(summary) -> str:
    return "\n".join(ln for ln in format_table(summary).splitlines() if not ln.startswith("search ms"))


@pytest.fixture(scope="module")
def uninterrupted(colour_set, tmp_path_factory):
    ann, items = colour_set
    out = tmp_path_factory.mktemp("straight") / "results.jsonl"
    seen = []
    summary = run_eval(items, METHODS, color_runner, out, delta=0.5,
                       progress=lambda done, total, line: seen.append((done, total, line["id"], line["method"])))
    return out, summary, seen


def test_run_eval_results_and_summary(colour_set, uninterrupted):
    _, items = colour_set
    out, summary, seen = uninterrupted
    assert [(d, t) for d, t, _, _ in seen] == [(n, 12) for n in range(1, 13)]
    lines = read_results(out)
    assert [(r["id"], r["method"]) for r in lines] == [(i.id, m) for i in items for m in METHODS]
    first = lines[0]
    assert [k["t"] for k in first["keyframes"]] == [1.0, 3.0, 5.0]  # uniform over the probed 6 s
    assert [k["frame"] for k in first["keyframes"]] == [10, 30, 50] and first["fps"] == 10.0
    assert (first["gold"], first["answer"], first["correct"], first["error"]) == ("A", "A", True, None)
    assert first["duration_class"] == "short" and first["evidence"] == [[2.0, 4.0]]
    # uniform at delta 0.5 s: 1.0 and 5.0 are 1 s outside [2, 4], 3.0 inside -> P 1/3, R 1, F1 0.5.
    assert (first["precision"], first["recall"], first["f1"], first["hit"]) == pytest.approx((1 / 3, 1.0, 0.5, True))
    topk = [r for r in lines if r["method"] == "topk"]
    assert all(2.0 <= k["t"] <= 4.0 for r in topk for k in r["keyframes"])  # the target segment

    u, t = summary.method("uniform"), summary.method("topk")
    assert (u.items, u.errors, u.answered, u.graded, u.correct) == (6, 0, 6, 6, 6)
    assert (u.precision, u.recall, u.f1, u.hit_rate) == pytest.approx((1 / 3, 1.0, 0.5, 1.0))
    assert (t.precision, t.recall, t.f1, t.hit_rate) == pytest.approx((1.0, 1.0, 1.0, 1.0))
    assert (u.frames_scored, t.frames_scored) == (0.0, 12.0)
    assert u.by_task_type == {"t0": (3, 3), "t1": (3, 3)} and u.by_duration_class == {"short": (6, 6)}
    assert t.search_ms > 0
    table = format_table(summary)
    header = table.splitlines()[0].split()
    assert header == METHODS
    assert "precision@0.5s" in table and "task: t1" in table and "100.0% (6/6)" in table


KILL_SCRIPT = """
import os, signal, sys
sys.path.insert(0, {repo!r})
from pipelines.eval.load import load_items
from pipelines.eval.run import run_eval
from tests.test_evaluate import METHODS, color_runner
items = load_items({ann!r}, "native", None)
calls = 0
def runner(item, method):
    global calls
    calls += 1
    if calls > {kill_after}:
        os.kill(os.getpid(), signal.SIGKILL)
    return color_runner(item, method)
run_eval(items, METHODS, runner, {out!r}, delta=0.5)
"""


@pytest.mark.slow
def test_resume_after_kill_gives_the_same_summary(colour_set, uninterrupted, tmp_path):
    ann, items = colour_set
    out = tmp_path / "results.jsonl"
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    script = KILL_SCRIPT.format(repo=str(REPO), ann=str(ann), out=str(out), kill_after=5)
    proc = subprocess.run([sys.executable, "-c", script], cwd=REPO, env=env, capture_output=True, timeout=120)
    assert proc.returncode == -signal.SIGKILL, proc.stderr.decode()[-2000:]
    before = read_results(out)
    assert len(before) == 5
    with out.open("ab") as f:  # and a line cut short by a kill mid-write
        f.write(b'{"id": "v4", "method": "topk", "keyframes": [{"t": 2.')

    calls = []

    def counting(item, method):
        calls.append((item.id, method))
        return color_runner(item, method)

    summary = run_eval(items, METHODS, counting, out, delta=0.5)
    done_before = [(r["id"], r["method"]) for r in before]
    everything = [(i.id, m) for i in items for m in METHODS]
    assert calls == [p for p in everything if p not in done_before]  # nothing finished is run again
    after = read_results(out)
    assert [(r["id"], r["method"]) for r in after] == done_before + calls  # each pair exactly once
    assert out.read_bytes().endswith(b"\n") and len(out.read_bytes().splitlines()) == 12
    _, straight, _ = uninterrupted
    assert _without_timing(summary) == _without_timing(straight)
    assert _table_without_timing(summary) == _table_without_timing(straight)
    assert _without_timing(summarize(out, delta=0.5)) == _without_timing(straight)


def test_runner_errors_are_lines_and_are_retried(colour_set, tmp_path):
    _, items = colour_set
    items = items[:2]
    out = tmp_path / "results.jsonl"
    failed_once: set = set()

    def flaky(item, method):
        if (item.id, method) == ("v1", "topk") and not failed_once:
            failed_once.add(1)
            raise RuntimeError("decoder fell over")
        if (item.id, method) == ("v0", "topk"):
            return {"answer": "A"}  # no keyframes: a broken runner result is an error line too
        return color_runner(item, method)

    first = run_eval(items, METHODS, flaky, out, delta=0.5)
    lines = read_results(out)
    assert [r["error"] for r in lines] == [None, "ValueError: runner result has no 'keyframes'", None,
                                           "RuntimeError: decoder fell over"]
    assert (first.method("topk").errors, first.method("topk").items) == (2, 2)
    assert "errors" in format_table(first)

    calls = []

    def recording(item, method):
        calls.append((item.id, method))
        return flaky(item, method)

    second = run_eval(items, METHODS, recording, out, delta=0.5)
    assert calls == [("v0", "topk"), ("v1", "topk")]  # only the failed pairs
    assert second.method("topk").errors == 1 and second.method("topk").correct == 1
    assert len(read_results(out)) == 6  # error lines stay; the latest line per pair counts

    calls.clear()
    fresh = run_eval(items, ["uniform"], recording, out, resume=False, delta=0.5)
    assert calls == [("v0", "uniform"), ("v1", "uniform")] and len(read_results(out)) == 2
    assert [m.method for m in fresh.methods] == ["uniform"]


def test_results_file_tail_and_damage(tmp_path):
    out = tmp_path / "r.jsonl"
    good = [{"id": "a", "method": "m", "keyframes": [], "evidence": [], "correct": True, "answer": "A"},
            {"id": "b", "method": "m", "keyframes": [], "evidence": [], "correct": False, "answer": "B"}]
    out.write_text("".join(json.dumps(g) + "\n" for g in good) + '{"id": "c", "meth')
    assert [r["id"] for r in read_results(out)] == ["a", "b"]
    assert summarize(out).method("m").accuracy == 0.5
    out.write_text(json.dumps(good[0]) + "\nnot json\n" + json.dumps(good[1]) + "\n")
    with pytest.raises(EvalDataError, match="line 2"):
        read_results(out)
    out.write_text(json.dumps(good[0]))  # complete, only its newline missing: kept
    assert [r["id"] for r in read_results(out)] == ["a"]


def test_summary_arithmetic_and_three_methods_side_by_side():
    def line(i, method, correct, kf, task="count", dclass="short", error=None, frames=10, ms=5.0):
        return {"id": f"q{i}", "method": method, "task_type": task, "duration_class": dclass,
                "answer": None if correct is None else "A", "correct": correct, "error": error,
                "keyframes": [{"t": t} for t in kf], "evidence": [[10.0, 20.0]],
                "frames_scored": frames, "timings": {"search_ms": ms}}

    records = [
        line(0, "uniform", None, [0.0, 30.0]), line(1, "uniform", None, [15.0]),
        line(0, "topk", True, [12.0], frames=100, ms=20.0), line(1, "topk", False, [40.0], task="when",
                                                                    dclass="long", frames=300, ms=40.0),
        line(0, "vqa", None, [], error="RuntimeError: x"), line(0, "vqa", True, [11.0, 19.0]),
        line(1, "vqa", None, [], error="ModelError: no model"),
    ]
    s = summarize_records(records, methods=["uniform", "topk", "vqa"], delta=5.0)
    u, t, v = s.methods
    assert (u.answered, u.graded, u.accuracy) == (0, 0, None)
    # uniform: q0 keyframes 10 s from [10, 20] -> P 0, R 0, no hit; q1 inside -> 1, 1, hit.
    assert (u.precision, u.recall, u.hit_rate) == (0.5, 0.5, 0.5)
    assert (t.correct, t.graded, t.accuracy) == (1, 2, 0.5)
    assert t.by_task_type == {"count": (1, 1), "when": (0, 1)}
    assert t.by_duration_class == {"long": (0, 1), "short": (1, 1)}
    assert (t.frames_scored, t.search_ms) == (200.0, 30.0)
    assert (v.items, v.errors, v.correct, v.graded) == (2, 1, 1, 1)  # q0's retry replaced its error
    table = format_table(s).splitlines()
    assert table[0].split() == ["uniform", "topk", "vqa"]
    rows = {ln.split("  ")[0].strip(): ln for ln in table[2:]}
    assert rows["accuracy"].split()[1:] == ["-", "50.0%", "(1/2)", "100.0%", "(1/1)"]
    assert "hit rate" in rows and "search ms (mean)" in rows
