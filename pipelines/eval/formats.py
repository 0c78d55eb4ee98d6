"""Benchmark evaluation core for ``vqa eval``: loaders, keyframe-search metrics, baselines, resumable runner.

Pure: no models, no torch. The CLI loads items, hands ``run_eval`` a runner (one call per item and
search method), and prints ``format_table(summary)``::

    skipped: list[Skipped] = []
    items = load_items(path, "auto", video_root, limit=n, skipped=skipped)
    summary = run_eval(items, ["uniform", "topk", "vqa"], runner, "results.jsonl")
    print(format_table(summary))

Units are explicit everywhere: times are seconds (``t``, evidence ``[start, end]``), frame indexes are
integers and always travel with the ``fps`` they were counted at. Nothing here draws random numbers:
the same items and runner give the same results file and the same summary.
"""

from __future__ import annotations

import csv
import json
import math
import os
import re
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from pipelines.errors import VqaError
from pipelines.stages.media import VIDEO_EXTENSIONS

FORMATS = ("native", "lv-haystack", "videomme", "mlvu", "longvideobench", "egoschema", "nextqa")

# Duration classes when a benchmark gives a length in seconds but no class of its own (documented in
# `vqa eval --help`): short < 4 min, medium 4-20 min, long > 20 min.
SHORT_MAX_S = 240.0
MEDIUM_MAX_S = 1200.0

DEFAULT_DELTA_S = 5.0  # tolerance of the temporal metrics, as in LV-Haystack's evaluation (5 s)

LETTERS = "ABCDEFGHIJ"
_EXT_ORDER = (".mp4", ".mkv", ".webm", ".mov", ".avi", ".m4v") + tuple(
    sorted(VIDEO_EXTENSIONS - {".mp4", ".mkv", ".webm", ".mov", ".avi", ".m4v"}))


class EvalDataError(VqaError):
    """An annotation or results file that cannot be read as what it claims to be."""


@dataclass(frozen=True)
class EvalItem:
    """One benchmark question, normalised. ``evidence`` intervals and ``duration`` are seconds."""

    id: str
    video: str  # absolute path
    question: str
    options: tuple[str, ...]  # option texts without "A." prefixes; () for open questions
    answer: str | None  # "A".. for multiple choice, free text otherwise, None when unpublished
    evidence: tuple[tuple[float, float], ...] = ()
    task_type: str | None = None
    duration_class: str | None = None
    fps: float | None = None  # frame rate the benchmark counted its frame indexes at, when it did
    source_format: str = "native"
    duration: float | None = None  # video length in seconds as published, when published


@dataclass(frozen=True)
class Skipped:
    """A record that was not turned into an item, and why (``reason`` is a short code)."""

    record: int  # 0-based position in the file (CSV row, JSON record, question of a nested record)
    id: str | None
    reason: str  # video-not-found | no-answer | bad-answer | bad-record | duplicate-id | no-fps
    detail: str


class _Skip(Exception):
    def __init__(self, reason: str, detail: str):
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


# --------------------------------------------------------------------------------------------------
# Reading annotation files


def _read_json_records(path: Path) -> list[Any]:
    """A JSON list of records, a column-oriented JSON object (lists of equal length, as the
    `datasets` library writes with ``to_json(orient="columns")``), or JSON Lines."""
    text = path.read_text(encoding="utf-8-sig")
    if path.suffix.lower() in (".jsonl", ".ndjson"):
        return _parse_lines(text)
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        return _parse_lines(text)  # JSON Lines saved as .json
    if isinstance(data, list):
        return data
    if isinstance(data, dict):
        values = list(data.values())
        if values and all(isinstance(v, list) for v in values) and len({len(v) for v in values}) == 1:
            keys = list(data)
            return [{k: data[k][i] for k in keys} for i in range(len(values[0]))]
        lists = [v for v in values if isinstance(v, list)]
        if len(lists) == 1:  # {"data": [...]} and the like
            return lists[0]
    raise EvalDataError("expected a JSON list of records (or JSON Lines)", str(path))


class _BadLine:
    def __init__(self, lineno: int, message: str):
        self.lineno = lineno
        self.message = message


def _parse_lines(text: str) -> list[Any]:
    out: list[Any] = []
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError as e:
            out.append(_BadLine(lineno, f"line {lineno}: not JSON ({e.msg})"))
    return out


def _read_parquet(path: Path) -> list[dict]:
    try:
        import pyarrow.parquet as pq  # optional: the HF releases of Video-MME and LongVideoBench
    except ImportError as e:
        raise EvalDataError("reading Parquet needs pyarrow (pip install pyarrow), or convert the "
                            "file to JSON Lines first", str(path)) from e
    return pq.read_table(path).to_pylist()


def _read_records(path: Path) -> list[Any]:
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        return _read_parquet(path)
    if suffix == ".csv":
        with path.open(newline="", encoding="utf-8-sig") as f:
            return list(csv.DictReader(f))
    return _read_json_records(path)


def _first_record(records: Sequence[Any]) -> dict:
    for r in records:
        if isinstance(r, dict):
            return r
    return {}


