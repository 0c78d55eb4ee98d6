"""`vqa eval` reads each benchmark's published files as they are: records written here in each published
layout (field names as the benchmarks publish them), loaded with their counts, options, gold letters,
paths, evidence seconds, subtitles and skip reasons; a wrong --format is refused in one line."""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from pipelines.eval.detect import layouts_of, sniff_format
from pipelines.eval.items import EvalDataError
from pipelines.eval.load import describe_skipped, load_items
from pipelines.eval.subtitles import prepared_subtitles, read_cues
from pipelines.stages.media import ffmpeg_binary


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
    path = tmp_path_factory.mktemp("clip") / "testsrc.mp4"
    _ffmpeg("-f", "lavfi", "-i", "testsrc2=size=160x90:rate=10", "-t", "3", "-pix_fmt", "yuv420p", str(path))
    return path


@pytest.fixture(scope="module")
def ntsc_clip(tmp_path_factory) -> Path:
    """12 s at 30000/1001 fps: LongVideoBench's frame indexes at a non-integer native rate."""
    path = tmp_path_factory.mktemp("ntsc") / "ntsc.mp4"
    _ffmpeg("-f", "lavfi", "-i", "testsrc2=size=160x90:rate=30000/1001", "-t", "12", "-pix_fmt", "yuv420p", str(path))
    return path


# ---------------------------------------------------------------------------------------------------
# Video-MME

# The official template (github.com/BradyFU/Video-MME evaluation/output_test_template.json), as
# published: per video, nested questions, trailing commas after "response".
VIDEOMME_TEMPLATE = """[
    {
        "video_id": "001",
        "duration": "short",
        "domain": "Knowledge",
        "sub_category": "Humanity & History",
        "questions": [
            {
                "question_id": "001-1",
                "task_type": "Counting Problem",
                "question": "When demonstrating the Germany modern Christmas tree is initially decorated with apples, candles and berries, which kind of the decoration has the largest number?",
                "options": [
                    "A. Apples.",
                    "B. Candles.",
                    "C. Berries.",
                    "D. The three kinds are of the same number."
                ],
                "answer": "C",
                "response": "C. Berries.",
            },
            {
                "question_id": "001-2",
                "task_type": "Information Synopsis",
                "question": "What is the genre of this video?",
                "options": [
                    "A. It is a news report that introduces the history behind Christmas decorations.",
                    "B. It is a documentary on the evolution of Christmas holiday recipes.",
                    "C. It is a travel vlog exploring Christmas markets around the world.",
                    "D. It is a tutorial on DIY Christmas ornament crafting."
                ],
                "answer": "A",
                "response": "D.",
            }
        ]
    },
    {
        "video_id": "002",
        "duration": "short",
        "domain": "Knowledge",
        "sub_category": "Humanity & History",
        "questions": [
            {
                "question_id": "002-1",
                "task_type": "Object Recognition",
                "question": "Which of the following features/items is not discussed in the video in relation to the tomb?",
                "options": [
                    "A. Inkstone.",
                    "B. Niche.",
                    "C. Jade.",
                    "D. Sacrificial table."
                ],
                "answer": "C",
                "response": "A",
            }
        ]
    }
]
"""

# Video-MME's subtitles (subtitle/<videoID>.srt) wrap every line in a font tag.
VIDEOMME_SRT = """1
00:00:00,080 --> 00:00:01,500
<font color="white" size=".72c">the Germans decorated their trees with apples</font>

2
00:00:01,500 --> 00:00:02,900
<font color="white" size=".72c">then candles and berries</font>
"""


