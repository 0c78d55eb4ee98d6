"""`vqa ask --batch FILE --engine ray` (and `--questions`): questions spread over Ray actors that hold the
answerer, one JSON line per item in input order, as the local loop writes them.

First the videos the batch names that are not indexed yet (or changed) are indexed on the cluster by the
same actors (:func:`pipelines.engines.ray_engine.index_on_ray`); then each actor opens the database
read-only and searches and answers items; the driver, the database's one writer, logs every answer and
gives it its ``answer_id``. An item's error (a video missing, not indexed, a bad line) is its own line;
a storage fault stops the batch with one line, as locally.

    for line, failed in ask_on_ray(store, models, opts, items, batch=True):
        print(json.dumps(line))
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from typing import Any

from index.errors import StoreError
from index.store import Store
from pipelines.backends.profiles import Models
from pipelines.engines.cluster import ActorPool, RayCluster, Ready, WorkerDied, in_order, make_pool
from pipelines.engines.ray_engine import ProgressFn, index_on_ray
from pipelines.engines.worker import WorkerSpec
from pipelines.errors import VqaError
from pipelines.indexing import IndexOptions


def _needs_index(store: Store, ref: str) -> bool:
    """As `vqa ask` decides before answering: a file whose (path, size, mtime) has no done frames run."""
    from pipelines.backends.index_models import done_frames_runs

    if not os.path.isfile(ref):
        return False
    known = store.lookup_path(ref)
    return not (known and done_frames_runs(store, known))


def _error_line(rid: Any, item: dict, video: str | None, message: str) -> dict:
    return {"id": rid, "video": item.get("video", video), "question": item.get("question"), "error": message}


def ask_on_ray(store: Store, models: Models, opts: Any, items: list[dict], *, batch: bool, video: str | None = None,
               address: str | None = None, jobs: int | None = None, worker_gpus: float | None = None,
               progress: ProgressFn | None = None) -> Iterator[tuple[dict, bool]]:
    """(output line, failed) per item, in input order. ``items`` as `vqa ask` reads them (``line`` and the
    item's fields, or ``error`` for a line that is not JSON); ``batch``: each item names its ``video``,
    else every item is about ``video``."""
    t0 = time.monotonic()
    todo = [item.get("video") if batch else video for item in items
            if "error" not in item and (item.get("video") if batch else video) and item.get("question")]
    cluster = pool = None
    index_errors: dict[str, str] = {}
    counts = [0, 0]  # answered, failed

    def calls() -> Iterator[Ready | tuple[str, tuple]]:
        for item in items:
            rid = item.get("id", item["line"])
            if "error" in item:
                yield Ready(({"id": rid, "error": item["error"]}, True))
                continue
            vid = item.get("video") if batch else video
            if not vid or not item.get("question"):
                need = "item needs 'video' and 'question'" if batch else "item needs 'question'"
                yield Ready((_error_line(rid, item, video, need), True))
            elif vid in index_errors:
                yield Ready((_error_line(rid, item, video, index_errors[vid]), True))
            else:
                yield "ask", (vid, item["question"], list(item.get("options") or []))

    def done(value: Any) -> None:
        counts[0] += 1
        counts[1] += isinstance(value, WorkerDied) or "error" in value or "fatal" in value
        if progress:
            progress(counts[0], len(todo), None, time.monotonic() - t0, counts[1])

    try:
        if todo:
            cluster = RayCluster(address).__enter__()
            spec = WorkerSpec.of(models, IndexOptions(), ask_opts=opts, db=str(store.path))
            pool = make_pool(cluster, spec, models, jobs, worker_gpus, len(todo),
                             extra_env=[models.api.get("api_key_env") or "VQA_API_KEY"])
            index_errors = _index_first(store, models, sorted({v for v in todo if _needs_index(store, v)}),
                                        pool)
        for item, value in zip(items, in_order(pool, calls(), done)):
            line, failed = value if isinstance(value, tuple) else _finish(item, video, value)
            yield (line, failed) if failed or "answer" not in line else (log_answer(store, line), False)
    finally:
        if pool is not None:
            pool.close()
        if cluster is not None:
            cluster.__exit__(None, None, None)


def _index_first(store: Store, models: Models, refs: list[str], pool: ActorPool) -> dict[str, str]:
    """Index what the batch needs, on the pool; the one-line error of each video that failed."""
    errors = {}
    for res in index_on_ray(store, models, IndexOptions(), refs, pool=pool):
        if res.status == "failed":
            errors[res.path] = str(VqaError(res.error or "indexing failed", res.path))
    return errors


def _finish(item: dict, video: str | None, value: Any) -> tuple[dict, bool]:
    """The item's line from what its worker sent back: the answer (logged when its turn to be written
    comes), or its error."""
    rid = item.get("id", item["line"])
    if isinstance(value, WorkerDied):
        return _error_line(rid, item, video, value.message("answering it")), True
    if "fatal" in value:
        raise VqaError(value["fatal"])
    if "error" in value:
        return _error_line(rid, item, video, value["error"]), True
    return {"id": rid, **value["result"]}, False


def log_answer(store: Store, res: dict) -> dict:
    """An answer (``Asker.answer_at(..., log=False)``'s result, as a worker sends it) logged in the
    answers table with its ``answer_id``, as `vqa ask` logs it; a database that cannot take it leaves the
    answer standing, unlogged, and says so. The driver calls this in input order: ids follow the input."""
    try:
        res["answer_id"] = store.add_answer({
            "video_id": res["video_id"], "question": res["question"], "options": res["options"],
            "answer": res["answer"]["text"], "choice": res["answer"]["choice"], "keyframes": res["keyframes"],
            "evidence": res["context"], "settings": res["settings"], "timings": res["timings"],
            "trace": res["trace"]})
    except StoreError as e:
        res["answer_id"], res["not_logged"] = None, str(e)
    return res
