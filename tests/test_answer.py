"""Answerers: the pure prompt core, tiny real video-LLMs through load_answerer, an OpenAI-compatible server."""

from __future__ import annotations

import base64
import io
import json
import os
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from pipelines.answerers.base import (  # noqa: E402
    Answer,
    AnswerRequest,
    ContextLine,
    answerer_kinds,
    load_answerer,
    register_answerer,
)
from pipelines.answerers.prompt import (  # noqa: E402
    cite,
    fit_to_budget,
    option_texts,
    parse_choice,
    prompt_body,
    select_context,
    top_frames,
    words,
)
from pipelines.answerers.vlm import Qwen25VLAnswerer  # noqa: E402
from pipelines.backends.loads import LOADS  # noqa: E402
from pipelines.errors import ModelError  # noqa: E402

CONTEXT = [
    ContextLine(3.0, 6.0, "speech", "The gate code is seven hundred."),
    ContextLine(7.0, 9.5, "screen", "EXIT 4 NORTH"),
    ContextLine(0.0, 10.0, "caption", "a red car parks next to a blue bus"),
]
OPTIONS = ["a red car", "a green boat", "a yellow plane"]
TIMES = [1.0, 4.5, 8.0]


def frames():
    from PIL import Image, ImageDraw

    out = []
    for i, color in enumerate(["red", "green", "blue"]):
        img = Image.new("RGB", (320, 180), color)
        ImageDraw.Draw(img).rectangle([20 + 40 * i, 20, 120 + 40 * i, 120], fill="white")
        out.append(img)
    return out


def request(**kw) -> AnswerRequest:
    base = dict(question="What parks next to the bus?", options=list(OPTIONS), frames=frames(),
                timestamps=list(TIMES), context=list(CONTEXT), max_new_tokens=6)
    base.update(kw)
    return AnswerRequest(**base)


@pytest.fixture(scope="session")
def tiny_root(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("tiny-answerers")


@pytest.fixture(scope="session")
def qwen_dir(tiny_root) -> Path:
    from pipelines.backends.tiny_vlm import build_tiny_qwen2_5_vl

    return build_tiny_qwen2_5_vl(tiny_root)


@pytest.fixture(scope="session")
def llava_dir(tiny_root) -> Path:
    from pipelines.backends.tiny_vlm import build_tiny_llava_onevision

    return build_tiny_llava_onevision(tiny_root)


@pytest.fixture(scope="session")
def lm_dir(tiny_root) -> Path:
    from pipelines.backends.tiny_vlm import build_tiny_causal_lm

    return build_tiny_causal_lm(tiny_root)


@pytest.fixture
def no_network(monkeypatch):
    """Any attempt to open a network connection fails the test (a hub lookup would)."""
    def refuse(self, address, *a, **k):
        raise AssertionError(f"unexpected network connection to {address}")

    monkeypatch.setattr(socket.socket, "connect", refuse)


# --- pure core ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("text,expected", [
    ("B", "B"), ("(C)", "C"), ("B. a green boat", "B"), ("C) plane", "C"), ("The answer is C.", "C"),
    ("Answer: B", "B"), ("b", "B"), ("the answer is a green boat", "B"), ("I think it is a yellow plane.", "C"), ("A man parks a red car", "A"),
    ("A green boat, clearly.", "B"), ("Option A", "A"), ("nothing matches", None), ("", None),
    ("It is D", None), ("Clearly C, because", "C"),
])
def test_parse_choice(text, expected):
    assert parse_choice(text, OPTIONS) == expected


def test_options_keep_their_own_letters_once():
    assert option_texts(["A. red", "(B) blue", "C: green", "Apples"]) == ["red", "blue", "green", "Apples"]
    body = prompt_body(AnswerRequest("Which?", ["A. red", "B. blue"], [], [], []), [])
    assert "A. red\nB. blue" in body and "A. A." not in body


def test_prompt_body_has_context_question_and_letters():
    body = prompt_body(request(), CONTEXT)
    assert "[3.0-6.0 s] Speech: The gate code is seven hundred." in body
    assert "[7.0-9.5 s] On screen: EXIT 4 NORTH" in body
    assert "Question: What parks next to the bus?" in body
    assert "A. a red car\nB. a green boat\nC. a yellow plane" in body
    assert "letter" in body
    open_body = prompt_body(request(options=[]), [])
    assert "Options" not in open_body and "briefly" in open_body


