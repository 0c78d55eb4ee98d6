"""Answerers: the models that give the final answer from keyframes plus timed text context.

One contract (``Answerer.answer(AnswerRequest) -> Answer``), a registry of kinds, and the built-ins:
- ``openai``: any OpenAI-compatible server (vLLM, SGLang, Ollama); frames sent as JPEG data URLs;
- ``qwen2.5-vl:<hub id|folder>`` and ``llava-onevision:<hub id|folder>``: local transformers video-LLMs;
- ``textlm:<hub id|folder>`` and ``smollm2-packaged``: text-only language models (``textlm.py``).
A bare hub id or folder is matched to a kind by its config.json ``model_type``. Built-ins register
themselves with ``register_answerer`` exactly as a plugin does (or through the ``vqa.answerers``
entry-point group: name = kind, value = factory).

The prompt core (labels, context, options, letter parsing, citations) is pure and model-free.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import math
import os
import re
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from .errors import ModelError
from .loads import record_load

PROMPT_TEMPLATE = "frames-context-question/v1"
SOURCE_LABELS = {"speech": "Speech", "screen": "On screen", "caption": "Scene"}
MC_INSTRUCTION = "Answer with the option's letter from the given choices directly."
OPEN_INSTRUCTION = "Answer the question briefly."


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


# --- finding models (folders, hub ids; HF_HUB_OFFLINE honoured, never hanging) -------------------------

def _offline() -> bool:
    from .modelutil import hub_offline

    return hub_offline()


def _looks_like_path(spec: str) -> bool:
    return spec.startswith(("/", "./", "../", "~", "\\")) or os.path.splitdrive(spec)[0] != "" \
        or spec.count("/") > 1 or os.path.exists(spec)


def locate_model(spec: str) -> tuple[str, bool]:
    """(what to pass to from_pretrained, local_files_only). Fails fast with how to provide the model."""
    from .modelutil import quiet_hub

    quiet_hub()
    path = os.path.expanduser(spec)
    if os.path.isdir(path):
        if not os.path.isfile(os.path.join(path, "config.json")):
            raise ModelError(f"model folder '{spec}' has no config.json (save it with save_pretrained)")
        return path, True
    if os.path.isfile(path):
        raise ModelError(f"'{spec}' is a file: pass the model's folder (with config.json) or a hub id")
    if _looks_like_path(spec):
        raise ModelError(f"model folder '{spec}' does not exist: pass an existing folder or a hub id")
    cached = _hub_snapshot(spec)
    if cached:
        return cached, True
    if _offline():
        raise ModelError(f"model '{spec}' is not a local folder and is not in the hub cache, and HF_HUB_OFFLINE "
                         f"is set: download it once online (huggingface-cli download {spec}) or pass a folder")
    return spec, False


def _hub_snapshot(repo_id: str) -> str | None:
    """The cached snapshot folder of a hub model, without any network call; None if not cached."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HFValidationError

    try:
        path = snapshot_download(repo_id, local_files_only=True)
    except HFValidationError as e:
        raise ModelError(f"'{repo_id}' is neither a folder nor a valid hub id ({e})") from e
    except Exception:  # noqa: BLE001 - any cache miss (the exception types vary by version) means: not cached
        return None
    return path if os.path.isfile(os.path.join(path, "config.json")) else None


def read_config(spec: str) -> dict[str, Any]:
    """The config.json of a folder or hub model (downloading only that file when online)."""
    where, local = locate_model(spec)
    if local:
        with open(os.path.join(where, "config.json")) as f:
            return json.load(f)
    from huggingface_hub import hf_hub_download

    try:
        with open(hf_hub_download(spec, "config.json")) as f:
            return json.load(f)
    except Exception as e:  # noqa: BLE001 - network and hub errors have many types; all mean: not available
        raise ModelError(f"cannot find model '{spec}' on the hub: {_first_line(e)}") from e


