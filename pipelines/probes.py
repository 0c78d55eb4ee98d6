"""What each question's zoom would otherwise decode and crop first, done once when a video is indexed.

- ``probe_ranges(times, shots) -> [(start, end)]``: where the embedding grid (``times``) under-samples the
  shots: each shot that holds no grid frame, and each shot's head before its first grid frame, where a shot
  shorter than the segmenter's minimum hides (``search.unseen_scene_ranges``, every one of them): the very
  ranges a question's time zoom asks for first (in a 30-minute video, 16 of a question's 20 zoom ranges).
- ``probe_rows(store, key, path, info, clip, shots, ...) -> (rows by table, stats)``: those ranges decoded
  at the zoom rate (``PROBE_FPS``) and embedded (``probe_frames``), and the spatial zoom's windows
  (``regions.frame_windows``) embedded for them, cropped from the decoded frames as a question's zoom
  crops them, and for the first grid frame of each shot, cropped from its stored thumbnail as a question's
  zoom crops an index frame (``frame_windows``): where a short shot merged into the next one shows, and
  where a small target among others in a shot that ranks low as a whole is seen; every question scores
  them at no cost (``keyframe_search``'s ``regions.held``). A few dozen short reads and a few small crops
  per shot after the decode pass.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Sequence

import numpy as np

from index.store import Store, to_blob
from pipelines import defaults
from pipelines.errors import MediaError

PROBE_FPS = float(defaults.ZOOM_FPS)


def probe_ranges(times: np.ndarray, shots: Sequence[tuple[float, float]]) -> list[tuple[float, float]]:
    from pipelines.search.driver import unseen_scene_ranges

    return unseen_scene_ranges(times, np.zeros(len(times)), shots, 1 << 30, min_len=1.0 / PROBE_FPS,
                               heads=defaults.SHOT_HEADS, head_min=defaults.HEAD_MIN)


def probe_rows(store: Store, key: str, path: str, info, clip, shots: Sequence[tuple[float, float]], *,
               decode_width: int, thumb_width: int, check_cancel: Callable[[], None] = lambda: None
               ) -> tuple[dict[str, list[dict]], dict]:
    """The rows of an embedding run's ``probe_frames`` and ``frame_windows`` (its grid frames already
    written under ``key``), and what to add to its stats."""
    from PIL import Image

    from pipelines.search.regions import frame_windows, window_spec
    from pipelines.search.select import first_frames
    from pipelines.stages.media import decode_ranges
    from pipelines.stages.stills import to_jpeg

    out: dict[str, list[dict]] = {"probe_frames": [], "frame_windows": []}
    if not shots:
        return out, {}
    times, _ = store._read_frame_matrix(key)
    spec = window_spec()
    ranges = probe_ranges(times, shots)
    stats: dict = {"probe_ranges": 0}
    wins = out["frame_windows"]

    def window_row(t: float, kind: str, boxes: np.ndarray, vecs: np.ndarray) -> dict:
        return {"run_key": key, "idx": len(wins), "t": float(t), "kind": kind, "window_spec": spec,
                "boxes": np.asarray(boxes, dtype=np.float64).tobytes(), "windows": to_blob(vecs)}

    if ranges:
        check_cancel()
        try:
            got = decode_ranges(path, ranges, fps=PROBE_FPS, width=decode_width, info=info)
        except MediaError as e:  # the questions decode these ranges themselves, and say what goes wrong
            got, stats["probe_error"] = [], e.message
        frames = [f for g in got for _, f in g]
        vecs = clip.embed_images(frames) if frames else []
        boxes, wvecs = frame_windows(clip, frames)
        i = 0
        for (a, b), g in zip(ranges, got):
            for t, f in g:
                out["probe_frames"].append({"run_key": key, "idx": i, "a": float(a), "b": float(b), "fps": PROBE_FPS,
                                            "t": float(t), "embedding": to_blob(vecs[i]),
                                            "jpeg": to_jpeg(f, thumb_width)})
                wins.append(window_row(t, "probe", boxes[i], wvecs[i]))
                i += 1
        stats.update(probe_ranges=len(ranges) if got else 0, probe_frames=i)
    check_cancel()
    first = first_frames(times, shots)
    jpegs = store.frame_jpegs(key, [float(times[j]) for j in first])
    thumbs = [np.asarray(Image.open(io.BytesIO(jpegs[float(times[j])])).convert("RGB")) for j in first]
    boxes, wvecs = frame_windows(clip, thumbs)
    for n, j in enumerate(first):
        wins.append(window_row(times[j], "first", boxes[n], wvecs[n]))
    stats["first_frame_windows"] = len(first)
    return out, stats
