"""How well the evidence supports an answer: the line it rests on, the span it copies, its confidence, and
whether to abstain. Pure functions over texts and numbers (no model), shared by every answerer.

Signals, each in 0..1:
- ``match``: how well the line the answer rests on (with the lines shown or said with it) matches the
  question: the question's content words found in it, each weighted by how rare it is among the lines
  given (so "press", said in every line of a phone menu, counts less than "advocate"), or the text
  embeddings' similarity when the caller measured it (``AnswerRequest.relevance``), whichever is higher.
- ``grounded``: the share of the answer's own words (those not already in the question) found in the
  lines given; an answer whose words come from nowhere is invented, for a model that reads text only.
- ``model``: the model's own probability of its answer: the geometric mean of its tokens' probabilities
  (exp of the mean log-probability), or for multiple choice the chosen option's share of the options'
  likelihood.

An answer abstains when nothing given to the answerer supports it: no line at all and no model that sees;
no line that matches the question (or, for a question about what is seen, none that matches it well) and
no model that sees; an answer made of words no line holds; or the model itself saying the answer is not
there. The confidence is ``0.5 match + 0.2 grounded + 0.3 model`` for a model that reads text only, and
``0.6 model + 0.4 match`` for one that sees the frames.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from pipelines.answerers.base import ContextLine

NOT_FOUND = "Not found in what was seen, said or written."
MATCH_MIN = 0.5  # a line matching less of the question than this does not support an answer
MATCH_VISUAL = 0.75  # a question about what is seen needs a line that says it outright
GROUNDED_MIN = 0.5
SOURCE_WORDS = {"speech": "what is said", "screen": "the text on screen", "caption": "the scene caption"}

_STOP = set("""a an the is are was were be been being to of in on at for and or but not no what which who whom whose
how when where why does do did done it its this that these those there here with by from as into than then so
if about any all can could would should will shall may might must has have had i you he she we they me him her
us them my your his our their video shown show shows screen said say says see seen appear appears one ones just
also there's it's let's get got""".split())
# words that say what kind of answer is wanted, not what it is about
_TYPE_WORDS = {"number", "name", "named", "called", "many", "much", "kind", "type", "time", "day", "date", "year",
               "long", "old", "answer", "exactly", "key"}
NUMBER_WORDS = {w: str(i) for i, w in enumerate(
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen "
    "seventeen eighteen nineteen twenty".split())}
NUMBER_WORDS.update({"thirty": "30", "forty": "40", "fifty": "50", "sixty": "60", "seventy": "70", "eighty": "80",
                     "ninety": "90", "hundred": "100", "thousand": "1000"})
_TOKEN = re.compile(r"\d+(?:[.:,\-]\d+)*|[A-Za-z]+(?:'[A-Za-z]+)?")
_VISUAL = re.compile(r"\b(colou?rs?|wear(s|ing)?|look(s|ing)? like|hold(s|ing)?|carr(y|ies|ying)|doing|"
                     r"how many (people|persons|men|women|cars|birds|animals)|shirt|coat|dress|hat|"
                     r"background|left|right|behind|in front|size|shape|face|skin|hair|weather|walk(s|ing)?|"
                     r"sitting|standing)\b", re.I)
# who or what is in the picture: a question about them is about what is seen, unless it asks what they say
# or what is written ("What does the man say?" is about speech)
_SUBJECT = re.compile(r"\b(animal|bird|person|people|man|woman|car|vehicle)\b", re.I)
_SAID = re.compile(r"\b(say|says|said|saying|speak|speaks|spoke|talk|talks|talked|talking|tell|tells|told|"
                   r"mention|mentions|mentioned|announce|announces|announced|written|write|writes|read|reads)\b", re.I)
_REFUSAL = re.compile(r"\b(not (mentioned|stated|given|provided|specified|said|say|contain|included|in the (lines|"
                      r"text|transcript|video))|no (information|mention|answer)|do(es)? not (say|contain|mention|"
                      r"specify|provide|include|tell|know)|don't (know|say|contain|mention)|cannot (be )?(determine|"
                      r"answer|tell|find)|can't (determine|answer|tell|find)|unable to|not possible to)\b", re.I)


def stem(w: str) -> str:
    """A crude, stable stem (the same on both sides of a comparison): possessive, plural and -ing/-ed endings
    off, a doubled last consonant undone, number words to digits."""
    w = w.lower()
    if w.endswith("'s"):
        w = w[:-2]
    if w in NUMBER_WORDS:
        return NUMBER_WORDS[w]
    if len(w) >= 6 and w.endswith("ing"):
        w = w[:-3]
    elif len(w) >= 6 and w.endswith("ed"):
        w = w[:-2]
    elif len(w) >= 4 and w.endswith("s") and not w.endswith(("ss", "us", "is")):
        return w[:-1]
    else:
        return w
    return w[:-1] if len(w) > 3 and w[-1] == w[-2] and w[-1] not in "aeiouls" else w


