"""Video-MME, in its two published layouts.

- Flat rows (huggingface.co/datasets/lmms-lab/Video-MME, videomme/test-00000-of-00001.parquet, as read
  by lmms-eval lmms_eval/tasks/videomme/utils.py): video_id "001", duration short|medium|long, domain,
  sub_category, url, videoID (the YouTube id), question_id "001-1", task_type, question,
  options ["A. ...", ...], answer "A".
- Per video (github.com/BradyFU/Video-MME evaluation/output_test_template.json): {video_id, duration,
  domain, sub_category, questions: [{question_id, task_type, question, options, answer, response}]};
  older versions say duration_category, video_category, video_subcategory and choices. The official
  file has trailing commas (tolerated). It has no videoID: the YouTube id of each video_id is taken
  from a flat-rows file beside it when there is one, else the videos must be named <video_id>.mp4.

Files: videos data/<videoID>.mp4, subtitles subtitle/<videoID>.srt (the "with subtitles" setting; 744
of the 900 videos have one). Video-MME publishes duration classes, not seconds.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from pipelines.eval.files import ReadOptions, Row, Videos, bad, find_file, first_record, guard, read_records
from pipelines.eval.items import (
    EvalDataError,
    EvalItem,
    duration_bucket,
    gold_letter,
    opt_str,
    options_of,
    text_of,
)

FLAT = "Video-MME flat rows (Hugging Face)"
NESTED = "Video-MME per-video layout (official template)"
_YOUTUBE = re.compile(r"(?:v=|youtu\.be/)([\w-]{6,})")
VIDEO_DIRS = ("", "data", "video", "videos")
SUBTITLE_DIRS = ("subtitle", "subtitles", "")


def layout(keys: set[str]) -> str | None:
    if "questions" in keys and "video_id" in keys:
        return NESTED
    if "videoID" in keys or ({"question_id", "task_type", "options"} <= keys and "duration" in keys):
        return FLAT
    return None


def _rows(records: Sequence[Any]) -> Iterator[Any]:
    for r in records:
        if isinstance(r, dict) and isinstance(r.get("questions"), list):
            parent = {k: v for k, v in r.items() if k != "questions"}
            for q in r["questions"]:
                yield {**parent, **q} if isinstance(q, dict) else q
        else:
            yield r


def youtube_ids(path: Path, roots: Sequence[Path]) -> tuple[dict[str, str], Path | None]:
    """video_id -> videoID from a flat-rows file near ``path`` (the Hugging Face release's Parquet, or
    its rows as JSON), for the per-video layout, which names videos by number only."""
    folders = [path.parent, path.parent / "videomme", *roots, *(r / "videomme" for r in roots)]
    for folder in dict.fromkeys(folders):
        if not folder.is_dir():
            continue
        for f in sorted(folder.iterdir()):
            if f == path or f.suffix.lower() not in (".parquet", ".json", ".jsonl") or not f.is_file():
                continue
            try:
                records = read_records(f)
            except (EvalDataError, OSError, ValueError):
                continue
            if not {"video_id", "videoID"} <= set(first_record(records)):
                continue
            return {str(r["video_id"]): str(r["videoID"]) for r in records
                    if isinstance(r, dict) and r.get("video_id") and r.get("videoID")}, f
    return {}, None


def _item(r: dict, videos: Videos, ids: Mapping[str, str], sub_roots: list[Path] | None, hint: str) -> EvalItem:
    name = opt_str(r.get("videoID"))
    if not name and r.get("url"):
        m = _YOUTUBE.search(str(r["url"]))
        name = m.group(1) if m else None
    number = opt_str(r.get("video_id"))
    if name:
        names = [name, number]
    else:  # the per-video layout: a file named by number as it is, else the videoID from the rows file
        names = [number, ids.get(number) if number else None]
    names = [n for n in names if n] or [text_of(None, "videoID")]
    video = videos.find_any(names, VIDEO_DIRS, hint="" if name else hint)
    options = options_of(r.get("options") or r.get("choices") or ())
    answer = r.get("answer")
    dclass = r.get("duration") or r.get("duration_category")
    if isinstance(dclass, (int, float)):  # some exports give seconds instead of the class
        dclass = duration_bucket(float(dclass))
    dclass = opt_str(dclass)
    subtitles = None
    if sub_roots is not None:
        stems = [Path(video).stem, *names]
        subtitles = find_file(sub_roots, [f"{s}{ext}" for s in dict.fromkeys(stems) for ext in (".srt", ".vtt")],
                              SUBTITLE_DIRS)
    return EvalItem(
        id=text_of(r.get("question_id"), "question_id"), video=video,
        question=text_of(r.get("question"), "question"), options=options,
        answer=gold_letter(answer, options) if answer not in (None, "") else None,
        task_type=opt_str(r.get("task_type")), duration_class=dclass.lower() if dclass else None,
        source_format="videomme", subtitles=subtitles)


def read(path: Path, opts: ReadOptions) -> Iterator[Row]:
    roots = opts.video_roots(path.parent, path.parent.parent)
    videos = Videos(roots)
    records = read_records(path)
    ids: dict[str, str] = {}
    hint = ""
    if layout(set(first_record(records))) == NESTED:
        ids, source = youtube_ids(path, roots)
        hint = ("; the per-video layout has no videoID: put Video-MME's rows file "
                "(videomme/test-00000-of-00001.parquet) beside it, or name the videos <video_id>.mp4"
                if source is None else f"; videoID from {source}")
    sub_roots = opts.subtitle_roots(path.parent, path.parent.parent, *roots) if opts.subtitles else None
    for i, r in enumerate(_rows(records)):
        b = bad(r)
        yield (i, None, b) if b else (i, opt_str(r.get("question_id")), guard(_item, r, videos, ids, sub_roots, hint))
