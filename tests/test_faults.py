"""Storage faults and concurrent removal: every command answers in one line, nothing is lost or left over.

Faults are real: a full database is SQLite's own page limit (``PRAGMA max_page_count``, set through
``Store.max_page_count``), a read-only file or folder is made so for real (``chattr +i`` as root, who
ignores file modes; ``chmod`` otherwise), corruption is bytes written over the file, and the removal
races a real ``vqa index`` process held at a known point by the ``VQA_TEST_PAUSE_AT`` hook. Each case
checks: one line on stderr, the exit code, no traceback, and a database that is unchanged (or equal to
an uninterrupted run's) with ``PRAGMA integrity_check`` ok and no orphan rows.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sqlite3
import subprocess
from pathlib import Path

import pytest

from index.store import Store
from tests.test_concurrency import (
    _assert_done_runs_have_their_rows,
    _assert_same_content,
    _content,
)
from tests.test_robustness import build_tiny_models, integrity, small_video, vqa_cmd, vqa_env

TINY = ["--profile", "tiny"]


# -- helpers ---------------------------------------------------------------------------------------------
def one_line(res, code: int, *needles: str) -> str:
    """The command failed (or warned) in exactly one stderr line, with this exit code, no traceback."""
    assert "Traceback" not in res.stdout + res.stderr
    lines = res.stderr.strip().splitlines()
    assert res.exit_code == code and len(lines) == 1, (res.exit_code, res.stderr)
    for n in needles:
        assert n in lines[0], lines[0]
    return lines[0]


def dump(db: Path) -> list[str]:
    """The database's logical content, read without writing anything."""
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return list(conn.iterdump())
    finally:
        conn.close()


def consistent(db: Path) -> None:
    assert integrity(db) == "ok"
    store = Store(db)
    try:
        assert store.orphan_counts() == dict.fromkeys(store.orphan_counts(), 0)
        assert not list(store.db.query("select * from claims"))
    finally:
        store.close()
    _assert_done_runs_have_their_rows(db)


@contextlib.contextmanager
def read_only(*paths: Path):
    """Make files / folders read-only for this very process (root included), then writable again."""
    root = os.geteuid() == 0
    done = []
    try:
        for p in paths:
            if root:
                if subprocess.run(["chattr", "+i", str(p)], capture_output=True).returncode != 0:
                    pytest.skip("chattr +i is not available here (root ignores file modes)")
            else:
                p.chmod(0o555 if p.is_dir() else 0o444)
            done.append(p)
        yield
    finally:
        for p in reversed(done):
            if root:
                subprocess.run(["chattr", "-i", str(p)], check=True)
            else:
                p.chmod(0o755 if p.is_dir() else 0o644)


@pytest.fixture(scope="module")
def built_models(models_home) -> Path:
    build_tiny_models()
    return models_home


