"""The pure prompt core shared by every answerer: labels, context, options, letter parsing, citations."""

from __future__ import annotations

import math
from collections.abc import Sequence

from pipelines.answerers.base import Answer, AnswerRequest, ContextLine
from pipelines.answerers.support import NOT_FOUND, assess, cite_line, label, line_matches
from pipelines.question import content_words as words
from pipelines.question import letters, option_texts, parse_choice

PROMPT_TEMPLATE = "frames-context-question/v1"
SOURCE_LABELS = {"speech": "Speech", "screen": "On screen", "caption": "Scene"}
MC_INSTRUCTION = "Answer with the option's letter from the given choices directly."
OPEN_INSTRUCTION = "Answer the question briefly."

# --- pure prompt core ---------------------------------------------------------------------------------

def fmt_time(t: float) -> str:
    return f"{t:.1f} s"


def select_context(lines: Sequence[ContextLine], query: str, *, max_lines: int = 40,
                   max_chars: int = 4000) -> list[ContextLine]:
    """The lines most related to the query (word overlap; ties keep the given order), in time order."""
    if len(lines) <= max_lines and sum(len(c.text) for c in lines) <= max_chars:
        return sorted(lines, key=lambda c: (c.start, c.end))
    q = words(query)
    ranked = sorted(range(len(lines)), key=lambda i: (-len(q & words(lines[i].text)), i))
    keep, chars = [], 0
    for i in ranked:
        if len(keep) >= max_lines or chars + len(lines[i].text) > max_chars:
            break
        keep.append(lines[i])
        chars += len(lines[i].text)
    return sorted(keep, key=lambda c: (c.start, c.end))


def frame_label(i: int, t: float) -> str:
    return f"Frame {i + 1} at {fmt_time(t)}:"


def closeup_label(i: int, t: float) -> str:
    """The label of a close-up of frame ``i`` (0-based) at ``t``: the region that matched, at a higher resolution."""
    return f"Close-up of frame {i + 1} at {fmt_time(t)} (the region that matched):"


def frame_labels(req: AnswerRequest) -> list[str]:
    """What the model reads before each frame: the request's own labels, else "Frame i at t:"."""
    return list(req.labels) if req.labels is not None else [frame_label(i, t) for i, t in enumerate(req.timestamps)]


def render_context(lines: Sequence[ContextLine]) -> str:
    return "\n".join(f"[{c.start:.1f}-{c.end:.1f} s] {SOURCE_LABELS.get(c.source, c.source.title())}: {c.text}"
                     for c in lines)


def question_block(question: str, options: Sequence[str]) -> str:
    parts = [f"Question: {question.strip()}"]
    if options:
        parts.append("Options:")
        parts += [f"{letter}. {text}" for letter, text in zip(letters(len(options)), option_texts(options),
                                                              strict=False)]
        parts.append(MC_INSTRUCTION)
    else:
        parts.append(OPEN_INSTRUCTION)
    return "\n".join(parts)


def prompt_body(req: AnswerRequest, context: Sequence[ContextLine]) -> str:
    """The text after the frames: timed context lines, the question, lettered options, the answer format."""
    parts = []
    if context:
        parts.append("Context from the video (time ranges in seconds):\n" + render_context(context))
    parts.append(question_block(req.question, req.options))
    return "\n\n".join(parts)


def query_of(req: AnswerRequest) -> str:
    return " ".join([req.question, *req.options])


def choice_text_of(choice: str | None, options: Sequence[str]) -> str | None:
    if choice is None:
        return None
    return option_texts(options)[letters(len(options)).index(choice)]


def top_frames(timestamps: Sequence[float], budgets: Sequence[int] | None, k: int = 3) -> list[float]:
    """The frames given the most pixels (the most relevant, as the search ranked them); all if no budgets."""
    if not budgets or len(budgets) != len(timestamps):
        return sorted(timestamps)
    order = sorted(range(len(timestamps)), key=lambda i: (-budgets[i], i))
    out: list[float] = []
    for i in order:  # a frame and its close-up are one moment
        if timestamps[i] not in out and len(out) < k:
            out.append(timestamps[i])
    return sorted(out)


