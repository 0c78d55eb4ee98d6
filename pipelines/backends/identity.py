"""A model's identity is what determines its outputs: the content of its weight files.

``weights_digest(path)`` streams a file's whole content through BLAKE2b once and remembers the digest by
(path, size, mtime, inode), in memory and in a small cache under ``$VQA_HOME/cache/weights`` so that a
warm run costs a ``stat`` per file. Two fine-tunes of one architecture, or a checkpoint replaced in
place, get different identities even when their sizes agree; a copy of the same weights elsewhere gets
the same one. ``identity(...)`` combines the digests with what else decides the outputs (the hub
revision, the config, dtype, quantisation) into the fingerprint every cache key uses.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable
from pathlib import Path

SCHEME = "w2"  # bump when the way identities are computed changes: runs keyed by older ones are redone
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".onnx", ".gguf", ".model", ".json", ".txt",
                   ".jinja", ".tiktoken", ".npz", ".msgpack", ".h5")
_MEMO: dict[tuple, str] = {}


def _cache_dir() -> Path:
    from pipelines.config import vqa_home

    return vqa_home() / "cache" / "weights"


def weights_digest(path: str | os.PathLike) -> str:
    """BLAKE2b of a file's whole content, computed once per (path, size, mtime, inode)."""
    real = os.path.realpath(path)
    st = os.stat(real)
    key = (real, st.st_size, st.st_mtime_ns, st.st_ino)
    if key in _MEMO:
        return _MEMO[key]
    name = hashlib.blake2b(repr(key).encode(), digest_size=16).hexdigest()
    cached = _cache_dir() / name
    try:
        digest = cached.read_text().strip()
    except OSError:
        digest = ""
    if len(digest) != 32:
        h = hashlib.blake2b(digest_size=16)
        with open(real, "rb") as f:
            while chunk := f.read(1 << 20):
                h.update(chunk)
        digest = h.hexdigest()
        try:  # best effort: a read-only home only costs the next run a rehash
            cached.parent.mkdir(parents=True, exist_ok=True)
            tmp = cached.with_suffix(f".{os.getpid()}.tmp")
            tmp.write_text(digest)
            os.replace(tmp, cached)
        except OSError:
            pass
    _MEMO[key] = digest
    return digest


def model_files(path: str | os.PathLike) -> list[str]:
    """The files whose content decides a model's outputs: the file itself, or a folder's weight, config and
    tokenizer files (recursively; hidden files and caches skipped)."""
    path = str(path)
    if os.path.isfile(path):
        return [path]
    out = []
    for root, dirs, files in os.walk(path, followlinks=True):
        dirs[:] = sorted(d for d in dirs if not d.startswith((".", "__")))
        out += [os.path.join(root, f) for f in sorted(files)
                if f.endswith(WEIGHT_SUFFIXES) and not f.startswith(".")]
    return out


def content_identity(paths: Iterable[str | os.PathLike]) -> str:
    """One digest over the contents of every model file under ``paths`` (names relative to each root)."""
    h = hashlib.blake2b(digest_size=16)
    for root in paths:
        root = str(root)
        for f in model_files(root):
            rel = os.path.relpath(f, root) if os.path.isdir(root) else ""
            h.update(f"{rel}\0{weights_digest(f)}\n".encode())
    return h.hexdigest()


def identity(kind: str, *, files: Iterable[str | os.PathLike] = (), name: str | None = None,
             revision: str | None = None, **settings) -> str:
    """The fingerprint of a model: its kind, the content of its files (or, for weights vqa never sees as
    files, a name that pins them, with the hub revision), and the settings that change its outputs
    (dtype, quantisation, compute type...)."""
    files = [f for f in files if f]
    parts = {"scheme": SCHEME, "kind": kind,
             "content": content_identity(files) if files else None,
             "name": None if files else name, "revision": revision,
             "settings": {k: v for k, v in sorted(settings.items()) if v is not None}}
    return hashlib.blake2b(json.dumps(parts, sort_keys=True).encode(), digest_size=8).hexdigest()


def hub_snapshot(repo_id: str) -> str | None:
    """The cached snapshot folder of a hub model (its name is the revision), with no network call."""
    try:
        from huggingface_hub import snapshot_download

        path = snapshot_download(repo_id, local_files_only=True)
    except Exception:  # noqa: BLE001 - not cached, not a valid id, or no huggingface_hub: not resolvable here
        return None
    return path if os.path.isdir(path) else None
