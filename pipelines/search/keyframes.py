"""Query-oriented keyframe search: pure functions over arrays (numpy only, no models).

Pipeline (ideas from T*, QuoTA, BOLT and AKS; our own code)::

    subs = decompose_question(question, options)            # what must be seen -> [SubQuery]
    sims = clip_frame_embs @ clip_text_embs(subs).T          # (N, Q) cosine sims -> pass .T as (Q, N)
    result = keyframe_search(times, sims.T, weights=[s.weight for s in subs], densify=my_densify,
                             params=SearchParams(k=8), priors=priors, scenes=shots,
                             bounds=(0.0, duration))
    result.keyframes      # [Keyframe(t, score, round)] in time order
    result.as_dict()      # JSON-serialisable, with a per-round trace

API (stable):

- ``SubQuery(text, role, weight)``; roles ``target`` | ``cue`` | ``question`` | ``option``.
- ``decompose_question(question, options=()) -> list[SubQuery]``: rule-based, CLIP caption form.
- ``decompose_with_llm(question, options, generate) -> list[SubQuery]``: ``generate(prompt) -> str``
  (any language model); falls back to the rule-based result when the reply cannot be parsed.
- ``Normalizer.fit(per_query)`` / ``.transform(per_query)`` and ``fuse_scores(per_query, weights,
  reference=None) -> (N,)``: robust per-sub-query z-scores (or ranks) fused by a weighted mean blended
  with a soft "any target" maximum. New frames (zoom rounds) must be normalised with the statistics of
  the index frames: pass ``reference`` (or use one fitted ``Normalizer``).
- ``apply_priors(times, scores, priors) -> scores``: adds ``weight`` (fused z units) to frames inside
  each ``(start, end, weight)`` range (scene-caption matches, transcript / on-screen-text hits).
- ``zoom_ranges(times, scores, *, n_ranges, interval, ...) -> [(start, end)]``: where to decode densely.
- ``select_keyframes(times, scores, k, *, min_gap, seed, scenes=(), ...) -> indices`` (time order): one
  keyframe per distinct relevant peak (per shot first, with ``scenes``), then coverage by
  inverse-transform sampling of a relevance density.
- ``keyframe_search(times, scores, *, densify=None, params=SearchParams(), priors=(), weights=None,
  bounds=None, scenes=()) -> SearchResult``; ``scenes`` are the index's shots as (start, end): shots
  too short to hold an index frame are probed in the first zoom round (``unseen_scene_ranges``) and
  keyframes go one per shot first. Pass them: +15 points of hit rate in bench/search_quality.py.
  ``densify(ranges, fps) -> (new_times, new_scores)`` decodes and scores extra frames in ``ranges`` at
  ``fps``. ``scores`` is one curve ``(N,)`` (densify returns ``(M,)`` on the same scale) or raw
  per-sub-query sims ``(Q, N)`` with ``weights`` (densify returns raw ``(Q, M)``); both are normalised
  with the index frames' statistics (a 1-D curve like cosines: spread floored at 0.01), so new frames
  are comparable. ``select_keyframes`` and ``zoom_ranges`` take scores in those fused z units
  (``tolerance``, ``min_peak`` are in z units).
- ``peak_extent(times, scores, t0, *, tolerance, scenes, pad, bounds) -> (start, end)``: the moment a
  keyframe stands for (its hump of the curve, inside its shot); ``SearchResult.curve_times`` /
  ``curve_scores`` hold every frame scored, for that.
- ``frame_budgets(scores_of_selected, total_pixels, min_pixels, max_pixels) -> [int]`` (QuoTA).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field

import numpy as np

ROLES = ("target", "cue", "question", "option")
ROLE_WEIGHTS = {"target": 1.0, "cue": 0.5, "question": 0.3, "option": 0.8}


# --------------------------------------------------------------------------------------------------
# Question decomposition
# --------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class SubQuery:
    text: str
    role: str  # "target" | "cue" | "question" | "option"
    weight: float

    def as_dict(self) -> dict:
        return asdict(self)


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
_OPTION_PREFIX = re.compile(r"^\s*(?:\(?[A-Ha-h1-9][.):]|\([A-Ha-h1-9]\))\s+")
_WORD = re.compile(r"[A-Za-z0-9][A-Za-z0-9'\-]*|[,;?!.&]")


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
    tokens = _WORD.findall(text)
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
    return _OPTION_PREFIX.sub("", opt).strip().rstrip(".")


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
        is_phrase = len(chunks) == 1 and chunks[0][0] == " ".join(_WORD.findall(text.lower()))
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


# --------------------------------------------------------------------------------------------------
# Scores: normalise, fuse, priors
# --------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Normalizer:
    """Per-sub-query robust statistics of the index frames' similarities."""

    center: np.ndarray  # (Q,)
    scale: np.ndarray  # (Q,)
    method: str = "zscore"
    reference: np.ndarray | None = field(default=None, repr=False)  # (Q, M) sorted, for "rank"

    @classmethod
    def fit(cls, per_query: np.ndarray, method: str = "zscore", min_scale: float = 0.01) -> Normalizer:
        """``min_scale`` (cosine units) floors the spread, so near-constant scores stay near zero
        instead of blowing noise up to unit scale."""
        s = np.atleast_2d(np.asarray(per_query, dtype=np.float64))
        if s.shape[1] == 0:
            return cls(np.zeros(s.shape[0]), np.ones(s.shape[0]), method)
        med = np.median(s, axis=1)
        mad = np.median(np.abs(s - med[:, None]), axis=1) * 1.4826
        std = s.std(axis=1)
        scale = np.maximum(np.where(mad > 1e-9, mad, std), max(min_scale, 1e-9))
        ref = np.sort(s, axis=1) if method == "rank" else None
        if method not in ("zscore", "rank"):
            raise ValueError(f"unknown normalisation {method!r} (zscore or rank)")
        return cls(med, scale, method, ref)

    def transform(self, per_query: np.ndarray) -> np.ndarray:
        s = np.atleast_2d(np.asarray(per_query, dtype=np.float64))
        if self.method == "rank" and self.reference is not None and self.reference.shape[1]:
            m = self.reference.shape[1]
            # rank in the reference distribution, mapped to a normal-like scale (probit-free: logit)
            r = np.stack([np.searchsorted(ref, row, side="right") for ref, row in zip(self.reference, s, strict=True)])
            p = (r + 0.5) / (m + 1.0)
            return np.log(p / (1.0 - p))
        return (s - self.center[:, None]) / self.scale[:, None]


