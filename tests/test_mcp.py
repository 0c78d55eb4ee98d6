"""`vqa mcp` end to end: the SDK's own client spawns the server over stdio and drives every tool."""

from __future__ import annotations

import base64
import io
import json
import os
import sys
from pathlib import Path

import pytest

from tests.synth import make_scenes_video

mcp = pytest.importorskip("mcp", reason="the MCP SDK is not installed (pip install 'vqa[mcp]')")

SRT = """1
00:00:00,500 --> 00:00:01,800
Welcome to the harbour tour.

2
00:00:02,200 --> 00:00:03,800
The red lighthouse stands on the hill.

3
00:00:04,200 --> 00:00:05,800
The ferry leaves at noon.
"""

TOOLS = {"list_videos", "index", "search", "ask", "text", "scenes", "frames", "report", "server_info"}


@pytest.fixture
def harbour(tmp_path) -> Path:
    path = tmp_path / "harbour.mp4"
    make_scenes_video(path, [2.0, 2.0, 2.0])
    path.with_suffix(".srt").write_text(SRT)
    return path


def _server_params(tmp_path: Path):
    from mcp.client.stdio import StdioServerParameters

    env = {k: os.environ[k] for k in ("VQA_HOME", "VQA_MODELS", "HF_HUB_OFFLINE", "OMP_NUM_THREADS",
                                      "TOKENIZERS_PARALLELISM", "PYTHONPATH") if k in os.environ}
    vqa = Path(sys.executable).with_name("vqa")
    # the tiny profile has no speech model; the transcript comes from the .srt beside the video (the
    # named whisper model is never loaded when a sidecar is there)
    return StdioServerParameters(command=str(vqa), args=["mcp", "--profile", "tiny", "--whisper", "packaged:tiny.en"],
                                 env=env, cwd=str(tmp_path))


def _data(res) -> dict:
    assert not res.is_error, res.content[0].text
    return res.structured_content


