"""Finding models: local folders and hub ids (HF_HUB_OFFLINE honoured, never hanging), and their identity."""

from __future__ import annotations

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
    """The cached snapshot folder of a transformers model (one with config.json), without any network call;
    None if not cached; an id that cannot be a hub id is a one-line error."""
    from huggingface_hub.errors import HFValidationError
    from huggingface_hub.utils import validate_repo_id

    from pipelines.backends.identity import hub_snapshot

    try:
        validate_repo_id(repo_id)
    except HFValidationError as e:
        raise ModelError(f"'{repo_id}' is neither a folder nor a valid hub id ({e})") from e
    path = hub_snapshot(repo_id)
    return path if path and os.path.isfile(os.path.join(path, "config.json")) else None


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
    """The identity of a transformers model: the content of a local folder's files, or a cached hub
    model's revision, with the dtype."""
    from pipelines.backends.identity import identity

    if os.path.isdir(where) and not _in_hub_cache(where):
        return identity(kind, files=[where], dtype=dtype)
    folder = where if os.path.isdir(where) else _hub_snapshot(where)
    return identity(kind, name=_hub_repo(folder) or where, revision=os.path.basename(folder) if folder else None,
                    dtype=dtype)


def _in_hub_cache(folder: str) -> bool:
    return os.path.basename(os.path.dirname(os.path.normpath(folder))) == "snapshots"


def _hub_repo(folder: str | None) -> str | None:
    """``models--ORG--NAME/snapshots/REV`` -> ``ORG/NAME``."""
    if not folder or not _in_hub_cache(folder):
        return None
    repo = os.path.basename(os.path.dirname(os.path.dirname(os.path.normpath(folder))))
    return repo.removeprefix("models--").replace("--", "/")


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




# --- identity of a spec, without loading it ---------------------------------------------------------------

OUTPUT_SETTINGS = ("dtype", "compute_type", "quantization")


def identify_target(kind: str, target: str, **options: Any) -> str:
    """The default fingerprint of ``target``: the content of a local file or folder; a cached hub model's
    revision; otherwise the name (weights pinned by name, e.g. a published pretrained tag)."""
    from pipelines.backends.identity import hub_snapshot, identity

    settings = {k: options.get(k) for k in OUTPUT_SETTINGS}
    path = os.path.expanduser(target) if target else ""
    if path and os.path.exists(path):
        return identity(kind, files=[path], **settings)
    snapshot = hub_snapshot(target) if target and target.count("/") == 1 and not _looks_like_path(target) else None
    if snapshot:
        return identity(kind, name=target, revision=os.path.basename(snapshot), **settings)
    return identity(kind, name=target, **settings)


def check_target(target: str) -> str | None:
    """None when a model spec is a local file/folder or a hub model already in the cache, else why not."""
    from pipelines.backends.identity import hub_snapshot

    path = os.path.expanduser(target)
    if path and os.path.exists(path):
        return None
    if _looks_like_path(target):
        return "no such file or folder"
    if hub_snapshot(target):
        return None
    return "not downloaded (not in the local hub cache)"


def absolute_spec(spec: str | None) -> str | None:
    """The spec with its local paths made absolute (``KIND:./folder``, ``cfg.json@weights.pt``), so that a
    spec recorded in the database still names the same files from another working directory."""
    if not spec:
        return spec
    prefix, sep, rest = spec.partition(":")
    if sep and not os.path.exists(spec) and "/" not in prefix and "@" not in prefix:
        fixed = absolute_spec(rest)
        return f"{prefix}:{fixed}" if fixed != rest else spec
    parts = spec.split("@")
    out = [os.path.abspath(os.path.expanduser(p)) if p and os.path.exists(os.path.expanduser(p)) else p
           for p in parts]
    return "@".join(out)