def sniff_format(path: str | os.PathLike) -> str:
    """Guess the layout of an annotation file (or folder) from its name and its first record's keys."""
    p = Path(path)
    if p.is_dir():
        if (p / "questions.json").is_file():
            return "egoschema"
        if _mlvu_files(p):
            return "mlvu"
        raise EvalDataError("cannot tell the benchmark of this folder (expected EgoSchema's questions.json "
                            "or MLVU's json/ files); pass --format", str(p))
    if p.name in ("questions.json", "subset_answers.json"):
        return "egoschema"
    if p.suffix.lower() == ".csv":
        with p.open(newline="", encoding="utf-8-sig") as f:
            header = set(next(csv.reader(f), []))
        if {"qid", "a0", "answer", "video"} <= header:
            return "nextqa"
        raise EvalDataError(f"unknown CSV layout (columns: {', '.join(sorted(header))}); pass --format", str(p))
    keys = set(_first_record(_read_records(p)))
    if "frame_indexes_video" in keys or {"frame_indexes", "video_metadata"} <= keys:
        return "lv-haystack"
    if "videoID" in keys or ("questions" in keys and keys & {"duration_category", "video_category"}):
        return "videomme"
    if {"question_id", "task_type", "options"} <= keys and "duration" in keys:
        return "videomme"
    if "correct_choice" in keys or {"candidates", "duration_group"} <= keys:
        return "longvideobench"
    if "candidates" in keys or "question_type" in keys:
        return "mlvu"
    if "q_uid" in keys:
        return "egoschema"
    if {"video", "question"} <= keys:
        return "native"
    raise EvalDataError(f"cannot tell the benchmark from the record keys ({', '.join(sorted(keys))}); "
                        "pass --format", str(p))


# --------------------------------------------------------------------------------------------------
# Small normalisers shared by the formats

_LETTER_PREFIX = re.compile(r"^\s*\(?([A-J])\s*[.):]\s*")


def strip_letter(option: str, index: int) -> str:
    """``"B. Blue shirts."`` -> ``"Blue shirts."`` when the prefix is the letter of its position."""
    text = str(option).strip()
    m = _LETTER_PREFIX.match(text)
    if m and m.group(1) == LETTERS[index] and text[m.end():].strip():
        return text[m.end():].strip()
    return text


def _options(values: Iterable[Any]) -> tuple[str, ...]:
    opts = tuple(strip_letter(v, i) for i, v in enumerate(values))
    if len(opts) > len(LETTERS):
        raise _Skip("bad-record", f"{len(opts)} options; at most {len(LETTERS)} are supported")
    return opts


def _letter_of_index(value: Any, options: Sequence[str]) -> str:
    try:
        i = int(value)
    except (TypeError, ValueError):
        raise _Skip("bad-answer", f"answer index {value!r} is not a number") from None
    if not 0 <= i < len(options) or float(value) != i:
        raise _Skip("bad-answer", f"answer index {value!r} outside the {len(options)} options")
    return LETTERS[i]


_BARE_LETTER = re.compile(r"^\(?([A-Ja-j])\)?[.):]?$")
_LETTER_THEN_TEXT = re.compile(r"^\(?([A-J])\s*[.):]")


def _norm_text(s: str) -> str:
    return re.sub(r"\s+", " ", str(s)).strip().strip(".").strip().casefold()


def parse_choice(answer: Any, options: Sequence[str]) -> str | None:
    """The letter a reply picks: exactly one option's text, ``"B"``, ``"b"``, ``"(B)"``, ``"B. text"``,
    or an index; None when it picks none of the options."""
    if answer is None or not options:
        return None
    allowed = LETTERS[: len(options)]
    if isinstance(answer, int) and not isinstance(answer, bool):
        return allowed[answer] if 0 <= answer < len(options) else None
    text = str(answer).strip()
    norm = _norm_text(text)
    hits = [allowed[i] for i, o in enumerate(options) if _norm_text(o) == norm]
    if len(hits) == 1:
        return hits[0]
    m = _BARE_LETTER.match(text) or _LETTER_THEN_TEXT.match(text)
    if m and m.group(1).upper() in allowed:
        return m.group(1).upper()
    return None


def _gold_letter(answer: Any, options: Sequence[str]) -> str:
    """A published multiple-choice answer (letter, option text, or index) as a letter."""
    if isinstance(answer, int) and not isinstance(answer, bool):
        return _letter_of_index(answer, options)
    letter = parse_choice(answer, options)
    if letter is None:
        raise _Skip("bad-answer", f"answer {answer!r} is neither a letter nor one of the options")
    return letter


def _interval(value: Any) -> tuple[float, float]:
    try:
        s, e = (float(v) for v in value)
    except (TypeError, ValueError):
        raise _Skip("bad-record", f"evidence {value!r} is not [start, end] in seconds") from None
    if not (math.isfinite(s) and math.isfinite(e)) or s < 0 or e < s:
        raise _Skip("bad-record", f"evidence [{s}, {e}] is not a valid interval in seconds")
    return s, e


def parse_evidence(value: Any) -> tuple[tuple[float, float], ...]:
    """``[[start, end], ...]`` or a single ``[start, end]`` (seconds), sorted by start."""
    if value is None or value == []:
        return ()
    if isinstance(value, (list, tuple)) and len(value) == 2 and all(
            isinstance(v, (int, float)) and not isinstance(v, bool) for v in value):
        return (_interval(value),)
    if not isinstance(value, (list, tuple)):
        raise _Skip("bad-record", f"evidence {value!r} is not a list of [start, end]")
    return tuple(sorted(_interval(v) for v in value))


def frame_interval(index: int, fps: float) -> tuple[float, float]:
    """The time a frame is on screen, in seconds: frame ``i`` at ``fps`` spans ``[i/fps, (i+1)/fps]``."""
    return index / fps, (index + 1) / fps


def frame_index(t: float, fps: float) -> int:
    """The frame on screen at ``t`` seconds (inverse of :func:`frame_interval`)."""
    return int(math.floor(t * fps + 1e-6))


def duration_bucket(seconds: float | None) -> str | None:
    """``short`` (< 4 min), ``medium`` (4-20 min), ``long`` (> 20 min); None when unknown."""
    if seconds is None or not math.isfinite(seconds) or seconds <= 0:
        return None
    if seconds < SHORT_MAX_S:
        return "short"
    return "medium" if seconds <= MEDIUM_MAX_S else "long"


def _float_or_none(value: Any) -> float | None:
    try:
        f = float(value)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def _text(value: Any, what: str) -> str:
    if value is None or not str(value).strip():
        raise _Skip("bad-record", f"no {what}")
    return str(value).strip()


# --------------------------------------------------------------------------------------------------
# Finding the video file of a record


