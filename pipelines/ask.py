"""`vqa search` and `vqa ask`: query-oriented keyframe search over the index, then an answer with evidence.

Search (no language model): decompose the question into what must be seen, score every indexed frame
against each sub-query with CLIP, add the moments found in speech / on-screen text / captions as
priors, zoom (decode extra frames densely around the best ranges, score them), select K relevant and
distinct keyframes. Ask: give those frames (resolution by relevance) and the relevant timed text to an
answerer, and return the answer with its evidence and the settings to reproduce it.
"""

from __future__ import annotations

import io
import json
import logging
import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from index.errors import StoreError
from index.store import Store
from pipelines import defaults
from pipelines import search as kf
from pipelines.backends.profiles import Models, is_random
from pipelines.closeups import answer_images, closeup_rows, closeups, save_images
from pipelines.errors import MediaError, NotIndexedError, VqaError
from pipelines.indexing import Indexer, IndexOptions
from pipelines.search.regions import frame_regions, stored_frames, window_spec
from pipelines.search.textsearch import TextHit, lines_near, search_text
from pipelines.stages.media import decode_ranges, probe, ranges_left, read_frame_at

PROMPT_TEMPLATE_ID = "vqa-frames-context-v1"
# The models a question needs (search and answer): while the answerer loads, the others (captioner,
# transcriber, OCR, left by indexing the video first) are freed as the models' policy says; these stay
# warm for the next question.
ANSWER_NEEDS = ("clip", "text_embedder", "answerer")
say = logging.getLogger("vqa.progress").info  # what a long step is doing, in words (the CLI shows it on stderr)


@dataclass(frozen=True)
class AskOptions:
    k: int = defaults.K
    zoom_rounds: int = defaults.ZOOM_ROUNDS
    seed: int = defaults.SEED
    frame_width: int = defaults.FRAME_WIDTH  # width of the frames given to the answerer (before per-frame budgets)
    total_pixels: int | None = None  # QuoTA-style budget over all frames; None: k * defaults.FRAME_PIXELS
    context_lines: int = defaults.CONTEXT_LINES
    max_new_tokens: int = defaults.MAX_NEW_TOKENS
    use_text: bool = True
    decompose: str = "rules"  # "rules", or "llm": the answerer's language model names targets and cues
    # "auto": a CLIP with random weights is neither loaded nor run when the answerer reads no frames (its
    # votes could change nothing: keyframes then follow what is said and written, spread over the video);
    # "on": always searched with the CLIP
    visual: str = "auto"
    closeups: int = defaults.CLOSEUPS  # keyframes whose matching region is also given as a close-up

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class SearchOutcome:
    video: dict
    subqueries: list[kf.SubQuery]
    result: kf.SearchResult
    text_hits: list[TextHit]
    priors: list[tuple[float, float, float]]
    zoom_frames: dict[float, np.ndarray] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)


def _resolve_video(store: Store, ref: str, *, indexer: Indexer | None) -> dict:
    from pipelines.backends.index_models import done_frames_runs

    video = store.find_video(ref)
    if indexer is not None and os.path.isfile(ref):
        known = store.lookup_path(ref)  # the same file (size, mtime) as when it was indexed
        if known and done_frames_runs(store, known):
            video = store.get_video(known)  # searched with the models that indexed it (frames_run)
        else:  # a new or changed file: index it first, with the models asked for
            say(f"indexing {os.path.basename(ref)} first")
            res = indexer.index(ref)
            if res.status == "failed":
                raise VqaError(res.error or "indexing failed", ref)
            video = store.get_video(res.video_id)
    if not video:
        if not os.path.exists(ref):
            raise MediaError("no such file (and no indexed video by that name)", ref)
        raise NotIndexedError("not indexed (run `vqa index` first)", ref)
    return video


def _video_path(store: Store, video: dict) -> str | None:
    for p in [video["path"], *store.video_paths(video["id"])]:
        if p and os.path.isfile(p):
            return p
    return None


def frames_run(store: Store, video: dict, models: Models) -> dict:
    """The frame embeddings to search, and the CLIP that must embed the query: by default the CLIP (and
    profile) that indexed the video, which ``models`` adopts; a CLIP or profile the user chose must be the
    one that indexed it. Text embedded by one CLIP is never scored against another's images."""
    from pipelines.backends.index_models import adopt_recorded

    return adopt_recorded(store, video, models)