def cite(answer_text: str, question: str, context: Sequence[ContextLine], timestamps: Sequence[float],
         budgets: Sequence[int] | None = None) -> list[float]:
    """Start time of the one line the answer rests on (the line holding most of the answer's own words,
    see ``support.cite_line``), else the top frames."""
    line = cite_line(answer_text, question, context)
    return [line.start] if line is not None else top_frames(timestamps, budgets)


def finish(req: AnswerRequest, text: str, *, prompt: str, context: Sequence[ContextLine],
           frames_seen: Sequence[float], generated_tokens: int, choice: str | None = None,
           frame_sizes: Sequence[tuple[int, int]] = (), sees: bool | None = None, model_p: float | None = None,
           cited_line: ContextLine | None = None, copied: bool = False, model_text: str | None = None,
           why_blind: str = "the answerer reads text only", signals: dict | None = None) -> Answer:
    """Turn raw model text into an Answer: choice letter, its text, the line it rests on, and whether
    what the model was given supports it (``support.assess``). ``sees``: the model looked at the frames
    with real weights (default: it was given frames)."""
    text = text.strip()
    if choice is None:
        choice = parse_choice(text, req.options)
    ctext = choice_text_of(choice, req.options)
    said = f"{text} {ctext or ''}"
    matches = line_matches(req.question + (f" {ctext}" if ctext else ""), req.context, req.relevance)
    if cited_line is None:
        cited_line = cite_line(said, req.question, context, matches)
    cited = [cited_line.start] if cited_line is not None else top_frames(req.timestamps, req.pixel_budgets)
    seeing = bool(frames_seen) if sees is None else sees
    verdict = assess(req.question, said, context, cited_line, matches=matches, sees=seeing, model_p=model_p,
                     copied=copied, why_blind=why_blind)
    return Answer(text=text, choice=choice, choice_text=ctext, cited=cited, prompt_template=PROMPT_TEMPLATE,
                  prompt=prompt, context_used=list(context), frames_seen=list(frames_seen),
                  frame_sizes=[tuple(s) for s in frame_sizes], generated_tokens=generated_tokens,
                  abstained=verdict.abstained, reason=verdict.reason, confidence=verdict.confidence,
                  signals={**verdict.signals, **(signals or {})},
                  model_text=text if model_text is None else model_text.strip())


def answer_fields(ans: Answer) -> dict:
    """The ``answer`` object of `vqa ask --json`: what to tell the user (the abstention when the evidence
    does not support the model's reply), the citations, and the verdict with its signals."""
    shown = not ans.abstained
    return {"text": ans.text if shown else NOT_FOUND, "choice": ans.choice if shown else None,
            "choice_text": ans.choice_text if shown else None, "cited": [round(c, 3) for c in ans.cited],
            "abstained": ans.abstained, "reason": ans.reason, "confidence": ans.confidence,
            "confidence_label": None if ans.confidence is None else label(ans.confidence),
            "model_text": ans.model_text or ans.text, "model_choice": ans.choice, "signals": ans.signals}


def fit_to_budget(image, budget: int | None, factor: int = 1):
    """Resize (keeping the aspect ratio) so width*height <= budget, sides multiples of ``factor``."""
    if not budget:
        return image
    w, h = image.size
    scale = min(1.0, math.sqrt(budget / float(w * h)))
    nw = max(factor, int(w * scale) // factor * factor)
    nh = max(factor, int(h * scale) // factor * factor)
    while nw * nh > max(budget, factor * factor):
        if nw >= nh:
            nw -= factor
        else:
            nh -= factor
    return image if (nw, nh) == (w, h) else image.resize((nw, nh))


def budgets_of(req: AnswerRequest) -> list[int | None]:
    return list(req.pixel_budgets) if req.pixel_budgets and req.frames else [None] * len(req.frames)


