"""`vqa index`: probe once, decode once, and feed every stage that needs frames from that one pass.

Stages and their cache keys (video fingerprint, stage, model fingerprint, canonical params):
``scenes`` (PySceneDetect), ``frames`` (CLIP embeddings + thumbnails of frames sampled at ``embed_fps``),
``captions`` (one per scene), ``transcript`` (speech), ``ocr`` (on-screen text) and ``textvec``
(sentence embeddings of all timed text). A stage whose key is already ``done`` is skipped; only the
stages whose model or parameters changed run again, and one decode feeds all frame stages that run.
"""

from __future__ import annotations

import contextlib
import io
import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from index.errors import STORAGE_FAULTS, VideoGone
from index.store import Store, fingerprint_file, to_blob
from pipelines.backends.profiles import Models
from pipelines.errors import MediaError, ModelError, VqaError
from pipelines.inputs import check_input
from pipelines.plan import (  # noqa: F401 - the plan lives in plan.py; these names stay importable from here
    STAGES,
    IndexOptions,
    StagePlan,
    latest_stage_status,
    plan_stages,
    spec_fingerprint,
    stage_status,
)
from pipelines.probes import probe_rows
from pipelines.stages.media import SideStream, VideoInfo, check_file, decode, probe
from pipelines.stages.segment import KEEP_FPS, SceneSegmenter
from pipelines.stages.stills import same_picture, to_jpeg

ROWS_PER_COMMIT = 64
MAX_PENDING_FRAMES = 512  # sampled frames held while the CLIP is still loading


@dataclass
class IndexResult:
    path: str
    status: str  # "indexed" | "unchanged" | "failed"
    video_id: str | None = None
    stages_run: list[str] = field(default_factory=list)
    seconds: float = 0.0
    duration: float | None = None
    error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


Progress = Callable[[str, float, float], None]  # (description, done, total) in video seconds


class Cancelled(KeyboardInterrupt):
    """Raised in a worker thread when its batch was interrupted (Ctrl-C reaches the main thread only)."""


def _test_pause(point: str, check_cancel: Callable[[], None]) -> None:
    """Test hook, inert unless ``VQA_TEST_PAUSE_AT=POINT:FILE`` is set: on reaching POINT the indexer
    creates FILE and waits there until it is killed or interrupted (or FILE is deleted: then it goes on),
    so tests can SIGKILL, SIGINT or race it at a known moment. Points: ``probed`` (video probed and claimed, no
    stage started), ``scenes`` (the decode done, scenes computed, run not yet done), ``frames`` (frame
    embeddings committed, their run not yet done), ``captions`` (captions computed, run not yet done),
    ``transcript`` (speech transcribed, run not yet done)."""
    spec = os.environ.get("VQA_TEST_PAUSE_AT")
    if not spec or spec.partition(":")[0] != point:
        return
    marker = spec.partition(":")[2]
    with open(marker, "a"):
        pass
    while os.path.exists(marker):
        check_cancel()
        time.sleep(0.05)


class _Sampler:
    """Passes a consumer the frames of the shared decode that fall on its own, coarser grid."""

    def __init__(self, fps: float):
        self.step = 1.0 / fps
        self.next_t = -1e9

    def take(self, t: float) -> bool:
        if t + 1e-6 >= self.next_t:
            self.next_t = (self.next_t + self.step) if self.next_t > -1e8 else t + self.step
            if self.next_t <= t:  # a gap in the stream: re-anchor
                self.next_t = t + self.step
            return True
        return False


