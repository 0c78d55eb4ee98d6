"""Loading a benchmark's annotations as :class:`EvalItem` s: one reader per layout, chosen by
``--format`` (or guessed), skipped records kept with their reasons.

    skipped: list[Skipped] = []
    items = load_items(path, "auto", video_root, limit=n, skipped=skipped)
    for line in describe_skipped(skipped): ...
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from pipelines.eval import egoschema, longvideobench, lvhaystack, mlvu, native, nextqa, videomme
from pipelines.eval.detect import check_format, folder_file, sniff_format
from pipelines.eval.files import ReadOptions, Row
from pipelines.eval.items import EvalDataError, EvalItem, Skip, Skipped

READERS: dict[str, Callable[[Path, ReadOptions], Iterator[Row]]] = {
    "native": native.read, "lv-haystack": lvhaystack.read, "videomme": videomme.read,
    "mlvu": mlvu.read, "longvideobench": longvideobench.read, "egoschema": egoschema.read,
    "nextqa": nextqa.read,
}
FORMATS = tuple(READERS)


def _folder(value: str | os.PathLike | None, what: str) -> Path | None:
    if value is None:
        return None
    p = Path(os.path.expanduser(str(value)))
    if not p.is_dir():
        raise EvalDataError(f"{what} is not a folder", str(p))
    return p


def load_items(path: str | os.PathLike, fmt: str = "auto", video_root: str | os.PathLike | None = None, *,
               limit: int | None = None, skipped: list[Skipped] | None = None,
               subtitles_root: str | os.PathLike | None = None, subtitles: bool = True) -> list[EvalItem]:
    """Read a benchmark's annotations as :class:`EvalItem` s, in file order, at most ``limit`` of them.

    ``fmt`` is one of :data:`FORMATS` or ``"auto"``; a file in another benchmark's layout than ``fmt``
    is refused in one line. Videos are looked up under ``video_root`` (by default next to the
    annotation file) in the benchmark's usual sub-folders; bare ids get the usual extensions; the
    benchmark's subtitle files under ``subtitles_root`` (default: its usual folder), unless
    ``subtitles`` is False. Records that cannot be used (no video file, no published answer,
    malformed) are appended to ``skipped`` with a reason; without a ``skipped`` list the first one raises.
    """
    p = Path(os.path.expanduser(str(path)))
    if not p.exists():
        raise EvalDataError("no such file", str(p))
    if limit is not None and limit < 0:
        raise ValueError("limit must be >= 0")
    if fmt != "auto" and fmt not in READERS:
        raise EvalDataError(f"unknown format {fmt!r} (choose from: auto, {', '.join(FORMATS)})")
    opts = ReadOptions(video_root=_folder(video_root, "video root"),
                       subtitles_root=_folder(subtitles_root, "subtitles root"), subtitles=subtitles)
    p = folder_file(p)
    if fmt == "auto":
        fmt = sniff_format(p)
    else:
        check_format(p, fmt)
    items: list[EvalItem] = []
    seen: set[str] = set()
    if limit == 0:
        return items
    for pos, qid, got in READERS[fmt](p, opts):
        if isinstance(got, EvalItem) and got.id in seen:
            got = Skip("duplicate-id", f"id {got.id!r} appears earlier in the file")
        if isinstance(got, Skip):
            s = Skipped(record=pos, id=qid, reason=got.reason, detail=got.detail)
            if skipped is None:
                raise EvalDataError(f"record {pos}{f' ({qid})' if qid else ''}: {got.detail}", str(p))
            skipped.append(s)
            continue
        seen.add(got.id)
        items.append(got)
        if limit is not None and len(items) >= limit:
            break
    return items


def describe_skipped(skipped: Sequence[Skipped]) -> list[str]:
    """One line per reason: ``"12 skipped (video-not-found), e.g. record 3 (abc): ..."``."""
    out = []
    for reason, n in Counter(s.reason for s in skipped).most_common():
        first = next(s for s in skipped if s.reason == reason)
        label = f"record {first.record}" + (f" ({first.id})" if first.id else "")
        out.append(f"{n} skipped ({reason}), e.g. {label}: {first.detail}")
    return out
