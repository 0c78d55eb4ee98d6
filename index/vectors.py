"""FAISS over stored vectors: exact inner product on L2-normalised rows (cosine similarity).

Per-video indexes are rebuilt from the stored float32 BLOBs on load (exact ``IndexFlatIP`` is right up
to ~1e5 vectors per video). The library-wide index for ``--all`` is cached as a file next to the
database and rebuilt when it does not match the database (the runs it covers, the CLIP model, the
number and dimension of the vectors, the video ids).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .store import Store, from_blob


def _faiss():
    try:
        import faiss
    except ImportError as e:  # pragma: no cover - a dependency, via the cpu or gpu extra
        raise ImportError("FAISS is missing: pip install 'vqa[cpu]' (or 'vqa[gpu]')") from e
    return faiss


def flat_index(vectors: np.ndarray):
    faiss = _faiss()
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    index = faiss.IndexFlatIP(vectors.shape[1])
    if len(vectors):
        index.add(vectors)
    return index


def on_gpu(index):
    """The index on every GPU FAISS sees (``faiss-gpu``, the ``gpu`` extra), else the index itself;
    ``VQA_FAISS_GPU=0`` keeps it on the CPU. The cache on disk is always the CPU index."""
    import os

    faiss = _faiss()
    if os.environ.get("VQA_FAISS_GPU") == "0" or not hasattr(faiss, "index_cpu_to_all_gpus"):
        return index
    try:
        gpus = faiss.get_num_gpus()
    except (AttributeError, RuntimeError):
        return index
    return faiss.index_cpu_to_all_gpus(index) if gpus > 0 and index.ntotal > 0 else index


def top_k(index, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(scores, ids), each (Q, k'); k' = min(k, ntotal)."""
    k = min(k, index.ntotal)
    if k <= 0:
        return np.zeros((len(queries), 0), np.float32), np.zeros((len(queries), 0), np.int64)
    return index.search(np.ascontiguousarray(queries, dtype=np.float32), k)


@dataclass
class LibraryIndex:
    """All frames of every video's embedding run made with one CLIP model."""

    index: object
    video_ids: np.ndarray  # (N,) object
    times: np.ndarray  # (N,)

    @classmethod
    def load(cls, store: Store, model_fp: str, cache_dir: Path | None = None) -> LibraryIndex:
        """From the cache file when it matches the database (the runs it covers, the model, the number of
        vectors and their dimension, the ids), else rebuilt from the stored vectors and cached again
        (a cache that cannot be written, e.g. beside a read-only database, is simply not kept)."""
        runs = list(store.db.query(
            "select r.key, r.video_id from runs r where r.stage = 'frames' and r.status = 'done' "
            "and r.model_fp = ? and r.finished_at = (select max(finished_at) from runs r2 where "
            "r2.video_id = r.video_id and r2.stage = 'frames' and r2.status = 'done' and r2.model_fp = ?) "
            "order by r.key", [model_fp, model_fp]))
        keys = [r["key"] for r in runs]
        stamp = hashlib.blake2b(json.dumps(keys).encode(), digest_size=10).hexdigest()
        marks = ",".join("?" * len(keys))
        count = store.db.execute(f"select count(*) from frames where run_key in ({marks})", keys).fetchone()[0]
        dim_row = store.db.execute(f"select length(embedding) from frames where run_key in ({marks}) limit 1",
                                   keys).fetchone()
        dim = (dim_row[0] // 4) if dim_row and dim_row[0] else 1
        expected = {"stamp": stamp, "model_fp": model_fp, "count": count, "dim": dim,
                    "videos": sorted({r["video_id"] for r in runs})}
        cache_dir = cache_dir or store.path.parent
        base = cache_dir / f"library-{hashlib.blake2b(model_fp.encode(), digest_size=6).hexdigest()}"
        meta_path, index_path = Path(f"{base}.json"), Path(f"{base}.faiss")
        cached = _read_cache(meta_path, index_path, expected)
        if cached is not None:
            return cls(on_gpu(cached[0]), *cached[1:])
        vids, times, vecs = [], [], []
        for r in runs:
            for row in store.db.query("select t, embedding from frames where run_key = ? order by idx", [r["key"]]):
                vids.append(r["video_id"])
                times.append(row["t"])
                vecs.append(from_blob(row["embedding"]))
        matrix = np.stack(vecs) if vecs else np.zeros((0, dim), np.float32)
        index = flat_index(matrix)
        expected.update(count=len(vids), dim=int(matrix.shape[1]))
        _write_cache(meta_path, index_path, index, {**expected, "video_ids": vids, "times": times})
        return cls(on_gpu(index), np.array(vids, dtype=object), np.array(times, dtype=np.float64))


def _read_cache(meta_path: Path, index_path: Path, expected: dict) -> tuple | None:
    """(index, video_ids, times) from the cache files when they agree with ``expected`` and with each
    other; None when missing, unreadable or stale."""
    if not (meta_path.exists() and index_path.exists()):
        return None
    try:
        meta = json.loads(meta_path.read_text())
        if not isinstance(meta, dict) or any(meta.get(k) != v for k, v in expected.items()):
            return None
        vids, times = meta.get("video_ids"), meta.get("times")
        if not isinstance(vids, list) or not isinstance(times, list) or len(vids) != len(times):
            return None
        if len(vids) != expected["count"] or not set(vids) <= set(expected["videos"]):
            return None
        index = _faiss().read_index(str(index_path))
        if index.ntotal != expected["count"] or index.d != expected["dim"]:
            return None
        return index, np.array(vids, dtype=object), np.array(times, dtype=np.float64)
    except (OSError, ValueError, TypeError, RuntimeError):
        return None


def _write_cache(meta_path: Path, index_path: Path, index, meta: dict) -> None:
    """Both files replaced atomically, the index first: a reader that sees the new metadata sees the new
    index (and a mismatch is caught by ``_read_cache`` anyway)."""
    faiss = _faiss()
    tmp, tmpm = Path(f"{index_path}.tmp{os.getpid()}"), Path(f"{meta_path}.tmp{os.getpid()}")
    try:
        faiss.write_index(index, str(tmp))
        os.replace(tmp, index_path)
        tmpm.write_text(json.dumps(meta))
        os.replace(tmpm, meta_path)
    except (OSError, RuntimeError):  # read-only or full: search works without the cache
        for p in (tmp, tmpm):
            with contextlib.suppress(OSError):
                p.unlink()