def terms(text: str) -> list[str]:
    """Content words of a text, stemmed, in order (digits kept; single letters and stop words dropped)."""
    out = []
    for tok in _TOKEN.findall(text):
        low = tok.lower()
        if low in _STOP or (len(low) == 1 and not low.isdigit()):
            continue
        out.append(stem(low))
    return out


def question_terms(question: str) -> list[str]:
    return [t for t in dict.fromkeys(terms(question)) if t not in _TYPE_WORDS]


def answer_kind(question: str) -> str | None:
    """What a short factual answer looks like: ``number``, ``name``, ``when``, ``day`` or None (free text). The first
    question word decides ("Who had ... how much ..." asks for a name)."""
    q = question.lower()
    first = re.search(r"\b(who|whom|whose|when|how (many|much|old|long|often)|what|which|where|why|how)\b", q)
    wh = first.group(1) if first else ""
    if wh in ("who", "whom", "whose"):
        return "name"
    if wh == "when":
        return "when"
    if wh.startswith("how ") and not wh.endswith("often"):
        return "number"
    if wh not in ("what", "which", ""):
        return None
    if re.search(r"\b(number|key|digit|code|pin|password|extension|press|dial|room|floor|channel|platform|"
                 r"year|age)\b", q):
        return "number"
    if re.search(r"\b(day|date|month)\b", q):
        return "day"
    if re.search(r"\btime\b", q):
        return "when"
    if re.search(r"\b(name|named|called|book|company|city|country|town|film|song|title)\b", q):
        return "name"
    return None


def is_visual(question: str) -> bool:
    """A question about what is seen (colours, clothes, people, motion) rather than what is said or written."""
    return bool(_VISUAL.search(question) or (_SUBJECT.search(question) and not _SAID.search(question)))


def is_refusal(text: str) -> bool:
    """The model says the answer is not there."""
    return bool(_REFUSAL.search(text or ""))


# --- which line supports the answer ---------------------------------------------------------------------

def weights(lines: Sequence[ContextLine]) -> dict[str, float]:
    """Inverse document frequency of each term over the lines given (a term in no line weighs the most)."""
    n = len(lines)
    df: dict[str, int] = {}
    for c in lines:
        for t in set(terms(c.text)):
            df[t] = df.get(t, 0) + 1
    return {t: math.log(1 + (n + 1) / (1 + d)) for t, d in df.items()} | {"": math.log(2 + n)}


def _w(wts: dict[str, float], t: str) -> float:
    return wts.get(t, wts[""])


def block(lines: Sequence[ContextLine], i: int) -> list[int]:
    """Line ``i`` with the lines shown or said with it: on-screen lines sharing its time, and the speech
    line its sentence runs on into (the transcriber cut it mid-way)."""
    c = lines[i]
    out = [i]
    for j, o in enumerate(lines):
        if j == i or o.source != c.source:
            continue
        if c.source == "speech":
            if 0 <= o.start - c.end < 0.6 and not re.search(r"[.!?]\s*$", c.text):
                out.append(j)
        elif min(c.end, o.end) - max(c.start, o.start) >= 0.8 * min(c.end - c.start, o.end - o.start):
            out.append(j)
    return out


def lexical_match(qterms: Sequence[str], text: str, wts: dict[str, float]) -> float:
    """Weighted share of the question's terms found in the text (two question words written as one count:
    "voice mail" ~ "voicemail")."""
    if not qterms:
        return 0.0
    have = set(terms(text))
    found = {t for t in qterms if t in have}
    for a, b in zip(qterms, qterms[1:]):
        if a + b in have or stem(a + b) in have:
            found |= {a, b}
    return sum(_w(wts, t) for t in found) / sum(_w(wts, t) for t in qterms)


def embedding_match(sim: float | None) -> float:
    """Cosine similarity of sentence embeddings onto 0..1 (MiniLM, measured on real lectures: a line that
    answers the question 0.5-0.8, a line on the same topic that does not 0.4-0.65, unrelated 0.1-0.35)."""
    if sim is None:
        return 0.0
    return min(1.0, max(0.0, (float(sim) - 0.3) / 0.5))


def line_matches(question: str, lines: Sequence[ContextLine],
                 relevance: Sequence[float] | None = None) -> dict[ContextLine, float]:
    """How well each line, read with its block, matches the question (0..1): the better of the weighted
    word overlap and the embeddings' similarity."""
    wts = weights(lines)
    q = question_terms(question)
    out: dict[ContextLine, float] = {}
    for i, c in enumerate(lines):
        idx = block(lines, i)
        lex = lexical_match(q, " ".join(lines[j].text for j in idx), wts)
        emb = max(embedding_match(relevance[j]) for j in idx) if relevance and len(relevance) == len(lines) else 0.0
        out[c] = max(out.get(c, 0.0), lex, emb)
    return out


