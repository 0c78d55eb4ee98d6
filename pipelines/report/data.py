"""What a report shows, gathered from the index and (with a question) from one search and its answer.

``build_report`` runs the question through the same search and answerer as `vqa ask` and keeps what
`ask`'s JSON leaves out: the relevance curve over every scored frame, which frames came from the
index and which from each zoom round, and the keyframe images the answerer was given.
"""

from __future__ import annotations

import io
import json
import os
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from index.store import Store
from pipelines.backends.profiles import Models
from pipelines.errors import MediaError, NotIndexedError

TEXT_STAGES = (("speech", "transcript"), ("screen", "ocr"), ("caption", "captions"))


@dataclass
class ReportData:
    video: dict
    duration: float
    scenes: list[dict]  # scene, start, end, caption, thumb (JPEG bytes or None)
    lines: list[dict]  # source, start, end, text: speech, on-screen text, captions
    question: str | None = None
    options: list[str] = field(default_factory=list)
    answer: dict | None = None  # the same dict as `vqa ask --json`
    keyframes: list[dict] = field(default_factory=list)  # answer keyframes + "jpeg"
    closeups: list[dict] = field(default_factory=list)  # the answer's close-ups (keyframe, t, size) + "jpeg"
    curve_times: np.ndarray = field(default_factory=lambda: np.zeros(0))
    curve_scores: np.ndarray = field(default_factory=lambda: np.zeros(0))
    index_times: np.ndarray = field(default_factory=lambda: np.zeros(0))
    rounds: list[dict] = field(default_factory=list)  # the search trace, each with its frames' "times"
    settings: dict = field(default_factory=dict)
    created: float = field(default_factory=time.time)


def build_report(store: Store, models: Models, ref: str, question: str | None = None,
                 options: list[str] | None = None, opts: Any = None, *, indexer: Any = None) -> ReportData:
    """The report of one video; with a question, search it and answer it as `vqa ask` does."""
    from pipelines.ask import Asker, AskOptions

    opts = opts or AskOptions()
    if not question:
        video = _video(store, ref, indexer)
        return base_report(store, models, video)
    return ask_for_report(Asker(store, models, opts, indexer=indexer), ref, question, options or [])[1]


def ask_for_report(asker: Any, ref: str, question: str, options: list[str], *,
                   save_frames: str | None = None) -> tuple[dict, ReportData]:
    """`Asker.ask`, keeping the search outcome: (the answer dict, the report's data)."""
    from pipelines.ask import search_keyframes

    t0 = time.perf_counter()
    out = search_keyframes(asker.store, asker.models, ref, question, options, asker.opts, indexer=asker.indexer)
    result = asker.answer_at(out.video, question, options, out.result.keyframes, search=out,
                             save_frames=save_frames, started=t0)
    data = base_report(asker.store, asker.models, out.video)
    data.question, data.options, data.answer = question, list(options), result
    data.settings = result.get("settings", data.settings)
    res = out.result
    data.curve_times = np.asarray(res.curve_times, dtype=np.float64)
    data.curve_scores = np.asarray(res.curve_scores, dtype=np.float64)
    data.index_times = _index_times(asker.store, asker.models, out.video)
    data.rounds = _rounds(res.trace, sorted(out.zoom_frames), data.curve_times, data.curve_scores)
    path, info = _source(asker.store, out.video)
    data.keyframes = _keyframe_images(asker, out, result["keyframes"], path, info)
    data.closeups = _closeup_images(asker, out, result, path, info)
    return result, data


def _source(store: Store, video: dict) -> tuple[str | None, Any]:
    """The video's file where it still is, and its probe (None, None when it is gone)."""
    from pipelines.stages.media import probe

    path = next((p for p in [video["path"], *store.video_paths(video["id"])] if p and os.path.isfile(p)), None)
    return path, probe(path) if path else None


def _closeup_images(asker: Any, out: Any, result: dict, path: str | None, info: Any) -> list[dict]:
    """The close-ups the answerer was given, cropped again the same way (``pipelines.closeups``)."""
    from pipelines.closeups import closeups

    if not result.get("closeups"):
        return []
    budgets = [k["pixels"] for k in result["keyframes"]]
    made = dict(closeups(path, out.result.keyframes, budgets, asker.opts.closeups, info=info))
    res = []
    for c in result["closeups"]:
        im = made.get(c["keyframe"] - 1)
        if im is not None:
            buf = io.BytesIO()
            im.save(buf, format="JPEG", quality=85)
            res.append({**c, "jpeg": buf.getvalue()})
    return res


