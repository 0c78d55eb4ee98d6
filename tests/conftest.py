"""Shared fixtures: an isolated user dir, generated videos with known cuts, and an in-process CLI."""

from __future__ import annotations

import os

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("OMP_NUM_THREADS", "2")

import json  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402
from typer.testing import CliRunner  # noqa: E402

from tests.synth import make_color_video, make_scenes_video  # noqa: E402

SCENE_DURATIONS = [2.0, 1.6, 3.0, 2.4, 2.0, 1.6]  # cuts on frame boundaries at 25 fps


@pytest.fixture(scope="session")
def models_home(tmp_path_factory) -> Path:
    """Tiny models are built once per test session, under a private models dir."""
    path = tmp_path_factory.mktemp("models")
    os.environ["VQA_MODELS"] = str(path)
    return path


@pytest.fixture(autouse=True)
def isolated_home(tmp_path, monkeypatch, models_home):
    monkeypatch.setenv("VQA_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("VQA_MODELS", str(models_home))
    monkeypatch.delenv("VQA_PROFILE", raising=False)
    monkeypatch.delenv("VQA_DB", raising=False)
    return tmp_path / "home"


@pytest.fixture(scope="session")
def media_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("media")


@pytest.fixture(scope="session")
def scenes_video(media_dir) -> tuple[Path, list[float]]:
    """Six visually distinct scenes with hard cuts at known times, labels burned in, with audio."""
    path = media_dir / "scenes.mp4"
    cuts = make_scenes_video(path, SCENE_DURATIONS)
    return path, cuts


@pytest.fixture(scope="session")
def silent_scenes_video(media_dir) -> Path:
    path = media_dir / "no audio.mp4"  # a space in the name on purpose
    make_scenes_video(path, [1.5, 2.0, 1.5], audio=False)
    return path


@pytest.fixture(scope="session")
def vfr_video(media_dir) -> tuple[Path, list[tuple[float, float, str]]]:
    path = media_dir / "vfr.mp4"
    return path, make_color_video(path, [1.5, 2.0, 1.5, 2.0], vfr=True)


@pytest.fixture
def cli(tmp_path):
    """Run `vqa ...` in-process against a private database; stdout and stderr kept apart."""
    from vqa_cli.app import app

    runner = CliRunner()
    db = tmp_path / "vqa.db"

    def run(*args: str, input: str | None = None, db_path: Path | None = None, with_db: bool = True):
        extra = ["--db", str(db_path or db)] if with_db else []
        return runner.invoke(app, [*args, *extra], input=input, catch_exceptions=False)

    run.db = db
    return run


def jsonl(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]
