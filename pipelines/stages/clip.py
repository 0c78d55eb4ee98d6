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

from pipelines.backends.contracts import ImageTextEmbedder
from pipelines.backends.loads import record_load
from pipelines.backends.registry import Backend
from pipelines.backends.util import hub_offline, offline_reason, pick_device, quiet_hub
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


class ClipEmbedder(ImageTextEmbedder):
    """open_clip models: ``embed_images(frames)`` and ``embed_texts(texts)`` (batched in the base)."""

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
        local_ckpt = _is_local(s.pretrained)
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
        self.fingerprint = clip_identity(s)
        self.name = str(s)

    @property
    def dim(self) -> int:
        return int(self.model.text_projection.shape[1]) if getattr(self.model, "text_projection", None) is not None \
            else int(self.embed_texts(["a"]).shape[1])

    def embed_image_batch(self, frames: list[np.ndarray]) -> np.ndarray:
        torch = self._torch
        batch = self.pixels(frames)
        with torch.inference_mode():
            return self.model.encode_image(batch.to(self.device)).float().cpu().numpy()

    def pixels(self, frames: list[np.ndarray]):
        """The model's input for these RGB frames: open_clip's own ``preprocess``, with its last two steps
        (to a float tensor, normalise) done once for the whole batch when the transform ends with them
        (the same numbers, bit for bit; per image they cost as much as the resize on a small crop, and the
        spatial zoom embeds hundreds of small crops per question). Any other transform runs as it is."""
        from PIL import Image

        torch = self._torch
        steps = list(getattr(self.preprocess, "transforms", ()))
        tail = [type(x).__name__ for x in steps[-2:]]
        if len(steps) < 2 or tail[0] not in ("ToTensor", "MaybeToTensor") or tail[1] != "Normalize":
            return torch.stack([self.preprocess(Image.fromarray(f)) for f in frames])
        arrays = []
        for f in frames:
            img = Image.fromarray(f)
            for step in steps[:-2]:
                img = step(img)
            a = np.asarray(img)
            if a.dtype != np.uint8 or a.ndim != 3 or a.shape[2] != 3:  # not 8-bit RGB: the step by step path
                return torch.stack([self.preprocess(Image.fromarray(x)) for x in frames])
            arrays.append(a)
        norm = steps[-1]
        x = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous().to(torch.float32).div(255)
        mean = torch.as_tensor(norm.mean, dtype=torch.float32).view(1, -1, 1, 1)
        std = torch.as_tensor(norm.std, dtype=torch.float32).view(1, -1, 1, 1)
        return x.sub_(mean).div_(std)

    def embed_text_batch(self, texts: list[str]) -> np.ndarray:
        torch = self._torch
        with torch.inference_mode():
            return self.model.encode_text(self.tokenizer(texts).to(self.device)).float().cpu().numpy()


def _is_local(pretrained: str | None) -> bool:
    return bool(pretrained) and (os.sep in pretrained or pretrained.endswith((".pt", ".pth", ".bin", ".safetensors"))
                                 or os.path.isfile(pretrained))


def clip_identity(spec: str | ClipSpec) -> str:
    """The CLIP's identity without loading it: the content of its config JSON and checkpoint when they are
    local files (two fine-tunes of one architecture differ), else the open_clip name and pretrained tag."""
    from pipelines.backends.identity import identity

    s = spec if isinstance(spec, ClipSpec) else ClipSpec.parse(spec)
    files = [p for p in (s.config, s.pretrained if _is_local(s.pretrained) else None) if p and os.path.exists(p)]
    if files:
        # the architecture name rides along: one checkpoint under two configs computes two things
        return identity("clip", files=files, name=None, architecture=s.name if not s.config else None)
    return identity("clip", name=str(s))


def _normalise(x: np.ndarray) -> np.ndarray:
    n = np.linalg.norm(x, axis=1, keepdims=True)
    return (x / np.maximum(n, 1e-12)).astype(np.float32)


def _hub_message(spec: str, e: Exception) -> str:
    if hub_offline():
        return (f"CLIP '{spec}' is not in the local cache and {offline_reason()}: download it once "
                "online, or pass a local checkpoint (--clip CONFIG.json --clip-pretrained WEIGHTS.pt)")
    first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    return f"cannot load CLIP '{spec}': {first}"


def _load_open_clip(target: str, *, device: str | None = None, **_: object) -> ClipEmbedder:
    return ClipEmbedder(target, device=device)


def _load_tiny(target: str, *, device: str | None = None, **_: object) -> ClipEmbedder:
    from pipelines.backends.tiny import tiny_clip

    cfg, ckpt = tiny_clip()
    return ClipEmbedder(f"{cfg}@{ckpt}", device=device, random_weights=True)


def _check(target: str) -> str | None:
    """Whether the CLIP's weights are here: local files exist, or the hub files are in the cache."""
    from pipelines.backends.identity import hub_snapshot

    s = ClipSpec.parse(target)
    for f in (s.config, s.pretrained if _is_local(s.pretrained) else None):
        if f and not os.path.isfile(f):
            return f"{f}: no such file"
    if s.config or _is_local(s.pretrained):
        return None
    if s.name.startswith("hf-hub:"):
        return None if hub_snapshot(s.name[7:]) else "not downloaded (not in the local hub cache)"
    if not s.pretrained:
        return "no pretrained weights named (NAME@TAG)"
    try:
        import open_clip

        cfg = open_clip.get_pretrained_cfg(s.name, s.pretrained) or {}
    except Exception as e:  # noqa: BLE001 - open_clip missing or a bad name: say so
        return f"cannot check ({e})"
    repo = (cfg.get("hf_hub") or "").strip("/")
    if not cfg:
        return f"open_clip has no pretrained tag {s.pretrained!r} for {s.name}"
    return None if repo and hub_snapshot(repo) else "not downloaded (not in the local hub cache)"


BACKENDS = [
    Backend("clip", "open_clip", _load_open_clip, identify=lambda t, **_: clip_identity(t), default=True, check=_check,
            description="open_clip: NAME@TAG, hf-hub:ORG/REPO, CONFIG.json@CHECKPOINT, NAME@CHECKPOINT"),
    Backend("clip", "tiny-clip", _load_tiny, identify=lambda t, **_: "tiny-clip-v1", random_weights=True,
            description="a tiny open_clip model built locally with random weights (tests, smoke runs)"),
]
