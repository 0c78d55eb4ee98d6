"""`vqa ask`, `vqa search`, `vqa log` end to end with the tiny profile (real classes, random weights)."""

from __future__ import annotations

import json

import pytest

from pipelines.backends.loads import LOADS
from tests.conftest import SCENE_DURATIONS, jsonl


@pytest.fixture
def indexed(cli, scenes_video):
    path, cuts = scenes_video
    res = cli("index", str(path), "--profile", "tiny")
    assert res.exit_code == 0, res.stderr
    return path


def test_ask_json_schema_and_determinism(cli, indexed, tmp_path):
    q = "When does the red circle appear?"
    res = cli("ask", str(indexed), q, "--profile", "tiny", "--json", "--seed", "3",
              "--save-frames", str(tmp_path / "frames"))
    assert res.exit_code == 0, res.stderr
    out = json.loads(res.stdout)
    for key in ("video", "question", "answer", "keyframes", "scenes", "context", "settings", "timings", "trace"):
        assert key in out
    assert out["answer"]["text"].strip()  # produced by generate(), whatever random weights say
    kfs = [k["t"] for k in out["keyframes"]]
    assert len(kfs) == 8
    assert kfs == sorted(kfs) and len(set(kfs)) == len(kfs)
    assert 0 <= kfs[0] and kfs[-1] <= sum(SCENE_DURATIONS) + 0.5
    s = out["settings"]
    assert s["seed"] == 3 and s["k"] == 8 and s["prompt_template"]
    assert s["models"]["answerer"]["random_weights"] is True
    assert s["models"]["clip"]["fingerprint"]
    assert out["trace"][0]["round"] == 0 and out["trace"][0]["frames_scored"] > 0
    saved = sorted(p.name for p in (tmp_path / "frames").iterdir())
    assert len(saved) == 8 and all(p.startswith("frame_") and p.endswith("s.jpg") for p in saved)

    again = json.loads(cli("ask", str(indexed), q, "--profile", "tiny", "--json", "--seed", "3").stdout)
    assert [k["t"] for k in again["keyframes"]] == kfs
    assert again["answer"]["text"] == out["answer"]["text"]

    log = json.loads(cli("log", str(indexed), "--json").stdout)
    assert len(log) == 2 and log[0]["question"] == q


def test_multiple_choice_returns_letter_and_text(cli, indexed):
    res = cli("ask", str(indexed), "Which pattern comes first?", "--option", "colour bars", "--option",
              "a fractal", "--option", "a test card", "--profile", "tiny", "--json")
    assert res.exit_code == 0, res.stderr
    ans = json.loads(res.stdout)["answer"]
    assert ans["text"].strip()
    if ans["choice"] is not None:  # random weights may not name a letter; when they do, it maps
        assert ans["choice"] in "ABC"
        assert ans["choice_text"] in ("colour bars", "a fractal", "a test card")


def test_questions_file_loads_each_model_once(cli, indexed, tmp_path):
    qfile = tmp_path / "q.jsonl"
    lines = [json.dumps({"question": f"What happens in scene {i}?"}) for i in range(1, 4)]
    lines += ["Where is the blue square?", json.dumps({"question": "Pick one", "options": ["x", "y"]})]
    qfile.write_text("\n".join(lines) + "\n")
    LOADS.clear()
    res = cli("ask", str(indexed), "--questions", str(qfile), "--profile", "tiny")
    assert res.exit_code == 0, res.stderr
    rows = jsonl(res.stdout)
    assert len(rows) == 5 and all("answer" in r for r in rows)
    loads = {k.split(":", 1)[0]: v for k, v in LOADS.items()}
    assert loads.get("answerer") == 1 and loads.get("clip") == 1, dict(LOADS)


def test_batch_with_errors_as_lines(cli, indexed, tmp_path):
    batch = tmp_path / "batch.jsonl"
    batch.write_text("\n".join([
        json.dumps({"id": "a", "video": str(indexed), "question": "What is shown?"}),
        json.dumps({"id": "b", "video": str(tmp_path / "nope.mp4"), "question": "What?"}),
        "{not json",
        json.dumps({"id": "d", "video": str(indexed), "question": "What colour?", "options": ["red", "blue"]}),
    ]) + "\n")
    res = cli("ask", "--batch", str(batch), "--profile", "tiny")
    assert res.exit_code == 1
    rows = jsonl(res.stdout)
    assert [r["id"] for r in rows] == ["a", "b", 3, "d"]
    assert "answer" in rows[0] and "answer" in rows[3]
    assert "no such file" in rows[1]["error"] and "invalid JSON" in rows[2]["error"]


def test_ask_indexes_first_and_search(cli, silent_scenes_video):
    res = cli("ask", str(silent_scenes_video), "What is shown?", "--profile", "tiny", "--json", "--frames", "4")
    assert res.exit_code == 0, res.stderr
    assert len(json.loads(res.stdout)["keyframes"]) == 4
    res = cli("search", str(silent_scenes_video), "colour bars", "--profile", "tiny", "--json")
    assert res.exit_code == 0, res.stderr
    moments = json.loads(res.stdout)["moments"]
    assert moments and all(m["start"] <= m["end"] and m["channels"] == ["visual"] for m in moments)
    # each visual moment holds its best frame and stays inside the video and inside one detected shot
    listed = json.loads(cli("scenes", str(silent_scenes_video), "--json").stdout)
    shots = listed["scenes"]
    assert len(shots) == 3
    for m in moments:
        assert 0.0 <= m["start"] <= m["t"] <= m["end"] <= listed["duration"]
        assert any(s["start"] <= m["start"] and m["end"] <= s["end"] for s in shots), (m, shots)
    spans = sorted((m["start"], m["end"]) for m in moments)
    assert all(a_end <= b_start for (_, a_end), (b_start, _) in zip(spans, spans[1:]))  # no two share time
    res = cli("search", "--all", "colour bars", "--profile", "tiny", "--json")
    assert res.exit_code == 0, res.stderr
    lib = json.loads(res.stdout)
    assert lib["videos"] == 1 and lib["moments"] and lib["clip_random_weights"] is True
    res = cli("search", "--all", "colour bars", "--profile", "tiny")
    assert res.exit_code == 0 and "this CLIP has random weights" in res.stderr
    assert len(res.stdout.strip().splitlines()) == len(lib["moments"])


