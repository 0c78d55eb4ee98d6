"""The results file: JSON Lines, one line per (item id, method), fsynced as written; a retried pair's
later line replaces its earlier one. Reading tolerates a last line cut off by a kill."""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from pipelines.eval.items import (
    EvalDataError,
    EvalItem,
    duration_bucket,
    float_or_none,
    frame_index,
)
from pipelines.eval.metrics import is_correct, temporal_metrics


def scan(path: Path) -> tuple[list[dict], int]:
    """Complete lines and the byte length they span; a partial last line (killed mid-write) is left out."""
    data = path.read_bytes()
    records: list[dict] = []
    end = 0
    lines = data.split(b"\n")
    for n, raw in enumerate(lines):
        last = n == len(lines) - 1
        if last and raw == b"":
            break
        try:
            rec = json.loads(raw) if raw.strip() else None
        except (json.JSONDecodeError, UnicodeDecodeError):
            if last:
                break  # truncated by a kill: dropped, and cut off before the next append
            raise EvalDataError(f"line {n + 1} is not JSON; not a results file, or damaged", str(path)) from None
        if rec is not None and not (isinstance(rec, dict) and "id" in rec and "method" in rec):
            raise EvalDataError(f"line {n + 1} is not a result line (needs id and method)", str(path))
        if last:  # complete JSON without its newline: keep it, the newline is added before appending
            if rec is not None:
                records.append(rec)
            end = len(data)
            break
        if rec is not None:
            records.append(rec)
        end += len(raw) + 1
    return records, end


def read_results(path: str | os.PathLike) -> list[dict]:
    """Every complete line of a results file, in order (a truncated last line is ignored)."""
    p = Path(path)
    return scan(p)[0] if p.exists() else []


def latest_results(records: Iterable[Mapping]) -> dict[tuple[str, str], Mapping]:
    """The last line per (id, method): a retried item's success replaces its earlier error line."""
    out: dict[tuple[str, str], Mapping] = {}
    for r in records:
        out[(str(r["id"]), str(r["method"]))] = r
    return out


def jsonable(x: Any) -> Any:
    if isinstance(x, float):
        return x if math.isfinite(x) else None
    if isinstance(x, (str, int, bool)) or x is None:
        return x
    if isinstance(x, Mapping):
        return {str(k): jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [jsonable(v) for v in x]
    if hasattr(x, "tolist"):  # numpy scalars and arrays
        return jsonable(x.tolist())
    if isinstance(x, os.PathLike):
        return os.fspath(x)
    return str(x)


def _keyframes(raw: Any, fps: float | None) -> list[dict]:
    if not isinstance(raw, (list, tuple)):
        raise ValueError(f"runner result 'keyframes' must be a list, got {type(raw).__name__}")
    out = []
    for k in raw:
        kf = dict(k) if isinstance(k, Mapping) else {"t": k, "score": None}
        t = float_or_none(kf.get("t"))
        if t is None or t < 0:
            raise ValueError(f"keyframe time must be seconds >= 0, got {kf.get('t')!r}")
        kf["t"] = t
        kf.setdefault("score", None)
        if fps and kf.get("frame") is None:
            kf["frame"] = frame_index(t, fps)
        out.append(kf)
    return sorted(out, key=lambda k: k["t"])


def result_line(item: EvalItem, method: str, result: Any, delta: float) -> dict:
    base = _item_fields(item, method)
    if not isinstance(result, Mapping):
        raise ValueError(f"runner must return a dict, got {type(result).__name__}")
    if "keyframes" not in result:
        raise ValueError("runner result has no 'keyframes'")
    fps = float_or_none(result.get("fps")) or item.fps
    keyframes = _keyframes(result["keyframes"], fps)
    duration = float_or_none(result.get("duration")) or item.duration
    answer = result.get("answer")
    metrics = temporal_metrics([k["t"] for k in keyframes], item.evidence, delta)
    line = {**dict(result), **base}
    line.update({
        "fps": fps, "duration": duration,
        "duration_class": item.duration_class or duration_bucket(duration),
        "keyframes": keyframes, "answer": answer, "correct": is_correct(answer, item.answer, item.options),
        "frames_scored": result.get("frames_scored"), "timings": dict(result.get("timings") or {}),
        "settings": dict(result.get("settings") or {}),
        "delta": delta, "precision": metrics["precision"], "recall": metrics["recall"],
        "f1": metrics["f1"], "hit": metrics["hit"], "error": None,
    })
    return line


def _item_fields(item: EvalItem, method: str) -> dict:
    """What the benchmark says about the item, so that a result line reads on its own."""
    return {"id": item.id, "method": method, "video": item.video, "source_format": item.source_format,
            "question": item.question, "options": list(item.options), "gold": item.answer,
            "task_type": item.task_type, "published_duration": item.duration,
            "evidence": [list(iv) for iv in item.evidence], "evidence_fps": item.fps,
            "subtitle_file": item.subtitles}


def error_line(item: EvalItem, method: str, exc: BaseException) -> dict:
    return {**_item_fields(item, method), "duration_class": item.duration_class, "fps": item.fps,
            "error": f"{type(exc).__name__}: {exc}"}
