"""The registry of backends, filled from the ``vqa.backends`` entry-point group: vqa's own backends are
declared in its ``pyproject.toml`` exactly as another package declares its own.

An entry point names a ``Backend`` (or a list of them)::

    [project.entry-points."vqa.backends"]
    siglip = "vqa_siglip:BACKEND"

A spec string (what ``--clip``, ``--captioner``, ``--whisper``, ``--answerer`` and the profiles hold)
resolves in one place, ``resolve(kind, spec)``:
1. ``NAME`` or ``NAME:TARGET`` where NAME is a backend of that kind -> that backend, with TARGET;
2. otherwise the first backend of that kind that claims the spec (third-party backends are asked first);
3. otherwise the kind's default backend (the one declared ``default=True``), with the whole spec.
The backend's loader then finds the model (hub id, local folder, checkpoint + config, pip-packaged
weights: ``locate.py``) and ``identify`` gives its fingerprint without loading it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pipelines.backends.contracts import KINDS
from pipelines.errors import ModelError, UsageError, VqaError

GROUP = "vqa.backends"


@dataclass(frozen=True)
class Backend:
    kind: str  # one of contracts.KINDS
    name: str  # the NAME in ``NAME:TARGET`` specs
    load: Callable[..., Any]  # load(target, **options) -> a model implementing the kind's contract
    identify: Callable[..., str] | None = None  # identify(target, **options) -> fingerprint, without loading
    claims: Callable[[str], bool] | None = None  # whether a bare spec is this backend's
    default: bool = False  # the kind's fallback for specs nobody claims
    random_weights: bool = False  # built with random weights: every output says so
    description: str = ""
    check: Callable[[str], str | None] | None = None  # check(target) -> None when present, else why not
    reads_frames: bool = True  # an answerer that reads the frames (False: text-only, it reads the timed lines)

    def missing(self, target: str) -> str | None:
        """None when the model is here (nothing to download), else why not, in words."""
        if self.random_weights:
            return None
        if self.check is not None:
            return self.check(target)
        from pipelines.backends.locate import check_target

        return check_target(target)

    def fingerprint(self, target: str, **options: Any) -> str:
        if self.identify is not None:
            return self.identify(target, **options)
        from pipelines.backends.locate import identify_target

        return identify_target(self.kind, target, **options)


_BACKENDS: dict[tuple[str, str], Backend] = {}
_ORIGIN: dict[tuple[str, str], str] = {}  # (kind, name) -> the distribution that registered it
_lock = threading.RLock()
_loaded = False


def register(backend: Backend, *, origin: str = "") -> None:
    if backend.kind not in KINDS:
        raise UsageError(f"backend {backend.name!r}: unknown kind {backend.kind!r} (one of {', '.join(KINDS)})")
    with _lock:
        _BACKENDS[(backend.kind, backend.name)] = backend
        _ORIGIN[(backend.kind, backend.name)] = origin


def unregister(kind: str, name: str) -> None:
    with _lock:
        _BACKENDS.pop((kind, name), None)
        _ORIGIN.pop((kind, name), None)


def _load_entry_points() -> None:
    global _loaded
    with _lock:
        if _loaded:
            return
        _loaded = True
        from importlib.metadata import entry_points

        for ep in entry_points(group=GROUP):
            try:
                obj = ep.load()
            except Exception as e:  # noqa: BLE001 - a broken plugin must not break vqa: it is skipped, and said
                import warnings

                warnings.warn(f"vqa backend {ep.name!r} ({ep.value}) failed to load: {e}", stacklevel=2)
                continue
            origin = ep.dist.name if getattr(ep, "dist", None) else ""
            for b in obj if isinstance(obj, list | tuple) else [obj]:
                if (b.kind, b.name) not in _BACKENDS:  # registered by hand first: that one wins
                    register(b, origin=origin)
        # the older answerer-only group, kept for plugins written against it
        for ep in entry_points(group="vqa.answerers"):
            if ("answerer", ep.name) not in _BACKENDS:
                register(Backend("answerer", ep.name, ep.load()), origin=ep.dist.name if ep.dist else "")


def backends(kind: str | None = None) -> list[Backend]:
    _load_entry_points()
    with _lock:
        items = list(_BACKENDS.values())
    return [b for b in items if kind is None or b.kind == kind]


def origin(backend: Backend) -> str:
    return _ORIGIN.get((backend.kind, backend.name), "")


def resolve(kind: str, spec: str) -> tuple[Backend, str]:
    """(backend, target) for a spec of one kind: see the module docstring."""
    if not spec:
        raise UsageError(f"no {kind} model named")
    mine = backends(kind)
    by_name = {b.name: b for b in mine}
    if spec in by_name:
        return by_name[spec], ""
    prefix, sep, target = spec.partition(":")
    if sep and prefix in by_name:
        return by_name[prefix], target
    ordered = sorted(mine, key=lambda b: (origin(b) == "vqa", b.default))  # third-party claims first
    for b in ordered:
        if b.claims is not None and b.claims(spec):
            return b, spec
    for b in mine:
        if b.default:
            return b, spec
    raise ModelError(f"no {kind} backend for {spec!r}: use one of {', '.join(sorted(by_name))}")


def load(kind: str, spec: str, **options: Any) -> Any:
    """Load the model a spec names, with its fingerprint and random-weights label filled in."""
    backend, target = resolve(kind, spec)
    try:
        model = backend.load(target, **options)
    except (VqaError, KeyboardInterrupt, MemoryError):
        raise
    except Exception as e:  # noqa: BLE001 - any loader's failure (a file that is no weights, a model asking to
        # run its own code, a missing tokenizer) is one line naming the model, never a traceback
        raise ModelError(load_failure(kind, spec, target, e)) from e
    if backend.identify is not None or not getattr(model, "fingerprint", ""):
        model.fingerprint = backend.fingerprint(target, **options)  # the same identity the cache keys use
    if backend.random_weights:
        model.random_weights = True
    if not getattr(model, "name", ""):
        model.name = spec
    return model


def load_failure(kind: str, spec: str, target: str, e: BaseException) -> str:
    import json
    import os

    lines = [ln.strip() for ln in str(e).strip().splitlines() if ln.strip()]
    why = lines[0] if lines else type(e).__name__
    config = os.path.join(os.path.expanduser(target), "config.json") if target else ""
    try:
        with open(config) as f:
            if json.load(f).get("auto_map"):
                why = "the model asks to run its own code (auto_map in config.json), which vqa never does"
    except (OSError, ValueError):
        pass
    weights = [p for p in target.split("@") if p.endswith((".pt", ".pth", ".bin", ".ckpt", ".safetensors"))
               and os.path.isfile(p)]
    if "weights_only" in why or "Unpickl" in type(e).__name__ or "pickle" in why.lower() or weights:
        short = "torch.load with weights_only refused it" if "weights_only" in why else why[:120]
        why = f"not a weights file that loads safely ({short})"
    return f"cannot load {kind} '{spec}': {why[:300]}"


def identify(kind: str, spec: str | None, **options: Any) -> str:
    """A model's fingerprint without loading it (hashing its files at most once: ``identity.py``)."""
    if not spec:
        return "none"
    backend, target = resolve(kind, spec)
    return backend.fingerprint(target, **options)


def status(kind: str, spec: str | None) -> tuple[str, str]:
    """("present" | "random" | "missing" | "unknown", detail) for `vqa doctor`, without loading anything."""
    if not spec:
        return "none", "-"
    try:
        backend, target = resolve(kind, spec)
    except (ModelError, UsageError) as e:
        return "unknown", str(e)
    if backend.random_weights:
        return "random", f"{spec} (built locally, random weights)"
    why = backend.missing(target)
    return ("missing", f"{spec}: {why}") if why else ("present", spec)


def is_random(kind: str, spec: str | None) -> bool:
    if not spec:
        return False
    try:
        return resolve(kind, spec)[0].random_weights
    except (ModelError, UsageError):
        return False
