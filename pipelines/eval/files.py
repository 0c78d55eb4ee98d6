"""Reading annotation files (JSON, JSON Lines, CSV, Parquet) and finding the video file of a record.

Each layout module reads records with :func:`read_records` and yields :data:`Row` s: (record position,
id or None, :class:`EvalItem` or :class:`Skip`).
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipelines.eval.items import EvalDataError, EvalItem, Skip
from pipelines.stages.media import VIDEO_EXTENSIONS

_EXT_ORDER = (".mp4", ".mkv", ".webm", ".mov", ".avi", ".m4v") + tuple(
    sorted(VIDEO_EXTENSIONS - {".mp4", ".mkv", ".webm", ".mov", ".avi", ".m4v"}))

# What each layout's reader yields: (record position, id or None, EvalItem or Skip).
Row = tuple[int, "str | None", "EvalItem | Skip"]


@dataclass(frozen=True)
class ReadOptions:
    """Where a reader looks besides the annotation file's folder."""

    video_root: Path | None = None  # the videos (default: next to the file, in the layout's usual folders)
    subtitles_root: Path | None = None  # the benchmark's subtitle files (default: its usual folder)
    subtitles: bool = True  # False: the "without subtitles" setting (no subtitle file is looked up)

    def video_roots(self, *defaults: Path) -> list[Path]:
        return roots(self.video_root, *defaults)

    def subtitle_roots(self, *defaults: Path) -> list[Path]:
        if self.subtitles_root is not None:
            return [self.subtitles_root]
        return list(dict.fromkeys([*defaults, *([self.video_root] if self.video_root else [])]))


def strip_trailing_commas(text: str) -> str:
    """``[1, 2,]`` -> ``[1, 2]`` outside strings (Video-MME's official template has such commas)."""
    out: list[str] = []
    in_str = esc = False
    pending = -1  # index in out of a comma that may be trailing
    for ch in text:
        if in_str:
            if esc:
                esc = False
            elif ch == "\\":
                esc = True
            elif ch == '"':
                in_str = False
            out.append(ch)
            continue
        if ch in "}]" and pending >= 0:
            out[pending] = ""
        if ch == '"':
            in_str = True
        if not ch.isspace():
            pending = len(out) if ch == "," else -1
        out.append(ch)
    return "".join(out)


def _first_line_is_json(text: str) -> bool:
    for line in text.splitlines():
        if line.strip():
            try:
                json.loads(line)
            except json.JSONDecodeError:
                return False
            return True
    return False


def read_json_records(path: Path) -> list[Any]:
    """A JSON list of records, a column-oriented JSON object (lists of equal length, as the
    `datasets` library writes with ``to_json(orient="columns")``), or JSON Lines. A JSON document with
    trailing commas is read as if they were not there; any other syntax error names its line."""
    text = path.read_text(encoding="utf-8-sig")
    if path.suffix.lower() in (".jsonl", ".ndjson"):
        return parse_lines(text)
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        if _first_line_is_json(text):
            return parse_lines(text)  # JSON Lines saved as .json
        try:
            data = json.loads(strip_trailing_commas(text))
        except json.JSONDecodeError as e2:  # the first error that is not a trailing comma (same lines)
            raise EvalDataError(f"not valid JSON: {e2.msg} at line {e2.lineno}, column {e2.colno}",
                                str(path)) from None
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
        if len(text.strip().splitlines()) == 1:  # JSON Lines of one record
            return [data]
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

    def find(self, name: str, subdirs: Sequence[str] = ("",), *, hint: str = "") -> str:
        """The first existing file for ``name`` under a root and sub-folder; a bare id gets the usual
        video extensions. Not found: a ``video-not-found`` skip naming what was tried (and ``hint``)."""
        return self.find_any([name], subdirs, hint=hint)

    def find_any(self, names: Sequence[str], subdirs: Sequence[str] = ("",), *, hint: str = "") -> str:
        tried: list[str] = []
        for name in dict.fromkeys(names):
            raw = Path(os.path.expanduser(str(name).strip()))
            if raw.is_absolute():
                if raw.is_file():
                    return os.path.abspath(raw)
                raw = Path(raw.name)  # a path from the annotator's machine: look for its file name here
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
        what = " or ".join(repr(str(n)) for n in dict.fromkeys(names))
        raise Skip("video-not-found", f"no video file for {what} (looked for {shown}){hint}")


def find_file(roots_: Sequence[Path], names: Sequence[str], subdirs: Sequence[str] = ("",)) -> str | None:
    """The first existing ``root/sub/name`` (absolute), or None: for side files such as subtitles."""
    for name in names:
        for root in roots_:
            for sub in subdirs:
                p = root / sub / name if sub else root / name
                if p.is_file():
                    return os.path.abspath(p)
    return None


_FPS: dict[str, float | None] = {}


def native_fps(video: str) -> float | None:
    """The frame rate of a video file as ffmpeg reads it (remembered per path), None when unreadable."""
    if video not in _FPS:
        from pipelines.errors import VqaError
        from pipelines.stages.media import probe

        try:
            fps = float(probe(video).fps)
        except (VqaError, OSError, ValueError, TypeError):
            fps = None
        _FPS[video] = fps if fps and fps > 0 else None
    return _FPS[video]


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
