"""`vqa eval … --engine ray`: the benchmark's videos indexed on a Ray cluster before the run, each with the
options the eval runner would index it with (the benchmark's subtitles as its transcript, none without
subtitles, or the product's own speech channel); the run itself then finds every video indexed and
searches and answers here, resumably as always. Answering on the cluster's actors is `vqa ask --batch
--engine ray`; `vqa eval` does not spread it yet."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from typing import Any

from index.store import Store
from pipelines.backends.profiles import Models
from pipelines.engines.cluster import RayCluster, make_pool
from pipelines.engines.ray_engine import ProgressFn, index_on_ray, plan_one
from pipelines.engines.worker import WorkerSpec
from pipelines.errors import VqaError
from pipelines.indexing import IndexResult
from pipelines.stages.media import probe


def index_for_eval(store: Store, models: Models, runner: Any, items: Sequence[Any], *, address: str | None = None,
                   jobs: int | None = None, worker_gpus: float | None = None,
                   progress: ProgressFn | None = None) -> dict[str, str]:
    """Index what ``items`` need on the cluster (one pool for every option set); returns ``{path: error}``
    for the videos that failed (the run reports them again, item by item)."""
    groups: dict[str, tuple[Any, list[str]]] = {}
    for item in items:
        try:
            info = probe(item.video)
        except VqaError:
            continue  # the run says what is wrong with it, for each of its items
        indexer, _ = runner._indexer_for(item, info)
        key = json.dumps(indexer.opts.as_dict(), sort_keys=True, default=str)
        paths = groups.setdefault(key, (indexer.opts, []))[1]
        if item.video not in paths:
            paths.append(item.video)
    errors: dict[str, str] = {}
    for key, (opts, paths) in list(groups.items()):  # settled here (indexed, or failed before decoding)
        left = [p for p in paths if not isinstance(plan_one(store, models, opts, 0, p), IndexResult)]
        groups[key] = (opts, left)
    if not any(paths for _, paths in groups.values()):
        return errors  # everything indexed already: the cluster is not even reached
    work = sum(len(p) for _, p in groups.values())
    with RayCluster(address) as cluster:
        pool = make_pool(cluster, WorkerSpec.of(models), models, jobs, worker_gpus, work)
        acc, cur = [0, 0.0, 0], [0, 0.0, 0]  # (videos, video seconds, failed) of the sets done, of this one
        t0 = time.monotonic()

        def each(done: int, _total: int, seconds: float, _elapsed: float, failed: int) -> None:
            cur[:] = [done, seconds, failed]
            if progress:
                progress(acc[0] + done, work, acc[1] + seconds, time.monotonic() - t0, acc[2] + failed)

        try:
            for opts, paths in groups.values():
                for res in index_on_ray(store, models, opts, paths, pool=pool, progress=each):
                    if res.status == "failed":
                        errors[res.path] = res.error or "failed"
                acc[:] = [a + c for a, c in zip(acc, cur)]
                cur[:] = [0, 0.0, 0]
        finally:
            pool.close()
    return errors