def test_mcp_session_over_stdio(tmp_path, harbour):
    import anyio
    from mcp.client.session import ClientSession
    from mcp.client.stdio import stdio_client
    from PIL import Image

    errlog_path = tmp_path / "server-stderr.txt"

    async def session() -> None:
        with open(errlog_path, "w") as errlog:
            async with stdio_client(_server_params(tmp_path), errlog=errlog) as (read, write):
                async with ClientSession(read, write, read_timeout_seconds=600) as s:
                    await s.initialize()
                    listed = await s.list_tools()
                    assert {t.name for t in listed.tools} == TOOLS
                    assert all(t.description for t in listed.tools)

                    heard: list[tuple[float, float | None, str | None]] = []

                    async def progress(done: float, total: float | None, message: str | None) -> None:
                        heard.append((done, total, message))

                    res = _data(await s.call_tool("index", {"path": str(harbour)}, progress_callback=progress))
                    done, total, what = heard[-1]  # seconds of video done, of the whole
                    assert done == total == pytest.approx(6.0, abs=0.1) and what == "harbour.mp4"
                    assert all(0 <= d <= t for d, t, _ in heard)
                    item = res["results"][0]
                    assert item["status"] == "indexed" and res["failed"] == 0
                    assert {"scenes", "frames", "transcript"} <= set(item["stages_run"])
                    again = _data(await s.call_tool("index", {"path": str(harbour)}))
                    assert again["results"][0]["status"] == "unchanged"

                    videos = _data(await s.call_tool("list_videos", {}))["videos"]
                    assert [v["path"] for v in videos] == [str(harbour)]
                    assert videos[0]["stages"]["transcript"] == "done"

                    scenes = _data(await s.call_tool("scenes", {"video": str(harbour)}))["scenes"]
                    assert len(scenes) >= 2 and scenes[0]["start"] == 0.0

                    found = _data(await s.call_tool("search", {"video": str(harbour), "query": "lighthouse"}))
                    assert found["moments"], found
                    said = [m for m in found["moments"] if "speech" in m["channels"]]
                    assert said and said[0]["start"] == pytest.approx(2.2) and "lighthouse" in said[0]["text"]
                    everywhere = _data(await s.call_tool("search", {"query": "a red lighthouse", "top": 3}))
                    assert everywhere["moments"] and everywhere["moments"][0]["video"] == str(harbour)

                    lines = _data(await s.call_tool("text", {"video": str(harbour), "start": 3.0, "end": 6.0,
                                                             "sources": ["speech", "screen"]}))
                    assert [(ln["source"], ln["text"]) for ln in lines["lines"]] == [
                        ("speech", "The red lighthouse stands on the hill."), ("speech", "The ferry leaves at noon.")]
                    assert lines["not_indexed"] == ["screen"]  # the tiny profile has no OCR model
                    every = _data(await s.call_tool("text", {"video": str(harbour)}))["lines"]
                    caps = [ln for ln in every if ln["source"] == "caption"]
                    assert caps and all(ln["random_weights"] for ln in caps)  # tiny captioner: flagged
                    assert len([ln for ln in every if ln["source"] == "speech"]) == 3

                    got = await s.call_tool("frames", {"video": str(harbour), "times": [1.0, 4.5],
                                                       "max_pixels": 2 * 160 * 90})
                    assert not got.is_error, got.content[0].text
                    head = json.loads(got.content[0].text)["frames"]
                    images = [c for c in got.content if c.type == "image"]
                    assert len(images) == 2 and [f["t"] for f in head] == [1.0, 4.5]
                    for c, f in zip(images, head):
                        im = Image.open(io.BytesIO(base64.b64decode(c.data)))
                        im.load()
                        assert c.mime_type == "image/jpeg" and im.format == "JPEG"
                        assert im.size == (f["width"], f["height"]) == (160, 90)
                        assert im.convert("L").getextrema()[1] > 40  # a real picture, not a black frame
                    over = await s.call_tool("frames", {"video": str(harbour), "times": [60.0]})
                    assert over.is_error and "outside the video" in over.content[0].text
                    many = await s.call_tool("frames", {"video": str(harbour), "times": [1.0] * 20})
                    assert many.is_error and many.content[0].text.startswith("invalid arguments: times: ")
                    assert "\n" not in many.content[0].text and "at most 16" in many.content[0].text

                    first = await s.call_tool("ask", {"video": str(harbour), "question": "When does the ferry leave?"})
                    ans = _data(first)
                    for key in ("answer", "keyframes", "scenes", "context", "settings", "timings", "trace"):
                        assert key in ans
                    assert 1 <= len(ans["keyframes"]) <= 8 and ans["answer"]["text"].strip()
                    assert any("ferry" in c["text"] for c in ans["context"])
                    loads = first.meta["vqa/loads"]
                    assert any(k.startswith("answerer:") for k in loads) and any(k.startswith("clip:") for k in loads)
                    assert all(n == 1 for n in loads.values()), loads

                    bad = await s.call_tool("index", {"path": str(tmp_path / "nope" / "missing.mp4")})
                    assert bad.is_error
                    msg = bad.content[0].text
                    assert "\n" not in msg and "missing.mp4" in msg and "no such file" in msg
                    bad_ask = await s.call_tool("ask", {"video": str(tmp_path / "gone.mp4"), "question": "What?"})
                    assert bad_ask.is_error and "gone.mp4" in bad_ask.content[0].text
                    assert "\n" not in bad_ask.content[0].text

                    second = await s.call_tool("ask", {"video": str(harbour), "question": "What colour is the lighthouse?",
                                                       "options": ["red", "green"], "frames": 4})
                    assert 1 <= len(_data(second)["keyframes"]) <= 4
                    assert second.meta["vqa/loads"] == loads  # warm: nothing loaded again
                    out = tmp_path / "reports" / "ferry.html"
                    rep = await s.call_tool("report", {"video": str(harbour), "question": "When does the ferry leave?",
                                                       "output": str(out)})
                    assert not rep.is_error, rep.content[0].text
                    written = json.loads(rep.content[0].text)
                    assert written["report"] == str(out) and out.stat().st_size == written["bytes"]
                    assert out.with_suffix(".png").is_file() and 'class="keyframe"' in out.read_text()
                    plot = [c for c in rep.content if c.type == "image"]
                    assert len(plot) == 1 and plot[0].mime_type == "image/png"
                    assert Image.open(io.BytesIO(base64.b64decode(plot[0].data))).size == \
                        Image.open(out.with_suffix(".png")).size
                    assert rep.meta["vqa/loads"] == loads

                    info = _data(await s.call_tool("server_info", {}))
                    assert info["profile"] == "tiny" and info["loads"] == loads
                    assert {"clip", "answerer"} <= set(info["loaded"])

                    harbour.rename(tmp_path / "moved.mp4")  # the file is gone: frames from the index's thumbnails
                    got = await s.call_tool("frames", {"video": str(harbour), "times": [2.5]})
                    head = json.loads(got.content[0].text)["frames"]
                    assert head[0]["source"] == "thumbnail"
                    im = Image.open(io.BytesIO(base64.b64decode(got.content[1].data)))
                    assert im.size == (head[0]["width"], head[0]["height"]) and im.width <= 320

    anyio.run(session)
    stderr = errlog_path.read_text()
    assert "Traceback" not in stderr, stderr


def test_mcp_without_sdk_says_how_to_install(cli, monkeypatch):
    """`vqa mcp` where the SDK is missing: one line naming the extra, exit 1, no traceback."""
    monkeypatch.setitem(sys.modules, "mcp", None)
    monkeypatch.delitem(sys.modules, "pipelines.serve.mcp_server", raising=False)
    res = cli("mcp", with_db=False)
    assert res.exit_code == 1
    assert res.stderr.strip().count("\n") == 0 and "vqa[mcp]" in res.stderr
