"""LongVideoBench (github.com/longvideobench/LongVideoBench longvideobench_dataset.py, lvb_val.json;
lmms-eval lmms_eval/tasks/longvideobench/utils.py for the Parquet rows with option0..option4):
{id, video_id, video_path (under videos/), duration (s), duration_group (15|60|600|3600: the upper
bound of the group), question, candidates [...], correct_choice (index), question_category, position,
subtitle_path (under subtitles/), starting_timestamp_for_subtitles, ...}. lvb_test_wo_gt.json has no
correct_choice: answer None.

Evidence: ``position`` lists frame indexes of the referred moments, counted at the video file's own
frame rate; frame i becomes [i/fps, (i+1)/fps] seconds, and the rate read from the file is recorded in
the item's ``fps``. Subtitles: ``subtitle_path`` is a JSON list of {"start": "HH:MM:SS.mmm", "end",
"line"} or {"timestamp": [start, end], "text"}, timed on the source video; the clip starts at
``starting_timestamp_for_subtitles`` seconds of it (see :mod:`pipelines.eval.subtitles`).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from pipelines.eval.files import ReadOptions, Row, Videos, bad, find_file, guard, native_fps, read_records
from pipelines.eval.items import (
    LETTERS,
    EvalItem,
    Skip,
    duration_bucket,
    float_or_none,
    frame_interval,
    letter_of_index,
    opt_str,
    options_of,
    text_of,
)

JSON = "LongVideoBench lvb_val.json / lvb_test_wo_gt.json"
ROWS = "LongVideoBench Parquet rows (option0..option4)"
LVB_GROUPS = {8: "8-15s", 15: "8-15s", 60: "15-60s", 600: "180-600s", 3600: "900-3600s"}


def layout(keys: set[str]) -> str | None:
    if "correct_choice" in keys or {"candidates", "duration_group"} <= keys:
        return JSON
    return ROWS if "option0" in keys and keys & {"video_path", "duration_group"} else None


def position_evidence(position, video: str) -> tuple[tuple[tuple[float, float], ...], float | None]:
    """``position`` (frame indexes at the file's own rate) as intervals in seconds, and that rate."""
    if position in (None, [], ()):
        return (), None
    if not isinstance(position, (list, tuple)) or not all(
            isinstance(p, (int, float)) and not isinstance(p, bool) and p >= 0 and float(p).is_integer()
            for p in position):
        raise Skip("bad-record", f"position {position!r} is not a list of frame indexes")
    fps = native_fps(video)
    if not fps:
        raise Skip("no-fps", f"cannot read the frame rate of {video} to place position (frame indexes)")
    return tuple(sorted(frame_interval(int(p), fps) for p in position)), fps


def _item(r: dict, videos: Videos, sub_roots: list[Path] | None) -> EvalItem:
    cands = r.get("candidates")
    if cands is None:
        cands = [r[f"option{k}"] for k in range(len(LETTERS)) if r.get(f"option{k}") not in (None, "N/A")]
    options = options_of(cands)
    correct = r.get("correct_choice")
    group = r.get("duration_group")
    try:
        group_label = LVB_GROUPS.get(int(group), f"{int(group)}s") if group is not None else None
    except (TypeError, ValueError):
        group_label = str(group)
    duration = float_or_none(r.get("duration"))
    name = opt_str(r.get("video_path")) or text_of(r.get("video_id"), "video_path")
    video = videos.find(name, ("", "videos"))
    evidence, fps = position_evidence(r.get("position"), video)
    subtitles = None
    if sub_roots is not None and opt_str(r.get("subtitle_path")):
        subtitles = find_file(sub_roots, [str(r["subtitle_path"])], ("subtitles", ""))
    return EvalItem(
        id=text_of(r.get("id"), "id"), video=video,
        question=text_of(r.get("question"), "question"), options=options,
        answer=letter_of_index(correct, options) if correct is not None else None,
        evidence=evidence, task_type=opt_str(r.get("question_category")),
        duration_class=group_label or duration_bucket(duration), fps=fps, source_format="longvideobench",
        duration=duration, subtitles=subtitles,
        subtitle_offset=float_or_none(r.get("starting_timestamp_for_subtitles")) or 0.0)


def read(path: Path, opts: ReadOptions) -> Iterator[Row]:
    roots = opts.video_roots(path.parent, path.parent.parent)
    videos = Videos(roots)
    sub_roots = opts.subtitle_roots(path.parent, path.parent.parent, *roots) if opts.subtitles else None
    for i, r in enumerate(read_records(path)):
        b = bad(r)
        yield (i, None, b) if b else (i, opt_str(r.get("id")), guard(_item, r, videos, sub_roots))
