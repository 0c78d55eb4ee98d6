"""`vqa report` and `vqa ask --report`: the HTML is self-contained, and a real headless Chromium (driven
over the DevTools protocol, network off) loads it with every image and no console error."""

from __future__ import annotations

import base64
import io
import json
import os
import re
import select
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from tests.synth import make_scenes_video

pytest.importorskip("jinja2", reason="reports need jinja2 (pip install 'vqa[report]')")
pytest.importorskip("matplotlib", reason="reports need matplotlib (pip install 'vqa[report]')")

SRT = """1
00:00:00,400 --> 00:00:01,600
Welcome aboard the ferry.

2
00:00:02,300 --> 00:00:03,700
The ferry leaves at noon from pier nine.

3
00:00:04,400 --> 00:00:05,600
Thank you for travelling with us.
"""
QUESTION = "When does the ferry leave?"


@pytest.fixture
def ferry(tmp_path, cli) -> Path:
    path = tmp_path / "ferry.mp4"
    make_scenes_video(path, [2.0, 2.0, 2.0])
    path.with_suffix(".srt").write_text(SRT)
    # tiny models; the transcript is the .srt beside the video (the named whisper model is never loaded)
    res = cli("index", str(path), "--profile", "tiny", "--whisper", "packaged:tiny.en")
    assert res.exit_code == 0, res.stderr
    return path


def _data_uris(html: str) -> list[str]:
    return re.findall(r'src="(data:[^"]*)"', html)


def test_report_with_a_question_is_self_contained(cli, ferry, tmp_path):
    from PIL import Image

    out = tmp_path / "out" / "ferry.html"
    res = cli("report", str(ferry), QUESTION, "--profile", "tiny", "-o", str(out), "--frames", "5")
    assert res.exit_code == 0, res.stderr
    assert res.stdout.split() == [str(out), str(out.with_suffix(".png"))]
    html = out.read_text()
    assert not re.search(r"https?://", html)  # nothing to fetch: opens offline
    assert "<script" not in html and "<link" not in html
    n = html.count('class="keyframe"')
    assert 1 <= n <= 5
    uris = _data_uris(html)
    assert len(uris) == 1 + n + 3  # the plot, the keyframes, three scene thumbnails
    for uri in uris:
        Image.open(io.BytesIO(base64.b64decode(uri.split(",", 1)[1]))).load()
    png = Image.open(out.with_suffix(".png"))
    assert png.format == "PNG" and png.width > 800
    for line in ("The ferry leaves at noon from pier nine.", "Welcome aboard the ferry."):
        assert line in html
    assert "When does the ferry leave?" in html and "zoom round" in html
    assert "Random-weight models" in html  # the tiny answerer's answer is labelled as meaningless


def test_ask_report_and_overview(cli, ferry, tmp_path):
    from markupsafe import escape

    out = tmp_path / "ask.html"
    res = cli("ask", str(ferry), QUESTION, "--profile", "tiny", "--json", "--report", str(out))
    assert res.exit_code == 0, res.stderr
    ans = json.loads(res.stdout)
    assert ans["report"] == str(out) and ans["report_plot"] == str(out.with_suffix(".png"))
    plain = json.loads(cli("ask", str(ferry), QUESTION, "--profile", "tiny", "--json").stdout)
    for key in ("answer", "keyframes", "context", "subqueries", "trace", "settings"):  # --report changes nothing
        assert ans[key] == plain[key], key
    html = out.read_text()
    assert html.count('class="keyframe"') == len(ans["keyframes"]) >= 1
    for k in ans["keyframes"]:  # every keyframe's time is on the contact sheet
        m, s = divmod(k["t"], 60)
        assert f"{int(m):02d}:{s:05.2f}" in html
    assert str(escape(ans["answer"]["text"].strip())) in html  # as the template escapes it
    # the window that made a keyframe relevant is boxed on its image
    assert html.count('class="region"') == sum(1 for k in ans["keyframes"] if k.get("region"))

    overview = tmp_path / "overview.html"
    res = cli("report", str(ferry), "--profile", "tiny", "-o", str(overview))
    assert res.exit_code == 0, res.stderr
    html = overview.read_text()
    assert 'class="keyframe"' not in html and "Relevance over time" not in html
    assert len(_data_uris(html)) == 1 + 3 and "Thank you for travelling with us." in html


