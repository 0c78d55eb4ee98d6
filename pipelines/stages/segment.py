"""Scene segmentation with PySceneDetect detectors, fed from our own single decode pass.

Frames arrive on a constant sampling grid (``fps``), already decoded and small (``analyse``: in `vqa
index` the side stream's grid, ``width`` 128 px, area-scaled from the source); each detector sees them as
BGR images through ``process_frame`` and reports cuts, and ``post_process`` closes the last scene. A
representative frame per scene (the kept frame nearest its middle, from ``keep``: the decode's sampled
frames, 1 fps or more) is kept in bounded memory for captioning; a scene no kept frame falls in gets its
middle read from the file. ``feed`` does both with one frame.

A cut the detector reports is held for ``hold`` seconds (1 s): if within that time the picture comes
back to what it was before the cut (closer to it than half the cut's own change), it was a flash, a
hand or a wing passing the lens, a brief occlusion: no cut (and the change back is no cut either). A
picture that differs from the one before the cut by ``flash_back_max`` or more did not come back: it is
another shot that looks alike (a short shot between two shots of the same colours is a scene, not a
flash). A cutaway shorter than ``hold`` back to the very same shot is merged into it, the price of this
rule.

Besides the detector's cuts, two kinds of change are cuts its thresholds (made for moving footage)
miss: a clear change between two still pictures (a slide change), and a change of the small HSV
picture of at least ``spike_min`` that is ``spike_ratio`` times every change within ``spike_window`` of
it and reaches ``spike_area`` of the pixels (two shots of similar colours: the content score stays under
the threshold, yet nothing around the change moves like it, and the whole picture changes; a hand
jumping across a video that repeats frames changes a part). Both go through the hold and the refinement
like any other cut.

A cut found between two analysed samples ``a`` and ``b`` is checked and refined at the source's own
frame rate when the video file is known (``source``): the frames from ``a - 0.3 s`` to ``b + 0.3 s`` are
taken from the decode's every-frame side stream (``fine``: ``fine_width`` px, the source's own
pixels picked on a grid, ``media.picked_scale``), judged as soon as they are all there; they are read
again from the file (area-averaged, ``width`` px) only when missing, or when the picked pixels see no
sharp change (a slide's few changed words can fall between them), so no cut is dropped unseen. Only the
verdict is kept, and the cut is put on the first frame after the largest change between consecutive
frames inside ``(a, b]``, so a scene starts on the first frame of its shot, not on the next sample. A
hard cut is one sharp change: when that change is not ``sharpness`` (3) times the median change between
the frames around it, the picture was moving (a handheld camera, a pan) or fading, and the cut is
dropped. Gradual transitions (cross-fades) are therefore not scene boundaries.
"""

from __future__ import annotations

from array import array
from collections import deque
from dataclasses import asdict, dataclass

import numpy as np

from pipelines.stages.stills import changed_share, mean_abs_diff, to_jpeg

