"""`vqa eval` end to end with the tiny profile (real classes, random weights) on generated videos: the
baselines and the product's search side by side, resume, answering through the real generate path,
bad records and failing videos reported."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from index.store import Store  # noqa: E402
from pipelines.eval.baselines import uniform_times  # noqa: E402
from pipelines.eval.load import FORMATS  # noqa: E402
from pipelines.eval.metrics import temporal_metrics  # noqa: E402
from pipelines.eval.results import read_results  # noqa: E402
from pipelines.eval.runner import METHODS  # noqa: E402
from tests.synth import make_color_video, make_scenes_video  # noqa: E402

K = 3


@pytest.fixture(scope="module", autouse=True)
def _eval_registered():
    """`vqa eval` on the app (the app module registers it; this covers a tree where it does not yet)."""
    from vqa_cli import eval_cmd
    from vqa_cli.app import app

    if not any(c.name == "eval" for c in app.registered_commands):
        eval_cmd.register(app)


@pytest.fixture(scope="module")
def bench(tmp_path_factory) -> dict:
    """Two videos, a native JSON Lines file with evidence, one record without a video, one bad line,
    and a file that is no video at all."""
    root = tmp_path_factory.mktemp("bench")
    colors = make_color_video(root / "colors.mp4", [3.0, 3.0, 3.0])  # red 0-3, green 3-6, blue 6-9
    make_scenes_video(root / "scenes.mp4", [2.0, 2.0, 2.0], audio=False)
    (root / "broken.mp4").write_bytes(b"\x00not a video\x00" * 64)
    records = [
        {"id": "blue", "video": "colors.mp4", "question": "When does the green screen turn blue?",
         "evidence": [5.0, 6.0], "task_type": "temporal"},
        {"id": "first", "video": "colors.mp4", "question": "Which colour fills the screen first?",
         "options": ["red", "green", "blue"], "answer": "A", "evidence": [[0.0, 3.0]], "task_type": "order"},
        {"id": "scene2", "video": "scenes.mp4", "question": "What is shown in scene 2?",
         "options": ["A. colour bars", "B. a fractal", "C. a test pattern"], "answer": "A",
         "evidence": [2.0, 4.0], "task_type": "object"},
        {"id": "gone", "video": "missing.mp4", "question": "Is this here?"},
    ]
    lines = [json.dumps(r) for r in records]
    lines.insert(3, "{this is not json")
    path = root / "bench.jsonl"
    path.write_text("\n".join(lines) + "\n")
    broken = root / "broken.jsonl"
    broken.write_text(json.dumps({"id": "b1", "video": "broken.mp4", "question": "What?",
                                  "evidence": [0, 1]}) + "\n")
    return {"root": root, "file": path, "broken": broken, "colors": colors, "db": root / "shared.db"}


def _eval(cli, bench, out: Path, *args: str, file: Path | None = None):
    return cli("eval", str(file or bench["file"]), "--video-root", str(bench["root"]), "--profile", "tiny",
               "--frames", str(K), "--out", str(out), *args, db_path=bench["db"])


def _table(stdout: str) -> dict[str, list[str]]:
    lines = stdout.strip().splitlines()
    header = lines[0].split()
    rows = {}
    for line in lines[2:]:
        cells = re.split(r"\s{2,}", line.strip())
        rows[cells[0]] = cells[1:]
    return {"methods": header, **rows}


def _measures(stdout: str) -> dict[str, list[str]]:
    return {k: v for k, v in _table(stdout).items() if not k.startswith("search ms")}


def test_search_only_three_methods_side_by_side(cli, bench, tmp_path):
    out = tmp_path / "results.jsonl"
    res = _eval(cli, bench, out, "--search", "uniform,topk,vqa", "--search-only", "--delta", "0.5")
    assert res.exit_code == 0, res.stderr

    table = _table(res.stdout)
    assert table["methods"] == ["uniform", "topk", "vqa"]
    assert table["items"] == ["3", "3", "3"] and table["errors"] == ["0", "0", "0"]
    assert table["with evidence"] == ["3", "3", "3"] and "hit rate" in table
    assert table["answered"] == ["0", "0", "0"]

    # the records that could not be used are reported, by reason
    assert re.search(r"1 skipped \(video-not-found\).*gone", res.stderr)
    assert re.search(r"1 skipped \(bad-record\).*not JSON", res.stderr)
    assert "[9/9]" in res.stderr

    lines = read_results(out)
    assert sorted((r["id"], r["method"]) for r in lines) == sorted(
        (i, m) for i in ("blue", "first", "scene2") for m in METHODS)
    for r in lines:
        assert r["error"] is None and r["answer"] is None and r["correct"] is None
        assert r["fps"] == pytest.approx(30.0 if r["id"] != "scene2" else 25.0)
        assert r["duration"] == pytest.approx(9.0 if r["id"] != "scene2" else 6.0, abs=0.1)
        assert len(r["keyframes"]) == K
        assert all(0 <= k["t"] <= r["duration"] for k in r["keyframes"])
        assert all(k["frame"] == int(k["t"] * r["fps"] + 1e-6) for k in r["keyframes"])
        assert r["settings"]["eval"]["k"] == K and r["settings"]["method"] == r["method"]
    by = {(r["id"], r["method"]): r for r in lines}

    # uniform: K segment centres of the probed duration; by hand for 9 s: 1.5, 4.5, 7.5 s. Evidence
    # [5, 6] holds none of them (no hit); within 0.5 s only 4.5 s is near: precision 1/3, recall 1.
    u = by[("blue", "uniform")]
    assert [k["t"] for k in u["keyframes"]] == pytest.approx(uniform_times(u["duration"], K), abs=1e-3)
    assert [k["t"] for k in u["keyframes"]] == pytest.approx([1.5, 4.5, 7.5], abs=0.02)
    assert all(k["score"] is None for k in u["keyframes"]) and u["frames_scored"] == 0
    assert u["hit"] is False and u["precision"] == pytest.approx(1 / 3) and u["recall"] == 1.0
    assert by[("first", "uniform")]["hit"] is True  # 1.5 s is inside [0, 3]

    # topk: the K index frames closest to the raw question in CLIP space, in time order
    from pipelines.ask import frames_run
    from pipelines.backends.profiles import Models, get_profile

    models = Models(get_profile("tiny"))
    store = Store(bench["db"])
    try:
        for item_id, question in (("blue", "When does the green screen turn blue?"),
                                  ("scene2", "What is shown in scene 2?")):
            t = by[(item_id, "topk")]
            video = store.get_video(t["video_id"])
            times, vecs = store.frame_matrix(frames_run(store, video, models)["key"])
            sims = vecs @ models.clip().embed_texts([question])[0]
            best = sorted(np.argsort(-sims, kind="stable")[:K])
            assert [k["t"] for k in t["keyframes"]] == pytest.approx([float(times[i]) for i in best], abs=1e-3)
            assert [k["score"] for k in t["keyframes"]] == pytest.approx([float(sims[i]) for i in best], abs=1e-3)
            assert t["frames_scored"] == len(times)
            assert t["hit"] == temporal_metrics([k["t"] for k in t["keyframes"]], [tuple(e) for e in t["evidence"]],
                                                0.5)["hit"]
        # each video indexed once (one frames run each), not once per method
        assert store.db.execute("select count(*) from runs where stage = 'frames'").fetchone()[0] == 2
    finally:
        store.close()

    # vqa: the product's search, with its trace; it scores at least every index frame
    for item_id in ("blue", "first", "scene2"):
        v = by[(item_id, "vqa")]
        assert v["trace"][0]["round"] == 0 and v["subqueries"]
        assert v["frames_scored"] >= by[(item_id, "topk")]["frames_scored"]
        assert {k["round"] for k in v["keyframes"]} <= {0, 1, 2}
        assert v["timings"]["search_ms"] > 0

    # --json: the same summary, machine-readable
    res = _eval(cli, bench, out, "--search", "uniform,topk,vqa", "--search-only", "--delta", "0.5", "--json")
    assert res.exit_code == 0, res.stderr
    data = json.loads(res.stdout)
    assert [m["method"] for m in data["summary"]["methods"]] == ["uniform", "topk", "vqa"]
    assert {s["reason"] for s in data["skipped"]} == {"video-not-found", "bad-record"}
    hit_rates = [m["hit_rate"] for m in data["summary"]["methods"]]
    assert table["hit rate"] == [f"{100 * h:.1f}%" for h in hit_rates]


def test_rerun_resumes_without_repeating_items(cli, bench, tmp_path):
    out = tmp_path / "results.jsonl"
    args = ("--search", "uniform,vqa", "--search-only")
    first = _eval(cli, bench, out, *args)
    assert first.exit_code == 0, first.stderr
    complete = out.read_bytes()
    assert len(read_results(out)) == 6

    again = _eval(cli, bench, out, *args)  # nothing left to do
    assert again.exit_code == 0 and again.stdout == first.stdout
    assert out.read_bytes() == complete and not re.search(r"^\[\d+/\d+\]", again.stderr, re.M)

    # killed mid-run: two complete lines and half of the third are on disk
    lines = complete.split(b"\n")
    out.write_bytes(b"\n".join(lines[:2]) + b"\n" + lines[2][:25])
    resumed = _eval(cli, bench, out, *args)
    assert resumed.exit_code == 0, resumed.stderr
    assert resumed.stderr.count("/6]") == 4  # only the four missing pairs ran
    keys = [(r["id"], r["method"]) for r in read_results(out)]
    assert len(keys) == len(set(keys)) == 6
    assert _measures(resumed.stdout) == _measures(first.stdout)  # the same summary (timings aside)

    # other settings are not mixed into the same file
    other = _eval(cli, bench, out, *args[:-1], "--search-only", "--seed", "1")
    assert other.exit_code == 1 and "other settings" in other.stderr and "seed 0 -> 1" in other.stderr
    fresh = _eval(cli, bench, out, *args, "--seed", "1", "--no-resume")
    assert fresh.exit_code == 0, fresh.stderr
    assert len(read_results(out)) == 6 and all(r["settings"]["eval"]["seed"] == 1 for r in read_results(out))


@pytest.mark.slow
def test_answers_are_recorded_for_each_method(cli, bench, tmp_path):
    out = tmp_path / "answers.jsonl"
    res = _eval(cli, bench, out, "--search", "uniform,vqa", "--limit", "2")
    assert res.exit_code == 0, res.stderr
    assert "random-weight models" in res.stderr
    table = _table(res.stdout)
    assert table["answered"] == ["2", "2"]
    assert table["accuracy"][0].endswith("/1)")  # one of the two items has a gold answer

    lines = {(r["id"], r["method"]): r for r in read_results(out)}
    assert set(lines) == {(i, m) for i in ("blue", "first") for m in ("uniform", "vqa")}
    for (item_id, _), r in lines.items():
        detail = r["answer_detail"]
        assert isinstance(detail["text"], str)  # generated by the tiny model, whatever it says
        assert r["answer"] == (detail["choice"] or detail["text"])
        assert r["timings"]["search_ms"] >= 0
        if item_id == "first":
            assert r["correct"] is (detail["choice"] == "A")
        else:
            assert r["correct"] is None  # no gold answer
    # the baseline's own frames went to the answerer, with their pixel budgets
    u = lines[("first", "uniform")]
    assert u["settings"]["answer"]["random_weights"] is True
    assert len(u["settings"]["answer"]["pixel_budgets"]) == K
    assert u["timings"]["answer_ms"] > 0
    # the product answers as `vqa ask` does (its answer is logged)
    v = lines[("first", "vqa")]
    assert isinstance(v["answer_id"], int) and v["settings"]["ask"]["k"] == K


def test_failing_video_is_an_error_for_each_method_and_exit_1(cli, bench, tmp_path):
    out = tmp_path / "broken.jsonl"
    res = _eval(cli, bench, out, "--search", "uniform,topk", "--search-only", file=bench["broken"])
    assert res.exit_code == 1
    lines = read_results(out)
    assert [(r["id"], r["method"]) for r in lines] == [("b1", "uniform"), ("b1", "topk")]
    assert all(r["error"] for r in lines)
    assert re.search(r"^\[1/2\] b1 uniform: error: ", res.stderr, re.M)
    assert re.search(r"^\[2/2\] b1 topk: error: ", res.stderr, re.M)
    assert _table(res.stdout)["errors"] == ["1", "1"]


def test_usage_errors_and_help(cli, bench, tmp_path):
    res = _eval(cli, bench, tmp_path / "x.jsonl", "--search", "uniform,best")
    assert res.exit_code == 2 and "best" in res.stderr
    res = _eval(cli, bench, tmp_path / "x.jsonl", "--format", "nosuch")
    assert res.exit_code == 2 and "nosuch" in res.stderr
    res = cli("eval", "--help", with_db=False)
    assert res.exit_code == 0
    text = " ".join(res.stdout.split())
    for name in (*FORMATS, *METHODS, "--search-only", "--no-resume", "--delta", "--video-root"):
        assert name in text
