"""Cache keys and content identity: pure helpers, no database."""

from __future__ import annotations

import hashlib
import json
import os
import time
from typing import Any

import numpy as np


def now() -> float:
    return time.time()


def canonical(params: dict[str, Any]) -> str:
    """Canonical JSON of a stage's parameters (sorted keys, no spaces): part of every cache key."""
    return json.dumps(params, sort_keys=True, separators=(",", ":"), default=str)


def run_key(video_id: str, stage: str, model_fp: str, params: dict[str, Any]) -> str:
    raw = "\x1f".join([video_id, stage, model_fp, canonical(params)])
    return hashlib.blake2b(raw.encode(), digest_size=16).hexdigest()


def fingerprint_file(path: str, *, chunk: int = 1 << 16, samples: int = 16) -> str:
    """Content identity: size plus a hash of evenly spaced chunks (fast on hour-long files)."""
    size = os.path.getsize(path)
    h = hashlib.blake2b(digest_size=16)
    h.update(str(size).encode())
    with open(path, "rb") as f:
        if size <= chunk * samples:
            h.update(f.read())
        else:
            for i in range(samples):
                f.seek((size - chunk) * i // (samples - 1))
                h.update(f.read(chunk))
    return h.hexdigest()


def to_blob(vec: np.ndarray) -> bytes:
    return np.ascontiguousarray(vec, dtype="<f4").tobytes()


def from_blob(blob: bytes) -> np.ndarray:
    return np.frombuffer(blob, dtype="<f4")


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
