"""Moving one video's index between databases: what a worker's scratch store needs before it indexes
(the done runs it must not redo, and the rows the stages still to run read), what it sends back, and
the driver's import of that into the one database it writes.

A worker never touches the main database: it indexes into a private in-memory :class:`~index.store.Store`,
and :func:`export_video` turns the runs it made there into plain rows (``{table: (columns, rows)}``). The
driver's :func:`import_video` writes them with the same keys, in one transaction per video: a video is
in the main database whole, with every run that was done, or not at all.
"""

from __future__ import annotations

from typing import Any

from index.store import RUN_TABLES, Store

Rows = dict[str, tuple[list[str], list[tuple]]]  # table -> (columns, rows)

# The stage rows other stages read: captions read the scenes (their representative frames); textvec reads
# the timed text of speech, on-screen text and captions. Frames are never read by another stage.
_READ_BY_LATER_STAGES = ("scenes", "texts")


def _rows(store: Store, sql: str, args: list[Any]) -> tuple[list[str], list[tuple]]:
    cur = store.db.execute(sql, args)
    return [d[0] for d in cur.description], [tuple(r) for r in cur.fetchall()]


def _marks(n: int) -> str:
    return ",".join("?" * n)


def seed_rows(store: Store, video_id: str, done_keys: list[str]) -> Rows:
    """From the main database: the done runs a worker must skip, and the rows of theirs that the stages
    still to run will read (scenes, timed text). Empty when nothing is done yet."""
    if not done_keys:
        return {}
    marks = _marks(len(done_keys))
    out: Rows = {"videos": _rows(store, "select * from videos where id = ?", [video_id]),
                 "runs": _rows(store, f"select * from runs where key in ({marks})", done_keys)}
    for table in _READ_BY_LATER_STAGES:
        out[table] = _rows(store, f"select * from [{table}] where run_key in ({marks})", done_keys)
    return out


def load_seed(scratch: Store, seed: Rows) -> None:
    """Write what :func:`seed_rows` read into a worker's scratch store."""
    if not seed:
        return
    with scratch.write() as db:
        for table in ("videos", "runs", *_READ_BY_LATER_STAGES):
            cols, rows = seed.get(table, ([], []))
            if rows:
                db.conn.executemany(f"insert or replace into [{table}] ({', '.join(f'[{c}]' for c in cols)}) "
                                    f"values ({_marks(len(cols))})", rows)


def export_video(scratch: Store, video_id: str, path: str, skip_keys: list[str]) -> Rows:
    """What a worker made for one video: its videos and video_paths rows, the runs it ran (done or failed;
    not the seeded ones) and the stage rows of the done ones."""
    import os

    keys = [r["key"] for r in scratch.db.query("select key from runs where video_id = ? and status != 'running'",
                                               [video_id]) if r["key"] not in set(skip_keys)]
    out: Rows = {"videos": _rows(scratch, "select * from videos where id = ?", [video_id]),
                 "video_paths": _rows(scratch, "select * from video_paths where path = ?", [os.path.abspath(path)]),
                 "runs": _rows(scratch, f"select * from runs where key in ({_marks(len(keys))})", keys)}
    done = [r[0] for r in scratch.db.execute(
        f"select key from runs where status = 'done' and key in ({_marks(len(keys))})", keys)]
    dmarks = _marks(len(done))
    for table in RUN_TABLES:
        out[table] = _rows(scratch, f"select * from [{table}] where run_key in ({dmarks})", done)
    return out


def row_count(rows: Rows) -> int:
    return sum(len(r) for _, r in rows.values())


def import_video(store: Store, rows: Rows) -> int:
    """Write a worker's rows into the main database in one transaction; returns the rows written. Each
    run's earlier rows (of an attempt that failed or was killed) are dropped first, as ``start_run`` does;
    a video already known keeps its ``created_at``."""
    written = 0
    with store.write() as db:
        conn = db.conn
        cols, vids = rows.get("videos", ([], []))
        for v in vids:
            row = dict(zip(cols, v))
            old = conn.execute("select created_at from videos where id = ?", [row["id"]]).fetchone()
            if old is not None:
                row["created_at"] = old[0]
            db["videos"].upsert(row, pk="id")
            written += 1
        cols, paths = rows.get("video_paths", ([], []))
        for p in paths:
            db["video_paths"].upsert(dict(zip(cols, p)), pk="path")
            written += 1
        cols, runs = rows.get("runs", ([], []))
        keys = [r[cols.index("key")] for r in runs] if runs else []
        for key in keys:
            for table in RUN_TABLES:
                conn.execute(f"delete from [{table}] where run_key = ?", [key])
            conn.execute("delete from text_vectors where text_run = ?", [key])
        if runs:
            conn.executemany(f"insert or replace into runs ({', '.join(f'[{c}]' for c in cols)}) "
                             f"values ({_marks(len(cols))})", runs)
            written += len(runs)
        for table in RUN_TABLES:
            cols, items = rows.get(table, ([], []))
            if items:
                conn.executemany(f"insert into [{table}] ({', '.join(f'[{c}]' for c in cols)}) "
                                 f"values ({_marks(len(cols))})", items)
                written += len(items)
    return written
