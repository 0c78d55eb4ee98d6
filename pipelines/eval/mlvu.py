"""MLVU dev (github.com/JUNJIE99/MLVU, MLVU/json/<n>_<task>.json as read by its choice_bench.py;
videos in MLVU/video/<n>_<task>/): {video, duration (s), question, candidates [...], answer (the
option TEXT), question_type}. Basenames repeat across task folders, so each file's videos are looked
up in the folder named after the file first. 8_sub_scene and 9_summary have no candidates: open
questions with a free-text answer."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

from pipelines.eval.files import Row, Videos, bad, guard, read_json_records, roots
from pipelines.eval.items import (
    LETTERS,
    EvalDataError,
    EvalItem,
    Skip,
    duration_bucket,
    float_or_none,
    norm_text,
    opt_str,
    options_of,
    text_of,
)

_TASK_FILE = re.compile(r"^\d+_\w+\.json$")


def task_files(p: Path) -> list[Path]:
    """The ``<n>_<task>.json`` files of an MLVU folder (or of its ``json/`` sub-folder)."""
    folder = p / "json" if (p / "json").is_dir() else p
    return sorted(f for f in folder.glob("*.json") if _TASK_FILE.match(f.name))


def _item(r: dict, qid: str, stem: str, videos: Videos) -> EvalItem:
    task = opt_str(r.get("question_type")) or re.sub(r"^\d+_", "", stem)
    options = options_of(r.get("candidates") or ())
    answer = r.get("answer")
    if options:
        norm = [norm_text(o) for o in options]
        if answer is None or norm_text(answer) not in norm:
            raise Skip("bad-answer", f"answer {answer!r} is not one of the candidates")
        answer = LETTERS[norm.index(norm_text(answer))]
    duration = float_or_none(r.get("duration"))
    subdirs = (stem, f"video/{stem}", task, f"video/{task}", "", "video")
    return EvalItem(
        id=qid, video=videos.find(text_of(r.get("video"), "video"), subdirs),
        question=text_of(r.get("question"), "question"), options=options, answer=opt_str(answer),
        task_type=task, duration_class=duration_bucket(duration), source_format="mlvu", duration=duration)


def read(path: Path, video_root) -> Iterator[Row]:
    files = task_files(path) if path.is_dir() else [path]
    if not files:
        raise EvalDataError("no MLVU task files (<n>_<task>.json) in this folder", str(path))
    pos = 0
    for f in files:
        base = f.parent.parent if f.parent.name == "json" else f.parent
        videos = Videos(roots(video_root, base / "video", base, f.parent))
        for i, r in enumerate(read_json_records(f)):
            b = bad(r)
            if b:
                yield pos, None, b
            else:
                qid = opt_str(r.get("question_id")) or f"{f.stem}:{i}"
                yield pos, qid, guard(_item, r, qid, f.stem, videos)
            pos += 1
