"""The question text, in one place: words, option letters and the choice a reply names.

Search, answering and evaluation all read questions and options; they split them here, so that a
change of tokenisation or letter handling is made once:

- ``phrase_tokens(text)``: words and punctuation, in order (the unit of question decomposition);
- ``content_words(text)``: a set of lowercased content words with a crude plural strip (the unit of
  overlap between a question, an answer and timed lines);
- ``search_terms(text)``: the distinct lowercased words worth a full-text query, in order;
- ``normalize_text(text)``: case, spacing and a final period folded (exact-answer comparison);
- ``strip_option_label(option, index)``: ``"B. blue"`` -> ``"blue"`` when ``B`` is the option's own
  letter (``index=None``: any short label such as ``"a)"`` or ``"1."``);
- ``option_texts(options)``, ``letters(n)``;
- ``parse_choice(reply, options)``: the letter a free-form model reply names (lenient);
  ``exact_choice(answer, options)``: the letter an answer picks exactly (strict, for grading).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"


def letters(n: int) -> str:
    return LETTERS[:n]


# -- words ---------------------------------------------------------------------------------------------

_PHRASE_TOKEN = re.compile(r"[A-Za-z0-9][A-Za-z0-9'\-]*|[,;?!.&]")


def phrase_tokens(text: str) -> list[str]:
    """Words (letters, digits, inner apostrophes and hyphens) and the punctuation that ends a phrase."""
    return _PHRASE_TOKEN.findall(text)


# function words and the verbs of looking: never what a line or an answer is about
_CONTENT_STOP = frozenset("""a an the is are was were be been being to of in on at for and or but not no what which
who whom whose how when where why does do did done it its this that these those there here with by from as into
than then so if about any all can could would should will shall may might must has have had i you he she we they
me him her us them my your his our their video shown show shows screen said say says see seen appear
appears""".split())
_CONTENT_WORD = re.compile(r"[a-z0-9]+")


def content_words(text: str) -> set[str]:
    """Content words, lowercased, with a crude plural strip: the unit of overlap for context and citations."""
    out = set()
    for w in _CONTENT_WORD.findall(text.lower()):
        if w in _CONTENT_STOP:
            continue
        out.add(w[:-1] if len(w) > 3 and w.endswith("s") and not w.endswith("ss") else w)
    return out


_SEARCH_STOP = frozenset("""the a an is are was were what when where who which how why does do did of in on at to
for and or it this that video be by with from as there their they he she his her its say says said shown show shows
written screen appear appears about""".split())
_SEARCH_WORD = re.compile(r"[\w']+", re.UNICODE)


def search_terms(text: str) -> list[str]:
    """Distinct lowercased words of two letters or more, function words dropped (all kept when nothing
    else is left), in order of first appearance."""
    words = [w.lower() for w in _SEARCH_WORD.findall(text)]
    kept = [w for w in words if w not in _SEARCH_STOP and len(w) > 1] or [w for w in words if len(w) > 1]
    return list(dict.fromkeys(kept))


def normalize_text(s: Any) -> str:
    """Case, runs of spaces and a final period folded: ``" Blue  shirts. "`` -> ``"blue shirts"``."""
    return re.sub(r"\s+", " ", str(s)).strip().strip(".").strip().casefold()


# -- option letters ------------------------------------------------------------------------------------

# "B. text", "(B) text", "B) text", "B: text": a period needs a space after it ("A.I. robot" keeps its A)
_OWN_LABEL = re.compile(r"^\s*\(?([A-Z])\s*(?:[):]\s*|\.\s+)")
_ANY_LABEL = re.compile(r"^\s*(?:\(?[A-Ha-h1-9][.):]|\([A-Ha-h1-9]\))\s+")


def strip_option_label(option: Any, index: int | None = None) -> str:
    """The option without its leading label. With ``index``, only the letter of that position is a label
    (``"B. blue"`` at index 1 -> ``"blue"``; at index 0 it stays); with None, any one-character label
    (``A-H``, ``a-h``, ``1-9``) followed by a space is. With ``index``, a label with nothing after it is kept."""
    if index is None:
        return _ANY_LABEL.sub("", str(option), count=1).strip()
    text = str(option).strip()
    m = _OWN_LABEL.match(text)
    if m and index < len(LETTERS) and m.group(1) == LETTERS[index] and text[m.end():].strip():
        return text[m.end():].strip()
    return text


def option_texts(options: Sequence[str]) -> list[str]:
    """Options without a leading "A." / "(A)" when they already carry their own letter."""
    return [strip_option_label(opt, i) for i, opt in enumerate(options)]


# -- choices -------------------------------------------------------------------------------------------

_ARTICLE = re.compile(r"\s+[a-z]")  # "A man ..." / "I think ...": a word, not a letter


def _standalone(text: str, valid: str, start: int = 0) -> str | None:
    for m in re.finditer(rf"(?<![A-Za-z'])([{valid}])(?![A-Za-z'])", text[start:]):
        if not _ARTICLE.match(text, start + m.end()):
            return m.group(1)
    return None


def parse_choice(text: str, options: Sequence[str]) -> str | None:
    """The option letter a free-form reply names: a bare or leading letter, "answer is X", the option's
    text, else the first standalone capital letter among the valid ones ("A" as an article does not count)."""
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


_BARE_LETTER = re.compile(r"^\(?([A-Za-z])\)?[.):]?$")
_LETTER_THEN_TEXT = re.compile(r"^\(?([A-Z])\s*[.):]")


def exact_choice(answer: Any, options: Sequence[str]) -> str | None:
    """The letter an answer picks exactly: exactly one option's text, ``"B"``, ``"b"``, ``"(B)"``,
    ``"B. text"``, or an index; None when it picks none of the options (grading, not guessing)."""
    if answer is None or not options:
        return None
    allowed = letters(len(options))
    if isinstance(answer, int) and not isinstance(answer, bool):
        return allowed[answer] if 0 <= answer < len(options) else None
    text = str(answer).strip()
    norm = normalize_text(text)
    hits = [allowed[i] for i, o in enumerate(options) if normalize_text(o) == norm]
    if len(hits) == 1:
        return hits[0]
    m = _BARE_LETTER.match(text) or _LETTER_THEN_TEXT.match(text)
    if m and m.group(1).upper() in allowed:
        return m.group(1).upper()
    return None
