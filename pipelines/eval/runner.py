"""The runner that binds `vqa eval`'s methods to the product: one call per (item, method).

Methods (see :data:`METHODS`):
- ``uniform``: K evenly spaced times over the probed duration (no model; scores None);
- ``topk``: plain CLIP top-K over the indexed frames, scored against the raw question text;
- ``vqa``: the product's keyframe search (:func:`pipelines.ask.search_keyframes`; with answers,
  :class:`pipelines.ask.Asker` end to end).
Unless ``search_only``, each method's own frames then go to the answerer; the baselines get the timed
text near their keyframes as context, the product what its search found. Every video is indexed (what
is missing) once, before its first method runs; fps and duration of the file go with every result.

    runner = make_runner(store, models, indexer, k=8, seed=0, search_only=True, zoom_rounds=2)
    summary = run_eval(items, ["uniform", "topk", "vqa"], runner, "results.jsonl")
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, replace
from typing import Any

from index.store import Store
from pipelines import defaults
from pipelines.backends.profiles import Models
from pipelines.errors import VqaError
from pipelines.eval.baselines import topk_indices, uniform_times
from pipelines.eval.items import EvalDataError, EvalItem
from pipelines.eval.results import read_results
from pipelines.indexing import Indexer, IndexResult, spec_fingerprint
from pipelines.stages.media import VideoInfo, probe

METHODS = ("uniform", "topk", "vqa")


@dataclass(frozen=True)
class EvalRunOptions:
    """What a whole run shares; recorded in every result line's ``settings["eval"]``."""

    k: int = defaults.K
    seed: int = defaults.SEED
    search_only: bool = False
    zoom_rounds: int = defaults.ZOOM_ROUNDS
    frame_width: int = defaults.FRAME_WIDTH  # width of the frames the answerer gets (as `vqa ask`)
    max_new_tokens: int = defaults.MAX_NEW_TOKENS
    subtitles: bool = True  # the benchmark's subtitles as the speech channel; False: no speech text at all

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class _Video:
    path: str
    info: VideoInfo | None = None
    video: dict | None = None  # the store's row
    error: str | None = None
    index_ms: float | None = None  # reported once, with the first result of the video
    index_status: str | None = None
    subtitles: str | None = None  # "benchmark" | "none" | "transcript" (the product's own speech channel)


