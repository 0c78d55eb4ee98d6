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

import os
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from index.store import Store, fingerprint_file
from pipelines.backends.profiles import Models
from pipelines.engines import ray_module
from pipelines.engines.transfer import import_video, seed_rows
from pipelines.engines.worker import Worker, WorkerSpec
from pipelines.errors import VqaError
from pipelines.indexing import IndexOptions, IndexResult, plan_stages
from pipelines.inputs import check_input
from pipelines.stages.media import check_file

RESTARTS = 2  # a dead worker process is restarted, and its task retried, this many times
IN_FLIGHT = 2  # tasks queued per actor: the next video is ready when one finishes
WORKER_CPUS = 1.0
# What a worker takes from the driver's environment: where models live, offline mode, test hooks.
FORWARD_ENV = ("HF_HUB_OFFLINE", "HF_HOME", "HF_HUB_CACHE", "TRANSFORMERS_OFFLINE", "VQA_HOME", "VQA_MODELS",
               "VQA_FFMPEG", "VQA_TEST_RAY_EXIT_AT", "VQA_TEST_PAUSE_AT")
ProgressFn = Callable[[int, int, float, float, int], None]  # (done, total, video seconds, elapsed, failed)


class RayCluster:
    """Connects to the cluster at ``address`` (``auto``, ``HOST:PORT``, ``ray://HOST:10001``), or starts a
    local one when none is given and none is running; one already initialised in this process is used
    as it is. Leaving shuts down only what it started."""

    def __init__(self, address: str | None = None):
        self.address = address
        self.ray = ray_module()
        self.owned = False

    def __enter__(self) -> RayCluster:
        import logging

        ray = self.ray
        if not ray.is_initialized():
            if self.address:
                _check_reachable(self.address)
                _token_mode_if_token()
            try:
                ray.init(address=self.address, include_dashboard=False, log_to_driver=False,
                         logging_level=logging.ERROR)
            except (ConnectionError, RuntimeError, ValueError, TimeoutError) as e:
                where = f"at {self.address}" if self.address else "(local)"
                raise VqaError(f"cannot reach the Ray cluster {where}: {str(e).splitlines()[0]}") from None
            self.owned = True
        self._quiet_stdout(True)
        return self

    def __exit__(self, *exc: Any) -> None:
        self._quiet_stdout(False)
        if self.owned:
            self.ray.shutdown()

    def _quiet_stdout(self, on: bool) -> None:
        """Ray's driver prints the cluster's messages ("A worker died …") on stdout, where they would land
        in the middle of `--jsonl` output: while we run they go to stderr, with our progress."""
        try:
            from ray._private import worker as ray_worker
        except ImportError:  # pragma: no cover - another layout: nothing to redirect
            return
        if on and not hasattr(self, "_print"):
            self._print = original = ray_worker.print_to_stdstream

            def to_stderr(data: dict, *args: Any, **kwargs: Any) -> None:
                original({**data, "is_err": True}, *args, **kwargs)

            ray_worker.print_to_stdstream = to_stderr
        elif not on and hasattr(self, "_print"):
            ray_worker.print_to_stdstream = self._print
            del self._print

    def resources(self) -> dict[str, float]:
        return dict(self.ray.cluster_resources())


def _check_reachable(address: str) -> None:
    """A HOST:PORT (or ray://HOST:PORT) that nothing listens on fails here in one line: Ray itself keeps
    retrying for minutes."""
    import socket

    host, sep, port = address.removeprefix("ray://").rpartition(":")
    if not sep or not port.isdigit():
        return  # "auto", or a form Ray resolves itself
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=5).close()
    except OSError as e:
        why = e.strerror or type(e).__name__.replace("Error", " error").lower() or str(e)
        raise VqaError(f"cannot reach the Ray cluster at {address}: {why} (is `ray start --head` running "
                       "there, and the port open?)") from None


def _token_mode_if_token() -> None:
    """Connect to a cluster that uses token authentication (Ray's default for a head started where a token
    exists) as `ray start` does: in token mode whenever a token is at hand and no mode was chosen; Ray's
    client alone would connect without it and be refused."""
    import logging

    if "RAY_AUTH_MODE" in os.environ:
        return
    try:
        from ray._private.authentication import authentication_token_setup as setup
    except ImportError:  # pragma: no cover - a Ray without token authentication
        return
    log = logging.getLogger(setup.__name__)
    level = log.level
    log.setLevel(logging.ERROR)  # its notice that token mode is on is not news to the user
    try:
        setup.maybe_enable_token_auth_if_token_available(warn_if_disabled=False)
    except Exception:  # noqa: BLE001 - then Ray says what is wrong when it connects
        pass
    finally:
        log.setLevel(level)


