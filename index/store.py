"""The SQLite store: one embedded file, schema by append-only named migrations, safe for many processes.

Every cached result belongs to a *run*: (video fingerprint, stage, model fingerprint, canonical params)
hashed into a key. A run is ``running`` while its rows are written in short transactions and becomes
``done`` in one final transaction; rows of a run that never finished (a killed process) are dropped
and the stage is redone, so a reader only ever trusts ``done`` runs.
"""

from __future__ import annotations

import contextlib
import hashlib
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
from sqlite_utils.migrations import Migrations

migrations = Migrations("vqa")
BUSY_TIMEOUT_S = 60.0
# Claims held by threads of this process: (database, video id) -> thread ident.
_THREAD_CLAIMS: dict[tuple[str, str], int] = {}
_THREAD_CLAIMS_LOCK = threading.Lock()


@migrations(name="001_core")
def _m001(db: sqlite_utils.Database) -> None:
    db["videos"].create(
        {"id": str, "path": str, "size": int, "duration": float, "fps": float, "width": int, "height": int,
         "codec": str, "rotation": int, "has_audio": int, "audio_codec": str, "created_at": float,
         "updated_at": float},
        pk="id",
    )
    db["video_paths"].create(
        {"path": str, "video_id": str, "size": int, "mtime_ns": int, "seen_at": float}, pk="path",
        foreign_keys=[("video_id", "videos", "id")],
    )
    db["video_paths"].create_index(["video_id"])
    db["runs"].create(
        {"key": str, "video_id": str, "stage": str, "model": str, "model_fp": str, "params": str,
         "status": str, "pid": int, "host": str, "started_at": float, "finished_at": float,
         "seconds": float, "stats": str, "error": str},
        pk="key",
    )
    db["runs"].create_index(["video_id", "stage"])
    db["scenes"].create(
        {"run_key": str, "idx": int, "start": float, "end": float, "rep_t": float, "rep_jpeg": bytes},
        pk=("run_key", "idx"),
    )
    db["frames"].create(
        {"run_key": str, "idx": int, "t": float, "embedding": bytes, "jpeg": bytes},
        pk=("run_key", "idx"),
    )
    db["captions"].create(
        {"run_key": str, "scene_idx": int, "start": float, "end": float, "text": str},
        pk=("run_key", "scene_idx"),
    )
    db["claims"].create({"video_id": str, "pid": int, "host": str, "claimed_at": float}, pk="video_id")
    db["errors"].create(
        {"id": int, "path": str, "video_id": str, "stage": str, "message": str, "created_at": float}, pk="id",
    )
    db["errors"].create_index(["path"])
    db["answers"].create(
        {"id": int, "video_id": str, "created_at": float, "question": str, "options": str, "answer": str,
         "choice": str, "keyframes": str, "evidence": str, "settings": str, "timings": str, "trace": str},
        pk="id",
    )
    db["answers"].create_index(["video_id"])


@migrations(name="002_text_channels")
def _m002(db: sqlite_utils.Database) -> None:
    # Timed text of every channel (speech, on-screen text, captions), one row per line, searchable by
    # FTS5 and by sentence embeddings.
    db["texts"].create(
        {"run_key": str, "idx": int, "video_id": str, "source": str, "start": float, "end": float,
         "text": str, "confidence": float, "box": str},
        pk=("run_key", "idx"),
    )
    db["texts"].create_index(["video_id", "source"])
    db["texts"].enable_fts(["text"], create_triggers=True, tokenize="porter")
    # Sentence embeddings of those lines, keyed by the embedding run and the text run they embed.
    db["text_vectors"].create(
        {"run_key": str, "text_run": str, "idx": int, "embedding": bytes}, pk=("run_key", "text_run", "idx"),
    )


def now() -> float:
    return time.time()


def canonical(params: dict[str, Any]) -> str:
    """Canonical JSON of a stage's parameters (sorted keys, no spaces): part of every cache key."""
    return json.dumps(params, sort_keys=True, separators=(",", ":"), default=str)


