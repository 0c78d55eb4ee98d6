"""Storage faults explained in one line: the file, the cause, and what to do.

SQLite and the file system report faults as ``sqlite3.Error`` / ``OSError`` with terse texts ("database or
disk is full", "attempt to write a readonly database", "file is not a database"). ``storage_error`` turns
them into a :class:`StoreError` once; the CLI prints it as one line with exit code 1.
"""

from __future__ import annotations

import errno
import sqlite3
from pathlib import Path

# SQLite's primary result codes (the low byte of an extended code).
SQLITE_PERM, SQLITE_BUSY, SQLITE_LOCKED, SQLITE_READONLY = 3, 5, 6, 8
SQLITE_IOERR, SQLITE_CORRUPT, SQLITE_FULL, SQLITE_CANTOPEN, SQLITE_NOTADB = 10, 11, 13, 14, 26

ADVICE_FULL = "free some space (or point --db / VQA_HOME elsewhere) and run the command again; finished work is kept"
ADVICE_READONLY = ("reading commands (ls, scenes, search, log, transcript, ask) still work; to change it, make the "
                   "file and its folder writable or use --db elsewhere")
ADVICE_CORRUPT = "run `vqa doctor` for SQLite's report; restore a backup, or delete the file and index again"


class StoreError(Exception):
    """A storage fault: ``path``, ``cause`` and ``advice`` make one line."""

    kind = "error"

    def __init__(self, path: str | Path | None, cause: str, advice: str = ""):
        super().__init__(cause)
        self.path, self.cause, self.advice = (str(path) if path else None), cause, advice

    def __str__(self) -> str:
        head = f"{self.path}: {self.cause}" if self.path else self.cause
        return f"{head}: {self.advice}" if self.advice else head


class DatabaseFull(StoreError):
    kind = "full"


class DatabaseReadOnly(StoreError):
    kind = "read-only"


class DatabaseLocked(StoreError):
    kind = "locked"


class DatabaseCorrupt(StoreError):
    kind = "corrupt"


class DatabaseUnavailable(StoreError):
    kind = "unavailable"


class VideoGone(Exception):
    """The video was removed (``vqa rm``) while a stage was writing its results: nothing more is written."""

    message = "was removed (`vqa rm`) while being indexed; nothing of it was kept"

    def __init__(self, video_id: str):
        super().__init__(f"{video_id}: {self.message}")
        self.video_id = video_id


class AmbiguousVideo(Exception):
    """A fingerprint prefix that matches several videos."""

    def __init__(self, ref: str, matches: list[dict]):
        listed = ", ".join(f"{m['id'][:12]} ({m.get('path') or '?'})" for m in matches[:6])
        more = f" and {len(matches) - 6} more" if len(matches) > 6 else ""
        super().__init__(f"{ref}: matches {len(matches)} videos: {listed}{more}; give more characters")
        self.ref, self.matches = ref, matches


STORAGE_FAULTS = (StoreError, sqlite3.Error)  # what stops a batch: the database, not one input


def _primary(e: sqlite3.Error) -> int | None:
    code = getattr(e, "sqlite_errorcode", None)
    return code & 0xFF if isinstance(code, int) else None


def storage_error(e: BaseException, path: str | Path | None, *, busy_timeout_s: float = 60.0) -> StoreError | None:
    """The one-line :class:`StoreError` for a SQLite or file-system fault, or None when ``e`` is neither
    (a real bug, left to surface)."""
    if isinstance(e, StoreError):
        return e
    if isinstance(e, sqlite3.Error):
        code, text = _primary(e), str(e)
        low = text.lower()
        if code == SQLITE_FULL or "disk is full" in low:
            return DatabaseFull(path, f"the disk is full ({text})", ADVICE_FULL)
        if code == SQLITE_READONLY or "readonly" in low or "read-only" in low:
            return DatabaseReadOnly(path, f"is read-only ({text})", ADVICE_READONLY)
        if code in (SQLITE_CORRUPT, SQLITE_NOTADB) or "malformed" in low or "not a database" in low:
            return DatabaseCorrupt(path, f"the database is damaged ({text})", ADVICE_CORRUPT)
        if code in (SQLITE_BUSY, SQLITE_LOCKED) or "locked" in low or "busy" in low:
            return DatabaseLocked(path, f"still locked by another process after {busy_timeout_s:.0f} s of waiting ({text})",
                                  "run the command again when the other `vqa` has finished")
        if code == SQLITE_CANTOPEN or "unable to open" in low:
            return DatabaseUnavailable(path, f"cannot be opened ({text})",
                                       "check that it and its folder exist and are readable (and writable to index)")
        if code == SQLITE_PERM:
            return DatabaseReadOnly(path, f"permission denied ({text})", ADVICE_READONLY)
        if code == SQLITE_IOERR or "i/o error" in low:
            return DatabaseUnavailable(path, f"input/output error ({text})", "check the disk and the file system")
        return None
    if isinstance(e, OSError) and e.errno is not None:
        where = e.filename or path
        why = e.strerror or str(e)
        if e.errno in (errno.ENOSPC, errno.EDQUOT):
            return DatabaseFull(where, f"the disk is full ({why})", ADVICE_FULL)
        if e.errno == errno.EROFS:
            return DatabaseReadOnly(where, f"is on a read-only file system ({why})", ADVICE_READONLY)
        if e.errno in (errno.EACCES, errno.EPERM):
            return DatabaseReadOnly(where, f"permission denied ({why})",
                                    "make it readable (and writable to change it), or use --db elsewhere")
        if e.errno == errno.EIO:
            return DatabaseUnavailable(where, f"input/output error ({why})", "check the disk and the file system")
    return None
