"""A third-party vqa backend in one file: a captioner that names each frame's dominant colour.

It subclasses vqa's ``Captioner`` contract (one abstract method, ``caption_batch``) and is registered
through the ``vqa.backends`` entry point in this package's pyproject.toml, the same way vqa's own
backends are. ``--captioner colour`` (or ``colour:warm`` for another palette) selects it.
"""

from __future__ import annotations

import numpy as np

from pipelines.backends.contracts import Captioner
from pipelines.backends.registry import Backend

PALETTES = {
    "basic": {"red": (220, 30, 30), "green": (30, 180, 60), "blue": (30, 60, 220), "yellow": (230, 220, 40),
              "white": (240, 240, 240), "black": (15, 15, 15), "grey": (128, 128, 128)},
    "warm": {"red": (220, 30, 30), "orange": (240, 140, 20), "yellow": (230, 220, 40), "other": (100, 100, 160)},
}


class ColourCaptioner(Captioner):
    def __init__(self, palette: str = "basic"):
        if palette not in PALETTES:
            raise ValueError(f"unknown palette {palette!r}")
        self.palette = PALETTES[palette]
        self.name = f"colour:{palette}"

    def caption_batch(self, frames: list[np.ndarray]) -> list[str]:
        out = []
        names = list(self.palette)
        ref = np.asarray([self.palette[n] for n in names], dtype=np.float32)
        for f in frames:
            mean = f.reshape(-1, 3).astype(np.float32).mean(axis=0)
            out.append(f"a mostly {names[int(np.argmin(((ref - mean) ** 2).sum(axis=1)))]} frame")
        return out


BACKEND = Backend(
    kind="captioner", name="colour", load=lambda target, **_: ColourCaptioner(target or "basic"),
    identify=lambda target, **_: f"colour-captioner-0.1:{target or 'basic'}",
    description="captions each frame by its dominant colour (colour or colour:PALETTE)",
)
