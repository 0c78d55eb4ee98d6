"""What is written on screen: RapidOCR (PP-OCRv4) where text appears or changes, not on every frame.

``OcrScanner`` is fed every frame of the single decode pass. Per frame it computes a cheap change map
(grayscale at ~160 px, mean absolute difference per grid cell against the frame of the last
detection). Text detection runs only when cells changed (at most every ``min_interval`` seconds;
when detections keep finding nothing new, the wait doubles up to ``max_backoff``, so camera motion
alone does not make OCR follow the video's length) or when ``max_interval`` passed. Recognition runs
only on boxes that are new or whose pixels changed; a box whose pixels did not change keeps its text.
Start and end times come from the per-cell time of first change, so they stay precise even when a
detection was deferred. Consecutive identical (normalised) texts are merged into intervals.
"""

from __future__ import annotations

import hashlib
import importlib.util
import math
import re
import threading
import time
import unicodedata
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from pipelines.backends.contracts import TextReader
from pipelines.backends.loads import record_load
from pipelines.backends.registry import Backend
from pipelines.errors import ModelError


@dataclass(frozen=True)
class TextInterval:
    start: float
    end: float
    text: str
    box: tuple[int, int, int, int]  # x0, y0, x1, y1 in the fed frame's pixels
    confidence: float


@dataclass(frozen=True)
class OcrOptions:
    probe_width: int = 160  # width of the grayscale image the change signal is computed on
    grid: tuple[int, int] = (32, 18)  # change-map cells (columns, rows)
    cell_threshold: float = 6.0  # mean |gray difference| (0-255) for a cell to count as changed
    min_interval: float = 0.5  # seconds between detections while text keeps changing
    max_backoff: float = 8.0  # longest deferral while only non-text pixels change
    max_interval: float = 30.0  # detect at least this often, even when nothing seems to change
    crop_threshold: float = 6.0  # mean |gray difference| in a text box before it is read again
    match_iou: float = 0.5  # a box this close to a tracked one continues its track...
    same_box_iou: float = 0.8  # ...and keeps its text without reading if this close and its pixels unchanged
    min_confidence: float = 0.6
    min_text_height: int = 8  # pixels
    margin: float = 0.3  # context around a detected box for recognition, as a fraction of its height
    merge_gap: float = 1.0  # seconds: same text seen again this soon continues its interval


# ---------------------------------------------------------------- pure core


def normalise_text(text: str) -> str:
    """Case-, width- and punctuation-insensitive form used to decide that two readings are the same."""
    text = unicodedata.normalize("NFKC", text).casefold()
    return " ".join(re.sub(r"[^\w]+", " ", text).split())


