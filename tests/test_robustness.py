"""Bad input never stops a batch, and the batch tells the truth.

A folder of 12 generated videos plus a zoo of broken, odd and tricky inputs is indexed with ``--jobs 2``
by a real ``vqa`` process; then the ways of naming inputs (stdin, ``-0``, ``--glob``, globs) and the
housekeeping commands (``ls``, ``rm``, ``gc``, ``doctor``) run in-process.
"""

from __future__ import annotations

import ctypes
import io
import json
import os
import random
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from index.store import Store
from pipelines.stages.media import ffmpeg_binary
from tests.conftest import jsonl
from tests.synth import SOURCES, make_scenes_video, rotate_copy

ROOT = Path(__file__).resolve().parent.parent
PR_CAPBSET_DROP, CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH = 24, 1, 2


# -- helpers shared with test_concurrency ------------------------------------------------------------
def vqa_env(home: Path, **extra: str) -> dict[str, str]:
    """Environment of a `vqa` child process: offline, private home, the session's tiny models."""
    env = dict(os.environ)
    for k in ("VQA_DB", "VQA_PROFILE", "VQA_TEST_PAUSE_AT"):
        env.pop(k, None)
    env.update(HF_HUB_OFFLINE="1", VQA_HOME=str(home), PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1", **extra)
    return env


def vqa_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "vqa_cli.app", *args]


