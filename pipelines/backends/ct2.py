"""CTranslate2 runtimes for the packaged models, without torch: a causal LM (``CausalLM``: SmolLM2) and a
BERT encoder (``Encoder``: MiniLM), each converted once from its transformers folder into the model cache and
run afterwards with ``ctranslate2`` + ``tokenizers`` (+ ``jinja2`` for a chat template). torch and transformers
are imported at conversion time only; importing them is most of a `vqa ask --profile offline` otherwise.

A converted folder carries ``vqa-ct2.json`` (what it was converted from, and how); it is built in a temporary
folder and renamed into place, so a folder with the marker is complete.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from pipelines.errors import ModelError

MARKER = "vqa-ct2.json"
FORMAT = 1  # bump when what a converted folder holds changes
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "chat_template.jinja",
                   "generation_config.json")
CONVERSIONS = 0  # how many ct2 conversions this process ran (a second load must not convert)


# --- converting once ----------------------------------------------------------------------------------

def publish(tmp: Path, target: Path, current: Callable[[], bool]) -> Path:
    """Rename a finished ``tmp`` folder to ``target``; keep another process's if it published first."""
    if current():
        shutil.rmtree(tmp, ignore_errors=True)
        return target
    if target.exists():  # stale (its source changed): move it aside, then publish the new one
        old = target.with_name(f".{target.name}.old{os.getpid()}")
        os.rename(target, old)
        shutil.rmtree(old, ignore_errors=True)
    try:
        os.rename(tmp, target)
    except OSError:  # another process published first: keep theirs
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def marker_of(source_id: str, quantization: str) -> dict[str, Any]:
    return {"source": source_id, "quantization": quantization, "format": FORMAT}


def is_converted(target: Path, source_id: str, quantization: str) -> bool:
    try:
        return json.loads((target / MARKER).read_text()) == marker_of(source_id, quantization)
    except (OSError, ValueError):
        return False


def converted(source: Path | str, target: Path | str, *, source_id: str, quantization: str) -> Path:
    """The ctranslate2 folder of the transformers model in ``source``: converted on first use only."""
    source, target = Path(source), Path(target)
    if is_converted(target, source_id, quantization):
        return target
    tmp = target.with_name(f".{target.name}.tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    logging.getLogger("vqa.progress").info(
        f"converting {source.name} once for ctranslate2 ({quantization}) into {target}")
    convert(source, tmp, quantization)
    (tmp / MARKER).write_text(json.dumps(marker_of(source_id, quantization)))
    return publish(tmp, target, lambda: is_converted(target, source_id, quantization))


def convert(source: Path, out_dir: Path, quantization: str) -> None:
    """A transformers folder (Llama causal LM, BERT encoder, ...) into a ctranslate2 folder, with the
    tokenizer files beside it (torch and transformers are imported here, and only here)."""
    global CONVERSIONS
    try:
        from ctranslate2.converters import TransformersConverter
    except ImportError as e:
        raise ModelError("the packaged models run on ctranslate2: pip install ctranslate2") from e
    from pipelines.backends.util import quiet_hub

    quiet_hub()
    copy = [f for f in TOKENIZER_FILES if (source / f).is_file()]
    try:
        with contextlib.redirect_stderr(io.StringIO()):  # its progress bar
            TransformersConverter(str(source), copy_files=copy, low_cpu_mem_usage=True).convert(
                str(out_dir), quantization=quantization, force=True)
    except (ValueError, NotImplementedError, OSError) as e:
        shutil.rmtree(out_dir, ignore_errors=True)
        raise ModelError(f"cannot convert {source} for ctranslate2: {str(e).strip().splitlines()[0]}") from e
    config = read_json(out_dir / "config.json")
    if any(v is None for v in config.values()):  # a tokenizer without a BOS token: ctranslate2 wants a string
        (out_dir / "config.json").write_text(json.dumps({k: "" if v is None else v for k, v in config.items()},
                                                        indent=2))
    CONVERSIONS += 1


def runtime(variable: str, *needs: str) -> str:
    """``ct2`` or ``transformers`` for a packaged model: what ``variable`` says, else ct2 where ctranslate2
    and ``needs`` (other modules it takes) are installed."""
    import importlib.util

    found = all(importlib.util.find_spec(m) for m in ("ctranslate2", *needs))
    default = "ct2" if found else "transformers"
    choice = os.environ.get(variable, default).strip().lower() or default
    if choice not in ("ct2", "transformers"):
        raise ModelError(f"{variable}={choice!r}: use ct2 or transformers")
    return choice


