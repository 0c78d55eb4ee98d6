"""What every command shares: option bundles, opening the store, output, and the one place where our
errors become one-line messages and exit codes (0 ok, 1 an input failed, 2 usage, 130 interrupted)."""

from __future__ import annotations

import contextlib
import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

import typer

DbOpt = Annotated[Path | None, typer.Option("--db", help="Database file (default: $VQA_HOME/vqa.db).",
                                             envvar="VQA_DB", show_default=False)]
ProfileOpt = Annotated[str | None, typer.Option(
    "--profile", "-p", help="Model profile: default, cpu, offline, tiny (or $VQA_PROFILE).", show_default=False)]
JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable JSON on stdout.")]
DeviceOpt = Annotated[str | None, typer.Option("--device", help="cpu, cuda, cuda:1 … (default: cuda if present).")]
ClipOpt = Annotated[str | None, typer.Option(
    "--clip", help="CLIP: open_clip NAME, NAME@TAG, or a model-config JSON (with --clip-pretrained).")]
ClipPretrainedOpt = Annotated[str | None, typer.Option(
    "--clip-pretrained", help="CLIP weights: a pretrained tag or a local checkpoint file.")]
CaptionerOpt = Annotated[str | None, typer.Option("--captioner", help="Captioner: hub id or local folder.")]
AnswererOpt = Annotated[str | None, typer.Option(
    "--answerer", help="Answerer: qwen2.5-vl:ID, llava-onevision:ID, textlm:ID, smollm2-packaged, openai, "
                       "or a hub id / local folder.")]
WhisperOpt = Annotated[str | None, typer.Option(
    "--whisper", help="Speech model: faster-whisper name (large-v3 …), local folder, or packaged:tiny.en.")]


_CONTROL = {c: f"\\x{c:02x}" for c in [*range(0x20), *range(0x7F, 0xA0)]}
_CONTROL.update({ord("\n"): "\\n", ord("\r"): "\\r", ord("\t"): "\\t"})


def show(text: object) -> str:
    """Text for a terminal line: control characters (a newline in a file name) escaped, so one item
    stays one line. JSON output keeps the raw text."""
    return str(text).translate(_CONTROL)


def err(message: str) -> None:
    """One line on stderr (control characters escaped)."""
    typer.echo(show(message), err=True)


def out_json(obj: Any) -> None:
    typer.echo(json.dumps(obj, ensure_ascii=False, default=_default))


def _default(o: Any) -> Any:
    if hasattr(o, "as_dict"):
        return o.as_dict()
    if isinstance(o, Path):
        return str(o)
    try:
        import numpy as np

        if isinstance(o, np.generic):
            return o.item()
        if isinstance(o, np.ndarray):
            return o.tolist()
    except ImportError:  # pragma: no cover
        pass
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def db_path(db: Path | None) -> Path:
    from pipelines.config import default_db_path

    return Path(db) if db else default_db_path()


@contextlib.contextmanager
def open_store(db: Path | None, *, must_exist: bool = False, readonly: bool | None = None) -> Iterator[Any]:
    """The store for one command. ``readonly``: True for commands that only read (``mode=ro``: they work
    on a read-only file, folder or mount); None (default) opens read-write where possible and read-only
    elsewhere, so a write then fails in one line; False insists on read-write. SQLite and file-system
    faults inside the block come out as StoreError naming the database."""
    import sqlite3

    from index.errors import storage_error
    from index.store import Store

    path = db_path(db)
    if (must_exist or readonly) and not path.exists():
        err(f"{path}: no database yet (run `vqa index VIDEO` first)")
        raise typer.Exit(1)
    store = Store(path, readonly=readonly)
    try:
        yield store
    except sqlite3.Error as e:
        mapped = storage_error(e, path)
        if mapped is None:
            raise
        raise mapped from e
    finally:
        with contextlib.suppress(Exception):
            store.close()


def build_models(profile: str | None, *, device: str | None = None, clip: str | None = None,
                 clip_pretrained: str | None = None, captioner: str | None = None, answerer: str | None = None,
                 whisper: str | None = None, api_base: str | None = None, api_model: str | None = None,
                 api_key_env: str = "VQA_API_KEY"):
    from pipelines.backends.profiles import Models, get_profile

    prof = get_profile(profile).with_overrides(clip=clip, captioner=captioner, answerer=answerer,
                                               transcriber=whisper)
    chosen = {"profile": profile or os.environ.get("VQA_PROFILE"), "clip": clip or clip_pretrained,
              "captioner": captioner, "answerer": answerer or api_base, "transcriber": whisper}
    return Models(prof, device=device, clip_pretrained=clip_pretrained, api_base=api_base,
                  api_model=api_model, api_key_env=api_key_env, explicit={k for k, v in chosen.items() if v})


def _debug() -> bool:
    return os.environ.get("VQA_DEBUG", "") not in ("", "0")


def _fail(message: str, code: int) -> typer.Exit:
    """One line on stderr (and, with VQA_DEBUG=1, the traceback before it); the exit to raise."""
    if _debug():
        import traceback

        traceback.print_exc()
    err(f"error: {message}")
    return typer.Exit(code)


@contextlib.contextmanager
def errors_to_exit() -> Iterator[None]:
    """The one place where errors become one line on stderr and an exit code: our errors and storage
    faults (full, read-only, locked, damaged, permission) exit 1, usage errors 2, Ctrl-C 130.
    ``VQA_DEBUG=1`` prints the traceback too."""
    import sqlite3

    from index.errors import AmbiguousVideo, StoreError, storage_error
    from pipelines.errors import UsageError, VqaError

    try:
        yield
    except UsageError as e:
        raise _fail(str(e), 2) from None
    except AmbiguousVideo as e:
        raise _fail(str(e), 2) from None
    except (VqaError, StoreError) as e:
        raise _fail(str(e), 1) from None
    except sqlite3.Error as e:  # outside open_store: no database path to name
        mapped = storage_error(e, None)
        if mapped is None:
            raise
        raise _fail(str(mapped), 1) from None
    except KeyboardInterrupt:
        err("interrupted: finished stages are kept; run the command again to resume")
        raise typer.Exit(130) from None
    except BrokenPipeError:  # `vqa ... | head`
        with contextlib.suppress(Exception):
            sys.stdout = open(os.devnull, "w")  # noqa: SIM115
        raise typer.Exit(0) from None
    except OSError as e:  # a file or folder we were given or write to: full, read-only, missing, denied
        mapped = storage_error(e, None)
        text = str(mapped) if mapped else (f"{e.filename}: {e.strerror}" if e.filename and e.strerror
                                           else e.strerror or str(e))
        raise _fail(text, 1) from None


class StderrProgress:
    """A tqdm bar on stderr per video (seconds of video done, with ETA); silent when stderr is no TTY
    unless forced."""

    def __init__(self, enabled: bool | None = None):
        self.enabled = sys.stderr.isatty() if enabled is None else enabled
        self.bar = None
        self.desc = None

    def __call__(self, desc: str, done: float, total: float) -> None:
        if not self.enabled:
            return
        from tqdm import tqdm

        if self.bar is None or self.desc != desc:
            self.close()
            self.bar = tqdm(total=round(total, 1), desc=desc, unit="s", file=sys.stderr, leave=False,
                            bar_format="{desc}: {percentage:3.0f}%|{bar}| {n:.0f}/{total:.0f} s [{elapsed}<{remaining}]")
            self.desc = desc
        self.bar.n = round(done, 1)
        self.bar.refresh()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
