"""`vqa eval … --engine ray`: the benchmark's questions answered on a Ray cluster, by the actors that hold
the answerer (one per GPU where the cluster has GPUs), written by the driver in input order to the same
results file as a local run.

:func:`ray_dispatch` is the ``dispatch`` of :func:`pipelines.eval.run.run_eval`, so resuming (pairs
already in the results file are not sent), error lines and the summary are the local run's own. For the
pairs still to run it starts the pool, indexes the videos they need on it, each with the options the
eval runner would index it with (the benchmark's subtitles as its transcript, none without subtitles, or
the product's own speech channel), then streams the pairs through it: the driver, the database's one
writer, runs the runner's :meth:`~pipelines.eval.runner.EvalRunner.prepare` (the video settled, its
transcript checked, the cluster's indexing reported as a local run reports its own), a worker runs :meth:`~pipelines.eval.runner.EvalRunner.run_prepared` (search per
method, context, answer, choice parsing) over the database read-only, and the driver logs each product
answer as its line comes up. A video that failed on the cluster is an error line for each of its items,
as locally; nothing is sent to the cluster when every pair is done.

    dispatch = ray_dispatch(store, models, runner, address="auto")
    summary = run_eval(items, ["uniform", "topk", "vqa"], runner, "results.jsonl", dispatch=dispatch)
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from index.store import Store
from pipelines.backends.profiles import Models
from pipelines.engines.cluster import ActorPool, RayCluster, Ready, WorkerDied, in_order, make_pool
from pipelines.engines.ray_ask import log_answer
from pipelines.engines.ray_engine import ProgressFn, index_on_ray, plan_one
from pipelines.engines.worker import WorkerSpec
from pipelines.errors import VqaError
from pipelines.eval.run import Dispatch, ItemError
from pipelines.indexing import IndexResult
from pipelines.stages.media import probe


def ray_dispatch(store: Store, models: Models, runner: Any, *, address: str | None = None,
                 jobs: int | None = None, worker_gpus: float | None = None,
                 progress: ProgressFn | None = None) -> Dispatch:
    """The pairs `vqa eval` has left to run, answered on the cluster at ``address`` (see the module);
    ``progress`` follows the indexing."""

    def dispatch(pairs: Sequence[tuple[Any, str]]) -> Iterator[Mapping | BaseException]:
        if not pairs:
            return
        with RayCluster(address) as cluster:
            spec = WorkerSpec.of(models, db=str(store.path), eval_opts=runner.opts)
            pool = make_pool(cluster, spec, models, jobs, worker_gpus, len(pairs),
                             extra_env=[models.api.get("api_key_env") or "VQA_API_KEY"])
            try:
                items = list({item.id: item for item, _ in pairs}.values())
                for item, res in index_for_eval(store, models, runner, items, pool=pool, progress=progress):
                    runner.indexed_elsewhere(item, res)
                for value in in_order(pool, _calls(runner, pairs)):
                    yield _finish(store, value)
            finally:
                pool.close()

    return dispatch


def _calls(runner: Any, pairs: Sequence[tuple[Any, str]]) -> Iterator[Ready | tuple[str, tuple]]:
    """Each pair's call, its video prepared here (just before it is sent); an item that fails here is
    its error line already."""
    for item, method in pairs:
        try:
            video, timings = runner.prepare(item, method)
        except Exception as e:  # noqa: BLE001 - as locally: the item's own error line
            yield Ready(e)
            continue
        yield "eval", (item, method, video, timings)


def _finish(store: Store, value: Any) -> Mapping | BaseException:
    """What run_eval writes for a call: the runner's result (with the product's answer logged now, in
    input order), or the error the item's line carries."""
    if isinstance(value, BaseException):
        return value
    if isinstance(value, WorkerDied):
        return VqaError(value.message("answering it"))
    if "error" in value:
        return ItemError(value["error"])
    result = value["result"]
    if value.get("log") is not None:
        result["answer_id"] = log_answer(store, value["log"])["answer_id"]
    return result


def index_for_eval(store: Store, models: Models, runner: Any, items: Sequence[Any], *, pool: ActorPool,
                   progress: ProgressFn | None = None) -> list[tuple[Any, IndexResult]]:
    """Index what ``items`` need on ``pool`` (one pool for every option set); returns ``(item, result)``
    for the items whose video the cluster indexed, or failed to (their results report it, or their
    error lines, as a local run's would)."""
    groups: dict[str, tuple[Any, list[str]]] = {}
    keyed: list[tuple[Any, str]] = []
    for item in items:
        try:
            info = probe(item.video)
        except VqaError:
            continue  # the run says what is wrong with it, for each of its items
        indexer, _ = runner._indexer_for(item, info)
        key = json.dumps(indexer.opts.as_dict(), sort_keys=True, default=str)
        keyed.append((item, key))
        paths = groups.setdefault(key, (indexer.opts, []))[1]
        if item.video not in paths:
            paths.append(item.video)
    for key, (opts, paths) in list(groups.items()):  # settled here (indexed, or failed before decoding)
        left = [p for p in paths if not isinstance(plan_one(store, models, opts, 0, p), IndexResult)]
        groups[key] = (opts, left)
    work = sum(len(p) for _, p in groups.values())
    if not work:
        return []
    ran: dict[tuple[str, str], IndexResult] = {}
    acc, cur = [0, 0.0, 0], [0, 0.0, 0]  # (videos, video seconds, failed) of the sets done, of this one
    t0 = time.monotonic()

    def each(done: int, _total: int, seconds: float, _elapsed: float, failed: int) -> None:
        cur[:] = [done, seconds, failed]
        if progress:
            progress(acc[0] + done, work, acc[1] + seconds, time.monotonic() - t0, acc[2] + failed)

    for key, (opts, paths) in groups.items():
        for res in index_on_ray(store, models, opts, paths, pool=pool, progress=each):
            ran[(key, res.path)] = res
        acc[:] = [a + c for a, c in zip(acc, cur)]
        cur[:] = [0, 0.0, 0]
    return [(item, ran[(key, item.video)]) for item, key in keyed if (key, item.video) in ran]