class _Videos:
    def __init__(self, roots: Sequence[Path]):
        self.roots = [r for r in roots if r is not None]

    def find(self, name: str, subdirs: Sequence[str] = ("",)) -> str:
        raw = Path(os.path.expanduser(str(name).strip()))
        if raw.is_absolute():
            if raw.is_file():
                return os.path.abspath(raw)
            raw = Path(raw.name)  # a path from the annotator's machine: look for its file name here
        tried: list[str] = []
        for root in self.roots:
            for sub in subdirs:
                base = root / sub / raw if sub else root / raw
                if base.suffix.lower() in VIDEO_EXTENSIONS:
                    candidates = [base]
                else:  # a bare id: try the usual extensions
                    candidates = [base.with_name(base.name + ext) for ext in _EXT_ORDER]
                for c in candidates:
                    if c.is_file():
                        return os.path.abspath(c)
                tried.append(str(base))
        shown = ", ".join(tried[:4]) + (f" (+{len(tried) - 4} more)" if len(tried) > 4 else "")
        raise _Skip("video-not-found", f"no video file for {name!r} (looked for {shown})")


def _roots(video_root: str | os.PathLike | None, *defaults: Path) -> list[Path]:
    if video_root is not None:
        root = Path(os.path.expanduser(str(video_root)))
        if not root.is_dir():
            raise EvalDataError("video root is not a folder", str(root))
        return [root]
    return list(dict.fromkeys(defaults))


# Each reader yields (record position, id or None, EvalItem or _Skip).
_Row = tuple[int, "str | None", "EvalItem | _Skip"]


def _guard(build: Callable[..., EvalItem], *args: Any) -> EvalItem | _Skip:
    try:
        return build(*args)
    except _Skip as s:
        return s


def _bad(r: Any) -> _Skip | None:
    if isinstance(r, _BadLine):
        return _Skip("bad-record", r.message)
    if not isinstance(r, dict):
        return _Skip("bad-record", f"record is a {type(r).__name__}, not an object")
    return None


def _opt_str(v: Any) -> str | None:
    return None if v is None or str(v).strip() == "" else str(v).strip()


# --- native JSON Lines: {id, video, question, options, answer, evidence?, task_type?, duration_class?,
# duration?, fps?}; answer is a letter, an option's text or an index for multiple choice, else free text.

def _native_item(r: dict, videos: _Videos) -> EvalItem:
    options = _options(r.get("options") or ())
    answer = r.get("answer")
    if isinstance(answer, str) and not answer.strip():
        answer = None  # an empty gold answer means "not graded", not "the empty string is right"
    if answer is not None:
        answer = _gold_letter(answer, options) if options else str(answer)
    duration = _float_or_none(r.get("duration"))
    return EvalItem(
        id=_text(r.get("id"), "id"), video=videos.find(_text(r.get("video"), "video")),
        question=_text(r.get("question"), "question"), options=options, answer=answer,
        evidence=parse_evidence(r.get("evidence")), task_type=_opt_str(r.get("task_type")),
        duration_class=_opt_str(r.get("duration_class")) or duration_bucket(duration),
        fps=_float_or_none(r.get("fps")), source_format="native", duration=duration)


def _read_native(path: Path, video_root) -> Iterator[_Row]:
    videos = _Videos(_roots(video_root, path.parent))
    for i, r in enumerate(_read_json_records(path)):
        bad = _bad(r)
        yield (i, None, bad) if bad else (i, _opt_str(r.get("id")), _guard(_native_item, r, videos))


# --- LV-Haystack (huggingface.co/datasets/LVHaystack/LongVideoHaystack; rows as read by T*'s
# LVHaystackBench/run_TStar_onDataset.py, github.com/mll-lab-nu/TStar): video_id, vclip_id, question,
# options {"A": ...}, answer letter, frame_indexes_video (keyframes as frame indexes of the whole Ego4D
# video), video_metadata {frame_rate, video_duration, vclip_interval_in_video [s, s], ...}. The older
# release (TStar HaystackBench/LVHaystack_*.json, column-oriented) has `frame_indexes` counted from the
# start of the clip: those are shifted by vclip_interval_in_video[0] onto the video's own clock.
# Each keyframe index i becomes the interval that frame is on screen, [i/fps, (i+1)/fps].

def _lv_haystack_item(r: dict, qid: str | None, videos: _Videos) -> EvalItem:
    meta = r.get("video_metadata") or {}
    if isinstance(meta, str):
        meta = json.loads(meta)
    raw = r.get("options")
    options = _options(raw[k] for k in sorted(raw)) if isinstance(raw, dict) else _options(raw or ())
    fps = _float_or_none(meta.get("frame_rate") or r.get("frame_rate") or r.get("fps"))
    offset = 0.0
    if r.get("frame_indexes_video") is not None:
        frames = r["frame_indexes_video"]
    else:
        frames = r.get("frame_indexes") or r.get("frame_indexes_vclip") or []
        interval = meta.get("vclip_interval_in_video")
        if frames and interval:
            offset = float(interval[0])
    if frames and not fps:
        raise _Skip("no-fps", "keyframes are frame indexes but the record has no frame_rate")
    evidence = tuple(sorted((s + offset, e + offset) for s, e in (frame_interval(int(f), fps) for f in frames)))
    duration = _float_or_none(meta.get("video_duration"))
    answer = r.get("answer")
    return EvalItem(
        id=_text(qid, "video_id"), video=videos.find(_text(r.get("video_id"), "video_id")),
        question=_text(r.get("question"), "question"), options=options,
        answer=_gold_letter(answer, options) if answer is not None and options else _opt_str(answer),
        evidence=evidence, task_type=_opt_str(r.get("question_type")), duration_class=duration_bucket(duration),
        fps=fps, source_format="lv-haystack", duration=duration)


