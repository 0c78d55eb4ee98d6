"""The report's figure, drawn with matplotlib (object API, Agg canvas: no pyplot state, no display).

Panels share one time axis: the relevance curve (with a question) with the index frames, each zoom
round's ranges and frames, the chosen keyframes and the cited times; the scenes; and the lanes of what
is said, written on screen and captioned.
"""

from __future__ import annotations

import io
import os

from pipelines.report.data import ReportData

ROUND_COLOURS = ["#e8871e", "#7b3fb5", "#1f9e89", "#c2185b"]
LANES = (("speech", "speech", "#2b6cb0"), ("screen", "on screen", "#b7791f"), ("caption", "captions", "#718096"))


def render_plot(data: ReportData, *, dpi: int = 110) -> bytes:
    """The figure as PNG bytes."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    has_curve = len(data.curve_times) > 0
    ratios = ([3.2] if has_curve else []) + [0.55, 1.0]
    fig = Figure(figsize=(12, 1.3 + 1.05 * sum(ratios)), dpi=dpi, layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(len(ratios), 1, sharex=True, gridspec_kw={"height_ratios": ratios})
    axes = list(axes) if len(ratios) > 1 else [axes]
    if has_curve:
        _curve(axes.pop(0), data)
    _scenes(axes[0], data)
    _lanes(axes[1], data)
    axes[1].set_xlim(0, max(data.duration, 1e-3))
    axes[1].set_xlabel("time (s)")
    title = os.path.basename(data.video["path"]) + (f"  —  “{data.question}”" if data.question else "")
    fig.suptitle(title, fontsize=10, x=0.01, ha="left")
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    return buf.getvalue()


def _curve(ax, data: ReportData) -> None:
    import numpy as np

    t, s = data.curve_times, data.curve_scores
    ax.plot(t, s, color="#4a5568", linewidth=1.0, zorder=2, label="relevance (all scored frames)")
    idx = np.isin(np.round(t, 3), np.round(data.index_times, 3))
    ax.scatter(t[idx], s[idx], s=12, color="#a0aec0", zorder=3, label="index frames")
    for i, r in enumerate(data.rounds):
        colour = ROUND_COLOURS[i % len(ROUND_COLOURS)]
        for j, (a, b) in enumerate(r.get("ranges", [])):
            ax.axvspan(a, b, color=colour, alpha=0.10, zorder=1,
                       label=f"zoom round {r['round']} ranges" if j == 0 else None)
        pts = [(x, y) for x, y in zip(r["times"], r["scores"]) if y is not None]
        if pts:
            xs, ys = zip(*pts)
            ax.scatter(xs, ys, s=16, marker="D", color=colour, zorder=4,
                       label=f"zoom round {r['round']} frames ({r.get('fps')} fps)")
    if data.keyframes:
        ax.scatter([k["t"] for k in data.keyframes], [k["score"] for k in data.keyframes], s=140, marker="*",
                   color="#e53e3e", edgecolor="black", linewidth=0.5, zorder=5, label="chosen keyframes")
        for n, k in enumerate(data.keyframes, 1):
            ax.annotate(str(n), (k["t"], k["score"]), textcoords="offset points", xytext=(0, 8), ha="center",
                        fontsize=8, zorder=6)
    for j, c in enumerate((data.answer or {}).get("answer", {}).get("cited") or []):
        ax.axvline(c, color="#2f855a", linestyle="--", linewidth=1.2, zorder=2,
                   label="cited by the answer" if j == 0 else None)
    ax.set_ylabel("relevance (z)")
    ax.grid(True, axis="y", alpha=0.3)
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8, frameon=False)


def _scenes(ax, data: ReportData) -> None:
    colours = ["#cbd5e0", "#e2e8f0"]
    spans = [(s["start"], max(s["end"] - s["start"], 1e-3)) for s in data.scenes]
    ax.broken_barh(spans, (0, 1), facecolors=[colours[i % 2] for i in range(len(spans))], edgecolor="#718096")
    for s in data.scenes:
        ax.text((s["start"] + s["end"]) / 2, 0.5, str(s["scene"]), ha="center", va="center", fontsize=8)
    ax.set_yticks([0.5], ["scenes"])
    ax.set_ylim(0, 1)


def _lanes(ax, data: ReportData) -> None:
    for row, (source, _label, colour) in enumerate(LANES):
        spans = [(ln["start"], max(ln["end"] - ln["start"], 0.05)) for ln in data.lines if ln["source"] == source]
        if spans:
            ax.broken_barh(spans, (row + 0.15, 0.7), facecolors=colour, edgecolor="white", linewidth=1.0,
                          alpha=0.75)
    ax.set_yticks([r + 0.5 for r in range(len(LANES))], [label for _, label, _ in LANES])
    ax.set_ylim(0, len(LANES))
    ax.invert_yaxis()
    ax.grid(True, axis="x", alpha=0.3)
