"""Opening the database: read-write or read-only, and a cheap health check before anything trusts it.

* A damaged header (not "SQLite format 3", an impossible page size) is seen from the first 100 bytes.
* ``PRAGMA quick_check`` runs under a time budget (a timer interrupts it): a database up to ~100 MB is
  checked whole on every open, a larger one as far as the budget goes; damage further in is reported by
  SQLite when a command reaches it (mapped to the same one-line message).
* Read-only opening uses SQLite's ``mode=ro`` URI; a WAL database in a folder where SQLite cannot create
  its shared-memory file is opened ``immutable`` (nothing can change it there anyway).
* POSIX advisory locks belong to a process, and closing *any* descriptor of a file drops every lock the
  process holds on it (SQLite's "How To Corrupt An SQLite Database File", 2.2). So the header is read with
  a descriptor of our own only while this process has no SQLite connection to that file: otherwise a
  second connection (``vqa index --jobs N`` opens one per thread) would silently drop the first one's
  locks, and another process closing the database would take itself for the last one and delete the WAL
  that this process still writes to (its commits then lost to everyone else).
"""

from __future__ import annotations

import os
import sqlite3
import threading
import urllib.parse
from pathlib import Path

from .errors import ADVICE_CORRUPT, DatabaseCorrupt, DatabaseUnavailable, storage_error

BUSY_TIMEOUT_S = 60.0
_OPEN: dict[int, tuple[int, int]] = {}  # id(connection) -> (device, inode) of its database file, while open
_CONNECTING = threading.Lock()  # a header read and the connections opened meanwhile exclude each other
HEADER = b"SQLite format 3\x00"
QUICK_CHECK_S = 0.1  # at most this long per open: ~100 MB of database checked whole on a warm cache


def check_header(path: Path) -> None:
    """Raise DatabaseCorrupt when the file exists but cannot be a SQLite database (cheap: 100 bytes)."""
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        return
    if size == 0:
        return  # a new, empty database
    with open(path, "rb") as f:
        head = f.read(100)
    page = int.from_bytes(head[16:18], "big") if len(head) >= 18 else 0
    page_ok = page == 1 or (512 <= page <= 32768 and page & (page - 1) == 0)
    if len(head) < 100 or head[:16] != HEADER or not page_ok or head[21:24] != b"\x40\x20\x20":
        raise DatabaseCorrupt(path, "is not a SQLite database (its header is damaged, or it is another kind of "
                                    "file)", ADVICE_CORRUPT)


def writable(path: Path) -> bool:
    """Whether SQLite can write here: the file (if any) and its folder (journal, WAL, lock files)."""
    folder = path.parent if str(path.parent) else Path(".")
    if path.exists() and not os.access(path, os.W_OK):
        return False
    return os.access(folder, os.W_OK | os.X_OK)


def _uri(path: Path, *, immutable: bool = False) -> str:
    quoted = urllib.parse.quote(str(path.resolve()))
    return f"file:{quoted}?mode=ro" + ("&immutable=1" if immutable else "")


def _file_key(path: Path) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino


def connect(path: Path, *, readonly: bool) -> sqlite3.Connection:
    """A connection that has read the schema (so a damaged file or a locked folder fails here). Close it
    with :func:`disconnect`."""
    if str(path) == ":memory:":
        return sqlite3.connect(":memory:", timeout=BUSY_TIMEOUT_S, check_same_thread=False)
    if readonly and not path.exists():
        raise DatabaseUnavailable(path, "no database yet", "run `vqa index VIDEO` first")
    with _CONNECTING:
        if _file_key(path) not in _OPEN.values():
            check_header(path)  # no SQLite lock of this process on the file: closing our descriptor drops none
        conn = _connect(path, readonly=readonly)
        _OPEN[id(conn)] = _file_key(path)
    return conn


def disconnect(conn: sqlite3.Connection) -> None:
    """Close a connection from :func:`connect`."""
    with _CONNECTING:
        _OPEN.pop(id(conn), None)
        conn.close()


def _connect(path: Path, *, readonly: bool) -> sqlite3.Connection:
    attempts = [_uri(path), _uri(path, immutable=True)] if readonly else [str(path)]
    for i, target in enumerate(attempts):
        conn = sqlite3.connect(target, uri=readonly, timeout=BUSY_TIMEOUT_S, check_same_thread=False)
        try:
            conn.execute("select count(*) from sqlite_master").fetchone()
            return conn
        except sqlite3.OperationalError as e:
            conn.close()
            if i + 1 < len(attempts) and "unable to open" in str(e):
                continue  # WAL without a writable folder for its -shm file
            raise
        except BaseException:
            conn.close()
            raise
    raise AssertionError("unreachable")  # pragma: no cover


def quick_check(conn: sqlite3.Connection, path: Path, *, budget_s: float = QUICK_CHECK_S) -> None:
    """Raise DatabaseCorrupt when SQLite's quick check finds damage within ``budget_s`` seconds (the check
    runs inside one VM step, so the budget is time: a timer interrupts it; what it reached was fine)."""
    lock, state = threading.Lock(), {"running": True}

    def stop() -> None:
        with lock:
            if state["running"]:
                conn.interrupt()

    timer = threading.Timer(budget_s, stop)
    timer.start()
    try:
        rows = conn.execute("PRAGMA quick_check(5)").fetchall()
    except sqlite3.OperationalError as e:
        if "interrupted" in str(e):
            return  # out of time: nothing wrong found so far
        raise
    except sqlite3.DatabaseError as e:
        raise DatabaseCorrupt(path, f"the database is damaged ({e})", ADVICE_CORRUPT) from e
    finally:
        with lock:
            state["running"] = False
        timer.cancel()
    problems = [str(r[0]).replace("\n", "; ") for r in rows if r[0] != "ok"]
    if problems:
        raise DatabaseCorrupt(path, f"the database is damaged ({problems[0]})", ADVICE_CORRUPT)


def integrity_report(path: Path) -> str:
    """SQLite's whole ``integrity_check`` report ("ok", or every problem it lists, joined with "; "), or
    why the file cannot be checked at all. Read-only; for `vqa doctor`."""
    try:
        conn = connect(path, readonly=True)
    except DatabaseCorrupt as e:
        return e.cause
    except sqlite3.Error as e:
        return str(storage_error(e, path) or e)
    try:
        rows = conn.execute("PRAGMA integrity_check(100)").fetchall()
        return "; ".join(str(r[0]).replace("\n", "; ") for r in rows) or "ok"
    except sqlite3.Error as e:
        return str(e)
    finally:
        disconnect(conn)