def blind_clip(run: dict, models: Models) -> bool:
    """Whether the CLIP that indexed these frames has random weights while the answerer reads no frames:
    then nothing the CLIP says could change the answer, and it is not worth loading."""
    if not json.loads(run.get("stats") or "{}").get("random_weights"):
        return False
    return not reads_frames(models)


def reads_frames(models: Models) -> bool:
    """Whether the profile's answerer reads frames (a text-only language model reads the timed lines only)."""
    from pipelines.backends import registry

    try:
        backend, _ = registry.resolve("answerer", models.profile.answerer)
    except VqaError:
        return True
    return backend.reads_frames


def search_keyframes(store: Store, models: Models, ref: str, question: str, options: list[str] | None = None,
                     opts: AskOptions = AskOptions(), *, indexer: Indexer | None = None) -> SearchOutcome:
    t0 = time.perf_counter()
    video = _resolve_video(store, ref, indexer=indexer)
    run = frames_run(store, video, models)
    times, vecs = store.frame_matrix(run["key"])
    if not len(times):
        raise VqaError("the video has no indexed frames", video["path"])
    blind = opts.visual == "auto" and blind_clip(run, models)
    if not blind and "clip" not in models.loaded():
        say(f"loading the CLIP ({models.profile.clip})")
    clip = None if blind else models.clip()
    say(f"searching {os.path.basename(video['path'])}: {len(times)} frames, what is said and written")
    subs = _decompose(models, question, options or [], opts.decompose)
    if clip is None:  # no visual votes: every frame ties, and the timed text and coverage choose
        qvecs = np.zeros((len(subs), vecs.shape[1]), dtype=np.float32)
    else:
        qvecs = kf.embed_subqueries(clip.embed_texts, subs)
    sims = (vecs @ qvecs.T).T  # (Q, N)
    weights = [s.weight for s in subs]
    t_embed = time.perf_counter()

    hits: list[TextHit] = []
    priors: list[tuple[float, float, float]] = []
    if opts.use_text:
        temb = models.text_embedder() if models.profile.text_embedder else None
        hits = search_text(store, video["id"], question + " " + " ".join(options or []), text_embedder=temb,
                           limit=opts.context_lines)
        if hits:
            top = hits[0].score
            priors = [(h.start, h.end, 2.0 * h.score / top) for h in hits[:4]]
    t_text = time.perf_counter()

    path = _video_path(store, video)
    zoom_frames: dict[float, np.ndarray] = {}
    probed: list = []  # probe only when the zoom decodes
    media_warnings: list[str] = []  # decode errors and re-reads, in words: they go into the trace

    # what the index decoded where its grid under-samples the shots: those frames are read, not decoded
    probes = store.probe_frames(run["key"]) if path is not None and clip is not None else {}
    probe_at = {(round(fps, 3), round(float(t), 3)): v for (_, _, fps), (ts, vs) in probes.items()
                for t, v in zip(ts, vs)}
    served = {"ranges": 0, "frames": 0}
    duration = float(video["duration"] or 0.0) or None

    def densify(ranges, fps):
        if path is None:
            return np.zeros(0), np.zeros((len(subs), 0))
        have = {t for f, t in probe_at if f == round(fps, 3)}
        at_hand, todo = ranges_left(ranges, fps, duration, have)
        new_t = [np.asarray(at_hand, dtype=np.float64)] if at_hand else []
        vecs = [np.stack([probe_at[(round(fps, 3), round(t, 3))] for t in at_hand])] if at_hand else []
        served["ranges"] += sum(1 for a, b in ranges if not any(a <= x <= b or x <= a <= y for x, y in todo))
        served["frames"] += len(at_hand)
        if todo:
            if not probed:
                probed.append(probe(path))
            say(f"zooming: decoding {len(todo)} time ranges at {fps:g} fps"
                + (f" ({len(at_hand)} frames read from the index)" if at_hand else ""))
            times, frames = [], []
            for got in decode_ranges(path, todo, fps=fps, width=models.profile.decode_width, info=probed[0],
                                     warnings=media_warnings):
                for t, f in got:
                    times.append(t)
                    frames.append(f)
            if frames:
                new_t.append(np.asarray(times, dtype=np.float64))
                vecs.append(clip.embed_images(frames))
                for t, f in zip(times, frames):
                    zoom_frames[round(t, 3)] = f
        if not new_t or not sum(len(x) for x in new_t):
            return np.zeros(0), np.zeros((len(subs), 0))
        return np.concatenate(new_t), (np.concatenate(vecs) @ qvecs.T).T

    windows = store.held_windows(run["key"], window_spec()) if clip is not None else {}  # embedded ahead
    params = kf.SearchParams(k=opts.k, zoom_rounds=opts.zoom_rounds if path and clip is not None else 0,
                             seed=opts.seed)
    densify.held = [(a, b) for a, b, fps in probes  # type: ignore[attr-defined]  # read, not decoded
                    if params.zoom_fps and fps == round(params.zoom_fps, 3)]
    srun = store.latest_run(video["id"], "scenes")
    shots = [(s["start"], s["end"]) for s in store.scenes(srun["key"])] if srun else []
    result = kf.keyframe_search(times, sims, weights=weights, densify=densify, params=params, priors=priors,
                                bounds=(0.0, float(video["duration"] or times[-1])), scenes=shots,
                                regions=None if clip is None else
                                frame_regions(clip, qvecs, stored_frames(store, run["key"], zoom_frames),
                                              ahead=lambda ts: {float(x): windows[round(float(x), 3)] for x in ts
                                                                if round(float(x), 3) in windows},
                                              held=store.held_first_frames(run["key"], window_spec())))
    result.trace.extend({"media": w} for w in media_warnings)
    if served["frames"]:  # ranges: those read whole; frames: all read from the index
        result.trace.append({"zoom_from_index": dict(served)})
    if clip is None:
        result.trace.append({"clip": "not loaded: its weights are random and the answerer reads no frames, so "
                                     "the keyframes follow what is said and written"})
    t_end = time.perf_counter()
    timings = {"embed_query_ms": (t_embed - t0) * 1000, "text_ms": (t_text - t_embed) * 1000,
               "search_ms": (t_end - t_text) * 1000}
    return SearchOutcome(video, subs, result, hits, priors, zoom_frames, timings)


