"""The database schema: append-only named migrations, applied at open (sqlite-utils ``Migrations``).
Never edit a migration that has shipped; add a new one."""

from __future__ import annotations

import sqlite_utils
from sqlite_utils.migrations import Migrations

migrations = Migrations("vqa")


@migrations(name="001_core")
def _m001(db: sqlite_utils.Database) -> None:
    db["videos"].create(
        {"id": str, "path": str, "size": int, "duration": float, "fps": float, "width": int, "height": int,
         "codec": str, "rotation": int, "has_audio": int, "audio_codec": str, "created_at": float,
         "updated_at": float},
        pk="id",
    )
    db["video_paths"].create(
        {"path": str, "video_id": str, "size": int, "mtime_ns": int, "seen_at": float}, pk="path",
        foreign_keys=[("video_id", "videos", "id")],
    )
    db["video_paths"].create_index(["video_id"])
    db["runs"].create(
        {"key": str, "video_id": str, "stage": str, "model": str, "model_fp": str, "params": str,
         "status": str, "pid": int, "host": str, "started_at": float, "finished_at": float,
         "seconds": float, "stats": str, "error": str},
        pk="key",
    )
    db["runs"].create_index(["video_id", "stage"])
    db["scenes"].create(
        {"run_key": str, "idx": int, "start": float, "end": float, "rep_t": float, "rep_jpeg": bytes},
        pk=("run_key", "idx"),
    )
    db["frames"].create(
        {"run_key": str, "idx": int, "t": float, "embedding": bytes, "jpeg": bytes},
        pk=("run_key", "idx"),
    )
    db["captions"].create(
        {"run_key": str, "scene_idx": int, "start": float, "end": float, "text": str},
        pk=("run_key", "scene_idx"),
    )
    db["claims"].create({"video_id": str, "pid": int, "host": str, "claimed_at": float}, pk="video_id")
    db["errors"].create(
        {"id": int, "path": str, "video_id": str, "stage": str, "message": str, "created_at": float}, pk="id",
    )
    db["errors"].create_index(["path"])
    db["answers"].create(
        {"id": int, "video_id": str, "created_at": float, "question": str, "options": str, "answer": str,
         "choice": str, "keyframes": str, "evidence": str, "settings": str, "timings": str, "trace": str},
        pk="id",
    )
    db["answers"].create_index(["video_id"])


@migrations(name="002_text_channels")
def _m002(db: sqlite_utils.Database) -> None:
    # Timed text of every channel (speech, on-screen text, captions), one row per line, searchable by
    # FTS5 and by sentence embeddings.
    db["texts"].create(
        {"run_key": str, "idx": int, "video_id": str, "source": str, "start": float, "end": float,
         "text": str, "confidence": float, "box": str},
        pk=("run_key", "idx"),
    )
    db["texts"].create_index(["video_id", "source"])
    db["texts"].enable_fts(["text"], create_triggers=True, tokenize="porter")
    # Sentence embeddings of those lines, keyed by the embedding run and the text run they embed.
    db["text_vectors"].create(
        {"run_key": str, "text_run": str, "idx": int, "embedding": bytes}, pk=("run_key", "text_run", "idx"),
    )


@migrations(name="003_frame_spans")
def _m003(db: sqlite_utils.Database) -> None:
    # A sampled frame that stays unchanged (a still image, a slide held for an hour) is stored once:
    # ``t_end`` is the time of the last sample it stands for and ``n`` how many samples that is
    # (NULL: the row is one sample, as every row written before this migration).
    db["frames"].add_column("t_end", float)
    db["frames"].add_column("n", int)


@migrations(name="004_probe_frames")
def _m004(db: sqlite_utils.Database) -> None:
    # Frames of the shots the embedding grid under-samples (a shot shorter than the grid step, the head of
    # a shot before its first grid frame), decoded at the keyframe search's zoom rate when the video is
    # indexed: what a question's time zoom would decode there first, read from here instead. Keyed by the
    # embedding run; ``a`` / ``b`` are the probed range, ``fps`` its rate.
    db["probe_frames"].create(
        {"run_key": str, "idx": int, "a": float, "b": float, "fps": float, "t": float, "embedding": bytes,
         "jpeg": bytes},
        pk=("run_key", "idx"),
    )
    # The spatial zoom's windows of some frames, embedded when the video is indexed (the probe frames, and
    # the first grid frame of each shot): ``window_spec`` says which windows (in words), ``boxes`` (R, 4)
    # float64 fractions, ``windows`` (R, D) float32 unit vectors; ``kind`` "probe" or "first".
    db["frame_windows"].create(
        {"run_key": str, "idx": int, "t": float, "kind": str, "window_spec": str, "boxes": bytes, "windows": bytes},
        pk=("run_key", "idx"),
    )