def test_select_context_keeps_relevant_lines_in_time_order():
    lines = [ContextLine(float(i), i + 1.0, "speech", f"filler sentence number {i}") for i in range(50)]
    lines.insert(30, ContextLine(99.0, 100.0, "screen", "Gate code 4817"))
    kept = select_context(lines, "What is the gate code?", max_lines=5)
    assert len(kept) == 5
    assert ContextLine(99.0, 100.0, "screen", "Gate code 4817") in kept
    assert [c.start for c in kept] == sorted(c.start for c in kept)
    assert select_context(CONTEXT, "anything") == sorted(CONTEXT, key=lambda c: c.start)


def test_cite_prefers_lines_sharing_new_words_else_top_frames():
    assert cite("The code is seven hundred", "What is the gate code?", CONTEXT, TIMES) == [3.0]
    assert cite("EXIT 4", "Which exit?", CONTEXT, TIMES) == [7.0]
    assert cite("no idea", "What?", CONTEXT, TIMES, [100, 900, 400]) == [1.0, 4.5, 8.0]
    assert top_frames([1.0, 2.0, 3.0, 4.0], [10, 40, 30, 20], k=2) == [2.0, 3.0]
    assert words("The Tickets, the ticket!") == {"ticket"}


def test_fit_to_budget_keeps_aspect_and_grid():
    from PIL import Image

    img = Image.new("RGB", (640, 360))
    small = fit_to_budget(img, 28 * 28 * 16, factor=28)
    w, h = small.size
    assert w * h <= 28 * 28 * 16 and w % 28 == 0 and h % 28 == 0 and w > h
    assert fit_to_budget(img, None) is img
    assert fit_to_budget(img, 10**7).size == (640, 360)


# --- loading and failing fast -------------------------------------------------------------------------

