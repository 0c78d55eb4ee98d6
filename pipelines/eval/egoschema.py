"""EgoSchema (github.com/egoschema/EgoSchema: questions.json [{q_uid, google_drive_id, question,
"option 0".."option 4"}], subset_answers.json {q_uid: index} for the 500-question public subset;
videos are <q_uid>.mp4). Questions outside the subset are reported as skipped (no-answer)."""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from pipelines.eval.files import Row, Videos, bad, guard, read_json_records, roots
from pipelines.eval.items import EvalDataError, EvalItem, Skip, letter_of_index, opt_str, options_of, text_of


def _item(r: dict, answers: Mapping[str, Any], videos: Videos) -> EvalItem:
    uid = text_of(r.get("q_uid"), "q_uid")
    gold = r.get("correct_answer", answers.get(uid))
    if gold is None:
        raise Skip("no-answer", "not in the public answer subset (subset_answers.json)")
    options = options_of(r[f"option {k}"] for k in range(5) if f"option {k}" in r)
    return EvalItem(
        id=uid, video=videos.find(uid, ("", "videos")), question=text_of(r.get("question"), "question"),
        options=options, answer=letter_of_index(gold, options), source_format="egoschema")


def read(path: Path, video_root) -> Iterator[Row]:
    folder = path if path.is_dir() else path.parent
    qfile = folder / "questions.json" if path.is_dir() or path.name == "subset_answers.json" else path
    afile = folder / "subset_answers.json"
    records = read_json_records(qfile)
    answers: Mapping[str, Any] = {}
    if afile.is_file():
        answers = json.loads(afile.read_text(encoding="utf-8"))
    elif not any(isinstance(r, dict) and "correct_answer" in r for r in records):
        raise EvalDataError("EgoSchema needs subset_answers.json next to questions.json", str(qfile))
    videos = Videos(roots(video_root, folder, folder / "videos"))
    for i, r in enumerate(records):
        b = bad(r)
        yield (i, None, b) if b else (i, opt_str(r.get("q_uid")), guard(_item, r, answers, videos))
