"""The pure prompt core shared by every answerer: labels, context, options, letter parsing, citations."""

from __future__ import annotations

import math
import re
from collections.abc import Sequence

from pipelines.answerers.base import Answer, AnswerRequest, ContextLine

PROMPT_TEMPLATE = "frames-context-question/v1"
SOURCE_LABELS = {"speech": "Speech", "screen": "On screen", "caption": "Scene"}
MC_INSTRUCTION = "Answer with the option's letter from the given choices directly."
OPEN_INSTRUCTION = "Answer the question briefly."

# --- pure prompt core ---------------------------------------------------------------------------------

def fmt_time(t: float) -> str:
    return f"{t:.1f} s"


def letters(n: int) -> str:
    return "ABCDEFGHIJKLMNOPQRSTUVWXYZ"[:n]


_LETTER_PREFIX = re.compile(r"^\s*\(?([A-Z])[\).:]\s+")


def option_texts(options: Sequence[str]) -> list[str]:
    """Options without a leading "A." / "(A)" when they already carry their own letter."""
    out = []
    for letter, opt in zip(letters(len(options)), options, strict=False):
        m = _LETTER_PREFIX.match(opt)
        out.append(opt[m.end():].strip() if m and m.group(1) == letter else opt.strip())
    return out


_STOP = set("""a an the is are was were be been being to of in on at for and or but not no what which who whom whose
how when where why does do did done it its this that these those there here with by from as into than then so
if about any all can could would should will shall may might must has have had i you he she we they me him her
us them my your his our their video shown show shows screen said say says see seen appear appears""".split())
_WORD = re.compile(r"[a-z0-9]+")


def words(text: str) -> set[str]:
    """Content words, lowercased, with a crude plural strip: the unit of overlap for context and citations."""
    out = set()
    for w in _WORD.findall(text.lower()):
        if w in _STOP:
            continue
        out.add(w[:-1] if len(w) > 3 and w.endswith("s") and not w.endswith("ss") else w)
    return out


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


_ARTICLE = re.compile(r"\s+[a-z]")  # "A man ..." / "I think ...": a word, not a letter


def _standalone(text: str, valid: str, start: int = 0) -> str | None:
    for m in re.finditer(rf"(?<![A-Za-z'])([{valid}])(?![A-Za-z'])", text[start:]):
        if not _ARTICLE.match(text, start + m.end()):
            return m.group(1)
    return None


def parse_choice(text: str, options: Sequence[str]) -> str | None:
    """The option letter an answer names: a bare or leading letter, "answer is X", the option's text,
    else the first standalone capital letter among the valid ones ("A" as an article does not count)."""
    if not options or not text:
        return None
    valid = letters(len(options))
    t = text.strip()
    m = re.fullmatch(r"\(?([A-Za-z])\)?[.:]?", t)
    if m and m.group(1).upper() in valid:
        return m.group(1).upper()
    m = re.match(r"\(?([A-Z])\)?(?=$|[.:,)]|\s)", t)
    if m and m.group(1) in valid and not _ARTICLE.match(t, m.end()):
        return m.group(1)
    m = re.search(r"(?i:answer|option|choice)\s*(?i:is)?\s*:?\s*\(?([A-Z])(?![A-Za-z'])", t)
    if m and m.group(1) in valid and not _ARTICLE.match(t, m.end()):
        return m.group(1)
    low = t.lower()
    hits = [(len(o), letter) for letter, o in zip(valid, option_texts(options), strict=False)
            if o and o.lower() in low]
    if hits:
        return max(hits)[1]
    return _standalone(t, valid)


def choice_text_of(choice: str | None, options: Sequence[str]) -> str | None:
    if choice is None:
        return None
    return option_texts(options)[letters(len(options)).index(choice)]


def top_frames(timestamps: Sequence[float], budgets: Sequence[int] | None, k: int = 3) -> list[float]:
    """The frames given the most pixels (the most relevant, as the search ranked them); all if no budgets."""
    if not budgets or len(budgets) != len(timestamps):
        return sorted(timestamps)
    order = sorted(range(len(timestamps)), key=lambda i: (-budgets[i], i))[:k]
    return sorted(timestamps[i] for i in order)


def cite(answer_text: str, question: str, context: Sequence[ContextLine], timestamps: Sequence[float],
         budgets: Sequence[int] | None = None) -> list[float]:
    """Start times of the context lines that share words with the answer (words new to the question first),
    else the top frames."""
    said = words(answer_text)
    new = said - words(question)
    hits = [c for c in context if words(c.text) & new] or [c for c in context if words(c.text) & said]
    if hits:
        return sorted({c.start for c in hits})
    return top_frames(timestamps, budgets)


def finish(req: AnswerRequest, text: str, *, prompt: str, context: Sequence[ContextLine],
           frames_seen: Sequence[float], generated_tokens: int, choice: str | None = None,
           frame_sizes: Sequence[tuple[int, int]] = ()) -> Answer:
    """Turn raw model text into an Answer: choice letter, its text, citations."""
    text = text.strip()
    if choice is None:
        choice = parse_choice(text, req.options)
    ctext = choice_text_of(choice, req.options)
    cited = cite(f"{text} {ctext or ''}", req.question, context, req.timestamps, req.pixel_budgets)
    return Answer(text=text, choice=choice, choice_text=ctext, cited=cited, prompt_template=PROMPT_TEMPLATE,
                  prompt=prompt, context_used=list(context), frames_seen=list(frames_seen),
                  frame_sizes=[tuple(s) for s in frame_sizes], generated_tokens=generated_tokens)


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