def ct2_device(device: str | None) -> str:
    """``cuda`` when ctranslate2 sees a GPU (or the device asked for), else ``cpu``: no torch needed."""
    import ctranslate2

    if device:
        return "cuda" if device.startswith("cuda") else "cpu"
    return "cuda" if ctranslate2.get_cuda_device_count() > 0 else "cpu"


# --- tokenizer and chat template, as transformers has them ---------------------------------------------

def read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def _token_text(v: Any) -> str | None:
    return v.get("content") if isinstance(v, dict) else v


class Tokenizer:
    """A folder's fast tokenizer (``tokenizer.json``) through the ``tokenizers`` library, with its special
    tokens and chat template (rendered as transformers' ``apply_chat_template`` renders it)."""

    def __init__(self, folder: Path | str):
        import tokenizers

        os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
        folder = Path(folder)
        self.tok = tokenizers.Tokenizer.from_file(str(folder / "tokenizer.json"))
        config = read_json(folder / "tokenizer_config.json")
        specials = {**read_json(folder / "special_tokens_map.json"), **config}
        self.special = {k: _token_text(specials.get(k)) for k in
                        ("bos_token", "eos_token", "unk_token", "pad_token", "sep_token", "cls_token", "mask_token")}
        template = folder / "chat_template.jinja"
        self.chat_template = template.read_text() if template.is_file() else config.get("chat_template")
        self.eos_token_id = self.token_id(self.special["eos_token"])
        self.pad_token_id = self.token_id(self.special["pad_token"])
        self.lower = False

    def token_id(self, token: str | None) -> int | None:
        return self.tok.token_to_id(token) if token else None

    def ids(self, text: str) -> list[int]:
        return self.tok.encode(text, add_special_tokens=False).ids

    def decode(self, ids: Sequence[int]) -> str:
        return self.tok.decode(list(ids), skip_special_tokens=True)

    def render_chat(self, messages: list[dict[str, str]], add_generation_prompt: bool = True) -> str:
        """transformers' rendering: a sandboxed jinja2 environment, blocks trimmed, the special tokens known."""
        from jinja2.exceptions import TemplateError
        from jinja2.ext import loopcontrols
        from jinja2.sandbox import ImmutableSandboxedEnvironment

        def raise_exception(message):
            raise TemplateError(message)

        env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[loopcontrols])
        env.filters["tojson"] = lambda x, indent=None, **_: json.dumps(x, ensure_ascii=False, indent=indent)
        env.globals["raise_exception"] = raise_exception
        values = {k: v for k, v in self.special.items() if v is not None}
        return env.from_string(self.chat_template).render(messages=messages,
                                                          add_generation_prompt=add_generation_prompt, **values)


# --- a causal LM --------------------------------------------------------------------------------------

