"""Removal while indexing, orphans, a stale library cache, and fingerprint prefixes taken literally.

`vqa rm` races a real `vqa index` process held at a known point by the ``VQA_TEST_PAUSE_AT`` hook (the
test deletes the hook's marker file to let it go on); orphans are what an older vqa or a crash between
statements could leave; the FAISS cache is damaged in five ways. Each case checks the one-line message,
the exit code, no traceback, and a consistent database (integrity ok, no orphan rows).
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
from pathlib import Path

import pytest

from index.store import Store
from tests import test_faults as faults
from tests.test_concurrency import _assert_same_content, _content, _wait_for
from tests.test_faults import TINY, consistent, dump, one_line
from tests.test_robustness import vqa_cmd, vqa_env

built_models, media, reference, indexed = faults.built_models, faults.media, faults.reference, faults.indexed
# -- `vqa rm` while another process indexes the video -------------------------------------------------
# before any stage; scenes computed; frames committed; captions computed; speech transcribed
RM_POINTS = ("probed", "scenes", "frames", "captions", "transcript")
WHISPER = ["--whisper", "packaged:tiny.en"]  # the tiny profile has no transcriber: the packaged real one


@pytest.fixture(scope="module")
def indexing(media, built_models, tmp_path_factory):
    """One `vqa index` process per point, started together, each holding at its point."""
    base = tmp_path_factory.mktemp("rm-race")
    children = {}
    for point in RM_POINTS:
        db, marker, log = base / f"{point}.db", base / f"{point}.paused", base / f"{point}.log"
        env = vqa_env(base / "home", VQA_TEST_PAUSE_AT=f"{point}:{marker}")
        with log.open("wb") as f:
            extra = WHISPER if point == "transcript" else []
            proc = subprocess.Popen(vqa_cmd("index", *TINY, *extra, "--db", str(db), str(media["a"])), env=env,
                                    stdout=subprocess.DEVNULL, stderr=f)
        children[point] = {"proc": proc, "db": db, "marker": marker, "log": log}
    yield children
    for child in children.values():
        if child["proc"].poll() is None:
            child["proc"].kill()
            child["proc"].wait()


@pytest.mark.parametrize("point", RM_POINTS)
def test_rm_while_indexing_stops_the_indexer_cleanly_and_leaves_nothing(point, indexing, cli, media, reference):
    child = indexing[point]
    _wait_for(child["marker"], child["proc"], child["log"])
    db = child["db"]
    res = cli("rm", str(media["a"]), db_path=db)
    assert res.exit_code == 0 and res.stdout.strip() == f"removed {media['a']}", res.stderr
    child["marker"].unlink()  # the indexer goes on from its point
    assert child["proc"].wait(timeout=120) == 1
    err = child["log"].read_text()
    assert "Traceback" not in err
    assert err.strip().splitlines() == [
        f"{media['a']}: was removed (`vqa rm`) while being indexed; nothing of it was kept",
        "0 indexed, 0 unchanged, 1 failed"]
    consistent(db)
    store = Store(db)
    for table in ("videos", "runs", "scenes", "frames", "captions", "texts", "answers", "errors"):
        assert store.db.execute(f"select count(*) from {table}").fetchone()[0] == 0, table
    store.close()
    if point == "captions":  # and it can be indexed again, as if nothing had happened
        assert cli("index", str(media["a"]), *TINY, db_path=db).exit_code == 0
        _assert_same_content(_content(db), _content(reference))


def test_gc_drops_orphans_of_every_kind(cli, indexed):
    store = Store(indexed)
    vid = store.list_videos()[0]["id"]
    keys = [r["key"] for r in store.runs_for(vid)]
    store.close()
    # what an older vqa (or a crash between statements) could leave: rows of a removed video
    conn = sqlite3.connect(indexed)  # foreign keys off, as any SQLite client has them
    conn.execute("delete from videos where id = ?", [vid])  # the video alone, nothing else
    conn.execute("insert into answers (video_id, question, answer) values (?, 'q', 'a')", [vid])
    conn.execute("insert into text_vectors values ('gone-run', ?, 0, x'00')", [keys[0]])
    conn.commit()
    conn.close()
    store = Store(indexed)
    counts = store.orphan_counts()
    rows = sum(store.db.execute(f"select count(*) from {t}").fetchone()[0] for t in (
        "runs", "scenes", "frames", "captions", "texts", "text_vectors", "answers", "video_paths", "claims",
        "probe_frames", "frame_windows"))
    store.close()
    assert counts["runs"] == len(keys) and counts["video_paths"] == 1 and counts["answers"] == 1
    res = cli("gc", db_path=indexed)
    assert res.exit_code == 0, res.stderr
    consistent(indexed)
    store = Store(indexed)
    for table in ("runs", "scenes", "frames", "captions", "texts", "text_vectors", "answers", "video_paths",
                  "probe_frames", "frame_windows"):
        assert store.db.execute(f"select count(*) from {table}").fetchone()[0] == 0, table
    store.close()
    assert res.stdout.startswith(f"0 videos forgotten; 0 rows of unfinished runs dropped; {rows} orphan rows dropped")


# -- the library-wide FAISS cache -------------------------------------------------------------------------
def _search_all(cli, db: Path) -> dict:
    res = cli("search", "--all", "a red square", *TINY, "--json", db_path=db)
    assert res.exit_code == 0 and "Traceback" not in res.stderr, res.stderr
    return json.loads(res.stdout)


def _cache_matches(db: Path) -> None:
    import faiss

    (meta_path,) = db.parent.glob("library-*.json")
    meta = json.loads(meta_path.read_text())
    index = faiss.read_index(str(meta_path.with_suffix(".faiss")))
    frames = sqlite3.connect(db).execute("select count(*), max(length(embedding)) from frames").fetchone()
    assert index.ntotal == len(meta["video_ids"]) == len(meta["times"]) == frames[0]
    assert index.d == frames[1] // 4


def test_inconsistent_library_cache_is_rebuilt(cli, indexed, media):
    import faiss
    import numpy as np

    assert cli("index", str(media["b"]), *TINY, db_path=indexed).exit_code == 0
    want = _search_all(cli, indexed)
    assert want["videos"] == 2 and want["moments"]
    (meta_path,) = indexed.parent.glob("library-*.json")
    index_path = meta_path.with_suffix(".faiss")
    for damage in ("dimension", "count", "ids", "model", "garbage"):
        meta = json.loads(meta_path.read_text())
        if damage == "dimension":  # a valid index with as many vectors, of another dimension
            other = faiss.IndexFlatIP(7)
            other.add(np.eye(7, dtype=np.float32)[np.arange(len(meta["times"])) % 7])
            faiss.write_index(other, str(index_path))
        elif damage == "count":  # fewer vectors than the database has
            faiss.write_index(faiss.IndexFlatIP(faiss.read_index(str(index_path)).d), str(index_path))
        elif damage == "ids":  # metadata that lost a frame
            meta_path.write_text(json.dumps({**meta, "video_ids": meta["video_ids"][:-1],
                                             "times": meta["times"][:-1]}))
        elif damage == "model":
            meta_path.write_text(json.dumps({**meta, "model_fp": "another-clip"}))
        else:
            index_path.write_bytes(b"\0" * 100)
        assert _search_all(cli, indexed) == want, damage
        _cache_matches(indexed)


# -- fingerprint prefixes are literal -----------------------------------------------------------------
def test_wildcards_are_not_ids_and_an_ambiguous_prefix_lists_its_videos(cli, indexed, media):
    before = dump(indexed)
    for args in [("rm", "%"), ("rm", "_"), ("scenes", "%"), ("scenes", "_%"), ("log", "%%%%"), ("transcript", "____")]:
        res = cli(*args, db_path=indexed)
        one_line(res, 1, "not indexed")
    assert dump(indexed) == before
    store = Store(indexed)
    vid = store.list_videos()[0]["id"]
    store.close()
    assert cli("scenes", vid[:8], db_path=indexed).exit_code == 0  # a unique prefix names its video
    conn = sqlite3.connect(indexed)
    twin = vid[:6] + ("0" if vid[6] != "0" else "1") + vid[7:]
    conn.execute("insert into videos (id, path, created_at) values (?, '/elsewhere/twin.mp4', 0)", [twin])
    conn.commit()
    conn.close()
    before = dump(indexed)
    for args in [("scenes", vid[:6]), ("rm", vid[:6])]:
        line = one_line(cli(*args, db_path=indexed), 2, f"{vid[:6]}: matches 2 videos", vid[:12], twin[:12],
                        "/elsewhere/twin.mp4", "give more characters")
        assert line.startswith("error: ")
    assert dump(indexed) == before