def fuse_scores(per_query: np.ndarray, weights: np.ndarray | Sequence[float], *,
                reference: np.ndarray | None = None, method: str = "zscore", any_weight: float = 0.5,
                any_temperature: float = 0.5) -> np.ndarray:
    """(Q, N) cosine sims -> (N,) relevance in z units.

    Each sub-query is normalised across frames (statistics from ``reference``, default ``per_query``);
    the fused score is ``(1 - any_weight) * weighted mean + any_weight * soft max``, the soft max being a
    weighted log-sum-exp at ``any_temperature`` so that one strongly matched target counts.
    """
    norm = Normalizer.fit(per_query if reference is None else reference, method)
    return _fuse(norm.transform(per_query), weights, any_weight, any_temperature)


def _fuse(z: np.ndarray, weights, any_weight: float, any_temperature: float) -> np.ndarray:
    w = np.asarray(weights, dtype=np.float64).reshape(-1)
    if z.shape[0] != w.shape[0]:
        raise ValueError(f"{z.shape[0]} sub-query score rows but {w.shape[0]} weights")
    w = np.maximum(w, 0.0)
    if w.sum() <= 0:
        w = np.ones_like(w)
    w = w / w.sum()
    mean = w @ z
    if z.shape[0] == 1 or any_weight <= 0:
        return mean
    t = max(any_temperature, 1e-3)
    # soft max over sub-queries; weights enter as log-priors so low-weight queries count less
    a = z / t + np.log(np.maximum(w, 1e-12))[:, None]
    mx = a.max(axis=0)
    smax = t * (mx + np.log(np.exp(a - mx).sum(axis=0)))
    return (1.0 - any_weight) * mean + any_weight * smax


