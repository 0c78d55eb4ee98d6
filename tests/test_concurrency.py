"""Several `vqa index` processes on one database, and processes killed or interrupted mid-way.

Real separate processes (``python -m vqa_cli.app``) share one ``--db`` and the session's tiny models.
A deterministic stopping point comes from the indexer's ``VQA_TEST_PAUSE_AT=POINT:FILE`` hook: the child
creates FILE at POINT and waits there, and the test then kills it (SIGKILL) or interrupts it (SIGINT).
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from index.store import Store, from_blob
from tests.conftest import jsonl
from tests.test_robustness import ROOT, build_tiny_models, integrity, small_video, vqa_cmd, vqa_env

POINTS = {  # pause point -> stages done before it
    "probed": set(),
    "frames": {"scenes"},
    "captions": {"scenes", "frames"},
}
STAGES = ["scenes", "frames", "captions"]


@pytest.fixture(scope="module")
def built_models(models_home) -> Path:
    build_tiny_models()
    return models_home


@pytest.fixture(scope="module")
def videos(tmp_path_factory) -> list[Path]:
    folder = tmp_path_factory.mktemp("cc-videos")
    return [small_video(folder / f"v{i}.mp4", 30 + i, durations=(1.0, 1.2)) for i in range(6)]


def _runs(db: Path) -> dict[str, dict]:
    store = Store(db)
    try:
        return {r["key"]: r for r in store.db.query("select * from runs")}
    finally:
        store.close()


def _content(db: Path) -> dict:
    """Everything the stages wrote, by run key (keys are content fingerprints: equal across databases)."""
    store = Store(db)
    try:
        q = store.db.query
        return {
            "runs": sorted((r["key"], r["stage"], r["status"]) for r in q("select * from runs")),
            "scenes": [tuple(r.values()) for r in q("select * from scenes order by run_key, idx")],
            "frames": [(r["run_key"], r["idx"], r["t"], r["jpeg"], from_blob(r["embedding"]))
                       for r in q("select * from frames order by run_key, idx")],
            "captions": [tuple(r.values()) for r in q("select * from captions order by run_key, scene_idx")],
            "texts": [tuple(r.values()) for r in q("select * from texts order by run_key, idx")],
        }
    finally:
        store.close()


def _assert_same_content(got: dict, want: dict) -> None:
    for table in ("runs", "scenes", "captions", "texts"):
        assert got[table] == want[table], table
    assert len(got["frames"]) == len(want["frames"]) > 0
    for g, w in zip(got["frames"], want["frames"]):
        assert g[:4] == w[:4]  # same run, index, time and thumbnail
        np.testing.assert_allclose(g[4], w[4], atol=1e-5)  # same embedding


def _assert_done_runs_have_their_rows(db: Path) -> None:
    """A consistent database: every done run's rows are all there, none twice."""
    store = Store(db)
    try:
        for run in store.db.query("select * from runs where status = 'done'"):
            stats = json.loads(run["stats"])
            table, count = {"scenes": ("scenes", "scenes"), "frames": ("frames", "frames"),
                            "captions": ("captions", "captions")}[run["stage"]]
            idx = "scene_idx" if table == "captions" else "idx"
            rows = [r[idx] for r in store.db.query(f"select {idx} from {table} where run_key = ? order by {idx}",
                                                   [run["key"]])]
            assert len(rows) == stats[count] and len(set(rows)) == len(rows), run
    finally:
        store.close()


def _wait_for(marker: Path, proc: subprocess.Popen, log: Path, timeout: float = 240) -> None:
    deadline = time.monotonic() + timeout
    while not marker.exists():
        if proc.poll() is not None:
            pytest.fail(f"child exited ({proc.returncode}) before pausing:\n{log.read_text()[-3000:]}")
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"child never reached its pause point:\n{log.read_text()[-3000:]}")
        time.sleep(0.05)


