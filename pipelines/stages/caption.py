"""Scene captions (LLoVi-style context): one short description per scene from its representative frame.

Built-in captioners, chosen from the model's ``config.json``:
- ``blip``: BLIP image captioning (e.g. Salesforce/blip-image-captioning-base, a good CPU default);
- ``vision-encoder-decoder``: ViT+GPT2-style captioners (e.g. nlpconnect/vit-gpt2-image-captioning);
- video-LLMs (Qwen2.5-VL, LLaVA-OneVision): asked to describe the frame, via the answerer adapters.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable

import numpy as np

from pipelines.backends.contracts import Captioner
from pipelines.backends.loads import record_load
from pipelines.backends.registry import Backend
from pipelines.backends.util import hub_offline, offline_reason, pick_device, quiet_hub
from pipelines.errors import ModelError

CAPTION_PROMPT = "Describe this scene in one short sentence."


def model_type(spec: str) -> str | None:
    """``model_type`` from a local folder's or cached hub model's config.json (None if unknown)."""
    path = spec
    if not os.path.isdir(spec):
        try:
            from huggingface_hub import hf_hub_download

            path = os.path.dirname(hf_hub_download(spec, "config.json", local_files_only=hub_offline()))
        except Exception as e:  # noqa: BLE001 - any hub failure means: not available
            raise ModelError(_missing(spec, e)) from e
    cfg = os.path.join(path, "config.json")
    if not os.path.isfile(cfg):
        raise ModelError(f"model folder {spec} has no config.json")
    with open(cfg) as f:
        return json.load(f).get("model_type")


def _missing(spec: str, e: Exception) -> str:
    if hub_offline():
        return (f"model '{spec}' is not a local folder and is not in the hub cache ({offline_reason()}): "
                "download it once online or pass a local folder")
    return f"cannot find model '{spec}': {str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__}"


class HFCaptioner(Captioner):
    def __init__(self, spec: str, *, device: str | None = None, random_weights: bool = False,
                 max_new_tokens: int = 30):
        quiet_hub()
        self.name = spec
        self.random_weights = random_weights
        self.device = pick_device(device)
        self.max_new_tokens = max_new_tokens
        mtype = model_type(spec)
        import torch

        self._torch = torch
        kw = {"local_files_only": hub_offline() or os.path.isdir(spec)}
        try:
            if mtype == "blip":
                from transformers import BlipForConditionalGeneration, BlipProcessor

                self.processor = BlipProcessor.from_pretrained(spec, **kw)
                self.model = BlipForConditionalGeneration.from_pretrained(spec, **kw)
                self._decode = self.processor.batch_decode
                self._inputs = lambda images: self.processor(images=images, return_tensors="pt")
            elif mtype == "vision-encoder-decoder":
                from transformers import AutoImageProcessor, AutoTokenizer, VisionEncoderDecoderModel

                self.model = VisionEncoderDecoderModel.from_pretrained(spec, **kw)
                image_processor = AutoImageProcessor.from_pretrained(spec, **kw)
                tokenizer = AutoTokenizer.from_pretrained(spec, **kw)
                self._decode = tokenizer.batch_decode
                self._inputs = lambda images: image_processor(images=images, return_tensors="pt")
            else:
                raise ModelError(f"captioner '{spec}': model type '{mtype}' is not a known captioner "
                                 "(use a BLIP or vision-encoder-decoder model, or a video-LLM with vlm:)")
        except OSError as e:
            raise ModelError(_missing(spec, e)) from e
        self.model.to(self.device).eval()
        record_load("captioner", spec)

    def caption_batch(self, frames: list[np.ndarray]) -> list[str]:
        from PIL import Image

        images = [Image.fromarray(f) for f in frames]
        inputs = {k: v.to(self.device) for k, v in self._inputs(images).items()}
        with self._torch.inference_mode():
            out = self.model.generate(**inputs, max_new_tokens=self.max_new_tokens, do_sample=False,
                                      num_beams=1)
        return [" ".join(t.split()) for t in self._decode(out, skip_special_tokens=True)]


class VLMCaptioner(Captioner):
    """A video-LLM answerer asked to describe each frame (stronger captions on a GPU)."""

    batch_size = 4

    def __init__(self, answerer_factory: Callable[[], object], name: str):
        from pipelines.answerers.base import AnswerRequest

        self._request = AnswerRequest
        self.answerer = answerer_factory()
        self.name = name
        self.fingerprint = getattr(self.answerer, "fingerprint", name)
        self.random_weights = bool(getattr(self.answerer, "random_weights", False))
        self.batch_size = getattr(self.answerer, "caption_batch_size", self.batch_size)

    def caption_batch(self, frames: list[np.ndarray]) -> list[str]:
        from PIL import Image

        if hasattr(self.answerer, "caption_frames"):  # generic / vllm answerers: the whole batch in one call
            return self.answerer.caption_frames([Image.fromarray(f) for f in frames], CAPTION_PROMPT)
        out = []
        for f in frames:
            req = self._request(question=CAPTION_PROMPT, options=[], frames=[Image.fromarray(f)],
                                timestamps=[0.0], context=[], max_new_tokens=40)
            out.append(" ".join(self.answerer.answer(req).text.split()))
        return out


def load_captioner(spec: str, *, device: str | None = None, random_weights: bool = False) -> Captioner:
    """Any captioner spec, through the registry (``vlm:ANSWERER``, ``tiny-blip``, a hub id or folder)."""
    from pipelines.backends import registry

    model = registry.load("captioner", spec, device=device)
    model.random_weights = model.random_weights or random_weights
    return model


def _load_hf(target: str, *, device: str | None = None, **_: object) -> Captioner:
    mtype = model_type(target)
    if mtype not in ("blip", "vision-encoder-decoder"):
        from pipelines.answerers.generic import image_text_to_text

        if image_text_to_text(mtype):  # a video-LLM folder or hub id: captions through the generic backend
            return _load_generic(target, device=device)
    return HFCaptioner(target, device=device)


def _load_vlm(target: str, *, device: str | None = None, **_: object) -> Captioner:
    from pipelines.answerers.base import load_answerer

    if not target:
        raise ModelError("captioner 'vlm:' names no answerer: use vlm:qwen2.5-vl:<hub id or folder>")
    return VLMCaptioner(lambda: load_answerer(target, device=device), f"vlm:{target}")


def _load_generic(target: str, *, device: str | None = None, **_: object) -> Captioner:
    """``generic:<model>`` (any AutoModelForImageTextToText) or ``generic:<answerer spec>`` (qwen3-vl:..., vllm:...)."""
    from pipelines.answerers.base import load_answerer

    if not target:
        raise ModelError("captioner 'generic:' names no model: use generic:<hub id or folder>")
    spec = target if _answerer_spec(target) else f"generic:{target}"
    return VLMCaptioner(lambda: load_answerer(spec, device=device), f"generic:{target}")


def _answerer_spec(target: str) -> bool:
    from pipelines.backends import registry

    names = {b.name for b in registry.backends("answerer")}
    return target in names or target.partition(":")[0] in names  # tiny-qwen3-vl, qwen3-vl:ID, vllm:ID


def _identify_generic(target: str, **options: object) -> str:
    return _identify_vlm(target if _answerer_spec(target) else f"generic:{target}", **options)


def _identify_vlm(target: str, **options: object) -> str:
    from pipelines.backends import registry

    return registry.identify("answerer", target, **options)


def _check_vlm(target: str) -> str | None:
    from pipelines.backends import registry

    state, detail = registry.status("answerer", target)
    return None if state in ("present", "random") else detail


def _load_tiny(target: str, *, device: str | None = None, **_: object) -> Captioner:
    from pipelines.backends.tiny import tiny_blip

    return HFCaptioner(str(tiny_blip()), device=device, random_weights=True)


BACKENDS = [
    Backend("captioner", "transformers", _load_hf, default=True,
            description="BLIP or vision-encoder-decoder captioners (hub id or local folder)"),
    Backend("captioner", "vlm", _load_vlm, identify=_identify_vlm, check=_check_vlm,
            description="a video-LLM answerer asked to describe each frame: vlm:ANSWERER-SPEC"),
    Backend("captioner", "generic", _load_generic, identify=_identify_generic, check=_check_vlm,
            description="a video-LLM (any AutoModelForImageTextToText, or vllm:) captioning in batches"),
    Backend("captioner", "tiny-blip", _load_tiny, identify=lambda t, **_: "tiny-blip-v1", random_weights=True,
            description="a tiny BLIP built locally with random weights (tests, smoke runs)"),
]
