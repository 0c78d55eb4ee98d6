"""NExT-QA multiple choice (github.com/doc-doc/NExT-QA dataset/nextqa/val.csv, test.csv):
video,frame_count,width,height,question,answer (index),qid,type,a0..a4; videos are found through
map_vid_vidorID.json ({video: "<dir>/<vidorID>"}) when it sits in the video root or beside the CSV."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator, Mapping
from pathlib import Path

from pipelines.eval.files import Row, Videos, guard, roots
from pipelines.eval.items import EvalItem, letter_of_index, opt_str, options_of, text_of


def _item(r: dict, qid: str | None, mapping: Mapping[str, str], videos: Videos) -> EvalItem:
    options = options_of(r[f"a{k}"] for k in range(5) if r.get(f"a{k}") not in (None, ""))
    vid = text_of(r.get("video"), "video")
    return EvalItem(
        id=text_of(qid, "qid"), video=videos.find(mapping.get(vid, vid), ("", "NExTVideo", "videos")),
        question=text_of(r.get("question"), "question"), options=options,
        answer=letter_of_index(r.get("answer"), options), task_type=opt_str(r.get("type")),
        source_format="nextqa")


def read(path: Path, video_root) -> Iterator[Row]:
    rts = roots(video_root, path.parent, path.parent.parent)
    mapping: dict[str, str] = {}
    for folder in [*rts, path.parent, path.parent.parent]:
        mfile = folder / "map_vid_vidorID.json"
        if mfile.is_file():
            mapping = json.loads(mfile.read_text(encoding="utf-8"))
            break
    videos = Videos(rts)
    with path.open(newline="", encoding="utf-8-sig") as f:
        rows = list(csv.DictReader(f))
    for i, r in enumerate(rows):
        vid, q = opt_str(r.get("video")), opt_str(r.get("qid"))
        qid = f"{vid}_{q}" if vid and q else None
        yield i, qid, guard(_item, r, qid, mapping, videos)