def test_report_bad_inputs_one_line(cli, ferry, tmp_path):
    res = cli("report", str(tmp_path / "missing.mp4"), "--profile", "tiny", "-o", str(tmp_path / "r.html"))
    assert res.exit_code == 1
    assert res.stderr.count("\n") == 1 and "missing.mp4" in res.stderr and "no such file" in res.stderr
    assert not (tmp_path / "r.html").exists()
    (tmp_path / "taken.html").mkdir()  # the output is a folder: one line, no traceback
    res = cli("report", str(ferry), "--profile", "tiny", "-o", str(tmp_path / "taken.html"))
    assert res.exit_code == 1 and res.stderr.count("\n") == 1 and "taken.html" in res.stderr
    assert "cannot write the report" in res.stderr
    res = cli("ask", "--batch", str(tmp_path / "b.jsonl"), "--report", str(tmp_path / "r.html"))
    assert res.exit_code == 2 and "--report" in res.stderr


def test_region_box_drawn_over_its_keyframe():
    """A keyframe whose relevance came from a window of the frame shows that window as a box."""
    from PIL import Image

    from pipelines.report import ReportData, render_html

    buf = io.BytesIO()
    Image.new("RGB", (160, 90), (200, 30, 30)).save(buf, format="JPEG")
    kf = {"t": 2.0, "score": 1.5, "round": 1, "scene": 1, "pixels": 14400, "jpeg": buf.getvalue()}
    data = ReportData(video={"path": "v.mp4", "id": "abc"}, duration=4.0,
                      scenes=[{"scene": 1, "start": 0.0, "end": 4.0, "caption": None, "thumb": None}], lines=[],
                      question="Where is the red square?", keyframes=[{**kf, "region": [0.25, 0.0, 0.75, 1.0]},
                                                                      {**kf, "t": 3.0}])
    html = render_html(data, b"\x89PNG")
    assert html.count('class="region"') == 1
    assert 'style="left: 25.0%; top: 0.0%; width: 50.0%; height: 100.0%"' in html
    assert "close-up" not in html
    # the answer's close-up of that keyframe shows under it
    close = io.BytesIO()
    Image.new("RGB", (64, 72), (250, 0, 0)).save(close, format="JPEG")
    data.closeups = [{"keyframe": 1, "t": 2.0, "size": [64, 72], "jpeg": close.getvalue()}]
    html = render_html(data, b"\x89PNG")
    assert html.count('alt="close-up of keyframe 1"') == 1 and "(64×72 px of the source)" in html
    assert html.index('alt="keyframe at 00:02') < html.index("close-up of keyframe 1") < html.index('alt="keyframe at 00:03')


# -- headless Chromium over the DevTools protocol (on a pipe: no port, no extra package) -----------------

def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