def apply_priors(times: np.ndarray, scores: np.ndarray, priors: Sequence[tuple[float, float, float]]
                 ) -> np.ndarray:
    """Add each prior's weight to the scores of frames with start <= t <= end (a new array)."""
    t = np.asarray(times, dtype=np.float64)
    out = np.asarray(scores, dtype=np.float64).copy()
    for start, end, weight in priors:
        out[(t >= start) & (t <= end)] += weight
    return out


# --------------------------------------------------------------------------------------------------
# Peaks, zoom ranges, selection
# --------------------------------------------------------------------------------------------------

def _peaks(t: np.ndarray, s: np.ndarray, n: int, *, tolerance: float, min_gap: float,
           min_score: float = -np.inf, taken: Sequence[int] = (), groups: np.ndarray | None = None
           ) -> list[int]:
    """Greedy distinct peaks of a time-sorted curve, best first.

    A frame is suppressed by a chosen peak p when it lies within ``min_gap`` seconds of p, or when every
    frame between p and it scores at least its own score minus ``tolerance`` (no dip: same hump), or,
    with ``groups`` (scene ids, -1: none), when it is in p's scene. ``taken`` frames suppress as if
    chosen before, and are not returned.
    """
    n_frames = len(s)
    suppressed = np.zeros(n_frames, dtype=bool)

    def suppress(i: int) -> None:
        suppressed[np.abs(t - t[i]) < min_gap] = True
        suppressed[i] = True
        if groups is not None and groups[i] >= 0:
            suppressed[groups == groups[i]] = True
        if i + 1 < n_frames:  # right side: running min of the frames strictly between i and j
            right = s[i + 1:]
            between = np.minimum(np.concatenate(([np.inf], np.minimum.accumulate(right)[:-1])), s[i])
            suppressed[i + 1:] |= between >= right - tolerance
        if i > 0:
            left = s[:i][::-1]
            between = np.minimum(np.concatenate(([np.inf], np.minimum.accumulate(left)[:-1])), s[i])
            suppressed[:i] |= (between >= left - tolerance)[::-1]

    for i in taken:
        suppress(int(i))
    picks: list[int] = []
    order = np.argsort(-s, kind="stable")  # ties: the earlier frame first
    while len(picks) < n:
        order = order[~suppressed[order]]
        if not len(order) or s[order[0]] < min_score:
            break
        picks.append(int(order[0]))
        suppress(int(order[0]))
    return picks


def scene_ids(times: np.ndarray, scenes: Sequence[tuple[float, float]]) -> np.ndarray:
    """Index of the scene ``[start, end)`` holding each time, -1 outside every scene."""
    t = np.asarray(times, dtype=np.float64)
    out = np.full(t.shape, -1, dtype=np.int64)
    if not len(scenes):
        return out
    sc = np.asarray(sorted(scenes), dtype=np.float64).reshape(-1, 2)
    j = np.searchsorted(sc[:, 0], t, side="right") - 1
    ok = (j >= 0) & (t < sc[np.maximum(j, 0), 1])
    out[ok] = j[ok]
    return out


def sampling_interval(times: np.ndarray) -> float:
    """Median spacing of the (index) frame times, 1.0 when it cannot be told."""
    t = np.unique(np.asarray(times, dtype=np.float64))
    if len(t) < 2:
        return 1.0
    return float(np.median(np.diff(t)))


