"""Small helpers shared by the model adapters: device choice, fingerprints, hub behaviour."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable


def hub_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on")


_HUB_CHECKED = False


def offline_if_hub_unreachable() -> None:
    """With HF_HUB_OFFLINE unset, check once per process (3 s at most) that the hub answers; when it does
    not, go offline for this process, so that a model missing from the cache fails at once instead of
    retrying every file for ~25 s."""
    global _HUB_CHECKED
    if _HUB_CHECKED or hub_offline():
        return
    _HUB_CHECKED = True
    import socket
    from urllib.parse import urlparse

    url = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
    try:
        socket.create_connection((url.hostname or "huggingface.co", url.port or 443), timeout=3).close()
    except OSError:
        os.environ["HF_HUB_OFFLINE"] = "1"
        os.environ["VQA_HUB_UNREACHABLE"] = "1"
        try:
            from huggingface_hub import constants

            constants.HF_HUB_OFFLINE = True
        except ImportError:  # pragma: no cover
            pass


def offline_reason() -> str:
    if os.environ.get("VQA_HUB_UNREACHABLE"):
        return "the model hub cannot be reached"
    return "HF_HUB_OFFLINE is set"


def quiet_hub() -> None:
    """Fail fast instead of hanging on an unreachable hub, and keep library progress bars off stderr."""
    import logging

    offline_if_hub_unreachable()
    logging.getLogger("huggingface_hub").setLevel(logging.ERROR)
    os.environ.setdefault("HF_HUB_ETAG_TIMEOUT", "5")
    os.environ.setdefault("HF_HUB_DOWNLOAD_TIMEOUT", "10")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    try:
        from transformers.utils import logging as tlog

        tlog.set_verbosity_error()
        tlog.disable_progress_bar()
    except ImportError:  # pragma: no cover
        pass


def pick_device(device: str | None = None) -> str:
    if device:
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def files_fingerprint(name: str, files: Iterable[str | os.PathLike]) -> str:
    """A stable identity for a set of files: their names and whole content (hashed once each, remembered by
    path, size and mtime: ``identity.weights_digest``)."""
    from pipelines.backends.identity import content_identity

    h = hashlib.blake2b(digest_size=8)
    h.update(name.encode())
    h.update(content_identity(sorted(str(p) for p in files)).encode())
    return h.hexdigest()


def packaged_folder(kind: str, name: str, packaged: dict[str, tuple[str, str]], marker: str) -> str:
    """The ``model/`` folder inside a pip package that carries real weights (found without importing
    the package). ``packaged`` maps a name to (module, distribution); ``marker`` is a file it must hold."""
    import importlib.util
    from pathlib import Path

    from pipelines.errors import ModelError

    if name not in packaged:
        raise ModelError(f"no packaged {kind} {name!r}; packaged: {', '.join(packaged)}")
    module, dist = packaged[name]
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.origin:
        raise ModelError(f"{kind} {name!r} is not installed: pip install {dist} (or pass a model folder)")
    folder = Path(spec.origin).parent / "model"
    if not (folder / marker).is_file():
        raise ModelError(f"{kind} {name!r}: {folder} has no {marker}; reinstall {dist}")
    return str(folder)