def test_videomme_official_template_with_trailing_commas_and_subtitles(tmp_path, clip):
    root = tmp_path / "Video-MME"
    _place(clip, root / "data" / "fFjv93ACGo8.mp4")
    (root / "subtitle").mkdir(parents=True)
    (root / "subtitle" / "fFjv93ACGo8.srt").write_text(VIDEOMME_SRT)
    tmpl = root / "output_test_template.json"
    tmpl.write_text(VIDEOMME_TEMPLATE)
    assert layouts_of(tmpl) == [("videomme", "Video-MME per-video layout (official template)")]

    # Without the Hugging Face rows beside it, the template's numbers name no video file: said so.
    skipped = []
    assert load_items(tmpl, "auto", None, skipped=skipped) == []
    assert {s.reason for s in skipped} == {"video-not-found"} and len(skipped) == 3
    assert "has no videoID" in describe_skipped(skipped)[0] and "test-00000-of-00001.parquet" in skipped[0].detail

    # The rows file (its records as the Hugging Face release has them) maps video_id -> videoID.
    rows = [{"video_id": "001", "duration": "short", "domain": "Knowledge", "sub_category": "Humanity & History",
             "url": "https://www.youtube.com/watch?v=fFjv93ACGo8", "videoID": "fFjv93ACGo8", "question_id": "001-1",
             "task_type": "Counting Problem", "question": "q", "options": ["A. a", "B. b", "C. c", "D. d"],
             "answer": "C"}]
    (root / "videomme").mkdir()
    (root / "videomme" / "test.json").write_text(json.dumps(rows))
    skipped = []
    a, b = load_items(tmpl, "auto", None, skipped=skipped)
    assert [(i.id, i.answer, i.task_type, i.duration_class) for i in (a, b)] == [
        ("001-1", "C", "Counting Problem", "short"), ("001-2", "A", "Information Synopsis", "short")]
    assert a.options == ("Apples.", "Candles.", "Berries.", "The three kinds are of the same number.")
    assert a.question.startswith("When demonstrating the Germany modern Christmas tree")
    assert a.video == b.video == _abs(root / "data" / "fFjv93ACGo8.mp4")
    assert a.subtitles == _abs(root / "subtitle" / "fFjv93ACGo8.srt") and a.duration is None
    assert [(s.id, s.reason) for s in skipped] == [("002-1", "video-not-found")]
    assert read_cues(a.subtitles) == [(0.08, 1.5, "the Germans decorated their trees with apples"),
                                      (1.5, 2.9, "then candles and berries")]

    # Without subtitles nothing is looked up; --subtitles-root points elsewhere.
    assert load_items(tmpl, "videomme", None, skipped=[], subtitles=False)[0].subtitles is None
    elsewhere = tmp_path / "subs"
    _place(root / "subtitle" / "fFjv93ACGo8.srt", elsewhere / "fFjv93ACGo8.srt")
    assert load_items(tmpl, "videomme", None, skipped=[], subtitles_root=elsewhere)[0].subtitles == _abs(
        elsewhere / "fFjv93ACGo8.srt")

    # Any other syntax error is named, with its line.
    broken = tmp_path / "broken.json"
    broken.write_text(VIDEOMME_TEMPLATE.replace('"answer": "A",', '"answer": "A"'))
    with pytest.raises(EvalDataError, match=r"not valid JSON: Expecting ',' delimiter at line 32, column 17"):
        load_items(broken, "videomme", root)


# ---------------------------------------------------------------------------------------------------
# LongVideoBench