def _read_lv_haystack(path: Path, video_root) -> Iterator[_Row]:
    videos = _Videos(_roots(video_root, path.parent, path.parent / "videos"))
    for i, r in enumerate(_read_records(path)):
        bad = _bad(r)
        if bad:
            yield i, None, bad
            continue
        vid = _opt_str(r.get("video_id"))
        qid = _opt_str(r.get("id")) or (f"{vid}:{i}" if vid else None)  # rows have no question id
        yield i, qid, _guard(_lv_haystack_item, r, qid, videos)


# --- Video-MME (huggingface.co/datasets/lmms-lab/Video-MME rows, as read by lmms-eval
# lmms_eval/tasks/videomme/utils.py): video_id "001", duration short|medium|long, domain, sub_category,
# url, videoID (the YouTube id; files are <videoID>.mp4 under data/), question_id "001-1", task_type,
# question, options ["A. ...", ...], answer "A". Also the nested layout of the official repository
# (github.com/BradyFU/Video-MME evaluation/output_test_template.json): {video_id, duration_category,
# video_category, video_subcategory, questions: [{question_id, task_type, question, choices, answer}]}.

_YOUTUBE = re.compile(r"(?:v=|youtu\.be/)([\w-]{6,})")


def _videomme_rows(records: Sequence[Any]) -> Iterator[Any]:
    for r in records:
        if isinstance(r, dict) and isinstance(r.get("questions"), list):
            parent = {k: v for k, v in r.items() if k != "questions"}
            for q in r["questions"]:
                yield {**parent, **q} if isinstance(q, dict) else q
        else:
            yield r


def _videomme_item(r: dict, videos: _Videos) -> EvalItem:
    name = _opt_str(r.get("videoID"))
    if not name and r.get("url"):
        m = _YOUTUBE.search(str(r["url"]))
        name = m.group(1) if m else None
    name = name or _text(r.get("video_id"), "videoID")
    options = _options(r.get("options") or r.get("choices") or ())
    answer = r.get("answer")
    dclass = r.get("duration") or r.get("duration_category")
    if isinstance(dclass, (int, float)):  # some exports give seconds instead of the class
        dclass = duration_bucket(float(dclass))
    dclass = _opt_str(dclass)
    return EvalItem(
        id=_text(r.get("question_id"), "question_id"), video=videos.find(name, ("", "data", "video", "videos")),
        question=_text(r.get("question"), "question"), options=options,
        answer=_gold_letter(answer, options) if answer not in (None, "") else None,
        task_type=_opt_str(r.get("task_type")), duration_class=dclass.lower() if dclass else None,
        source_format="videomme")


def _read_videomme(path: Path, video_root) -> Iterator[_Row]:
    videos = _Videos(_roots(video_root, path.parent, path.parent.parent))
    for i, r in enumerate(_videomme_rows(_read_records(path))):
        bad = _bad(r)
        yield (i, None, bad) if bad else (i, _opt_str(r.get("question_id")), _guard(_videomme_item, r, videos))


# --- MLVU dev (github.com/JUNJIE99/MLVU, MLVU/json/<n>_<task>.json as read by its choice_bench.py;
# videos in MLVU/video/<n>_<task>/): {video, duration (s), question, candidates [...], answer (the
# option TEXT), question_type}. Basenames repeat across task folders, so each file's videos are looked
# up in the folder named after the file first. 8_sub_scene and 9_summary have no candidates: open
# questions with a free-text answer.

_MLVU_FILE = re.compile(r"^\d+_\w+\.json$")


def _mlvu_files(p: Path) -> list[Path]:
    folder = p / "json" if (p / "json").is_dir() else p
    return sorted(f for f in folder.glob("*.json") if _MLVU_FILE.match(f.name))


def _mlvu_item(r: dict, qid: str, stem: str, videos: _Videos) -> EvalItem:
    task = _opt_str(r.get("question_type")) or re.sub(r"^\d+_", "", stem)
    options = _options(r.get("candidates") or ())
    answer = r.get("answer")
    if options:
        norm = [_norm_text(o) for o in options]
        if answer is None or _norm_text(answer) not in norm:
            raise _Skip("bad-answer", f"answer {answer!r} is not one of the candidates")
        answer = LETTERS[norm.index(_norm_text(answer))]
    duration = _float_or_none(r.get("duration"))
    subdirs = (stem, f"video/{stem}", task, f"video/{task}", "", "video")
    return EvalItem(
        id=qid, video=videos.find(_text(r.get("video"), "video"), subdirs),
        question=_text(r.get("question"), "question"), options=options, answer=_opt_str(answer),
        task_type=task, duration_class=duration_bucket(duration), source_format="mlvu", duration=duration)


def _read_mlvu(path: Path, video_root) -> Iterator[_Row]:
    files = _mlvu_files(path) if path.is_dir() else [path]
    if not files:
        raise EvalDataError("no MLVU task files (<n>_<task>.json) in this folder", str(path))
    pos = 0
    for f in files:
        base = f.parent.parent if f.parent.name == "json" else f.parent
        videos = _Videos(_roots(video_root, base / "video", base, f.parent))
        for i, r in enumerate(_read_json_records(f)):
            bad = _bad(r)
            if bad:
                yield pos, None, bad
            else:
                qid = _opt_str(r.get("question_id")) or f"{f.stem}:{i}"
                yield pos, qid, _guard(_mlvu_item, r, qid, f.stem, videos)
            pos += 1


# --- LongVideoBench (github.com/longvideobench/LongVideoBench longvideobench_dataset.py, lvb_val.json;
# lmms-eval lmms_eval/tasks/longvideobench/utils.py for the Parquet rows with option0..option4):
# {id, video_id, video_path (under videos/), duration (s), duration_group (15|60|600|3600: the upper
# bound of the group), question, candidates [...], correct_choice (index), question_category, position,
# subtitle_path, ...}. lvb_test_wo_gt.json has no correct_choice: answer None. `position` is not used as
# evidence: its unit is not documented.

