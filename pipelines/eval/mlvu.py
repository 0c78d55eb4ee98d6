"""MLVU dev, in its two published layouts.

- Task files (github.com/JUNJIE99/MLVU, MLVU/json/<n>_<task>.json as read by its choice_bench.py;
  videos in MLVU/video/<n>_<task>/): {video, duration (s), question, candidates [...], answer (the
  option TEXT), question_type}. 8_sub_scene and 9_summary have no candidates: open questions with a
  free-text answer.
- Mixed rows (the Hugging Face dev set lmms-eval reads, sy1998/MLVU_dev): {video_name, question (the
  options may follow on lines "(A) ..."), candidates, answer (a letter, or the option text),
  task_type, question_id?, duration?}.

Gold follows MLVU's own template (choice_bench.py ``qa_template``): the index of the candidate that
equals the answer, the LAST one when a candidate is repeated (["Six", "Three", "Three", "Eight"] with
answer "Three" is C). Records whose candidates and answer are all empty are skipped.
Videos: basenames repeat across task folders, so a record's video is looked up in its task's numbered
folder (video/1_plotQA/) first, found from the file name or, in a mixed file, from the task.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterator
from pathlib import Path

from pipelines.eval.files import ReadOptions, Row, Videos, bad, guard, read_json_records, read_records
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

TASK_FILE = "MLVU task file (json/<n>_<task>.json)"
ROWS = "MLVU dev rows (Hugging Face, video_name)"
_TASK_FILE = re.compile(r"^\d+_\w+\.json$")
_OPTION_LINE = re.compile(r"\n\s*\(?[A-J][).]\s")
# Short task codes (lmms-eval's, MLVU test's question ids) -> the task's folder name without its number.
TASK_NAMES = {"PQA": "plotQA", "NQA": "needle", "findNeedle": "needle", "ER": "ego", "AC": "count",
              "AO": "order", "AR": "anomaly_reco", "TR": "topic_reasoning", "SSC": "sub_scene",
              "VS": "summary"}


def layout(keys: set[str]) -> str | None:
    if "video_name" in keys and keys & {"candidates", "task_type"}:
        return ROWS
    return TASK_FILE if "candidates" in keys or "question_type" in keys else None


def task_files(p: Path) -> list[Path]:
    """The ``<n>_<task>.json`` files of an MLVU folder (or of its ``json/`` sub-folder)."""
    folder = p / "json" if (p / "json").is_dir() else p
    return sorted(f for f in folder.glob("*.json") if _TASK_FILE.match(f.name))


def gold_index(candidates: list, answer) -> int | None:
    """MLVU's template: the last candidate equal to the answer; else (spacing, case) the last that
    matches after normalising; None when none does."""
    exact = [i for i, c in enumerate(candidates) if c == answer]
    if exact:
        return exact[-1]
    norm = [i for i, c in enumerate(candidates) if norm_text(c) == norm_text(answer)]
    return norm[-1] if norm else None


@functools.lru_cache(maxsize=256)
def _task_dirs(roots: tuple[Path, ...], stem: str, task: str) -> list[str]:
    """Sub-folders to look in, best first: the file's own folder, the numbered folder of the task."""
    name = TASK_NAMES.get(task, task)
    numbered = sorted({f"{prefix}{d.name}" for root in roots for prefix, base in (("video/", root / "video"), ("", root))
                       if base.is_dir() for d in base.glob(f"[0-9]*_{name}") if d.is_dir()})
    return list(dict.fromkeys([stem, f"video/{stem}", *numbered, name, f"video/{name}", "", "video"]))


def _item(r: dict, qid: str, stem: str, videos: Videos) -> EvalItem:
    task = opt_str(r.get("question_type")) or opt_str(r.get("task_type")) or re.sub(r"^\d+_", "", stem)
    cands = list(r.get("candidates") or ())
    answer = r.get("answer")
    if cands and all(not str(c).strip() for c in cands) and not str(answer or "").strip():
        raise Skip("bad-record", f"all {len(cands)} candidates and the answer are empty")
    options = options_of(cands)
    if options:
        idx = gold_index(cands, answer) if answer is not None else None
        if idx is None and isinstance(answer, str) and re.fullmatch(r"\(?[A-J]\)?", answer.strip()):
            idx = LETTERS.index(answer.strip().strip("()"))  # the rows layout gives a letter
            if idx >= len(options):
                idx = None
        if idx is None:
            raise Skip("bad-answer", f"answer {answer!r} is not one of the candidates")
        answer = LETTERS[idx]
    question = text_of(r.get("question"), "question")
    if options:  # the rows layout repeats the options after the question: keep the question
        question = _OPTION_LINE.split(question, maxsplit=1)[0].strip() or question
    duration = float_or_none(r.get("duration"))
    name = opt_str(r.get("video")) or text_of(r.get("video_name"), "video")
    return EvalItem(
        id=qid, video=videos.find(name, _task_dirs(tuple(videos.roots), stem, task)),
        question=question, options=options, answer=opt_str(answer),
        task_type=task, duration_class=duration_bucket(duration), source_format="mlvu", duration=duration)


def read(path: Path, opts: ReadOptions) -> Iterator[Row]:
    files = task_files(path) if path.is_dir() else [path]
    if not files:
        raise EvalDataError("no MLVU task files (<n>_<task>.json) in this folder", str(path))
    pos = 0
    _task_dirs.cache_clear()  # folders as they are now
    for f in files:
        base = f.parent.parent if f.parent.name == "json" else f.parent
        videos = Videos(opts.video_roots(base, base / "video", f.parent))
        records = read_records(f) if f.suffix.lower() == ".parquet" else read_json_records(f)
        for i, r in enumerate(records):
            b = bad(r)
            if b:
                yield pos, None, b
            else:
                qid = opt_str(r.get("question_id")) or f"{f.stem}:{i}"
                yield pos, qid, guard(_item, r, qid, f.stem, videos)
            pos += 1
