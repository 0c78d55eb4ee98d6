"""Question decomposition: what must be seen to answer, as short image captions a CLIP can match.

- ``SubQuery(text, role, weight)``; roles ``target`` | ``cue`` | ``question`` | ``option``.
- ``decompose_question(question, options=()) -> list[SubQuery]``: rule-based, CLIP caption form.
- ``decompose_with_llm(question, options, generate) -> list[SubQuery]``: ``generate(prompt) -> str``
  (any language model); falls back to the rule-based result when the reply cannot be parsed.
- ``SubQuery.prompts()`` and ``embed_subqueries(embed_texts, subs) -> (Q, D)``: what a CLIP embeds for
  each sub-query: a target or cue phrase in each of ``defaults.PROMPT_TEMPLATES`` (CLIP's prompt
  ensembling, the normalised embeddings averaged), the question and options as they are.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

import numpy as np

from pipelines import defaults
from pipelines.question import phrase_tokens, strip_option_label

ROLES = ("target", "cue", "question", "option")
ROLE_WEIGHTS = {"target": 1.0, "cue": 0.5, "question": 0.3, "option": 0.8}


@dataclass(frozen=True)
class SubQuery:
    text: str
    role: str  # "target" | "cue" | "question" | "option"
    weight: float

    def as_dict(self) -> dict:
        return asdict(self)

    def prompts(self, templates: Sequence[str] = defaults.PROMPT_TEMPLATES) -> list[str]:
        """The texts a CLIP embeds for it: a target or cue (a phrase in caption form) in each template,
        its leading article dropped ("a red hat" -> "a photo of the small red hat."); the rest as is."""
        if self.role not in ("target", "cue") or not templates:
            return [self.text]
        words = self.text.split()
        noun = " ".join(words[1:]) if len(words) > 1 and words[0].lower() in ("a", "an", "the") else self.text
        return [t.format(noun) for t in templates]


def embed_subqueries(embed_texts: Callable[[list[str]], np.ndarray], subs: Sequence[SubQuery],
                     templates: Sequence[str] = defaults.PROMPT_TEMPLATES) -> np.ndarray:
    """(Q, D) unit vectors, one per sub-query: the mean of its prompts' normalised embeddings (one
    ``embed_texts`` call for them all), normalised again."""
    prompts = [sub.prompts(templates) for sub in subs]
    flat = [p for ps in prompts for p in ps]
    if not flat:
        return np.zeros((0, 0), dtype=np.float32)
    vecs = np.asarray(embed_texts(flat), dtype=np.float32)
    vecs = vecs / np.maximum(np.linalg.norm(vecs, axis=1, keepdims=True), 1e-12)
    out, at = [], 0
    for ps in prompts:
        v = vecs[at:at + len(ps)].mean(axis=0)
        out.append(v / max(float(np.linalg.norm(v)), 1e-12))
        at += len(ps)
    return np.stack(out).astype(np.float32)


_QUESTION_WORDS = {
    "when", "what", "where", "who", "whom", "whose", "which", "how", "why", "whether", "if",
    "does", "do", "did", "is", "are", "was", "were", "be", "been", "being", "has", "have", "had", "can",
    "could", "will", "would", "should", "may", "might", "must", "shall",
}
_STOP = {
    "the", "a", "an", "this", "that", "these", "those", "there", "here", "it", "its", "they", "them",
    "their", "he", "she", "his", "her", "him", "we", "you", "i", "me", "my", "our", "your", "of", "to",
    "for", "at", "by", "about", "as", "than", "then", "so", "very", "just",
    "any", "some", "all", "each", "every", "also", "only", "not", "no", "yes", "please", "tell", "us",
    "much", "many", "often", "times", "time", "first", "last", "again", "ever", "up", "down", "out", "off",
    "over", "during", "while", "after", "before", "until", "between", "through", "throughout",
    "following", "correct", "best", "describe", "describes", "described", "happen", "happens",
    "happened", "happening",
}
# verbs that say "be visible / happen", never objects to look for
_VERBS = {
    "appear", "appears", "appeared", "appearing", "show", "shows", "shown", "showing", "seen", "see", "sees",
    "saw", "visible", "occur", "occurs", "occurred", "present", "displayed", "display", "displays",
    "depicted", "featured", "happen", "come", "comes", "came", "go", "goes", "went", "get", "gets", "got",
    "make", "makes", "made", "take", "takes", "took", "put", "puts", "say", "says", "said", "mentioned",
    "look", "looks", "looked", "like", "contain", "contains", "doing", "done", "use", "uses", "used",
    "saying", "reads", "reading", "written", "labelled", "labeled", "called", "named", "titled",
}
_ACTIONS = (
    "arrive chase open close leave enter run sit stand eat hold pick throw catch jump move pass begin finish "
    "wear carry push pull give talk speak ask write cut cook pour wave smile laugh cry drive ride swim climb "
    "kick hit touch grab drop remove become walk fall turn"
).split()


def _inflect(verb: str) -> set[str]:
    stem = verb[:-1] if verb.endswith("e") else verb
    es = "es" if verb.endswith(("sh", "ch", "ss", "x")) else "s"
    return {verb, verb + es, stem + "ed", stem + "ing", verb + verb[-1] + "ing", verb + verb[-1] + "ed"}


_VERBS |= {form for v in _ACTIONS for form in _inflect(v)} | {"ran", "sat", "stood", "ate", "held", "threw",
                                                            "caught", "left", "gave", "wore", "fell", "rode"}
# nouns too generic to be searched for by themselves
_GENERIC = {
    "video", "videos", "clip", "clips", "footage", "scene", "scenes", "point", "moment", "moments",
    "frame", "frames", "part", "parts", "end", "beginning", "start", "middle", "thing", "things",
    "object", "objects", "item", "items", "option", "options", "answer", "question", "way", "kind",
    "type", "color", "colour", "shape", "number", "second", "seconds", "minute", "minutes", "one", "ones",
}
# cue markers: a noun phrase after these is context, not the target
_CUE_PREPS = {
    "near", "next", "beside", "behind", "under", "below", "above", "beneath", "around", "inside",
    "outside", "across", "along", "toward", "towards", "against", "past", "between", "among", "after",
    "before", "during", "while", "left", "right", "front", "top", "bottom", "from", "into", "onto",
}
# attachments kept inside a noun phrase ("a man in a hat", "a girl with a red umbrella")
_ATTACH = {"in", "with", "wearing", "holding", "carrying", "on"}
_PRONOUNS = {"he", "she", "it", "they", "i", "we", "you", "who", "that", "which"}
_LIST_SEP = {"and", "or", "nor", "&", "versus", "vs"}
_NUMBER_WORDS = {"two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "several",
                 "many", "some", "few", "multiple", "both"}
_QUOTE = re.compile(r"[\"“”«»]([^\"“”«»]{1,80})[\"“”«»]|(?<![A-Za-z])'([^']{1,80})'(?![A-Za-z])")


def caption_form(phrase: str) -> str:
    """'purple star' -> 'a purple star'; plurals, numbers and already-determined phrases kept as they are."""
    words = phrase.strip().split()
    if not words:
        return ""
    first, last = words[0].lower(), words[-1].lower()
    if first in {"a", "an", "the"}:
        words = words[1:]
        if not words:
            return ""
        first, last = words[0].lower(), words[-1].lower()
    if first in _NUMBER_WORDS or first.isdigit() or _plural(last) or first in {"someone", "somebody"}:
        return " ".join(words)
    art = "an" if first[0] in "aeiou" and not first.startswith(("uni", "use", "one")) else "a"
    return f"{art} {' '.join(words)}"


def _plural(word: str) -> bool:
    return (len(word) > 3 and word.endswith("s") and not word.endswith(("ss", "us", "is", "ous", "ics"))
            and word not in _GENERIC)


def _chunks(text: str) -> list[tuple[str, bool]]:
    """Noun-phrase chunks of a question as (phrase, is_cue); stopwords and question words split chunks.

    A phrase after a spatial/temporal preposition ("next to", "after", "in") is a cue; a lone word right
    after a pronoun ("he opens") is taken for a verb and dropped."""
    tokens = phrase_tokens(text)
    out: list[tuple[str, bool]] = []
    cur: list[str] = []
    state = {"cue_next": False, "cur_cue": False, "after_pronoun": False, "prev": ""}

    def close() -> None:
        nonlocal cur
        while cur and cur[-1] in _ATTACH | {"a", "an", "the"}:
            cur.pop()
        content = [w for w in cur if w not in _ATTACH | {"a", "an", "the"} | _GENERIC]
        if content and not (state["after_pronoun"] and len(cur) == 1):
            out.append((" ".join(cur), state["cur_cue"]))
            state["cue_next"] = False
        cur = []

    for tok in tokens:
        low = tok.lower()
        if low in _ATTACH and cur:
            cur.append(low)  # "man in a hat": keep the attachment inside the phrase
        elif low in {"a", "an", "the"} and cur and cur[-1] in _ATTACH:
            cur.append(low)
        elif low in _CUE_PREPS or (low in _ATTACH and not cur):
            close()
            state["cue_next"] = True
        elif (low in _QUESTION_WORDS or low in _STOP or low in _VERBS or low in _LIST_SEP
              or not re.match(r"[a-z0-9]", low)):
            if cur:
                in_list = low in _LIST_SEP
                cue = state["cur_cue"]
                close()
                if in_list:
                    state["cue_next"] = cue  # a list keeps the role of its first member
        else:
            if not cur:
                state["cur_cue"] = state["cue_next"]
                state["after_pronoun"] = state["prev"] in _PRONOUNS
            cur.append(low)
        state["prev"] = low
    close()
    # drop phrases made only of generic words / numbers
    return [(p, c) for p, c in out if any(w not in _GENERIC and not w.isdigit() for w in p.split())]


def _clean_option(opt: str) -> str:
    return strip_option_label(opt).rstrip(".")


def decompose_question(question: str, options: Sequence[str] = ()) -> list[SubQuery]:
    """Rule-based decomposition into what must be seen (CLIP caption form), deduplicated, in order:
    targets (quoted phrases and the first noun phrases), cues (phrases after spatial/temporal
    prepositions), the plain question (low weight), and each option."""
    q = " ".join(question.split())
    subs: list[SubQuery] = []
    seen: set[str] = set()

    def add(text: str, role: str, weight: float | None = None) -> None:
        text = text.strip()
        key = text.lower()
        if text and key not in seen:
            seen.add(key)
            subs.append(SubQuery(text, role, ROLE_WEIGHTS[role] if weight is None else weight))

    rest = q
    for m in _QUOTE.finditer(q):
        phrase = (m.group(1) or m.group(2) or "").strip()
        if phrase:
            add(phrase, "target")
        rest = rest.replace(m.group(0), " , ")
    chunks = _chunks(rest)
    has_target = any(s.role == "target" for s in subs)
    for phrase, is_cue in chunks:
        role = "cue" if is_cue and (has_target or any(not c for _, c in chunks)) else "target"
        add(caption_form(phrase), role)
        has_target = has_target or role == "target"
    add(q, "question")
    for opt in options:
        text = _clean_option(opt)
        if not text:
            continue
        chunks = _chunks(text)
        is_phrase = len(chunks) == 1 and chunks[0][0] == " ".join(phrase_tokens(text.lower()))
        add(caption_form(text) if is_phrase else text, "option")
    return subs


_LLM_PROMPT = """You help search a long video for the frames needed to answer a question.
List the visible things to look for, as short image captions (e.g. "a purple star", "a man in a red hat").
Targets: the objects the question is about. Cues: other objects that help find the moment.
Answer with JSON only: {{"targets": ["..."], "cues": ["..."]}}

