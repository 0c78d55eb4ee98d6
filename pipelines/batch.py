"""Many videos in one process: ``--jobs N`` decodes N videos at once (ffmpeg runs in its own processes,
so threads suffice) while every thread shares the same loaded models; each thread has its own
database connection."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

from index.store import Store

from .indexing import Indexer, IndexResult


def index_many(indexer: Indexer, paths: list[str], *, jobs: int = 1) -> Iterator[IndexResult]:
    """Index ``paths`` and yield one result per path, in input order; failures are results too."""
    if jobs <= 1 or len(paths) <= 1:
        for p in paths:
            yield indexer.index(p)
        return
    local = threading.local()
    stores: list[Store] = []
    lock = threading.Lock()

    def worker_indexer() -> Indexer:
        if not hasattr(local, "indexer"):
            store = Store(indexer.store.path)
            with lock:
                stores.append(store)
            local.indexer = Indexer(store, indexer.models, indexer.opts, progress=None)
        return local.indexer

    try:
        with ThreadPoolExecutor(max_workers=jobs, thread_name_prefix="vqa-index") as pool:
            yield from pool.map(lambda p: worker_indexer().index(p), paths)
    finally:
        for s in stores:
            s.close()
