"""Any video-LLM that transformers' ``AutoModelForImageTextToText`` loads, as answerer and captioner.

The model is driven through its processor's chat template; the keyframes go in as separate images, each
after a text label with its timestamp (``Frame 3 at 41.5 s:``), never as one video: Qwen2.5-VL's temporal
position ids collapse when frames are passed as a video at fps > 2, and a label is the one way of telling
time that every family reads. What differs between families is small and lives in a ``Family`` adapter
registered beside the backend:

- ``prepare(processor, images, budgets) -> (images, processor kwargs)``: each frame fitted to its pixel
  budget (Qwen2.5-VL / Qwen3-VL on their 28- / 32-px grid, with the processor's pixel range widened so it
  keeps them as they are; other families resized) and the family's switches for many frames (SmolVLM2 and
  InternVL send each frame as one tile instead of splitting it into many, as their own video paths do).

A model type no adapter names gets the plain one (frames resized to their budgets): a new family works
the day transformers loads it. ``register_family`` adds an adapter from another package.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from pipelines.answerers.base import AnswerRequest
from pipelines.answerers.prompt import budgets_of, fit_to_budget
from pipelines.answerers.vlm import TransformersVLM, torch_dtype
from pipelines.backends.loads import record_load
from pipelines.backends.locate import first_line, locate_model, marked_random, model_fingerprint, read_config
from pipelines.errors import ModelError

Prepared = tuple[list[Any], dict[str, Any]]

# --- family adapters ------------------------------------------------------------------------------------


def resize_to_budgets(processor: Any, images: Sequence[Any], budgets: Sequence[int | None]) -> Prepared:
    """Each image resized (aspect kept) to at most its pixel budget; the processor does the rest."""
    return [fit_to_budget(im.convert("RGB"), b) for im, b in zip(images, budgets, strict=False)], {}


def qwen_grid(processor: Any) -> int:
    """The side of one merged visual token: patch size x merge size (28 for Qwen2.5-VL, 32 for Qwen3-VL)."""
    ip = processor.image_processor
    return int(getattr(ip, "patch_size", 14) or 14) * int(getattr(ip, "merge_size", 2) or 2)


def qwen_budgets(processor: Any, images: Sequence[Any], budgets: Sequence[int | None]) -> Prepared:
    """Per-image budgets on the Qwen grid: each image fitted to its own budget, and the processor's pixel
    range widened to contain them all so that it keeps every image at the size it was given."""
    if not any(budgets):
        return [im.convert("RGB") for im in images], {}
    grid = qwen_grid(processor)
    size = dict(getattr(processor.image_processor, "size", None) or {})
    lo, hi = size.get("shortest_edge", grid * grid * 4), size.get("longest_edge", grid * grid * 1280)
    out = [fit_to_budget(im.convert("RGB"), max(b or hi, grid * grid), grid) for im, b in zip(images, budgets)]
    areas = [w * h for w, h in (im.size for im in out)]
    return out, {"images_kwargs": {"size": {"shortest_edge": min([lo, *areas]),
                                            "longest_edge": max([hi, *areas])}}}


def one_tile_per_frame(switch: str) -> Callable[[Any, Sequence[Any], Sequence[int | None]], Prepared]:
    """Resize to budgets; with several frames, turn the processor's tiling off (``switch=False``)."""

    def prepare(processor: Any, images: Sequence[Any], budgets: Sequence[int | None]) -> Prepared:
        out, _ = resize_to_budgets(processor, images, budgets)
        return out, ({"images_kwargs": {switch: False}} if len(out) > 1 else {})

    return prepare


@dataclass(frozen=True)
class Family:
    name: str  # also the answerer backend name that forces this adapter (``qwen3-vl:<model>``)
    model_types: tuple[str, ...]  # config.json model_type values this adapter serves
    prepare: Callable[[Any, Sequence[Any], Sequence[int | None]], Prepared] = resize_to_budgets
    description: str = ""
    examples: tuple[str, ...] = field(default_factory=tuple)  # hub ids, for the docs


FAMILIES: dict[str, Family] = {}


