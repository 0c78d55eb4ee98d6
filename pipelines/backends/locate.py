"""Finding models: local folders and hub ids (HF_HUB_OFFLINE honoured, never hanging), and their identity."""

from __future__ import annotations

import hashlib
import json
import os
from typing import Any

from pipelines.errors import ModelError


def _offline() -> bool:
    from pipelines.backends.util import hub_offline

    return hub_offline()


def _looks_like_path(spec: str) -> bool:
    return spec.startswith(("/", "./", "../", "~", "\\")) or os.path.splitdrive(spec)[0] != "" \
        or spec.count("/") > 1 or os.path.exists(spec)


def locate_model(spec: str) -> tuple[str, bool]:
    """(what to pass to from_pretrained, local_files_only). Fails fast with how to provide the model."""
    from pipelines.backends.util import quiet_hub

    quiet_hub()
    path = os.path.expanduser(spec)
    if os.path.isdir(path):
        if not os.path.isfile(os.path.join(path, "config.json")):
            raise ModelError(f"model folder '{spec}' has no config.json (save it with save_pretrained)")
        return path, True
    if os.path.isfile(path):
        raise ModelError(f"'{spec}' is a file: pass the model's folder (with config.json) or a hub id")
    if _looks_like_path(spec):
        raise ModelError(f"model folder '{spec}' does not exist: pass an existing folder or a hub id")
    cached = _hub_snapshot(spec)
    if cached:
        return cached, True
    if _offline():
        raise ModelError(f"model '{spec}' is not a local folder and is not in the hub cache, and HF_HUB_OFFLINE "
                         f"is set: download it once online (huggingface-cli download {spec}) or pass a folder")
    return spec, False


def _hub_snapshot(repo_id: str) -> str | None:
    """The cached snapshot folder of a hub model, without any network call; None if not cached."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HFValidationError

    try:
        path = snapshot_download(repo_id, local_files_only=True)
    except HFValidationError as e:
        raise ModelError(f"'{repo_id}' is neither a folder nor a valid hub id ({e})") from e
    except Exception:  # noqa: BLE001 - any cache miss (the exception types vary by version) means: not cached
        return None
    return path if os.path.isfile(os.path.join(path, "config.json")) else None


def read_config(spec: str) -> dict[str, Any]:
    """The config.json of a folder or hub model (downloading only that file when online)."""
    where, local = locate_model(spec)
    if local:
        with open(os.path.join(where, "config.json")) as f:
            return json.load(f)
    from huggingface_hub import hf_hub_download

    try:
        with open(hf_hub_download(spec, "config.json")) as f:
            return json.load(f)
    except Exception as e:  # noqa: BLE001 - network and hub errors have many types; all mean: not available
        raise ModelError(f"cannot find model '{spec}' on the hub: {first_line(e)}") from e


def model_fingerprint(kind: str, where: str, dtype: str) -> str:
    """Stable across machines: the kind, the weight files' content sample, and the dtype."""
    from pipelines.backends.util import files_fingerprint

    folder = where if os.path.isdir(where) else _hub_snapshot(where)
    if folder:  # by content, not by where the folder lives
        files = [os.path.join(folder, f) for f in sorted(os.listdir(folder))
                 if f.endswith((".json", ".safetensors", ".bin", ".model", ".txt", ".jinja"))]
        content = files_fingerprint(kind, files)
    else:
        content = where
    return hashlib.blake2b(f"{kind}|{content}|{dtype}".encode(), digest_size=8).hexdigest()


def marked_random(where: str) -> bool:
    """True for folders built by ``tiny_vlm`` (random weights), so every output can say so."""
    marker = os.path.join(where, "vqa-tiny.json")
    if not os.path.isfile(marker):
        return False
    with open(marker) as f:
        return bool(json.load(f).get("random_weights"))


def first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


