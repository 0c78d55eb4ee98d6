"""What an agent can do with the index, as plain functions over one store and one set of loaded models.

``VideoTools`` is the seam between the MCP protocol and the pipelines: every method takes plain values
and returns JSON-ready dicts (or frames as JPEG bytes), and raises ``VqaError`` with one line for any
input it cannot serve. Calls are serialised by a lock: models are shared, and one process holds them.
"""

from __future__ import annotations

import io
import json
import math
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from index.store import Store
from pipelines.backends.loads import LOADS
from pipelines.backends.profiles import Models
from pipelines.errors import MediaError, NotIndexedError, VqaError
from pipelines.indexing import Indexer, IndexOptions

MAX_FRAMES_PER_CALL = 16
DEFAULT_FRAME_PIXELS = 4 * 640 * 360  # total over the frames of one call
TEXT_SOURCES = ("speech", "screen", "caption")
_RUN_OF_SOURCE = {"speech": "transcript", "screen": "ocr", "caption": "captions"}


@dataclass(frozen=True)
class FrameImage:
    t: float
    width: int
    height: int
    jpeg: bytes
    source: str  # "video" (decoded from the file) or "thumbnail" (the index's stored JPEG; file gone)


def jsonable(obj: Any) -> Any:
    """The same plain-JSON form `vqa … --json` prints (numpy scalars and arrays, dataclasses, paths)."""

    def default(o: Any) -> Any:
        if hasattr(o, "as_dict"):
            return o.as_dict()
        if isinstance(o, Path):
            return str(o)
        import numpy as np

        if isinstance(o, np.generic):
            return o.item()
        if isinstance(o, np.ndarray):
            return o.tolist()
        raise TypeError(f"not JSON serialisable: {type(o).__name__}")

    return json.loads(json.dumps(obj, default=default))


