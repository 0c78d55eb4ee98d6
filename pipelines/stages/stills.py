"""Unchanged pictures: two sampled frames that show the same picture (a still image, a slide held for an
hour, a paused screen) up to codec noise. The frames stage stores such a run of samples once, with the time
range it covers (``frames.t_end``, ``frames.n``), and reads it back as every sample it stands for."""

from __future__ import annotations

import numpy as np

from pipelines import defaults


def same_picture(a: np.ndarray, b: np.ndarray, *, mean_diff: float = defaults.STILL_MEAN_DIFF,
                 pixel_diff: int = defaults.STILL_PIXEL_DIFF,
                 pixel_share: float = defaults.STILL_PIXEL_SHARE) -> bool:
    """True when ``a`` and ``b`` (H×W×3 uint8, same size) differ only by noise: a mean absolute difference
    of at most ``mean_diff`` and at most ``pixel_share`` of the pixels differing by more than
    ``pixel_diff`` in any channel, so that a small object appearing (a few hundred pixels) keeps both."""
    if a.shape != b.shape:
        return False
    d = np.abs(a.astype(np.int16) - b.astype(np.int16))
    if float(d.mean()) > mean_diff:
        return False
    changed = int(np.count_nonzero(d.max(axis=-1) > pixel_diff)) if d.ndim == 3 else int(np.count_nonzero(d > pixel_diff))
    return changed <= pixel_share * d.shape[0] * d.shape[1]