def model_fingerprint(kind: str, where: str, dtype: str) -> str:
    """Stable across machines: the kind, the weight files' content sample, and the dtype."""
    from .modelutil import files_fingerprint

    folder = where if os.path.isdir(where) else _hub_snapshot(where)
    if folder:  # by content, not by where the folder lives
        files = [os.path.join(folder, f) for f in sorted(os.listdir(folder))
                 if f.endswith((".json", ".safetensors", ".bin", ".model", ".txt", ".jinja"))]
        content = files_fingerprint(kind, files)
    else:
        content = where
    return hashlib.blake2b(f"{kind}|{content}|{dtype}".encode(), digest_size=8).hexdigest()


def marked_random(where: str) -> bool:
    """True for folders built by ``tiny_vlm`` (random weights), so every output can say so."""
    marker = os.path.join(where, "vqa-tiny.json")
    if not os.path.isfile(marker):
        return False
    with open(marker) as f:
        return bool(json.load(f).get("random_weights"))


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


# --- pure prompt core ---------------------------------------------------------------------------------

def fmt_time(t: float) -> str:
    return f"{t:.1f} s"


def letters(n: int) -> str:
    return "ABCDEFGHIJKLMNOPQRSTUVWXYZ"[:n]


_LETTER_PREFIX = re.compile(r"^\s*\(?([A-Z])[\).:]\s+")


def option_texts(options: Sequence[str]) -> list[str]:
    """Options without a leading "A." / "(A)" when they already carry their own letter."""
    out = []
    for letter, opt in zip(letters(len(options)), options, strict=False):
        m = _LETTER_PREFIX.match(opt)
        out.append(opt[m.end():].strip() if m and m.group(1) == letter else opt.strip())
    return out


_STOP = set("""a an the is are was were be been being to of in on at for and or but not no what which who whom whose
how when where why does do did done it its this that these those there here with by from as into than then so
if about any all can could would should will shall may might must has have had i you he she we they me him her
us them my your his our their video shown show shows screen said say says see seen appear appears""".split())
_WORD = re.compile(r"[a-z0-9]+")


def words(text: str) -> set[str]:
    """Content words, lowercased, with a crude plural strip: the unit of overlap for context and citations."""
    out = set()
    for w in _WORD.findall(text.lower()):
        if w in _STOP:
            continue
        out.add(w[:-1] if len(w) > 3 and w.endswith("s") and not w.endswith("ss") else w)
    return out


def select_context(lines: Sequence[ContextLine], query: str, *, max_lines: int = 40,
                   max_chars: int = 4000) -> list[ContextLine]:
    """The lines most related to the query (word overlap; ties keep the given order), in time order."""
    if len(lines) <= max_lines and sum(len(c.text) for c in lines) <= max_chars:
        return sorted(lines, key=lambda c: (c.start, c.end))
    q = words(query)
    ranked = sorted(range(len(lines)), key=lambda i: (-len(q & words(lines[i].text)), i))
    keep, chars = [], 0
    for i in ranked:
        if len(keep) >= max_lines or chars + len(lines[i].text) > max_chars:
            break
        keep.append(lines[i])
        chars += len(lines[i].text)
    return sorted(keep, key=lambda c: (c.start, c.end))


def frame_label(i: int, t: float) -> str:
    return f"Frame {i + 1} at {fmt_time(t)}:"


def render_context(lines: Sequence[ContextLine]) -> str:
    return "\n".join(f"[{c.start:.1f}-{c.end:.1f} s] {SOURCE_LABELS.get(c.source, c.source.title())}: {c.text}"
                     for c in lines)


def question_block(question: str, options: Sequence[str]) -> str:
    parts = [f"Question: {question.strip()}"]
    if options:
        parts.append("Options:")
        parts += [f"{letter}. {text}" for letter, text in zip(letters(len(options)), option_texts(options),
                                                              strict=False)]
        parts.append(MC_INSTRUCTION)
    else:
        parts.append(OPEN_INSTRUCTION)
    return "\n".join(parts)


def prompt_body(req: AnswerRequest, context: Sequence[ContextLine]) -> str:
    """The text after the frames: timed context lines, the question, lettered options, the answer format."""
    parts = []
    if context:
        parts.append("Context from the video (time ranges in seconds):\n" + render_context(context))
    parts.append(question_block(req.question, req.options))
    return "\n\n".join(parts)


def query_of(req: AnswerRequest) -> str:
    return " ".join([req.question, *req.options])