LVB_GROUPS = {8: "8-15s", 15: "8-15s", 60: "15-60s", 600: "180-600s", 3600: "900-3600s"}


def _lvb_item(r: dict, videos: _Videos) -> EvalItem:
    cands = r.get("candidates")
    if cands is None:
        cands = [r[f"option{k}"] for k in range(len(LETTERS)) if r.get(f"option{k}") not in (None, "N/A")]
    options = _options(cands)
    correct = r.get("correct_choice")
    group = r.get("duration_group")
    try:
        group_label = LVB_GROUPS.get(int(group), f"{int(group)}s") if group is not None else None
    except (TypeError, ValueError):
        group_label = str(group)
    duration = _float_or_none(r.get("duration"))
    name = _opt_str(r.get("video_path")) or _text(r.get("video_id"), "video_path")
    return EvalItem(
        id=_text(r.get("id"), "id"), video=videos.find(name, ("", "videos")),
        question=_text(r.get("question"), "question"), options=options,
        answer=_letter_of_index(correct, options) if correct is not None else None,
        task_type=_opt_str(r.get("question_category")),
        duration_class=group_label or duration_bucket(duration), source_format="longvideobench",
        duration=duration)


def _read_longvideobench(path: Path, video_root) -> Iterator[_Row]:
    videos = _Videos(_roots(video_root, path.parent, path.parent.parent))
    for i, r in enumerate(_read_records(path)):
        bad = _bad(r)
        yield (i, None, bad) if bad else (i, _opt_str(r.get("id")), _guard(_lvb_item, r, videos))


# --- EgoSchema (github.com/egoschema/EgoSchema: questions.json [{q_uid, google_drive_id, question,
# "option 0".."option 4"}], subset_answers.json {q_uid: index} for the 500-question public subset;
# videos are <q_uid>.mp4). Questions outside the subset are reported as skipped (no-answer).

def _egoschema_item(r: dict, answers: Mapping[str, Any], videos: _Videos) -> EvalItem:
    uid = _text(r.get("q_uid"), "q_uid")
    gold = r.get("correct_answer", answers.get(uid))
    if gold is None:
        raise _Skip("no-answer", "not in the public answer subset (subset_answers.json)")
    options = _options(r[f"option {k}"] for k in range(5) if f"option {k}" in r)
    return EvalItem(
        id=uid, video=videos.find(uid, ("", "videos")), question=_text(r.get("question"), "question"),
        options=options, answer=_letter_of_index(gold, options), source_format="egoschema")


def _read_egoschema(path: Path, video_root) -> Iterator[_Row]:
    folder = path if path.is_dir() else path.parent
    qfile = folder / "questions.json" if path.is_dir() or path.name == "subset_answers.json" else path
    afile = folder / "subset_answers.json"
    records = _read_json_records(qfile)
    answers: Mapping[str, Any] = {}
    if afile.is_file():
        answers = json.loads(afile.read_text(encoding="utf-8"))
    elif not any(isinstance(r, dict) and "correct_answer" in r for r in records):
        raise EvalDataError("EgoSchema needs subset_answers.json next to questions.json", str(qfile))
    videos = _Videos(_roots(video_root, folder, folder / "videos"))
    for i, r in enumerate(records):
        bad = _bad(r)
        yield (i, None, bad) if bad else (i, _opt_str(r.get("q_uid")), _guard(_egoschema_item, r, answers, videos))


# --- NExT-QA multiple choice (github.com/doc-doc/NExT-QA dataset/nextqa/val.csv, test.csv):
# video,frame_count,width,height,question,answer (index),qid,type,a0..a4; videos are found through
# map_vid_vidorID.json ({video: "<dir>/<vidorID>"}) when it sits in the video root or beside the CSV.

def _nextqa_item(r: dict, qid: str | None, mapping: Mapping[str, str], videos: _Videos) -> EvalItem:
    options = _options(r[f"a{k}"] for k in range(5) if r.get(f"a{k}") not in (None, ""))
    vid = _text(r.get("video"), "video")
    return EvalItem(
        id=_text(qid, "qid"), video=videos.find(mapping.get(vid, vid), ("", "NExTVideo", "videos")),
        question=_text(r.get("question"), "question"), options=options,
        answer=_letter_of_index(r.get("answer"), options), task_type=_opt_str(r.get("type")),
        source_format="nextqa")


def _read_nextqa(path: Path, video_root) -> Iterator[_Row]:
    roots = _roots(video_root, path.parent, path.parent.parent)
    mapping: dict[str, str] = {}
    for folder in [*roots, path.parent, path.parent.parent]:
        mfile = folder / "map_vid_vidorID.json"
        if mfile.is_file():
            mapping = json.loads(mfile.read_text(encoding="utf-8"))
            break
    videos = _Videos(roots)
    with path.open(newline="", encoding="utf-8-sig") as f:
        rows = list(csv.DictReader(f))
    for i, r in enumerate(rows):
        vid, q = _opt_str(r.get("video")), _opt_str(r.get("qid"))
        qid = f"{vid}_{q}" if vid and q else None
        yield i, qid, _guard(_nextqa_item, r, qid, mapping, videos)


_READERS: dict[str, Callable[[Path, Any], Iterator[_Row]]] = {
    "native": _read_native, "lv-haystack": _read_lv_haystack, "videomme": _read_videomme,
    "mlvu": _read_mlvu, "longvideobench": _read_longvideobench, "egoschema": _read_egoschema,
    "nextqa": _read_nextqa,
}


