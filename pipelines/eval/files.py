"""Reading annotation files (JSON, JSON Lines, CSV, Parquet) and finding the video file of a record.

Each layout module reads records with :func:`read_records` and yields :data:`Row` s: (record position,
id or None, :class:`EvalItem` or :class:`Skip`).
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from pipelines.eval.items import EvalDataError, EvalItem, Skip
from pipelines.stages.media import VIDEO_EXTENSIONS

_EXT_ORDER = (".mp4", ".mkv", ".webm", ".mov", ".avi", ".m4v") + tuple(
    sorted(VIDEO_EXTENSIONS - {".mp4", ".mkv", ".webm", ".mov", ".avi", ".m4v"}))

# What each layout's reader yields: (record position, id or None, EvalItem or Skip).
Row = tuple[int, "str | None", "EvalItem | Skip"]


def read_json_records(path: Path) -> list[Any]:
    """A JSON list of records, a column-oriented JSON object (lists of equal length, as the
    `datasets` library writes with ``to_json(orient="columns")``), or JSON Lines."""
    text = path.read_text(encoding="utf-8-sig")
    if path.suffix.lower() in (".jsonl", ".ndjson"):
        return parse_lines(text)
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        return parse_lines(text)  # JSON Lines saved as .json
    if isinstance(data, list):
        return data
    if isinstance(data, dict):
        values = list(data.values())
        if values and all(isinstance(v, list) for v in values) and len({len(v) for v in values}) == 1:
            keys = list(data)
            return [{k: data[k][i] for k in keys} for i in range(len(values[0]))]
        lists = [v for v in values if isinstance(v, list)]
        if len(lists) == 1:  # {"data": [...]} and the like
            return lists[0]
    raise EvalDataError("expected a JSON list of records (or JSON Lines)", str(path))


class BadLine:
    """A line of a JSON Lines file that is not JSON (reported as a bad-record skip)."""

    def __init__(self, lineno: int, message: str):
        self.lineno = lineno
        self.message = message


def parse_lines(text: str) -> list[Any]:
    out: list[Any] = []
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError as e:
            out.append(BadLine(lineno, f"line {lineno}: not JSON ({e.msg})"))
    return out


def read_parquet(path: Path) -> list[dict]:
    try:
        import pyarrow.parquet as pq  # optional: the HF releases of Video-MME and LongVideoBench
    except ImportError as e:
        raise EvalDataError("reading Parquet needs pyarrow (pip install pyarrow), or convert the "
                            "file to JSON Lines first", str(path)) from e
    return pq.read_table(path).to_pylist()


def read_records(path: Path) -> list[Any]:
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        return read_parquet(path)
    if suffix == ".csv":
        with path.open(newline="", encoding="utf-8-sig") as f:
            return list(csv.DictReader(f))
    return read_json_records(path)


def first_record(records: Sequence[Any]) -> dict:
    for r in records:
        if isinstance(r, dict):
            return r
    return {}


# --------------------------------------------------------------------------------------------------
# Finding the video file of a record


class Videos:
    """Looks a record's video name up under the roots, in the layout's usual sub-folders."""

    def __init__(self, roots: Sequence[Path]):
        self.roots = [r for r in roots if r is not None]

    def find(self, name: str, subdirs: Sequence[str] = ("",)) -> str:
        raw = Path(os.path.expanduser(str(name).strip()))
        if raw.is_absolute():
            if raw.is_file():
                return os.path.abspath(raw)
            raw = Path(raw.name)  # a path from the annotator's machine: look for its file name here
        tried: list[str] = []
        for root in self.roots:
            for sub in subdirs:
                base = root / sub / raw if sub else root / raw
                if base.suffix.lower() in VIDEO_EXTENSIONS:
                    candidates = [base]
                else:  # a bare id: try the usual extensions
                    candidates = [base.with_name(base.name + ext) for ext in _EXT_ORDER]
                for c in candidates:
                    if c.is_file():
                        return os.path.abspath(c)
                tried.append(str(base))
        shown = ", ".join(tried[:4]) + (f" (+{len(tried) - 4} more)" if len(tried) > 4 else "")
        raise Skip("video-not-found", f"no video file for {name!r} (looked for {shown})")


def roots(video_root: str | os.PathLike | None, *defaults: Path) -> list[Path]:
    if video_root is not None:
        root = Path(os.path.expanduser(str(video_root)))
        if not root.is_dir():
            raise EvalDataError("video root is not a folder", str(root))
        return [root]
    return list(dict.fromkeys(defaults))


def guard(build: Callable[..., EvalItem], *args: Any) -> EvalItem | Skip:
    try:
        return build(*args)
    except Skip as s:
        return s


def bad(r: Any) -> Skip | None:
    if isinstance(r, BadLine):
        return Skip("bad-record", r.message)
    if not isinstance(r, dict):
        return Skip("bad-record", f"record is a {type(r).__name__}, not an object")
    return None