def frame_size(src_w: int, src_h: int, pixels: int) -> tuple[int, int]:
    """The largest even size with the source's aspect within ``pixels`` (never above the source)."""
    scale = min(1.0, math.sqrt(max(pixels, 1) / max(src_w * src_h, 1)))
    w = max(32, int(src_w * scale) // 2 * 2)
    h = max(2, int(round(w * src_h / src_w / 2)) * 2)
    return w, h


class VideoTools:
    """The tools of `vqa mcp`; one instance holds the store and the models for the server's life."""

    def __init__(self, store: Store, models: Models, index_opts: IndexOptions = IndexOptions(),
                 reports_dir: str | Path | None = None):
        self.store = store
        self.models = models
        if not os.environ.get("VQA_FREE_MODELS"):  # a server's point is warm models: it frees none unless told
            models.free = "never"
        self.indexer = Indexer(store, models, index_opts)
        self.reports_dir = Path(reports_dir) if reports_dir else None
        self.lock = threading.Lock()

    # -- the library ----------------------------------------------------------------------------------
    def list_videos(self) -> dict:
        from pipelines.indexing import latest_stage_status

        with self.lock:
            out = []
            for v in self.store.list_videos():
                paths = self.store.video_paths(v["id"])
                status = latest_stage_status(self.store, v["id"])
                out.append({"video_id": v["id"], "path": v["path"], "paths": paths, "duration": v["duration"],
                            "stages": status, "complete": all(s == "done" for s in status.values())})
            return {"videos": out}

    def index(self, path: str, progress=None) -> dict:
        """Index a file, a folder (recursively, video extensions) or a glob; unchanged videos are skipped.
        ``progress(description, done, total)`` hears of each video's progress (seconds of video)."""
        from pipelines.inputs import expand_inputs

        files = expand_inputs([path])
        if not files:
            raise MediaError("no video files found there", path)
        indexer = self.indexer if progress is None else Indexer(self.store, self.models, self.indexer.opts,
                                                                progress=progress)
        with self.lock:
            results = [indexer.index(f).as_dict() for f in files]
        if len(results) == 1 and results[0]["status"] == "failed":
            raise VqaError(results[0]["error"] or "indexing failed", results[0]["path"])
        return {"results": results, "failed": sum(r["status"] == "failed" for r in results)}

    # -- search and ask -------------------------------------------------------------------------------
    def search(self, query: str, video: str | None = None, top: int = 5) -> dict:
        from pipelines.ask import search_library, search_moments

        if not query.strip():
            raise VqaError("empty query")
        with self.lock:
            if video:
                return jsonable(search_moments(self.store, self.models, video, query, top=top, indexer=self.indexer))
            return jsonable(search_library(self.store, self.models, query, top=top))

    def ask(self, video: str, question: str, options: list[str] | None = None, *, frames: int = 8,
            seed: int = 0, zoom_rounds: int = 2) -> dict:
        from pipelines.ask import Asker, AskOptions

        if not question.strip():
            raise VqaError("empty question")
        opts = AskOptions(k=frames, seed=seed, zoom_rounds=zoom_rounds)
        with self.lock:
            return jsonable(Asker(self.store, self.models, opts, indexer=self.indexer).ask(video, question,
                                                                                             options or []))

    # -- what the index holds about one video ---------------------------------------------------------
    def _video(self, ref: str) -> dict:
        video = self.store.find_video(ref)
        if video:
            return video
        if os.path.exists(ref):
            raise NotIndexedError("not indexed (call the index tool first)", ref)
        raise MediaError("no such file (and no indexed video by that name)", ref)

    def _file(self, video: dict) -> str | None:
        for p in [video["path"], *self.store.video_paths(video["id"])]:
            if p and os.path.isfile(p):
                return p
        return None

    def text(self, video: str, start: float = 0.0, end: float | None = None,
             sources: list[str] | None = None) -> dict:
        """The timed lines (speech, on-screen text, scene captions) that overlap [start, end]."""
        sources = list(sources or TEXT_SOURCES)
        bad = [s for s in sources if s not in TEXT_SOURCES]
        if bad:
            raise VqaError(f"unknown text source '{bad[0]}' (choose from {', '.join(TEXT_SOURCES)})")
        with self.lock:
            v = self._video(video)
            end = float(v["duration"] or 0.0) if end is None else float(end)
            if end < start:
                raise VqaError(f"end ({end}) is before start ({start})")
            lines, missing = [], []
            for src in sources:
                run = self.store.latest_run(v["id"], _RUN_OF_SOURCE[src])
                if not run:
                    missing.append(src)
                    continue
                random_caps = src == "caption" and json.loads(run["stats"] or "{}").get("random_weights")
                for r in self.store.texts(run["key"]):
                    if r["source"] == src and r["end"] >= start and r["start"] <= end:
                        lines.append({"source": src, "start": round(r["start"], 3), "end": round(r["end"], 3),
                                      "text": r["text"], **({"random_weights": True} if random_caps else {})})
            lines.sort(key=lambda r: (r["start"], r["source"]))
            return {"video": v["path"], "video_id": v["id"], "start": start, "end": end, "lines": lines,
                    "not_indexed": missing}

    def scenes(self, video: str) -> dict:
        with self.lock:
            v = self._video(video)
            srun = self.store.latest_run(v["id"], "scenes")
            if not srun:
                raise NotIndexedError("scenes not indexed yet (call the index tool)", v["path"])
            crun = self.store.latest_run(v["id"], "captions")
            caps = {c["scene_idx"]: c["text"] for c in self.store.captions(crun["key"])} if crun else {}
            random_caps = bool(crun and json.loads(crun["stats"] or "{}").get("random_weights"))
            rows = [{"scene": s["idx"] + 1, "start": round(s["start"], 3), "end": round(s["end"], 3),
                     "caption": caps.get(s["idx"])} for s in self.store.scenes(srun["key"])]
            return {"video": v["path"], "video_id": v["id"], "duration": v["duration"],
                    "captions_random_weights": random_caps, "scenes": rows}

    def frames(self, video: str, times: list[float], max_pixels: int = DEFAULT_FRAME_PIXELS) -> list[FrameImage]:
        """The frames a sequential decode shows at ``times``, sized so that together they hold at most
        ``max_pixels`` pixels; from the index's thumbnails when the file is gone."""
        from PIL import Image

        from pipelines.ask import frames_run
        from pipelines.stages.media import probe, read_frame_at

        if not times:
            raise VqaError("no times given")
        if len(times) > MAX_FRAMES_PER_CALL:
            raise VqaError(f"{len(times)} times: at most {MAX_FRAMES_PER_CALL} frames per call")
        if max_pixels < 32 * 32:
            raise VqaError(f"max_pixels {max_pixels} is too small (at least {32 * 32})")
        with self.lock:
            v = self._video(video)
            duration = float(v["duration"] or 0.0)
            for t in times:
                if not 0.0 <= t <= duration + 1e-3:
                    raise VqaError(f"time {t} s is outside the video (0 to {duration:.2f} s)", v["path"])
            path = self._file(v)
            out = []
            if path:
                info = probe(path)
                w, _ = frame_size(info.width, info.height, max_pixels // len(times))
                for t in times:
                    im = Image.fromarray(read_frame_at(path, float(t), width=w, info=info))
                    out.append(FrameImage(float(t), im.width, im.height, _jpeg(im), "video"))
                return out
            run = frames_run(self.store, v, self.models)
            jpegs = self.store.frame_jpegs(run["key"], [float(t) for t in times])
            for t in times:
                im = Image.open(io.BytesIO(jpegs[float(t)])).convert("RGB")
                w, h = frame_size(im.width, im.height, max_pixels // len(times))
                im = im.resize((w, h)) if (w, h) != im.size else im
                out.append(FrameImage(float(t), im.width, im.height, _jpeg(im), "thumbnail"))
            return out

    # -- the report -----------------------------------------------------------------------------------
    def report(self, video: str, question: str | None = None, options: list[str] | None = None,
               output: str | None = None, *, frames: int = 8, seed: int = 0) -> dict:
        from pipelines.ask import AskOptions
        from pipelines.report import build_report, write_report

        with self.lock:
            data = build_report(self.store, self.models, video, question, options or [],
                                AskOptions(k=frames, seed=seed), indexer=self.indexer)
            out = Path(output) if output else self._default_report_path(data.video["path"], question)
            html, png = write_report(data, out)
        res = {"video": data.video["path"], "report": str(html), "plot": str(png) if png else None,
               "bytes": html.stat().st_size}
        if data.answer is not None:
            res["answer"] = jsonable(data.answer["answer"])
        return res

    def _default_report_path(self, video_path: str, question: str | None) -> Path:
        from pipelines.config import vqa_home

        folder = self.reports_dir or vqa_home() / "reports"
        stem = Path(video_path).stem
        n = 1
        while (folder / f"{stem}-{n}.html").exists():
            n += 1
        return folder / f"{stem}-{n}.html"

    # -- the server itself ----------------------------------------------------------------------------
    def info(self) -> dict:
        prof = self.models.profile
        return {"profile": prof.name, "models": {"clip": prof.clip, "captioner": prof.captioner,
                                                 "answerer": prof.answerer, "transcriber": prof.transcriber,
                                                 "ocr": prof.ocr, "text_embedder": prof.text_embedder},
                "loaded": self.models.loaded(), "loads": dict(LOADS), "database": str(self.store.path)}


def _jpeg(im) -> bytes:
    buf = io.BytesIO()
    im.save(buf, format="JPEG", quality=85)
    return buf.getvalue()
