"""vqa's own layout, JSON Lines: {id, video, question, options?, answer, evidence?, task_type?,
duration_class?, duration?, fps?}; answer is a letter, an option's text or an index for multiple choice,
else free text; evidence is ``[start, end]`` or a list of them, in seconds."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from pipelines.eval.files import Row, Videos, bad, guard, read_json_records, roots
from pipelines.eval.items import (
    EvalItem,
    duration_bucket,
    float_or_none,
    gold_letter,
    opt_str,
    options_of,
    parse_evidence,
    text_of,
)


def _item(r: dict, videos: Videos) -> EvalItem:
    options = options_of(r.get("options") or ())
    answer = r.get("answer")
    if isinstance(answer, str) and not answer.strip():
        answer = None  # an empty gold answer means "not graded", not "the empty string is right"
    if answer is not None:
        answer = gold_letter(answer, options) if options else str(answer)
    duration = float_or_none(r.get("duration"))
    return EvalItem(
        id=text_of(r.get("id"), "id"), video=videos.find(text_of(r.get("video"), "video")),
        question=text_of(r.get("question"), "question"), options=options, answer=answer,
        evidence=parse_evidence(r.get("evidence")), task_type=opt_str(r.get("task_type")),
        duration_class=opt_str(r.get("duration_class")) or duration_bucket(duration),
        fps=float_or_none(r.get("fps")), source_format="native", duration=duration)


def read(path: Path, video_root) -> Iterator[Row]:
    videos = Videos(roots(video_root, path.parent))
    for i, r in enumerate(read_json_records(path)):
        b = bad(r)
        yield (i, None, b) if b else (i, opt_str(r.get("id")), guard(_item, r, videos))
