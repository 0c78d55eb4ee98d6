"""What `vqa index` would run for a video, and where each stage stands: the stages, their options, and
each stage's cache key (video fingerprint, stage, model fingerprint, canonical params).

Stages: ``scenes`` (PySceneDetect), ``frames`` (CLIP embeddings + thumbnails of frames sampled at
``embed_fps``), ``captions`` (one per scene), ``transcript`` (speech), ``ocr`` (on-screen text) and
``textvec`` (sentence embeddings of all timed text). Model fingerprints come from the backend registry
(the content of the weight files: ``pipelines/backends/identity.py``).
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from typing import Any

from index.store import Store, pid_alive, run_key
from pipelines import defaults
from pipelines.backends.profiles import Profile
from pipelines.backends.util import files_fingerprint
from pipelines.stages.segment import SceneParams

STAGES = ("scenes", "frames", "captions", "transcript", "ocr", "textvec")


@dataclass(frozen=True)
class IndexOptions:
    embed_fps: float = defaults.EMBED_FPS
    scene: SceneParams = field(default_factory=SceneParams)
    thumb_width: int = defaults.THUMB_WIDTH
    captions: bool = True
    speech: bool = True
    screen_text: bool = True
    ocr_fps: float = defaults.OCR_FPS
    language: str | None = None
    subtitles: str | None = None  # a .srt/.vtt file to use as the transcript (a benchmark's), no transcriber needed

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def spec_fingerprint(spec: str | None, kind: str = "clip", *, device: str | None = None) -> str:
    """A model's identity without loading it: the content of its weight files (hashed once, remembered by
    path, size and mtime), a cached hub model's revision, or the name that pins published weights."""
    from pipelines.backends import registry

    return registry.identify(kind, spec, device=device)


@dataclass(frozen=True)
class StagePlan:
    stage: str
    key: str
    model: str
    model_fp: str
    params: dict[str, Any]


def plan_stages(video_id: str, profile: Profile, opts: IndexOptions, info_has_audio: bool | None = None,
                path: str | None = None) -> dict[str, StagePlan]:
    """Every stage this profile and these options call for, with its cache key."""
    from importlib.metadata import version

    detector_version = f"pyscenedetect-{version('scenedetect')}"
    plans: dict[str, StagePlan] = {}

    def add(stage: str, model: str, model_fp: str, params: dict[str, Any]) -> None:
        plans[stage] = StagePlan(stage, run_key(video_id, stage, model_fp, params), model, model_fp, params)

    add("scenes", detector_version, detector_version, opts.scene.as_dict())
    add("frames", profile.clip, spec_fingerprint(profile.clip, "clip"),
        {"fps": opts.embed_fps, "width": profile.decode_width, "thumb_width": opts.thumb_width})
    if opts.captions and profile.captioner:
        add("captions", profile.captioner, spec_fingerprint(profile.captioner, "captioner"), {"scenes": plans["scenes"].key})
    text_sources = []
    if opts.speech and opts.subtitles:
        add("transcript", "subtitles", "subtitles", {"subtitles": files_fingerprint("subtitles", [opts.subtitles])})
        text_sources.append(plans["transcript"].key)
    elif opts.speech and profile.transcriber:
        sidecar = _sidecar_fingerprint(path) if path else None
        add("transcript", profile.transcriber, spec_fingerprint(profile.transcriber, "transcriber"),
            {"language": opts.language, "vad": True, "sidecar": sidecar})
        text_sources.append(plans["transcript"].key)
    if opts.screen_text and profile.ocr:
        add("ocr", profile.ocr, spec_fingerprint(profile.ocr, "ocr"),
            {"fps": opts.ocr_fps, "width": profile.decode_width})
        text_sources.append(plans["ocr"].key)
    if profile.text_embedder:
        if "captions" in plans:
            text_sources.append(plans["captions"].key)
        if text_sources:
            add("textvec", profile.text_embedder, spec_fingerprint(profile.text_embedder, "text_embedder"),
                {"sources": sorted(text_sources)})
    return plans


def _sidecar_fingerprint(path: str) -> str | None:
    stem = os.path.splitext(path)[0]
    found = [p for ext in (".srt", ".vtt") for p in (stem + ext,) if os.path.isfile(p)]
    return files_fingerprint("sidecar", found) if found else None


def _run_status(store: Store, run: dict | None) -> str:
    if not run:
        return "missing"
    if run["status"] == "running" and run["host"] == store.host and not pid_alive(run["pid"]):
        return "interrupted"  # its process died (killed); the next `vqa index` redoes it
    return run["status"]


def stage_status(store: Store, video_id: str, profile: Profile, opts: IndexOptions,
                 path: str | None = None) -> dict[str, str]:
    """For `vqa ls --profile P`: each stage that P calls for -> done / running / interrupted / failed /
    missing."""
    return {stage: _run_status(store, store.get_run(plan.key))
            for stage, plan in plan_stages(video_id, profile, opts, path=path).items()}


def latest_stage_status(store: Store, video_id: str) -> dict[str, str]:
    """For `vqa ls`: each stage the video has been through, with any model -> done when some model's run of it
    is done (a later attempt that failed does not undo it: `vqa ls --failed` lists that), else the state of
    its latest run."""
    out = {}
    for stage in STAGES:
        rows = list(store.db.query("select * from runs where video_id = ? and stage = ? "
                                   "order by status = 'done' desc, started_at desc limit 1", [video_id, stage]))
        if rows:
            out[stage] = _run_status(store, rows[0])
    return out
