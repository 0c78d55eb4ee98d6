"""EgoSchema, in its two published layouts.

- The official folder (github.com/egoschema/EgoSchema): questions.json [{q_uid, google_drive_id,
  question, "option 0".."option 4"}] and subset_answers.json {q_uid: index} for the 500-question public
  subset; videos <q_uid>.mp4. Questions outside the subset are skipped (no-answer).
- Rows of the Hugging Face copy lmms-eval reads (lmms-lab/egoschema, configs MC and Subset):
  {question_idx, question, video_idx, option ["A. ...", ... 5], answer "3" (a string holding the
  0-based index; empty where unpublished)}; videos videos/<video_idx>.mp4.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from pipelines.eval.files import ReadOptions, Row, Videos, bad, first_record, guard, read_records
from pipelines.eval.items import EvalDataError, EvalItem, Skip, letter_of_index, opt_str, options_of, text_of

OFFICIAL = "EgoSchema questions.json"
ROWS = "EgoSchema rows (Hugging Face: video_idx, option)"


def layout(keys: set[str]) -> str | None:
    if "q_uid" in keys:
        return OFFICIAL
    return ROWS if {"video_idx", "option"} <= keys else None


def _official_item(r: dict, answers: Mapping[str, Any], videos: Videos) -> EvalItem:
    uid = text_of(r.get("q_uid"), "q_uid")
    gold = r.get("correct_answer", answers.get(uid))
    if gold is None:
        raise Skip("no-answer", "not in the public answer subset (subset_answers.json)")
    options = options_of(r[f"option {k}"] for k in range(5) if f"option {k}" in r)
    return EvalItem(
        id=uid, video=videos.find(uid, ("", "videos")), question=text_of(r.get("question"), "question"),
        options=options, answer=letter_of_index(gold, options), source_format="egoschema")


def _row_item(r: dict, videos: Videos) -> EvalItem:
    uid = text_of(r.get("video_idx"), "video_idx")
    gold = opt_str(r.get("answer"))
    if gold is None:
        raise Skip("no-answer", "no published answer (the MC set's answers are not public; use the Subset)")
    raw = r.get("option")
    if not isinstance(raw, (list, tuple)):
        raise Skip("bad-record", f"option {raw!r} is not a list of options")
    options = options_of(raw)
    return EvalItem(
        id=uid, video=videos.find(uid, ("", "videos")), question=text_of(r.get("question"), "question"),
        options=options, answer=letter_of_index(gold, options), source_format="egoschema")


def read(path: Path, opts: ReadOptions) -> Iterator[Row]:
    folder = path if path.is_dir() else path.parent
    qfile = folder / "questions.json" if path.is_dir() or path.name == "subset_answers.json" else path
    records = read_records(qfile)
    videos = Videos(opts.video_roots(folder, folder / "videos", folder.parent / "videos"))
    if layout(set(first_record(records))) == ROWS:
        for i, r in enumerate(records):
            b = bad(r)
            yield (i, None, b) if b else (i, opt_str(r.get("video_idx")), guard(_row_item, r, videos))
        return
    afile = folder / "subset_answers.json"
    answers: Mapping[str, Any] = {}
    if afile.is_file():
        answers = json.loads(afile.read_text(encoding="utf-8"))
    elif not any(isinstance(r, dict) and "correct_answer" in r for r in records):
        raise EvalDataError(f"{qfile.name} has no answers, and subset_answers.json (the public answers of "
                            f"500 questions) is not in {folder}", str(qfile))
    for i, r in enumerate(records):
        b = bad(r)
        yield (i, None, b) if b else (i, opt_str(r.get("q_uid")), guard(_official_item, r, answers, videos))