def load_items(path: str | os.PathLike, fmt: str = "auto", video_root: str | os.PathLike | None = None, *,
               limit: int | None = None, skipped: list[Skipped] | None = None) -> list[EvalItem]:
    """Read a benchmark's annotations as :class:`EvalItem` s, in file order, at most ``limit`` of them.

    ``fmt`` is one of :data:`FORMATS` or ``"auto"``. Videos are looked up under ``video_root`` (by
    default next to the annotation file) in the benchmark's usual sub-folders; bare ids get the usual
    extensions. Records that cannot be used (no video file, no published answer, malformed) are
    appended to ``skipped`` with a reason; without a ``skipped`` list the first one raises.
    """
    p = Path(os.path.expanduser(str(path)))
    if not p.exists():
        raise EvalDataError("no such file", str(p))
    if limit is not None and limit < 0:
        raise ValueError("limit must be >= 0")
    fmt = sniff_format(p) if fmt == "auto" else fmt
    if fmt not in _READERS:
        raise EvalDataError(f"unknown format {fmt!r} (choose from: auto, {', '.join(FORMATS)})")
    items: list[EvalItem] = []
    seen: set[str] = set()
    if limit == 0:
        return items
    for pos, qid, got in _READERS[fmt](p, video_root):
        if isinstance(got, EvalItem) and got.id in seen:
            got = _Skip("duplicate-id", f"id {got.id!r} appears earlier in the file")
        if isinstance(got, _Skip):
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


# --------------------------------------------------------------------------------------------------
# Metrics


def _distance(t: float, interval: tuple[float, float]) -> float:
    s, e = interval
    return max(s - t, 0.0, t - e)


def temporal_metrics(keyframe_times: Sequence[float], evidence: Sequence[tuple[float, float]],
                     delta: float = DEFAULT_DELTA_S) -> dict:
    """Keyframes (seconds) against evidence intervals (seconds).

    precision: share of keyframes within ``delta`` s of some interval; recall: share of intervals with a
    keyframe within ``delta`` s; f1 of the two; hit: some keyframe inside an interval (ends included, no
    tolerance). All None when there is no evidence; 0 when there are no keyframes.
    """
    ev = [(float(s), float(e)) for s, e in evidence]
    times = [float(t) for t in keyframe_times]
    out = {"precision": None, "recall": None, "f1": None, "hit": None, "delta": float(delta),
           "keyframes": len(times), "evidence": len(ev)}
    if not ev:
        return out
    if not times:
        return {**out, "precision": 0.0, "recall": 0.0, "f1": 0.0, "hit": False}
    near = [min(_distance(t, iv) for iv in ev) <= delta for t in times]
    covered = [min(_distance(t, iv) for t in times) <= delta for iv in ev]
    p = sum(near) / len(times)
    r = sum(covered) / len(ev)
    f1 = 2 * p * r / (p + r) if p + r > 0 else 0.0
    hit = any(s <= t <= e for t in times for s, e in ev)
    return {**out, "precision": p, "recall": r, "f1": f1, "hit": hit}


def is_correct(answer: Any, gold: str | None, options: Sequence[str]) -> bool | None:
    """Multiple choice: the reply picks the gold letter (see :func:`parse_choice`). Open questions:
    the same text up to case, spacing and a final period. None when either side is missing."""
    if answer is None or gold is None:
        return None
    if options:
        return parse_choice(answer, options) == gold
    return _norm_text(answer) == _norm_text(gold)


def accuracy_by(records: Iterable[Mapping], key: str) -> dict[str, tuple[int, int]]:
    """``{group: (correct, graded)}`` over result lines with a verdict, grouped by ``record[key]``
    (lines without that key count under ``"unknown"``)."""
    out: dict[str, list[int]] = {}
    for r in records:
        if r.get("error") or r.get("correct") is None:
            continue
        group = str(r.get(key) or "unknown")
        c = out.setdefault(group, [0, 0])
        c[0] += bool(r["correct"])
        c[1] += 1
    return {k: (v[0], v[1]) for k, v in sorted(out.items())}


def accuracy(records: Iterable[Mapping]) -> float | None:
    """Share of graded result lines that are correct; None when none is graded."""
    graded = [bool(r["correct"]) for r in records if not r.get("error") and r.get("correct") is not None]
    return sum(graded) / len(graded) if graded else None


# --------------------------------------------------------------------------------------------------
# Baselines' frame choice


def uniform_times(duration: float, k: int) -> list[float]:
    """K evenly spaced times (seconds): the centres of K equal segments of ``[0, duration]``."""
    if not (isinstance(duration, (int, float)) and math.isfinite(duration) and duration > 0):
        raise ValueError(f"duration must be a positive number of seconds, got {duration!r}")
    if k < 0:
        raise ValueError("k must be >= 0")
    return [(i + 0.5) * duration / k for i in range(k)]


def topk_indices(scores: Sequence[float], k: int) -> list[int]:
    """Indexes of the K highest scores (ties: the earlier frame), returned in time order. NaN ranks last."""
    if k < 0:
        raise ValueError("k must be >= 0")

    def rank(i: int) -> tuple[int, float, int]:
        s = float(scores[i])
        return (1, 0.0, i) if math.isnan(s) else (0, -s, i)

    return sorted(sorted(range(len(scores)), key=rank)[:k])


# --------------------------------------------------------------------------------------------------
# Results file (JSON Lines, one line per (item id, method)) and the runner


def _scan(path: Path) -> tuple[list[dict], int]:
    """Complete lines and the byte length they span; a partial last line (killed mid-write) is left out."""
    data = path.read_bytes()
    records: list[dict] = []
    end = 0
    lines = data.split(b"\n")
    for n, raw in enumerate(lines):
        last = n == len(lines) - 1
        if last and raw == b"":
            break
        try:
            rec = json.loads(raw) if raw.strip() else None
        except (json.JSONDecodeError, UnicodeDecodeError):
            if last:
                break  # truncated by a kill: dropped, and cut off before the next append
            raise EvalDataError(f"line {n + 1} is not JSON; not a results file, or damaged", str(path)) from None
        if rec is not None and not (isinstance(rec, dict) and "id" in rec and "method" in rec):
            raise EvalDataError(f"line {n + 1} is not a result line (needs id and method)", str(path))
        if last:  # complete JSON without its newline: keep it, the newline is added before appending
            if rec is not None:
                records.append(rec)
            end = len(data)
            break
        if rec is not None:
            records.append(rec)
        end += len(raw) + 1
    return records, end