def register_family(family: Family) -> None:
    FAMILIES[family.name] = family


for _f in [
    Family("generic", (), description="any model AutoModelForImageTextToText loads (frames resized to budgets)"),
    Family("qwen-vl", ("qwen2_vl", "qwen2_5_vl"), qwen_budgets, "Qwen2-VL / Qwen2.5-VL: budgets on the 28-px grid",
           ("Qwen/Qwen2.5-VL-7B-Instruct",)),
    Family("qwen3-vl", ("qwen3_vl", "qwen3_vl_moe"), qwen_budgets, "Qwen3-VL: budgets on the 32-px grid",
           ("Qwen/Qwen3-VL-2B-Instruct", "Qwen/Qwen3-VL-8B-Instruct")),
    Family("llava-ov", ("llava_onevision",), description="LLaVA-OneVision / LLaVA-Video (anyres tiles)",
           examples=("llava-hf/llava-onevision-qwen2-0.5b-ov-hf",)),
    Family("internvl", ("internvl",), one_tile_per_frame("crop_to_patches"),
           "InternVL3 / 3.5 (-hf): one 448-px tile per frame when there are several",
           ("OpenGVLab/InternVL3_5-2B-HF",)),
    Family("gemma3", ("gemma3",), description="Gemma 3 (fixed 896-px SigLIP input)", examples=("google/gemma-3-4b-it",)),
    Family("smolvlm", ("smolvlm",), one_tile_per_frame("do_image_splitting"),
           "SmolVLM2: no image splitting when there are several frames",
           ("HuggingFaceTB/SmolVLM2-2.2B-Instruct", "HuggingFaceTB/SmolVLM2-500M-Video-Instruct")),
]:
    register_family(_f)


def family_for(model_type: str | None) -> Family:
    for fam in FAMILIES.values():
        if model_type in fam.model_types:
            return fam
    return FAMILIES["generic"]


def image_text_to_text(model_type: str | None) -> bool:
    """Whether transformers' AutoModelForImageTextToText loads this model type (imports transformers)."""
    from transformers.models.auto.modeling_auto import MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES

    return bool(model_type) and model_type in MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES


# --- the backend ----------------------------------------------------------------------------------------


