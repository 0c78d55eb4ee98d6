"""NExT-QA multiple choice (github.com/doc-doc/NExT-QA dataset/nextqa/val.csv, test.csv):
video,frame_count,width,height,question,answer (index),qid,type,a0..a4; videos are found through
map_vid_vidorID.json ({video: "<dir>/<vidorID>"}) in the video root or beside the CSV; without it,
by bare id (and the skip line says the map was not found)."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator, Mapping
from pathlib import Path

from pipelines.eval.files import ReadOptions, Row, Videos, guard
from pipelines.eval.items import EvalDataError, EvalItem, letter_of_index, opt_str, options_of, text_of

LABEL = "NExT-QA CSV (val.csv / test.csv)"
COLUMNS = {"qid", "a0", "answer", "video"}
MAP_NAME = "map_vid_vidorID.json"


def layout_of_header(header: set[str]) -> str | None:
    return LABEL if COLUMNS <= header else None


def _item(r: dict, qid: str | None, mapping: Mapping[str, str], videos: Videos, hint: str) -> EvalItem:
    options = options_of(r[f"a{k}"] for k in range(5) if r.get(f"a{k}") not in (None, ""))
    vid = text_of(r.get("video"), "video")
    mapped = mapping.get(vid)
    return EvalItem(
        id=text_of(qid, "qid"),
        video=videos.find(mapped or vid, ("", "NExTVideo", "videos"),
                          hint=hint or ("" if mapped else f"; {vid} is not in {MAP_NAME}")),
        question=text_of(r.get("question"), "question"), options=options,
        answer=letter_of_index(r.get("answer"), options), task_type=opt_str(r.get("type")),
        source_format="nextqa")


def read(path: Path, opts: ReadOptions) -> Iterator[Row]:
    head = path.read_bytes()[:256].lstrip(b"\xef\xbb\xbf \t\r\n")
    if head[:1] in (b"{", b"["):
        raise EvalDataError("is JSON, not NExT-QA's CSV (val.csv / test.csv)", str(path))
    roots = opts.video_roots(path.parent, path.parent.parent)
    mapping: dict[str, str] = {}
    searched = list(dict.fromkeys([*roots, path.parent, path.parent.parent]))
    hint = f"; no {MAP_NAME} in {', '.join(str(f) for f in searched)}: looked up by bare id"
    for folder in searched:
        mfile = folder / MAP_NAME
        if mfile.is_file():
            mapping = json.loads(mfile.read_text(encoding="utf-8"))
            hint = ""
            break
    videos = Videos(roots)
    with path.open(newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        missing = COLUMNS - set(reader.fieldnames or ())
        if missing:
            raise EvalDataError(f"not NExT-QA's CSV: no column {', '.join(sorted(missing))}", str(path))
        rows = list(reader)
    for i, r in enumerate(rows):
        vid, q = opt_str(r.get("video")), opt_str(r.get("qid"))
        qid = f"{vid}_{q}" if vid and q else None
        yield i, qid, guard(_item, r, qid, mapping, videos, hint)