def read_results(path: str | os.PathLike) -> list[dict]:
    """Every complete line of a results file, in order (a truncated last line is ignored)."""
    p = Path(path)
    return _scan(p)[0] if p.exists() else []


def latest_results(records: Iterable[Mapping]) -> dict[tuple[str, str], Mapping]:
    """The last line per (id, method): a retried item's success replaces its earlier error line."""
    out: dict[tuple[str, str], Mapping] = {}
    for r in records:
        out[(str(r["id"]), str(r["method"]))] = r
    return out


def _jsonable(x: Any) -> Any:
    if isinstance(x, float):
        return x if math.isfinite(x) else None
    if isinstance(x, (str, int, bool)) or x is None:
        return x
    if isinstance(x, Mapping):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if hasattr(x, "tolist"):  # numpy scalars and arrays
        return _jsonable(x.tolist())
    if isinstance(x, os.PathLike):
        return os.fspath(x)
    return str(x)


def _keyframes(raw: Any, fps: float | None) -> list[dict]:
    if not isinstance(raw, (list, tuple)):
        raise ValueError(f"runner result 'keyframes' must be a list, got {type(raw).__name__}")
    out = []
    for k in raw:
        kf = dict(k) if isinstance(k, Mapping) else {"t": k, "score": None}
        t = _float_or_none(kf.get("t"))
        if t is None or t < 0:
            raise ValueError(f"keyframe time must be seconds >= 0, got {kf.get('t')!r}")
        kf["t"] = t
        kf.setdefault("score", None)
        if fps and kf.get("frame") is None:
            kf["frame"] = frame_index(t, fps)
        out.append(kf)
    return sorted(out, key=lambda k: k["t"])


def _result_line(item: EvalItem, method: str, result: Any, delta: float) -> dict:
    base = {
        "id": item.id, "method": method, "video": item.video, "source_format": item.source_format,
        "task_type": item.task_type, "gold": item.answer, "options": list(item.options),
        "evidence": [list(iv) for iv in item.evidence],
    }
    if not isinstance(result, Mapping):
        raise ValueError(f"runner must return a dict, got {type(result).__name__}")
    if "keyframes" not in result:
        raise ValueError("runner result has no 'keyframes'")
    fps = _float_or_none(result.get("fps")) or item.fps
    keyframes = _keyframes(result["keyframes"], fps)
    duration = _float_or_none(result.get("duration")) or item.duration
    answer = result.get("answer")
    metrics = temporal_metrics([k["t"] for k in keyframes], item.evidence, delta)
    line = {**dict(result), **base}
    line.update({
        "fps": fps, "duration": duration,
        "duration_class": item.duration_class or duration_bucket(duration),
        "keyframes": keyframes, "answer": answer, "correct": is_correct(answer, item.answer, item.options),
        "frames_scored": result.get("frames_scored"), "timings": dict(result.get("timings") or {}),
        "settings": dict(result.get("settings") or {}),
        "delta": delta, "precision": metrics["precision"], "recall": metrics["recall"],
        "f1": metrics["f1"], "hit": metrics["hit"], "error": None,
    })
    return line


def _error_line(item: EvalItem, method: str, exc: BaseException) -> dict:
    return {"id": item.id, "method": method, "video": item.video, "source_format": item.source_format,
            "task_type": item.task_type, "duration_class": item.duration_class, "gold": item.answer,
            "fps": item.fps, "evidence": [list(iv) for iv in item.evidence],
            "error": f"{type(exc).__name__}: {exc}"}


Runner = Callable[[EvalItem, str], Mapping]


def run_eval(items: Sequence[EvalItem], methods: Sequence[str], runner: Runner, out_path: str | os.PathLike, *,
             resume: bool = True, progress: Callable[[int, int, dict], None] | None = None,
             delta: float = DEFAULT_DELTA_S) -> EvalSummary:
    """Run ``runner(item, method)`` for every pair not already finished in ``out_path``; summarise the file.

    The runner returns a dict with ``keyframes`` ([{t, score}], seconds), ``answer`` (None when only
    searching), ``timings`` (ms; ``search_ms`` is summarised), ``settings``, ``frames_scored``, and may
    add ``fps`` and ``duration`` (seconds) of the video it read. Each pair becomes one JSON line,
    flushed and fsynced. An exception from the runner becomes an error line and the run goes on; error
    lines are retried on resume. ``resume=False`` starts the file over.
    """
    methods = list(methods)
    if not methods or len(set(methods)) != len(methods) or not all(isinstance(m, str) and m for m in methods):
        raise ValueError(f"methods must be distinct non-empty names, got {methods!r}")
    ids = Counter(it.id for it in items)
    dup = [i for i, n in ids.items() if n > 1]
    if dup:
        raise EvalDataError(f"duplicate item ids: {', '.join(dup[:5])}")
    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    done: set[tuple[str, str]] = set()
    if resume and out.exists():
        records, end = _scan(out)
        with out.open("r+b") as f:  # drop a partial last line; end the last complete one with "\n"
            f.truncate(end)
            if end:
                f.seek(end - 1)
                if f.read(1) != b"\n":
                    f.write(b"\n")
        done = {key for key, r in latest_results(records).items() if not r.get("error")}
    elif out.exists():
        out.write_bytes(b"")
    total = len(items) * len(methods)
    finished = sum(1 for it in items for m in methods if (it.id, m) in done)
    with out.open("a", encoding="utf-8") as f:
        for item in items:
            for method in methods:
                if (item.id, method) in done:
                    continue
                try:
                    line = _result_line(item, method, runner(item, method), delta)
                except Exception as e:  # noqa: BLE001 - a failed item is recorded, never stops the run
                    line = _error_line(item, method, e)
                f.write(json.dumps(_jsonable(line), ensure_ascii=False, allow_nan=False) + "\n")
                f.flush()
                os.fsync(f.fileno())
                finished += 1
                if progress is not None:
                    progress(finished, total, line)
    return summarize(out, methods=methods, delta=delta)