def base_report(store: Store, models: Models, video: dict) -> ReportData:
    """What the index holds about a video: scenes with thumbnails, and its timed lines."""
    scenes = []
    srun = store.latest_run(video["id"], "scenes")
    if srun:
        crun = store.latest_run(video["id"], "captions")
        caps = {c["scene_idx"]: c["text"] for c in store.captions(crun["key"])} if crun else {}
        random_caps = bool(crun and json.loads(crun["stats"] or "{}").get("random_weights"))
        for s in store.scene_images(srun["key"]):
            scenes.append({"scene": s["idx"] + 1, "start": float(s["start"]), "end": float(s["end"]),
                           "caption": caps.get(s["idx"]), "caption_random_weights": random_caps,
                           "thumb": s["rep_jpeg"], "rep_t": s["rep_t"]})
    lines = []
    for source, stage in TEXT_STAGES:
        run = store.latest_run(video["id"], stage)
        random = bool(run and json.loads(run["stats"] or "{}").get("random_weights"))
        for r in store.texts(run["key"]) if run else []:
            if r["source"] == source and (r["text"] or "").strip():
                lines.append({"source": source, "start": float(r["start"]), "end": float(r["end"]),
                              "text": r["text"], "random_weights": random})
    lines.sort(key=lambda r: (r["start"], r["source"]))
    duration = float(video["duration"] or max([s["end"] for s in scenes] + [r["end"] for r in lines] + [0.0]))
    prof = models.profile
    settings = {"profile": prof.name, "models": {"clip": prof.clip, "captioner": prof.captioner,
                                                 "transcriber": prof.transcriber, "ocr": prof.ocr}}
    return ReportData(video=dict(video), duration=duration, scenes=scenes, lines=lines, settings=settings)


def _video(store: Store, ref: str, indexer: Any) -> dict:
    if indexer is not None and os.path.isfile(ref):
        res = indexer.index(ref)
        if res.status == "failed":
            raise MediaError(res.error or "indexing failed", ref)
        return store.get_video(res.video_id)
    video = store.find_video(ref)
    if video:
        return video
    if not os.path.exists(ref):
        raise MediaError("no such file (and no indexed video by that name)", ref)
    raise NotIndexedError("not indexed (run `vqa index` first)", ref)


def _index_times(store: Store, models: Models, video: dict) -> np.ndarray:
    from pipelines.ask import frames_run

    times, _ = store.frame_matrix(frames_run(store, video, models)["key"])
    return np.asarray(times, dtype=np.float64)


def _rounds(trace: list[dict], zoom_times: list[float], curve_t: np.ndarray, curve_s: np.ndarray) -> list[dict]:
    """The trace's zoom rounds, each with the frames it scored (a frame belongs to the first round whose
    ranges hold it) and their scores on the curve."""
    rounds = [dict(r) for r in trace if r.get("round", 0) > 0]
    left = list(zoom_times)
    for r in rounds:
        mine = [t for t in left if any(a - 1e-3 <= t <= b + 1e-3 for a, b in r.get("ranges", []))]
        left = [t for t in left if t not in mine]
        r["times"] = mine
        r["scores"] = [_score_at(curve_t, curve_s, t) for t in mine]
    return rounds


def _score_at(curve_t: np.ndarray, curve_s: np.ndarray, t: float) -> float | None:
    if not len(curve_t):
        return None
    i = int(np.argmin(np.abs(curve_t - t)))
    return float(curve_s[i]) if abs(curve_t[i] - t) < 1e-3 else None


def _keyframe_images(asker: Any, out: Any, keyframes: list[dict], path: str | None, info: Any) -> list[dict]:
    """The keyframes as the answerer saw them: zoom frames already decoded, the others read from the file
    (``path``, probed as ``info``) at the answer width, or the index's thumbnails when the file is gone."""
    from PIL import Image

    from pipelines.ask import frames_run
    from pipelines.stages.media import read_frame_at

    store, video = asker.store, out.video
    thumbs = None
    res = []
    for k in keyframes:
        t = float(k["t"])
        frame = out.zoom_frames.get(round(t, 3))
        if frame is None and info is not None:
            frame = read_frame_at(path, t, width=asker.opts.frame_width, info=info)
        if frame is not None:
            buf = io.BytesIO()
            Image.fromarray(frame).save(buf, format="JPEG", quality=85)
            jpeg = buf.getvalue()
        else:
            if thumbs is None:
                thumbs = store.frame_jpegs(frames_run(store, video, asker.models)["key"],
                                           [float(x["t"]) for x in keyframes])
            jpeg = thumbs[t]
        res.append({**k, "jpeg": jpeg})
    return res