def _decompose(models: Models, question: str, options: list[str], how: str) -> list[kf.SubQuery]:
    """Rule-based by default; with ``llm`` the loaded answerer is asked (text only) for the targets and
    cues, and anything it says that cannot be parsed falls back to the rules."""
    if how != "llm":
        return kf.decompose_question(question, options)
    from pipelines.answerers.base import AnswerRequest

    answerer = models.answerer()

    def generate(prompt: str) -> str:
        req = AnswerRequest(question=prompt, options=[], frames=[], timestamps=[], context=[], max_new_tokens=64)
        return answerer.answer(req).text

    return kf.decompose_with_llm(question, options, generate)


def _scenes(store: Store, video_id: str) -> list[dict]:
    run = store.latest_run(video_id, "scenes")
    if not run:
        return []
    scenes = store.scenes(run["key"])
    crun = store.latest_run(video_id, "captions")
    caps = {c["scene_idx"]: c["text"] for c in store.captions(crun["key"])} if crun else {}
    random_caps = bool(crun and json.loads(crun["stats"] or "{}").get("random_weights"))
    for s in scenes:
        s["caption"] = caps.get(s["idx"])
        s["caption_random_weights"] = random_caps
    return scenes


def _scene_of(scenes: list[dict], t: float) -> int | None:
    for s in scenes:
        if s["start"] <= t < s["end"] or s is scenes[-1] and t >= s["start"]:
            return s["idx"] + 1
    return None


# -- vqa ask -----------------------------------------------------------------------------------------------

