"""What runs inside a Ray actor: one set of models (loaded once, on first use) that indexes videos into a
private in-memory store and sends the rows back, answers questions over the main database opened
read-only, and runs `vqa eval`'s items there with the eval runner's own per-item code. No Ray import here: the engine wraps :class:`Worker` with ``ray.remote``."""

from __future__ import annotations

import os
import socket
import time
from dataclasses import dataclass, field
from typing import Any

from pipelines.backends.profiles import Models, Profile
from pipelines.indexing import IndexOptions


@dataclass(frozen=True)
class WorkerSpec:
    """Everything a worker needs to rebuild the driver's models and options (picklable)."""

    profile: Profile
    device: str | None = None
    explicit: frozenset[str] = frozenset()
    api: dict[str, Any] = field(default_factory=dict)
    index_opts: IndexOptions = field(default_factory=IndexOptions)
    ask_opts: Any = None  # pipelines.ask.AskOptions, for workers that answer
    db: str | None = None  # the main database, read-only, for workers that answer
    eval_opts: Any = None  # pipelines.eval.runner.EvalRunOptions, for workers that run `vqa eval`'s items

    @classmethod
    def of(cls, models: Models, index_opts: IndexOptions | None = None, *, ask_opts: Any = None,
           db: str | None = None, eval_opts: Any = None) -> WorkerSpec:
        return cls(models.profile, models.device, frozenset(models.explicit), dict(models.api),
                   index_opts or IndexOptions(), ask_opts, db, eval_opts)


def _test_exit(point: str) -> None:
    """Test hook, inert unless ``VQA_TEST_RAY_EXIT_AT=POINT:FILE`` is set: the first worker to reach POINT
    creates FILE and dies at once (``os._exit``), as a crashed or preempted node would; once FILE exists,
    workers go on. Points: ``decode`` (a video's frames half-decoded, its runs started), ``indexed`` (a
    video indexed in the scratch store, its rows not yet sent)."""
    spec = os.environ.get("VQA_TEST_RAY_EXIT_AT", "")
    name, _, marker = spec.partition(":")
    if name != point or not marker or os.path.exists(marker):
        return
    with open(marker, "w") as f:
        f.write(str(os.getpid()))
    os._exit(17)


class Worker:
    """A Ray actor's state: the models, loaded once for every video and question it is sent."""

    def __init__(self, spec: WorkerSpec):
        self.spec = spec
        self.models = Models(spec.profile, device=spec.device, explicit=spec.explicit, **spec.api)
        self._store = None
        self._eval_runner = None

    def where(self) -> dict[str, Any]:
        return {"host": socket.gethostname(), "pid": os.getpid()}

    # -- indexing --------------------------------------------------------------------------------------
    def index(self, path: str, seed: dict, opts: IndexOptions | None = None) -> dict[str, Any]:
        """Index one video (with ``opts``, else the spec's) into a scratch store seeded with the runs already
        done in the main database; return the result and every row of the runs this worker ran."""
        from index.store import Store
        from pipelines.engines.transfer import export_video, load_seed
        from pipelines.indexing import Indexer

        def progress(desc: str, done: float, total: float) -> None:
            if done >= total / 2:
                _test_exit("decode")

        scratch = Store(":memory:", check=False)
        try:
            load_seed(scratch, seed)
            seeded = [r[0] for r in seed.get("runs", ([], []))[1]]
            t0 = time.monotonic()
            res = Indexer(scratch, self.models, opts or self.spec.index_opts, progress=progress).index(path)
            rows = export_video(scratch, res.video_id, path, seeded) if res.video_id else {}
            _test_exit("indexed")
            return {"result": res.as_dict(), "rows": rows, "seconds": time.monotonic() - t0, **self.where()}
        finally:
            scratch.close()

    # -- answering -------------------------------------------------------------------------------------
    def _main_store(self):
        if self._store is None:
            from index.store import Store

            self._store = Store(self.spec.db, readonly=True)
        return self._store

    def ask(self, ref: str, question: str, options: list[str]) -> dict[str, Any]:
        """Search and answer as `vqa ask` does, without logging: the driver logs the answer (the database
        has one writer). One-line errors come back as ``{"error": ...}``."""
        from index.errors import StoreError
        from pipelines.ask import Asker, search_keyframes
        from pipelines.errors import VqaError

        try:
            store = self._main_store()
            t0 = time.perf_counter()
            out = search_keyframes(store, self.models, ref, question, options, self.spec.ask_opts, indexer=None)
            asker = Asker(store, self.models, self.spec.ask_opts, indexer=None)
            return {"result": asker.answer_at(out.video, question, options, out.result.keyframes, search=out,
                                              started=t0, log=False)}
        except VqaError as e:
            return {"error": str(e)}
        except StoreError as e:  # the database, not this item: the driver stops with this one line
            return {"fatal": str(e)}

    def eval(self, item: Any, method: str, video: Any, timings: dict[str, float]) -> dict[str, Any]:
        """One `vqa eval` item with one method, its video prepared by the driver: the eval runner's own
        :meth:`~pipelines.eval.runner.EvalRunner.run_prepared`, over the database read-only. Returns the
        runner's result and the product's answer for the driver to log (``log``), or the text of the
        item's error line (``error``), as a local run would write it."""
        from pipelines.eval.results import error_line
        from pipelines.eval.runner import EvalRunner

        try:
            if self._eval_runner is None:
                self._eval_runner = EvalRunner(self._main_store(), self.models, None, self.spec.eval_opts,
                                               log_answers=False)
            runner = self._eval_runner
            result = runner.run_prepared(item, method, video, timings)
            return {"result": result, "log": runner.unlogged}
        except Exception as e:  # noqa: BLE001 - as locally: a failed item is its own line, the run goes on
            return {"error": error_line(item, method, e)["error"]}