_ARTICLE = re.compile(r"\s+[a-z]")  # "A man ..." / "I think ...": a word, not a letter


def _standalone(text: str, valid: str, start: int = 0) -> str | None:
    for m in re.finditer(rf"(?<![A-Za-z'])([{valid}])(?![A-Za-z'])", text[start:]):
        if not _ARTICLE.match(text, start + m.end()):
            return m.group(1)
    return None


def parse_choice(text: str, options: Sequence[str]) -> str | None:
    """The option letter an answer names: a bare or leading letter, "answer is X", the option's text,
    else the first standalone capital letter among the valid ones ("A" as an article does not count)."""
    if not options or not text:
        return None
    valid = letters(len(options))
    t = text.strip()
    m = re.fullmatch(r"\(?([A-Za-z])\)?[.:]?", t)
    if m and m.group(1).upper() in valid:
        return m.group(1).upper()
    m = re.match(r"\(?([A-Z])\)?(?=$|[.:,)]|\s)", t)
    if m and m.group(1) in valid and not _ARTICLE.match(t, m.end()):
        return m.group(1)
    m = re.search(r"(?i:answer|option|choice)\s*(?i:is)?\s*:?\s*\(?([A-Z])(?![A-Za-z'])", t)
    if m and m.group(1) in valid and not _ARTICLE.match(t, m.end()):
        return m.group(1)
    low = t.lower()
    hits = [(len(o), letter) for letter, o in zip(valid, option_texts(options), strict=False)
            if o and o.lower() in low]
    if hits:
        return max(hits)[1]
    return _standalone(t, valid)


def choice_text_of(choice: str | None, options: Sequence[str]) -> str | None:
    if choice is None:
        return None
    return option_texts(options)[letters(len(options)).index(choice)]


def top_frames(timestamps: Sequence[float], budgets: Sequence[int] | None, k: int = 3) -> list[float]:
    """The frames given the most pixels (the most relevant, as the search ranked them); all if no budgets."""
    if not budgets or len(budgets) != len(timestamps):
        return sorted(timestamps)
    order = sorted(range(len(timestamps)), key=lambda i: (-budgets[i], i))[:k]
    return sorted(timestamps[i] for i in order)


def cite(answer_text: str, question: str, context: Sequence[ContextLine], timestamps: Sequence[float],
         budgets: Sequence[int] | None = None) -> list[float]:
    """Start times of the context lines that share words with the answer (words new to the question first),
    else the top frames."""
    said = words(answer_text)
    new = said - words(question)
    hits = [c for c in context if words(c.text) & new] or [c for c in context if words(c.text) & said]
    if hits:
        return sorted({c.start for c in hits})
    return top_frames(timestamps, budgets)


def finish(req: AnswerRequest, text: str, *, prompt: str, context: Sequence[ContextLine],
           frames_seen: Sequence[float], generated_tokens: int, choice: str | None = None,
           frame_sizes: Sequence[tuple[int, int]] = ()) -> Answer:
    """Turn raw model text into an Answer: choice letter, its text, citations."""
    text = text.strip()
    if choice is None:
        choice = parse_choice(text, req.options)
    ctext = choice_text_of(choice, req.options)
    cited = cite(f"{text} {ctext or ''}", req.question, context, req.timestamps, req.pixel_budgets)
    return Answer(text=text, choice=choice, choice_text=ctext, cited=cited, prompt_template=PROMPT_TEMPLATE,
                  prompt=prompt, context_used=list(context), frames_seen=list(frames_seen),
                  frame_sizes=[tuple(s) for s in frame_sizes], generated_tokens=generated_tokens)