class DevTools:
    """A minimal DevTools-protocol client over --remote-debugging-pipe (fd 3: commands, fd 4: replies)."""

    def __init__(self, binary: str, profile_dir: Path, log: Path):
        cmd_r, self._cmd_w = os.pipe()
        self._res_r, res_w = os.pipe()
        hi_cmd, hi_res = os.dup(cmd_r), os.dup(res_w)
        for fd in (cmd_r, res_w):
            os.close(fd)

        def child_fds() -> None:
            os.dup2(hi_cmd, 3)
            os.dup2(hi_res, 4)

        self.proc = subprocess.Popen(
            [binary, "--headless", "--no-sandbox", "--disable-gpu", "--remote-debugging-pipe", "--no-first-run",
             "--no-default-browser-check", f"--user-data-dir={profile_dir}", "--window-size=1280,900",
             "about:blank"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=open(log, "wb"),  # noqa: SIM115
            pass_fds=(3, 4), preexec_fn=child_fds)
        os.close(hi_cmd)
        os.close(hi_res)
        self._buf = b""
        self._next = 0
        self.events: list[dict] = []

    def send(self, method: str, params: dict | None = None, session: str | None = None,
             wait: float = 120.0) -> dict:
        self._next += 1
        msg = {"id": self._next, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        os.write(self._cmd_w, json.dumps(msg).encode() + b"\0")
        reply = self.wait_for(lambda m: m.get("id") == self._next, wait)
        assert "error" not in reply, (method, reply["error"])
        return reply.get("result", {})

    def wait_for(self, match, wait: float = 120.0) -> dict:
        for m in self.events:
            if "id" not in m and match(m):
                self.events.remove(m)
                return m
        deadline = time.monotonic() + wait  # a safety net against a hung browser, not a measurement
        while True:
            while b"\0" in self._buf:
                raw, self._buf = self._buf.split(b"\0", 1)
                m = json.loads(raw)
                if match(m):
                    return m
                if "id" not in m:
                    self.events.append(m)
            left = deadline - time.monotonic()
            ready, _, _ = select.select([self._res_r], [], [], max(left, 0))
            if not ready:
                raise TimeoutError("no reply from chromium")
            chunk = os.read(self._res_r, 1 << 20)
            if not chunk:
                raise RuntimeError("chromium closed the pipe")
            self._buf += chunk

    def close(self) -> None:
        try:
            os.write(self._cmd_w, json.dumps({"id": 0, "method": "Browser.close"}).encode() + b"\0")
            self.proc.wait(timeout=30)
        except (OSError, subprocess.TimeoutExpired):
            self.proc.kill()
            self.proc.wait()
        os.close(self._cmd_w)
        os.close(self._res_r)


PAGE_STATE = """JSON.stringify({
  images: Array.from(document.images).map(i => ({id: i.id, cls: i.className, complete: i.complete,
                                                  w: i.naturalWidth, h: i.naturalHeight})),
  links: Array.from(document.querySelectorAll('a[href^="#"]')).map(a => a.getAttribute('href').slice(1)),
  ids: Array.from(document.querySelectorAll('[id]')).map(e => e.id),
  height: document.documentElement.scrollHeight})"""


def test_report_opens_in_headless_chromium_offline(cli, ferry, tmp_path):
    from PIL import Image

    binary = _chromium()
    if binary is None:
        pytest.skip("chromium is not installed (CI installs Debian's package: apt-get install -y chromium)")
    out = tmp_path / "ferry.html"
    res = cli("report", str(ferry), QUESTION, "--profile", "tiny", "-o", str(out), "--option", "at noon",
              "--option", "at dawn")
    assert res.exit_code == 0, res.stderr
    plot_w, plot_h = Image.open(out.with_suffix(".png")).size
    n_keyframes = out.read_text().count('class="keyframe"')

    dt = DevTools(binary, tmp_path / "chromium-profile", tmp_path / "chromium.log")
    try:
        target = dt.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        sid = dt.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        for domain in ("Page", "Runtime", "Log", "Network"):
            dt.send(f"{domain}.enable", session=sid)
        dt.send("Network.emulateNetworkConditions", {"offline": True, "latency": 0, "downloadThroughput": -1,
                                                     "uploadThroughput": -1}, session=sid)
        dt.send("Page.navigate", {"url": out.as_uri()}, session=sid)
        dt.wait_for(lambda m: m.get("method") == "Page.loadEventFired" and m.get("sessionId") == sid)
        state = json.loads(dt.send("Runtime.evaluate", {"expression": PAGE_STATE, "returnByValue": True},
                                   session=sid)["result"]["value"])
        dt.send("Emulation.setDeviceMetricsOverride", {"width": 1280, "height": min(state["height"], 6000),
                                                       "deviceScaleFactor": 1, "mobile": False}, session=sid)
        shot = dt.send("Page.captureScreenshot", {"format": "png"}, session=sid)["data"]
        events = list(dt.events)
    finally:
        dt.close()

    mine = [e for e in events if e.get("sessionId") == sid]
    errors = [e for e in mine if e["method"] == "Runtime.exceptionThrown"
              or (e["method"] == "Runtime.consoleAPICalled" and e["params"]["type"] in ("error", "assert"))
              or (e["method"] == "Log.entryAdded" and e["params"]["entry"]["level"] == "error")]
    assert not errors, errors
    requests = [e["params"]["request"]["url"] for e in mine if e["method"] == "Network.requestWillBeSent"]
    assert requests and all(u.startswith(("file:", "data:")) for u in requests), requests

    images = state["images"]
    plot = [i for i in images if i["id"] == "plot-image"]
    assert len(plot) == 1 and plot[0]["complete"] and (plot[0]["w"], plot[0]["h"]) == (plot_w, plot_h)
    keyframes = [i for i in images if i["cls"] == "keyframe"]
    assert len(keyframes) == n_keyframes >= 1 and all(i["complete"] and i["w"] > 0 and i["h"] > 0 for i in keyframes)
    assert all(i["w"] > 0 for i in images)
    assert state["links"] and set(state["links"]) <= set(state["ids"])  # every in-page link has its target

    png = Image.open(io.BytesIO(base64.b64decode(shot))).convert("RGB")
    png.save(tmp_path / "screenshot.png")
    assert png.width == 1280 and png.height > 900
    grey = png.convert("L")
    lo, hi = grey.getextrema()
    assert hi - lo > 150  # not blank: dark text and images on a light page
    colours = png.getcolors(maxcolors=1 << 20)
    assert colours is None or len(colours) > 500