def test_ask_missing_video_is_one_line(cli, tmp_path):
    res = cli("ask", str(tmp_path / "missing.mp4"), "What?", "--profile", "tiny")
    assert res.exit_code == 1
    assert res.stderr.strip().count("\n") == 0 and "missing.mp4" in res.stderr


def test_llm_decomposition_runs_the_answerer_and_keeps_the_question(cli, indexed):
    LOADS.clear()
    res = cli("ask", str(indexed), "When does the red circle appear?", "--profile", "tiny", "--json",
              "--decompose", "llm", "--frames", "4")
    assert res.exit_code == 0, res.stderr
    subs = json.loads(res.stdout)["subqueries"]
    assert any(s["role"] == "question" for s in subs) and any(s["role"] == "target" for s in subs)
    assert sum(v for k, v in LOADS.items() if k.startswith("answerer:")) == 1  # one model for both uses


def test_moment_fusion_counts_each_ranking_once_per_moment():
    from pipelines.ask import _fuse_moments

    def vis(a, b, score):
        return {"start": a, "end": b, "t": (a + b) / 2, "score": score, "channel": "visual", "text": None}

    def line(a, b, source, text):
        return {"start": a, "end": b, "t": (a + b) / 2, "score": None, "channel": source, "text": text}

    moments = [vis(0.0, 6.0, 0.9), vis(1.0, 3.0, 0.8), vis(6.0, 12.0, 0.1),  # two keyframes in one hump
               line(7.0, 9.0, "screen", "Fish market closes at 11:30"),  # the best line
               line(0.5, 2.0, "speech", "weak"), line(1.0, 1.5, "screen", "weaker")]
    out = _fuse_moments(moments)
    by_text = {m["text"]: m for m in out}
    # 0.5-2 holds two lines and two keyframes: one visual vote (rank 0) + the text's best there (rank 1)
    assert by_text["weak"]["score"] == round(1 / 10 + 1.5 / 11, 4)
    assert by_text["weak"]["channels"] == ["screen", "speech", "visual"]
    # 6-12 touches 0-6 but shares no time: a moment of its own, with its own keyframe
    fish = by_text["Fish market closes at 11:30"]
    assert (fish["start"], fish["end"]) == (7.0, 9.0) and fish["channels"] == ["screen", "visual"]
    assert fish["score"] == round(1.5 / 10 + 1 / 12, 4) and len(out) == 2
    # with a random-weights CLIP the frames barely vote: the best line comes first
    noisy = _fuse_moments([dict(m) for m in moments], visual_weight=0.01)
    assert noisy[0]["text"] == "Fish market closes at 11:30"


def test_search_all_fuses_speech_across_the_library(cli, tmp_path):
    from tests.synth import make_color_video

    said = {"harbour": "The treasure is buried under the old oak tree.", "market": "Fresh bread is sold at dawn."}
    paths = []
    for n, (name, line) in enumerate(said.items()):
        path = tmp_path / f"{name}.mp4"
        make_color_video(path, [2.0, 2.0, 2.0 + n])  # two different files
        (tmp_path / f"{name}.srt").write_text(f"1\n00:00:02,000 --> 00:00:04,500\n{line}\n", encoding="utf-8")
        paths.append(str(path))
    res = cli("index", *paths, "--profile", "tiny", "--whisper", "packaged:tiny.en", "--no-captions")
    assert res.exit_code == 0, res.stderr
    res = cli("search", "--all", "where is the treasure buried", "--profile", "tiny", "--json")
    assert res.exit_code == 0, res.stderr
    lib = json.loads(res.stdout)
    assert lib["videos"] == 2
    top = lib["moments"][0]
    assert top["video"].endswith("harbour.mp4") and "speech" in top["channels"]
    assert top["text"] == said["harbour"] and (top["start"], top["end"]) == (2.0, 4.5)
    # moments merge only within one video: the market's frames never join the harbour's line
    assert all(m["video"].endswith("harbour.mp4") for m in lib["moments"] if "speech" in m["channels"])
    text = cli("search", "--all", "where is the treasure buried", "--profile", "tiny")
    assert "harbour.mp4" in text.stdout.splitlines()[0] and "[speech" in text.stdout.splitlines()[0]


def test_ask_says_what_it_is_doing_on_stderr(cli, indexed):
    res = cli("ask", str(indexed), "When does the red circle appear?", "--profile", "tiny", "--frames", "3",
              "--progress")
    assert res.exit_code == 0, res.stderr
    words = [ln for ln in res.stderr.splitlines() if ln.startswith("vqa: ")]
    assert any("searching" in w for w in words) and any("answering with" in w for w in words)
    assert res.stdout.startswith("Answer:")  # results on stdout, progress on stderr
    quiet = cli("ask", str(indexed), "When does the red circle appear?", "--profile", "tiny", "--frames", "3",
                "--no-progress")
    assert not [ln for ln in quiet.stderr.splitlines() if ln.startswith("vqa: ")]
