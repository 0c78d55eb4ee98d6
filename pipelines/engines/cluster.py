"""Reaching a Ray cluster, and the pool of actors that do the work there.

:class:`RayCluster` connects (or starts a local cluster) and keeps Ray's own messages off stdout;
:class:`ActorPool` holds one :class:`~pipelines.engines.worker.Worker` per actor (models loaded once each),
sends calls to the least busy one and hands back finished calls, with a :class:`WorkerDied` for a call
whose actor died for good (after Ray's ``RESTARTS`` restarts and retries); :func:`in_order` streams a
sequence of calls through the pool and hands their values back in input order.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from pipelines.backends.profiles import Models
from pipelines.engines import ray_module
from pipelines.engines.worker import Worker, WorkerSpec
from pipelines.errors import VqaError

RESTARTS = 2  # a dead worker process is restarted, and its task retried, this many times
IN_FLIGHT = 2  # tasks queued per actor: the next video is ready when one finishes
WORKER_CPUS = 1.0
# What a worker takes from the driver's environment: where models live, offline mode, test hooks.
FORWARD_ENV = ("HF_HUB_OFFLINE", "HF_HOME", "HF_HUB_CACHE", "TRANSFORMERS_OFFLINE", "VQA_HOME", "VQA_MODELS",
               "VQA_FFMPEG", "VQA_FREE_MODELS", "VQA_HWACCEL", "VQA_TEST_RAY_EXIT_AT", "VQA_TEST_PAUSE_AT")


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


@dataclass(frozen=True)
class Ready:
    """A job of :func:`in_order` settled on the driver (an item's error found before sending it)."""

    value: Any


def in_order(pool: ActorPool | None, jobs: Iterable[Ready | tuple[str, tuple]],
             on_done: Callable[[Any], None] | None = None) -> Iterator[Any]:
    """Each job's value, in the order of ``jobs``, as soon as it and every job before it are done: a
    :class:`Ready`'s own value, or what the pool's call ``(method, args)`` returned (a :class:`WorkerDied`
    when its actor died). Jobs are drawn only as actors free up (``IN_FLIGHT`` calls each), so a lazy
    ``jobs`` does its driver-side work just in time; ``on_done`` sees each call's value as it arrives."""
    out: dict[int, Any] = {}
    todo = iter(jobs)
    drawn = shown = 0
    more = True
    while True:
        while more and (pool is None or pool.free()):
            job = next(todo, None)
            if job is None:
                more = False
            elif isinstance(job, Ready):
                out[drawn] = job.value
                drawn += 1
            else:
                if pool is None:
                    raise ValueError("in_order: a call without a pool")
                method, args = job
                pool.submit(drawn, method, *args)
                drawn += 1
        while shown in out:
            yield out.pop(shown)
            shown += 1
        if pool is None or not pool.pending:
            if not more:
                return
            continue
        n, value = pool.next()
        out[n] = value
        if on_done is not None:
            on_done(value)


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
    (``--worker-gpus`` overrides, fractions share a GPU), else one per CPU; ``jobs`` asks for a count, and
    gets at most what the cluster holds now (an actor it cannot place would hold its videos forever)."""
    res = cluster.resources()
    gpus, cpus = res.get("GPU", 0.0), res.get("CPU", 0.0)
    if worker_gpus is None:
        worker_gpus = 1.0 if gpus >= 1 and (models.device or "cuda").split(":")[0] != "cpu" else 0.0
    if worker_gpus > gpus:
        raise VqaError(f"--worker-gpus {worker_gpus:g}: the Ray cluster has {gpus:g} GPUs")
    if cpus < WORKER_CPUS:
        raise VqaError(f"the Ray cluster has {cpus:g} CPUs; each worker needs {WORKER_CPUS:g}")
    fits = int(cpus // WORKER_CPUS)
    if worker_gpus > 0:
        fits = min(fits, int(gpus // worker_gpus))
    return max(1, min(jobs or fits, fits)), worker_gpus


def make_pool(cluster: RayCluster, spec: WorkerSpec, models: Models, jobs: int | None, worker_gpus: float | None,
              work: int, *, extra_env: Iterable[str] = ()) -> ActorPool:
    """The actors for ``work`` pieces of work (never more actors than pieces)."""
    n, gpus = pool_size(cluster, models, jobs, worker_gpus)
    return ActorPool(cluster, spec, min(n, max(1, work)), gpus=gpus, env=worker_env(extra_env))
