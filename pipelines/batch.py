"""Many videos in one process: ``--jobs N`` decodes N videos at once (ffmpeg runs in its own processes,
so threads suffice) while every thread shares the same loaded models; each thread has its own
database connection. On Ctrl-C (or when the consumer stops early) the workers stop at their next frame
or stage, leaving finished stages done and unfinished ones to be redone by the next run."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

from index.store import Store
from pipelines.indexing import Indexer, IndexResult


def index_many(indexer: Indexer, paths: list[str], *, jobs: int = 1) -> Iterator[IndexResult]:
    """Index ``paths`` and yield one result per path, in input order; failures are results too."""
    if jobs <= 1 or len(paths) <= 1:
        for p in paths:
            yield indexer.index(p)
        return
    local = threading.local()
    stores: list[Store] = []
    lock = threading.Lock()
    cancel = threading.Event()

    def work(path: str) -> IndexResult:
        if cancel.is_set():  # queued before the interrupt: do not start it
            return IndexResult(path=path, status="failed", error="interrupted")
        if not hasattr(local, "indexer"):
            store = Store(indexer.store.path, readonly=indexer.store.readonly)
            with lock:
                stores.append(store)
            local.indexer = Indexer(store, indexer.models, indexer.opts, progress=None, cancel=cancel)
        return local.indexer.index(path)

    pool = ThreadPoolExecutor(max_workers=jobs, thread_name_prefix="vqa-index")
    try:
        futures = [pool.submit(work, p) for p in paths]
        for fut in futures:
            yield fut.result()
    finally:
        cancel.set()  # interrupted or abandoned: running workers stop at their next frame or stage
        pool.shutdown(wait=True, cancel_futures=True)
        for s in stores:
            s.close()
