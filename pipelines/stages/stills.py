"""Unchanged pictures: two sampled frames that show the same picture (a still image, a slide held for an
hour, a paused screen) up to codec noise. The frames stage stores such a run of samples once, with the time
range it covers (``frames.t_end``, ``frames.n``), and reads it back as every sample it stands for. The two
measures of how much a picture changed (``mean_abs_diff``, ``changed_share``) are the scene segmenter's
too, and ``to_jpeg`` is how every stage stores a picture (thumbnails, scenes' middle frames, probe frames)."""

from __future__ import annotations

import numpy as np

from pipelines import defaults


def mean_abs_diff(a: np.ndarray, b: np.ndarray) -> float:
    """Mean absolute difference of two uint8 pictures of one size, over every pixel and channel (exact, in
    OpenCV's saturating ``absdiff``: no wrap-around, no int16 copies)."""
    import cv2

    d = cv2.absdiff(a, b)
    channels = d.shape[2] if d.ndim == 3 else 1
    return float(sum(cv2.mean(d)[:channels]) / channels)


def changed_share(a: np.ndarray, b: np.ndarray, threshold: int) -> float:
    """Share of pixels where some channel of two uint8 RGB pictures differs by more than ``threshold``."""
    import cv2

    d = cv2.absdiff(a, b)
    most = np.maximum(np.maximum(d[..., 0], d[..., 1]), d[..., 2]) if d.ndim == 3 else d
    return float(np.count_nonzero(most > threshold)) / float(most.size)


def same_picture(a: np.ndarray, b: np.ndarray, *, mean_diff: float = defaults.STILL_MEAN_DIFF,
                 pixel_diff: int = defaults.STILL_PIXEL_DIFF,
                 pixel_share: float = defaults.STILL_PIXEL_SHARE) -> bool:
    """True when ``a`` and ``b`` (H×W×3 uint8, same size) differ only by noise: a mean absolute difference
    of at most ``mean_diff`` and at most ``pixel_share`` of the pixels differing by more than
    ``pixel_diff`` in any channel, so that a small object appearing (a few hundred pixels) keeps both."""
    if a.shape != b.shape:
        return False
    return mean_abs_diff(a, b) <= mean_diff and changed_share(a, b, pixel_diff) <= pixel_share


def to_jpeg(frame: np.ndarray | None, width: int | None = None, quality: int = 80) -> bytes | None:
    """A small JPEG of an RGB frame (downscaled to ``width`` when wider)."""
    if frame is None:
        return None
    import io

    from PIL import Image

    im = Image.fromarray(frame)
    if width and im.width > width:
        im = im.resize((width, max(2, round(im.height * width / im.width))), Image.BILINEAR)
    buf = io.BytesIO()
    im.save(buf, format="JPEG", quality=quality)
    return buf.getvalue()