def zoom_ranges(times: np.ndarray, scores: np.ndarray, *, n_ranges: int, interval: float,
                radius: float = 1.0, tolerance: float = 1.0, min_score: float = -np.inf,
                priors: Sequence[tuple[float, float, float]] = (),
                explored: Sequence[tuple[float, float]] = (), bounds: tuple[float, float] | None = None
                ) -> list[tuple[float, float]]:
    """Time ranges to densify: ``radius * interval`` seconds around each of the ``n_ranges`` best distinct
    peaks (peaks inside ``explored`` ranges skipped), plus each prior's range (padded to at least one
    interval), merged, non-overlapping, sorted, clipped to ``bounds`` (default: the frames' span)."""
    t = np.asarray(times, dtype=np.float64)
    s = np.asarray(scores, dtype=np.float64)
    order = np.argsort(t, kind="stable")
    t, s = t[order], s[order]
    if bounds is None:
        bounds = (float(t[0]) if len(t) else 0.0, float(t[-1]) if len(t) else 0.0)
    lo_b, hi_b = bounds
    half = radius * interval
    taken = []  # the best frame of each explored range stands for a peak already zoomed into
    for a, b in explored:
        inside = np.flatnonzero((t >= a) & (t <= b))
        if len(inside):
            taken.append(int(inside[np.argmax(s[inside])]))
    out: list[tuple[float, float]] = []
    if n_ranges > 0 and len(t):
        for i in _peaks(t, s, n_ranges, tolerance=tolerance, min_gap=2 * half, min_score=min_score,
                        taken=taken):
            out.append((t[i] - half, t[i] + half))
    for start, end, _w in sorted(priors, key=lambda p: -p[2]):
        if any(a <= start and end <= b for a, b in explored):
            continue
        pad = max(0.0, (interval - (end - start)) / 2.0)
        out.append((start - pad, end + pad))
    return _merge([(max(a, lo_b), min(b, hi_b)) for a, b in out if min(b, hi_b) > max(a, lo_b)])


def _merge(ranges: list[tuple[float, float]]) -> list[tuple[float, float]]:
    merged: list[list[float]] = []
    for a, b in sorted(ranges):
        if merged and a <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], b)
        else:
            merged.append([a, b])
    return [(float(a), float(b)) for a, b in merged]


def select_keyframes(times: np.ndarray, scores: np.ndarray, k: int, *, min_gap: float, seed: int = 0,
                     tolerance: float = 1.0, min_peak: float = 0.5, temperature: float = 1.0,
                     concentration: float = 0.5, jitter: float = 0.5, max_peaks: int | None = None,
                     scenes: Sequence[tuple[float, float]] = ()) -> np.ndarray:
    """Indices (into ``times``) of up to ``k`` keyframes, in time order.

    1. Peaks: distinct humps of the relevance curve (see ``_peaks``) scoring at least ``min_peak``, best
       first, at most ``max_peaks`` (default ``k``). 2. Coverage: the remaining slots by inverse-transform
       sampling (BOLT) of a density mixing uniform time (weight ``1 - concentration``) with
       ``exp(score / temperature)``, at evenly spaced quantiles whose common phase is jittered by ``seed``;
       every pick at least ``min_gap`` seconds from the others. Peaky curves get frames concentrated
       around their peaks, flat curves an even spread. Deterministic for a given seed.
    With ``scenes`` ((start, end) pairs, e.g. the index's shots), peaks go one per scene first, and a
    coverage pick prefers a scene not yet shown within its quantile cell.
    """
    t_in = np.asarray(times, dtype=np.float64)
    s_in = np.asarray(scores, dtype=np.float64)
    if t_in.shape != s_in.shape:
        raise ValueError("times and scores differ in shape")
    n = len(t_in)
    if k <= 0 or n == 0:
        return np.zeros(0, dtype=np.int64)
    order = np.argsort(t_in, kind="stable")
    t, s = t_in[order], s_in[order]
    s = np.where(np.isfinite(s), s, -1e9)
    groups = scene_ids(t, scenes) if len(scenes) else None
    n_peaks = k if max_peaks is None else min(k, max_peaks)
    picks = _peaks(t, s, n_peaks, tolerance=tolerance, min_gap=min_gap, min_score=min_peak, groups=groups)
    if groups is not None and len(picks) < n_peaks:  # then further peaks inside scenes already shown
        picks += _peaks(t, s, n_peaks - len(picks), tolerance=tolerance, min_gap=min_gap,
                        min_score=min_peak, taken=picks)
    if len(picks) < k:
        picks += _coverage(t, s, k - len(picks), picks, min_gap=min_gap, seed=seed,
                           temperature=temperature, concentration=concentration, jitter=jitter,
                           groups=groups)
    if not picks:
        return np.zeros(0, dtype=np.int64)
    return order[np.sort(np.asarray(picks, dtype=np.int64))]  # sorted positions = time order


