"""Scene segmentation with PySceneDetect detectors, fed from our own single decode pass.

Frames arrive on a constant sampling grid (``fps``), already decoded; each detector sees them as BGR
images about 256 px wide through ``process_frame`` and reports cuts, and ``post_process`` closes the
last scene. A representative frame per scene (its middle) is kept in bounded memory for captioning.

A cut found between two analysed samples ``a`` and ``b`` is refined at the source's own frame rate when
the video file is known (``source``): the frames from the one shown at ``a`` to the one shown at ``b``
are read (random access, a few frames) and the cut is put on the first frame after the largest change
between consecutive frames, so a scene starts on the first frame of its shot, not on the next sample.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

# name -> (PySceneDetect class, the keyword its threshold goes to)
_DETECTOR_CLASSES = {
    "content": ("ContentDetector", "threshold"),
    "adaptive": ("AdaptiveDetector", "adaptive_threshold"),
    "histogram": ("HistogramDetector", "threshold"),
    "hash": ("HashDetector", "threshold"),
}
DETECTORS = tuple(_DETECTOR_CLASSES)


@dataclass(frozen=True)
class SceneParams:
    detector: str = "content"
    threshold: float | None = None  # detector's own default when None
    min_scene_len: float = 0.6  # seconds
    fps: float = 10.0  # analysis rate: cut times are exact to 1/fps
    width: int = 256  # analysis width in pixels
    refine: bool = True  # cut times moved onto the source's first frame of the new shot (needs the file)

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Scene:
    start: float
    end: float
    rep_t: float
    rep_jpeg: bytes | None = None  # the middle frame, JPEG-encoded when the scene closes (bounded memory)


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


def make_detector(params: SceneParams):
    from scenedetect import detectors

    try:
        cls_name, threshold_kw = _DETECTOR_CLASSES[params.detector]
    except KeyError:
        raise ValueError(f"unknown scene detector '{params.detector}' (choose from {', '.join(DETECTORS)})") from None
    kw: dict = {"min_scene_len": max(1, int(round(params.min_scene_len * params.fps)))}
    if params.threshold is not None:
        kw[threshold_kw] = params.threshold
    return getattr(detectors, cls_name)(**kw)


class _MiddleFrame:
    """Keeps at most ``cap`` frames of the open scene, thinning by half when full, so the frame nearest
    the scene's middle is known when the scene closes, in memory bounded by ``cap`` frames."""

    def __init__(self, cap: int = 16):
        self.cap = cap
        self.reset()

    def reset(self) -> None:
        self.items: list[tuple[float, np.ndarray]] = []
        self.stride = 1
        self.seen = 0

    def add(self, t: float, frame: np.ndarray) -> None:
        if self.seen % self.stride == 0:
            self.items.append((t, frame))
            if len(self.items) >= self.cap:
                self.items = self.items[::2]
                self.stride *= 2
        self.seen += 1

    def middle(self, start: float, end: float) -> tuple[float, np.ndarray | None]:
        if not self.items:
            return (start + end) / 2, None
        mid = (start + end) / 2
        t, f = min(self.items, key=lambda it: abs(it[0] - mid))
        return t, f


class SceneSegmenter:
    """``feed(t, rgb)`` for each frame on the grid, then ``finish(duration)`` -> scenes in time order."""

    def __init__(self, params: SceneParams, *, keep_width: int = 384, source: str | None = None):
        import cv2
        from scenedetect import FrameTimecode

        self._cv2 = cv2
        self._tc = FrameTimecode
        self.params = params
        self.detector = make_detector(params)
        self.keep_width = keep_width
        self.times: list[float] = []
        self.cuts: list[float] = []
        self.scenes: list[Scene] = []
        self._mid = _MiddleFrame()
        self._scene_start = 0.0
        self.source = source
        self.windows: list[tuple[float, float]] = []  # per cut: the analysed samples either side
        self._shape: tuple[int, int] | None = None

    def _small(self, rgb: np.ndarray, width: int) -> np.ndarray:
        h, w = rgb.shape[:2]
        if w <= width:
            return rgb
        # bilinear: ~10x cheaper than INTER_AREA on non-integer ratios, and plenty for cut detection
        return self._cv2.resize(rgb, (width, max(2, int(round(h * width / w)))), interpolation=self._cv2.INTER_LINEAR)

    def feed(self, t: float, rgb: np.ndarray) -> None:
        i = len(self.times)
        if i == 0:
            self._scene_start = t
            self._shape = rgb.shape[:2]
        self.times.append(t)
        bgr = self._cv2.cvtColor(self._small(rgb, self.params.width), self._cv2.COLOR_RGB2BGR)
        cuts = self.detector.process_frame(self._tc(i, fps=self.params.fps), bgr)
        for c in cuts:
            self._close_at_frame(c.frame_num)
        self._mid.add(t, self._small(rgb, self.keep_width).copy())

    def _close_at_frame(self, k: int) -> None:
        k = min(k, len(self.times) - 1)
        if self._close_at(self.times[k]):
            self.windows.append((self.times[max(k - 1, 0)], self.times[k]))

    def _close_at(self, cut_t: float) -> bool:
        if cut_t <= self._scene_start:
            return False
        rep_t, rep = self._mid.middle(self._scene_start, cut_t)
        self.scenes.append(Scene(self._scene_start, cut_t, rep_t, to_jpeg(rep)))
        self.cuts.append(cut_t)
        # frames already buffered after the cut belong to the new scene
        keep = [(t, f) for t, f in self._mid.items if t >= cut_t]
        self._mid.reset()
        for t, f in keep:
            self._mid.add(t, f)
        self._scene_start = cut_t
        return True

    def finish(self, duration: float) -> list[Scene]:
        if self.times:
            for c in self.detector.post_process(self._tc(len(self.times) - 1, fps=self.params.fps)):
                self._close_at_frame(c.frame_num)
        end = max(duration, self.times[-1] if self.times else 0.0)
        if end > self._scene_start or not self.scenes:
            rep_t, rep = self._mid.middle(self._scene_start, end)
            self.scenes.append(Scene(self._scene_start, end, rep_t, to_jpeg(rep)))
        if self.source and self.params.refine and self.windows:
            self._refine()
        return self.scenes

    def _refine(self) -> None:
        """Move each cut onto the first frame of the new shot (see the module's docstring)."""
        from pipelines.stages.seek import frames_between

        h0, w0 = self._shape or (9, 16)
        w = min(self.params.width, w0) // 2 * 2
        h = max(2, int(round(h0 * w / w0 / 2)) * 2)
        cuts = []
        for (a, b), cut in zip(self.windows, self.cuts):
            frames = frames_between(self.source, a, b, w=w, h=h) if b > a else []
            if len(frames) >= 2:
                hsv = [self._cv2.cvtColor(f, self._cv2.COLOR_RGB2HSV).astype(np.int16) for _, f in frames]
                change = [float(np.abs(y - x).mean()) for x, y in zip(hsv, hsv[1:])]
                cut = frames[1 + int(np.argmax(change))][0]
            cuts.append(cut)
        starts = [self.scenes[0].start, *cuts]
        ends = [*cuts, self.scenes[-1].end]
        self.scenes = [Scene(a, b, min(max(s.rep_t, a), b), s.rep_jpeg)
                       for s, a, b in zip(self.scenes, starts, ends)]
        self.cuts = cuts
