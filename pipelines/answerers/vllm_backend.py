"""vLLM in-process (``--answerer vllm:MODEL``, ``pip install 'vqa[vllm]'``, a CUDA GPU): the same prompt,
frames and pixel budgets as the transformers path (``generic.py``'s family adapters prepare the images,
the model's own chat template renders the turn), greedy and seeded; ``answer_many`` and captioning send
all their requests to vLLM in one call, for throughput.

vLLM is imported only when this backend loads; without it the load fails in one line saying how to get it.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from pipelines.answerers.base import Answer, Answerer, AnswerRequest
from pipelines.answerers.prompt import budgets_of, finish, frame_labels, prompt_body, query_of, select_context
from pipelines.backends.loads import record_load
from pipelines.backends.locate import first_line, locate_model, marked_random, read_config
from pipelines.errors import ModelError

INSTALL = "pip install 'vqa[vllm]' (Linux with a CUDA GPU)"
MAX_IMAGES = 64  # images one request may carry (vLLM's limit_mm_per_prompt); VQA_VLLM_MAX_IMAGES overrides


def _require_vllm():
    try:
        import vllm
    except ImportError:
        raise ModelError(f"the vllm answerer needs vLLM, which is not installed: {INSTALL}") from None
    return vllm


def content_of(req: AnswerRequest, images: Sequence[Any], image_part, context) -> list[dict[str, Any]]:
    """The user turn: each frame after its time label, then the timed context and the question."""
    content: list[dict[str, Any]] = []
    for label, im in zip(frame_labels(req), images):
        content += [{"type": "text", "text": label}, image_part(im)]
    content.append({"type": "text", "text": ("\n" if images else "") + prompt_body(req, context)})
    return content


def flat_kwargs(kwargs: dict[str, Any]) -> dict[str, Any]:
    """The processor switches as vLLM's ``mm_processor_kwargs`` takes them (Qwen's range as min/max_pixels)."""
    flat = dict(kwargs.get("images_kwargs", {}))
    size = flat.pop("size", None)
    if size:
        flat.update(min_pixels=size["shortest_edge"], max_pixels=size["longest_edge"])
    return flat


class VLLMAnswerer(Answerer):
    max_context_lines = 40
    caption_batch_size = 64  # vLLM schedules them together

    def __init__(self, target: str, *, dtype: str | None = None, max_images: int | None = None, **_: Any):
        import os

        vllm = _require_vllm()
        from transformers import AutoProcessor

        from pipelines.answerers.generic import family_for

        where, local = locate_model(target)
        self.family = family_for(read_config(target).get("model_type"))
        self.max_images = int(max_images or os.environ.get("VQA_VLLM_MAX_IMAGES", MAX_IMAGES))
        try:
            self.processor = AutoProcessor.from_pretrained(where, local_files_only=local)
            self.llm = vllm.LLM(model=where, dtype=dtype or "auto", seed=0,
                                limit_mm_per_prompt={"image": self.max_images},
                                max_model_len=int(os.environ.get("VQA_VLLM_MAX_MODEL_LEN", 32768)),
                                enforce_eager=os.environ.get("VQA_VLLM_EAGER", "") == "1")
        except (OSError, ValueError, RuntimeError) as e:
            raise ModelError(f"vllm cannot load '{target}': {first_line(e)}") from e
        self._sampling = vllm.SamplingParams
        record_load("answerer", f"vllm:{target}")
        self.name = f"vllm:{target}"
        self.random_weights = marked_random(where)

    def _render(self, content: list[dict[str, Any]]) -> str:
        plain = [{"type": "image"} if c["type"] == "image_pil" else c for c in content]
        return self.processor.apply_chat_template([{"role": "user", "content": plain}], add_generation_prompt=True)

    def _chat(self, convs: list[list[dict]], kwargs: list[dict[str, Any]], seeds: list[int],
              max_tokens: list[int]) -> list[tuple[str, int]]:
        """One vLLM call per distinct set of processor switches (usually one), results in request order."""
        out: list[tuple[str, int] | None] = [None] * len(convs)
        groups: dict[str, list[int]] = {}
        for i, kw in enumerate(kwargs):
            groups.setdefault(json.dumps(kw, sort_keys=True), []).append(i)
        for key, idx in groups.items():
            params = [self._sampling(temperature=0.0, max_tokens=max_tokens[i], seed=seeds[i]) for i in idx]
            results = self.llm.chat([convs[i] for i in idx], params, use_tqdm=False,
                                    mm_processor_kwargs=json.loads(key) or None)
            for i, r in zip(idx, results):
                out[i] = (r.outputs[0].text, len(r.outputs[0].token_ids))
        return [o or ("", 0) for o in out]

    def conversation(self, req: AnswerRequest) -> tuple[list[dict], dict[str, Any], tuple[list, list, str]]:
        """What vLLM gets for one request (the turn, the processor switches) and what the answer records
        (the context lines, the images as sent, the prompt as the chat template renders it)."""
        if len(req.frames) > self.max_images:
            raise ModelError(f"{len(req.frames)} frames but vllm was started for {self.max_images} images "
                             "per request: set VQA_VLLM_MAX_IMAGES or ask for fewer --frames")
        context = select_context(req.context, query_of(req), max_lines=self.max_context_lines)
        images, kw = self.family.prepare(self.processor, list(req.frames), budgets_of(req))
        content = content_of(req, images, lambda im: {"type": "image_pil", "image_pil": im}, context)
        return [{"role": "user", "content": content}], flat_kwargs(kw), (context, images, self._render(content))

    def answer_many(self, reqs: Sequence[AnswerRequest]) -> list[Answer]:
        reqs = list(reqs)
        convs, kwargs, prepared = [], [], []
        for req in reqs:
            conv, kw, record = self.conversation(req)
            convs.append(conv)
            kwargs.append(kw)
            prepared.append(record)
        texts = self._chat(convs, kwargs, [r.seed for r in reqs], [r.max_new_tokens for r in reqs])
        return [finish(req, text, prompt=prompt, context=context, frames_seen=req.timestamps[:len(images)],
                       frame_sizes=[im.size for im in images], generated_tokens=n)
                for req, (context, images, prompt), (text, n) in zip(reqs, prepared, texts)]

    def answer(self, req: AnswerRequest) -> Answer:
        return self.answer_many([req])[0]

    def caption_frames(self, frames: Sequence[Any], prompt: str, *, max_new_tokens: int = 40,
                       seed: int = 0) -> list[str]:
        images, kw = self.family.prepare(self.processor, list(frames), [None] * len(frames))
        convs = [[{"role": "user", "content": [{"type": "image_pil", "image_pil": im},
                                               {"type": "text", "text": prompt}]}] for im in images]
        texts = self._chat(convs, [flat_kwargs(kw)] * len(convs), [seed] * len(convs), [max_new_tokens] * len(convs))
        return [" ".join(t.split()) for t, _ in texts]


# --- registry entries -------------------------------------------------------------------------------------


def load(target: str, **kw: Any) -> VLLMAnswerer:
    _require_vllm()  # before looking for the model: the one line says what to install
    if not target:
        raise ModelError("answerer 'vllm:' names no model: use vllm:<hub id or folder>")
    return VLLMAnswerer(target, **kw)


def check(target: str) -> str | None:
    import importlib.util

    if importlib.util.find_spec("vllm") is None:
        return f"vLLM is not installed: {INSTALL}"
    from pipelines.backends.locate import check_target

    return check_target(target)


def identify(target: str, **options: Any) -> str:
    from pipelines.backends.locate import identify_target

    return identify_target("answerer/vllm", target, dtype=options.get("dtype"))
