"""`vqa index --engine ray`: the same inputs, cache and results as a local run, with the work spread over a
Ray cluster.

The driver (this process) is the database's only writer. For each input it decides, exactly as the local
indexer does, whether anything is left to do (content fingerprint, then each stage's cache key with the
models' identities); videos already indexed are settled here and never sent. Each remaining video goes to
a pool of actors (:class:`pipelines.engines.worker.Worker`), each holding one set of models loaded once
(``num_gpus`` per actor: 1 where the cluster has GPUs, or ``worker_gpus``). An actor runs the real
:class:`~pipelines.indexing.Indexer` into a private in-memory store seeded with the runs already done, and
sends the rows of the runs it made back; the driver writes them in one transaction per video, with the
same keys, so the database equals a local run's row for row. A worker process that dies is restarted
and its video sent again (``RESTARTS`` times); then the video is reported failed, and nothing of it was
written. Results come out in input order; ``progress`` hears of every finished video.

    for res in index_on_ray(store, models, opts, paths, address="auto", progress=print_line): ...
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from index.store import Store, fingerprint_file
from pipelines.backends.profiles import Models
from pipelines.engines.cluster import ActorPool, RayCluster, WorkerDied, make_pool
from pipelines.engines.transfer import import_video, seed_rows
from pipelines.engines.worker import WorkerSpec
from pipelines.errors import VqaError
from pipelines.indexing import IndexOptions, IndexResult, plan_stages
from pipelines.inputs import check_input
from pipelines.stages.media import check_file

ProgressFn = Callable[[int, int, float, float, int], None]  # (done, total, video seconds, elapsed, failed)


# -- the driver's side of `vqa index --engine ray` --------------------------------------------------------
@dataclass
class _Job:
    i: int
    path: str
    video_id: str
    seed: dict = field(default_factory=dict)
    plans: dict[str, Any] = field(default_factory=dict)  # stage -> StagePlan, as the driver keys them


def plan_one(store: Store, models: Models, opts: IndexOptions, i: int, path: str) -> IndexResult | _Job:
    """Settle an input here (failed before any decoder sees it, or unchanged) or make it a job, deciding
    exactly as :meth:`Indexer._index` does: the path's known content, else its fingerprint; every stage's
    key done means unchanged. A renamed copy of an indexed video is recorded under its new path here."""
    profile = models.profile
    result = IndexResult(path=path, status="failed")
    try:
        check_file(path)
        check_input(path)
        video_id = store.lookup_path(path)
        video = store.get_video(video_id) if video_id else None
        if video is None:
            video_id = fingerprint_file(path)
            video = store.get_video(video_id)
        plans = plan_stages(video_id, profile, opts, path=path)
        done = [p.key for p in plans.values() if store.run_done(p.key)]
        if video is not None and len(done) == len(plans):
            if store.lookup_path(path) != video_id:
                store.upsert_video(video_id, path, video)
            store.clear_errors(path)
            result.status, result.video_id, result.duration = "unchanged", video_id, video["duration"]
            return result
        return _Job(i, path, video_id, seed_rows(store, video_id, done) if video is not None else {}, plans)
    except VqaError as e:
        result.error = e.message
    except OSError as e:
        result.error = e.strerror or str(e)
    store.record_error(path, result.error, video_id=result.video_id)
    return result


def index_on_ray(store: Store, models: Models, opts: IndexOptions, paths: list[str], *, address: str | None = None,
                 jobs: int | None = None, worker_gpus: float | None = None,
                 progress: ProgressFn | None = None, pool: ActorPool | None = None) -> Iterator[IndexResult]:
    """Index ``paths`` on the cluster at ``address`` (see :class:`RayCluster`); one result per path, in input
    order (failures are results too). The cluster is reached only when something is left to index; a
    ``pool`` given (`vqa ask --batch` indexes first, then answers with the same actors) is used, not closed."""
    t0 = time.monotonic()
    results: dict[int, IndexResult] = {}
    queue: list[_Job] = []
    for i, p in enumerate(paths):
        r = plan_one(store, models, opts, i, p)
        if isinstance(r, _Job):
            queue.append(r)
        else:
            results[i] = r
    total, done, failed, seconds = len(queue), 0, 0, 0.0
    cluster = None
    own_pool = pool is None
    claimed: set[str] = set()
    waiting: list[_Job] = []  # another process, or an earlier input of this run, is indexing its content
    next_out = 0
    try:
        if queue and pool is None:
            cluster = RayCluster(address).__enter__()
            pool = make_pool(cluster, WorkerSpec.of(models, opts), models, jobs, worker_gpus, len(queue))
        while queue or waiting or (pool and pool.pending):
            for job in list(waiting):  # its content's other indexer finished: plan it again
                if job.video_id not in claimed and store.try_claim(job.video_id):
                    store.release_claim(job.video_id)
                    waiting.remove(job)
                    again = plan_one(store, models, opts, job.i, job.path)
                    if isinstance(again, _Job):
                        queue.insert(0, again)
                    else:
                        results[job.i] = again
                        total -= 1
            while queue and pool.free():
                job = queue.pop(0)
                if job.video_id in claimed or not store.try_claim(job.video_id):
                    waiting.append(job)
                    continue
                claimed.add(job.video_id)
                pool.submit(job, "index", job.path, job.seed, opts)
            while next_out in results:
                yield results.pop(next_out)
                next_out += 1
            if not pool or not pool.pending:
                if waiting:
                    time.sleep(0.2)
                continue
            job, value = pool.next()
            res = _finish(store, job, value)
            claimed.discard(job.video_id)
            store.release_claim(job.video_id)
            results[job.i] = res
            done += 1
            failed += res.status == "failed"
            seconds += res.duration or 0.0
            if progress:
                progress(done, total, seconds, time.monotonic() - t0, failed)
        while next_out in results:
            yield results.pop(next_out)
            next_out += 1
    finally:
        if pool is not None and own_pool:
            pool.close()
        for vid in claimed:
            store.release_claim(vid)
        if cluster is not None:
            cluster.__exit__(None, None, None)


def _finish(store: Store, job: _Job, value: Any) -> IndexResult:
    """Write what a worker sent (one transaction), or record why the video failed."""
    if isinstance(value, WorkerDied):
        res = IndexResult(path=job.path, status="failed", video_id=job.video_id,
                          error=value.message("indexing it"))
    else:
        res = IndexResult(**value["result"])
        other = _foreign_runs(job, value["rows"])
        if other:
            res.status, res.stages_run = "failed", []
            res.error = (f"worker {value['host']} keyed its {other} differently from this driver (its models or "
                         "options differ: install the same models on every node); nothing of it was written")
        elif value["rows"]:
            import_video(store, value["rows"])
    if res.status == "failed":
        store.record_error(job.path, res.error or "failed", video_id=res.video_id)
    else:
        store.clear_errors(job.path)
    return res


def _foreign_runs(job: _Job, rows: dict) -> str | None:
    """The stages a worker ran under keys this driver would not look up (another checkpoint at the same
    path on that node, another version of a package): imported, they would be redone by every run."""
    cols, runs = rows.get("runs", ([], [])) if rows else ([], [])
    if not runs:
        return None
    mine = {p.key for p in job.plans.values()}
    k, st = cols.index("key"), cols.index("stage")
    other = sorted({r[st] for r in runs if r[k] not in mine})
    return ", ".join(other) or None