def rank_lines(question: str, lines: Sequence[ContextLine], k: int,
               relevance: Sequence[float] | None = None) -> list[ContextLine]:
    """The k lines that match the question best, each with its block, in time order; the first k lines
    when none matches at all."""
    if not lines:
        return []
    m = line_matches(question, lines, relevance)
    order = [i for i in sorted(range(len(lines)), key=lambda i: (-m[lines[i]], i)) if m[lines[i]] > 0][:k]
    if not order:
        return sorted(lines[:k], key=lambda c: (c.start, c.end))
    keep: list[int] = []
    for i in order:
        keep += [j for j in block(lines, i) if j not in keep]
    return sorted((lines[i] for i in keep[: 2 * k]), key=lambda c: (c.start, c.end))


def grounded(answer: str, question: str, lines: Sequence[ContextLine]) -> float:
    """Share of the answer's own words (those not in the question) that some line given holds; 0 for an
    answer that adds nothing to the question."""
    q = set(terms(question)) | _TYPE_WORDS
    own = [t for t in dict.fromkeys(terms(answer)) if t not in q]
    if not own:
        return 0.0
    have: set[str] = set()
    for c in lines:
        have |= set(terms(c.text))
    return sum(t in have for t in own) / len(own)


def cite_line(answer: str, question: str, lines: Sequence[ContextLine],
              matches: dict[ContextLine, float] | None = None) -> ContextLine | None:
    """The one line the answer rests on: the one holding most of the answer's own words (the rarest count
    most), ties to the line matching the question best, then the earliest; None when no line holds any."""
    if not lines:
        return None
    wts = weights(lines)
    q = set(terms(question))
    said = list(dict.fromkeys(terms(answer)))
    own = [t for t in said if t not in q] or said
    matches = matches if matches is not None else line_matches(question, lines)
    best, key = None, None
    for c in lines:
        have = set(terms(c.text))
        score = sum(_w(wts, t) for t in own if t in have)
        k = (score, matches.get(c, 0.0), -c.start)
        if score > 0 and (key is None or k > key):
            best, key = c, k
    return best


# --- the verdict ----------------------------------------------------------------------------------------

@dataclass
class Verdict:
    abstained: bool
    reason: str
    confidence: float
    signals: dict = field(default_factory=dict)


def label(confidence: float) -> str:
    return "high" if confidence >= 0.75 else "medium" if confidence >= 0.5 else "low"


def assess(question: str, answer: str, lines: Sequence[ContextLine], cited: ContextLine | None, *,
           matches: dict[ContextLine, float], sees: bool, model_p: float | None, copied: bool = False,
           why_blind: str = "the answerer reads text only") -> Verdict:
    """Whether what the answerer was given supports ``answer``, why, and how much (see the module docstring).
    ``lines``: the lines the answerer read; ``cited``: the one the answer rests on."""
    match = matches.get(cited, 0.0) if cited is not None else max((matches.get(c, 0.0) for c in lines), default=0.0)
    ground = 1.0 if copied else grounded(answer, question, lines)
    model = 0.5 if model_p is None else min(1.0, max(0.0, float(model_p)))
    conf = 0.6 * model + 0.4 * match if sees else 0.5 * match + 0.2 * ground + 0.3 * model
    conf = round(min(1.0, max(0.0, conf)), 3)
    visual = is_visual(question)
    signals = {"match": round(match, 3), "grounded": round(ground, 3),
               "model": None if model_p is None else round(model, 3), "sees": sees, "visual_question": visual,
               "copied": copied}
    where = f"{SOURCE_WORDS.get(cited.source, cited.source)} at {cited.start:.1f} s" if cited else "the frames"

    def no(reason: str) -> Verdict:
        return Verdict(True, reason, conf, signals)

    if is_refusal(answer):
        return no("the answerer says what it was given does not contain the answer")
    if not sees:
        blind = f"no model that sees is available ({why_blind})"
        if not lines:
            return no(f"nothing said or written in the video relates to the question, and {blind}")
        best = max((matches.get(c, 0.0) for c in lines), default=0.0)
        if visual and match < MATCH_VISUAL and not (cited is not None and cited.source == "caption"):
            return no(f"the question is about what is seen, {blind}, and no line said or written answers it "
                      f"(best match {best:.2f})")
        if match < MATCH_MIN:
            if cited is not None and best >= MATCH_MIN:  # a line matches, but not the one the answer rests on
                return no(f"the line the answer rests on ({where}) matches the question {match:.2f}, below "
                          f"{MATCH_MIN:.2f} (the best line given matches {best:.2f}), and {blind}")
            return no(f"no line said or written matches the question (best match {best:.2f}), and {blind}")
        if ground < GROUNDED_MIN:
            return no(f"the answer's words are not in the lines given ({ground:.0%} are), and {blind}")
    parts = [f"{'copied from' if copied else 'rests on'} {where}", f"question match {match:.2f}"]
    if model_p is not None:
        parts.append(f"model probability {model:.2f}")
    return Verdict(False, ", ".join(parts), conf, signals)