def fit_to_budget(image, budget: int | None, factor: int = 1):
    """Resize (keeping the aspect ratio) so width*height <= budget, sides multiples of ``factor``."""
    if not budget:
        return image
    w, h = image.size
    scale = min(1.0, math.sqrt(budget / float(w * h)))
    nw = max(factor, int(w * scale) // factor * factor)
    nh = max(factor, int(h * scale) // factor * factor)
    while nw * nh > max(budget, factor * factor):
        if nw >= nh:
            nw -= factor
        else:
            nh -= factor
    return image if (nw, nh) == (w, h) else image.resize((nw, nh))


def _budgets(req: AnswerRequest) -> list[int | None]:
    return list(req.pixel_budgets) if req.pixel_budgets and req.frames else [None] * len(req.frames)


# --- OpenAI-compatible servers ------------------------------------------------------------------------

class OpenAIAnswerer(Answerer):
    """POST {api_base}/chat/completions with each frame as a JPEG data URL after its timestamp label."""

    def __init__(self, api_base: str | None, api_model: str | None, *, api_key_env: str = "VQA_API_KEY",
                 timeout: float = 300.0, max_context_lines: int = 40):
        if not api_base or not api_model:
            raise ModelError("the openai answerer needs a server and a model name: --api-base URL (e.g. "
                             "http://localhost:8000/v1) and --api-model NAME")
        self.api_base = api_base.rstrip("/")
        self.api_model = api_model
        self.api_key_env = api_key_env
        self.timeout = timeout
        self.max_context_lines = max_context_lines
        self.name = f"openai:{api_model}@{self.api_base}"
        self.fingerprint = hashlib.blake2b(self.name.encode(), digest_size=8).hexdigest()

    def answer(self, req: AnswerRequest) -> Answer:
        context = select_context(req.context, query_of(req), max_lines=self.max_context_lines)
        content: list[dict[str, Any]] = []
        shown: list[str] = []
        sizes: list[tuple[int, int]] = []
        for i, (img, t, b) in enumerate(zip(req.frames, req.timestamps, _budgets(req), strict=False)):
            img = fit_to_budget(img, b)
            content.append({"type": "text", "text": frame_label(i, t)})
            content.append({"type": "image_url", "image_url": {"url": jpeg_data_url(img)}})
            shown += [frame_label(i, t), "<image>"]
            sizes.append(img.size)
        body = prompt_body(req, context)
        content.append({"type": "text", "text": body})
        payload = {"model": self.api_model, "messages": [{"role": "user", "content": content}],
                   "temperature": 0, "seed": req.seed, "max_tokens": req.max_new_tokens}
        reply = self._post("/chat/completions", payload)
        text, ntok = _completion_text(reply)
        return finish(req, text, prompt="\n".join([*shown, body]), context=context,
                      frames_seen=req.timestamps[:len(sizes)], frame_sizes=sizes, generated_tokens=ntok)

    def _post(self, path: str, payload: dict[str, Any]) -> dict[str, Any]:
        import urllib.error
        import urllib.request

        headers = {"Content-Type": "application/json"}
        key = os.environ.get(self.api_key_env)
        if key:
            headers["Authorization"] = f"Bearer {key}"
        url = self.api_base + path
        request = urllib.request.Request(url, data=json.dumps(payload).encode(), headers=headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as resp:
                return json.loads(resp.read().decode("utf-8"))
        except urllib.error.HTTPError as e:
            detail = e.read().decode("utf-8", "replace").strip()
            try:
                err = json.loads(detail).get("error", detail)
                detail = err.get("message", str(err)) if isinstance(err, dict) else str(err)
            except (ValueError, AttributeError):
                pass
            raise ModelError(f"{url}: HTTP {e.code} {e.reason}: {detail[:500]}") from e
        except urllib.error.URLError as e:
            raise ModelError(f"cannot reach the answer server {url}: {e.reason} (is it running? check --api-base)"
                             ) from e
        except TimeoutError as e:
            raise ModelError(f"{url}: no reply within {self.timeout:.0f} s") from e
        except ValueError as e:
            raise ModelError(f"{url}: the reply is not JSON ({e})") from e


def _completion_text(reply: dict[str, Any]) -> tuple[str, int]:
    try:
        content = reply["choices"][0]["message"]["content"]
    except (KeyError, IndexError, TypeError) as e:
        raise ModelError(f"the answer server's reply has no choices[0].message.content: {str(reply)[:300]}") from e
    if isinstance(content, list):
        content = "".join(p.get("text", "") for p in content if isinstance(p, dict))
    ntok = int((reply.get("usage") or {}).get("completion_tokens") or 0)
    return content or "", ntok


def jpeg_data_url(image, quality: int = 90) -> str:
    buf = io.BytesIO()
    image.convert("RGB").save(buf, format="JPEG", quality=quality)
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


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

        from .modelutil import pick_device

        where, local = locate_model(target)
        self.device = pick_device(device)
        self.dtype = torch_dtype(dtype, self.device)
        self._torch = torch
        try:
            self.processor = transformers.AutoProcessor.from_pretrained(where, local_files_only=local)
            cls = getattr(transformers, self.model_class)
            self.model = cls.from_pretrained(where, dtype=self.dtype, local_files_only=local)
        except OSError as e:
            raise ModelError(f"cannot load {self.kind} model '{target}': {_first_line(e)}") from e
        self.model.to(self.device).eval()
        record_load("answerer", f"{self.kind}:{target}")
        self.name = f"{self.kind}:{target}"
        self.random_weights = marked_random(where)
        self.fingerprint = model_fingerprint(self.kind, where, str(self.dtype).removeprefix("torch."))

    def prepare_images(self, req: AnswerRequest) -> tuple[list[Any], dict[str, Any]]:
        """Images resized to their pixel budgets, and extra processor keyword arguments."""
        return [fit_to_budget(img.convert("RGB"), b) for img, b in zip(req.frames, _budgets(req), strict=False)], {}

    def answer(self, req: AnswerRequest) -> Answer:
        torch = self._torch
        context = select_context(req.context, query_of(req), max_lines=self.max_context_lines)
        content: list[dict[str, Any]] = []
        for i, t in enumerate(req.timestamps[:len(req.frames)]):
            content += [{"type": "text", "text": frame_label(i, t)}, {"type": "image"}]
        content.append({"type": "text", "text": ("\n" if req.frames else "") + prompt_body(req, context)})
        prompt = self.processor.apply_chat_template([{"role": "user", "content": content}],
                                                    add_generation_prompt=True)
        images, kwargs = self.prepare_images(req)
        inputs = self.processor(text=[prompt], images=images or None, return_tensors="pt", **kwargs)
        inputs = {k: (v.to(self.device, dtype=self.dtype) if v.is_floating_point() else v.to(self.device))
                  for k, v in inputs.items() if hasattr(v, "to")}
        torch.manual_seed(req.seed)
        with torch.inference_mode():
            out = self.model.generate(**inputs, do_sample=False, num_beams=1, max_new_tokens=req.max_new_tokens)
        new = out[0, inputs["input_ids"].shape[1]:]
        text = self.processor.decode(new, skip_special_tokens=True)
        return finish(req, text, prompt=prompt, context=context, frames_seen=req.timestamps[:len(images)],
                      frame_sizes=[im.size for im in images], generated_tokens=int(new.numel()))


class Qwen25VLAnswerer(TransformersVLM):
    kind = "qwen2.5-vl"
    model_class = "Qwen2_5_VLForConditionalGeneration"
    factor = 28  # patch 14 x merge 2

    def prepare_images(self, req: AnswerRequest) -> tuple[list[Any], dict[str, Any]]:
        budgets = _budgets(req)
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


# --- built-ins, registered the way plugins register ---------------------------------------------------

def _openai(target: str, *, api_base=None, api_model=None, api_key_env="VQA_API_KEY", **_: Any) -> Answerer:
    return OpenAIAnswerer(api_base, api_model or target or None, api_key_env=api_key_env)


def _textlm(target: str, *, device=None, dtype=None, **_: Any) -> Answerer:
    from .textlm import TextLMAnswerer

    return TextLMAnswerer(target, device=device, dtype=dtype)


def _smollm2(target: str, *, device=None, dtype=None, **_: Any) -> Answerer:
    from .textlm import load_smollm2_packaged

    return load_smollm2_packaged(device=device, dtype=dtype)


register_answerer("openai", _openai)
register_answerer("qwen2.5-vl", Qwen25VLAnswerer, model_types=["qwen2_5_vl"])
register_answerer("llava-onevision", LlavaOnevisionAnswerer, model_types=["llava_onevision"])
register_answerer("textlm", _textlm)
register_answerer("smollm2-packaged", _smollm2)
