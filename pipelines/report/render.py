"""The report as one self-contained HTML file (Jinja2), with the figure also written as PNG beside it."""

from __future__ import annotations

import base64
import json
import os
import time
from pathlib import Path

from pipelines.report.data import ReportData
from pipelines.report.plot import render_plot
from pipelines.report.template import TEMPLATE

NEAR_S = 2.0  # a line or a citation this close to a keyframe belongs to it


def fmt_t(t: float) -> str:
    m, s = divmod(float(t), 60)
    h, m = divmod(int(m), 60)
    return f"{h}:{m:02d}:{s:05.2f}" if h else f"{m:02d}:{s:05.2f}"


def _uri(data: bytes | None, mime: str) -> str | None:
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}" if data else None


def shown_path(path: str) -> str:
    """The video's path as the user would type it here: relative under the current folder."""
    rel = os.path.relpath(path)
    return path if rel.startswith("..") or os.path.isabs(rel) else rel


def _pct(t: float, duration: float) -> float:
    return round(100.0 * min(max(t, 0.0), duration) / duration, 3) if duration > 0 else 0.0


def _box(region) -> dict | None:
    """A keyframe's matching window (fractions x0, y0, x1, y1) as CSS percentages over its image."""
    if not region:
        return None
    x0, y0, x1, y1 = (min(max(float(v), 0.0), 1.0) for v in region)
    return {"left": round(100 * x0, 2), "top": round(100 * y0, 2), "width": round(100 * (x1 - x0), 2),
            "height": round(100 * (y1 - y0), 2)}


def render_html(data: ReportData, plot_png: bytes) -> str:
    import jinja2

    d = max(data.duration, 1e-3)
    kfs = [{"n": n, "id": f"kf-{n}", "t": k["t"], "fmt": fmt_t(k["t"]), "score": k["score"], "round": k.get("round"),
            "scene": k.get("scene"), "pixels": k.get("pixels"), "uri": _uri(k["jpeg"], "image/jpeg"), "closeup": None,
            "left": _pct(k["t"], d), "region": _box(k.get("region"))} for n, k in enumerate(data.keyframes, 1)]
    for c in data.closeups:  # each close-up under the keyframe it enlarges
        if 1 <= c["keyframe"] <= len(kfs):
            kfs[c["keyframe"] - 1]["closeup"] = {"uri": _uri(c["jpeg"], "image/jpeg"), "size": c.get("size")}
    lines = []
    for i, ln in enumerate(data.lines):
        near = any(ln["start"] - NEAR_S <= k["t"] <= ln["end"] + NEAR_S for k in kfs)
        lines.append({**ln, "id": f"line-{i}", "near": near, "fmt": f"{fmt_t(ln['start'])}–{fmt_t(ln['end'])}",
                      "left": _pct(ln["start"], d), "width": max(_pct(ln["end"], d) - _pct(ln["start"], d), 0.4)})
    scenes = [{**s, "fmt": f"{fmt_t(s['start'])}–{fmt_t(s['end'])}", "uri": _uri(s.get("thumb"), "image/jpeg"),
               "left": _pct(s["start"], d), "width": max(_pct(s["end"], d) - _pct(s["start"], d), 0.2)}
              for s in data.scenes]
    ans = (data.answer or {}).get("answer") or {}
    head = f"{ans['choice']}. {ans['choice_text']}" if ans.get("choice") else (ans.get("text") or "").strip()
    said = ans.get("text", "").strip() if ans.get("choice") and ans.get("text", "").strip() not in (
        ans.get("choice"), head) else None
    env = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined)
    return env.from_string(TEMPLATE).render(
        video_name=os.path.basename(data.video["path"]), video_path=shown_path(data.video["path"]),
        video_id=data.video.get("id") or "", duration_fmt=fmt_t(data.duration),
        created=time.strftime("%Y-%m-%d %H:%M", time.localtime(data.created)),
        notes=_notes(data), question=data.question, options=data.options, answer_head=head, answer_said=said,
        citations=[{"fmt": fmt_t(c), "href": _cite_href(c, kfs, lines)} for c in ans.get("cited") or []],
        plot_uri=_uri(plot_png, "image/png"), rounds=data.rounds, keyframes=kfs, scenes=scenes, lines=lines,
        ticks=[{"left": p, "fmt": fmt_t(d * p / 100)} for p in (0, 20, 40, 60, 80, 100)],
        settings_json=json.dumps(_settings(data), indent=2, ensure_ascii=False, default=str))


def _cite_href(t: float, kfs: list[dict], lines: list[dict]) -> str:
    """A cited time links to the nearest keyframe, else to the line that holds it, else to the timeline."""
    if kfs:
        k = min(kfs, key=lambda k: abs(k["t"] - t))
        if abs(k["t"] - t) <= NEAR_S:
            return f"#{k['id']}"
    for ln in lines:
        if ln["start"] - 0.5 <= t <= ln["end"] + 0.5:
            return f"#{ln['id']}"
    return "#timeline"


def _notes(data: ReportData) -> list[str]:
    models = (data.settings or {}).get("models") or {}
    random = sorted(k for k, m in models.items() if isinstance(m, dict) and m.get("random_weights"))
    if "answerer" in random:
        return [f"Random-weight models ({', '.join(random)}): this answer means nothing."]
    if random:
        return [f"{' and '.join(random)} have random weights: keyframes are not chosen by what the frames show "
                "(speech and on-screen text still count)."]
    return []


def _settings(data: ReportData) -> dict:
    out = {"settings": data.settings}
    if data.answer:
        for key in ("subqueries", "timings", "trace"):
            out[key] = data.answer.get(key)
    return out


def write_report(data: ReportData, out: str | Path) -> tuple[Path, Path]:
    """Write ``out`` (HTML) and the figure beside it (same name, ``.png``); returns both paths."""
    from pipelines.errors import VqaError

    out = Path(out)
    png = render_plot(data)
    html = render_html(data, png)
    png_path = out.with_suffix(".png")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        png_path.write_bytes(png)
        out.write_text(html, encoding="utf-8")
    except OSError as e:
        raise VqaError(f"cannot write the report ({e.strerror or e})", str(e.filename or out)) from None
    return out, png_path
