"""`--engine ray` on a local Ray cluster started here (2 CPUs, no dashboard, no network): the same database
row for row as a local run, nothing sent twice, failures one line each, a worker that dies retried, and
`ask --batch` answered as locally, in order. One cluster for the module; a few short generated videos."""

from __future__ import annotations

import json
import socket
import sys
from pathlib import Path

import pytest

from index.store import Store
from tests.conftest import jsonl
from tests.test_concurrency import _assert_same_content, _content
from tests.test_robustness import build_tiny_models, small_video

VIDEOS = 3


@pytest.fixture(scope="module")
def cluster(models_home):
    ray = pytest.importorskip("ray")
    from pipelines.backends.tiny_vlm import build_tiny_qwen2_5_vl

    build_tiny_models()  # built once, before the workers look for them (they share VQA_MODELS)
    build_tiny_qwen2_5_vl()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("ray-videos")
    for i in range(VIDEOS):
        small_video(d / f"v{i}.mp4", 40 + i, durations=(1.0, 1.2))
    (d / "notes.mp4").write_text("a text file with a video's name\n")
    return d


@pytest.fixture(scope="module")
def local_db(folder, tmp_path_factory, models_home) -> tuple[Path, list[dict], str]:
    """The folder indexed by the local engine: the reference (database, result lines, stderr)."""
    from typer.testing import CliRunner

    from vqa_cli.app import app

    db = tmp_path_factory.mktemp("ray-local") / "local.db"
    res = CliRunner().invoke(app, ["index", str(folder), "--profile", "tiny", "--jsonl", "--db", str(db)])
    assert res.exit_code == 1, res.stderr  # notes.mp4 fails; the videos are indexed
    return db, jsonl(res.stdout), res.stderr


def _rows(db: Path, sql: str) -> list[tuple]:
    store = Store(db)
    try:
        return [tuple(r.values()) for r in store.db.query(sql)]
    finally:
        store.close()


def _same_library(got: Path, want: Path) -> None:
    """Equal row for row: stage rows (embeddings within float tolerance), runs, videos and their paths."""
    _assert_same_content(_content(got), _content(want))
    q = ("select key, video_id, stage, model, model_fp, params, status, stats from runs order by key",
         "select id, path, size, duration, fps, width, height, codec, rotation, has_audio from videos order by id",
         "select path, video_id, size, mtime_ns from video_paths order by path")
    for sql in q:
        assert _rows(got, sql) == _rows(want, sql), sql