def small_video(path: Path, i: int, *, audio: bool = False, durations: tuple[float, ...] = (1.0, 1.5)) -> Path:
    """A 160x90 two-scene video whose content depends on ``i`` (distinct fingerprints)."""
    d = [durations[0] + 0.1 * (i % 4), *durations[1:]]
    make_scenes_video(path, d, size="160x90", audio=audio, labels=False, crf=35,
                      sources=[SOURCES[i % len(SOURCES)], SOURCES[(i + 3 + i // len(SOURCES)) % len(SOURCES)]])
    return path


def ffmpeg(*args: str) -> None:
    subprocess.run([ffmpeg_binary(), "-y", "-hide_banner", "-loglevel", "error", *args], check=True,
                   capture_output=True)


def integrity(db: Path) -> str:
    conn = sqlite3.connect(db)
    try:
        return conn.execute("PRAGMA integrity_check").fetchone()[0]
    finally:
        conn.close()


def build_tiny_models() -> None:
    """Build the tiny models once, before child processes need them (they share VQA_MODELS)."""
    from pipelines.backends.tiny import tiny_blip, tiny_clip

    tiny_clip()
    tiny_blip()


@pytest.fixture(scope="module")
def built_models(models_home) -> Path:
    build_tiny_models()
    return models_home


# -- making a file unreadable for real, also for root -------------------------------------------------
def _drop_dac_caps() -> None:
    """preexec_fn: without these capabilities in its bounding set, an exec'd root process honours file
    modes like anyone else (chmod 000 means unreadable)."""
    libc = ctypes.CDLL(None, use_errno=True)
    for cap in (CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH):
        if libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP)")


def unreadable_support(tmp: Path) -> tuple[object, str | None]:
    """(preexec_fn for the child, None) when a chmod 000 file is really unreadable to the child, else
    (None, why not)."""
    probe = tmp / "probe-unreadable"
    probe.write_text("x")
    probe.chmod(0)
    preexec = _drop_dac_caps if os.geteuid() == 0 else None
    try:
        proc = subprocess.run([sys.executable, "-c", f"open({str(probe)!r}).read()"], preexec_fn=preexec,
                              capture_output=True, text=True)
    except (OSError, subprocess.SubprocessError) as e:
        return None, f"cannot drop CAP_DAC_OVERRIDE for a child process: {e}"
    finally:
        probe.unlink()
    if "PermissionError" not in proc.stderr:
        return None, "a chmod 000 file stays readable to child processes here"
    return preexec, None


# -- the zoo ----------------------------------------------------------------------------------------
GOOD_NAMES = ["good01.mp4", "good02.mp4", "good03.mp4", "good04.mp4", "good05.mp4", "good06.mp4",
              "sub/deeper/nested.mp4", "sub/clip.mov", "with space.mp4", "ünïcødé 视频.mp4", "[brackets].mp4"]


@pytest.fixture(scope="module")
def zoo(tmp_path_factory) -> dict:
    """base/: ``-weird.mp4`` (good, a leading dash), ``zoo/`` (11 more good videos, odd-but-valid videos,
    two more names for two of them, and bad inputs), ``missing.mp4`` (named but absent)."""
    base = tmp_path_factory.mktemp("zoo")
    zoo = base / "zoo"
    (zoo / "sub" / "deeper").mkdir(parents=True)
    good = [small_video(base / "-weird.mp4", 0, audio=True)]
    good += [small_video(zoo / name, i + 1, audio=i % 3 == 0) for i, name in enumerate(GOOD_NAMES)]
    odd = {"single": zoo / "single frame.mp4", "tiny": zoo / "tiny 7x5.avi", "wide": zoo / "wide 3840x16.mp4",
           "rotated": zoo / "rotated.mp4"}
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=160x90:rate=25", "-frames:v", "1", "-c:v", "libx264",
           "-pix_fmt", "yuv420p", str(odd["single"]))
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=8x6:rate=25", "-t", "1.5", "-vf", "scale=7:5", "-c:v", "mpeg4",
           str(odd["tiny"]))
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=3840x16:rate=25", "-t", "1.5", "-c:v", "libx264",
           "-pix_fmt", "yuv420p", str(odd["wide"]))
    plain = base / "plain.mp4"
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=160x90:rate=25", "-t", "2", "-c:v", "libx264", "-pix_fmt",
           "yuv420p", str(plain))
    rotate_copy(plain, odd["rotated"], 90)  # -display_rotation where ffmpeg has it (not 5.1), else the tag
    plain.unlink()
    (zoo / "link to good01.mp4").symlink_to(zoo / "good01.mp4")
    shutil.copy(zoo / "good02.mp4", zoo / "copy of good02.mp4")
    (zoo / "readme.txt").write_text("not a video extension: never picked up from a folder\n")

    bad: dict[str, tuple[str, str]] = {}  # path as given/found -> (expected words in the cause)

    def add_bad(path: Path, *words: str) -> None:
        bad[str(path.relative_to(base))] = words

    (zoo / "notes.mp4").write_text("this is not a video\n")
    add_bad(zoo / "notes.mp4", "ffmpeg: moov atom not found")
    rng = random.Random(7)
    (zoo / "noise.mkv").write_bytes(bytes(rng.randrange(256) for _ in range(20000)))
    add_bad(zoo / "noise.mkv", "ffmpeg: EBML header parsing failed")
    data = (zoo / "good03.mp4").read_bytes()
    (zoo / "truncated.mp4").write_bytes(data[: len(data) // 3])  # moov at the end: cut off
    add_bad(zoo / "truncated.mp4", "ffmpeg: moov atom not found")
    faststart = base / "faststart.mp4"
    ffmpeg("-i", str(zoo / "good04.mp4"), "-c", "copy", "-movflags", "+faststart", str(faststart))
    data = faststart.read_bytes()
    (zoo / "truncated faststart.mp4").write_bytes(data[: len(data) // 3])  # header intact, stream cut
    add_bad(zoo / "truncated faststart.mp4", "truncated", "ffmpeg:", "partial file")
    corrupt = bytearray(data)
    for i in range(len(corrupt) // 3, len(corrupt)):
        corrupt[i] = rng.randrange(256)
    (zoo / "corrupt.mp4").write_bytes(bytes(corrupt))
    add_bad(zoo / "corrupt.mp4", "ffmpeg", "Invalid NAL unit size")
    faststart.unlink()
    (zoo / "empty.mp4").write_bytes(b"")
    add_bad(zoo / "empty.mp4", "empty file")
    ffmpeg("-f", "lavfi", "-i", "sine=frequency=440:duration=2", "-c:a", "aac", str(zoo / "audio only.mp4"))
    add_bad(zoo / "audio only.mp4", "audio-only")
    os.mkfifo(zoo / "pipe.mp4")
    add_bad(zoo / "pipe.mp4", "not a regular file")
    (zoo / "broken link.mp4").symlink_to(zoo / "gone.mp4")
    add_bad(zoo / "broken link.mp4", "broken symbolic link")
    (zoo / "dir.mp4").mkdir()  # a folder named like a video: walked as a folder, reported when named
    add_bad(zoo / "dir.mp4", "is a directory")
    bad["missing.mp4"] = ("no such file",)
    preexec, why = unreadable_support(base)
    if preexec is not None or why is None:
        shutil.copy(zoo / "good05.mp4", zoo / "locked.mp4")
        (zoo / "locked.mp4").chmod(0)
        add_bad(zoo / "locked.mp4", "permission denied")
    return {"base": base, "good": good, "odd": odd, "bad": bad, "preexec": preexec, "why_readable": why}


def test_zoo_with_jobs_2_indexes_every_good_video_and_reports_every_bad_input_once(zoo, built_models, tmp_path):
    base, db = zoo["base"], tmp_path / "zoo.db"
    args = ["index", "--profile", "tiny", "--no-captions", "--jobs", "2", "--jsonl", "--db", str(db), "--",
            "zoo", "zoo/dir.mp4", "missing.mp4", "-weird.mp4"]
    proc = subprocess.run(vqa_cmd(*args), cwd=base, env=vqa_env(tmp_path / "home"), capture_output=True,
                          preexec_fn=zoo["preexec"], timeout=300)
    out, err = proc.stdout.decode(), proc.stderr.decode()
    assert proc.returncode == 1, err
    assert "Traceback" not in err and "internal error" not in err, err
    results = jsonl(out)
    by_path = {r["path"]: r for r in results}
    assert len(by_path) == len(results)  # one line per input, each input once

    # every bad input: failed, one stderr line naming it, with its cause (ffmpeg's words where it failed)
    lines = err.strip().splitlines()
    for path, words in zoo["bad"].items():
        assert by_path[path]["status"] == "failed", by_path[path]
        mine = [ln for ln in lines if ln.startswith(path + ": ")]
        assert len(mine) == 1, (path, lines)
        for w in words:
            assert w.lower() in mine[0].lower(), (w, mine[0])
    assert "readme.txt" not in out + err

    # every good video indexed exactly once; the second name of a content is 'unchanged'
    good = [str(p.relative_to(base)) for p in zoo["good"]] + [str(p.relative_to(base)) for p in zoo["odd"].values()]
    extra = ["zoo/link to good01.mp4", "zoo/copy of good02.mp4"]
    assert sorted(by_path) == sorted(good + extra + list(zoo["bad"]))
    ids = {}
    for path in good + extra:
        assert by_path[path]["status"] in ("indexed", "unchanged"), by_path[path]
        ids.setdefault(by_path[path]["video_id"], []).append(by_path[path]["status"])
    assert len(ids) == len(good)
    assert all(sorted(st) in (["indexed"], ["indexed", "unchanged"]) for st in ids.values()), ids
    n_bad = len(zoo["bad"])
    assert lines[-1] == f"{len(good)} indexed, 2 unchanged, {n_bad} failed"

    assert integrity(db) == "ok"
    store = Store(db)
    try:
        for vid in ids:
            runs = store.runs_for(vid)
            assert sorted((r["stage"], r["status"]) for r in runs) == [("frames", "done"), ("scenes", "done")]
        assert not list(store.db.query("select * from claims"))
        # identical content under two names: both paths known
        vid1 = by_path["zoo/good01.mp4"]["video_id"]
        assert by_path["zoo/link to good01.mp4"]["video_id"] == vid1
        assert {str(base / "zoo/good01.mp4"), str(base / "zoo/link to good01.mp4")} <= set(store.video_paths(vid1))
        vid2 = by_path["zoo/good02.mp4"]["video_id"]
        assert set(store.video_paths(vid2)) == {str(base / "zoo/good02.mp4"), str(base / "zoo/copy of good02.mp4")}

        def frames(path: str) -> list[tuple[float, tuple[int, int]]]:
            """Every sample as search reads it (an unchanged picture is stored once for its samples)."""
            key = store.latest_run(by_path[path]["video_id"], "frames")["key"]
            times = [float(t) for t in store.frame_matrix(key)[0]]
            jpegs = store.frame_jpegs(key, times)
            return [(t, Image.open(io.BytesIO(jpegs[t])).size) for t in times]

        # rotated: displayed upright (portrait), timestamps in order and inside the video
        rot = by_path["zoo/rotated.mp4"]
        video = store.get_video(rot["video_id"])
        assert (video["width"], video["height"], video["rotation"] % 180) == (90, 160, 90)
        fr = frames("zoo/rotated.mp4")
        assert len(fr) == 2 and all(h > w for _, (w, h) in fr)
        ts = [t for t, _ in fr]
        assert ts == sorted(ts) and ts[0] == pytest.approx(0, abs=0.05) and ts[-1] <= video["duration"]
        # one frame; frames a few pixels small; a frame 3840 wide and 16 high
        assert [t for t, _ in frames("zoo/single frame.mp4")] == [pytest.approx(0, abs=0.05)]
        assert len(store.scenes(store.latest_run(by_path["zoo/single frame.mp4"]["video_id"], "scenes")["key"])) == 1
        assert len(frames("zoo/tiny 7x5.avi")) == 2 and len(frames("zoo/wide 3840x16.mp4")) == 2
        assert frames("zoo/wide 3840x16.mp4")[0][1][0] > 100 * frames("zoo/wide 3840x16.mp4")[0][1][1]
        # a failed file leaves no run marked running
        assert not list(store.db.query("select * from runs where status = 'running'"))
    finally:
        store.close()

    # the failures are on record, with their causes
    from typer.testing import CliRunner

    from vqa_cli.app import app

    res = CliRunner().invoke(app, ["ls", "--failed", "--json", "--db", str(db)])
    failed = {r["path"]: r["message"] for r in json.loads(res.stdout)}
    assert set(failed) == {os.path.abspath(base / p) for p in zoo["bad"]}
    res = CliRunner().invoke(app, ["ls", "--failed", "--db", str(db)])
    assert len(res.stdout.strip().splitlines()) == len(zoo["bad"])


def test_unreadable_file_is_reported(zoo, tmp_path):
    if zoo["why_readable"]:
        pytest.skip(zoo["why_readable"])
    base = zoo["base"]
    proc = subprocess.run(vqa_cmd("index", "--profile", "tiny", "--db", str(tmp_path / "u.db"), "zoo/locked.mp4"),
                          cwd=base, env=vqa_env(tmp_path / "home"), capture_output=True, text=True,
                          preexec_fn=zoo["preexec"], timeout=120)
    assert proc.returncode == 1
    assert proc.stderr.splitlines()[0] == "zoo/locked.mp4: permission denied"


# -- naming inputs: stdin, -0, --glob, globs; summary and --jsonl ---------------------------------------
@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("clips")
    (folder / "more").mkdir()
    small_video(folder / "a.mp4", 20)
    small_video(folder / "b c.mp4", 21)
    small_video(folder / "more" / "d.mov", 22)
    (folder / "notes.txt").write_text("x")
    return folder


def test_stdin_nul_glob_summary_and_jsonl(cli, clips, built_models):
    a, bc, d = clips / "a.mp4", clips / "b c.mp4", clips / "more" / "d.mov"
    base = ["--profile", "tiny", "--no-captions"]
    res = cli("index", "-", *base, "--jsonl", input=f"{a}\n{bc}\n")
    assert res.exit_code == 0, res.stderr
    assert [(r["path"], r["status"]) for r in jsonl(res.stdout)] == [(str(a), "indexed"), (str(bc), "indexed")]
    assert res.stderr.strip().splitlines()[-1] == "2 indexed, 0 unchanged, 0 failed"
    assert all(set(r) >= {"video_id", "stages_run", "seconds", "duration", "error"} for r in jsonl(res.stdout))

    # NUL-separated (names may hold anything but NUL), plus a path that is not there
    res = cli("index", "-", "-0", *base, "--jsonl", input=f"{bc}\0{d}\0{clips / 'gone.mp4'}\0")
    assert res.exit_code == 1
    assert [r["status"] for r in jsonl(res.stdout)] == ["unchanged", "indexed", "failed"]
    assert res.stderr.strip().splitlines() == [f"{clips / 'gone.mp4'}: no such file",
                                                "1 indexed, 1 unchanged, 1 failed"]

    # --glob picks files in folders by pattern; a glob argument expands; plain text output
    res = cli("index", str(clips), "--glob", "*.mov", *base, "--jsonl")
    assert [r["path"] for r in jsonl(res.stdout)] == [str(d)]
    res = cli("index", str(clips / "*.mp4"), *base)
    assert res.exit_code == 0
    assert [ln.split()[0] for ln in res.stdout.splitlines()] == ["unchanged", "unchanged"]
    assert res.stderr.strip() == "0 indexed, 2 unchanged, 0 failed"
    # a folder walk ignores non-video extensions; nothing found is an error
    res = cli("index", str(clips / "notes.txt"), *base)
    assert res.exit_code == 1 and "notes.txt: " in res.stderr
    res = cli("index", str(clips), "--glob", "*.webm", *base)
    assert res.exit_code == 1 and "no video files" in res.stderr


# -- housekeeping --------------------------------------------------------------------------------------
def _ls(cli) -> dict[str, dict]:
    res = cli("ls", "--json", "--profile", "tiny")
    assert res.exit_code == 0, res.stderr
    return {p: r for r in json.loads(res.stdout) for p in r["paths"]}


def test_ls_rm_gc_doctor(cli, clips, built_models, tmp_path):
    a, bc = clips / "a.mp4", clips / "b c.mp4"
    moved = tmp_path / "moved.mp4"
    shutil.copy(clips / "more" / "d.mov", moved)
    assert cli("index", str(a), str(moved), "--profile", "tiny").exit_code == 0
    assert cli("index", str(bc), "--profile", "tiny", "--no-captions").exit_code == 0
    ls = _ls(cli)
    assert ls[str(a)]["stages"] == {"scenes": "done", "frames": "done", "captions": "done"}
    assert ls[str(a)]["complete"] is True
    assert ls[str(bc)]["stages"] == {"scenes": "done", "frames": "done", "captions": "missing"}
    assert ls[str(bc)]["complete"] is False
    text = cli("ls", "--profile", "tiny").stdout
    assert "captions:missing" in text and "captions:ok" in text

    # rm forgets a video and every row of its runs
    vid = ls[str(a)]["video_id"]
    store = Store(cli.db)
    keys = [r["key"] for r in store.runs_for(vid)]
    store.close()
    res = cli("rm", str(a))
    assert res.exit_code == 0 and res.stdout.strip() == f"removed {a}"
    assert str(a) not in _ls(cli)
    store = Store(cli.db)
    for table in ("scenes", "frames", "captions", "texts"):
        assert store.db.execute(f"select count(*) from {table} where run_key in ({','.join('?' * len(keys))})",
                                keys).fetchone()[0] == 0
    assert not store.runs_for(vid)
    # leftovers of a run that failed, to be dropped by gc
    store.start_run("k-failed", ls[str(bc)]["video_id"], "frames", "m", "m", {})  # a run needs its video
    store.add_rows("frames", [{"run_key": "k-failed", "idx": 0, "t": 0.0, "embedding": b"", "jpeg": b""}])
    store.fail_run("k-failed", "boom")
    store.close()
    res = cli("rm", str(tmp_path / "never-indexed.mp4"))
    assert res.exit_code == 1 and "not indexed" in res.stderr

    # gc forgets videos whose files are gone, drops unfinished runs' rows, vacuums
    moved.unlink()
    res = cli("gc")
    assert res.exit_code == 0, res.stderr
    assert res.stdout.startswith("1 videos forgotten; 1 rows of unfinished runs dropped")
    ls = _ls(cli)
    assert set(ls) == {str(bc)}
    store = Store(cli.db)
    assert store.db.execute("select count(*) from frames where run_key = 'k-failed'").fetchone()[0] == 0
    assert store.get_run("k-failed")["status"] == "failed"
    assert store.db.execute("PRAGMA freelist_count").fetchone()[0] == 0
    store.close()

    # doctor: database integrity, ok here, not ok on a damaged copy
    res = cli("doctor", "--json", "--profile", "tiny")
    db_check = next(c for c in json.loads(res.stdout) if c["name"] == "database")
    assert db_check["ok"] is True and "integrity ok" in db_check["detail"]
    damaged = tmp_path / "damaged.db"
    src = sqlite3.connect(cli.db)
    dst = sqlite3.connect(damaged)
    src.backup(dst)
    dst.execute("PRAGMA journal_mode = DELETE")
    dst.close()
    src.close()
    raw = bytearray(damaged.read_bytes())
    page = 4096
    for i in range(2 * page, len(raw) - page, page):  # scribble over every b-tree page but the first two
        raw[i + 8: i + 200] = bytes(range(192))
    damaged.write_bytes(bytes(raw))
    res = cli("doctor", "--json", "--profile", "tiny", db_path=damaged)
    assert res.exit_code == 1
    db_check = next(c for c in json.loads(res.stdout) if c["name"] == "database")
    assert db_check["ok"] is False