class EvalRunner:
    """``runner(item, method) -> dict`` for :func:`pipelines.eval.run.run_eval`."""

    def __init__(self, store: Store, models: Models, indexer: Indexer | None, opts: EvalRunOptions, *,
                 log_answers: bool = True):
        if opts.k < 1:
            raise ValueError("k must be >= 1")
        self.store = store
        self.models = models
        self.indexer = indexer
        self.opts = opts
        # False (a cluster worker, the database read-only): the product's answers are not logged here; the
        # last one waits in ``unlogged`` for the driver to log it (its ``answer_id`` is None until then)
        self.log_answers = log_answers
        self.unlogged: dict | None = None
        self._videos: dict[tuple[str, str | None], _Video] = {}  # (path, subtitle file) -> the video
        self._elsewhere: dict[tuple[str, str | None], IndexResult] = {}
        self._frames: dict[str, tuple[Any, Any]] = {}  # video id -> (times, embeddings) of the index

    # -- what a run is -----------------------------------------------------------------------------------
    def run_settings(self) -> dict[str, Any]:
        """The settings that make two runs comparable (checked before resuming a results file)."""
        prof = self.models.profile
        return {
            **self.opts.as_dict(), "profile": prof.name, "clip": prof.clip,
            "clip_fingerprint": _clip_fingerprint(self.models),
            "answerer": None if self.opts.search_only else prof.answerer,
        }

    # -- the runner ------------------------------------------------------------------------------------
    def __call__(self, item: EvalItem, method: str) -> dict:
        return self.run_prepared(item, method, *self.prepare(item, method))

    def prepare(self, item: EvalItem, method: str) -> tuple[_Video, dict[str, float]]:
        """The part of a call that reads and writes the database: the video probed and indexed (once),
        and the index timing it reports with its first result. `--engine ray` runs this on the driver
        and :meth:`run_prepared` on a worker."""
        if method not in METHODS:
            raise ValueError(f"unknown search method {method!r} (choose from {', '.join(METHODS)})")
        v = self._prepare(item)
        timings: dict[str, float] = {}
        if v.index_ms is not None:
            timings["index_ms"] = round(v.index_ms, 1)
            v.index_ms = None
        return v, timings

    def run_prepared(self, item: EvalItem, method: str, v: _Video, timings: dict[str, float]) -> dict:
        """Search (and answer) one item with one method, its video prepared: reads the database only
        (the product's answer is logged unless ``log_answers`` is False)."""
        self.unlogged = None
        timings = dict(timings)
        if method in ("topk", "vqa"):
            self.models.clip()  # loaded once, outside the timed search
        if method == "vqa" and not self.opts.search_only:
            out = self._ask(item, v)
        else:
            out = getattr(self, f"_{method}")(item, v)
            if not self.opts.search_only:
                self._answer(item, v, out)
        timings.update(out.pop("timings"))
        settings = {"eval": self.run_settings(), "method": method, **out.pop("settings", {})}
        return {**out, "timings": timings, "settings": settings, "fps": v.info.fps, "annotation_fps": item.fps,
                "duration": v.info.duration, "video_id": v.video["id"], "index_status": v.index_status,
                "subtitles": v.subtitles}

    def _prepare(self, item: EvalItem) -> _Video:
        """Probe and index a video once (per subtitle file); a failure is remembered and raised for each of
        its methods. The benchmark's subtitles (or none, without subtitles) become its transcript."""
        path = item.video
        sub_key = item.subtitles if self.opts.subtitles else "-"
        v = self._videos.get((path, sub_key))
        if v is None:
            v = self._videos[(path, sub_key)] = _Video(path)
            try:
                v.info = probe(path)
                t0 = time.perf_counter()
                if self.indexer is not None:
                    indexer, v.subtitles = self._indexer_for(item, v.info)
                    before = self._elsewhere.pop((path, sub_key), None)
                    res = before if before and before.status == "failed" else indexer.index(path)
                    if res.status == "failed":
                        raise VqaError(f"indexing failed: {res.error}", path)
                    v.index_status = before.status if before else res.status
                    v.video = self.store.get_video(res.video_id)
                    _check_transcript(self.store, self.models, indexer, v.video["id"], path,
                                      own=indexer is self.indexer)
                    t0 -= before.seconds if before else 0.0
                else:
                    v.video = self.store.find_video(path)
                    v.index_status = "existing" if v.video else None
                    if not v.video:
                        raise VqaError("not indexed (run `vqa index` first)", path)
                v.index_ms = (time.perf_counter() - t0) * 1000
            except VqaError as e:
                v.error = str(e)
        if v.error:
            raise VqaError(v.error)
        return v

    def indexed_elsewhere(self, item: EvalItem, result: IndexResult) -> None:
        """The item's video was just indexed elsewhere (on a cluster), with the options
        :meth:`_indexer_for` gives: its results report that indexing (status, time) as a local run's
        would, and a failure is its items' error without indexing it again here."""
        self._elsewhere[(item.video, item.subtitles if self.opts.subtitles else "-")] = result

    def _indexer_for(self, item: EvalItem, info: VideoInfo) -> tuple[Indexer, str]:
        """The indexer for this item's video: with the benchmark's subtitles as its transcript, with an
        empty transcript (without subtitles), or the product's own speech channel."""
        if self.opts.subtitles and not item.subtitles:
            return self.indexer, "transcript"
        from pipelines.eval.subtitles import prepared_subtitles

        srt = prepared_subtitles(item.subtitles if self.opts.subtitles else None, item.subtitle_offset,
                                 item.duration or info.duration)
        opts = replace(self.indexer.opts, subtitles=srt)
        return (Indexer(self.store, self.models, opts, progress=self.indexer.progress, cancel=self.indexer.cancel),
                "benchmark" if self.opts.subtitles else "none")

    # -- frame choice ----------------------------------------------------------------------------------
    def _uniform(self, item: EvalItem, v: _Video) -> dict:
        t0 = time.perf_counter()
        times = uniform_times(v.info.duration, self.opts.k)
        ms = (time.perf_counter() - t0) * 1000
        return {"keyframes": [{"t": round(t, 3), "score": None} for t in times], "frames_scored": 0,
                "timings": {"search_ms": ms}}

    def _index_frames(self, v: _Video):
        from pipelines.ask import frames_run

        key = v.video["id"]
        if key not in self._frames:
            run = frames_run(self.store, v.video, self.models)
            self._frames[key] = self.store.frame_matrix(run["key"])
        return self._frames[key]

    def _topk(self, item: EvalItem, v: _Video) -> dict:
        t0 = time.perf_counter()
        times, vecs = self._index_frames(v)
        if not len(times):
            raise VqaError("the video has no indexed frames", v.path)
        q = self.models.clip().embed_texts([item.question])[0]
        scores = vecs @ q
        idx = topk_indices(scores.tolist(), self.opts.k)
        ms = (time.perf_counter() - t0) * 1000
        return {"keyframes": [{"t": round(float(times[i]), 3), "score": round(float(scores[i]), 4)} for i in idx],
                "frames_scored": int(len(times)), "timings": {"search_ms": ms}}

    def _ask_options(self):
        from pipelines.ask import AskOptions

        o = self.opts
        return AskOptions(k=o.k, zoom_rounds=o.zoom_rounds, seed=o.seed, frame_width=o.frame_width,
                          max_new_tokens=o.max_new_tokens)

    def _vqa(self, item: EvalItem, v: _Video) -> dict:
        from pipelines.ask import search_keyframes

        t0 = time.perf_counter()
        out = search_keyframes(self.store, self.models, v.path, item.question, list(item.options),
                               self._ask_options(), indexer=None)
        ms = (time.perf_counter() - t0) * 1000
        res = out.result
        return {"keyframes": [k.as_dict() for k in res.keyframes], "frames_scored": int(res.frames_scored),
                "timings": {"search_ms": ms, **{f"vqa_{k}": round(x, 1) for k, x in out.timings.items()}},
                "trace": res.trace, "subqueries": [s.as_dict() for s in out.subqueries],
                "settings": {"search": res.params.as_dict()}}

    # -- answering -------------------------------------------------------------------------------------
    def _ask(self, item: EvalItem, v: _Video) -> dict:
        """The product end to end (search, frames, context, answer), as `vqa ask` runs it."""
        from pipelines.ask import Asker, search_keyframes

        t0 = time.perf_counter()  # Asker.ask, with the log left to the driver where it must be
        opts = self._ask_options()
        found = search_keyframes(self.store, self.models, v.path, item.question, list(item.options), opts,
                                 indexer=None)
        r = Asker(self.store, self.models, opts, indexer=None).answer_at(
            found.video, item.question, list(item.options), found.result.keyframes, search=found, started=t0,
            log=self.log_answers)
        if not self.log_answers:
            self.unlogged, r = r, {**r, "answer_id": None}
        t = r["timings"]
        search_ms = sum(t.get(k, 0.0) for k in ("embed_query_ms", "text_ms", "search_ms"))
        return {"keyframes": r["keyframes"], "frames_scored": int(t["frames_scored"]),
                **_answer_fields(r["answer"]),
                "timings": {"search_ms": search_ms, **{f"vqa_{k}": x for k, x in t.items() if k != "frames_scored"}},
                "trace": r["trace"], "subqueries": r["subqueries"], "context": r["context"],
                "answer_id": r["answer_id"], "settings": {"ask": r["settings"]}}

    def _answer(self, item: EvalItem, v: _Video, out: dict) -> None:
        """A baseline's own frames (and the timed text near them) to the answerer, through the same
        ``Asker.answer_at`` as the product's search; adds the answer to ``out``."""
        from pipelines import search as kf
        from pipelines.ask import Asker

        kfs = [kf.Keyframe(float(k["t"]), float(k["score"]) if k.get("score") is not None else 0.0, 0)
               for k in out["keyframes"]]
        r = Asker(self.store, self.models, self._ask_options(), indexer=None).answer_at(
            v.video, item.question, list(item.options), kfs, log=False)
        t = r["timings"]
        out["timings"].update({"frames_ms": t["frames_ms"], "answer_ms": t["answer_ms"]})
        a = r["settings"]["models"]["answerer"]
        out.setdefault("settings", {})["answer"] = {
            "answerer": a["name"], "fingerprint": a["fingerprint"], "random_weights": a["random_weights"],
            **{k: r["settings"][k] for k in ("prompt_template", "pixel_budgets", "frame_width", "seed")},
            "context": "timed text near the keyframes"}
        out.update(_answer_fields(r["answer"]))
        out["context"] = r["context"]


