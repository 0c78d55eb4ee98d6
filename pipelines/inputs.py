"""Expand what users pass to `vqa index`: files, folders (recursive, video extensions), globs, stdin."""

from __future__ import annotations

import glob
import os
from collections.abc import Iterable, Iterator
from typing import TextIO

from pipelines.stages.media import VIDEO_EXTENSIONS


def read_stdin_paths(stream: TextIO, nul: bool = False) -> list[str]:
    data = stream.read()
    parts = data.split("\0") if nul else data.splitlines()
    return [p for p in (x.strip("\r\n") if not nul else x for x in parts) if p]


def _walk(folder: str, pattern: str | None) -> Iterator[str]:
    for root, dirs, files in os.walk(folder, followlinks=False):
        dirs.sort()
        for name in sorted(files):
            full = os.path.join(root, name)
            if pattern:
                if glob.fnmatch.fnmatch(name, pattern):  # type: ignore[attr-defined]
                    yield full
            elif _looks_like_video(full):
                yield full


def _looks_like_video(path: str) -> bool:
    ext = os.path.splitext(path)[1].lower()
    if ext not in VIDEO_EXTENSIONS:
        return False
    if ext == ".ts":  # MPEG transport stream or TypeScript? A TS packet starts with the sync byte 0x47.
        if not os.path.isfile(path):  # a pipe would block the read: let indexing report what it is
            return True
        try:
            with open(path, "rb") as f:
                head = f.read(189)
        except OSError:
            return True
        return len(head) > 188 and head[0] == 0x47 and head[188] == 0x47
    return True


def expand_inputs(items: Iterable[str], *, pattern: str | None = None) -> list[str]:
    """Files as given (even with a non-video extension: probing will say what they are), folders
    walked recursively for video extensions (or ``pattern``), globs expanded; order kept, duplicates
    dropped. Paths that exist nowhere are kept so that they are reported as missing."""
    out: list[str] = []
    seen: set[str] = set()

    def add(p: str) -> None:
        key = os.path.abspath(p)
        if key not in seen:
            seen.add(key)
            out.append(p)

    for item in items:
        if os.path.isdir(item) and os.path.splitext(item)[1].lower() not in VIDEO_EXTENSIONS:
            for p in _walk(item, pattern):
                add(p)
        elif not os.path.exists(item) and glob.has_magic(item):
            matches = sorted(glob.glob(item, recursive=True))
            if not matches:
                add(item)
            for p in matches:
                if os.path.isdir(p):
                    for q in _walk(p, pattern):
                        add(q)
                else:
                    add(p)
        else:
            add(item)
    return out