class Asker:
    """Answers questions about indexed videos; the models are loaded once and reused for every question."""

    def __init__(self, store: Store, models: Models, opts: AskOptions = AskOptions(),
                 indexer: Indexer | None = None):
        self.store = store
        self.models = models
        self.opts = opts
        self.indexer = indexer

    def ask(self, ref: str, question: str, options: list[str] | None = None, *,
            save_frames: str | None = None) -> dict:
        """Search the keyframes, then answer from them (see ``answer_at``)."""
        t0 = time.perf_counter()
        out = search_keyframes(self.store, self.models, ref, question, options, self.opts, indexer=self.indexer)
        return self.answer_at(out.video, question, options, out.result.keyframes, search=out,
                              save_frames=save_frames, started=t0)

    def answer_at(self, video: dict, question: str, options: list[str] | None, kfs: list[kf.Keyframe], *,
                  search: SearchOutcome | None = None, save_frames: str | None = None,
                  started: float | None = None, log: bool = True) -> dict:
        """Answer from given keyframes (the product's search, or a baseline's) plus the timed text:
        the search's text hits, the lines around the keyframes and the captions of their scenes."""
        from pipelines.answerers.base import AnswerRequest, ContextLine
        from pipelines.answerers.prompt import answer_fields

        opts = self.opts
        t0 = started or time.perf_counter()
        path = _video_path(self.store, video)
        t1 = time.perf_counter()
        media_warnings: list[str] = []
        info = None
        if save_frames or reads_frames(self.models):  # a text-only answerer is given no frames to read
            info = probe(path) if path else None  # once, for the frames and their close-ups
            frames = self._frames(path, info, video, kfs, search.zoom_frames if search else {}, media_warnings)
        else:
            frames = []
        total = opts.total_pixels or len(kfs) * defaults.FRAME_PIXELS
        budgets = kf.frame_budgets([k.score for k in kfs], total, 64 * 64, 1280 * 720)
        close = closeups(path, kfs, budgets, opts.closeups, info=info, warnings=media_warnings) if frames else []
        images, times, image_budgets, labels = answer_images(frames, kfs, close, total)
        budgets = image_budgets[:len(kfs)]
        t2 = time.perf_counter()
        scenes = _scenes(self.store, video["id"])
        used_scene_ids = sorted({_scene_of(scenes, k.t) for k in kfs} - {None})
        context: list[ContextLine] = []
        random_caps = any(s.get("caption_random_weights") for s in scenes)
        if not random_caps:
            for s in scenes:
                if s["idx"] + 1 in used_scene_ids and s.get("caption"):
                    context.append(ContextLine(s["start"], s["end"], "caption", s["caption"]))
        if opts.use_text:
            seen = set()
            for h in (search.text_hits if search else [])[: opts.context_lines]:
                if h.source == "caption" and random_caps:
                    continue
                seen.add((h.source, h.start, h.text))
                context.append(ContextLine(h.start, h.end, h.source, h.text))
            for r in lines_near(self.store, video["id"], [k.t for k in kfs]):
                key = (r["source"], r["start"], r["text"])
                if key not in seen and len(context) < opts.context_lines + len(used_scene_ids):
                    seen.add(key)
                    context.append(ContextLine(r["start"], r["end"], r["source"], r["text"]))
        context.sort(key=lambda c: (c.start, c.source))
        if "answerer" not in self.models.loaded():
            say(f"loading the answerer ({self.models.profile.answerer})")
        with self.models.stage(*ANSWER_NEEDS):  # the answerer (a VLM) loads where the indexing models were
            answerer = self.models.answerer()
            say(f"answering with {answerer.name or self.models.profile.answerer} from {len(frames)} frames and "
                f"{len(context)} lines")
            req = AnswerRequest(question=question, options=list(options or []), frames=images,
                                timestamps=times, context=context, pixel_budgets=image_budgets,
                                seed=opts.seed, max_new_tokens=opts.max_new_tokens,
                                relevance=self._relevance(question, context), labels=labels)
            ans = answerer.answer(req)
        shown = answer_fields(ans)
        t3 = time.perf_counter()
        saved, problems = [], []
        if save_frames:  # a folder that cannot take them costs the frames, never the answer or its log
            try:
                saved = save_images(save_frames, frames, kfs, close)
            except OSError as e:
                why = "not a folder" if os.path.exists(save_frames) and not os.path.isdir(save_frames) else e.strerror
                problems.append(f"{save_frames}: keyframes not saved ({why or e}); --save-frames needs a folder")
        settings = self._settings(budgets, answerer, ans)
        trace = (search.result.trace if search else []) + [{"media": w} for w in media_warnings]
        result = {
            "video": video["path"], "video_id": video["id"], "question": question, "options": list(options or []),
            "answer": shown,
            "keyframes": [{**k.as_dict(), "scene": _scene_of(scenes, k.t), "pixels": b,
                           **({"image": saved[i]} if saved else {})} for i, (k, b) in enumerate(zip(kfs, budgets))],
            "closeups": closeup_rows(kfs, close, image_budgets, saved),
            "scenes": [{"scene": s["idx"] + 1, "start": round(s["start"], 3), "end": round(s["end"], 3),
                        "caption": s["caption"], "caption_random_weights": s["caption_random_weights"]}
                       for s in scenes if s["idx"] + 1 in used_scene_ids],
            "context": [{"source": c.source, "start": round(c.start, 3), "end": round(c.end, 3), "text": c.text}
                        for c in ans.context_used],
            "subqueries": [s.as_dict() for s in search.subqueries] if search else [],
            "settings": settings,
            "timings": {**({k: round(v, 1) for k, v in search.timings.items()} if search else {}),
                        "frames_ms": round((t2 - t1) * 1000, 1), "answer_ms": round((t3 - t2) * 1000, 1),
                        "total_ms": round((t3 - t0) * 1000, 1),
                        "frames_scored": search.result.frames_scored if search else 0},
            "trace": trace,
        }
        if log:
            try:
                result["answer_id"] = self.store.add_answer({
                    "video_id": video["id"], "question": question, "options": list(options or []),
                    "answer": shown["text"], "choice": shown["choice"], "keyframes": result["keyframes"],
                    "evidence": result["context"], "settings": settings, "timings": result["timings"],
                    "trace": trace})
            except StoreError as e:  # read-only or full: the answer stands, unlogged, and says so
                result["answer_id"], result["not_logged"] = None, str(e)
        if problems:
            result["problems"] = problems
        return result

    def _relevance(self, question: str, context: list) -> list[float] | None:
        """Each line's sentence-embedding similarity to the question (one of the signals of how well the
        evidence supports the answer); None without a text embedder."""
        if not context or not self.models.profile.text_embedder:
            return None
        vecs = self.models.text_embedder().embed_texts([question] + [c.text for c in context])
        return [round(float(x), 4) for x in vecs[1:] @ vecs[0]]

    def _frames(self, path: str | None, info, video: dict, kfs, zoom_frames: dict,
                warnings: list[str] | None = None) -> list:
        """Answer-resolution frames at the keyframes' times: zoom frames already decoded are reused;
        the others are read from the file (in parallel), or from stored thumbnails if the file is gone."""
        from PIL import Image

        def one(k):
            f = zoom_frames.get(round(k.t, 3))
            if f is None and info is not None:
                f = read_frame_at(path, k.t, width=self.opts.frame_width, info=info, warnings=warnings)
            if f is None:
                run = frames_run(self.store, video, self.models)
                jpeg = self.store.frame_jpegs(run["key"], [k.t])[k.t]
                return Image.open(io.BytesIO(jpeg)).convert("RGB")
            return Image.fromarray(f)

        with ThreadPoolExecutor(max_workers=4) as pool:
            return list(pool.map(one, kfs))

    def _settings(self, budgets, answerer, ans) -> dict:
        from pipelines.indexing import spec_fingerprint

        prof = self.models.profile
        return {
            "profile": prof.name,
            "models": {
                "clip": {"name": prof.clip, "fingerprint": spec_fingerprint(prof.clip),
                         "random_weights": bool(self.models.clip().random_weights) if "clip" in self.models.loaded()
                         else is_random(prof.clip, "clip")},
                "answerer": {"name": prof.answerer, "fingerprint": getattr(answerer, "fingerprint", None),
                             "random_weights": bool(getattr(answerer, "random_weights", False))},
                "captioner": {"name": prof.captioner, "fingerprint": spec_fingerprint(prof.captioner, "captioner"),
                              "random_weights": is_random(prof.captioner)},
                "text_embedder": {"name": prof.text_embedder} if prof.text_embedder else None,
            },
            "k": self.opts.k, "seed": self.opts.seed, "frame_width": self.opts.frame_width,
            "pixel_budgets": budgets, "prompt_template": getattr(ans, "prompt_template", PROMPT_TEMPLATE_ID),
            "search": kf.SearchParams(k=self.opts.k, zoom_rounds=self.opts.zoom_rounds, seed=self.opts.seed).as_dict(),
            "max_new_tokens": self.opts.max_new_tokens,
        }


def default_indexer(store: Store, models: Models, progress=None) -> Indexer:
    return Indexer(store, models, IndexOptions(), progress=progress)


# `vqa search` (moments, no language model) lives in pipelines/moments.py; its names stay importable here
from pipelines.moments import fuse_moments as _fuse_moments  # noqa: E402, F401
from pipelines.moments import search_library, search_moments  # noqa: E402, F401