def _coverage(t: np.ndarray, s: np.ndarray, m: int, taken: list[int], *, min_gap: float, seed: int,
              temperature: float, concentration: float, jitter: float, groups: np.ndarray | None = None
              ) -> list[int]:
    """``m`` frames by inverse-transform sampling at evenly spaced quantiles (one seeded phase) of
    ``(1 - concentration) * uniform-in-time + concentration * relevance`` density; nearest free frame in
    quantile order when the target is within ``min_gap`` of a pick."""
    n = len(t)
    if n == 1:
        return [] if taken else [0]
    # each frame stands for the time up to its neighbours, so dense zoom regions gain no extra mass
    edges = np.concatenate(([t[0]], (t[1:] + t[:-1]) / 2.0, [t[-1]]))
    dt = np.maximum(np.diff(edges), 1e-9)
    logit = np.clip(s, -8.0, 8.0) / max(temperature, 1e-3)
    rel = dt * np.exp(logit - logit.max())
    c = min(max(concentration, 0.0), 1.0)
    dens = (1.0 - c) * dt / dt.sum() + c * rel / rel.sum()
    cdf = np.cumsum(dens) - dens / 2.0  # each frame at the middle of its mass
    cdf /= cdf[-1] + dens[-1] / 2.0
    phase = 0.5 + jitter * (np.random.default_rng(seed).random() - 0.5)
    out: list[int] = []
    ok = np.ones(n, dtype=bool)
    for i in taken:
        ok &= np.abs(t - t[i]) >= min_gap
        ok[i] = False
    shown = {int(groups[i]) for i in taken} if groups is not None else set()
    for u in (np.arange(m) + phase) / m:
        if not ok.any():
            break
        cand = np.flatnonzero(ok)
        if groups is not None:  # prefer a scene not shown yet, within this quantile's cell
            fresh = cand[(np.abs(cdf[cand] - u) <= 0.5 / m) & ~np.isin(groups[cand], list(shown))]
            if len(fresh):
                cand = fresh
        best = int(cand[np.argmin(np.abs(cdf[cand] - u))])
        out.append(best)
        if groups is not None:
            shown.add(int(groups[best]))
        ok &= np.abs(t - t[best]) >= min_gap
        ok[best] = False
    return out


# --------------------------------------------------------------------------------------------------
# Coarse-to-fine search
# --------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class SearchParams:
    k: int = 8
    zoom_rounds: int = 2
    zoom_ranges: int = 4
    zoom_fps: float | None = 4.0  # None: zoom_factor x the index frame rate
    zoom_factor: float = 4.0
    zoom_radius: float = 1.0  # seconds around a peak, in index sampling intervals
    unseen_scenes: int = 16  # round 1 also probes up to this many scenes that hold no index frame
    min_gap: float | None = None  # seconds between keyframes; None: 0.75 x the index interval
    seed: int = 0
    tolerance: float = 1.0  # fused-score dip that separates two peaks
    min_peak: float = 0.5  # fused score a peak needs to be chosen for relevance (else coverage)
    temperature: float = 1.0  # coverage density exp(score / T)
    concentration: float = 0.5  # coverage: share of the relevance density vs uniform time
    jitter: float = 0.5  # seed-driven phase jitter of the coverage quantiles (0: none)
    method: str = "zscore"  # sub-query normalisation: "zscore" or "rank"
    any_weight: float = 0.5
    any_temperature: float = 0.5

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Keyframe:
    t: float
    score: float
    round: int  # 0: an index frame; r: found by zoom round r

    def as_dict(self) -> dict:
        return {"t": round(float(self.t), 3), "score": round(float(self.score), 4), "round": int(self.round)}