def test_longvideobench_position_at_a_non_integer_rate_and_json_subtitles(tmp_path, ntsc_clip):
    root = tmp_path / "LongVideoBench"
    _place(ntsc_clip, root / "videos" / "@tiktok-7230.mp4")
    _place(ntsc_clip, root / "videos" / "86CxyhFV9MI.mp4")
    (root / "subtitles").mkdir(parents=True)
    # The two published shapes: {"start", "end", "line"} on the source video's clock, and (TikTok
    # sources) {"timestamp": [start, end], "text"} with a null end meaning "to the end".
    (root / "subtitles" / "86CxyhFV9MI_en.json").write_text(json.dumps([
        {"start": "00:01:35.000", "end": "00:01:39.500", "line": "before the clip starts"},
        {"start": "00:01:39.000", "end": "00:01:41.250", "line": "welcome to the news"},
        {"start": "00:01:45.500", "end": "00:01:47.000", "line": "the red car stops"},
    ]))
    (root / "subtitles" / "@tiktok-7230_en.json").write_text(json.dumps([
        {"timestamp": [0.5, 2.0], "text": "first words"}, {"timestamp": [9.0, None], "text": "last words"}]))
    base = {"question_wo_referring_query": "Which subtitles appear?", "candidates": ["a", "b", "c", "d"],
            "topic_category": "NP-News-Programs", "question_category": "TOS", "level": "L2-Relation",
            "duration_group": 15, "view_count": 93803}
    recs = [
        {**base, "video_id": "86CxyhFV9MI", "question": "When the red car stops, what is said?",
         "correct_choice": 2, "position": [45, 300], "id": "86CxyhFV9MI_0", "video_path": "86CxyhFV9MI.mp4",
         "subtitle_path": "86CxyhFV9MI_en.json", "starting_timestamp_for_subtitles": 100, "duration": 12.0},
        {**base, "video_id": "@tiktok-7230", "question": "What is said first?", "correct_choice": 0,
         "position": [], "id": "@tiktok-7230_0", "video_path": "@tiktok-7230.mp4",
         "subtitle_path": "@tiktok-7230_en.json", "starting_timestamp_for_subtitles": 0, "duration": 12.0},
        {**base, "video_id": "86CxyhFV9MI", "question": "Bad position", "correct_choice": 1, "position": "45",
         "id": "86CxyhFV9MI_1", "video_path": "86CxyhFV9MI.mp4", "subtitle_path": "86CxyhFV9MI_en.json",
         "starting_timestamp_for_subtitles": 100, "duration": 12.0},
    ]
    ann = root / "lvb_val.json"
    ann.write_text(json.dumps(recs))
    skipped = []
    a, b = load_items(ann, "auto", None, skipped=skipped)
    assert [(s.id, s.reason) for s in skipped] == [("86CxyhFV9MI_1", "bad-record")]
    fps = 30000 / 1001
    assert a.fps == pytest.approx(fps)  # the rate the frame indexes were counted at, read from the file
    assert [v for iv in a.evidence for v in iv] == pytest.approx([45 / fps, 46 / fps, 300 / fps, 301 / fps])
    assert (a.answer, a.options, a.duration_class, a.duration) == ("C", ("a", "b", "c", "d"), "8-15s", 12.0)
    assert a.subtitles == _abs(root / "subtitles" / "86CxyhFV9MI_en.json") and a.subtitle_offset == 100.0
    assert (b.evidence, b.fps, b.answer) == ((), None, "A")
    assert load_items(root, "auto", None, skipped=[]) == [a, b]  # the folder as LongVideoBench ships it

    # On the clip's own clock: 100 s subtracted, the cue that ends before the clip starts dropped,
    # the cue that straddles the start clipped to 0.
    assert read_cues(a.subtitles, a.subtitle_offset, a.duration) == [
        (0.0, 1.25, "welcome to the news"), (5.5, 7.0, "the red car stops")]
    assert read_cues(b.subtitles, b.subtitle_offset, b.duration) == [(0.5, 2.0, "first words"),
                                                                     (9.0, 12.0, "last words")]
    # The file the indexer reads: an SRT of those cues, named by its content.
    srt = Path(prepared_subtitles(a.subtitles, a.subtitle_offset, a.duration))
    assert srt.read_text() == ("1\n00:00:00,000 --> 00:00:01,250\nwelcome to the news\n\n"
                               "2\n00:00:05,500 --> 00:00:07,000\nthe red car stops\n\n")
    assert prepared_subtitles(a.subtitles, a.subtitle_offset, a.duration) == str(srt)
    assert Path(prepared_subtitles(None)).read_text() == ""  # without subtitles: no speech text

    # The Parquet rows lmms-eval reads (option0..option4) are the same records.
    row = {k: v for k, v in recs[0].items() if k != "candidates"}
    row.update({f"option{k}": v for k, v in enumerate(["a", "b", "c", "d", "N/A"])})
    rows_file = root / "validation.json"
    rows_file.write_text(json.dumps([row]))
    assert layouts_of(rows_file)[0][0] == "longvideobench"
    (c,) = load_items(rows_file, "longvideobench", None)
    assert (c.options, c.answer, c.evidence) == (a.options, a.answer, a.evidence)


# ---------------------------------------------------------------------------------------------------
# MLVU


