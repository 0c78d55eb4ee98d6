"""vqa's own layout, JSON Lines: {id, video, question, options?, answer, evidence?, task_type?,
duration_class?, duration?, fps?, subtitles?, subtitle_offset?}; answer is a letter, an option's text or
an index for multiple choice, else free text; evidence is ``[start, end]`` or a list of them, in seconds;
subtitles is a .srt/.vtt file (relative to the video root, or absolute) whose lines become the speech
channel for the item's video."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from pipelines.eval.files import ReadOptions, Row, Videos, bad, find_file, guard, read_json_records
from pipelines.eval.items import (
    EvalItem,
    Skip,
    duration_bucket,
    float_or_none,
    gold_letter,
    opt_str,
    options_of,
    parse_evidence,
    text_of,
)

LABEL = "vqa's native JSON Lines"


def layout(keys: set[str]) -> str | None:
    return LABEL if {"video", "question"} <= keys else None


def _item(r: dict, videos: Videos, sub_roots: list[Path] | None) -> EvalItem:
    options = options_of(r.get("options") or ())
    answer = r.get("answer")
    if isinstance(answer, str) and not answer.strip():
        answer = None  # an empty gold answer means "not graded", not "the empty string is right"
    if answer is not None:
        answer = gold_letter(answer, options) if options else str(answer)
    duration = float_or_none(r.get("duration"))
    subtitles = None
    if sub_roots is not None and opt_str(r.get("subtitles")):
        subtitles = find_file(sub_roots, [str(r["subtitles"])])
        if subtitles is None:
            raise Skip("subtitles-not-found", f"no subtitle file {r['subtitles']!r} under "
                                              f"{', '.join(str(p) for p in sub_roots)}")
    return EvalItem(
        id=text_of(r.get("id"), "id"), video=videos.find(text_of(r.get("video"), "video")),
        question=text_of(r.get("question"), "question"), options=options, answer=answer,
        evidence=parse_evidence(r.get("evidence")), task_type=opt_str(r.get("task_type")),
        duration_class=opt_str(r.get("duration_class")) or duration_bucket(duration),
        fps=float_or_none(r.get("fps")), source_format="native", duration=duration, subtitles=subtitles,
        subtitle_offset=float_or_none(r.get("subtitle_offset")) or 0.0)


def read(path: Path, opts: ReadOptions) -> Iterator[Row]:
    videos = Videos(opts.video_roots(path.parent))
    sub_roots = opts.subtitle_roots(path.parent) if opts.subtitles else None
    for i, r in enumerate(read_json_records(path)):
        b = bad(r)
        yield (i, None, b) if b else (i, opt_str(r.get("id")), guard(_item, r, videos, sub_roots))
