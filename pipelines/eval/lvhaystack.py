"""LV-Haystack (huggingface.co/datasets/LVHaystack/LongVideoHaystack; rows as read by T*'s
LVHaystackBench/run_TStar_onDataset.py, github.com/mll-lab-nu/TStar): video_id, vclip_id, question,
options {"A": ...}, answer letter, frame_indexes_video (keyframes as frame indexes of the whole Ego4D
video), video_metadata {frame_rate, video_duration, vclip_interval_in_video [s, s], ...}. The older
release (TStar HaystackBench/LVHaystack_*.json, column-oriented) has `frame_indexes` counted from the
start of the clip: those are shifted by vclip_interval_in_video[0] onto the video's own clock.
Each keyframe index i becomes the interval that frame is on screen, [i/fps, (i+1)/fps]."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

from pipelines.eval.files import ReadOptions, Row, Videos, bad, guard, read_records
from pipelines.eval.items import (
    EvalItem,
    Skip,
    duration_bucket,
    float_or_none,
    frame_interval,
    gold_letter,
    opt_str,
    options_of,
    text_of,
)

ROWS = "LV-Haystack rows (Hugging Face)"
DUMP = "LV-Haystack first-release dump (clip-relative frame_indexes)"


def layout(keys: set[str]) -> str | None:
    if "frame_indexes_video" in keys:
        return ROWS
    return DUMP if {"frame_indexes", "video_metadata"} <= keys else None


def _item(r: dict, qid: str | None, videos: Videos) -> EvalItem:
    meta = r.get("video_metadata") or {}
    if isinstance(meta, str):
        meta = json.loads(meta)
    raw = r.get("options")
    options = options_of(raw[k] for k in sorted(raw)) if isinstance(raw, dict) else options_of(raw or ())
    fps = float_or_none(meta.get("frame_rate") or r.get("frame_rate") or r.get("fps"))
    offset = 0.0
    if r.get("frame_indexes_video") is not None:
        frames = r["frame_indexes_video"]
    else:
        frames = r.get("frame_indexes") or r.get("frame_indexes_vclip") or []
        interval = meta.get("vclip_interval_in_video")
        if frames and interval:
            offset = float(interval[0])
    if frames and not fps:
        raise Skip("no-fps", "keyframes are frame indexes but the record has no frame_rate")
    evidence = tuple(sorted((s + offset, e + offset) for s, e in (frame_interval(int(f), fps) for f in frames)))
    duration = float_or_none(meta.get("video_duration"))
    answer = r.get("answer")
    return EvalItem(
        id=text_of(qid, "video_id"), video=videos.find(text_of(r.get("video_id"), "video_id")),
        question=text_of(r.get("question"), "question"), options=options,
        answer=gold_letter(answer, options) if answer is not None and options else opt_str(answer),
        evidence=evidence, task_type=opt_str(r.get("question_type")), duration_class=duration_bucket(duration),
        fps=fps, source_format="lv-haystack", duration=duration)


def read(path: Path, opts: ReadOptions) -> Iterator[Row]:
    videos = Videos(opts.video_roots(path.parent, path.parent / "videos"))
    for i, r in enumerate(read_records(path)):
        b = bad(r)
        if b:
            yield i, None, b
            continue
        vid = opt_str(r.get("video_id"))
        qid = opt_str(r.get("id")) or (f"{vid}:{i}" if vid else None)  # rows have no question id
        yield i, qid, guard(_item, r, qid, videos)