def run_key(video_id: str, stage: str, model_fp: str, params: dict[str, Any]) -> str:
    raw = "\x1f".join([video_id, stage, model_fp, canonical(params)])
    return hashlib.blake2b(raw.encode(), digest_size=16).hexdigest()


def fingerprint_file(path: str, *, chunk: int = 1 << 16, samples: int = 16) -> str:
    """Content identity: size plus a hash of evenly spaced chunks (fast on hour-long files)."""
    size = os.path.getsize(path)
    h = hashlib.blake2b(digest_size=16)
    h.update(str(size).encode())
    with open(path, "rb") as f:
        if size <= chunk * samples:
            h.update(f.read())
        else:
            for i in range(samples):
                f.seek((size - chunk) * i // (samples - 1))
                h.update(f.read(chunk))
    return h.hexdigest()


def to_blob(vec: np.ndarray) -> bytes:
    return np.ascontiguousarray(vec, dtype="<f4").tobytes()


def from_blob(blob: bytes) -> np.ndarray:
    return np.frombuffer(blob, dtype="<f4")


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class Store:
    """Storage only: no models, no ffmpeg. Open with ``Store(path)``; migrations apply at open."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        if str(path) != ":memory:":
            self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(str(path), timeout=BUSY_TIMEOUT_S, check_same_thread=False)
        self.db = sqlite_utils.Database(conn)
        self._lock = threading.RLock()
        self._matrices: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        self.host = socket.gethostname()
        self.db.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
        with contextlib.suppress(sqlite3.OperationalError):
            self.db.enable_wal()
        self.db.execute("PRAGMA synchronous = NORMAL")
        self.db.execute("PRAGMA foreign_keys = ON")
        self._migrate()

    def _migrate(self) -> None:
        """Apply pending migrations under an exclusive file lock: one process migrates, others wait.
        (Some sqlite-utils DDL helpers commit on their own, so a SQLite transaction cannot fence them.)"""
        import fcntl

        with open(str(self.path) + ".lock", "a+") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                migrations.apply(self.db)
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def close(self) -> None:
        self.db.close()

    # -- transactions -------------------------------------------------------------------------------
    @contextlib.contextmanager
    def write(self) -> Iterator[sqlite_utils.Database]:
        """A short write transaction that takes the write lock up front (BEGIN IMMEDIATE): readers
        never need to upgrade a lock mid-transaction, so concurrent writers wait instead of failing."""
        with self._lock:
            conn = self.db.conn
            if conn.in_transaction:
                with self.db.atomic():
                    yield self.db
                return
            deadline = time.monotonic() + BUSY_TIMEOUT_S * 5
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
        rows = list(self.db.query("select * from videos where id like ?", [ref + "%"]))
        return rows[0] if len(rows) == 1 else None

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
        """Begin (or restart) a run: rows left by an unfinished earlier attempt are dropped."""
        with self.write() as db:
            self._delete_run_rows([key])
            db["runs"].upsert({"key": key, "video_id": video_id, "stage": stage, "model": model,
                               "model_fp": model_fp, "params": canonical(params), "status": "running",
                               "pid": os.getpid(), "host": self.host, "started_at": now(),
                               "finished_at": None, "seconds": None, "stats": None, "error": None}, pk="key")

    def finish_run(self, key: str, *, stats: dict[str, Any] | None = None,
                   rows: dict[str, Iterable[dict[str, Any]]] | None = None) -> None:
        """Write the last rows and mark the run done, in one transaction."""
        with self.write() as db:
            for table, items in (rows or {}).items():
                db[table].insert_all(items)
            run = self.get_run(key)
            started = run["started_at"] if run else now()
            db["runs"].update(key, {"status": "done", "finished_at": now(), "seconds": now() - started,
                                    "stats": json.dumps(stats or {})})

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
        with self.write() as db:
            db[table].insert_all(items)

    def _delete_run_rows(self, keys: list[str]) -> None:
        for key in keys:
            for table in ("scenes", "frames", "captions", "texts", "text_vectors"):
                self.db.execute(f"delete from [{table}] where run_key = ?", [key])

    def latest_run(self, video_id: str, stage: str) -> dict[str, Any] | None:
        rows = list(self.db.query(
            "select * from runs where video_id = ? and stage = ? and status = 'done' "
            "order by finished_at desc limit 1", [video_id, stage]))
        return rows[0] if rows else None

    def runs_for(self, video_id: str) -> list[dict[str, Any]]:
        return list(self.db.query("select * from runs where video_id = ? order by started_at", [video_id]))

    # -- stage outputs --------------------------------------------------------------------------------
    def scenes(self, key: str) -> list[dict[str, Any]]:
        return list(self.db.query(
            "select idx, start, end, rep_t from scenes where run_key = ? order by idx", [key]))

    def scene_images(self, key: str) -> list[dict[str, Any]]:
        return list(self.db.query(
            "select idx, start, end, rep_t, rep_jpeg from scenes where run_key = ? order by idx", [key]))

    def captions(self, key: str) -> list[dict[str, Any]]:
        return list(self.db.query(
            "select scene_idx, start, end, text from captions where run_key = ? order by scene_idx", [key]))

    def frame_matrix(self, key: str) -> tuple[np.ndarray, np.ndarray]:
        """(times (N,), embeddings (N, D) float32) of a done embedding run, in time order. A done run
        never changes, so a process keeps the last few it read (many questions, one read)."""
        cached = self._matrices.get(key)
        if cached is not None:
            return cached
        run = self.get_run(key)
        out = self._read_frame_matrix(key)
        if run and run["status"] == "done":
            if len(self._matrices) >= 8:
                self._matrices.pop(next(iter(self._matrices)))
            self._matrices[key] = out
        return out

    def _read_frame_matrix(self, key: str) -> tuple[np.ndarray, np.ndarray]:
        times, vecs = [], []
        for r in self.db.query("select t, embedding from frames where run_key = ? order by idx", [key]):
            times.append(r["t"])
            vecs.append(from_blob(r["embedding"]))
        if not vecs:
            return np.zeros(0, dtype=np.float64), np.zeros((0, 0), dtype=np.float32)
        return np.asarray(times, dtype=np.float64), np.stack(vecs).astype(np.float32, copy=False)

    def frame_jpegs(self, key: str, times: Iterable[float]) -> dict[float, bytes]:
        out = {}
        for t in times:
            rows = list(self.db.query(
                "select t, jpeg from frames where run_key = ? order by abs(t - ?) limit 1", [key, t]))
            if rows:
                out[t] = rows[0]["jpeg"]
        return out

    def texts(self, key: str) -> list[dict[str, Any]]:
        return list(self.db.query(
            "select idx, source, start, end, text, confidence, box from texts where run_key = ? order by idx",
            [key]))

    # -- errors and answers -----------------------------------------------------------------------------
    def record_error(self, path: str, message: str, *, video_id: str | None = None,
                     stage: str | None = None) -> None:
        with self.write() as db:
            db["errors"].insert({"path": os.path.abspath(path), "video_id": video_id, "stage": stage,
                                 "message": message, "created_at": now()})

    def clear_errors(self, path: str) -> None:
        with self.write() as db:
            db.execute("delete from errors where path = ?", [os.path.abspath(path)])

    def failed(self) -> list[dict[str, Any]]:
        return list(self.db.query(
            "select path, stage, message, max(created_at) as created_at from errors group by path "
            "order by created_at"))

    def add_answer(self, row: dict[str, Any]) -> int:
        with self.write() as db:
            enc = {k: (json.dumps(v) if isinstance(v, (dict, list)) else v) for k, v in row.items()}
            enc["created_at"] = now()
            return db["answers"].insert(enc).last_pk

    def answers(self, video_id: str | None = None, limit: int = 20) -> list[dict[str, Any]]:
        if video_id:
            q, args = "select * from answers where video_id = ? order by id desc limit ?", [video_id, limit]
        else:
            q, args = "select * from answers order by id desc limit ?", [limit]
        return list(self.db.query(q, args))

    def integrity(self) -> str:
        return next(iter(self.db.execute("PRAGMA integrity_check").fetchone()))
