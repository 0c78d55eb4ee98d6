"""CLIP image/text embeddings with open_clip.

A model is named ``NAME[@PRETRAINED]``:
- ``ViT-B-32@laion2b_s34b_b79k``: an open_clip architecture and a pretrained tag (hub download);
- ``hf-hub:ORG/REPO``: an open_clip model on the Hugging Face hub;
- ``/path/model.json@/path/weights.pt``: your own fine-tuned CLIP, a model-config JSON registered with
  ``open_clip.add_model_config`` (the name is the file's stem) and a local checkpoint;
- ``NAME@/path/weights.pt``: a built-in architecture with a local checkpoint.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipelines.backends.loads import record_load
from pipelines.backends.util import files_fingerprint, hub_offline, offline_reason, pick_device, quiet_hub
from pipelines.errors import ModelError


@dataclass(frozen=True)
class ClipSpec:
    name: str
    pretrained: str | None = None
    config: str | None = None  # model-config JSON path, when the name came from one

    @classmethod
    def parse(cls, spec: str, pretrained: str | None = None) -> ClipSpec:
        name, _, tag = spec.partition("@")
        tag = pretrained or tag or None
        if name.endswith(".json"):
            return cls(name=Path(name).stem, pretrained=tag, config=name)
        return cls(name=name, pretrained=tag)

    def __str__(self) -> str:
        base = self.config or self.name
        return f"{base}@{self.pretrained}" if self.pretrained else base


class ClipEmbedder:
    """``embed_images(frames)`` and ``embed_texts(texts)``: L2-normalised float32 rows, batched."""

    kind = "clip"

    def __init__(self, spec: str | ClipSpec, *, device: str | None = None, random_weights: bool = False,
                 batch_size: int = 32):
        self.spec = spec if isinstance(spec, ClipSpec) else ClipSpec.parse(spec)
        self.device = pick_device(device)
        self.batch_size = batch_size
        self.random_weights = random_weights
        quiet_hub()
        import open_clip
        import torch

        self._torch = torch
        s = self.spec
        if s.config:
            if not os.path.isfile(s.config):
                raise ModelError(f"CLIP model config not found: {s.config}")
            open_clip.add_model_config(s.config)
        local_ckpt = s.pretrained and (os.sep in s.pretrained or s.pretrained.endswith((".pt", ".bin",
                                                                                          ".safetensors")))
        if local_ckpt and not os.path.isfile(s.pretrained):
            raise ModelError(f"CLIP checkpoint not found: {s.pretrained}")
        if s.name not in open_clip.list_models() and not s.name.startswith(("hf-hub:", "local-dir:")):
            raise ModelError(f"unknown CLIP architecture '{s.name}': pass a model-config JSON "
                             "(--clip model.json --clip-pretrained weights.pt) or an open_clip name")
        try:
            model, _, preprocess = open_clip.create_model_and_transforms(
                s.name, pretrained=s.pretrained, device=self.device)
        except RuntimeError as e:
            raise ModelError(_hub_message(str(s), e)) from e
        except OSError as e:  # hub download failed or file unreadable
            raise ModelError(_hub_message(str(s), e)) from e
        model.eval()
        self.model, self.preprocess = model, preprocess
        self.tokenizer = open_clip.get_tokenizer(s.name)
        record_load("clip", str(s))
        files = [p for p in (s.config, s.pretrained if local_ckpt else None) if p]
        self.fingerprint = files_fingerprint(str(s), files)
        self.name = str(s)

    @property
    def dim(self) -> int:
        return int(self.model.text_projection.shape[1]) if getattr(self.model, "text_projection", None) is not None \
            else int(self.embed_texts(["a"]).shape[1])

    def embed_images(self, frames: list[np.ndarray]) -> np.ndarray:
        """RGB uint8 frames (H, W, 3) -> (N, D) unit vectors."""
        from PIL import Image

        torch = self._torch
        out = []
        for i in range(0, len(frames), self.batch_size):
            batch = torch.stack([self.preprocess(Image.fromarray(f)) for f in frames[i:i + self.batch_size]])
            with torch.inference_mode():
                feats = self.model.encode_image(batch.to(self.device))
            out.append(_normalise(feats.float().cpu().numpy()))
        return np.concatenate(out) if out else np.zeros((0, 0), dtype=np.float32)

    def embed_texts(self, texts: list[str]) -> np.ndarray:
        torch = self._torch
        out = []
        for i in range(0, len(texts), self.batch_size):
            tokens = self.tokenizer(texts[i:i + self.batch_size]).to(self.device)
            with torch.inference_mode():
                feats = self.model.encode_text(tokens)
            out.append(_normalise(feats.float().cpu().numpy()))
        return np.concatenate(out) if out else np.zeros((0, 0), dtype=np.float32)


def _normalise(x: np.ndarray) -> np.ndarray:
    n = np.linalg.norm(x, axis=1, keepdims=True)
    return (x / np.maximum(n, 1e-12)).astype(np.float32)


def _hub_message(spec: str, e: Exception) -> str:
    if hub_offline():
        return (f"CLIP '{spec}' is not in the local cache and {offline_reason()}: download it once "
                "online, or pass a local checkpoint (--clip CONFIG.json --clip-pretrained WEIGHTS.pt)")
    first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    return f"cannot load CLIP '{spec}': {first}"