def test_without_ray_one_line_says_how_to_install_it(cli, folder, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` fails as where it is not installed
    res = cli("index", str(folder / "v0.mp4"), "--profile", "tiny", "--engine", "ray")
    assert res.exit_code == 1
    assert res.stderr.strip() == "error: --engine ray needs Ray, which is not installed: pip install 'vqa[ray]'"
    res = cli("ask", "--batch", str(folder / "none.jsonl"), "--engine", "ray")
    assert res.exit_code == 1 and "pip install 'vqa[ray]'" in res.stderr
    res = cli("index", str(folder / "v0.mp4"), "--engine", "spark")
    assert res.exit_code == 2 and "unknown --engine 'spark'" in res.stderr


def test_a_cluster_address_nothing_listens_on_is_one_line(cli, folder):
    ray = pytest.importorskip("ray")
    if ray.is_initialized():
        pytest.skip("this process already holds a Ray connection")
    with socket.socket() as s:  # a port that was free a moment ago: nothing listens there
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    res = cli("index", str(folder / "v0.mp4"), "--profile", "tiny", "--engine", "ray", "--address",
              f"127.0.0.1:{port}")
    assert res.exit_code == 1
    assert res.stderr.splitlines() == [f"error: cannot reach the Ray cluster at 127.0.0.1:{port}: Connection "
                                       "refused (is `ray start --head` running there, and the port open?)"]


def test_index_on_ray_equals_local_and_a_rerun_sends_nothing(cluster, cli, folder, local_db):
    want_db, want_lines, want_err = local_db
    res = cli("index", str(folder), "--profile", "tiny", "--jsonl", "--engine", "ray")
    assert res.exit_code == 1, res.stderr
    lines = jsonl(res.stdout)
    assert [(r["path"], r["status"], r["stages_run"], r["video_id"]) for r in lines] == \
        [(r["path"], r["status"], r["stages_run"], r["video_id"]) for r in want_lines]
    bad = str(folder / "notes.mp4")
    assert [r["status"] for r in lines] == ["failed"] + ["indexed"] * VIDEOS  # notes.mp4 sorts first
    # the bad input fails alone, in the same one line as locally
    fails = [ln for ln in res.stderr.splitlines() if ln.startswith(bad)]
    assert fails == [ln for ln in want_err.splitlines() if ln.startswith(bad)] and len(fails) == 1
    assert "not a video" in fails[0] and "Traceback" not in res.stderr
    assert res.stderr.splitlines()[-1] == f"{VIDEOS} indexed, 0 unchanged, 1 failed"
    _same_library(cli.db, want_db)
    assert _rows(cli.db, "select path, message from errors") == _rows(want_db, "select path, message from errors")
    assert _rows(cli.db, "select * from claims") == []

    # a second run: every video is settled on the driver (unchanged), nothing is rewritten
    runs = _rows(cli.db, "select key, finished_at from runs order by key")
    res = cli("index", *(str(folder / f"v{i}.mp4") for i in range(VIDEOS)), "--profile", "tiny", "--jsonl",
              "--engine", "ray")
    assert res.exit_code == 0, res.stderr
    assert [r["status"] for r in jsonl(res.stdout)] == ["unchanged"] * VIDEOS
    assert _rows(cli.db, "select key, finished_at from runs order by key") == runs


def test_a_worker_that_dies_mid_video_is_restarted_and_the_library_is_complete(cluster, cli, folder, local_db,
                                                                              tmp_path, monkeypatch):
    marker = tmp_path / "died"
    monkeypatch.setenv("VQA_TEST_RAY_EXIT_AT", f"decode:{marker}")  # the first worker half way through dies
    paths = [str(folder / f"v{i}.mp4") for i in range(VIDEOS)]
    res = cli("index", *paths, "--profile", "tiny", "--jsonl", "--engine", "ray", "--jobs", "1")
    assert res.exit_code == 0, res.stderr
    assert marker.exists()  # a worker process really died (os._exit) with a video half-indexed
    assert [r["status"] for r in jsonl(res.stdout)] == ["indexed"] * VIDEOS
    _same_library(cli.db, local_db[0])


def test_ask_batch_on_ray_answers_as_locally_in_input_order(cluster, cli, folder, local_db, tmp_path):
    want_db = local_db[0]
    batch = tmp_path / "items.jsonl"
    items = [{"id": f"q{i}", "video": str(folder / f"v{i % VIDEOS}.mp4"), "question": q, **extra}
             for i, (q, extra) in enumerate([
                 ("What is shown?", {}), ("Which pattern comes first?", {"options": ["bars", "a fractal"]}),
                 ("What colour is the screen?", {}), ("Is there any text?", {"options": ["yes", "no"]})])]
    lines = [json.dumps(it) for it in items]
    lines.insert(2, json.dumps({"id": "gone", "video": str(tmp_path / "nope.mp4"), "question": "What?"}))
    lines.insert(3, "{not json")
    batch.write_text("\n".join(lines) + "\n")
    local = cli("ask", "--batch", str(batch), "--profile", "tiny", db_path=want_db)
    # on Ray, against a database where nothing is indexed yet: the driver indexes first, then answers
    res = cli("ask", "--batch", str(batch), "--profile", "tiny", "--engine", "ray")
    assert res.exit_code == local.exit_code == 1, res.stderr
    got, want = jsonl(res.stdout), jsonl(local.stdout)
    assert [r["id"] for r in got] == [r["id"] for r in want] == ["q0", "q1", "gone", 4, "q2", "q3"]
    for g, w in zip(got, want):
        if "error" in w:
            assert g == w
            continue
        assert g["answer"] == w["answer"] and g["video_id"] == w["video_id"]
        assert [k["t"] for k in g["keyframes"]] == [k["t"] for k in w["keyframes"]]
        assert g["context"] == w["context"] and g["settings"] == w["settings"]
        assert list(g) == list(w)  # the same fields, in the same order
    ids = [r["answer_id"] for r in got if "answer" in r]
    assert ids == sorted(ids) and len(set(ids)) == len(items)  # logged by the driver, one each
    logged = _rows(cli.db, "select id, question from answers order by id")
    assert [q for _, q in logged] == [it["question"] for it in items]


def _eval_bench(folder: Path, tmp_path: Path) -> Path:
    """A small native benchmark over the generated videos: open and multiple-choice questions, one video
    with the benchmark's subtitles, two items on one video, and an item whose video is no video."""
    srt = tmp_path / "v1.srt"
    srt.write_text("1\n00:00:00,200 --> 00:00:00,900\nthe bars come first\n")
    records = [
        {"id": "e0", "video": str(folder / "v0.mp4"), "question": "What is shown first?", "evidence": [0.0, 1.0]},
        {"id": "e1", "video": str(folder / "v1.mp4"), "question": "Which pattern comes first?",
         "options": ["colour bars", "a fractal"], "answer": "A", "evidence": [0.0, 1.0], "subtitles": str(srt)},
        {"id": "bad", "video": str(folder / "notes.mp4"), "question": "What?", "evidence": [0.0, 1.0]},
        {"id": "e2", "video": str(folder / "v2.mp4"), "question": "Is there any text?", "options": ["yes", "no"],
         "answer": "B", "task_type": "ocr"},
        {"id": "e3", "video": str(folder / "v0.mp4"), "question": "Which comes last?",
         "options": ["bars", "a fractal", "grey"], "answer": "B", "evidence": [1.0, 2.2], "task_type": "order"},
    ]
    bench = tmp_path / "bench.jsonl"
    bench.write_text("".join(json.dumps(r) + "\n" for r in records))
    return bench


def _without_timings(line: dict) -> dict:
    return {k: v for k, v in line.items() if k != "timings"}


def _metrics(summary: dict) -> list[dict]:
    return [{k: v for k, v in m.items() if k != "search_ms"} for m in summary["methods"]]


def test_eval_on_ray_answers_on_the_workers_as_locally_and_resumes(cluster, cli, folder, tmp_path):
    bench = _eval_bench(folder, tmp_path)
    args = ("eval", str(bench), "--profile", "tiny", "--frames", "3", "--zoom-rounds", "1", "--json")
    # both on fresh databases: locally, and on Ray (indexed on the cluster, then answered by its workers)
    local = cli(*args, "--out", str(tmp_path / "local.jsonl"), db_path=tmp_path / "local.db")
    res = cli(*args, "--out", str(tmp_path / "ray.jsonl"), "--engine", "ray")
    assert res.exit_code == local.exit_code == 1, res.stderr  # notes.mp4 fails, alone, for each method
    got, want = (jsonl((tmp_path / f"{n}.jsonl").read_text()) for n in ("ray", "local"))
    assert [(r["id"], r["method"]) for r in got] == [(r["id"], r["method"]) for r in want] == \
        [(i, m) for i in ("e0", "e1", "bad", "e2", "e3") for m in ("uniform", "topk", "vqa")]
    assert [_without_timings(r) for r in got] == [_without_timings(r) for r in want]
    # what the comparison covers: answers from every method, parsed choices graded, the benchmark's
    # subtitles as e1's speech, the product's answers logged in input order, index status as locally
    assert all(r["answer"] not in (None, "") for r in got if not r["error"])
    assert {r["correct"] for r in got if r["id"] in ("e1", "e2", "e3")} <= {True, False}
    assert {r["subtitles"] for r in got if r["id"] == "e1"} == {"benchmark"}
    assert any(c["source"] == "speech" for r in got if r["id"] == "e1" for c in r["context"])
    assert [r["index_status"] for r in got if r["id"] == "e0"] == ["indexed"] * 3
    assert [r["error"].split(":")[0] for r in got if r["id"] == "bad"] == ["VqaError"] * 3
    ids = [r["answer_id"] for r in got if r["method"] == "vqa" and not r["error"]]
    assert ids == sorted(ids) and None not in ids
    assert _rows(cli.db, "select id, question from answers order by id") == \
        _rows(tmp_path / "local.db", "select id, question from answers order by id")
    summary = json.loads(res.stdout)["summary"]
    assert _metrics(summary) == _metrics(json.loads(local.stdout)["summary"])
    assert [m["errors"] for m in summary["methods"]] == [1, 1, 1]

    # a second run resumes: the finished lines stay, only the failed item is tried again (and fails again
    # before anything reaches the cluster: its file is no video)
    before = (tmp_path / "ray.jsonl").read_text()
    again = cli(*args, "--out", str(tmp_path / "ray.jsonl"), "--engine", "ray")
    assert again.exit_code == 1, again.stderr
    after = jsonl((tmp_path / "ray.jsonl").read_text())
    assert (tmp_path / "ray.jsonl").read_text().startswith(before)
    assert [(r["id"], r["method"]) for r in after[len(got):]] == [("bad", m) for m in ("uniform", "topk", "vqa")]
    assert _metrics(json.loads(again.stdout)["summary"]) == _metrics(summary)
    assert len(_rows(cli.db, "select id from answers")) == len(ids)  # nothing answered again

    # with nothing left to run (the first two items), the cluster is not even reached
    before = (tmp_path / "ray.jsonl").read_text()
    done = cli(*args, "--limit", "2", "--out", str(tmp_path / "ray.jsonl"), "--engine", "ray", "--address",
               "127.0.0.1:1")
    assert done.exit_code == 1, done.stderr  # the file's earlier failures still count
    assert "cannot reach" not in done.stderr and (tmp_path / "ray.jsonl").read_text() == before