def test_mlvu_duplicate_and_empty_candidates_and_numbered_folders(tmp_path, clip):
    root = tmp_path / "MLVU"
    _place(clip, root / "video" / "1_plotQA" / "movie101_66.mp4")
    _place(clip, root / "video" / "4_count" / "count_203.mp4")
    (root / "json").mkdir(parents=True)
    (root / "json" / "4_count.json").write_text(json.dumps([
        {"video": "count_203.mp4", "duration": 480, "question": "How many times does the man jump?",
         "candidates": ["Six", "Three", "Three", "Eight"], "answer": "Three", "question_type": "count"},
        {"video": "count_203.mp4", "duration": 480, "question": "How many times does the dog bark?",
         "candidates": ["", "", "", ""], "answer": "", "question_type": "count"},
    ]))
    skipped = []
    (dup,) = load_items(root, "auto", None, skipped=skipped)
    # MLVU's template takes the last candidate equal to the answer: C, not B.
    assert (dup.id, dup.answer, dup.options, dup.task_type) == (
        "4_count:0", "C", ("Six", "Three", "Three", "Eight"), "count")
    assert dup.video == _abs(root / "video" / "4_count" / "count_203.mp4")
    assert [(s.id, s.reason) for s in skipped] == [("4_count:1", "bad-record")]
    assert "candidates and the answer are empty" in skipped[0].detail

    # One mixed dev file: the task's numbered folder (video/1_plotQA/) is found from question_type.
    mixed = root / "mlvu_dev.json"
    mixed.write_text(json.dumps([
        {"video": "movie101_66.mp4", "duration": 246, "question": "What color is the main male character?",
         "candidates": ["Yellow", "Red", "Green", "Blue"], "answer": "Green", "question_type": "plotQA"}]))
    (plot,) = load_items(mixed, "auto", None)
    assert (plot.answer, plot.video) == ("C", _abs(root / "video" / "1_plotQA" / "movie101_66.mp4"))

    # The Hugging Face dev rows lmms-eval reads: video_name, options repeated in the question, a letter.
    rows = root / "mlvu_dev_rows.json"
    rows.write_text(json.dumps([
        {"video_name": "movie101_66.mp4", "duration": 246, "task_type": "plotQA",
         "question": "What color is the main male character?\n(A) Yellow\n(B) Red\n(C) Green\n(D) Blue",
         "candidates": ["Yellow", "Red", "Green", "Blue"], "answer": "C", "question_id": "plotQA_0"}]))
    assert layouts_of(rows)[0] == ("mlvu", "MLVU dev rows (Hugging Face, video_name)")
    (r,) = load_items(rows, "auto", None)
    assert (r.id, r.question, r.answer, r.video, r.duration_class) == (
        "plotQA_0", "What color is the main male character?", "C", plot.video, "medium")


# ---------------------------------------------------------------------------------------------------
# EgoSchema


def test_egoschema_hugging_face_rows_and_missing_answers(tmp_path, clip):
    root = tmp_path / "egoschema"
    uids = ["001934bb-81bd-4cd8-a574-0472ef3f6678", "0074f737-11cb-497d-8d07-77c3a8127391"]
    for u in uids:
        _place(clip, root / "videos" / f"{u}.mp4")
    opts = ["A. c cleans the kitchen.", "B. c cooks a meal.", "C. c fixes a bike.", "D. c reads a book.",
            "E. c paints a wall."]
    rows = [{"question_idx": "0", "question": "What is the overarching behavior of c?", "video_idx": uids[0],
             "option": opts, "answer": "3"},
            {"question_idx": "1", "question": "Why does c pause?", "video_idx": uids[1], "option": opts,
             "answer": ""}]
    ann = root / "Subset.json"
    ann.write_text(json.dumps(rows))
    assert sniff_format(ann) == "egoschema"
    skipped = []
    (item,) = load_items(ann, "egoschema", None, skipped=skipped)
    assert (item.id, item.answer, item.options[3], item.question) == (
        uids[0], "D", "c reads a book.", "What is the overarching behavior of c?")
    assert item.video == _abs(root / "videos" / f"{uids[0]}.mp4")
    assert [(s.id, s.reason) for s in skipped] == [(uids[1], "no-answer")]

    questions = root / "official" / "questions.json"
    questions.parent.mkdir()
    questions.write_text(json.dumps([{"q_uid": uids[0], "google_drive_id": "x", "question": "q",
                                      **{f"option {k}": f"o{k}" for k in range(5)}}]))
    with pytest.raises(EvalDataError, match=r"questions.json has no answers, and subset_answers.json .* is not in"):
        load_items(questions, "egoschema", None, skipped=[])


# ---------------------------------------------------------------------------------------------------
# NExT-QA, and a wrong --format