# --------------------------------------------------------------------------------------------------
# Summary


@dataclass(frozen=True)
class MethodSummary:
    method: str
    items: int  # distinct ids with a result line
    errors: int  # whose latest line is an error
    answered: int  # with a non-empty answer
    graded: int  # answered and with a gold answer
    correct: int
    accuracy: float | None
    by_task_type: dict[str, tuple[int, int]] = field(default_factory=dict)  # {task: (correct, graded)}
    by_duration_class: dict[str, tuple[int, int]] = field(default_factory=dict)
    with_evidence: int = 0
    precision: float | None = None  # means over items with evidence, at the summary's delta
    recall: float | None = None
    f1: float | None = None
    hit_rate: float | None = None
    frames_scored: float | None = None  # mean
    search_ms: float | None = None  # mean of timings["search_ms"]


@dataclass(frozen=True)
class EvalSummary:
    methods: tuple[MethodSummary, ...]
    delta: float

    def method(self, name: str) -> MethodSummary:
        for m in self.methods:
            if m.method == name:
                return m
        raise KeyError(name)

    def as_dict(self) -> dict:
        return asdict(self)


def _mean(values: Iterable[Any]) -> float | None:
    vals = [float(v) for v in values if isinstance(v, (int, float)) and not isinstance(v, bool)
            and math.isfinite(float(v))]
    return sum(vals) / len(vals) if vals else None


def summarize_records(records: Iterable[Mapping], *, methods: Sequence[str] = (),
                      delta: float = DEFAULT_DELTA_S) -> EvalSummary:
    """Per-method summary of result lines (the latest line per (id, method) counts)."""
    latest = latest_results(records)
    order = list(dict.fromkeys([*methods, *(m for _, m in latest)]))
    out = []
    for method in order:
        lines = [r for (_, m), r in latest.items() if m == method]
        ok = [r for r in lines if not r.get("error")]
        answered = [r for r in ok if r.get("answer") not in (None, "")]
        graded = [r for r in ok if r.get("correct") is not None]
        with_ev = [r for r in ok if r.get("evidence")]
        metrics = [temporal_metrics([k["t"] for k in r.get("keyframes") or []],
                                    [tuple(iv) for iv in r["evidence"]], delta) for r in with_ev]
        out.append(MethodSummary(
            method=method, items=len(lines), errors=len(lines) - len(ok), answered=len(answered),
            graded=len(graded), correct=sum(bool(r["correct"]) for r in graded), accuracy=accuracy(ok),
            by_task_type=accuracy_by(ok, "task_type"), by_duration_class=accuracy_by(ok, "duration_class"),
            with_evidence=len(with_ev),
            precision=_mean(m["precision"] for m in metrics), recall=_mean(m["recall"] for m in metrics),
            f1=_mean(m["f1"] for m in metrics), hit_rate=_mean(float(m["hit"]) for m in metrics),
            frames_scored=_mean(r.get("frames_scored") for r in ok),
            search_ms=_mean((r.get("timings") or {}).get("search_ms") for r in ok)))
    return EvalSummary(methods=tuple(out), delta=float(delta))


def summarize(path: str | os.PathLike, *, methods: Sequence[str] = (), delta: float = DEFAULT_DELTA_S) -> EvalSummary:
    """Summary of a whole results file, so a resumed run reports what an uninterrupted one would."""
    return summarize_records(read_results(path), methods=methods, delta=delta)


def _pct(c: int, n: int) -> str:
    return f"{100.0 * c / n:.1f}% ({c}/{n})" if n else "-"


def _num(v: float | None, fmt: str) -> str:
    return "-" if v is None else format(v, fmt)


def format_table(summary: EvalSummary) -> str:
    """One table, one column per method (e.g. uniform | topk | vqa), one row per measure."""
    ms = summary.methods
    d = f"{summary.delta:g}s"
    rows: list[tuple[str, list[str]]] = [
        ("items", [str(m.items) for m in ms]),
        ("errors", [str(m.errors) for m in ms]),
        ("answered", [str(m.answered) for m in ms]),
        ("accuracy", [_pct(m.correct, m.graded) for m in ms]),
    ]
    for key, label in (("by_task_type", "task"), ("by_duration_class", "duration")):
        groups = sorted({g for m in ms for g in getattr(m, key)})
        for g in groups:
            rows.append((f"  {label}: {g}", [_pct(*getattr(m, key).get(g, (0, 0))) for m in ms]))
    rows += [
        ("with evidence", [str(m.with_evidence) for m in ms]),
        (f"precision@{d}", [_num(m.precision, ".3f") for m in ms]),
        (f"recall@{d}", [_num(m.recall, ".3f") for m in ms]),
        (f"F1@{d}", [_num(m.f1, ".3f") for m in ms]),
        ("hit rate", ["-" if m.hit_rate is None else f"{100 * m.hit_rate:.1f}%" for m in ms]),
        ("frames scored (mean)", [_num(m.frames_scored, ".1f") for m in ms]),
        ("search ms (mean)", [_num(m.search_ms, ".1f") for m in ms]),
    ]
    header = ["", *(m.method for m in ms)]
    widths = [max(len(header[0]), *(len(r[0]) for r in rows))]
    for j in range(len(ms)):
        widths.append(max(len(header[j + 1]), *(len(r[1][j]) for r in rows)))

    def fmt(cells: Sequence[str]) -> str:
        first = cells[0].ljust(widths[0])
        rest = [c.rjust(w) for c, w in zip(cells[1:], widths[1:], strict=True)]
        return "  ".join([first, *rest]).rstrip()

    lines = [fmt(header), fmt(["-" * w for w in widths])]
    lines += [fmt([label, *cells]) for label, cells in rows]
    return "\n".join(lines)
