"""A benchmark's subtitles reach the answerer as timed speech, on the video's clock, through `vqa eval`
with the tiny profile (real classes, random weights) on a generated video; `--no-subtitles` gives no
speech text at all; result lines stand alone (question, options, gold, published duration, setting)."""

from __future__ import annotations

import json

import pytest

from pipelines.eval.results import read_results
from tests.synth import make_color_video


@pytest.fixture(scope="module")
def lvb(tmp_path_factory) -> dict:
    """LongVideoBench's layout: a 9 s clip cut at 200 s of its source video, subtitles timed on the source."""
    root = tmp_path_factory.mktemp("LongVideoBench")
    (root / "videos").mkdir()
    make_color_video(root / "videos" / "86CxyhFV9MI.mp4", [3.0, 3.0, 3.0])  # red, green, blue at 30 fps
    (root / "subtitles").mkdir()
    (root / "subtitles" / "86CxyhFV9MI_en.json").write_text(json.dumps([
        {"start": "00:03:18.000", "end": "00:03:19.500", "line": "good evening"},
        {"start": "00:03:23.500", "end": "00:03:25.000", "line": "the red car stops at the harbour"},
    ]))
    rec = {"video_id": "86CxyhFV9MI", "question": "Where does the red car stop?",
           "question_wo_referring_query": "Where does it stop?",
           "candidates": ["at the harbour", "at the station", "at the school", "at the bank"],
           "correct_choice": 0, "position": [105, 120], "topic_category": "NP-News-Programs",
           "question_category": "S2E", "level": "L1-Perception", "id": "86CxyhFV9MI_0",
           "video_path": "86CxyhFV9MI.mp4", "subtitle_path": "86CxyhFV9MI_en.json", "duration_group": 15,
           "starting_timestamp_for_subtitles": 200, "duration": 9.0, "view_count": 10}
    (root / "lvb_val.json").write_text(json.dumps([rec]))
    return {"root": root, "file": root / "lvb_val.json"}


def _eval(cli, lvb, out, db, *args):
    return cli("eval", str(lvb["file"]), "--profile", "tiny", "--frames", "3", "--search", "vqa",
               "--zoom-rounds", "0", "--out", str(out), *args, db_path=db)


def _speech(line: dict) -> list[tuple[float, float, str]]:
    return [(c["start"], c["end"], c["text"]) for c in line["context"] if c["source"] == "speech"]


def test_benchmark_subtitles_are_the_answerers_speech_and_no_subtitles_gives_none(cli, lvb, tmp_path):
    db = tmp_path / "with.db"
    res = _eval(cli, lvb, tmp_path / "with.jsonl", db)
    assert res.exit_code == 0, res.stderr
    assert "subtitles: the benchmark's for 1 item(s)" in res.stderr
    (line,) = read_results(tmp_path / "with.jsonl")
    assert line["error"] is None and line["subtitles"] == "benchmark"
    # 200 s subtracted: the cue at 3:23.5 of the source is at 3.5 s of the clip; the one at 3:18 ends
    # before the clip starts and is not there.
    assert _speech(line) == [(3.5, 5.0, "the red car stops at the harbour")]
    # The line reads on its own: the question, the options, the gold letter, the published duration,
    # the evidence in seconds at the fps the frame indexes were counted at.
    assert (line["question"], line["gold"], line["published_duration"]) == ("Where does the red car stop?", "A", 9.0)
    assert line["options"][0] == "at the harbour" and line["duration_class"] == "8-15s"
    assert line["evidence_fps"] == pytest.approx(30.0)
    assert [v for iv in line["evidence"] for v in iv] == pytest.approx([3.5, 3.5 + 1 / 30, 4.0, 4.0 + 1 / 30])
    assert line["subtitle_file"].endswith("86CxyhFV9MI_en.json")
    assert line["settings"]["eval"]["subtitles"] is True
    assert [r.split() for r in res.stdout.splitlines() if r.startswith("subtitles")] == [["subtitles", "benchmark", "1"]]

    # Without subtitles (its own database): no speech text reaches the answerer.
    db2 = tmp_path / "without.db"
    res = _eval(cli, lvb, tmp_path / "without.jsonl", db2, "--no-subtitles")
    assert res.exit_code == 0, res.stderr
    assert "subtitles: none" in res.stderr
    (line,) = read_results(tmp_path / "without.jsonl")
    assert line["error"] is None and line["subtitles"] == "none" and _speech(line) == []
    assert line["subtitle_file"] is None and line["settings"]["eval"]["subtitles"] is False

    # The same database with subtitles: their transcript is made and read.
    res = _eval(cli, lvb, tmp_path / "again.jsonl", db2)
    assert res.exit_code == 0, res.stderr
    assert _speech(read_results(tmp_path / "again.jsonl")[0]) == [(3.5, 5.0, "the red car stops at the harbour")]
    # ...and back without: the empty transcript made first is not the latest one any more, and search
    # and answers read the latest: refused, per item, rather than answered with the wrong speech.
    res = _eval(cli, lvb, tmp_path / "back.jsonl", db2, "--no-subtitles")
    assert res.exit_code == 1
    (line,) = read_results(tmp_path / "back.jsonl")
    assert "one --db per subtitle setting" in line["error"]
