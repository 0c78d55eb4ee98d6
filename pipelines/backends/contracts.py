"""The contracts: one small base class per model-backed stage, each with its main method abstract and the
batching in the base. A backend (built in, or from another package) subclasses one of these and is
registered through the ``vqa.backends`` entry-point group (see ``registry.py``).

| kind            | base class          | main method(s)                                         |
|-----------------|---------------------|--------------------------------------------------------|
| ``clip``        | ``ImageTextEmbedder`` | ``embed_image_batch(frames)``, ``embed_text_batch(texts)`` |
| ``captioner``   | ``Captioner``       | ``caption_batch(frames) -> [str]``                     |
| ``transcriber`` | ``Transcriber``     | ``transcribe(path, language=, has_audio=) -> TranscriptResult`` |
| ``ocr``         | ``TextReader``      | ``detect(frame) -> [quad]``, ``recognize(crops) -> [(text, score)]`` |
| ``text_embedder`` | ``TextEmbedder``  | ``embed_batch(texts)``                                 |
| ``answerer``    | ``pipelines.answerers.base.Answerer`` | ``answer(AnswerRequest) -> Answer``  |

Every loaded model has ``name`` (the spec it was loaded from), ``fingerprint`` (its identity: see
``identity.py``; the registry fills it in when a backend leaves it empty) and ``random_weights``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

import numpy as np

KINDS = ("clip", "captioner", "transcriber", "ocr", "text_embedder", "answerer")


class Model(ABC):  # noqa: B024 - the shared attributes; each kind's base declares the abstract method
    kind: str = ""
    name: str = ""
    fingerprint: str = ""
    random_weights: bool = False
    batch_size: int = 32


def _normalise(x: np.ndarray) -> np.ndarray:
    n = np.linalg.norm(x, axis=1, keepdims=True)
    return (x / np.maximum(n, 1e-12)).astype(np.float32)


def _batched(fn, items: list, size: int) -> np.ndarray:
    out = [_normalise(np.asarray(fn(items[i:i + size]), dtype=np.float32)) for i in range(0, len(items), size)]
    return np.concatenate(out) if out else np.zeros((0, 0), dtype=np.float32)


class ImageTextEmbedder(Model):
    """CLIP-like: images and texts in one space. Rows come back L2-normalised float32."""

    kind = "clip"

    @abstractmethod
    def embed_image_batch(self, frames: list[np.ndarray]) -> np.ndarray: ...

    @abstractmethod
    def embed_text_batch(self, texts: list[str]) -> np.ndarray: ...

    def embed_images(self, frames: list[np.ndarray]) -> np.ndarray:
        """RGB uint8 frames (H, W, 3) -> (N, D) unit vectors."""
        return _batched(self.embed_image_batch, list(frames), self.batch_size)

    def embed_texts(self, texts: list[str]) -> np.ndarray:
        return _batched(self.embed_text_batch, list(texts), self.batch_size)


class Captioner(Model):
    """One short caption per RGB frame."""

    kind = "captioner"
    batch_size = 8

    @abstractmethod
    def caption_batch(self, frames: list[np.ndarray]) -> list[str]: ...

    def caption(self, frames: list[np.ndarray]) -> list[str]:
        out: list[str] = []
        for i in range(0, len(frames), self.batch_size):
            out.extend(self.caption_batch(frames[i:i + self.batch_size]))
        return out


class Transcriber(Model):
    """Speech to timed lines (``pipelines.stages.transcribe.TranscriptResult``)."""

    kind = "transcriber"

    @abstractmethod
    def transcribe(self, path: str, *, language: str | None = None, has_audio: bool | None = None) -> Any: ...


class TextReader(Model):
    """On-screen text: where text is in a frame, and what each crop says."""

    kind = "ocr"

    @abstractmethod
    def detect(self, rgb: np.ndarray) -> list[np.ndarray]: ...

    @abstractmethod
    def recognize(self, crops: list[np.ndarray]) -> list[tuple[str, float]]: ...


class TextEmbedder(Model):
    """Sentence embeddings; rows come back L2-normalised float32."""

    kind = "text_embedder"
    batch_size = 64

    @abstractmethod
    def embed_batch(self, texts: list[str]) -> np.ndarray: ...

    def embed_texts(self, texts: list[str]) -> np.ndarray:
        return _batched(self.embed_batch, list(texts), self.batch_size)
