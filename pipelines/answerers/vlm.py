"""Local transformers video-LLMs (Qwen2.5-VL, LLaVA-OneVision): keyframes as images labelled with their times."""

from __future__ import annotations

import math
from typing import Any

from pipelines.answerers.base import Answer, Answerer, AnswerRequest
from pipelines.answerers.prompt import (
    budgets_of,
    finish,
    fit_to_budget,
    frame_labels,
    prompt_body,
    query_of,
    select_context,
)
from pipelines.backends.loads import record_load
from pipelines.backends.locate import first_line, locate_model, marked_random, model_fingerprint
from pipelines.errors import ModelError

# --- local transformers video-LLMs --------------------------------------------------------------------

def torch_dtype(dtype: str | None, device: str):
    """bf16 on GPUs that support it, else float16 on GPU; float32 on CPU; or the dtype asked for."""
    import torch

    if dtype and dtype != "auto":
        try:
            return getattr(torch, {"bf16": "bfloat16", "fp16": "float16", "fp32": "float32"}.get(dtype, dtype))
        except AttributeError:
            raise ModelError(f"unknown dtype '{dtype}' (use bfloat16, float16 or float32)") from None
    if device.startswith("cuda"):
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.float32


class TransformersVLM(Answerer):
    """A transformers image-text-to-text model driven through its processor's chat template."""

    kind = ""
    model_class = ""
    max_context_lines = 40

    def __init__(self, target: str, *, device: str | None = None, dtype: str | None = None, **_: Any):
        import torch
        import transformers

        from pipelines.backends.util import pick_device

        where, local = locate_model(target)
        self.device = pick_device(device)
        self.dtype = torch_dtype(dtype, self.device)
        self._torch = torch
        try:
            self.processor = transformers.AutoProcessor.from_pretrained(where, local_files_only=local)
            cls = getattr(transformers, self.model_class)
            self.model = cls.from_pretrained(where, dtype=self.dtype, local_files_only=local)
        except OSError as e:
            raise ModelError(f"cannot load {self.kind} model '{target}': {first_line(e)}") from e
        self.model.to(self.device).eval()
        record_load("answerer", f"{self.kind}:{target}")
        self.name = f"{self.kind}:{target}"
        self.random_weights = marked_random(where)
        self.fingerprint = model_fingerprint(self.kind, where, str(self.dtype).removeprefix("torch."))

    def prepare_images(self, req: AnswerRequest) -> tuple[list[Any], dict[str, Any]]:
        """Images resized to their pixel budgets, and extra processor keyword arguments."""
        return [fit_to_budget(img.convert("RGB"), b) for img, b in zip(req.frames, budgets_of(req), strict=False)], {}

    def answer(self, req: AnswerRequest) -> Answer:
        torch = self._torch
        context = select_context(req.context, query_of(req), max_lines=self.max_context_lines)
        content: list[dict[str, Any]] = []
        for label in frame_labels(req)[:len(req.frames)]:
            content += [{"type": "text", "text": label}, {"type": "image"}]
        content.append({"type": "text", "text": ("\n" if req.frames else "") + prompt_body(req, context)})
        prompt = self.processor.apply_chat_template([{"role": "user", "content": content}],
                                                    add_generation_prompt=True)
        images, kwargs = self.prepare_images(req)
        inputs = self.processor(text=[prompt], images=images or None, return_tensors="pt", **kwargs)
        inputs = {k: (v.to(self.device, dtype=self.dtype) if v.is_floating_point() else v.to(self.device))
                  for k, v in inputs.items() if hasattr(v, "to")}
        torch.manual_seed(req.seed)
        with torch.inference_mode():
            out = self.model.generate(**inputs, do_sample=False, num_beams=1, max_new_tokens=req.max_new_tokens,
                                      output_scores=True, return_dict_in_generate=True)
        new = out.sequences[0, inputs["input_ids"].shape[1]:]
        text = self.processor.decode(new, skip_special_tokens=True)
        logp = token_logprobs(self.model, out)
        blind = f"{self.name} has random weights" if self.random_weights else "no frames were given"
        return finish(req, text, prompt=prompt, context=context, frames_seen=req.timestamps[:len(images)],
                      frame_sizes=[im.size for im in images], generated_tokens=int(new.numel()),
                      sees=bool(images) and not self.random_weights, why_blind=blind,
                      model_p=math.exp(sum(logp) / len(logp)) if logp else None,
                      signals={"min_token_logprob": round(min(logp), 3) if logp else None})


def token_logprobs(model, out) -> list[float]:
    """Log-probability of each generated token (greedy), from ``generate(..., output_scores=True)``;
    the end-of-sequence token and what follows it do not count."""
    if not getattr(out, "scores", None):
        return []
    scores = model.compute_transition_scores(out.sequences, out.scores, normalize_logits=True)[0]
    eos = model.generation_config.eos_token_id
    eos = set(eos if isinstance(eos, list) else [eos] if eos is not None else [])
    tokens = out.sequences[0, -len(out.scores):].tolist()
    got = []
    for tok, lp in zip(tokens, scores.tolist()):
        if tok in eos:
            break
        got.append(lp)
    return [x for x in got if x == x and x != float("-inf")]


class Qwen25VLAnswerer(TransformersVLM):
    kind = "qwen2.5-vl"
    model_class = "Qwen2_5_VLForConditionalGeneration"
    factor = 28  # patch 14 x merge 2

    def prepare_images(self, req: AnswerRequest) -> tuple[list[Any], dict[str, Any]]:
        budgets = budgets_of(req)
        if not any(budgets):
            return [img.convert("RGB") for img in req.frames], {}
        # Per-image max pixels: each image is fitted to its own budget on the 28-px grid, and the processor's
        # range is widened to contain them all, so it keeps every image as it is.
        size = dict(getattr(self.processor.image_processor, "size", None) or {})
        lo, hi = size.get("shortest_edge", 56 * 56), size.get("longest_edge", 28 * 28 * 1280)
        images = []
        for img, b in zip(req.frames, budgets, strict=False):
            b = max(b or hi, self.factor * self.factor)
            images.append(fit_to_budget(img.convert("RGB"), b, self.factor))
        areas = [im.size[0] * im.size[1] for im in images]
        return images, {"images_kwargs": {"size": {"shortest_edge": min([lo, *areas]),
                                                    "longest_edge": max([hi, *areas])}}}


class LlavaOnevisionAnswerer(TransformersVLM):
    kind = "llava-onevision"
    model_class = "LlavaOnevisionForConditionalGeneration"