@dataclass(frozen=True)
class SearchResult:
    keyframes: list[Keyframe]
    trace: list[dict]
    frames_scored: int
    params: SearchParams
    # every frame scored (index and zoom frames), time-sorted, with its fused score: for moment extents
    curve_times: np.ndarray = field(default_factory=lambda: np.zeros(0), repr=False)
    curve_scores: np.ndarray = field(default_factory=lambda: np.zeros(0), repr=False)

    @property
    def times(self) -> list[float]:
        return [k.t for k in self.keyframes]

    def as_dict(self) -> dict:
        return {"keyframes": [k.as_dict() for k in self.keyframes], "trace": self.trace,
                "frames_scored": int(self.frames_scored), "params": self.params.as_dict()}


Densify = Callable[[list[tuple[float, float]], float], tuple[np.ndarray, np.ndarray]]


def keyframe_search(times: np.ndarray, scores: np.ndarray, *, densify: Densify | None = None,
                    params: SearchParams = SearchParams(),
                    priors: Sequence[tuple[float, float, float]] = (),
                    weights: Sequence[float] | np.ndarray | None = None,
                    bounds: tuple[float, float] | None = None,
                    scenes: Sequence[tuple[float, float]] = ()) -> SearchResult:
    """Coarse-to-fine keyframe search (T*-style zoom, then peak + coverage selection).

    ``scores``: one curve ``(N,)`` or per-sub-query ``(Q, N)`` sims with ``weights``; either way they
    are normalised with the index frames' robust statistics (``Normalizer``), and the new frames from
    ``densify`` (same shape convention, ``(M,)`` or ``(Q, M)``) with the same statistics. Priors are
    added after normalisation (z units). Each round picks zoom ranges around the best distinct peaks not
    yet explored (round 1 adds the priors' ranges), calls ``densify(ranges, fps)``, merges the new
    frames, and stops early when no range got a better frame.
    ``bounds``: the video's (start, end) for clipping ranges (default: the frames' span).
    ``scenes``: the index's shots as (start, end); round 1 then also probes shots too short to hold an
    index frame (best neighbours first, at most ``params.unseen_scenes``), and selection takes peaks one
    per shot first (see ``select_keyframes``).
    """
    t = np.asarray(times, dtype=np.float64).reshape(-1)
    raw = np.asarray(scores, dtype=np.float64)
    if raw.ndim == 2:
        if weights is None:
            raise ValueError("per-sub-query scores (Q, N) need weights (Q,)")
    else:  # one fused curve: normalised the same way, so any scale (cosines, z-scores) works
        raw, weights = raw.reshape(1, -1), [1.0]
    norm = Normalizer.fit(raw, params.method)
    fused = _fuse(norm.transform(raw), weights, params.any_weight, params.any_temperature)
    if fused.shape[0] != t.shape[0]:
        raise ValueError(f"{t.shape[0]} times but {fused.shape[0]} scores")
    interval = sampling_interval(t)
    min_gap = params.min_gap if params.min_gap is not None else 0.75 * interval
    zoom_fps = params.zoom_fps if params.zoom_fps else params.zoom_factor / interval
    all_t = t
    all_s = apply_priors(t, fused, priors)
    rounds = np.zeros(len(t), dtype=np.int64)
    frames_scored = len(t)
    trace: list[dict] = [{"round": 0, "ranges": [], "fps": round(1.0 / interval, 4) if interval else None,
                          "frames_scored": int(len(t)),
                          "best_score": _r(all_s.max()) if len(all_s) else None}]
    explored: list[tuple[float, float]] = []
    if bounds is None and len(t):
        bounds = (float(t.min()), float(t.max()))
    for r in range(1, params.zoom_rounds + 1):
        if densify is None or not len(all_t):
            break
        ranges = zoom_ranges(all_t, all_s, n_ranges=params.zoom_ranges, interval=interval,
                             radius=params.zoom_radius, tolerance=params.tolerance,
                             priors=priors if r == 1 else (), explored=explored, bounds=bounds)
        if r == 1 and len(scenes) and params.unseen_scenes > 0:
            ranges = _merge(ranges + unseen_scene_ranges(t, all_s[:len(t)], scenes, params.unseen_scenes,
                                                         min_len=1.0 / zoom_fps))
        if not ranges:
            break
        new_t, new_raw = densify(ranges, zoom_fps)
        new_t = np.asarray(new_t, dtype=np.float64).reshape(-1)
        new_raw = np.asarray(new_raw, dtype=np.float64)
        new_raw = new_raw.reshape(raw.shape[0], -1)
        new_s = _fuse(norm.transform(new_raw), weights, params.any_weight, params.any_temperature) \
            if new_raw.shape[1] else np.zeros(0)
        if new_s.shape[0] != new_t.shape[0]:
            raise ValueError(f"densify returned {new_t.shape[0]} times but {new_s.shape[0]} scores")
        new_s = apply_priors(new_t, new_s, priors)
        # keep only frames not already present (same time within a millisecond)
        fresh = np.ones(len(new_t), dtype=bool)
        if len(new_t):
            srt = np.sort(all_t)
            pos = np.clip(np.searchsorted(srt, new_t), 1, max(len(srt) - 1, 1))
            near = np.minimum(np.abs(srt[pos - 1] - new_t), np.abs(srt[np.minimum(pos, len(srt) - 1)] - new_t))
            fresh = near > 1e-3
        improved = False
        for a, b in ranges:
            inside_new = fresh & (new_t >= a) & (new_t <= b)
            if not inside_new.any():
                continue
            inside_old = (all_t >= a) & (all_t <= b)
            old_best = all_s[inside_old].max() if inside_old.any() else -np.inf
            if new_s[inside_new].max() > old_best + 1e-6:
                improved = True
        frames_scored += int(len(new_t))
        explored = _merge(explored + ranges)
        all_t = np.concatenate([all_t, new_t[fresh]])
        all_s = np.concatenate([all_s, new_s[fresh]])
        rounds = np.concatenate([rounds, np.full(int(fresh.sum()), r, dtype=np.int64)])
        trace.append({"round": r, "ranges": [[_r(a), _r(b)] for a, b in ranges], "fps": _r(zoom_fps),
                      "frames_scored": int(len(new_t)), "new_frames": int(fresh.sum()),
                      "best_score": _r(new_s.max()) if len(new_s) else None, "improved": improved})
        if not improved:
            break
    idx = select_keyframes(all_t, all_s, params.k, min_gap=min_gap, seed=params.seed, scenes=scenes,
                           tolerance=params.tolerance, min_peak=params.min_peak,
                           temperature=params.temperature, concentration=params.concentration,
                           jitter=params.jitter)
    kfs = [Keyframe(float(all_t[i]), float(all_s[i]), int(rounds[i])) for i in idx]
    order = np.argsort(all_t, kind="stable")
    return SearchResult(kfs, trace, frames_scored, params, all_t[order], all_s[order])


