"""The SQLite store: one embedded file, schema by append-only named migrations, safe for many processes.

Every cached result belongs to a *run*: (video fingerprint, stage, model fingerprint, canonical params)
hashed into a key. A run is ``running`` while its rows are written in short transactions and becomes
``done`` in one final transaction; rows of a run that never finished (a killed process) are dropped
and the stage is redone, so a reader only ever trusts ``done`` runs.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import sqlite_utils

from .errors import (
    AmbiguousVideo,
    DatabaseReadOnly,
    DatabaseUnavailable,
    StoreError,
    VideoGone,
    storage_error,
)
from .keys import canonical, fingerprint_file, from_blob, now, pid_alive, run_key, to_blob
from .opening import BUSY_TIMEOUT_S, connect, disconnect, integrity_report, quick_check, writable
from .rows import StageRows
from .schema import migrations

__all__ = ["BUSY_TIMEOUT_S", "Store", "StoreError", "VideoGone", "canonical", "fingerprint_file", "from_blob",
           "integrity_report", "migrations", "now", "pid_alive", "run_key", "to_blob"]
# Claims held by threads of this process: (database, video id) -> thread ident.
_THREAD_CLAIMS: dict[tuple[str, str], int] = {}
_THREAD_CLAIMS_LOCK = threading.Lock()
WRITE_WAIT_FACTOR = 5  # a writer waits this many busy timeouts for the write lock before giving up
RUN_TABLES = ("scenes", "frames", "captions", "texts", "text_vectors", "probe_frames", "frame_windows")  # stage rows, keyed by run_key


class Store(StageRows):
    """Storage only: no models, no ffmpeg. Open with ``Store(path)``; migrations apply at open. Faults of
    SQLite and the file system are raised as :class:`StoreError` (one line: file, cause, what to do)."""

    max_page_count: int | None = None  # SQLite's page limit for this process's connections (tests: a full disk)

    def __init__(self, path: str | Path, *, readonly: bool | None = False, check: bool = True):
        """``readonly``: False opens read-write (migrations apply), True read-only (``mode=ro``), None
        read-write where the file and its folder are writable and read-only elsewhere. ``check`` runs the
        cheap health check (header, budgeted quick check); a damaged file raises DatabaseCorrupt."""
        self.path = Path(path)
        self._lock = threading.RLock()
        self._matrices: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        self.host = socket.gethostname()
        memory = str(path) == ":memory:"
        try:
            if not memory and readonly is not True:
                self.path.parent.mkdir(parents=True, exist_ok=True)
            if readonly is None:
                readonly = not memory and not writable(self.path)
                if readonly and not self.path.exists():
                    raise DatabaseReadOnly(self.path.parent, "cannot create the database here: the folder is "
                                                             "not writable", "set VQA_HOME or --db to a writable place")
            self.readonly = bool(readonly)
            conn = connect(self.path, readonly=self.readonly)
            self.db = sqlite_utils.Database(conn)
            try:
                self._setup(check and not memory)
            except BaseException:
                disconnect(conn)
                raise
        except (sqlite3.Error, OSError) as e:
            mapped = storage_error(e, self.path, busy_timeout_s=BUSY_TIMEOUT_S)
            if mapped is None:
                raise
            raise mapped from e

    def _setup(self, check: bool) -> None:
        self.db.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
        if check:
            quick_check(self.db.conn, self.path)
        if self.readonly:
            pending = migrations.pending(self.db)
            if pending and len(pending) == len(migrations._migrations):
                raise DatabaseUnavailable(self.path, "no database yet", "run `vqa index VIDEO` first")
            if pending:
                raise DatabaseReadOnly(self.path, "was written by an older vqa and must be upgraded, which needs "
                                                  "write access", "run any `vqa` command on it once where it is "
                                                  "writable")
            return
        with contextlib.suppress(sqlite3.OperationalError):
            self.db.enable_wal()
        self.db.execute("PRAGMA synchronous = NORMAL")
        self.db.execute("PRAGMA foreign_keys = ON")
        if self.max_page_count:
            self.db.execute(f"PRAGMA max_page_count = {int(self.max_page_count)}")
        self._migrate()

    def _migrate(self) -> None:
        """Apply pending migrations under an exclusive file lock: one process migrates, others wait.
        (Some sqlite-utils DDL helpers commit on their own, so a SQLite transaction cannot fence them.)"""
        import fcntl

        if not migrations.pending(self.db):
            return
        if str(self.path) == ":memory:":  # a private in-memory store: nobody to wait for
            migrations.apply(self.db)
            return
        with open(str(self.path) + ".lock", "a+") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                migrations.apply(self.db)
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def close(self) -> None:
        disconnect(self.db.conn)

    # -- transactions -------------------------------------------------------------------------------
    @contextlib.contextmanager
    def write(self) -> Iterator[sqlite_utils.Database]:
        """A short write transaction that takes the write lock up front (BEGIN IMMEDIATE): readers
        never need to upgrade a lock mid-transaction, so concurrent writers wait instead of failing.
        A storage fault (full, read-only, damaged, locked) rolls it back and raises StoreError."""
        try:
            with self._transaction() as db:
                yield db
        except sqlite3.Error as e:
            mapped = storage_error(e, self.path, busy_timeout_s=BUSY_TIMEOUT_S * WRITE_WAIT_FACTOR)
            if mapped is None:
                raise
            raise mapped from e

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[sqlite_utils.Database]:
        if self.readonly:
            raise DatabaseReadOnly(self.path, "is open read-only (the file, its folder or its mount is not "
                                              "writable)", "make them writable, or use --db elsewhere")
        with self._lock:
            conn = self.db.conn
            if conn.in_transaction:
                with self.db.atomic():
                    yield self.db
                return
            deadline = time.monotonic() + BUSY_TIMEOUT_S * WRITE_WAIT_FACTOR
            while True:
                try:
                    conn.execute("BEGIN IMMEDIATE")
                    break
                except sqlite3.OperationalError as e:
                    if "locked" not in str(e) and "busy" not in str(e) or time.monotonic() > deadline:
                        raise
                    time.sleep(0.05)
            try:
                yield self.db
            except BaseException:
                if conn.in_transaction:
                    with contextlib.suppress(sqlite3.Error):
                        conn.execute("ROLLBACK")
                raise
            else:
                conn.execute("COMMIT")

    # -- videos -------------------------------------------------------------------------------------
    def lookup_path(self, path: str) -> str | None:
        """The video id for a path whose size and mtime are unchanged since it was last seen."""
        st = os.stat(path)
        rows = list(self.db.query(
            "select video_id from video_paths where path = ? and size = ? and mtime_ns = ?",
            [os.path.abspath(path), st.st_size, st.st_mtime_ns]))
        return rows[0]["video_id"] if rows else None

    def upsert_video(self, video_id: str, path: str, info: dict[str, Any]) -> None:
        st = os.stat(path)
        apath = os.path.abspath(path)
        with self.write() as db:
            existing = db["videos"].count_where("id = ?", [video_id])
            row = {k: info.get(k) for k in ("duration", "fps", "width", "height", "codec", "rotation",
                                             "audio_codec")}
            row.update(id=video_id, path=apath, size=st.st_size, has_audio=int(bool(info.get("has_audio"))),
                       updated_at=now())
            if not existing:
                row["created_at"] = now()
            db["videos"].upsert(row, pk="id")
            db["video_paths"].upsert({"path": apath, "video_id": video_id, "size": st.st_size,
                                      "mtime_ns": st.st_mtime_ns, "seen_at": now()}, pk="path")

    def get_video(self, video_id: str) -> dict[str, Any] | None:
        rows = list(self.db.query("select * from videos where id = ?", [video_id]))
        return rows[0] if rows else None

    def video_paths(self, video_id: str) -> list[str]:
        return [r["path"] for r in self.db.query(
            "select path from video_paths where video_id = ? order by seen_at desc", [video_id])]

    def find_video(self, ref: str) -> dict[str, Any] | None:
        """A video by path (as seen before), fingerprint, or unique fingerprint prefix."""
        apath = os.path.abspath(ref)
        rows = list(self.db.query(
            "select v.* from videos v join video_paths p on p.video_id = v.id where p.path = ?", [apath]))
        if rows:
            return rows[0]
        if os.path.isfile(ref):
            vid = self.lookup_path(ref) or fingerprint_file(ref)
            return self.get_video(vid)
        return self._by_prefix(ref)

    def _by_prefix(self, ref: str) -> dict[str, Any] | None:
        """A video whose fingerprint starts with ``ref`` (at least 4 hex digits, taken literally: no
        wildcards); AmbiguousVideo when several do."""
        prefix = ref.lower()
        if len(prefix) < 4 or any(c not in "0123456789abcdef" for c in prefix):
            return None
        rows = list(self.db.query("select * from videos where substr(id, 1, ?) = ? order by created_at",
                                  [len(prefix), prefix]))
        if len(rows) > 1:
            raise AmbiguousVideo(ref, rows)
        return rows[0] if rows else None

    def list_videos(self) -> list[dict[str, Any]]:
        return list(self.db.query("select * from videos order by created_at"))

    def delete_video(self, video_id: str) -> int:
        with self.write() as db:
            keys = [r["key"] for r in db.query("select key from runs where video_id = ?", [video_id])]
            self._delete_run_rows(keys)
            db.execute("delete from runs where video_id = ?", [video_id])
            db.execute("delete from answers where video_id = ?", [video_id])
            db.execute("delete from video_paths where video_id = ?", [video_id])
            db.execute("delete from claims where video_id = ?", [video_id])
            return db.execute("delete from videos where id = ?", [video_id]).rowcount

    def forget_path(self, path: str) -> None:
        with self.write() as db:
            db.execute("delete from video_paths where path = ?", [path])

    # -- claims: one process (and one thread in it) indexes a given video at a time ---------------
    def _claim_key(self, video_id: str) -> tuple[str, str]:
        return (str(self.path.resolve()) if str(self.path) != ":memory:" else str(id(self)), video_id)

    def try_claim(self, video_id: str) -> bool:
        me = threading.get_ident()
        with _THREAD_CLAIMS_LOCK:  # threads of one process share a pid: fence them here
            owner = _THREAD_CLAIMS.get(self._claim_key(video_id))
            if owner is not None and owner != me:
                return False
            with self.write() as db:
                rows = list(db.query("select pid, host from claims where video_id = ?", [video_id]))
                if rows:
                    r = rows[0]
                    same = r["pid"] == os.getpid() and r["host"] == self.host
                    if not same and (r["host"] != self.host or pid_alive(r["pid"])):
                        return False
                db["claims"].upsert({"video_id": video_id, "pid": os.getpid(), "host": self.host,
                                     "claimed_at": now()}, pk="video_id")
            _THREAD_CLAIMS[self._claim_key(video_id)] = me
            return True

    def release_claim(self, video_id: str) -> None:
        with _THREAD_CLAIMS_LOCK:
            if _THREAD_CLAIMS.get(self._claim_key(video_id)) != threading.get_ident():
                return
            with self.write() as db:
                db.execute("delete from claims where video_id = ? and pid = ? and host = ?",
                           [video_id, os.getpid(), self.host])
            del _THREAD_CLAIMS[self._claim_key(video_id)]

    # -- runs -----------------------------------------------------------------------------------------
    def get_run(self, key: str) -> dict[str, Any] | None:
        rows = list(self.db.query("select * from runs where key = ?", [key]))
        return rows[0] if rows else None

    def run_done(self, key: str) -> bool:
        run = self.get_run(key)
        return bool(run and run["status"] == "done")

    def start_run(self, key: str, video_id: str, stage: str, model: str, model_fp: str,
                  params: dict[str, Any]) -> None:
        """Begin (or restart) a run: rows left by an unfinished earlier attempt are dropped. VideoGone
        when the video is no longer in the database (removed while being indexed)."""
        with self.write() as db:
            if not db.execute("select 1 from videos where id = ?", [video_id]).fetchone():
                raise VideoGone(video_id)
            self._delete_run_rows([key])
            db["runs"].upsert({"key": key, "video_id": video_id, "stage": stage, "model": model,
                               "model_fp": model_fp, "params": canonical(params), "status": "running",
                               "pid": os.getpid(), "host": self.host, "started_at": now(),
                               "finished_at": None, "seconds": None, "stats": None, "error": None}, pk="key")

    def finish_run(self, key: str, *, stats: dict[str, Any] | None = None,
                   rows: dict[str, Iterable[dict[str, Any]]] | None = None) -> None:
        """Write the last rows and mark the run done, in one transaction, which first checks that the run
        is still running and its video still exists: a video removed meanwhile (`vqa rm`) loses what this
        run wrote and VideoGone is raised; nothing is marked done for it."""
        gone = None
        with self.write() as db:
            run = self.get_run(key)
            alive = run is not None and bool(db.execute("select 1 from videos where id = ?",
                                                        [run["video_id"]]).fetchone())
            if not alive or run["status"] != "running":
                if run is not None and not alive:
                    self._delete_run_rows([key])
                    db.execute("delete from runs where key = ?", [key])
                gone = run["video_id"] if run else key
            else:
                for table, items in (rows or {}).items():
                    db[table].insert_all(items)
                db["runs"].update(key, {"status": "done", "finished_at": now(), "seconds": now() - run["started_at"],
                                        "stats": json.dumps(stats or {})})
        if gone is not None:
            raise VideoGone(gone)

    def fail_unfinished(self, video_id: str, error: str) -> None:
        """Mark this process's still-running runs of a video failed (their rows are dropped on restart)."""
        with self.write() as db:
            db.execute("update runs set status = 'failed', finished_at = ?, error = ? where video_id = ? "
                       "and status = 'running' and pid = ? and host = ?",
                       [now(), error, video_id, os.getpid(), self.host])

    def purge_unfinished(self) -> int:
        """Drop the rows of runs that will never finish (failed, or running in a process that is gone);
        the runs themselves stay on record. Returns how many rows were dropped."""
        with self.write() as db:
            keys = [r["key"] for r in db.query("select key, status, pid, host from runs where status != 'done'")
                    if r["status"] == "failed" or (r["host"] == self.host and not pid_alive(r["pid"]))]
            before = db.conn.total_changes
            self._delete_run_rows(keys)
            return db.conn.total_changes - before

    def fail_run(self, key: str, error: str) -> None:
        with self.write() as db:
            db["runs"].update(key, {"status": "failed", "finished_at": now(), "error": error})

    def add_rows(self, table: str, items: Iterable[dict[str, Any]]) -> None:
        """Rows of running runs (each item has its ``run_key``); VideoGone when a run is no longer
        running (its video was removed meanwhile), and nothing is written."""
        items = list(items)
        with self.write() as db:
            for key in {it["run_key"] for it in items}:
                row = db.execute("select status, video_id from runs where key = ?", [key]).fetchone()
                if row is None or row[0] != "running":
                    raise VideoGone(row[1] if row else key)
            db[table].insert_all(items)

    def abandon_unfinished(self, video_id: str, error: str) -> None:
        """After a storage fault: this process's running runs of a video are failed and their rows dropped
        (best effort: the fault may forbid even that; a later run restarts them anyway)."""
        with self.write() as db:
            keys = [r["key"] for r in db.query("select key from runs where video_id = ? and status = 'running' "
                                               "and pid = ? and host = ?", [video_id, os.getpid(), self.host])]
            self._delete_run_rows(keys)
            db.execute(f"update runs set status = 'failed', finished_at = ?, error = ? where key in "
                       f"({','.join('?' * len(keys))})", [now(), error, *keys])

    def _delete_run_rows(self, keys: list[str]) -> None:
        for key in keys:
            for table in RUN_TABLES:
                self.db.execute(f"delete from [{table}] where run_key = ?", [key])
            self.db.execute("delete from text_vectors where text_run = ?", [key])

    def purge_orphans(self) -> int:
        """Drop everything whose video or run is gone: runs of removed videos, stage rows of missing runs,
        sentence vectors of missing text runs, answers, paths and claims of removed videos. Returns how
        many rows were dropped."""
        sql = ["delete from runs where video_id not in (select id from videos)",
               *(f"delete from [{t}] where run_key not in (select key from runs)" for t in RUN_TABLES),
               "delete from text_vectors where text_run not in (select key from runs)",
               *(f"delete from [{t}] where video_id not in (select id from videos)"
                 for t in ("answers", "video_paths", "claims"))]
        with self.write() as db:
            return sum(db.execute(s).rowcount for s in sql)  # rows deleted, not the FTS triggers' work

    def orphan_counts(self) -> dict[str, int]:
        """How many rows purge_orphans would drop, per table (all 0 in a consistent database)."""
        q = {"runs": "select count(*) from runs where video_id not in (select id from videos)",
             **{t: f"select count(*) from [{t}] where run_key not in (select key from runs)" for t in RUN_TABLES},
             "text_vectors (text run)": "select count(*) from text_vectors where text_run not in (select key from runs)",
             **{t: f"select count(*) from [{t}] where video_id not in (select id from videos)"
                for t in ("answers", "video_paths", "claims")}}
        return {name: self.db.execute(sql).fetchone()[0] for name, sql in q.items()}

    def latest_run(self, video_id: str, stage: str) -> dict[str, Any] | None:
        rows = list(self.db.query(
            "select * from runs where video_id = ? and stage = ? and status = 'done' "
            "order by finished_at desc limit 1", [video_id, stage]))
        return rows[0] if rows else None

    def runs_for(self, video_id: str) -> list[dict[str, Any]]:
        return list(self.db.query("select * from runs where video_id = ? order by started_at", [video_id]))

    def integrity(self) -> str:
        """SQLite's whole integrity report: "ok", or every problem it found, joined with "; "."""
        rows = self.db.execute("PRAGMA integrity_check(100)").fetchall()
        return "; ".join(str(r[0]).replace("\n", "; ") for r in rows) or "ok"
