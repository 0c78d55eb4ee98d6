"""`vqa report`: one self-contained HTML file that shows how a video was indexed and how a question
about it was answered (relevance curve, zoom rounds, keyframes, aligned text, citations, settings)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pipelines.report.data import ReportData, ask_for_report, base_report, build_report
from pipelines.report.render import render_html, write_report

__all__ = ["ReportData", "ask_for_report", "ask_with_report", "base_report", "build_report", "render_html",
           "write_report"]


def ask_with_report(asker: Any, ref: str, question: str, options: list[str], out: str | Path, *,
                    save_frames: str | None = None) -> dict:
    """`vqa ask … --report FILE`: the answer (as `Asker.ask` returns it) and its report written to ``out``
    (the answer gains ``report`` and ``report_plot``: the paths written)."""
    result, data = ask_for_report(asker, ref, question, options, save_frames=save_frames)
    html, png = write_report(data, out)
    return {**result, "report": str(html), "report_plot": str(png)}