def test_nextqa_map_not_found_is_named(tmp_path, clip):
    root = tmp_path / "NExTVideo"
    _place(clip, root / "1025" / "4010069381.mp4")
    ann = tmp_path / "nextqa" / "val.csv"
    ann.parent.mkdir()
    with ann.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["video", "frame_count", "width", "height", "question", "answer", "qid", "type",
                    "a0", "a1", "a2", "a3", "a4"])
        w.writerow(["4010069381", 369, 640, 480, "how do the two man play the instrument", 0, 6, "CH",
                    "roll the handle", "tap their feet", "strum the string", "hit with sticks", "pat with hand"])
    skipped = []
    assert load_items(ann, "auto", root, skipped=skipped) == []
    assert skipped[0].reason == "video-not-found"
    assert "no map_vid_vidorID.json in" in skipped[0].detail and "looked up by bare id" in skipped[0].detail
    (root / "map_vid_vidorID.json").write_text(json.dumps({"4010069381": "1025/4010069381"}))
    (item,) = load_items(ann, "auto", root)
    assert (item.id, item.answer, item.video) == ("4010069381_6", "A", _abs(root / "1025" / "4010069381.mp4"))


def test_a_wrong_format_is_refused_in_one_line(tmp_path):
    flat = tmp_path / "videomme.json"
    flat.write_text(json.dumps([{"video_id": "001", "duration": "short", "videoID": "fFjv93ACGo8",
                                 "question_id": "001-1", "task_type": "Counting Problem", "question": "q",
                                 "options": ["A. a", "B. b"], "answer": "A"}]))
    with pytest.raises(EvalDataError) as e:
        load_items(flat, "nextqa", None, skipped=[])
    assert str(e.value) == (f"{flat}: looks like Video-MME flat rows (Hugging Face), not NExT-QA CSV "
                            "(val.csv / test.csv) (pass --format videomme, or --format auto)")

    native = tmp_path / "mine.jsonl"
    native.write_text(json.dumps({"id": "q1", "video": "a.mp4", "question": "What?"}) + "\n")
    with pytest.raises(EvalDataError, match=r"looks like vqa's native JSON Lines, not LongVideoBench"):
        load_items(native, "longvideobench", None, skipped=[])
    # JSON Lines named .csv: recognised for what it is, not read as a CSV header.
    disguised = tmp_path / "val.csv"
    disguised.write_text(native.read_text())
    with pytest.raises(EvalDataError, match=r"looks like vqa's native JSON Lines, not NExT-QA CSV"):
        load_items(disguised, "nextqa", None, skipped=[])
    odd = tmp_path / "odd.csv"
    odd.write_text(json.dumps({"foo": 1}) + "\n")
    with pytest.raises(EvalDataError, match=r"is JSON, not NExT-QA's CSV"):
        load_items(odd, "nextqa", None, skipped=[])


def test_native_subtitles_field(tmp_path, clip):
    _place(clip, tmp_path / "a.mp4")
    (tmp_path / "subs").mkdir()
    (tmp_path / "subs" / "a.srt").write_text(VIDEOMME_SRT)
    ann = tmp_path / "items.jsonl"
    ann.write_text("\n".join(json.dumps(r) for r in [
        {"id": "q1", "video": "a.mp4", "question": "What is said?", "subtitles": "subs/a.srt", "subtitle_offset": 1},
        {"id": "q2", "video": "a.mp4", "question": "And here?", "subtitles": "subs/missing.srt"}]) + "\n")
    skipped = []
    (item,) = load_items(ann, "auto", None, skipped=skipped)
    assert (item.subtitles, item.subtitle_offset) == (_abs(tmp_path / "subs" / "a.srt"), 1.0)
    assert [(s.id, s.reason) for s in skipped] == [("q2", "subtitles-not-found")]
    srt = Path(prepared_subtitles(item.subtitles, item.subtitle_offset, 3.0))
    assert srt.read_text() == ("1\n00:00:00,000 --> 00:00:00,500\nthe Germans decorated their trees with apples\n\n"
                               "2\n00:00:00,500 --> 00:00:01,900\nthen candles and berries\n\n")
    assert load_items(ann, "native", None, skipped=[], subtitles=False)[0].subtitles is None


def test_cli_wrong_format_is_one_line(cli, tmp_path):
    flat = tmp_path / "test.json"
    flat.write_text(json.dumps([{"video_id": "001", "duration": "short", "videoID": "fFjv93ACGo8",
                                 "question_id": "001-1", "task_type": "Counting Problem", "question": "q",
                                 "options": ["A. a", "B. b"], "answer": "A"}]))
    res = cli("eval", str(flat), "--format", "mlvu", "--profile", "tiny")
    assert res.exit_code == 1 and res.stdout == ""
    assert res.stderr.splitlines() == [f"error: {flat}: looks like Video-MME flat rows (Hugging Face), not MLVU "
                                       "(pass --format videomme, or --format auto)"]