# -- a second connection in one process -------------------------------------------------------------------
def _in_child(code: str) -> str:
    """Run ``code`` (with Store imported) in another Python process; its stdout."""
    res = subprocess.run([sys.executable, "-c", f"from index.store import Store\n{code}"], cwd=ROOT,
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    return res.stdout.strip()


@pytest.mark.parametrize("second", ["store", "doctor"])
def test_a_second_connection_in_a_process_keeps_the_first_ones_locks(second, tmp_path):
    """POSIX locks belong to the process: a descriptor of the database file closed anywhere in it drops them
    all. The header check at open must not do that while this process holds a connection (`--jobs N` opens
    one per thread; `vqa doctor` checks the file beside its own connection), or another process closing the
    database takes itself for the last one, deletes the WAL, and later commits here are lost to others."""
    from index.opening import integrity_report

    db = tmp_path / "shared.db"
    first = Store(db)
    first.db.execute("select count(*) from videos").fetchone()
    opened = Store(db) if second == "store" else None
    if second == "doctor":
        assert integrity_report(db) == "ok"
    _in_child(f"Store({str(db)!r}).close()")  # another process opens and closes the database
    assert (tmp_path / "shared.db-wal").exists()  # it knew it was not the last connection
    with first.write() as w:
        w["errors"].insert({"path": "/seen", "message": "committed by the first process", "created_at": 0.0})
    seen = _in_child(f"s = Store({str(db)!r}); print(s.db.execute('select count(*) from errors').fetchone()[0])")
    assert seen == "1"
    if opened is not None:
        opened.close()
    first.close()
    assert integrity(db) == "ok"


# -- one process, two threads, one content under two names ---------------------------------------------
def test_two_names_of_one_video_in_one_batch_with_jobs_2(videos, cli, tmp_path):
    twin = tmp_path / "twin.mp4"
    twin.write_bytes(videos[5].read_bytes())
    res = cli("index", str(videos[5]), str(twin), "--jobs", "2", "--profile", "tiny", "--no-captions", "--jsonl")
    assert res.exit_code == 0, res.stderr
    out = jsonl(res.stdout)
    assert sorted(r["status"] for r in out) == ["indexed", "unchanged"]
    assert out[0]["video_id"] == out[1]["video_id"]
    _assert_done_runs_have_their_rows(cli.db)
    store = Store(cli.db)
    assert set(store.video_paths(out[0]["video_id"])) == {str(videos[5]), str(twin)}
    store.close()


# -- four processes, overlapping inputs --------------------------------------------------------------------
@pytest.mark.slow
def test_four_processes_on_one_database_index_each_video_once(videos, built_models, tmp_path):
    db = tmp_path / "shared.db"
    v = [str(p) for p in videos]
    jobs = [[v[0], v[1], v[2], v[3]], [v[2], v[3], v[4], v[5]], [v[4], v[5], v[0], v[1]],
            ["--jobs", "2", v[5], v[3], v[1], v[0], v[2], v[4]]]
    env = vqa_env(tmp_path / "home", VQA_DEBUG="1")  # a failure shows its traceback in the assertion below
    procs = []
    for i, args in enumerate(jobs):
        out, err = (tmp_path / f"out{i}").open("wb"), (tmp_path / f"err{i}").open("wb")
        procs.append(subprocess.Popen(vqa_cmd("index", "--profile", "tiny", "--no-captions", "--jsonl", "--db",
                                              str(db), *args), env=env, stdout=out, stderr=err))
    for p in procs:
        p.wait(timeout=300)
    results = []
    for i, p in enumerate(procs):
        err = (tmp_path / f"err{i}").read_text()
        assert p.returncode == 0, err
        assert "locked" not in err.lower() and "Traceback" not in err, err
        assert err.strip().splitlines()[-1].endswith(" unchanged, 0 failed")
        results += jsonl((tmp_path / f"out{i}").read_text())
    assert len(results) == 18

    # each video indexed by exactly one process; every other request found it done
    by_video: dict[str, list[str]] = {}
    for r in results:
        by_video.setdefault(r["video_id"], []).append(r["status"])
    assert len(by_video) == 6
    for statuses in by_video.values():
        assert statuses.count("indexed") == 1 and statuses.count("unchanged") == len(statuses) - 1

    # one done run per stage per video, written by one process, rows complete and never twice
    runs = _runs(db)
    assert sorted((r["video_id"], r["stage"]) for r in runs.values()) == sorted(
        (vid, s) for vid in by_video for s in ("scenes", "frames"))
    assert all(r["status"] == "done" for r in runs.values())
    for vid in by_video:
        assert len({(r["pid"], r["host"]) for r in runs.values() if r["video_id"] == vid}) == 1
    _assert_done_runs_have_their_rows(db)
    assert integrity(db) == "ok"
    store = Store(db)
    assert not list(store.db.query("select * from claims"))
    store.close()


# -- killed and interrupted processes --------------------------------------------------------------------
@pytest.fixture(scope="module")
def paused(videos, built_models, tmp_path_factory):
    """Child processes started together, each waiting at its pause point: one per SIGKILL point (one
    video each) and one, with --jobs 2 over two videos, to be interrupted with SIGINT."""
    base = tmp_path_factory.mktemp("paused")
    plan = {point: (point, [str(videos[0])]) for point in POINTS}
    plan["sigint"] = ("frames", ["--jobs", "2", str(videos[1]), str(videos[2])])
    children = {}
    for name, (point, args) in plan.items():
        db, marker, log = base / f"{name}.db", base / f"{name}.paused", base / f"{name}.log"
        env = vqa_env(base / "home", VQA_TEST_PAUSE_AT=f"{point}:{marker}")
        with log.open("wb") as f:
            # SIGINT as a terminal delivers it, also when this test run itself was started with SIGINT
            # ignored (a background job of a non-interactive shell), which the child would inherit
            proc = subprocess.Popen(vqa_cmd("index", "--profile", "tiny", "--jsonl", "--db", str(db), *args),
                                    env=env, stdout=subprocess.DEVNULL, stderr=f,
                                    preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
        children[name] = {"proc": proc, "db": db, "marker": marker, "log": log, "args": args}
    yield children
    for child in children.values():
        if child["proc"].poll() is None:
            child["proc"].kill()
            child["proc"].wait()


@pytest.mark.slow
@pytest.mark.parametrize("point", list(POINTS))
def test_sigkill_then_rerun_equals_an_uninterrupted_run(point, paused, videos, cli, tmp_path):
    child = paused[point]
    _wait_for(child["marker"], child["proc"], child["log"])
    before = _runs(child["db"])
    child["proc"].send_signal(signal.SIGKILL)
    assert child["proc"].wait(timeout=30) == -signal.SIGKILL

    # consistent after the kill: finished stages done with all their rows, the paused one not done
    db = child["db"]
    assert integrity(db) == "ok"
    _assert_done_runs_have_their_rows(db)
    done = {k: r for k, r in before.items() if r["status"] == "done"}
    assert {r["stage"] for r in done.values()} == POINTS[point]
    assert _runs(db) == before
    ls = json.loads(cli("ls", "--json", "--profile", "tiny", db_path=db).stdout)
    stages = ls[0]["stages"]
    for s in STAGES:
        assert stages[s] == ("done" if s in POINTS[point] else "interrupted" if s in {
            r["stage"] for r in before.values()} else "missing"), stages
    if point == "frames":  # killed with embeddings committed but the run unfinished
        key = next(k for k, r in before.items() if r["stage"] == "frames")
        store = Store(db)
        assert store.db.execute("select count(*) from frames where run_key = ?", [key]).fetchone()[0] > 0
        store.close()

    # rerun: only the unfinished stages run (the dead process's claim is taken over)
    res = cli("index", str(videos[0]), "--profile", "tiny", "--jsonl", db_path=db)
    assert res.exit_code == 0, res.stderr
    assert jsonl(res.stdout)[0]["stages_run"] == [s for s in STAGES if s not in POINTS[point]]
    after = _runs(db)
    for key, run in done.items():
        assert after[key] == run  # not rerun: same started_at, finished_at, stats
    assert integrity(db) == "ok"

    # the same database as an uninterrupted run's
    base_db = tmp_path / "uninterrupted.db"
    assert cli("index", str(videos[0]), "--profile", "tiny", db_path=base_db).exit_code == 0
    _assert_same_content(_content(db), _content(base_db))


@pytest.mark.slow
def test_ctrl_c_exits_130_with_one_line_and_the_rerun_resumes(paused, videos, cli, tmp_path):
    child = paused["sigint"]
    _wait_for(child["marker"], child["proc"], child["log"])
    child["proc"].send_signal(signal.SIGINT)
    assert child["proc"].wait(timeout=60) == 130
    err = child["log"].read_text()
    assert "Traceback" not in err
    assert err.strip().splitlines() == ["interrupted: finished stages are kept; run the command again to resume"]

    db = child["db"]
    assert integrity(db) == "ok"
    _assert_done_runs_have_their_rows(db)
    before = _runs(db)
    assert all(r["status"] in ("done", "running") for r in before.values())
    store = Store(db)
    assert not list(store.db.query("select * from claims"))  # released on the way out
    store.close()
    ls = json.loads(cli("ls", "--json", "--profile", "tiny", db_path=db).stdout)
    assert all(s in ("done", "interrupted", "missing") for r in ls for s in r["stages"].values())
    assert any(s == "interrupted" for r in ls for s in r["stages"].values())

    res = cli("index", *child["args"], "--profile", "tiny", "--jsonl", db_path=db)
    assert res.exit_code == 0, res.stderr
    after = _runs(db)
    for key, run in before.items():
        if run["status"] == "done":
            assert after[key] == run
    assert all(r["status"] == "done" for r in after.values())
    base_db = tmp_path / "uninterrupted.db"
    assert cli("index", *child["args"], "--profile", "tiny", db_path=base_db).exit_code == 0
    _assert_same_content(_content(db), _content(base_db))
