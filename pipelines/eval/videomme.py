"""Video-MME (huggingface.co/datasets/lmms-lab/Video-MME rows, as read by lmms-eval
lmms_eval/tasks/videomme/utils.py): video_id "001", duration short|medium|long, domain, sub_category,
url, videoID (the YouTube id; files are <videoID>.mp4 under data/), question_id "001-1", task_type,
question, options ["A. ...", ...], answer "A". Also the nested layout of the official repository
(github.com/BradyFU/Video-MME evaluation/output_test_template.json): {video_id, duration_category,
video_category, video_subcategory, questions: [{question_id, task_type, question, choices, answer}]}."""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from pipelines.eval.files import Row, Videos, bad, guard, read_records, roots
from pipelines.eval.items import EvalItem, duration_bucket, gold_letter, opt_str, options_of, text_of

_YOUTUBE = re.compile(r"(?:v=|youtu\.be/)([\w-]{6,})")


def _rows(records: Sequence[Any]) -> Iterator[Any]:
    for r in records:
        if isinstance(r, dict) and isinstance(r.get("questions"), list):
            parent = {k: v for k, v in r.items() if k != "questions"}
            for q in r["questions"]:
                yield {**parent, **q} if isinstance(q, dict) else q
        else:
            yield r


def _item(r: dict, videos: Videos) -> EvalItem:
    name = opt_str(r.get("videoID"))
    if not name and r.get("url"):
        m = _YOUTUBE.search(str(r["url"]))
        name = m.group(1) if m else None
    name = name or text_of(r.get("video_id"), "videoID")
    options = options_of(r.get("options") or r.get("choices") or ())
    answer = r.get("answer")
    dclass = r.get("duration") or r.get("duration_category")
    if isinstance(dclass, (int, float)):  # some exports give seconds instead of the class
        dclass = duration_bucket(float(dclass))
    dclass = opt_str(dclass)
    return EvalItem(
        id=text_of(r.get("question_id"), "question_id"), video=videos.find(name, ("", "data", "video", "videos")),
        question=text_of(r.get("question"), "question"), options=options,
        answer=gold_letter(answer, options) if answer not in (None, "") else None,
        task_type=opt_str(r.get("task_type")), duration_class=dclass.lower() if dclass else None,
        source_format="videomme")


def read(path: Path, video_root) -> Iterator[Row]:
    videos = Videos(roots(video_root, path.parent, path.parent.parent))
    for i, r in enumerate(_rows(read_records(path))):
        b = bad(r)
        yield (i, None, b) if b else (i, opt_str(r.get("question_id")), guard(_item, r, videos))
