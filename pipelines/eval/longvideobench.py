"""LongVideoBench (github.com/longvideobench/LongVideoBench longvideobench_dataset.py, lvb_val.json;
lmms-eval lmms_eval/tasks/longvideobench/utils.py for the Parquet rows with option0..option4):
{id, video_id, video_path (under videos/), duration (s), duration_group (15|60|600|3600: the upper
bound of the group), question, candidates [...], correct_choice (index), question_category, position,
subtitle_path, ...}. lvb_test_wo_gt.json has no correct_choice: answer None. `position` is not used as
evidence: its unit is not documented."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from pipelines.eval.files import Row, Videos, bad, guard, read_records, roots
from pipelines.eval.items import (
    LETTERS,
    EvalItem,
    duration_bucket,
    float_or_none,
    letter_of_index,
    opt_str,
    options_of,
    text_of,
)

LVB_GROUPS = {8: "8-15s", 15: "8-15s", 60: "15-60s", 600: "180-600s", 3600: "900-3600s"}


def _item(r: dict, videos: Videos) -> EvalItem:
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
    return EvalItem(
        id=text_of(r.get("id"), "id"), video=videos.find(name, ("", "videos")),
        question=text_of(r.get("question"), "question"), options=options,
        answer=letter_of_index(correct, options) if correct is not None else None,
        task_type=opt_str(r.get("question_category")),
        duration_class=group_label or duration_bucket(duration), source_format="longvideobench",
        duration=duration)


def read(path: Path, video_root) -> Iterator[Row]:
    videos = Videos(roots(video_root, path.parent, path.parent.parent))
    for i, r in enumerate(read_records(path)):
        b = bad(r)
        yield (i, None, b) if b else (i, opt_str(r.get("id")), guard(_item, r, videos))