def test_missing_folder_fails_fast(tmp_path, no_network):
    with pytest.raises(ModelError, match="does not exist"):
        load_answerer(f"qwen2.5-vl:{tmp_path / 'nope'}")
    with pytest.raises(ModelError, match="does not exist"):
        load_answerer(str(tmp_path / "nope"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelError, match="no config.json"):
        load_answerer(f"llava-onevision:{tmp_path / 'empty'}")


def test_unknown_hub_id_offline_fails_fast_without_network(monkeypatch, tmp_path, no_network):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    for spec in ["qwen2.5-vl:nobody/no-such-model", "nobody/no-such-model", "textlm:nobody/no-such-lm"]:
        with pytest.raises(ModelError) as err:
            load_answerer(spec)
        assert "nobody/no-such" in str(err.value) and "HF_HUB_OFFLINE" in str(err.value)


def test_spec_errors(tmp_path, lm_dir):
    with pytest.raises(ModelError, match="names no model"):
        load_answerer("qwen2.5-vl:")
    with pytest.raises(ModelError, match="--api-base"):
        load_answerer("openai")
    (tmp_path / "odd").mkdir()
    (tmp_path / "odd" / "config.json").write_text(json.dumps({"model_type": "bert", "architectures": ["BertModel"]}))
    with pytest.raises(ModelError, match="not a known answerer"):
        load_answerer(str(tmp_path / "odd"))
    with pytest.raises(ModelError, match="is a file"):
        load_answerer(f"textlm:{lm_dir / 'config.json'}")


def test_plugins_register_like_builtins(lm_dir):
    from pipelines.answerers.textlm import TextLMAnswerer

    assert {"openai", "qwen2.5-vl", "llava-onevision", "textlm", "smollm2-packaged"} <= set(answerer_kinds())

    def factory(target, **kw):
        return TextLMAnswerer(target or str(lm_dir), name="my-lm", max_lines=2)

    register_answerer("my-lm", factory)
    try:
        ans = load_answerer("my-lm")
        assert ans.name == "my-lm"
        assert load_answerer(f"my-lm:{lm_dir}").answer(request()).choice in "ABC"
    finally:
        from pipelines.backends import registry

        registry.unregister("answerer", "my-lm")


# --- tiny real video-LLMs through the real generate path ----------------------------------------------

@pytest.mark.parametrize("which", ["qwen", "llava"])
def test_tiny_vlm_answers_through_generate(which, qwen_dir, llava_dir):
    folder = qwen_dir if which == "qwen" else llava_dir
    kind = "qwen2.5-vl" if which == "qwen" else "llava-onevision"
    before = LOADS[f"answerer:{kind}:{folder}"]
    ans = load_answerer(f"{kind}:{folder}", device="cpu")
    assert LOADS[f"answerer:{kind}:{folder}"] == before + 1
    assert ans.random_weights is True and ans.fingerprint
    req = request()
    first, second = ans.answer(req), ans.answer(req)
    assert isinstance(first, Answer)
    assert first.generated_tokens > 0
    assert (first.text, first.choice, first.prompt) == (second.text, second.choice, second.prompt)
    for t in TIMES:
        assert f"at {t:.1f} s" in first.prompt
    for letter, opt in zip("ABC", OPTIONS, strict=True):
        assert f"{letter}. {opt}" in first.prompt
    assert "[3.0-6.0 s] Speech: The gate code is seven hundred." in first.prompt
    assert first.frames_seen == TIMES and len(first.frame_sizes) == 3
    assert first.context_used == sorted(CONTEXT, key=lambda c: c.start)
    assert first.choice in (None, "A", "B", "C")
    if first.choice:
        assert first.choice_text == OPTIONS["ABC".index(first.choice)]
    assert first.cited and set(first.cited) <= set(TIMES) | {c.start for c in CONTEXT}
    json.dumps(first.as_dict())


def test_bare_folder_is_autodetected(qwen_dir, llava_dir, lm_dir):
    from pipelines.answerers.textlm import TextLMAnswerer
    from pipelines.answerers.vlm import LlavaOnevisionAnswerer

    assert isinstance(load_answerer(str(qwen_dir)), Qwen25VLAnswerer)
    assert isinstance(load_answerer(str(llava_dir)), LlavaOnevisionAnswerer)
    assert isinstance(load_answerer(str(lm_dir)), TextLMAnswerer)


def test_qwen_gives_each_frame_its_own_pixel_budget(qwen_dir):
    ans = load_answerer(f"qwen2.5-vl:{qwen_dir}")
    budgets = [28 * 28 * 12, 28 * 28 * 4, 28 * 28 * 2]
    out = ans.answer(request(pixel_budgets=budgets))
    assert out.generated_tokens > 0
    areas = [w * h for w, h in out.frame_sizes]
    assert areas[0] > areas[1] > areas[2]
    assert all(a <= b for a, b in zip(areas, budgets, strict=True))
    assert all(w % 28 == 0 and h % 28 == 0 for w, h in out.frame_sizes)
    # the budgets decide the top frames cited when no context line matches
    assert top_frames(TIMES, budgets, k=1) == [1.0]


def test_fingerprint_follows_content_and_dtype_not_location(qwen_dir, tmp_path):
    import shutil

    moved = shutil.copytree(qwen_dir, tmp_path / "elsewhere")
    a = load_answerer(f"qwen2.5-vl:{qwen_dir}", dtype="float32")
    b = load_answerer(f"qwen2.5-vl:{moved}", dtype="float32")
    c = load_answerer(f"qwen2.5-vl:{qwen_dir}", dtype="bfloat16")
    assert a.fingerprint == b.fingerprint != c.fingerprint
    cfg = json.loads((moved / "config.json").read_text())
    cfg["text_config"]["rms_norm_eps"] = 1e-6
    (moved / "config.json").write_text(json.dumps(cfg))
    assert load_answerer(f"qwen2.5-vl:{moved}", dtype="float32").fingerprint != a.fingerprint


def test_request_must_line_up():
    with pytest.raises(ValueError, match="timestamps"):
        request(timestamps=[1.0, 2.0])
    with pytest.raises(ValueError, match="pixel budgets"):
        request(pixel_budgets=[100])
    assert request(frames=[]).frames == []  # text-only answerers may get the times without the images


def test_text_only_request_and_answer_many(llava_dir):
    ans = load_answerer(f"llava-onevision:{llava_dir}")
    reqs = [request(frames=[], timestamps=[], options=[]), request()]
    many = ans.answer_many(reqs)
    assert [a.text for a in many] == [ans.answer(r).text for r in reqs]
    assert many[0].frames_seen == [] and many[0].choice is None
    assert "Frame" not in many[0].prompt


def test_tiny_builders_are_deterministic(tmp_path, qwen_dir):
    from pipelines.backends.tiny_vlm import build_tiny_qwen2_5_vl

    again = build_tiny_qwen2_5_vl(tmp_path)
    for name in ["model.safetensors", "tokenizer.json", "config.json"]:
        assert (again / name).read_bytes() == (qwen_dir / name).read_bytes()
    assert build_tiny_qwen2_5_vl(tmp_path) == again  # cached: the second call builds nothing


# --- OpenAI-compatible server -------------------------------------------------------------------------

class _Server:
    """A real HTTP server on 127.0.0.1 that checks a chat-completions request and answers like a VLM."""

    def __init__(self, reply_text: str = "B", status: int = 200, error: str = ""):
        self.seen: list[dict] = []
        self.headers: list[dict] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                outer.seen.append(body)
                outer.headers.append(dict(self.headers))
                problem = outer.check(self.path, dict(self.headers), body)
                if status != 200 or problem:
                    self._send(status if status != 200 else 400, {"error": {"message": error or problem}})
                    return
                self._send(200, {"choices": [{"message": {"role": "assistant", "content": reply_text}}],
                                 "usage": {"completion_tokens": 1}})

            def _send(self, code, obj):
                data = json.dumps(obj).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):  # keep the test output quiet
                return

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def check(self, path, headers, body) -> str:
        from PIL import Image

        if path != "/v1/chat/completions":
            return f"bad path {path}"
        if headers.get("Authorization") != "Bearer sekret-key":
            return "bad auth"
        if body.get("model") != "tiny-vlm" or body.get("temperature") != 0 or body.get("seed") != 7:
            return "bad settings"
        parts = body["messages"][0]["content"]
        texts = [p["text"] for p in parts if p["type"] == "text"]
        images = [p["image_url"]["url"] for p in parts if p["type"] == "image_url"]
        if len(images) != 3 or not all(u.startswith("data:image/jpeg;base64,") for u in images):
            return "images are not JPEG data URLs"
        for u in images:
            Image.open(io.BytesIO(base64.b64decode(u.split(",", 1)[1]))).verify()
        for i, t in enumerate(TIMES):  # each image right after its timestamp label
            label = parts.index({"type": "text", "text": f"Frame {i + 1} at {t:.1f} s:"})
            if parts[label + 1]["type"] != "image_url":
                return f"no image after the label of {t}"
        last = texts[-1]
        needed = ["What parks next to the bus?", "A. a red car", "B. a green boat", "C. a yellow plane",
                  "[3.0-6.0 s] Speech: The gate code is seven hundred."]
        missing = [n for n in needed if n not in last]
        return f"missing {missing}" if missing else ""

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()


