"""A benchmark's subtitles as the speech channel of a run.

Each item may carry the benchmark's subtitle file (Video-MME ``subtitle/<videoID>.srt``, LongVideoBench
``subtitles/<id>_en.json`` with ``starting_timestamp_for_subtitles``, a native ``subtitles`` field).
:func:`prepared_subtitles` turns it into a plain SRT on the video's own clock (offset subtracted, cues
outside the clip dropped), stored by content under ``$VQA_HOME/subtitles/``, which the indexer reads
as the video's transcript instead of speech recognition (``IndexOptions.subtitles``). The "without
subtitles" setting gives every video an empty transcript, so no speech text reaches the answerer.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from pathlib import Path

from pipelines.eval.items import EvalDataError

_CLOCK = re.compile(r"^\s*(?:(\d+):)?(\d{1,2}):(\d{1,2}(?:[.,]\d+)?)\s*$")


def _seconds(value) -> float | None:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value) if math.isfinite(value) else None
    m = _CLOCK.match(str(value or ""))
    if not m:
        return None
    h, mi, s = m.groups()
    return int(h or 0) * 3600 + int(mi) * 60 + float(s.replace(",", "."))


def read_cues(path: str | Path, offset: float = 0.0, duration: float | None = None) -> list[tuple[float, float, str]]:
    """(start, end, text) in seconds of the video, from an .srt/.vtt file or LongVideoBench's JSON
    (``{"start": "HH:MM:SS.mmm", "end", "line"}`` or ``{"timestamp": [start, end], "text"}``, an end of
    null meaning "to the end of the video"); ``offset`` seconds are subtracted, and cues that end before
    0 or start after ``duration`` are dropped."""
    from pipelines.stages.transcribe import parse_subtitles

    p = Path(path)
    raw = p.read_bytes()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        text = raw.decode("latin-1")
    cues: list[tuple[float, float, str]] = []
    if p.suffix.lower() == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise EvalDataError(f"subtitles are not JSON ({e.msg} at line {e.lineno})", str(p)) from None
        if not isinstance(data, list):
            raise EvalDataError("subtitles: expected a JSON list of cues", str(p))
        for c in data:
            if not isinstance(c, dict):
                continue
            if "timestamp" in c:
                ts = c.get("timestamp") or [None, None]
                start, end = _seconds(ts[0]), _seconds(ts[1] if len(ts) > 1 else None)
                body = c.get("text")
            else:
                start, end, body = _seconds(c.get("start")), _seconds(c.get("end")), c.get("line")
            if start is None or not str(body or "").strip():
                continue
            if end is None:
                end = (duration + offset) if duration is not None else start
            cues.append((start, end, re.sub(r"\s+", " ", str(body)).strip()))
    else:
        cues = [(s.start, s.end, s.text) for s in parse_subtitles(text)]
    out = []
    for start, end, body in cues:
        s, e = start - offset, end - offset
        if e < 0 or (duration is not None and s > duration):
            continue
        s = max(s, 0.0)
        e = max(e, s) if duration is None else min(max(e, s), max(duration, s))
        out.append((round(s, 3), round(e, 3), body))
    return sorted(out)


def _stamp(t: float) -> str:
    ms = int(round(t * 1000))
    return f"{ms // 3_600_000:02d}:{ms // 60_000 % 60:02d}:{ms // 1000 % 60:02d},{ms % 1000:03d}"


def to_srt(cues: list[tuple[float, float, str]]) -> str:
    return "".join(f"{i}\n{_stamp(s)} --> {_stamp(e)}\n{text}\n\n" for i, (s, e, text) in enumerate(cues, 1))


def prepared_subtitles(path: str | None, offset: float = 0.0, duration: float | None = None) -> str:
    """The SRT file the indexer reads as the video's transcript: the benchmark's cues on the video's
    clock, or no cue at all (``path`` None: the "without subtitles" setting). Same cues, same file."""
    from pipelines.config import vqa_home

    cues = read_cues(path, offset, duration) if path else []
    text = to_srt(cues)
    folder = vqa_home() / "subtitles"
    folder.mkdir(parents=True, exist_ok=True)
    out = folder / f"{hashlib.blake2b(text.encode(), digest_size=10).hexdigest()}.srt"
    if not out.is_file():
        tmp = out.with_suffix(".tmp")
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(out)
    return str(out)
