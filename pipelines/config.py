"""Where things live: the user's data dir (``VQA_HOME`` overrides), the database and the model cache."""

from __future__ import annotations

import os
from pathlib import Path


def vqa_home() -> Path:
    env = os.environ.get("VQA_HOME")
    if env:
        return Path(env).expanduser()
    from platformdirs import user_data_dir

    return Path(user_data_dir("vqa", appauthor=False))


def default_db_path() -> Path:
    return vqa_home() / "vqa.db"


def models_dir() -> Path:
    """Models that vqa builds or converts itself (tiny random models, converted GGUF files)."""
    env = os.environ.get("VQA_MODELS")
    path = Path(env).expanduser() if env else vqa_home() / "models"
    path.mkdir(parents=True, exist_ok=True)
    return path