def _answer_fields(a: Mapping[str, Any]) -> dict:
    """``answer`` is what gets graded: the chosen letter for multiple choice, else the reply's text."""
    return {"answer": a.get("choice") or a.get("text"), "answer_detail": dict(a)}


def _check_transcript(store: Store, models: Models, indexer: Indexer, video_id: str, path: str, *,
                      own: bool) -> None:
    """Search and answers read a video's latest transcript: it must be this run's subtitles (or, for
    vqa's own speech channel, not a benchmark's subtitles left by another run)."""
    from pipelines.indexing import plan_stages

    latest = store.latest_run(video_id, "transcript")
    if own:
        wrong = latest is not None and latest["model"] == "subtitles"
    else:
        plan = plan_stages(video_id, models.profile, indexer.opts, path=path).get("transcript")
        wrong = bool(plan and latest and latest["key"] != plan.key)
    if wrong:
        raise VqaError("this database holds a later transcript of the video than this run's subtitle setting "
                       "(from another `vqa eval` or `vqa index`); use one --db per subtitle setting", path)


def _clip_fingerprint(models: Models) -> str:
    return spec_fingerprint(models.profile.clip, "clip")


def make_runner(store: Store, models: Models, indexer: Indexer | None, *, k: int = defaults.K,
                seed: int = defaults.SEED, search_only: bool = False, zoom_rounds: int = defaults.ZOOM_ROUNDS,
                subtitles: bool = True) -> EvalRunner:
    """The runner for ``run_eval``: methods ``uniform``, ``topk``, ``vqa``; indexes missing videos
    with ``indexer`` (None: they must be indexed already), the benchmark's subtitles as their
    transcript (``subtitles=False``: no speech text at all, the "without subtitles" setting)."""
    return EvalRunner(store, models, indexer, EvalRunOptions(k=k, seed=seed, search_only=search_only,
                                                             zoom_rounds=zoom_rounds, subtitles=subtitles))


def check_resumable(out_path: str | os.PathLike, settings: Mapping[str, Any]) -> None:
    """Refuse to append to a results file written with other settings (K, seed, models...): its lines
    and the new ones would be summarised as one run."""
    for line in read_results(out_path):
        if line.get("error"):
            continue
        old = (line.get("settings") or {}).get("eval")
        if old == dict(settings):
            continue
        if not isinstance(old, Mapping):
            diff = "it has no eval settings"
        else:
            keys = sorted(set(old) | set(settings))
            diff = ", ".join(f"{key} {old.get(key)!r} -> {settings.get(key)!r}" for key in keys
                             if old.get(key) != settings.get(key))
        raise EvalDataError(f"results were written with other settings ({diff}); pass --no-resume to start "
                            f"over, or another --out", os.fspath(out_path))