@pytest.fixture(scope="module")
def media(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("faults-media")
    return {"a": small_video(folder / "a.mp4", 40, durations=(1.0, 1.2)),
            "b": small_video(folder / "b.mp4", 41, durations=(1.0, 1.2))}


@pytest.fixture(scope="module")
def reference(media, built_models, tmp_path_factory) -> Path:
    """A database with video a indexed, uninterrupted (tiny profile, captions included)."""
    from typer.testing import CliRunner

    from vqa_cli.app import app

    db = tmp_path_factory.mktemp("faults-ref") / "vqa.db"
    res = CliRunner().invoke(app, ["index", str(media["a"]), *TINY, "--db", str(db)], catch_exceptions=False)
    assert res.exit_code == 0, res.stderr
    return db


@pytest.fixture
def indexed(reference, tmp_path) -> Path:
    """A private copy of the reference database, in its own folder."""
    folder = tmp_path / "dbdir"
    folder.mkdir()
    shutil.copy(reference, folder / "vqa.db")
    return folder / "vqa.db"


# -- disk full ---------------------------------------------------------------------------------------------
def test_disk_full_while_indexing_fails_in_one_line_and_the_rerun_completes(cli, media, reference, tmp_path,
                                                                            monkeypatch):
    db = tmp_path / "full.db"
    Store(db).close()  # the schema only
    pages = sqlite3.connect(db).execute("PRAGMA page_count").fetchone()[0]
    monkeypatch.setattr(Store, "max_page_count", pages + 2)  # room for the video's row and a run or two
    res = cli("index", str(media["a"]), *TINY, db_path=db)
    one_line(res, 1, f"error: {db}: the disk is full", "database or disk is full", "run the command again")
    consistent(db)
    runs = [r for r in Store(db).db.query("select stage, status from runs")]
    assert runs and all(r["status"] in ("done", "failed") for r in runs)  # never running, never half-done

    monkeypatch.setattr(Store, "max_page_count", None)  # space again: the rerun finishes the rest
    res = cli("index", str(media["a"]), *TINY, db_path=db)
    assert res.exit_code == 0, res.stderr
    consistent(db)
    _assert_same_content(_content(db), _content(reference))


def test_full_database_still_answers_reads_and_says_what_was_not_written(cli, indexed, media, monkeypatch):
    pages = sqlite3.connect(indexed).execute("PRAGMA page_count").fetchone()[0]
    monkeypatch.setattr(Store, "max_page_count", pages)
    assert cli("ls", db_path=indexed).exit_code == 0
    assert cli("scenes", str(media["a"]), db_path=indexed).exit_code == 0
    res = cli("index", str(media["b"]), *TINY, db_path=indexed)
    one_line(res, 1, "the disk is full")
    consistent(indexed)
    store = Store(indexed)
    done = {r["video_id"] for r in store.db.query("select video_id from runs where status = 'done'")}
    store.close()
    assert len(done) == 1  # video a's runs only: nothing of b was marked done



# -- read-only file, folder ---------------------------------------------------------------------------
READERS = [("ls",), ("scenes", "{a}"), ("search", "{a}", "red"), ("log",), ("log", "{a}")]
WRITERS = [("index", "{b}", *TINY), ("rm", "{a}"), ("gc",)]


@pytest.mark.parametrize("what", ["file", "folder"])
def test_read_only_database_reads_work_and_writes_say_so_in_one_line(what, cli, indexed, media):
    before = dump(indexed)
    target = indexed if what == "file" else indexed.parent
    fmt = {"a": str(media["a"]), "b": str(media["b"])}
    with read_only(target):
        for args in READERS:
            res = cli(*[a.format(**fmt) for a in args], db_path=indexed)
            assert res.exit_code == 0 and "Traceback" not in res.stderr, (args, res.stderr)
        assert "a.mp4" in cli("ls", db_path=indexed).stdout
        for args in WRITERS:
            res = cli(*[a.format(**fmt) for a in args], db_path=indexed)
            one_line(res, 1, f"error: {indexed}: is open read-only", "use --db elsewhere")
    assert dump(indexed) == before
    consistent(indexed)


def test_read_only_folder_without_wal_files_is_read_immutable(cli, indexed, media):
    conn = sqlite3.connect(indexed)
    conn.execute("PRAGMA journal_mode = DELETE")  # no -wal / -shm beside it, none creatable
    conn.close()
    with read_only(indexed.parent):
        res = cli("scenes", str(media["a"]), "--json", db_path=indexed)
        assert res.exit_code == 0 and len(json.loads(res.stdout)["scenes"]) == 2
    conn = sqlite3.connect(indexed)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.close()
    with read_only(indexed.parent):
        res = cli("ls", "--json", db_path=indexed)
        assert res.exit_code == 0 and len(json.loads(res.stdout)) == 1
    assert sorted(p.name for p in indexed.parent.iterdir()) == ["vqa.db"]


def test_read_only_home_without_a_database(cli, media, tmp_path, monkeypatch):
    home = tmp_path / "ro-home"
    home.mkdir()
    monkeypatch.setenv("VQA_HOME", str(home))
    with read_only(home):
        res = cli("ls", with_db=False)
        assert res.exit_code == 0 and res.stdout == "" and res.stderr == ""
        one_line(cli("scenes", "x.mp4", with_db=False), 1, "no database yet")
        one_line(cli("index", str(media["a"]), *TINY, with_db=False), 1,
                 f"error: {home}: cannot create the database here: the folder is not writable", "VQA_HOME")
    assert list(home.iterdir()) == []


# -- corruption ----------------------------------------------------------------------------------------------
def test_damaged_header_every_command_says_so_in_one_line_and_doctor_tells(cli, indexed, media):
    raw = bytearray(indexed.read_bytes())
    raw[:16] = b"not a database!!"
    indexed.write_bytes(bytes(raw))
    fmt = {"a": str(media["a"]), "b": str(media["b"])}
    for args in [*READERS, *WRITERS, ("transcript", "{a}")]:
        res = cli(*[a.format(**fmt) for a in args], db_path=indexed)
        one_line(res, 1, f"{indexed}: is not a SQLite database", "vqa doctor")
    assert indexed.read_bytes() == bytes(raw)
    res = cli("doctor", "--json", *TINY, db_path=indexed)
    check = next(c for c in json.loads(res.stdout) if c["name"] == "database")
    assert res.exit_code == 1 and check["ok"] is False and "is not a SQLite database" in check["detail"]


def test_garbage_in_the_middle_is_found_at_open_and_doctor_prints_the_whole_report(cli, indexed, media):
    conn = sqlite3.connect(indexed)
    conn.execute("PRAGMA journal_mode = DELETE")
    conn.close()
    raw = bytearray(indexed.read_bytes())
    mid = (len(raw) // 2) // 4096 * 4096
    raw[mid:mid + 4096] = bytes((i * 7 + 13) % 251 for i in range(4096))
    indexed.write_bytes(bytes(raw))
    fmt = {"a": str(media["a"]), "b": str(media["b"])}
    for args in [("ls",), ("scenes", "{a}"), ("rm", "{a}"), ("gc",)]:
        res = cli(*[a.format(**fmt) for a in args], db_path=indexed)
        one_line(res, 1, f"{indexed}: the database is damaged", "vqa doctor")
    assert indexed.read_bytes() == bytes(raw)
    res = cli("doctor", "--json", *TINY, db_path=indexed)
    detail = next(c for c in json.loads(res.stdout) if c["name"] == "database")["detail"]
    try:  # SQLite's own words: its report, or the error that stopped it
        sqlite_says = "; ".join(r[0] for r in sqlite3.connect(indexed).execute("PRAGMA integrity_check(100)"))
    except sqlite3.DatabaseError as e:
        sqlite_says = str(e)
    assert res.exit_code == 1 and sqlite_says != "ok" and sqlite_says.replace("\n", "; ") in detail


# -- locked beyond the timeout, a read-only mount, and VQA_DEBUG ------------------------------------------
def test_locked_beyond_the_timeout_is_one_line(cli, indexed, media, monkeypatch):
    import index.store

    monkeypatch.setattr(index.store, "BUSY_TIMEOUT_S", 0.2)  # instead of a minute
    before = dump(indexed)
    holder = sqlite3.connect(indexed)
    holder.execute("BEGIN IMMEDIATE")  # another writer that does not let go
    try:
        assert cli("ls", db_path=indexed).exit_code == 0  # readers are not blocked (WAL)
        one_line(cli("rm", str(media["a"]), db_path=indexed), 1, f"error: {indexed}: still locked by another "
                 "process", "run the command again when the other `vqa` has finished")
    finally:
        holder.rollback()
        holder.close()
    assert dump(indexed) == before


def test_read_only_mount(indexed, media, tmp_path):
    """A real read-only bind mount, where the system allows one (a private mount namespace)."""
    folder = indexed.parent
    script = (f"mount --bind -o ro {folder} {folder} && mount -o remount,bind,ro {folder} && "
              'exec "$@"')

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(["unshare", "-m", "sh", "-c", script, "sh", *vqa_cmd(*args, "--db", str(indexed))],
                              env=vqa_env(tmp_path / "home"), capture_output=True, text=True, timeout=120)

    if shutil.which("unshare") is None or "mount" in run("ls").stderr:
        pytest.skip("no private read-only mount here (unshare -m needs CAP_SYS_ADMIN)")
    before = dump(indexed)
    res = run("scenes", str(media["a"]), "--json")
    assert res.returncode == 0 and len(json.loads(res.stdout)["scenes"]) == 2, res.stderr
    res = run("rm", str(media["a"]))
    assert res.returncode == 1 and "Traceback" not in res.stderr
    assert res.stderr.strip().splitlines() == [f"error: {indexed}: is open read-only (the file, its folder or its "
                                               "mount is not writable): make them writable, or use --db elsewhere"]
    assert dump(indexed) == before


def test_vqa_debug_shows_the_traceback_before_the_line(cli, indexed, monkeypatch):
    raw = bytearray(indexed.read_bytes())
    raw[:16] = b"not a database!!"
    indexed.write_bytes(bytes(raw))
    quiet = cli("ls", db_path=indexed)
    monkeypatch.setenv("VQA_DEBUG", "1")
    loud = cli("ls", db_path=indexed)
    assert loud.exit_code == quiet.exit_code == 1
    assert "Traceback" in loud.stderr and "DatabaseCorrupt" in loud.stderr
    assert loud.stderr.strip().splitlines()[-1] == quiet.stderr.strip()