def peak_extent(times: np.ndarray, scores: np.ndarray, t0: float, *, tolerance: float = 1.0,
                scenes: Sequence[tuple[float, float]] = (), pad: float | None = None,
                bounds: tuple[float, float] | None = None) -> tuple[float, float]:
    """The moment around the frame at ``t0``: the run of neighbouring frames scoring at least its score
    minus ``tolerance`` (the hump it tops, as ``_peaks`` sees it), not crossing a boundary of its scene,
    widened by ``pad`` seconds each side (default: half the frames' median spacing) and clipped to the
    scene and to ``bounds``."""
    t = np.asarray(times, dtype=np.float64)
    s = np.asarray(scores, dtype=np.float64)
    order = np.argsort(t, kind="stable")
    t, s = t[order], s[order]
    if not len(t):
        return (t0, t0)
    i = int(np.argmin(np.abs(t - t0)))
    groups = scene_ids(t, scenes) if len(scenes) else np.full(len(t), -1)
    floor = s[i] - tolerance
    lo = i
    while lo > 0 and s[lo - 1] >= floor and groups[lo - 1] == groups[i]:
        lo -= 1
    hi = i
    while hi + 1 < len(t) and s[hi + 1] >= floor and groups[hi + 1] == groups[i]:
        hi += 1
    half = sampling_interval(t) / 2.0 if pad is None else pad
    start, end = t[lo] - half, t[hi] + half
    if groups[i] >= 0:
        a, b = sorted(scenes)[int(groups[i])]
        start, end = max(start, a), min(end, b)
    if bounds is not None:
        start, end = max(start, bounds[0]), min(end, bounds[1])
    return (float(start), float(max(end, start)))


