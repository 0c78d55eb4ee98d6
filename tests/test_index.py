"""`vqa index` end to end on generated videos, with the tiny profile (real classes, random weights)."""

from __future__ import annotations

import io
import shutil
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from index.store import Store
from tests.conftest import SCENE_DURATIONS, jsonl
from tests.synth import hex_rgb


def _runs(db) -> dict[str, dict]:
    store = Store(db)
    try:
        return {r["key"]: r for r in store.db.query("select * from runs")}
    finally:
        store.close()


def test_index_scenes_frames_captions(cli, scenes_video):
    path, cuts = scenes_video
    res = cli("index", str(path), "--profile", "tiny", "--jsonl")
    assert res.exit_code == 0, res.stderr
    (line,) = jsonl(res.stdout)
    assert line["status"] == "indexed"
    assert set(line["stages_run"]) == {"scenes", "frames", "captions"}

    res = cli("scenes", str(path), "--json")
    assert res.exit_code == 0, res.stderr
    data = __import__("json").loads(res.stdout)
    starts = [s["start"] for s in data["scenes"]]
    # every true cut found within 0.1 s, and no false cut
    assert len(starts) == len(cuts) + 1
    assert starts[0] == pytest.approx(0.0, abs=0.05)
    for found, truth in zip(starts[1:], cuts):
        assert abs(found - truth) <= 0.1, (starts, cuts)
    # one caption per scene, produced by the captioner (random weights, but real text)
    assert all(isinstance(s["caption"], str) and s["caption"].strip() for s in data["scenes"])
    assert data["captions_random_weights"] is True

    # one embedding per sampled frame (1 fps), unit norm, in time order, inside the video
    store = Store(cli.db)
    run = store.latest_run(line["video_id"], "frames")
    times, vecs = store.frame_matrix(run["key"])
    store.close()
    duration = sum(SCENE_DURATIONS)
    assert len(times) == pytest.approx(duration, abs=1.01)
    assert np.all(np.diff(times) > 0) and times[0] >= 0 and times[-1] <= duration + 0.2
    np.testing.assert_allclose(np.linalg.norm(vecs, axis=1), 1.0, atol=1e-5)


def test_reindex_unchanged_runs_nothing_and_fps_change_reruns_only_frames(cli, scenes_video, tmp_path):
    path, _ = scenes_video
    assert cli("index", str(path), "--profile", "tiny").exit_code == 0
    before = _runs(cli.db)

    res = cli("index", str(path), "--profile", "tiny", "--jsonl")
    assert jsonl(res.stdout)[0]["status"] == "unchanged"
    assert _runs(cli.db) == before  # no run started, none rewritten

    res = cli("index", str(path), "--profile", "tiny", "--fps", "2", "--jsonl")
    assert jsonl(res.stdout)[0]["stages_run"] == ["frames"]
    after = _runs(cli.db)
    new = {k: v for k, v in after.items() if k not in before}
    assert [r["stage"] for r in new.values()] == ["frames"]
    for k, r in before.items():  # scenes and captions untouched
        assert after[k] == r

    # a renamed copy is recognised by its content: not indexed again, both paths known
    copy = tmp_path / "renamed copy.mp4"
    shutil.copy(path, copy)
    res = cli("index", str(copy), "--profile", "tiny", "--jsonl")
    assert jsonl(res.stdout)[0]["status"] == "unchanged"
    store = Store(cli.db)
    (video,) = store.list_videos()
    assert {str(path), str(copy)} <= set(store.video_paths(video["id"]))
    store.close()


def test_vfr_timestamps(cli, vfr_video):
    path, scenes = vfr_video
    res = cli("index", str(path), "--profile", "tiny", "--fps", "4", "--no-captions", "--jsonl")
    assert res.exit_code == 0, res.stderr
    vid = jsonl(res.stdout)[0]["video_id"]
    store = Store(cli.db)
    run = store.latest_run(vid, "frames")
    # every sample, as search reads them (a picture held over several samples is stored once)
    times, _ = store.frame_matrix(run["key"])
    jpegs = store.frame_jpegs(run["key"], times)
    store.close()
    checked = 0
    for t in times:
        scene = next((s for s in scenes if s[0] + 0.15 < t < s[1] - 0.15), None)
        if scene is None:
            continue
        pixel = np.asarray(Image.open(io.BytesIO(jpegs[t])).convert("RGB"), dtype=float).mean(axis=(0, 1))
        assert np.abs(pixel - np.array(hex_rgb(scene[2]))).max() < 25, (t, pixel, scene)
        checked += 1
    assert checked >= 20
    assert times[-1] <= scenes[-1][1] + 0.1