class Indexer:
    """Indexes videos into a store with one set of models (loaded lazily, once per process)."""

    def __init__(self, store: Store, models: Models, opts: IndexOptions | None = None,
                 progress: Progress | None = None, cancel: threading.Event | None = None):
        self.store = store
        self.models = models
        self.opts = opts or IndexOptions()
        self.progress = progress
        self._current: tuple[str, float] | None = None  # (file name, duration) of the video being indexed
        self.cancel = cancel  # set by the batch on Ctrl-C: stop at the next frame or stage

    def _check_cancel(self) -> None:
        if self.cancel is not None and self.cancel.is_set():
            raise Cancelled()

    # -- public -------------------------------------------------------------------------------------
    def index(self, path: str) -> IndexResult:
        t0 = time.monotonic()
        result = IndexResult(path=path, status="failed")
        try:
            self._index(path, result)
            self.store.clear_errors(path)
        except ModelError as e:  # say which profile's model it was, and what the video is indexed with
            self._fail(path, result, self._model_message(e.message, result.video_id))
        except VqaError as e:
            self._fail(path, result, e.message)
        except VideoGone as e:  # `vqa rm` meanwhile: nothing of it was kept, and nothing to record
            result.status, result.error = "failed", e.message
        except STORAGE_FAULTS as e:  # the database, not this file: stop the batch with one line
            if result.video_id:
                with contextlib.suppress(*STORAGE_FAULTS):
                    self.store.abandon_unfinished(result.video_id, str(e))
            raise
        except OSError as e:  # the file vanished or became unreadable while we worked on it
            self._fail(path, result, e.strerror or str(e))
        except Exception as e:  # noqa: BLE001 - one bad file never stops a batch; the cause is told
            self._fail(path, result, f"internal error: {type(e).__name__}: {e}")
        result.seconds = time.monotonic() - t0
        return result

    def _model_message(self, message: str, video_id: str | None) -> str:
        from pipelines.backends.index_models import done_frames_runs, recorded_profile

        name = self.models.profile.name
        message = f"{message} [profile {name}]"
        runs = done_frames_runs(self.store, video_id) if video_id else []
        others = sorted({p for p in (recorded_profile(r) for r in runs) if p and p != name})
        if others:
            message += f"; it is already indexed with profile {others[0]} (pass --profile {others[0]})"
        return message

    def _fail(self, path: str, result: IndexResult, message: str) -> None:
        result.status, result.error = "failed", message
        if result.video_id:  # runs this process left half-done are failed, not "running" forever
            self.store.fail_unfinished(result.video_id, message)
        self.store.record_error(path, message, video_id=result.video_id)

    # -- internals ------------------------------------------------------------------------------------
    def _index(self, path: str, result: IndexResult) -> None:
        profile = self.models.profile
        check_input(path)  # a URL that is no local file, a still image: refused before anything opens it
        check_file(path)
        video_id = self.store.lookup_path(path)
        if video_id:
            video = self.store.get_video(video_id)
            plans = plan_stages(video_id, profile, self.opts, path=path)
            if video and all(self.store.run_done(p.key) for p in plans.values()):
                result.status, result.video_id, result.duration = "unchanged", video_id, video["duration"]
                return
        info = probe(path)
        video_id = fingerprint_file(path)
        result.video_id, result.duration = video_id, info.duration
        self.store.upsert_video(video_id, path, info.as_dict())
        while not self.store.try_claim(video_id):  # another process is indexing this very content
            self._check_cancel()
            time.sleep(0.2)
        try:
            plans = plan_stages(video_id, profile, self.opts, path=path)
            todo = {s: p for s, p in plans.items() if not self.store.run_done(p.key)}
            if not todo:
                result.status = "unchanged"
                return
            _test_pause("probed", self._check_cancel)
            self._run_stages(path, video_id, info, plans, todo, result)
            result.status = "indexed"
        finally:
            self.store.release_claim(video_id)

    def _run_stages(self, path: str, video_id: str, info: VideoInfo, plans: dict[str, StagePlan],
                    todo: dict[str, StagePlan], result: IndexResult) -> None:
        self._current = (os.path.basename(path), float(info.duration or 0.0))
        frame_stages = [s for s in ("scenes", "frames", "ocr") if s in todo]
        # One big model at a time: each step names the models it uses; loading one frees (as the models'
        # policy says) those no running step needs: the CLIP when the captioner loads, and so on.
        if frame_stages:
            with self.models.stage(*(m for s, m in (("frames", "clip"), ("ocr", "ocr")) if s in frame_stages)):
                self._decode_pass(path, video_id, info, todo, frame_stages)
            result.stages_run += frame_stages
        self._check_cancel()
        if "captions" in todo:
            with self.models.stage("captioner"):
                self._captions(video_id, plans["scenes"], todo["captions"])
            result.stages_run.append("captions")
        self._check_cancel()
        if "transcript" in todo:
            with self.models.stage("transcriber"):
                self._transcript(path, video_id, info, todo["transcript"])
            result.stages_run.append("transcript")
        self._check_cancel()
        if "textvec" in todo:
            with self.models.stage("text_embedder"):
                self._textvec(video_id, plans, todo["textvec"])
            result.stages_run.append("textvec")
        if self.progress is not None and self._current:  # the whole video, every stage done
            name, duration = self._current
            self.progress(name, duration, duration)

    def _decode_pass(self, path: str, video_id: str, info: VideoInfo, todo: dict[str, StagePlan],
                     stages: list[str]) -> None:
        profile = self.models.profile
        opts = self.opts
        consumers: list[tuple[_Sampler, Callable[[float, np.ndarray], None]]] = []
        segmenter = loading = scanner = None
        frames_buf: list[list[Any]] = []  # [t, frame, t_end, n]: a picture and the samples it stands for
        frame_idx = [0]  # rows written
        sampled = [0]  # samples they stand for
        key_frames = todo["frames"].key if "frames" in todo else None

        if "frames" in stages:
            # CLIP loads (imports included: seconds) in a thread while ffmpeg starts decoding and the
            # scenes are analysed; sampled frames wait in a bounded buffer until it is ready, and a
            # model that cannot load fails the stage at the first flush.
            loader = ThreadPoolExecutor(max_workers=1, thread_name_prefix="vqa-load")
            loading = loader.submit(self.models.clip)
            if "captions" in todo:  # then the captioner, in the same thread, when it would stay beside the CLIP
                loader.submit(self._load_ahead, "clip", "captioner")
            loader.shutdown(wait=False)

            def flush(final: bool = False) -> None:
                # The last picture stays buffered until the decode ends or the picture changes: the
                # samples after it may still be the same picture, stored once with their time range.
                ready = frames_buf if final else frames_buf[:-1]
                if not ready:
                    return
                if not final and not loading.done() and len(frames_buf) < MAX_PENDING_FRAMES:
                    return
                clip = loading.result()
                vecs = clip.embed_images([f for _, f, _, _ in ready])
                rows = [{"run_key": key_frames, "idx": frame_idx[0] + i, "t": float(t),
                         "embedding": to_blob(v), "jpeg": to_jpeg(f, opts.thumb_width),
                         "t_end": float(t_end) if n > 1 else None, "n": n if n > 1 else None}
                        for i, ((t, f, t_end, n), v) in enumerate(zip(ready, vecs))]
                self.store.add_rows("frames", rows)
                frame_idx[0] += len(rows)
                sampled[0] += sum(n for *_, n in ready)
                del frames_buf[:len(ready)]
                _test_pause("frames", self._check_cancel)

            def on_frame(t: float, f: np.ndarray) -> None:
                if frames_buf and same_picture(frames_buf[-1][1], f):
                    frames_buf[-1][2:] = [t, frames_buf[-1][3] + 1]
                    return
                frames_buf.append([t, f, t, 1])
                if len(frames_buf) > ROWS_PER_COMMIT:
                    flush()

            consumers.append((_Sampler(opts.embed_fps), on_frame))
        if "ocr" in stages:
            scanner = self._ocr_scanner()
            consumers.append((_Sampler(opts.ocr_fps), scanner.feed))
        if "scenes" in stages:
            segmenter = SceneSegmenter(opts.scene, source=path)  # source: cut times refined from the file
            consumers.append((_Sampler(KEEP_FPS), segmenter.keep))  # candidates for each scene's middle frame

        for s in stages:
            p = todo[s]
            self.store.start_run(p.key, video_id, s, p.model, p.model_fp, p.params)
        # The sampled stream runs at the rate its consumers need; the scene analysis reads the small side
        # stream of the same decode instead (its grid at the scene rate, and every frame for the cut windows).
        fps = max(KEEP_FPS if segmenter else 0, opts.embed_fps if loading else 0, opts.ocr_fps if scanner else 0)
        n = 0
        last_t = 0.0
        side = SideStream(opts.scene.width, segmenter.fine if opts.scene.refine else None, fps=opts.scene.fps,
                          sampled=segmenter.analyse, feed_width=opts.scene.fine_width) if segmenter is not None else None
        for t, frame in decode(path, fps=fps, width=profile.decode_width, info=info, side=side):
            self._check_cancel()
            for sampler, consume in consumers:
                if sampler.take(t):
                    consume(t, frame)
            n += 1
            last_t = t
            if self.progress and n % max(1, int(fps)) == 0:  # about once a second of video
                self.progress(os.path.basename(path), min(t, info.duration), info.duration)
        if n == 0:
            raise MediaError("ffmpeg decoded no frames (truncated or corrupt file?)", path)
        if self.progress:
            self.progress(os.path.basename(path), info.duration, info.duration)
        duration = max(info.duration, last_t)
        shots: list[tuple[float, float]] | None = None
        if segmenter is not None:
            scenes = segmenter.finish(duration)
            shots = [(s.start, s.end) for s in scenes]
            _test_pause("scenes", self._check_cancel)
            key = todo["scenes"].key
            rows = [{"run_key": key, "idx": i, "start": s.start, "end": s.end, "rep_t": s.rep_t,
                     "rep_jpeg": s.rep_jpeg}
                    for i, s in enumerate(scenes)]
            self.store.finish_run(key, stats={"scenes": len(rows), "frames_analysed": len(segmenter.times),
                                              "cut_windows_reread": segmenter.reread},
                                  rows={"scenes": rows})
        if loading is not None:
            flush(final=True)
            if shots is None:  # the scenes of an earlier pass
                srun = self.store.latest_run(video_id, "scenes")
                shots = [(r["start"], r["end"]) for r in self.store.scenes(srun["key"])] \
                    if srun and srun["status"] == "done" else []
            probes, probe_stats = probe_rows(self.store, key_frames, path, info, loading.result(), shots,
                                             decode_width=profile.decode_width, thumb_width=opts.thumb_width,
                                             check_cancel=self._check_cancel)
            self.store.finish_run(key_frames, stats={"frames": sampled[0], "stored": frame_idx[0], "dim": None,
                                                     "profile": profile.name,
                                                     "random_weights": loading.result().random_weights,
                                                     **probe_stats},
                                  rows=probes)
        if scanner is not None:
            self._finish_ocr(video_id, todo["ocr"], scanner, duration)

    def _load_ahead(self, loaded: str, stage: str) -> None:
        """Load the model of a later ``stage`` now (behind the decode), when the models' policy keeps the
        ``loaded`` one beside it anyway (small, on the CPU): its imports and weights cost the decode's
        idle moments instead of a wait after it. Any failure is left to the stage itself to report."""
        try:
            if self.models.keeps(loaded):
                getattr(self.models, stage)()
        except Exception:  # noqa: BLE001 - the stage loads it again and says what went wrong
            pass

    def _say(self, what: str, done: float, total: float | None = None) -> None:
        """Progress of a stage after the decode, in words and video seconds (the bar never sits at 100%)."""
        if self.progress is not None and self._current:
            name, duration = self._current
            self.progress(f"{name}: {what}", min(done, total or duration), total or duration)

    def _captions(self, video_id: str, scenes_plan: StagePlan, plan: StagePlan) -> None:
        from PIL import Image

        captioner = self.models.captioner()
        self.store.start_run(plan.key, video_id, "captions", plan.model, plan.model_fp, plan.params)
        scenes = self.store.scene_images(scenes_plan.key)
        with_img = [s for s in scenes if s["rep_jpeg"]]
        frames = [np.asarray(Image.open(io.BytesIO(s["rep_jpeg"])).convert("RGB")) for s in with_img]
        texts: list[str] = []
        step = max(1, int(getattr(captioner, "batch_size", 8) or 8))
        for i in range(0, len(frames), step):  # in batches, saying how far it got (in video seconds)
            self._check_cancel()
            texts += captioner.caption(frames[i:i + step])
            self._say("captioning the scenes", with_img[min(i + step, len(with_img)) - 1]["end"])
        _test_pause("captions", self._check_cancel)
        rows = [{"run_key": plan.key, "scene_idx": s["idx"], "start": s["start"], "end": s["end"], "text": txt}
                for s, txt in zip(with_img, texts)]
        text_rows = [{"run_key": plan.key, "idx": r["scene_idx"], "video_id": video_id, "source": "caption",
                      "start": r["start"], "end": r["end"], "text": r["text"], "confidence": None, "box": None}
                     for r in rows]
        self.store.finish_run(plan.key, stats={"captions": len(rows), "random_weights": captioner.random_weights},
                              rows={"captions": rows, "texts": text_rows})

    # Text channels (speech, on-screen text, their sentence vectors) ------------------------------------
    def _ocr_scanner(self):
        from pipelines.stages.ocr import OcrScanner

        return OcrScanner(self.models.ocr())

    def _finish_ocr(self, video_id: str, plan: StagePlan, scanner, duration: float) -> None:
        intervals = scanner.finish(duration)
        rows = [{"run_key": plan.key, "idx": i, "video_id": video_id, "source": "screen", "start": iv.start,
                 "end": iv.end, "text": iv.text, "confidence": iv.confidence, "box": ",".join(map(str, iv.box))}
                for i, iv in enumerate(intervals)]
        self.store.finish_run(plan.key, stats={"lines": len(rows), **dict(getattr(scanner, "stats", {}))},
                              rows={"texts": rows})

    def _transcript(self, path: str, video_id: str, info: VideoInfo, plan: StagePlan) -> None:
        """Speech (or a .srt/.vtt next to the video, which the transcriber prefers). No audio, silence or
        undecodable audio are recorded as the transcript's status, never as a failure of the video."""
        self.store.start_run(plan.key, video_id, "transcript", plan.model, plan.model_fp, plan.params)
        if self.opts.subtitles:
            from pipelines.stages.transcribe import TranscriptResult, parse_subtitles

            with open(self.opts.subtitles, encoding="utf-8-sig", errors="replace") as f:
                segments = parse_subtitles(f.read())
            result = TranscriptResult("ok" if segments else "silent", segments, None, self.opts.language,
                                      {"source": self.opts.subtitles})
        else:
            transcriber = self.models.transcriber()
            if self.progress is not None:
                transcriber.on_progress = lambda done, total: self._say("transcribing the speech", done, total)
            result = transcriber.transcribe(path, language=self.opts.language,
                                                          has_audio=info.has_audio)
        _test_pause("transcript", self._check_cancel)
        segments, status, error = result.segments, result.status, result.error
        origins = sorted({s.source for s in segments})
        rows = [{"run_key": plan.key, "idx": i, "video_id": video_id, "source": "speech", "start": s.start,
                 "end": s.end, "text": s.text, "confidence": s.confidence, "box": None}
                for i, s in enumerate(segments)]
        self.store.finish_run(plan.key, stats={"status": status, "error": error, "segments": len(rows),
                                               "from": origins, "language": result.language},
                              rows={"texts": rows})

    def _textvec(self, video_id: str, plans: dict[str, StagePlan], plan: StagePlan) -> None:
        embedder = self.models.text_embedder()
        self.store.start_run(plan.key, video_id, "textvec", plan.model, plan.model_fp, plan.params)
        rows = []
        for src in plan.params["sources"]:
            lines = self.store.texts(src)
            if not lines:
                continue
            self._say("embedding what is said and written", max(ln["end"] for ln in lines))
            vecs = embedder.embed_texts([ln["text"] for ln in lines])
            rows += [{"run_key": plan.key, "text_run": src, "idx": ln["idx"], "embedding": to_blob(v)}
                     for ln, v in zip(lines, vecs)]
        self.store.finish_run(plan.key, stats={"vectors": len(rows)}, rows={"text_vectors": rows})

