"""Which published layout a file is in: ``--format auto``, and the one-line diagnosis of a wrong
``--format`` ("looks like Video-MME flat rows (Hugging Face), not NExT-QA CSV")."""

from __future__ import annotations

import csv
import os
from collections.abc import Callable
from pathlib import Path

from pipelines.eval import egoschema, longvideobench, lvhaystack, mlvu, native, nextqa, videomme
from pipelines.eval.files import first_record, read_json_records, read_records
from pipelines.eval.items import EvalDataError

# In the order --format auto tries them: the most specific keys first, vqa's own layout last.
LAYOUTS: dict[str, Callable[[set[str]], str | None]] = {
    "lv-haystack": lvhaystack.layout, "videomme": videomme.layout, "longvideobench": longvideobench.layout,
    "mlvu": mlvu.layout, "egoschema": egoschema.layout, "native": native.layout,
}
NAMES = {
    "native": native.LABEL, "lv-haystack": "LV-Haystack", "videomme": "Video-MME", "mlvu": "MLVU",
    "longvideobench": "LongVideoBench", "egoschema": "EgoSchema", "nextqa": nextqa.LABEL,
}


def _is_json(p: Path) -> bool:
    head = p.read_bytes()[:256].lstrip(b"\xef\xbb\xbf \t\r\n")
    return head[:1] in (b"{", b"[")


# A benchmark folder whose annotations are one file in a known place (as the benchmark ships it).
FOLDER_FILES = ("lvb_val.json", "videomme/test-00000-of-00001.parquet")


def folder_file(p: Path) -> Path:
    """The annotation file of a LongVideoBench or Video-MME folder; other paths as they are."""
    if p.is_dir():
        for name in FOLDER_FILES:
            if (p / name).is_file():
                return p / name
    return p


def layouts_of(path: str | os.PathLike) -> list[tuple[str, str]]:
    """Every (format, layout label) the file or folder matches, best first; [] when none."""
    p = folder_file(Path(path))
    if p.is_dir():
        if (p / "questions.json").is_file():
            return [("egoschema", egoschema.OFFICIAL)]
        if mlvu.task_files(p):
            return [("mlvu", "MLVU folder (json/<n>_<task>.json)")]
        return []
    if p.name in ("questions.json", "subset_answers.json"):
        return [("egoschema", egoschema.OFFICIAL)]
    if p.suffix.lower() == ".csv" and not _is_json(p):
        with p.open(newline="", encoding="utf-8-sig") as f:
            header = set(next(csv.reader(f), []))
        label = nextqa.layout_of_header(header)
        return [("nextqa", label)] if label else []
    records = read_json_records(p) if p.suffix.lower() == ".csv" else read_records(p)  # JSON named .csv
    keys = set(first_record(records))
    return [(fmt, label) for fmt, match in LAYOUTS.items() if (label := match(keys))]


def _keys_text(p: Path) -> str:
    if p.is_dir():
        return "expected EgoSchema's questions.json or MLVU's json/ files"
    if p.suffix.lower() == ".csv" and not _is_json(p):
        with p.open(newline="", encoding="utf-8-sig") as f:
            return "columns: " + ", ".join(sorted(next(csv.reader(f), [])))
    records = read_json_records(p) if p.suffix.lower() == ".csv" else read_records(p)
    return "record keys: " + ", ".join(sorted(first_record(records)))


def sniff_format(path: str | os.PathLike) -> str:
    """The format of an annotation file (or folder), from its name and its first record's keys."""
    p = Path(path)
    found = layouts_of(p)
    if not found:
        what = "this folder" if p.is_dir() else "this file"
        raise EvalDataError(f"cannot tell the benchmark of {what} ({_keys_text(p)}); pass --format", str(p))
    return found[0][0]


def check_format(path: str | os.PathLike, fmt: str) -> None:
    """Refuse, in one line, a file that is in another benchmark's layout than ``fmt`` says. A file in
    no known layout is left to the reader (its records are skipped with their reasons)."""
    p = Path(path)
    found = layouts_of(p)
    if not found or fmt in {f for f, _ in found}:
        return
    other, label = found[0]
    raise EvalDataError(f"looks like {label}, not {NAMES[fmt]} (pass --format {other}, or --format auto)", str(p))