FINE_WIDTH = 64  # width of the every-frame side stream the cut windows are refined on (SceneParams.fine_width)
KEEP_FPS = 1.0  # the decode gives the segmenter candidate middle frames (``keep``) at least this often

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
    width: int = 128  # analysis width in pixels
    refine: bool = True  # cut times moved onto the source's first frame of the new shot (needs the file)
    hold: float = 1.0  # seconds: a change the picture comes back from within this time is not a cut
    sharpness: float = 3.0  # at the source rate a cut's change is this many times the usual one around it
    sharp_window: float = 0.3  # seconds either side of a cut read at the source rate to know "usual"
    # a change of the small HSV picture (mean absolute difference, 0-255) of at least ``spike_min`` that is
    # ``spike_ratio`` times every change within ``spike_window`` seconds of it: a cut the detector missed
    spike_min: float = 12.0
    spike_ratio: float = 8.0
    spike_window: float = 0.3
    # ... and that changes at least this share of the pixels by more than 8 levels: a cut changes the whole
    # picture, a hand or a thing moving (in jumps, in a video that repeats frames) a part of it
    spike_area: float = 0.8
    # a picture that "came back" after a change differs from the one before it by less than half the
    # change and by less than this; more is another shot that looks alike (its own cut), not a flash
    flash_back_max: float = 20.0
    # the cut windows are judged on the decode's every-frame side stream: frames this wide, the source's
    # own pixels picked (``media.picked_scale``), averaged in blocks of judge_block x judge_block pixels
    fine_width: int = FINE_WIDTH
    judge_block: int = 4

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Scene:
    start: float
    end: float
    rep_t: float
    rep_jpeg: bytes | None = None  # the middle frame, JPEG-encoded when the scene closes (bounded memory)


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
        if self.seen % self.stride == 0:  # a copy of only the frames kept (the decode reuses its buffers)
            self.items.append((t, frame.copy()))
            if len(self.items) >= self.cap:
                self.items = self.items[::2]
                self.stride *= 2
        self.seen += 1

    def middle(self, start: float, end: float) -> tuple[float, np.ndarray | None]:
        """The kept frame nearest the middle of ``[start, end)`` among those inside it (None: none is)."""
        mid = (start + end) / 2
        inside = [it for it in self.items if start <= it[0] < end]
        if not inside:
            return mid, None
        t, f = min(inside, key=lambda it: abs(it[0] - mid))
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
        self.times = array("d")  # every analysed sample's time (8 bytes each)
        self.cuts: list[float] = []
        self.scenes: list[Scene] = []
        self._mid = _MiddleFrame()
        self._scene_start = 0.0
        self.source = source
        self.windows: list[tuple[float, float]] = []  # per cut: the analysed samples either side
        self._shape: tuple[int, int] | None = None  # the analysed frames' (h, w): windows read again match
        self._hold = max(0, int(round(params.hold * params.fps)))
        self._recent: dict[int, np.ndarray] = {}  # sample index -> tiny HSV picture (uint8), the last seconds
        self._pending: list[int] = []  # reported cuts (sample index) waiting for the hold to pass
        self._returns: list[tuple[int, np.ndarray]] = []  # pictures before changes that came back
        self._score: dict[int, float] = {}  # sample index -> mean change from the sample before (tiny HSV)
        self._frac: dict[int, float] = {}  # sample index -> share of pixels that changed a lot (RGB > 48)
        self._area: dict[int, float] = {}  # sample index -> share of pixels that changed at all (RGB > 8)
        self._rgb_prev: np.ndarray | None = None
        self._still = max(1, int(round(0.5 * params.fps)))
        self._spike = max(1, int(round(params.spike_window * params.fps)))
        # Every frame at the source's rate, small (``fine``, from the same decode): the last seconds of them,
        # and per cut window the frames its refinement reads (None: not all there; re-read from the file).
        self._fine: deque[tuple[float, np.ndarray]] = deque()
        self._fine_keep = params.hold + 2 * params.sharp_window + 2.0 / params.fps + 2.0  # seconds kept
        # per cut window, decided as soon as its fine frames are there (only the verdict is kept, not the
        # frames: memory does not grow with the number of cuts): (decided, cut time or None: no cut)
        self._decided: list[tuple[bool, float | None]] = []
        self.reread = 0  # cut windows read again from the file (no fine frames for them)
        self._waiting: list[int] = []  # windows whose frames are still to come

    def _missed_cut(self, k: int) -> None:
        """The cuts the detectors' thresholds, made for moving footage, miss: a clear change between two
        still pictures however small it is (a slide change: new text on the same background), and a change
        of the whole picture far above every change around it (two shots of similar colours)."""
        score, frac = self._score.get(k), self._frac.get(k)
        if score is None or frac is None or k in self._pending:
            return
        # a few pixels changed a lot (new text), or the whole picture changed evenly (a new colour); a
        # codec's keyframe changes many pixels a little and is neither
        if frac < 0.002 and score < 3.0:
            return
        near = [j for j in range(k - self._still, k + self._still + 1) if j != k]
        if any(j not in self._score or j not in self._frac for j in near):  # not the first moments
            return
        if max(self._score[j] for j in near) <= min(1.0, score / 6) and max(self._frac[j] for j in near) <= 0.001:
            self._pending.append(k)
            return
        # a change that stands far above every change around it (a cut between two shots of the same
        # colours: the detector's content score stays under its threshold) is a cut too
        close = [j for j in range(k - self._spike, k + self._spike + 1) if j != k]
        if score >= self.params.spike_min and max(self._score[j] for j in close) <= score / self.params.spike_ratio \
                and self._area.get(k, 0.0) >= self.params.spike_area \
                and not any(abs(j - k) <= self._spike for j in self._pending):
            self._pending.append(k)

    def _small(self, rgb: np.ndarray, width: int) -> np.ndarray:
        h, w = rgb.shape[:2]
        if w <= width:
            return rgb
        # bilinear: ~10x cheaper than INTER_AREA on non-integer ratios, and plenty for cut detection
        return self._cv2.resize(rgb, (width, max(2, int(round(h * width / w)))), interpolation=self._cv2.INTER_LINEAR)

    def feed(self, t: float, rgb: np.ndarray) -> None:
        """A frame on the analysis grid, at any size: analysed (``analyse``) and kept as a candidate middle
        frame (``keep``)."""
        self.analyse(t, self._small(rgb, self.params.width))
        self.keep(t, rgb)

    def keep(self, t: float, rgb: np.ndarray) -> None:
        """A candidate for the open scene's middle frame (the caption's picture), stored ``keep_width`` wide.
        ``vqa index`` gives the decode's sampled frames here (``KEEP_FPS`` or more) and the small frames
        on the analysis grid to ``analyse``; every keep at ``t`` comes before the analysed samples after ``t``."""
        self._mid.add(t, self._small(rgb, self.keep_width))

    def analyse(self, t: float, small: np.ndarray) -> None:
        """A frame on the analysis grid, ``params.width`` wide (wider ones are resized)."""
        i = len(self.times)
        if i == 0:
            self._scene_start = t
        self.times.append(t)
        small = self._small(small, self.params.width)
        if self._shape is None:
            self._shape = small.shape[:2]
        bgr = self._cv2.cvtColor(small, self._cv2.COLOR_RGB2BGR)
        cuts = self.detector.process_frame(self._tc(i, fps=self.params.fps), bgr)
        if self._hold:
            small_tiny = self._small(small, 128)
            tiny = self._cv2.cvtColor(small_tiny, self._cv2.COLOR_RGB2HSV)
            if i - 1 in self._recent and self._rgb_prev is not None:
                self._score[i] = mean_abs_diff(tiny, self._recent[i - 1])
                self._frac[i] = changed_share(small_tiny, self._rgb_prev, 48)
                if self._score[i] >= self.params.spike_min:  # a spike's extent, only where one may be
                    self._area[i] = changed_share(small_tiny, self._rgb_prev, 8)
            self._recent[i] = tiny
            self._rgb_prev = small_tiny
            self._pending += [min(c.frame_num, i) for c in cuts]
            self._missed_cut(i - self._still)
            self._settle(i, final=False)
        else:
            for c in cuts:
                self._close_at_frame(c.frame_num)

    def _settle(self, i: int, final: bool) -> None:
        """Decide the reported cuts whose hold has passed (all of them when ``final``)."""
        for k in sorted(self._pending):
            if not final and i - k < self._hold:
                continue
            self._pending.remove(k)
            before, at = self._recent.get(k - 1), self._recent.get(k)
            if before is None or at is None:
                self._close_at_frame(k)
                continue
            change = mean_abs_diff(at, before)
            refs = [before] + [r for j, r in self._returns if k - j <= 2 * self._hold]
            after = [self._recent[j] for j in range(k + 1, min(i, k + self._hold) + 1) if j in self._recent]
            back = min((mean_abs_diff(a, r) for r in refs for a in after), default=float("inf"))
            if back < min(0.5 * change, self.params.flash_back_max):
                self._returns.append((k, refs[-1] if len(refs) > 1 else before))
            else:
                self._close_at_frame(k)
        keep_from = i - 2 * self._hold - 8
        for j in [j for j in self._recent if j < keep_from]:
            del self._recent[j]
        self._returns = [(j, r) for j, r in self._returns if j >= keep_from]
        for j in [j for j in self._score if j < keep_from]:
            del self._score[j]
            self._frac.pop(j, None)
            self._area.pop(j, None)

    def fine(self, t: float, frame: np.ndarray) -> None:
        """A frame of the source at its own rate (small, from the same decode; see ``media.SideStream``:
        a picked frame, ``media.picked_scale``, or RGB): cut windows take theirs from these instead of
        reading the file again."""
        self._fine.append((t, frame))
        self._take_windows(t)
        oldest = min((self.windows[w][0] for w in self._waiting), default=t) - self.params.sharp_window
        limit = min(t - self._fine_keep, oldest - 1.0)
        while len(self._fine) > 2 and self._fine[1][0] <= limit:  # the frame shown at ``limit`` stays
            self._fine.popleft()

    def _take_windows(self, now: float | None) -> None:
        """Give each waiting window the fine frames from the one shown at ``a - margin`` to the one shown at
        ``b + margin`` once they have all arrived (``now`` None: the stream ended)."""
        margin = self.params.sharp_window
        for w in list(self._waiting):
            a, b = self.windows[w]
            if now is not None and now <= b + margin:
                continue
            self._waiting.remove(w)
            lo, hi = max(0.0, a - margin), b + margin
            frames = [(t, f) for t, f in self._fine if t <= hi]
            first = max((i for i, (t, _) in enumerate(frames) if t <= lo + 1e-6), default=None)
            if first is None and lo > 1e-6:  # the frame shown at ``lo`` is gone (or never came): re-read
                continue
            verdict = self._judge(a, b, b, frames[first or 0:])
            if verdict is None and any(f.ndim == 2 for _, f in frames):  # picked pixels may not see a
                continue  # small change (a slide's text): no cut is dropped before the window is read again
            self._decided[w] = (True, verdict)

    def _close_at_frame(self, k: int) -> None:
        k = min(k, len(self.times) - 1)
        if self._close_at(self.times[k]):
            self.windows.append((self.times[max(k - 1, 0)], self.times[k]))
            self._decided.append((False, None))
            if self._fine:
                self._waiting.append(len(self.windows) - 1)
                self._take_windows(self._fine[-1][0])

    def _judge(self, a: float, b: float, cut: float, frames: list[tuple[float, np.ndarray]]) -> float | None:
        """Where in ``(a, b]`` the cut found at ``cut`` is, from every frame of its window (``frames``): the
        frame after the largest change there, when that change is sharp; None when it is not (no cut);
        ``cut`` itself when no frame of the window falls inside."""
        inside = [i for i in range(1, len(frames)) if a < frames[i][0] <= b]
        if not inside:
            return cut
        hsv = [self._cv2.cvtColor(self._judged(f), self._cv2.COLOR_RGB2HSV) for _, f in frames]
        change = [0.0] + [mean_abs_diff(y, x) for x, y in zip(hsv, hsv[1:])]
        peak = max(inside, key=lambda i: change[i])
        rest = [c for i, c in enumerate(change) if i > 0 and i != peak]
        usual = float(np.median(rest)) if rest else 0.0
        return frames[peak][0] if change[peak] >= self.params.sharpness * max(usual, 0.1) else None

    def _judged(self, frame: np.ndarray) -> np.ndarray:
        """A frame of a cut window as the judgement compares it: RGB, and a picked frame (``picked_scale``:
        single source pixels, which on a noise-like or finely textured picture change from frame to frame
        as much as a cut) averaged in blocks of ``judge_block`` x ``judge_block`` pixels, as an area-scaled
        frame averages its source."""
        from pipelines.stages.media import picked_rgb

        if frame.ndim == 3:
            return frame
        rgb = picked_rgb(frame)
        h, w = rgb.shape[:2]
        block = max(1, self.params.judge_block)
        size = (max(1, w // block), max(1, h // block))
        return self._cv2.resize(rgb, size, interpolation=self._cv2.INTER_AREA)

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
            last = len(self.times) - 1
            for c in self.detector.post_process(self._tc(last, fps=self.params.fps)):
                if self._hold:
                    self._pending.append(min(c.frame_num, last))
                else:
                    self._close_at_frame(c.frame_num)
            if self._hold:
                self._settle(last, final=True)
        end = max(duration, self.times[-1] if self.times else 0.0)
        if end > self._scene_start or not self.scenes:
            rep_t, rep = self._mid.middle(self._scene_start, end)
            self.scenes.append(Scene(self._scene_start, end, rep_t, to_jpeg(rep)))
        self._take_windows(None)
        if self.source and self.params.refine and self.windows:
            self._refine()
        if self.source:
            self._fill_middles()
        return self.scenes

    def _fill_middles(self) -> None:
        """A scene no kept frame fell in (shorter than the keep rate's step) gets the frame at its middle
        read from the file (all such scenes in one batched read)."""
        from pipelines.errors import MediaError
        from pipelines.stages.media import decode_ranges

        missing = [i for i, s in enumerate(self.scenes) if s.rep_jpeg is None and s.end > s.start]
        if not missing:
            return
        step = 1.0 / self.params.fps
        mids = [(self.scenes[i].start + self.scenes[i].end) / 2 for i in missing]
        try:
            got = decode_ranges(self.source, [(m, m + step) for m in mids], fps=self.params.fps,
                                width=self.keep_width)
        except MediaError:
            return
        for i, frames in zip(missing, got):
            if frames:
                s, (t, f) = self.scenes[i], frames[0]
                self.scenes[i] = Scene(s.start, s.end, t, to_jpeg(f))

    def _refine(self) -> None:
        """Check each cut at the source's frame rate and move it onto the first frame of the new shot
        (see the module's docstring); a change that is not sharp there (camera motion) is no cut."""
        from pipelines.stages.seek import frames_between

        h0, w0 = self._shape or (9, 16)
        w = min(self.params.width, w0) // 2 * 2
        h = max(2, int(round(h0 * w / w0 / 2)) * 2)
        margin = self.params.sharp_window
        cuts: list[float | None] = []
        for (a, b), cut, (decided, verdict) in zip(self.windows, self.cuts, self._decided):
            if decided:  # from the decode itself
                cuts.append(verdict)
                continue
            frames = [] if b <= a else frames_between(self.source, max(0.0, a - margin), b + margin, w=w, h=h)
            if b > a:
                self.reread += 1
            cuts.append(self._judge(a, b, cut, frames))
        scenes = [self.scenes[0]]
        for s, cut in zip(self.scenes[1:], cuts):
            prev = scenes[-1]
            if cut is None:  # merged: the representative frame nearer the merged scene's middle stays
                mid = (prev.start + s.end) / 2
                keep = min((prev, s), key=lambda x: abs(x.rep_t - mid))
                scenes[-1] = Scene(prev.start, s.end, keep.rep_t, keep.rep_jpeg)
            else:
                scenes[-1] = Scene(prev.start, cut, min(max(prev.rep_t, prev.start), cut), prev.rep_jpeg)
                scenes.append(Scene(cut, s.end, min(max(s.rep_t, cut), s.end), s.rep_jpeg))
        self.scenes = scenes
        self.cuts = [c for c in cuts if c is not None]
