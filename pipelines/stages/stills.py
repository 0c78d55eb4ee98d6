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
    from pipelines.stages.segment import changed_share, mean_abs_diff

    if a.shape != b.shape:
        return False
    return mean_abs_diff(a, b) <= mean_diff and changed_share(a, b, pixel_diff) <= pixel_share
