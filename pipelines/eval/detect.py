"""``--format auto``: the layout of an annotation file (or folder) from its name and its first record's keys."""

from __future__ import annotations

import csv
import os
from pathlib import Path

from pipelines.eval.files import first_record, read_records
from pipelines.eval.items import EvalDataError
from pipelines.eval.mlvu import task_files


def sniff_format(path: str | os.PathLike) -> str:
    """Guess the layout of an annotation file (or folder) from its name and its first record's keys."""
    p = Path(path)
    if p.is_dir():
        if (p / "questions.json").is_file():
            return "egoschema"
        if task_files(p):
            return "mlvu"
        raise EvalDataError("cannot tell the benchmark of this folder (expected EgoSchema's questions.json "
                            "or MLVU's json/ files); pass --format", str(p))
    if p.name in ("questions.json", "subset_answers.json"):
        return "egoschema"
    if p.suffix.lower() == ".csv":
        with p.open(newline="", encoding="utf-8-sig") as f:
            header = set(next(csv.reader(f), []))
        if {"qid", "a0", "answer", "video"} <= header:
            return "nextqa"
        raise EvalDataError(f"unknown CSV layout (columns: {', '.join(sorted(header))}); pass --format", str(p))
    keys = set(first_record(read_records(p)))
    if "frame_indexes_video" in keys or {"frame_indexes", "video_metadata"} <= keys:
        return "lv-haystack"
    if "videoID" in keys or ("questions" in keys and keys & {"duration_category", "video_category"}):
        return "videomme"
    if {"question_id", "task_type", "options"} <= keys and "duration" in keys:
        return "videomme"
    if "correct_choice" in keys or {"candidates", "duration_group"} <= keys:
        return "longvideobench"
    if "candidates" in keys or "question_type" in keys:
        return "mlvu"
    if "q_uid" in keys:
        return "egoschema"
    if {"video", "question"} <= keys:
        return "native"
    raise EvalDataError(f"cannot tell the benchmark from the record keys ({', '.join(sorted(keys))}); "
                        "pass --format", str(p))
