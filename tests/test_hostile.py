"""Hostile servers, names and paths: secrets stay home, nothing is fetched because of a name, odd
outputs and inputs get one line.

Real HTTP servers on 127.0.0.1 play an OpenAI-compatible answerer (one that redirects to another
origin, one that echoes credentials in its 401) and a web server that must receive no request; the
videos and images are generated files; the CLI runs in-process.
"""

from __future__ import annotations

import base64
import contextlib
import json
import shutil
import sqlite3
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from PIL import Image

from pipelines.stages.media import probe
from tests.conftest import jsonl
from tests.test_faults import TINY, dump, one_line, read_only
from tests.test_robustness import build_tiny_models, small_video

KEY = "sk-test-0123456789abcdef"
PASSWORD = "pa55-w0rd-xyz"


class Server:
    """A real HTTP server on 127.0.0.1 recording every request. ``mode``: "answer" (a chat completion
    whose text is "A"), "redirect" (302 to ``location``), "echo-401" (401 whose body repeats the
    Authorization header it got), "any" (404 to everything)."""

    def __init__(self, mode: str, location: str = ""):
        self.requests: list[dict] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def _handle(self):
                n = int(self.headers.get("Content-Length") or 0)
                outer.requests.append({"path": self.path, "headers": dict(self.headers),
                                       "body": self.rfile.read(n) if n else b""})
                if mode == "redirect":
                    self.send_response(302)
                    self.send_header("Location", location + self.path)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                if mode == "echo-401":
                    got = self.headers.get("Authorization", "")
                    self._send(401, {"error": {"message": f"invalid credentials: {got} (key {KEY})"}})
                    return
                if mode == "answer":
                    self._send(200, {"choices": [{"message": {"role": "assistant", "content": "A"}}],
                                     "usage": {"completion_tokens": 1}})
                    return
                self._send(404, {"error": "nothing here"})

            do_GET = do_POST = do_HEAD = _handle

            def _send(self, code, obj):
                data = json.dumps(obj).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                return

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture(scope="module")
def video(models_home, tmp_path_factory) -> Path:
    build_tiny_models()
    return small_video(tmp_path_factory.mktemp("hostile") / "v.mp4", 50, durations=(1.0, 1.2))


@pytest.fixture
def indexed(cli, video) -> Path:
    res = cli("index", str(video), *TINY, "--no-captions")
    assert res.exit_code == 0, res.stderr
    return cli.db


def ask(cli, video: Path, base: str, *extra: str, db: Path | None = None):
    return cli("ask", str(video), "What colour is the square?", *TINY, "--frames", "2", "--zoom-rounds", "0",
               "--api-base", base, "--api-model", "m", *extra, db_path=db)


def fill_up(db: Path) -> int:
    """Fill the answers table's pages to the last bytes without growing the file; its page count."""
    conn = sqlite3.connect(db)
    pages = conn.execute("PRAGMA page_count").fetchone()[0]
    conn.execute(f"PRAGMA max_page_count = {pages}")
    for size in (2000, 500, 100, 20, 1):
        with contextlib.suppress(sqlite3.OperationalError):  # database or disk is full
            while True:
                conn.execute("insert into answers (video_id, question, answer) values ('filler', ?, '')", ["x" * size])
                conn.commit()
        conn.rollback()
    conn.close()
    return pages


def answers_logged(db: Path) -> int:
    return sqlite3.connect(db).execute("select count(*) from answers").fetchone()[0]


# -- credentials --------------------------------------------------------------------------------------
def test_a_redirect_to_another_origin_never_receives_the_key(cli, indexed, video, monkeypatch):
    monkeypatch.setenv("VQA_API_KEY", KEY)
    with Server("answer") as elsewhere, Server("redirect", location=elsewhere.url) as server:
        res = ask(cli, video, server.url + "/v1")
        line = one_line(res, 1, f"{server.url}/v1/chat/completions: HTTP 302", "redirects to "
                        f"{elsewhere.url}/v1/chat/completions", "not followed")
        assert elsewhere.requests == []  # nothing reached the other origin
        assert server.requests[0]["headers"]["Authorization"] == f"Bearer {KEY}"
    assert KEY not in line and answers_logged(indexed) == 0


def test_password_and_key_are_blanked_from_every_message(cli, indexed, video, monkeypatch):
    monkeypatch.delenv("VQA_API_KEY", raising=False)
    with Server("echo-401") as server:
        base = server.url.replace("http://", f"http://user:{PASSWORD}@") + "/v1"
        line = one_line(ask(cli, video, base), 1, "HTTP 401", "invalid credentials: Basic ***")
        sent = server.requests[0]["headers"]["Authorization"]
        assert sent == "Basic " + base64.b64encode(f"user:{PASSWORD}".encode()).decode()
        assert PASSWORD not in line and sent.split()[1] not in line and "user:" not in line
        monkeypatch.setenv("VQA_API_KEY", KEY)
        line = one_line(ask(cli, video, server.url + "/v1"), 1, "HTTP 401", "Bearer ***", "(key ***)")
        assert KEY not in line


