"""Close-ups: the region that made a keyframe relevant, given to the answerer at a higher resolution.

A keyframe the spatial zoom lifted (``Keyframe.region``: the window whose score beat its whole frame) shows
its evidence small: a target among others, a sign in a corner. ``closeups`` reads such frames again at the
source's own resolution (``CLOSEUP_MAX_WIDTH`` at most) and crops that window, for the best ``n`` of them
(by score); ``answer_images`` puts each after the frames, labelled as the close-up of its frame, and shares
one pixel budget over frames and close-ups (QuoTA: the same total, spent where the evidence is). A close-up
is given only when it shows the region with at least ``CLOSEUP_GAIN`` times the pixels its frame gives it,
and only for a keyframe that is a match (its score at least ``MIN_PEAK``): a window that lifted a frame
still below that is no evidence worth a close-up.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from pipelines import defaults
from pipelines import search as kf
from pipelines.errors import MediaError

CLOSEUP_MAX_WIDTH = 1920  # pixels: the width close-ups are cropped from, at most
CLOSEUP_GAIN = 2.0  # a close-up must show its region with this many times the pixels its frame gives it


def closeups(path: str | None, kfs: Sequence[kf.Keyframe], budgets: Sequence[int], n: int = defaults.CLOSEUPS,
             *, info=None, warnings: list[str] | None = None) -> list[tuple[int, Any]]:
    """``(keyframe index, PIL image)`` for up to ``n`` keyframes with a region that are matches (score at
    least ``MIN_PEAK``), best score first: the region
    cropped from the frame read again ``CLOSEUP_MAX_WIDTH`` wide at most (the source's width when smaller),
    when that shows it with at least ``CLOSEUP_GAIN`` times the pixels of its frame at its budget. None
    without the video file (``path`` None: only its thumbnails are left)."""
    from PIL import Image

    from pipelines.search.regions import crop
    from pipelines.stages.media import probe, read_frame_at

    if not path or n <= 0 or not any(k.region for k in kfs):
        return []
    info = info or probe(path)
    width = min(int(info.width or 0), CLOSEUP_MAX_WIDTH)
    if width <= 0:
        return []
    height = width * (info.height or 1) / max(info.width or 1, 1)
    out = []
    matches = (i for i, k in enumerate(kfs) if k.region and k.score >= defaults.MIN_PEAK)
    for i in sorted(matches, key=lambda i: -kfs[i].score)[:n]:
        if width * height < CLOSEUP_GAIN * budgets[i]:
            continue  # the frame at its budget already shows the region about as sharply as the source
        try:
            frame = read_frame_at(path, kfs[i].t, width=width, info=info, warnings=warnings)
        except MediaError as e:
            if warnings is not None:
                warnings.append(f"close-up at {kfs[i].t:.2f} s not read: {e}")
            continue
        out.append((i, Image.fromarray(crop(frame, kfs[i].region).copy())))
    return out


def answer_images(frames: list, kfs: Sequence[kf.Keyframe], close: list[tuple[int, Any]], total_pixels: int
                  ) -> tuple[list, list[float], list[int], list[str] | None]:
    """What the answerer is given: (images, timestamps, pixel budgets, labels): the frames, then the close-ups
    (each labelled as the close-up of its frame), the budget ``total_pixels`` shared over all of them by
    relevance (a close-up counts with its frame's score); labels None without close-ups (the default ones)."""
    from pipelines.answerers.prompt import closeup_label, frame_label

    scores = [k.score for k in kfs] + [kfs[i].score for i, _ in close]
    budgets = kf.frame_budgets(scores, total_pixels, 64 * 64, 1280 * 720)
    times = [k.t for k in kfs] + [kfs[i].t for i, _ in close]
    if not close:
        return frames, times, budgets, None
    labels = [frame_label(i, k.t) for i, k in enumerate(kfs)] + [closeup_label(i, kfs[i].t) for i, _ in close]
    return list(frames) + [im for _, im in close], times, budgets, labels


def closeup_rows(kfs: Sequence[kf.Keyframe], close: list[tuple[int, Any]], budgets: Sequence[int],
                 saved: Sequence[str] = ()) -> list[dict]:
    """The close-ups as the answer's log shows them: which keyframe (1-based), its time, the region, the
    close-up's size and pixel budget (``budgets``: frames' then close-ups'), and its saved image if any."""
    n = len(kfs)
    return [{"keyframe": i + 1, "t": round(kfs[i].t, 3), "region": [round(float(x), 3) for x in kfs[i].region],
             "size": list(im.size), "pixels": budgets[n + j], **({"image": saved[n + j]} if saved else {})}
            for j, (i, im) in enumerate(close)]


def save_images(folder: str, frames: list, kfs: Sequence[kf.Keyframe], close: list[tuple[int, Any]] = ()
                ) -> list[str]:
    """``--save-frames``: each frame as ``frame_<t>s.jpg``, then each close-up as ``frame_<t>s_closeup.jpg``;
    the paths, in that order."""
    os.makedirs(folder, exist_ok=True)
    out = []
    for im, name in [*((im, f"frame_{k.t:010.3f}s") for im, k in zip(frames, kfs)),
                     *((im, f"frame_{kfs[i].t:010.3f}s_closeup") for i, im in close)]:
        p = os.path.join(folder, f"{name}.jpg")
        im.save(p, quality=90)
        out.append(p)
    return out