class GenericVLM(TransformersVLM):
    """``AutoProcessor`` + ``AutoModelForImageTextToText``; the family adapter prepares the frames."""

    model_class = "AutoModelForImageTextToText"
    caption_batch_size = 8

    def __init__(self, target: str, *, family: str | None = None, backend: str = "generic",
                 device: str | None = None, dtype: str | None = None, **_: Any):
        import torch
        import transformers

        from pipelines.backends.util import pick_device

        where, local = locate_model(target)
        mtype = read_config(target).get("model_type")
        self.family = FAMILIES[family] if family else family_for(mtype)
        self.kind = backend
        self.device = pick_device(device)
        self.dtype = torch_dtype(dtype, self.device)
        self._torch = torch
        try:
            self.processor = transformers.AutoProcessor.from_pretrained(where, local_files_only=local)
            self.model = transformers.AutoModelForImageTextToText.from_pretrained(
                where, dtype=self.dtype, local_files_only=local)
        except ImportError as e:  # a processor's own requirement (SmolVLM: num2words)
            raise ModelError(f"cannot load '{target}': {first_line(e)}") from e
        except (OSError, ValueError, KeyError) as e:
            raise ModelError(f"cannot load '{target}' (model type '{mtype}') with AutoModelForImageTextToText: "
                             f"{first_line(e)}") from e
        if not getattr(self.processor, "chat_template", None):
            raise ModelError(f"model '{target}' has no chat template in its processor files: vqa drives the "
                             "model through it (add chat_template.jinja from the model's hub page)")
        tok = getattr(self.processor, "tokenizer", None)
        if tok is not None:
            tok.padding_side = "left"  # batched generation continues every row from its last token
        self.model.to(self.device).eval()
        record_load("answerer", f"{backend}:{target}")
        self.name = f"{backend}:{target}"
        self.model_type = mtype
        self.random_weights = marked_random(where)
        self.fingerprint = model_fingerprint(f"generic/{self.family.name}", where,
                                             str(self.dtype).removeprefix("torch."))

    def prepare_images(self, req: AnswerRequest) -> Prepared:
        return self.family.prepare(self.processor, list(req.frames), budgets_of(req))

    def _inputs(self, **kw: Any) -> dict[str, Any]:
        inputs = self.processor(return_tensors="pt", **kw)
        return {k: (v.to(self.device, dtype=self.dtype) if v.is_floating_point() else v.to(self.device))
                for k, v in inputs.items() if hasattr(v, "to")}

    def caption_frames(self, frames: Sequence[Any], prompt: str, *, max_new_tokens: int = 40,
                       seed: int = 0) -> list[str]:
        """One description per image (PIL), ``caption_batch_size`` images per generate call."""
        out: list[str] = []
        for i in range(0, len(frames), self.caption_batch_size):
            out += self._caption_batch(list(frames[i:i + self.caption_batch_size]), prompt, max_new_tokens, seed)
        return out

    def _caption_batch(self, frames: list[Any], prompt: str, max_new_tokens: int, seed: int) -> list[str]:
        torch = self._torch
        text = self.processor.apply_chat_template(
            [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": prompt}]}],
            add_generation_prompt=True)
        images, kwargs = self.family.prepare(self.processor, frames, [None] * len(frames))
        inputs = self._inputs(text=[text] * len(images), images=[[im] for im in images], padding=True, **kwargs)
        torch.manual_seed(seed)
        with torch.inference_mode():
            gen = self.model.generate(**inputs, do_sample=False, num_beams=1, max_new_tokens=max_new_tokens)
        new = gen[:, inputs["input_ids"].shape[1]:]
        return [" ".join(t.split()) for t in self.processor.batch_decode(new, skip_special_tokens=True)]


# --- registry entries (listed in answerers/base.py's _backends) ------------------------------------------


def load_generic(target: str, *, family: str | None = None, backend: str = "generic", **kw: Any) -> GenericVLM:
    return GenericVLM(target, family=family, backend=backend, **kw)


def family_loader(name: str) -> Callable[..., GenericVLM]:
    def load(target: str, **kw: Any) -> GenericVLM:
        return GenericVLM(target, family=name, backend=name, **kw)

    return load


def tiny_loader(family: str) -> Callable[..., GenericVLM]:
    """``tiny-<family>``: the tiny random-weights model of that family (``backends/tiny_families.py``)."""

    def load(target: str, **kw: Any) -> GenericVLM:
        from pipelines.backends import tiny_families

        adapter = family if family in FAMILIES else None  # idefics3 has none: the plain adapter serves it
        return GenericVLM(str(tiny_families.build(family)), family=adapter, backend=f"tiny-{family}", **kw)

    return load


def _backends() -> list:
    """generic:, one per family adapter (qwen3-vl:, smolvlm: ...), tiny-<family>, vllm:; registered through
    their own ``vqa.backends`` entry point, like any plugin's."""
    from pipelines.answerers import vllm_backend
    from pipelines.backends.registry import Backend

    def fixed(name: str) -> Callable[..., str]:
        return lambda target, **_: f"{name}-v1"

    out = [Backend("answerer", "generic", load_generic,
                   description="any model AutoModelForImageTextToText loads, through its chat template"),
           Backend("answerer", "vllm", vllm_backend.load, check=vllm_backend.check, identify=vllm_backend.identify,
                   description="a video-LLM in-process through vLLM (GPU; pip install 'vqa[vllm]')")]
    for name in ("qwen3-vl", "internvl", "gemma3", "smolvlm"):
        out.append(Backend("answerer", name, family_loader(name),
                           description=FAMILIES[name].description + " (generic backend)"))
    for name in ("qwen3-vl", "smolvlm", "internvl", "gemma3", "idefics3"):
        out.append(Backend("answerer", f"tiny-{name}", tiny_loader(name), identify=fixed(f"tiny-{name}"),
                           random_weights=True, description=f"a tiny {name} built locally with random weights"))
    return out


BACKENDS = _backends()