def test_openai_answerer_against_a_real_http_server(monkeypatch):
    monkeypatch.setenv("VQA_API_KEY", "sekret-key")
    with _Server(reply_text="B") as server:
        ans = load_answerer("openai", api_base=server.base, api_model="tiny-vlm")
        out = ans.answer(request(seed=7, pixel_budgets=[160 * 90, 80 * 45, 80 * 45]))
    assert server.seen, "the server got no request"
    assert out.choice == "B" and out.choice_text == "a green boat" and out.text == "B"
    assert out.frame_sizes[0] == (160, 90) and out.frame_sizes[1][0] * out.frame_sizes[1][1] <= 80 * 45
    assert "Frame 2 at 4.5 s:" in out.prompt and "<image>" in out.prompt
    assert out.generated_tokens == 1 and out.frames_seen == TIMES


def test_openai_answerer_key_from_named_env_and_server_checks(monkeypatch):
    monkeypatch.delenv("VQA_API_KEY", raising=False)
    monkeypatch.setenv("MY_KEY", "sekret-key")
    with _Server(reply_text="The answer is C") as server:
        ans = load_answerer("openai", api_base=server.base + "/", api_model="tiny-vlm", api_key_env="MY_KEY")
        assert ans.answer(request(seed=7)).choice == "C"
        with pytest.raises(ModelError, match="HTTP 400.*bad settings"):  # the server's own message
            ans.answer(request(seed=8))


def test_openai_http_error_and_connection_refused():
    with _Server(status=500, error="model overloaded") as server:
        ans = load_answerer("openai", api_base=server.base, api_model="tiny-vlm")
        with pytest.raises(ModelError, match="HTTP 500.*model overloaded"):
            ans.answer(request())
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    ans = load_answerer("openai", api_base=f"http://127.0.0.1:{port}/v1", api_model="x")
    with pytest.raises(ModelError, match="cannot reach"):
        ans.answer(request())
