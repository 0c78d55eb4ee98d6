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

    def __post_init__(self):
        # Frames may be left out (text-only answerers), but what is given must line up with the timestamps.
        if self.frames and len(self.frames) != len(self.timestamps):
            raise ValueError(f"{len(self.frames)} frames but {len(self.timestamps)} timestamps")
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


# --- registry -----------------------------------------------------------------------------------------

Factory = Callable[..., Answerer]  # factory(target: str, *, device, dtype, api_base, api_model, api_key_env)
_FACTORIES: dict[str, Factory] = {}
_MODEL_TYPES: dict[str, str] = {}  # config.json model_type -> kind
_plugins_loaded = False


def register_answerer(kind: str, factory: Factory, *, model_types: Sequence[str] = ()) -> None:
    """Make ``kind:<target>`` specs (and bare folders whose model_type is listed) load with ``factory``."""
    _FACTORIES[kind] = factory
    for mt in model_types:
        _MODEL_TYPES[mt] = kind


def answerer_kinds() -> list[str]:
    _load_plugins()
    return sorted(_FACTORIES)


def _load_plugins() -> None:
    global _plugins_loaded
    if _plugins_loaded:
        return
    _plugins_loaded = True
    from importlib.metadata import entry_points

    for ep in entry_points(group="vqa.answerers"):
        if ep.name not in _FACTORIES:
            register_answerer(ep.name, ep.load())


def load_answerer(spec: str, *, device: str | None = None, dtype: str | None = None,
                  api_base: str | None = None, api_model: str | None = None,
                  api_key_env: str = "VQA_API_KEY") -> Answerer:
    """Load the answerer a spec names (see the module docstring for the forms)."""
    _load_plugins()
    opts = dict(device=device, dtype=dtype, api_base=api_base, api_model=api_model, api_key_env=api_key_env)
    if spec in _FACTORIES:
        return _FACTORIES[spec]("", **opts)
    kind, sep, target = spec.partition(":")
    if sep and kind in _FACTORIES:
        if not target:
            raise ModelError(f"answerer '{spec}' names no model: use {kind}:<hub id or folder>")
        return _FACTORIES[kind](target, **opts)
    config = read_config(spec)
    mtype = config.get("model_type")
    if mtype in _MODEL_TYPES:
        return _FACTORIES[_MODEL_TYPES[mtype]](spec, **opts)
    if any(a.endswith("ForCausalLM") for a in config.get("architectures") or []):
        return _FACTORIES["textlm"](spec, **opts)
    raise ModelError(f"answerer '{spec}': model type '{mtype}' is not a known answerer; use one of "
                     f"{', '.join(k + ':' for k in sorted(_FACTORIES))} or a model of type "
                     f"{', '.join(sorted(_MODEL_TYPES))} or a causal LM")



# --- built-ins, registered the way plugins register ---------------------------------------------------

def _openai(target: str, *, api_base=None, api_model=None, api_key_env="VQA_API_KEY", **_: Any) -> Answerer:
    from pipelines.answerers.openai import OpenAIAnswerer

    return OpenAIAnswerer(api_base, api_model or target or None, api_key_env=api_key_env)


def _textlm(target: str, *, device=None, dtype=None, **_: Any) -> Answerer:
    from pipelines.answerers.textlm import TextLMAnswerer

    return TextLMAnswerer(target, device=device, dtype=dtype)


def _smollm2(target: str, *, device=None, dtype=None, **_: Any) -> Answerer:
    from pipelines.answerers.textlm import load_smollm2_packaged

    return load_smollm2_packaged(device=device, dtype=dtype)


def _qwen25vl(target: str, **kw: Any) -> Answerer:
    from pipelines.answerers.vlm import Qwen25VLAnswerer

    return Qwen25VLAnswerer(target, **kw)


def _llava_onevision(target: str, **kw: Any) -> Answerer:
    from pipelines.answerers.vlm import LlavaOnevisionAnswerer

    return LlavaOnevisionAnswerer(target, **kw)


register_answerer("openai", _openai)
register_answerer("qwen2.5-vl", _qwen25vl, model_types=["qwen2_5_vl"])
register_answerer("llava-onevision", _llava_onevision, model_types=["llava_onevision"])
register_answerer("textlm", _textlm)
register_answerer("smollm2-packaged", _smollm2)
