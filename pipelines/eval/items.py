"""What a benchmark question becomes (:class:`EvalItem`), why a record was left out (:class:`Skipped`),
and the small normalisers every layout shares: option letters, gold answers, evidence intervals,
frame indexes and duration classes.

Units are explicit everywhere: times are seconds (``t``, evidence ``[start, end]``), frame indexes are
integers and always travel with the ``fps`` they were counted at.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from pipelines import defaults
from pipelines.errors import VqaError
from pipelines.question import exact_choice, normalize_text, strip_option_label

# Duration classes when a benchmark gives a length in seconds but no class of its own (documented in
# `vqa eval --help`): short < 4 min, medium 4-20 min, long > 20 min.
SHORT_MAX_S = 240.0
MEDIUM_MAX_S = 1200.0

DEFAULT_DELTA_S = defaults.DELTA_S  # tolerance of the temporal metrics, as in LV-Haystack's evaluation (5 s)

LETTERS = "ABCDEFGHIJ"  # at most ten options per question


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
    subtitles: str | None = None  # the benchmark's subtitle file for the video (.srt, .vtt, or LongVideoBench JSON)
    subtitle_offset: float = 0.0  # seconds subtracted from the subtitle file's times (LongVideoBench's clips)


@dataclass(frozen=True)
class Skipped:
    """A record that was not turned into an item, and why (``reason`` is a short code)."""

    record: int  # 0-based position in the file (CSV row, JSON record, question of a nested record)
    id: str | None
    reason: str  # video-not-found | no-answer | bad-answer | bad-record | duplicate-id | no-fps
    detail: str


class Skip(Exception):
    """Raised by a layout's item builder: the record becomes a :class:`Skipped` with this reason."""

    def __init__(self, reason: str, detail: str):
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


# --------------------------------------------------------------------------------------------------
# Options and answers

def strip_letter(option: str, index: int) -> str:
    """``"B. Blue shirts."`` -> ``"Blue shirts."`` when the prefix is the letter of its position."""
    return strip_option_label(option, index)


def options_of(values: Iterable[Any]) -> tuple[str, ...]:
    opts = tuple(strip_letter(v, i) for i, v in enumerate(values))
    if len(opts) > len(LETTERS):
        raise Skip("bad-record", f"{len(opts)} options; at most {len(LETTERS)} are supported")
    return opts


def letter_of_index(value: Any, options: Sequence[str]) -> str:
    try:
        i = int(value)
    except (TypeError, ValueError):
        raise Skip("bad-answer", f"answer index {value!r} is not a number") from None
    if not 0 <= i < len(options) or float(value) != i:
        raise Skip("bad-answer", f"answer index {value!r} outside the {len(options)} options")
    return LETTERS[i]


norm_text = normalize_text


def parse_choice(answer: Any, options: Sequence[str]) -> str | None:
    """The letter a reply picks exactly: one option's text, ``"B"``, ``"b"``, ``"(B)"``, ``"B. text"``,
    or an index; None when it picks none of the options (:func:`pipelines.question.exact_choice`)."""
    return exact_choice(answer, options)


def gold_letter(answer: Any, options: Sequence[str]) -> str:
    """A published multiple-choice answer (letter, option text, or index) as a letter."""
    if isinstance(answer, int) and not isinstance(answer, bool):
        return letter_of_index(answer, options)
    letter = parse_choice(answer, options)
    if letter is None:
        raise Skip("bad-answer", f"answer {answer!r} is neither a letter nor one of the options")
    return letter


# --------------------------------------------------------------------------------------------------
# Evidence, frames and durations


def _interval(value: Any) -> tuple[float, float]:
    try:
        s, e = (float(v) for v in value)
    except (TypeError, ValueError):
        raise Skip("bad-record", f"evidence {value!r} is not [start, end] in seconds") from None
    if not (math.isfinite(s) and math.isfinite(e)) or s < 0 or e < s:
        raise Skip("bad-record", f"evidence [{s}, {e}] is not a valid interval in seconds")
    return s, e


def parse_evidence(value: Any) -> tuple[tuple[float, float], ...]:
    """``[[start, end], ...]`` or a single ``[start, end]`` (seconds), sorted by start."""
    if value is None or value == []:
        return ()
    if isinstance(value, (list, tuple)) and len(value) == 2 and all(
            isinstance(v, (int, float)) and not isinstance(v, bool) for v in value):
        return (_interval(value),)
    if not isinstance(value, (list, tuple)):
        raise Skip("bad-record", f"evidence {value!r} is not a list of [start, end]")
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


def float_or_none(value: Any) -> float | None:
    try:
        f = float(value)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def text_of(value: Any, what: str) -> str:
    if value is None or not str(value).strip():
        raise Skip("bad-record", f"no {what}")
    return str(value).strip()


def opt_str(v: Any) -> str | None:
    return None if v is None or str(v).strip() == "" else str(v).strip()