def unseen_scene_ranges(times: np.ndarray, scores: np.ndarray, scenes: Sequence[tuple[float, float]],
                        limit: int, *, min_len: float = 0.0) -> list[tuple[float, float]]:
    """Scenes holding no frame of ``times`` (shorter than the sampling interval, or between samples),
    at most ``limit``, those whose neighbouring frames score best first; each widened to ``min_len``."""
    t = np.asarray(times, dtype=np.float64)
    s = np.asarray(scores, dtype=np.float64)
    order = np.argsort(t, kind="stable")
    t, s = t[order], s[order]
    found = []
    for a, b in scenes:
        lo, hi = np.searchsorted(t, a, side="left"), np.searchsorted(t, b, side="left")
        if hi > lo or b <= a:
            continue  # some frame already shows it
        hint = max(s[lo - 1] if lo > 0 else -np.inf, s[hi] if hi < len(t) else -np.inf)
        pad = max(0.0, (min_len - (b - a)) / 2.0)
        found.append((-hint, a, (max(a - pad, 0.0), b + pad)))
    found.sort(key=lambda x: (x[0], x[1]))
    return [rng for _, _, rng in found[:limit]]


def _r(x: float) -> float:
    return round(float(x), 4)


# --------------------------------------------------------------------------------------------------
# Per-frame budgets (QuoTA)
# --------------------------------------------------------------------------------------------------

def frame_budgets(scores_of_selected: Sequence[float] | np.ndarray, total_pixels: int, min_pixels: int,
                  max_pixels: int, *, temperature: float = 1.0, multiple: int = 1) -> list[int]:
    """Pixel budget per selected frame, growing with relevance (softmax at ``temperature``), each within
    [min_pixels, max_pixels] (min relaxed when the total cannot give it to all), summing to <= total,
    rounded down to ``multiple``."""
    s = np.asarray(scores_of_selected, dtype=np.float64).reshape(-1)
    n = len(s)
    if n == 0 or total_pixels <= 0:
        return [0] * n
    lo = min(min_pixels, total_pixels // n)
    hi = max(max_pixels, lo)
    s = np.where(np.isfinite(s), s, np.nanmin(s[np.isfinite(s)]) if np.isfinite(s).any() else 0.0)
    w = np.exp((s - s.max()) / max(temperature, 1e-6))
    w /= w.sum()
    budget = np.full(n, float(lo))
    free = np.ones(n, dtype=bool)
    remaining = float(total_pixels) - lo * n
    # water-filling: share the remaining pixels by weight, capping at hi and re-sharing the excess
    for _ in range(n):
        if remaining <= 1e-9 or not free.any():
            break
        share = remaining * w[free] / w[free].sum()
        room = hi - budget[free]
        give = np.minimum(share, room)
        idx = np.flatnonzero(free)
        budget[idx] += give
        remaining -= float(give.sum())
        free[idx[give >= room - 1e-9]] = False
    mult = max(int(multiple), 1)
    out = [int(math.floor(b / mult) * mult) for b in budget]
    return out