# -- names: no fetching, one line per output item ------------------------------------------------------
def test_a_url_is_not_fetched_and_a_local_file_named_like_one_is_local(cli, video, tmp_path, monkeypatch):
    with Server("any") as web:
        res = cli("index", f"{web.url}/video.mp4", *TINY, "--no-captions")
        assert res.exit_code == 1 and res.stderr.splitlines()[0] == (
            f"{web.url}/video.mp4: a URL, not a local file: vqa indexes local files only (download it first)")
        local = tmp_path / "http:" / f"127.0.0.1:{web.port}" / "video.mp4"
        local.parent.mkdir(parents=True)
        shutil.copy(video, local)
        monkeypatch.chdir(tmp_path)
        res = cli("index", f"./http:/127.0.0.1:{web.port}/video.mp4", *TINY, "--no-captions", "--jsonl")
        assert res.exit_code == 0, res.stderr
        assert jsonl(res.stdout)[0]["duration"] == probe(str(video)).duration  # the local file's, all of it
        assert web.requests == []


def test_control_characters_in_names_are_escaped_in_text_and_raw_in_json(cli, video, tmp_path):
    odd = tmp_path / "two\nlines\tand\x1b[31mred.mp4"
    shutil.copy(video, odd)
    res = cli("index", str(odd), *TINY, "--no-captions")
    assert res.exit_code == 0
    shown = str(odd).replace("\n", "\\n").replace("\t", "\\t").replace("\x1b", "\\x1b")
    assert len(res.stdout.strip().splitlines()) == 1 and shown in res.stdout
    ls = cli("ls")
    assert len(ls.stdout.strip().splitlines()) == 1 and shown in ls.stdout
    assert json.loads(cli("ls", "--json").stdout)[0]["paths"] == [str(odd)]
    res = cli("scenes", str(odd))
    assert res.stdout.splitlines()[0].startswith(shown)
    gone = tmp_path / "gone\nfile.mp4"
    res = cli("index", str(gone), *TINY)
    assert res.exit_code == 1 and res.stderr.splitlines()[0] == str(gone).replace("\n", "\\n") + ": no such file"


def _image(path: Path, fmt: str) -> Path:
    Image.new("RGB", (64, 48), (200, 30, 30)).save(path, format=fmt)
    return path


@pytest.mark.parametrize("name,fmt,label", [
    ("still.png", "PNG", "PNG"), ("still.jpg", "JPEG", "JPEG"), ("still.webp", "WEBP", "WebP"),
    ("still.bmp", "BMP", "BMP"), ("still.tiff", "TIFF", "TIFF"), ("still.gif", "GIF", "GIF"),
    ("png-named.mp4", "PNG", "PNG")])
def test_still_images_are_refused_alike_whatever_their_format_or_name(name, fmt, label, cli, tmp_path):
    path = _image(tmp_path / name, fmt)
    res = cli("index", str(path), *TINY)
    assert res.exit_code == 1 and "Traceback" not in res.stderr
    assert res.stderr.splitlines() == [f"{path}: a still image ({label}), not a video: vqa indexes videos only",
                                       "0 indexed, 0 unchanged, 1 failed"]


# -- where the answer goes ------------------------------------------------------------------------------
@pytest.mark.parametrize("target", ["file", "/dev/null", "/proc"])
def test_save_frames_onto_a_non_folder_costs_the_frames_not_the_answer(target, cli, indexed, video, tmp_path):
    dest = tmp_path / "a-file.txt" if target == "file" else Path(target)
    if target == "file":
        dest.write_text("keep me")
    with Server("answer") as server:
        res = ask(cli, video, server.url + "/v1", "--save-frames", str(dest))
    one_line(res, 1, f"error: {dest}: keyframes not saved", "--save-frames needs a folder")
    assert res.stdout.startswith("Answer: A") and "answer #1" in res.stdout
    assert answers_logged(indexed) == 1
    if target == "file":
        assert dest.read_text() == "keep me"


@pytest.mark.parametrize("fault", ["read-only", "full"])
def test_ask_answers_on_a_database_it_cannot_write_and_says_the_answer_was_not_logged(fault, cli, indexed, video,
                                                                                       monkeypatch):
    from index.store import Store

    guard = read_only(indexed) if fault == "read-only" else contextlib.nullcontext()
    if fault == "full":  # no page left to grow into, and no room left in the answers' pages
        monkeypatch.setattr(Store, "max_page_count", fill_up(indexed))
    before, logged = dump(indexed), answers_logged(indexed)
    with guard, Server("answer") as server:
        res = ask(cli, video, server.url + "/v1")
    why = "is open read-only" if fault == "read-only" else "the disk is full"
    one_line(res, 0, f"note: the answer was not logged: {indexed}: {why}")
    assert res.stdout.startswith("Answer: A") and "not logged" in res.stdout
    assert dump(indexed) == before and answers_logged(indexed) == logged