Question: {question}
{options}"""


def decompose_with_llm(question: str, options: Sequence[str], generate: Callable[[str], str] | None
                       ) -> list[SubQuery]:
    """Ask a language model (``generate(prompt) -> text``) for targets and cues; the plain question and
    options are always added. Unparsable or empty replies fall back to ``decompose_question``."""
    fallback = decompose_question(question, options)
    if generate is None:
        return fallback
    opts = "Options:\n" + "\n".join(f"- {_clean_option(o)}" for o in options) if options else ""
    reply = generate(_LLM_PROMPT.format(question=question.strip(), options=opts))
    parsed = _parse_llm_reply(reply or "")
    if parsed is None:
        return fallback
    targets, cues = parsed
    subs: list[SubQuery] = []
    seen: set[str] = set()
    for items, role in ((targets, "target"), (cues, "cue")):
        for text in items[:6]:
            text = caption_form(text) if len(text.split()) <= 5 else text
            if text and text.lower() not in seen:
                seen.add(text.lower())
                subs.append(SubQuery(text, role, ROLE_WEIGHTS[role]))
    for s in fallback:
        if s.role in ("question", "option") and s.text.lower() not in seen:
            seen.add(s.text.lower())
            subs.append(s)
    return subs


def _parse_llm_reply(reply: str) -> tuple[list[str], list[str]] | None:
    def strings(v) -> list[str]:
        if isinstance(v, str):
            v = [v]
        if not isinstance(v, list):
            return []
        return [" ".join(str(x).split()).strip(" .\"'") for x in v if isinstance(x, (str, int, float))
                and str(x).strip()]

    m = re.search(r"\{.*\}", reply, re.S)
    if m:
        try:
            obj = json.loads(m.group(0))
        except json.JSONDecodeError:
            obj = None
        if isinstance(obj, dict):
            low = {str(k).lower(): v for k, v in obj.items()}
            targets = strings(low.get("targets", low.get("target", [])))
            cues = strings(low.get("cues", low.get("cue", [])))
            if targets or cues:
                return targets, cues
    targets, cues = [], []
    for line in reply.splitlines():  # "target: a red car" / "cue: a tree" lines
        lm = re.match(r"\s*[-*]?\s*(targets?|cues?)\s*[:=]\s*(.+)", line, re.I)
        if lm:
            items = [x.strip(" .\"'") for x in re.split(r"[;,]", lm.group(2)) if x.strip(" .\"'")]
            (targets if lm.group(1).lower().startswith("t") else cues).extend(items)
    if targets or cues:
        return targets, cues
    return None