def iou(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> float:
    ix = max(0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def _covered(inner: tuple[int, int, int, int], outer: tuple[int, int, int, int]) -> float:
    """The fraction of ``inner``'s area that lies inside ``outer``."""
    ix = max(0, min(inner[2], outer[2]) - max(inner[0], outer[0]))
    iy = max(0, min(inner[3], outer[3]) - max(inner[1], outer[1]))
    area = (inner[2] - inner[0]) * (inner[3] - inner[1])
    return ix * iy / area if area > 0 else 0.0


def cell_means(diff: np.ndarray, grid: tuple[int, int]) -> np.ndarray:
    """Mean of ``diff`` (H x W) over a grid of (rows, cols) = (grid[1], grid[0]) cells."""
    cols, rows = grid
    h, w = diff.shape
    ys = np.linspace(0, h, rows + 1).astype(int)
    xs = np.linspace(0, w, cols + 1).astype(int)
    sums = np.add.reduceat(np.add.reduceat(diff, ys[:-1], axis=0), xs[:-1], axis=1)
    areas = np.outer(np.diff(ys), np.diff(xs))
    return sums / np.maximum(areas, 1)


def merge_intervals(items: list[TextInterval], gap: float) -> list[TextInterval]:
    """Join intervals of the same normalised text that follow each other within ``gap`` seconds."""
    out: list[TextInterval] = []
    open_by_key: dict[str, int] = {}
    for it in sorted(items, key=lambda i: (i.start, i.end)):
        key = normalise_text(it.text)
        j = open_by_key.get(key)
        if j is not None and it.start - out[j].end <= gap:
            prev = out[j]
            best = it if it.confidence > prev.confidence else prev
            longer = it if (it.end - it.start) > (prev.end - prev.start) else prev
            out[j] = TextInterval(prev.start, max(prev.end, it.end), best.text, longer.box,
                                  max(prev.confidence, it.confidence))
        else:
            open_by_key[key] = len(out)
            out.append(it)
    return sorted(out, key=lambda i: (i.start, i.box[1], i.box[0]))


def quad_to_box(quad: np.ndarray, width: int, height: int) -> tuple[int, int, int, int]:
    x0, y0 = np.floor(quad.min(axis=0)).astype(int)
    x1, y1 = np.ceil(quad.max(axis=0)).astype(int)
    return max(int(x0), 0), max(int(y0), 0), min(int(x1), width), min(int(y1), height)


def expand_quad(quad: np.ndarray, margin: float) -> np.ndarray:
    """The quad (tl, tr, br, bl) grown by ``margin`` x its height on every side, along its own axes."""
    q = quad.astype(np.float32)
    along, across = q[1] - q[0], q[3] - q[0]
    la, lc = float(np.linalg.norm(along)), float(np.linalg.norm(across))
    if la < 1e-6 or lc < 1e-6:
        return q
    u, v = along / la, across / lc
    m = margin * lc
    return np.stack([q[0] - m * u - m * v, q[1] + m * u - m * v, q[2] + m * u + m * v, q[3] - m * u + m * v])


def to_gray(rgb: np.ndarray) -> np.ndarray:
    r, g, b = (rgb[..., i].astype(np.float32) for i in range(3))
    return 0.299 * r + 0.587 * g + 0.114 * b


# ---------------------------------------------------------------- model adapter


class RapidOcrEngine(TextReader):
    """PP-OCRv4 detection + recognition ONNX models of ``rapidocr-onnxruntime``; upright text, no classifier."""

    name = "rapidocr"

    def __init__(self, *, threads: int = -1):
        try:
            from rapidocr_onnxruntime import RapidOCR
        except ImportError as e:
            raise ModelError("OCR needs rapidocr-onnxruntime: pip install rapidocr-onnxruntime pyclipper") from e
        # "max" keeps a ~640 px frame at its size (the default "min" 736 upscales it about 4x in pixels).
        self._ocr = RapidOCR(det_limit_type="max", det_limit_side_len=960, intra_op_num_threads=threads)
        self.fingerprint = rapidocr_identity()
        self._lock = threading.Lock()

    def detect(self, rgb: np.ndarray) -> list[np.ndarray]:
        """Text line quads (4 x 2 float, tl tr br bl) in the frame's pixels."""
        with self._lock:
            boxes, _ = self._ocr.text_det(np.ascontiguousarray(rgb[..., ::-1]))
        return [] if boxes is None else [np.asarray(b, dtype=np.float32) for b in boxes]

    def recognize(self, crops: list[np.ndarray]) -> list[tuple[str, float]]:
        """Text and score of each RGB crop of one text line (batched)."""
        if not crops:
            return []
        with self._lock:
            res, _ = self._ocr.text_rec([np.ascontiguousarray(c[..., ::-1]) for c in crops])
        return [(str(r[0]).strip(), float(r[1])) for r in res]


_ENGINES: dict[str, RapidOcrEngine] = {}
_ENGINES_LOCK = threading.Lock()


def rapidocr_identity() -> str:
    """The content of the PP-OCRv4 ONNX files the package carries (found without importing it)."""
    import importlib.util

    from pipelines.backends.identity import identity

    spec = importlib.util.find_spec("rapidocr_onnxruntime")
    root = Path(spec.origin).parent / "models" if spec and spec.origin else None
    files = sorted(root.glob("*.onnx")) if root and root.is_dir() else []
    return identity("ocr", files=files, name="rapidocr-ppocrv4")


def load_ocr(spec: str = "rapidocr") -> RapidOcrEngine:
    """The OCR engine for ``spec``, through the registry (``rapidocr`` is built in), built once per process."""
    from pipelines.backends import registry

    with _ENGINES_LOCK:
        if spec not in _ENGINES:
            _ENGINES[spec] = registry.load("ocr", spec)
            record_load("ocr", spec)
        return _ENGINES[spec]


def _load_rapidocr(target: str, **_: object) -> RapidOcrEngine:
    if target:
        raise ModelError(f"rapidocr takes no model name (got {target!r}); it uses the PP-OCRv4 models it carries")
    return RapidOcrEngine()


BACKENDS = [
    Backend("ocr", "rapidocr", _load_rapidocr, identify=lambda t, **_: rapidocr_identity(), default=True,
            check=lambda t: None if importlib.util.find_spec("rapidocr_onnxruntime") else
            "not installed (pip install rapidocr-onnxruntime pyclipper)",
            description="PP-OCRv4 through rapidocr-onnxruntime (pip install rapidocr-onnxruntime pyclipper)"),
]


# ---------------------------------------------------------------- the scanner


@dataclass
class _Track:
    box: tuple[int, int, int, int]
    quad: np.ndarray
    text: str | None  # None: a detected region with no readable text (not read again while unchanged)
    start: float
    thumb: np.ndarray  # gray pixels of ``box`` when it was last read
    readings: list[tuple[str, float]] = field(default_factory=list)


class OcrScanner:
    """On-screen text of one video, fed from its single decode pass."""

    def __init__(self, engine, *, options: OcrOptions | None = None, **params):
        self.engine = engine
        self.options = options or OcrOptions(**params)
        opts = repr(sorted(asdict(self.options).items()))
        self.fingerprint = f"{engine.fingerprint}-{hashlib.blake2b(opts.encode(), digest_size=4).hexdigest()}"
        self.stats = {"frames_seen": 0, "frames_detected": 0, "crops_recognised": 0, "seconds": 0.0,
                      "detect_seconds": 0.0, "recognise_seconds": 0.0}
        self._ref: np.ndarray | None = None
        self._first_change: np.ndarray | None = None
        self._shape: tuple[int, int] | None = None
        self._last_det = -math.inf
        self._cooldown = self.options.min_interval
        self._tracks: list[_Track] = []
        self._done: list[TextInterval] = []

    # -- per frame
    def feed(self, t: float, frame: np.ndarray) -> None:
        t0 = time.perf_counter()
        o = self.options
        self.stats["frames_seen"] += 1
        small = self._probe(frame)
        if self._ref is None or self._shape != frame.shape[:2]:
            self._close_all(t)
            self._shape, self._first_change = frame.shape[:2], None
            self._detect(t, frame, small)
        else:
            changed = cell_means(np.abs(small - self._ref), o.grid) > o.cell_threshold
            fresh = changed & np.isinf(self._first_change)
            self._first_change[fresh] = t
            since = t - self._last_det
            if (changed.any() and since >= self._cooldown - 1e-6) or since >= o.max_interval - 1e-6:
                self._detect(t, frame, small)
        self.stats["seconds"] += time.perf_counter() - t0

    def finish(self, end_time: float) -> list[TextInterval]:
        """Close what is still on screen at ``end_time``; the merged intervals, in time order."""
        self._close_all(end_time)
        return merge_intervals(self._done, self.options.merge_gap)

    # -- internals
    def _probe(self, frame: np.ndarray) -> np.ndarray:
        """Grayscale at ``probe_width`` (area average), float32: the change signal's input."""
        import cv2

        h, w = frame.shape[:2]
        pw = min(self.options.probe_width, w)
        ph = max(1, int(round(h * pw / w)))
        small = cv2.resize(np.ascontiguousarray(frame), (pw, ph), interpolation=cv2.INTER_AREA)
        return cv2.cvtColor(small, cv2.COLOR_RGB2GRAY).astype(np.float32)

    def _cells_of(self, box: tuple[int, int, int, int]) -> tuple[slice, slice]:
        h, w = self._shape
        cols, rows = self.options.grid
        cx0, cx1 = int(box[0] * cols / w), max(int(math.ceil(box[2] * cols / w)), int(box[0] * cols / w) + 1)
        cy0, cy1 = int(box[1] * rows / h), max(int(math.ceil(box[3] * rows / h)), int(box[1] * rows / h) + 1)
        return slice(cy0, cy1), slice(cx0, cx1)

    def _change_time(self, box: tuple[int, int, int, int], t: float) -> float:
        """When the pixels under ``box`` first changed since the last detection (median over its cells)."""
        if self._first_change is None:
            return t
        cells = self._first_change[self._cells_of(box)]
        finite = cells[np.isfinite(cells)]
        if finite.size == 0:
            return t
        return float(min(max(np.median(finite), self._last_det), t))

    @staticmethod
    def _crop_gray(gray: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
        return gray[box[1]:box[3], box[0]:box[2]]

    def _changed(self, track: _Track, gray: np.ndarray) -> bool:
        cur = self._crop_gray(gray, track.box)
        if cur.shape != track.thumb.shape or cur.size == 0:
            return True
        return float(np.abs(cur - track.thumb).mean()) > self.options.crop_threshold

    def _crop_rgb(self, frame: np.ndarray, quad: np.ndarray) -> np.ndarray:
        import cv2

        q = expand_quad(quad, self.options.margin)
        w = int(round(max(np.linalg.norm(q[1] - q[0]), np.linalg.norm(q[2] - q[3]))))
        h = int(round(max(np.linalg.norm(q[3] - q[0]), np.linalg.norm(q[2] - q[1]))))
        dst = np.array([[0, 0], [w, 0], [w, h], [0, h]], dtype=np.float32)
        m = cv2.getPerspectiveTransform(q.astype(np.float32), dst)
        return cv2.warpPerspective(frame, m, (max(w, 1), max(h, 1)), flags=cv2.INTER_CUBIC,
                                   borderMode=cv2.BORDER_REPLICATE)

    def _close(self, track: _Track, end: float) -> None:
        if track.text is None or end <= track.start:
            return
        text = max(track.readings, key=lambda r: r[1])[0]
        mean_conf = float(np.mean([r[1] for r in track.readings]))
        self._done.append(TextInterval(round(track.start, 3), round(end, 3), text, track.box, round(mean_conf, 4)))

    def _close_all(self, t: float) -> None:
        for tr in self._tracks:
            self._close(tr, t)
        self._tracks = []

    def _detect(self, t: float, frame: np.ndarray, small: np.ndarray) -> None:
        o = self.options
        h, w = frame.shape[:2]
        self.stats["frames_detected"] += 1
        gray = to_gray(frame)
        d0 = time.perf_counter()
        quads = self.engine.detect(frame)
        self.stats["detect_seconds"] += time.perf_counter() - d0
        found = []
        for q in quads:
            box = quad_to_box(q, w, h)
            if box[3] - box[1] >= o.min_text_height and box[2] > box[0]:
                found.append((box, q))

        # Match this detection's boxes to the tracks on screen (greedy by IoU).
        pairs = sorted(((iou(tr.box, box), i, j) for i, tr in enumerate(self._tracks)
                        for j, (box, _) in enumerate(found)), reverse=True)
        track_of: dict[int, int] = {}
        used_tracks: set[int] = set()
        for score, i, j in pairs:
            if score < o.match_iou:
                break
            if i in used_tracks or j in track_of:
                continue
            track_of[j] = i
            used_tracks.add(i)

        keep: list[_Track] = []
        to_read: list[tuple[int, int | None]] = []  # (found index, track index or None)
        for j in range(len(found)):
            i = track_of.get(j)
            if i is not None and iou(self._tracks[i].box, found[j][0]) >= o.same_box_iou \
                    and not self._changed(self._tracks[i], gray):
                keep.append(self._tracks[i])  # same place, same pixels, same text: nothing to read
            else:
                to_read.append((j, i))
        productive = False
        for i, tr in enumerate(self._tracks):
            if i in used_tracks:
                continue
            cover = [box for box, _ in found if _covered(tr.box, box) >= 0.5]
            if self._changed(tr, gray) or cover:  # gone, or now part of a longer line ("Gate" -> "Gate 4817")
                self._close(tr, self._change_time(cover[0] if cover else tr.box, t))
                productive = productive or tr.text is not None
            else:
                keep.append(tr)  # pixels unchanged and nothing found there: a detector miss, the text stays

        r0 = time.perf_counter()
        readings = self.engine.recognize([self._crop_rgb(frame, found[j][1]) for j, _ in to_read])
        self.stats["recognise_seconds"] += time.perf_counter() - r0
        self.stats["crops_recognised"] += len(to_read)
        for (j, i), (text, conf) in zip(to_read, readings, strict=True):
            box, quad = found[j]
            readable = conf >= o.min_confidence and normalise_text(text) != ""
            reading = (text, conf) if readable else None
            old = self._tracks[i] if i is not None else None
            thumb = self._crop_gray(gray, box).copy()
            if old is not None and reading is not None and old.text is not None \
                    and normalise_text(old.text) == normalise_text(text):
                old.readings.append(reading)
                old.box, old.quad, old.thumb = box, quad, thumb
                keep.append(old)
                continue
            start = self._change_time(box, t)
            if old is not None:
                self._close(old, start)
                productive = productive or old.text is not None
            if reading is not None:
                productive = True
            keep.append(_Track(box, quad, text if reading else None, start, thumb,
                               [reading] if reading else []))
        self._tracks = keep

        self._cooldown = o.min_interval if productive else min(self._cooldown * 2, o.max_backoff)
        self._ref = small
        self._first_change = np.full((o.grid[1], o.grid[0]), np.inf)
        self._last_det = t
