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
from pipelines.engines.cluster import ActorPool, RayCluster, WorkerDied, make_pool
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
    out: dict[int, tuple[dict, bool]] = {}
    todo: list[tuple[int, Any, dict, str]] = []
    for i, item in enumerate(items):
        rid = item.get("id", item["line"])
        if "error" in item:
            out[i] = ({"id": rid, "error": item["error"]}, True)
            continue
        vid = item.get("video") if batch else video
        if not vid or not item.get("question"):
            need = "item needs 'video' and 'question'" if batch else "item needs 'question'"
            out[i] = (_error_line(rid, item, video, need), True)
            continue
        todo.append((i, rid, item, vid))
    cluster = pool = None
    index_errors: dict[str, str] = {}
    next_out = 0
    try:
        if todo:
            cluster = RayCluster(address).__enter__()
            spec = WorkerSpec.of(models, IndexOptions(), ask_opts=opts, db=str(store.path))
            pool = make_pool(cluster, spec, models, jobs, worker_gpus, len(todo),
                             extra_env=[models.api.get("api_key_env") or "VQA_API_KEY"])
            index_errors = _index_first(store, models, sorted({v for *_, v in todo if _needs_index(store, v)}),
                                        pool)
        queue = list(todo)
        total, done, failed = len(todo), 0, 0
        while queue or (pool and pool.pending):
            while queue and pool.free():
                i, rid, item, vid = queue.pop(0)
                if vid in index_errors:
                    out[i] = (_error_line(rid, item, video, index_errors[vid]), True)
                    continue
                pool.submit((i, rid, item), "ask", vid, item["question"], list(item.get("options") or []))
            while next_out in out:
                yield _logged(store, *out.pop(next_out))
                next_out += 1
            if not pool or not pool.pending:
                continue
            (i, rid, item), value = pool.next()
            out[i] = _finish(rid, item, video, value)
            done += 1
            failed += out[i][1]
            if progress:
                progress(done, total, None, time.monotonic() - t0, failed)
        while next_out in out:
            yield _logged(store, *out.pop(next_out))
            next_out += 1
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


def _finish(rid: Any, item: dict, video: str | None, value: Any) -> tuple[dict, bool]:
    """The item's line: the answer (logged when its turn to be written comes), or its error."""
    if isinstance(value, WorkerDied):
        return _error_line(rid, item, video, value.message("answering it")), True
    if "fatal" in value:
        raise VqaError(value["fatal"])
    if "error" in value:
        return _error_line(rid, item, video, value["error"]), True
    return {"id": rid, **value["result"]}, False


def _logged(store: Store, line: dict, failed: bool) -> tuple[dict, bool]:
    """An answer line logged in the answers table with its answer_id, as `vqa ask` logs it (in input
    order); a database that cannot take it leaves the answer standing, unlogged, and says so."""
    if failed or "answer" not in line:
        return line, failed
    res = line
    try:
        res["answer_id"] = store.add_answer({
            "video_id": res["video_id"], "question": res["question"], "options": res["options"],
            "answer": res["answer"]["text"], "choice": res["answer"]["choice"], "keyframes": res["keyframes"],
            "evidence": res["context"], "settings": res["settings"], "timings": res["timings"],
            "trace": res["trace"]})
    except StoreError as e:
        res["answer_id"], res["not_logged"] = None, str(e)
    return res, False
