"""The span that answers a short factual question (a number, a name, a day), copied from the line that
matches the question best: small text models paraphrase ("press 2" became "press 1"), a line does not.

Candidates of the kind the question asks for (``support.answer_kind``) are taken from the lines that
match the question best, each read with the lines shown or said with it; the one the question's words
pull hardest wins (a rarer word pulls harder, a nearer one too, a word just before the span more than one
after it), then the one in the line that matches best on its own, then the one the model named.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from pipelines.answerers.base import ContextLine
from pipelines.answerers.support import (
    _STOP,
    _TOKEN,
    NUMBER_WORDS,
    _w,
    answer_kind,
    block,
    embedding_match,
    grounded,
    lexical_match,
    question_terms,
    stem,
    terms,
    weights,
)

_NAME_SKIP = _STOP | {"press", "dial", "please", "thank", "thanks", "welcome", "congratulations", "yes", "oh",
                      "well", "okay", "ok", "today", "now", "like", "reading", "by", "mr", "mrs", "ms", "dr"}
_TITLES = {"mr", "mrs", "ms", "dr", "prof", "st", "capt"}
_CONNECT = {"of", "and", "the", "de", "van", "von", "da", "la"}
_WHEN = re.compile(r"\b(\d{1,2}(:\d\d)?\s*(am|pm|a\.m\.|p\.m\.)|\d{1,2}:\d\d|noon|midnight|dawn|dusk|morning|"
                   r"evening|tonight|tomorrow|yesterday|monday|tuesday|wednesday|thursday|friday|saturday|sunday|"
                   r"january|february|march|april|may|june|july|august|september|october|november|december)\b", re.I)
_NUMWORDS = "|".join(sorted(NUMBER_WORDS, key=len, reverse=True))
_NUMBER = re.compile(rf"\d+(?:[.:,\-]\d+)*|\b(?:{_NUMWORDS})(?:[ -](?:{_NUMWORDS}))*\b", re.I)


def _names(text: str) -> list[tuple[int, int, str]]:
    """Runs of capitalised words ("Mr. John Dashwood", "Sense and Sensibility"), without a leading
    sentence word such as "Today" or "Press"."""
    runs, run = [], []
    for m in re.finditer(r"[A-Za-z][\w'\-]*\.?", text):
        w = m.group()
        if run:
            prev = run[-1].group()
            joins = text[run[-1].end():m.start()] == " " and (
                not prev.endswith(".") or prev[:-1].lower() in _TITLES)
            if joins and (w[0].isupper() or w.lower() in _CONNECT):
                run.append(m)
                continue
        runs.append(run)
        run = [m] if w[0].isupper() else []
    runs.append(run)
    out = []
    for run in runs:
        while run and (run[0].group().rstrip(".").lower().removesuffix("'s") in _NAME_SKIP
                       or not run[0].group()[0].isupper()):
            run.pop(0)
        while run and not run[-1].group()[0].isupper():
            run.pop()
        if run:
            a = run[0].start()
            span = text[a:run[-1].end()]
            if span.endswith(".") and span[:-1].split()[-1].lower() not in _TITLES:
                span = span[:-1]
            span = re.sub(r"'s$", "", span)
            out.append((a, a + len(span), span))
    return out


def candidates(text: str, kind: str) -> list[tuple[int, int, str]]:
    """Spans of ``text`` that could answer a question of this kind: (start char, end char, span)."""
    if kind == "number":
        return [(m.start(), m.end(), m.group()) for m in _NUMBER.finditer(text)]
    if kind in ("when", "day"):
        found = [(m.start(), m.end(), m.group()) for m in _WHEN.finditer(text)]
        return [f for f in found if kind == "when" or not re.search(r"\d|noon|midnight", f[2], re.I)]
    if kind == "name":
        return _names(text)
    return []


def span_pulls(question: str, text: str, kind: str, wts: dict[str, float]) -> list[tuple[str, float]]:
    """Each candidate span of ``text`` with how strongly the question's words around it pull (a rarer word
    pulls harder, a nearer one too, and a word just before the span more than one after it)."""
    q = set(question_terms(question))
    cands = [c for c in candidates(text, kind) if not set(terms(c[2])) <= q]
    toks = [(m.start(), stem(m.group())) for m in _TOKEN.finditer(text)]
    out = []
    for a, b, span in cands:
        first = next((i for i, (p, _) in enumerate(toks) if p >= a), len(toks))
        after = next((i for i, (p, _) in enumerate(toks) if p >= b), len(toks))
        pull = 0.0
        for t in q:
            dists = [(first - i) if i < first else 1.5 * (i - after + 1) for i, (_, s) in enumerate(toks)
                     if s == t and not first <= i < after]
            if dists:
                pull += _w(wts, t) / min(dists)
        out.append((span, pull))
    return out


def mentions(text: str, span: str) -> bool:
    """``text`` holds ``span`` as whole words (a number word and its digits are the same number)."""
    t, s = terms(text), terms(span)
    return bool(s) and any(t[i:i + len(s)] == s for i in range(len(t) - len(s) + 1))


@dataclass
class Span:
    text: str
    line: ContextLine
    match: float
    pull: float


def find_span(question: str, lines: Sequence[ContextLine], matches: dict[ContextLine, float],
              model_text: str = "", relevance: dict[ContextLine, float] | None = None) -> Span | None:
    """For a short factual question, the span that answers it, copied from the lines that match the
    question best (with their blocks): the candidate the question's words pull hardest, then the one in
    the line that matches best on its own, then the one the model named."""
    kind = answer_kind(question)
    if not kind or not lines:
        return None
    wts = weights(lines)
    best_match = max(matches.get(c, 0.0) for c in lines)
    if best_match <= 0:
        return None
    q = question_terms(question)
    relevance = relevance or {}

    def own(c: ContextLine) -> float:
        return max(lexical_match(q, c.text, wts), embedding_match(relevance.get(c)))

    found: list[tuple[float, float, Span]] = []
    for i, c in enumerate(lines):
        m = matches.get(c, 0.0)
        if m < 0.9 * best_match:
            continue
        idx = block(lines, i)
        joined = " \n ".join(lines[j].text for j in idx)
        for span, pull in span_pulls(question, joined, kind, wts):
            holder = next((lines[j] for j in idx if mentions(lines[j].text, span)), c)
            named = 0.3 if model_text and mentions(model_text, span) else 0.0
            found.append((round(m, 2), pull + own(holder) + named, Span(span, holder, m, pull)))
    if not found:
        return None
    return max(found, key=lambda f: (f[0], f[1], -f[2].line.start))[2]


def consistent(model_text: str, span: Span, question: str, lines: Sequence[ContextLine]) -> bool:
    """The model's sentence says the span and nothing the lines do not (no other number, no new name)."""
    if not mentions(model_text, span.text) or grounded(model_text, question, lines) < 1.0:
        return False
    kind = answer_kind(question)
    if kind == "number":
        q = set(terms(question)) | set(terms(span.text))
        return not any(t.replace(".", "").replace(":", "").isdigit() and t not in q for t in terms(model_text))
    return True