def worker_env(extra: Iterable[str] = ()) -> dict[str, str]:
    return {k: os.environ[k] for k in (*FORWARD_ENV, *extra) if k in os.environ}


class ActorPool:
    """Actors holding one :class:`Worker` each; ``submit`` runs a method on the least busy one, ``next``
    returns the next finished call. A call whose actor died for good (after Ray's restarts and retries)
    returns a :class:`WorkerDied`, and that actor is replaced by a fresh one."""

    def __init__(self, cluster: RayCluster, spec: WorkerSpec, n: int, *, gpus: float, env: dict[str, str]):
        self.ray = cluster.ray
        self.spec, self.gpus, self.env = spec, gpus, env
        self.actor_cls = self.ray.remote(Worker)
        self.actors = [self._new() for _ in range(max(1, n))]
        self.busy = [0] * len(self.actors)
        self.pending: dict[Any, tuple[Any, int]] = {}  # object ref -> (tag, actor slot)

    def _new(self):
        return self.actor_cls.options(num_cpus=WORKER_CPUS, num_gpus=self.gpus, max_restarts=RESTARTS,
                                      max_task_retries=RESTARTS, runtime_env={"env_vars": self.env}).remote(self.spec)

    def free(self) -> bool:
        return min(self.busy) < IN_FLIGHT

    def submit(self, tag: Any, method: str, *args: Any) -> None:
        slot = min(range(len(self.actors)), key=self.busy.__getitem__)
        ref = getattr(self.actors[slot], method).remote(*args)
        self.pending[ref] = (tag, slot)
        self.busy[slot] += 1

    def next(self) -> tuple[Any, Any]:
        """(tag, value) of the next finished call (blocks); the value is a WorkerDied when its actor died."""
        ray = self.ray
        ready, _ = ray.wait(list(self.pending), num_returns=1)
        ref = ready[0]
        tag, slot = self.pending.pop(ref)
        self.busy[slot] -= 1
        try:
            return tag, ray.get(ref)
        except ray.exceptions.RayActorError as e:
            self._replace(slot)
            return tag, WorkerDied(_first_line(e))
        except ray.exceptions.RayTaskError as e:  # an exception the worker did not turn into a result
            return tag, WorkerDied(_first_line(getattr(e, "cause", None) or e), died=False)

    def _replace(self, slot: int) -> None:
        old = self.actors[slot]
        if any(s == slot for _, s in self.pending.values()):
            return  # its other calls are still out; they fail the same way, then it is replaced
        try:
            self.ray.kill(old, no_restart=True)
        except Exception:  # noqa: BLE001 - already gone
            pass
        self.actors[slot] = self._new()

    def close(self) -> None:
        for a in self.actors:
            try:
                self.ray.kill(a, no_restart=True)
            except Exception:  # noqa: BLE001 - already gone
                pass


@dataclass
class WorkerDied:
    reason: str
    died: bool = True  # False: the worker raised what it should have returned (an internal error)

    def message(self, doing: str) -> str:
        if not self.died:
            return f"internal error in the worker: {self.reason}"
        return f"the worker {doing} died ({self.reason}), also after {RESTARTS} restarts; nothing of it was written"


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return (text[0] if text else type(e).__name__)[:300]


def pool_size(cluster: RayCluster, models: Models, jobs: int | None, worker_gpus: float | None) -> tuple[int, float]:
    """(actors, GPUs per actor): one actor per GPU where the cluster has GPUs and the models may use them
    (``--worker-gpus`` overrides, fractions share a GPU), else one per CPU; ``jobs`` fixes the count."""
    res = cluster.resources()
    gpus = res.get("GPU", 0.0)
    if worker_gpus is None:
        worker_gpus = 1.0 if gpus >= 1 and (models.device or "cuda").split(":")[0] != "cpu" else 0.0
    if jobs:
        return jobs, worker_gpus
    if worker_gpus > 0:
        return max(1, int(gpus // worker_gpus)), worker_gpus
    return max(1, int(res.get("CPU", 1.0) // WORKER_CPUS)), worker_gpus


def make_pool(cluster: RayCluster, spec: WorkerSpec, models: Models, jobs: int | None, worker_gpus: float | None,
              work: int, *, extra_env: Iterable[str] = ()) -> ActorPool:
    """The actors for ``work`` pieces of work (never more actors than pieces)."""
    n, gpus = pool_size(cluster, models, jobs, worker_gpus)
    return ActorPool(cluster, spec, min(n, max(1, work)), gpus=gpus, env=worker_env(extra_env))


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
                pool.submit(job, "index", job.path, job.seed)
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
