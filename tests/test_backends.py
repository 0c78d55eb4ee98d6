"""One contract per stage, a registry filled from entry points, and a model's identity as its weights."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import jsonl

ROOT = Path(__file__).resolve().parents[1]


def _runs(db: Path, stage: str) -> list[dict]:
    con = sqlite3.connect(db)
    con.row_factory = sqlite3.Row
    try:
        return [dict(r) for r in con.execute(
            "select * from runs where stage = ? order by started_at", [stage])]
    finally:
        con.close()


def _vectors(db: Path, key: str) -> np.ndarray:
    con = sqlite3.connect(db)
    try:
        rows = con.execute("select embedding from frames where run_key = ? order by idx", [key]).fetchall()
    finally:
        con.close()
    return np.stack([np.frombuffer(r[0], dtype="<f4") for r in rows])


@pytest.fixture
def two_clips(tmp_path, models_home):
    """Two checkpoints of one tiny CLIP config, of the same size, differing only in one middle tensor."""
    import torch

    from pipelines.backends.tiny import tiny_clip

    cfg, ckpt = tiny_clip()
    a, b = tmp_path / "a.pt", tmp_path / "b.pt"
    state = torch.load(ckpt, map_location="cpu")
    torch.save(state, a)
    names = [n for n, v in state.items() if v.dtype.is_floating_point and v.ndim == 2]
    middle = names[len(names) // 2]
    torch.manual_seed(1)
    state[middle] = state[middle] + 0.5 * torch.randn_like(state[middle])
    torch.save(state, b)
    os.utime(b, ns=(a.stat().st_atime_ns, a.stat().st_mtime_ns))
    assert a.stat().st_size == b.stat().st_size
    return cfg, a, b


def test_identity_is_the_weights_content(tmp_path, two_clips):
    from pipelines.backends import registry

    cfg, a, b = two_clips
    fa, fb = registry.identify("clip", f"{cfg}@{a}"), registry.identify("clip", f"{cfg}@{b}")
    assert fa != fb
    copy = tmp_path / "elsewhere" / "a-copy.pt"
    copy.parent.mkdir()
    shutil.copy(a, copy)
    assert registry.identify("clip", f"{cfg}@{copy}") == fa  # where the file lives does not matter
    shutil.copy(b, a)  # replaced in place (same size): a new identity
    os.utime(a, (a.stat().st_atime, a.stat().st_mtime + 5))
    assert registry.identify("clip", f"{cfg}@{a}") == fb


def test_second_clip_checkpoint_reruns_frames_only(cli, scenes_video, two_clips):
    path, _ = scenes_video
    cfg, a, b = two_clips
    res = cli("index", str(path), "--profile", "tiny", "--clip", str(cfg), "--clip-pretrained", str(a), "--jsonl")
    assert res.exit_code == 0, res.stderr
    res = cli("index", str(path), "--profile", "tiny", "--clip", str(cfg), "--clip-pretrained", str(b), "--jsonl")
    assert res.exit_code == 0, res.stderr
    (line,) = jsonl(res.stdout)
    assert line["status"] == "indexed" and line["stages_run"] == ["frames"]
    runs = _runs(cli.db, "frames")
    assert len(runs) == 2 and all(r["status"] == "done" for r in runs)
    va, vb = _vectors(cli.db, runs[0]["key"]), _vectors(cli.db, runs[1]["key"])
    assert va.shape == vb.shape and np.abs(va - vb).max() > 1e-3  # the database holds B's embeddings too

    # B's stored embeddings are what B computes: the frames' own thumbnails, embedded by B, match them
    import io

    from PIL import Image

    from pipelines.stages.clip import ClipEmbedder

    con = sqlite3.connect(cli.db)
    jpegs = [r[0] for r in con.execute("select jpeg from frames where run_key = ? order by idx limit 3",
                                       [runs[1]["key"]])]
    con.close()
    thumbs = [np.asarray(Image.open(io.BytesIO(j)).convert("RGB")) for j in jpegs]
    emb_b = ClipEmbedder(f"{cfg}@{b}").embed_images(thumbs)
    emb_a = ClipEmbedder(f"{cfg}@{a}").embed_images(thumbs)
    assert (emb_b * vb[:3]).sum(axis=1).mean() > (emb_a * vb[:3]).sum(axis=1).mean()

    # each checkpoint's run stays: back to A is "unchanged"
    res = cli("index", str(path), "--profile", "tiny", "--clip", str(cfg), "--clip-pretrained", str(a), "--jsonl")
    assert jsonl(res.stdout)[0]["status"] == "unchanged"


def test_search_with_another_clip_fails_in_one_line(cli, scenes_video, two_clips):
    path, _ = scenes_video
    cfg, a, b = two_clips
    assert cli("index", str(path), "--profile", "tiny", "--clip", str(cfg), "--clip-pretrained", str(a)).exit_code == 0
    res = cli("search", str(path), "a red frame", "--profile", "tiny", "--clip", str(cfg),
              "--clip-pretrained", str(b))
    assert res.exit_code == 1
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in res.stderr
    assert str(a) in lines[0] and str(cfg) in lines[0]  # names the CLIP that indexed it and the one asked for
    # with no CLIP named, the search uses the one that indexed the video (and says nothing)
    res = cli("search", str(path), "a red frame", "--json")
    assert res.exit_code == 0, res.stderr
    assert json.loads(res.stdout)["moments"]


def test_clip_weights_changed_in_place_is_told(cli, scenes_video, two_clips):
    path, _ = scenes_video
    cfg, a, b = two_clips
    assert cli("index", str(path), "--profile", "tiny", "--clip", str(cfg), "--clip-pretrained", str(a)).exit_code == 0
    shutil.copy(b, a)
    res = cli("search", str(path), "a red frame")
    assert res.exit_code == 1 and len(res.stderr.strip().splitlines()) == 1
    assert "other weights" in res.stderr
    res = cli("index", str(path), "--profile", "tiny", "--clip", str(cfg), "--clip-pretrained", str(a), "--jsonl")
    assert jsonl(res.stdout)[0]["stages_run"] == ["frames"]
    assert cli("search", str(path), "a red frame").exit_code == 0


def test_captioner_folder_whose_weights_change_reruns_captions_only(cli, scenes_video, tmp_path, models_home):
    from transformers import BlipForConditionalGeneration

    from pipelines.backends.tiny import tiny_blip

    path, _ = scenes_video
    folder = tmp_path / "my-captioner"
    shutil.copytree(tiny_blip(), folder)
    args = ("index", str(path), "--profile", "tiny", "--captioner", str(folder), "--jsonl")
    assert cli(*args).exit_code == 0
    assert jsonl(cli(*args).stdout)[0]["status"] == "unchanged"

    model = BlipForConditionalGeneration.from_pretrained(folder)
    import torch

    with torch.no_grad():
        model.text_decoder.cls.predictions.decoder.weight.mul_(-1.0)
    model.save_pretrained(folder)  # same folder, new weights
    res = cli(*args)
    (line,) = jsonl(res.stdout)
    assert line["status"] == "indexed" and line["stages_run"] == ["captions"], res.stderr
    runs = _runs(cli.db, "captions")
    assert len(runs) == 2 and runs[0]["model_fp"] != runs[1]["model_fp"]


def test_old_database_redoes_only_what_has_no_identity(cli, scenes_video, two_clips):
    """A database written by the previous release (model fingerprints from sampled bytes of the weight
    files) opens, `vqa ls` shows it, and `vqa index` redoes only the runs whose identity is unknown."""
    import hashlib

    path, _ = scenes_video
    cfg, a, _ = two_clips
    args = ("index", str(path), "--profile", "tiny", "--clip", str(cfg), "--clip-pretrained", str(a), "--jsonl")
    assert cli(*args).exit_code == 0

    def old_fingerprint(name: str, files: list[str]) -> str:  # the 0.1 release's scheme, verbatim
        h = hashlib.blake2b(digest_size=8)
        h.update(name.encode())
        for p in sorted(files):
            size = os.path.getsize(p)
            h.update(f"{os.path.basename(p)}:{size}".encode())
            with open(p, "rb") as f:
                h.update(f.read(1 << 16))
                if size > 1 << 17:
                    f.seek(size - (1 << 16))
                    h.update(f.read())
        return h.hexdigest()

    from index.store import run_key

    spec = f"{cfg}@{a}"
    old_fp = old_fingerprint(spec, [str(cfg), str(a)])
    (frames,) = _runs(cli.db, "frames")
    old_key = run_key(frames["video_id"], "frames", old_fp, json.loads(frames["params"]))
    con = sqlite3.connect(cli.db)
    with con:
        con.execute("update runs set model_fp = ?, key = ? where key = ?", [old_fp, old_key, frames["key"]])
        con.execute("update frames set run_key = ? where run_key = ?", [old_key, frames["key"]])
    before = {r["stage"]: r["key"] for r in _runs(cli.db, "scenes") + _runs(cli.db, "captions")}
    con.close()

    res = cli("ls")
    assert res.exit_code == 0 and path.name in res.stdout
    res = cli(*args)
    (line,) = jsonl(res.stdout)
    assert line["stages_run"] == ["frames"], res.stderr
    after = {r["stage"]: r["key"] for r in _runs(cli.db, "scenes") + _runs(cli.db, "captions")}
    assert after == before  # scenes and captions kept: their identities did not change


@pytest.fixture(scope="module")
def plugin_site(tmp_path_factory) -> Path:
    """The test package under tests/plugins, installed (pip, its own pyproject and entry point) into a
    folder that the `vqa` subprocesses get on their path: vqa never imports it by hand."""
    src = tmp_path_factory.mktemp("plugin-src")
    shutil.copytree(ROOT / "tests" / "plugins" / "vqa_colour_captioner", src / "pkg")
    site = tmp_path_factory.mktemp("plugin-site")
    proc = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
                           "--no-index", "--target", str(site), str(src / "pkg")],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert (site / "vqa_colour_captioner.py").exists()
    return site


def _vqa(args: list[str], env_extra: dict[str, str]) -> subprocess.CompletedProcess:
    env = {**os.environ, **env_extra, "HF_HUB_OFFLINE": "1"}
    return subprocess.run([sys.executable, "-c", "from vqa_cli.app import main; main()", *args], capture_output=True, text=True,
                          env=env, cwd=str(ROOT), timeout=600)


def test_plugin_backend_through_entry_point(plugin_site, scenes_video, tmp_path):
    path, cuts = scenes_video
    env = {"PYTHONPATH": str(plugin_site), "VQA_HOME": str(tmp_path / "home")}
    res = _vqa(["models"], env)
    assert res.returncode == 0, res.stderr
    assert "colour [vqa-colour-captioner]" in res.stdout

    db = tmp_path / "p.db"
    res = _vqa(["index", str(path), "--profile", "tiny", "--captioner", "colour", "--jsonl", "--db", str(db)], env)
    assert res.returncode == 0, res.stderr
    assert "captions" in jsonl(res.stdout)[0]["stages_run"]
    res = _vqa(["scenes", str(path), "--json", "--db", str(db)], env)
    captions = [s["caption"] for s in json.loads(res.stdout)["scenes"]]
    assert len(captions) == len(cuts) + 1
    assert all(c.startswith("a mostly ") and c.endswith(" frame") for c in captions)
    assert len(set(captions)) >= 2  # computed from each scene's own frame, not canned
    # without the package on the path the same spec is not a captioner vqa knows: one line, exit 1
    res = _vqa(["index", str(path), "--profile", "tiny", "--captioner", "colour", "--db", str(tmp_path / "q.db")],
               {"VQA_HOME": str(tmp_path / "home")})
    assert res.returncode == 1 and "Traceback" not in res.stderr


def test_ask_without_profile_uses_the_profile_that_indexed_the_video(cli, scenes_video):
    """The default-profile trap: indexed with one profile, asked with none, the video is answered with the
    models that indexed it (the default profile's models are not even present here)."""
    path, _ = scenes_video
    assert cli("index", str(path), "--profile", "tiny").exit_code == 0
    res = cli("ask", str(path), "What colour is the first scene?", "--json", "--frames", "2")
    assert res.exit_code == 0, res.stderr
    out = json.loads(res.stdout)
    assert out["settings"]["profile"] == "tiny"
    res = cli("ls", "--failed")
    assert res.exit_code == 0 and str(path.name) not in res.stdout
    # naming another profile whose CLIP did not index it: one line naming both, and the flag to pass
    res = cli("search", str(path), "red", "--profile", "offline", "--clip", "ViT-B-32@laion2b_s34b_b79k")
    assert res.exit_code == 1 and len(res.stderr.strip().splitlines()) == 1
    assert "tiny-clip" in res.stderr and "ViT-B-32" in res.stderr and "--profile tiny" in res.stderr


def test_a_failed_attempt_with_missing_models_is_told_and_undoes_nothing(cli, scenes_video):
    path, _ = scenes_video
    assert cli("index", str(path), "--profile", "tiny").exit_code == 0
    res = cli("index", str(path), "--profile", "cpu")  # its hub models are not here (HF_HUB_OFFLINE)
    assert res.exit_code == 1 and "Traceback" not in res.stderr
    line = res.stderr.strip().splitlines()[0]
    assert "[profile cpu]" in line and "pass --profile tiny" in line
    res = cli("ls")
    assert "frames:ok" in res.stdout and "frames:failed" not in res.stdout  # the true state
    res = cli("ls", "--failed")
    assert path.name in res.stdout  # the failed attempt is listed with its cause
    assert cli("ask", str(path), "what is shown?", "--frames", "2").exit_code == 0


def test_a_file_that_is_no_weights_and_a_model_asking_to_run_its_code_are_one_line(cli, scenes_video, tmp_path,
                                                                                   models_home):
    from pipelines.backends.tiny import tiny_clip

    path, _ = scenes_video
    cfg, _ = tiny_clip()
    bad = tmp_path / "bad.pt"
    bad.write_bytes(os.urandom(50_000))
    res = cli("index", str(path), "--profile", "tiny", "--clip", str(cfg), "--clip-pretrained", str(bad))
    assert res.exit_code == 1 and "Traceback" not in res.stderr
    assert "not a weights file" in res.stderr.splitlines()[0]

    remote = tmp_path / "remote"
    remote.mkdir()
    (remote / "config.json").write_text(json.dumps({"model_type": "mystery", "architectures": ["MysteryForCausalLM"],
                                                    "auto_map": {"AutoModelForCausalLM": "modeling.Mystery"}}))
    (remote / "modeling.py").write_text("raise SystemExit('this code must never run')\n")
    assert cli("index", str(path), "--profile", "tiny").exit_code == 0
    res = cli("ask", str(path), "what is shown?", "--answerer", str(remote))
    assert res.exit_code == 1 and "Traceback" not in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1 and "its own code" in res.stderr


def test_a_symlink_loop_is_told_as_such(cli, tmp_path):
    a, b = tmp_path / "a.mp4", tmp_path / "b.mp4"
    a.symlink_to(b)
    b.symlink_to(a)
    res = cli("index", str(a))
    assert res.exit_code == 1 and "symbolic link loop" in res.stderr


def test_models_make_openmp_threads_sleep_unless_the_user_chose(tmp_path):
    """Set before torch loads (Models come first): OpenMP's spinning threads next to a busy decode made
    a search's CLIP batches 13x slower; a user's own OMP_WAIT_POLICY is kept."""
    import subprocess
    import sys

    code = ("import os; from pipelines.backends.profiles import Models, get_profile; "
            "Models(get_profile('tiny')); import torch; print(os.environ['OMP_WAIT_POLICY'])")
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "PASSIVE"
    out = subprocess.run([sys.executable, "-c", code], env={**env, "OMP_WAIT_POLICY": "ACTIVE"},
                         capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "ACTIVE"


def test_clip_batch_input_is_open_clips_own_preprocess_bit_for_bit():
    """ClipEmbedder.pixels does open_clip's to-tensor and normalise once for the whole batch: the model's
    input must be exactly what the transform gives image by image (crops of any size, whole frames), and
    a transform that does not end with those two steps runs as it is."""
    import torch
    from PIL import Image
    from torchvision import transforms

    from pipelines.backends.tiny import tiny_clip
    from pipelines.stages.clip import ClipEmbedder

    cfg, ckpt = tiny_clip()
    clip = ClipEmbedder(f"{cfg}@{ckpt}", device="cpu")
    rng = np.random.default_rng(3)
    frames = [rng.integers(0, 256, (int(h), int(w), 3), dtype=np.uint8)
              for h, w in rng.integers(9, 200, (12, 2))] + [rng.integers(0, 256, (144, 256, 3), dtype=np.uint8)]
    one_by_one = torch.stack([clip.preprocess(Image.fromarray(f)) for f in frames])
    assert torch.equal(clip.pixels(frames), one_by_one)
    emb = clip.embed_images(frames)
    with torch.inference_mode():
        ref = clip.model.encode_image(one_by_one).float().numpy()
    ref /= np.linalg.norm(ref, axis=1, keepdims=True)
    assert np.array_equal(emb, ref.astype(np.float32)) or np.abs(emb - ref).max() < 1e-6

    clip.preprocess = transforms.Compose([transforms.Resize(20), transforms.CenterCrop(20), transforms.ToTensor()])
    got = clip.pixels(frames[:3])
    assert got.shape == (3, 3, 20, 20)
    assert torch.equal(got, torch.stack([clip.preprocess(Image.fromarray(f)) for f in frames[:3]]))