def test_video_without_audio(cli, silent_scenes_video):
    res = cli("index", str(silent_scenes_video), "--profile", "tiny")
    assert res.exit_code == 0, res.stderr
    assert "1 indexed" in res.stderr


def test_bad_inputs_one_line_each_others_still_indexed(cli, scenes_video, tmp_path):
    good, _ = scenes_video
    text = tmp_path / "notes.mp4"
    text.write_text("this is not a video\n")
    truncated = tmp_path / "cut short.mp4"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 3])
    missing = tmp_path / "missing.mp4"
    res = cli("index", str(missing), str(text), str(truncated), str(good), "--profile", "tiny", "--jsonl")
    assert res.exit_code == 1
    assert "Traceback" not in res.stderr and "Traceback" not in res.stdout
    lines = res.stderr.strip().splitlines()
    for bad in (missing, text, truncated):
        mine = [ln for ln in lines if ln.startswith(str(bad) + ":")]
        assert len(mine) == 1, lines
        assert len(mine[0]) > len(str(bad)) + 5
    assert "moov atom not found" in [ln for ln in lines if ln.startswith(str(truncated))][0]
    statuses = {r["path"]: r["status"] for r in jsonl(res.stdout)}
    assert statuses[str(good)] == "indexed"
    # the failures are on record
    ls = cli("ls", "--failed", "--json")
    assert {r["path"] for r in __import__("json").loads(ls.stdout)} >= {str(missing), str(text), str(truncated)}


def test_help_does_not_import_torch():
    code = ("import sys; from typer.testing import CliRunner; from vqa_cli.app import app; "
            "r = CliRunner().invoke(app, ['--help']); assert r.exit_code == 0; "
            "r = CliRunner().invoke(app, ['index', '--help']); assert r.exit_code == 0; "
            "print(sorted(m for m in ('torch', 'transformers', 'open_clip', 'cv2') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_entry_point_tunes_gc_and_keeps_exit_codes():
    """`vqa` (main) collects less often than CPython's default and freezes the heap on the way out, on a
    usage error too, with the exit code unchanged."""
    code = ("import atexit, gc, sys; from vqa_cli.app import GC_THRESHOLDS, main; "
            "atexit.register(lambda: print(gc.get_threshold() == GC_THRESHOLDS, gc.get_freeze_count() > 0)); "
            "sys.argv = ['vqa', 'ask']; main()")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 2
    assert out.stdout.split() == ["True", "True"]
    assert out.stderr.strip().splitlines() == ["error: give VIDEO and QUESTION, or VIDEO --questions FILE, or --batch FILE"]


def test_hub_model_missing_and_hub_unreachable_is_one_line(tmp_path, silent_scenes_video):
    """With HF_HUB_OFFLINE unset and the hub unreachable, a hub model fails at once with its name and
    what to do: no retries, no library log lines."""
    import os

    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "VQA_HUB_UNREACHABLE")}
    env.update(HF_ENDPOINT="http://127.0.0.1:9", VQA_HOME=str(tmp_path / "home"))
    proc = subprocess.run([sys.executable, "-m", "vqa_cli.app", "index", str(silent_scenes_video),
                           "--profile", "cpu", "--db", str(tmp_path / "v.db")],
                          capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 2, lines  # the file's line, then the summary
    assert lines[0].startswith(f"{silent_scenes_video}: CLIP 'ViT-B-32@laion2b_s34b_b79k' is not in the local cache")
    assert "cannot be reached" in lines[0] and "--clip-pretrained" in lines[0]
    assert "Traceback" not in proc.stderr and "Retrying" not in proc.stderr


def test_ls_shows_stages_of_any_profile_and_against_one(cli, silent_scenes_video):
    assert cli("index", str(silent_scenes_video), "--profile", "tiny", "--no-captions").exit_code == 0
    import json

    (row,) = json.loads(cli("ls", "--json").stdout)
    assert row["stages"] == {"scenes": "done", "frames": "done"}  # what was run, whatever the models
    (row,) = json.loads(cli("ls", "--json", "--profile", "tiny").stdout)
    assert row["stages"]["captions"] == "missing" and not row["complete"]  # what `tiny` would still do