class CausalLM:
    """A converted causal LM: tokens in, log-probabilities and greedy continuations out."""

    def __init__(self, folder: Path | str, *, device: str | None = None, compute_type: str = "default"):
        import ctranslate2

        folder = Path(folder)
        self.folder = folder
        self.device = ct2_device(device)
        try:
            self.generator = ctranslate2.Generator(str(folder), device=self.device, compute_type=compute_type)
        except (RuntimeError, ValueError) as e:
            raise ModelError(f"cannot load {folder} with ctranslate2: {str(e).strip().splitlines()[0]}") from e
        self.compute_type = self.generator.compute_type
        self.tokenizer = Tokenizer(folder)
        with open(folder / "vocabulary.json") as f:
            self.vocab: list[str] = json.load(f)
        gen = read_json(folder / "generation_config.json") or read_json(folder / "config.json")
        eos = gen.get("eos_token_id", self.tokenizer.eos_token_id)
        self.eos_ids = {int(e) for e in (eos if isinstance(eos, list) else [eos]) if e is not None}

    def tokens(self, ids: Sequence[int]) -> list[str]:
        return [self.vocab[i] for i in ids]

    def score(self, seqs: Sequence[Sequence[int]], starts: Sequence[int]) -> list[list[float]]:
        """For each sequence, the log-probability of each of its tokens from ``start`` on, given those before."""
        results = self.generator.score_batch([self.tokens(s) for s in seqs])
        return [list(r.log_probs[start - 1:]) for r, start in zip(results, starts, strict=True)]

    def next_logits(self, ids: Sequence[int]):
        """The logits of the token after ``ids`` (one forward pass over them)."""
        import numpy as np

        out = self.generator.forward_batch([self.tokens(ids)])
        return np.asarray(out)[0, -1]

    def generate(self, prompt: Sequence[int], max_new_tokens: int, *, no_repeat: int = 3,
                 stop_text: str | None = "\n") -> list[int]:
        """Greedy continuation of ``prompt``: it never repeats an ``no_repeat``-gram of its own (the prompt's
        may be copied), ends on an end-of-sequence token or a token that holds ``stop_text`` (both kept), or
        after ``max_new_tokens``. ctranslate2 runs greedily with its cache; where its next token would repeat
        a generated n-gram, decoding stops there, that one token is chosen from the logits with the repeats
        banned, and decoding resumes after it."""
        import numpy as np

        gen: list[int] = []

        def banned() -> set[int]:
            if len(gen) < no_repeat - 1 or not no_repeat:
                return set()
            tail = gen[len(gen) - no_repeat + 1:]
            return {gen[i + no_repeat - 1] for i in range(len(gen) - no_repeat + 1)
                    if gen[i:i + no_repeat - 1] == tail}

        def ends(tok: int) -> bool:
            return tok in self.eos_ids or bool(
                stop_text and stop_text in self.tokenizer.tok.decode([tok], skip_special_tokens=False))

        state = {"repeat": False}

        def step(res) -> bool:  # called with each token ctranslate2 picks; True stops it
            if res.token_id in banned():
                state["repeat"] = True
                return True
            gen.append(res.token_id)
            return ends(res.token_id) or len(gen) >= max_new_tokens

        while len(gen) < max_new_tokens:
            state["repeat"] = False
            self.generator.generate_batch([self.tokens([*prompt, *gen])], max_length=max_new_tokens - len(gen),
                                          sampling_topk=1, beam_size=1, include_prompt_in_result=False,
                                          end_token=sorted(self.eos_ids), return_end_token=True, callback=step)
            if not state["repeat"]:
                break
            logits = np.array(self.next_logits([*prompt, *gen]), dtype=np.float32)
            logits[list(banned())] = -np.inf
            gen.append(int(np.argmax(logits)))
            if ends(gen[-1]):
                break
        return gen


# --- a BERT encoder -----------------------------------------------------------------------------------

class Encoder:
    """A converted encoder (BERT and its kin): texts in, last hidden states out, mean- or CLS-pooled."""

    def __init__(self, folder: Path | str, *, device: str | None = None, compute_type: str = "default",
                 max_length: int = 512):
        import ctranslate2

        folder = Path(folder)
        self.device = ct2_device(device)
        try:
            self.encoder = ctranslate2.Encoder(str(folder), device=self.device, compute_type=compute_type)
        except (RuntimeError, ValueError) as e:
            raise ModelError(f"cannot load {folder} with ctranslate2: {str(e).strip().splitlines()[0]}") from e
        self.tokenizer = Tokenizer(folder)
        self.tokenizer.tok.no_padding()
        self.tokenizer.tok.enable_truncation(max_length)
        with open(folder / "vocabulary.json") as f:
            self.vocab: list[str] = json.load(f)

    def pooled(self, texts: Sequence[str], pooling: str):
        """One row per text: the mean of its tokens' last hidden states, or its first token's."""
        import numpy as np

        ids = [e.ids for e in self.tokenizer.tok.encode_batch(list(texts), add_special_tokens=True)]
        out = self.encoder.forward_batch([[self.vocab[i] for i in row] for row in ids])
        hidden = np.asarray(out.last_hidden_state, dtype=np.float32)
        if pooling == "cls":
            return hidden[:, 0]
        lengths = np.array([len(r) for r in ids])
        mask = (np.arange(hidden.shape[1])[None, :] < lengths[:, None]).astype(np.float32)[..., None]
        return (hidden * mask).sum(1) / np.maximum(mask.sum(1), 1e-9)
