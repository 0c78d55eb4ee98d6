"""FAISS over stored vectors: exact inner product on L2-normalised rows (cosine similarity).

Per-video indexes are rebuilt from the stored float32 BLOBs on load (exact ``IndexFlatIP`` is right up
to ~1e5 vectors per video). The library-wide index for ``--all`` is cached as a file next to the
database and rebuilt when the set of runs it covers changes.
"""

from __future__ import annotations

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
        runs = list(store.db.query(
            "select r.key, r.video_id from runs r where r.stage = 'frames' and r.status = 'done' "
            "and r.model_fp = ? and r.finished_at = (select max(finished_at) from runs r2 where "
            "r2.video_id = r.video_id and r2.stage = 'frames' and r2.status = 'done' and r2.model_fp = ?) "
            "order by r.key", [model_fp, model_fp]))
        stamp = hashlib.blake2b(json.dumps([r["key"] for r in runs]).encode(), digest_size=10).hexdigest()
        cache_dir = cache_dir or store.path.parent
        base = cache_dir / f"library-{hashlib.blake2b(model_fp.encode(), digest_size=6).hexdigest()}"
        faiss = _faiss()
        meta_path, index_path = Path(f"{base}.json"), Path(f"{base}.faiss")
        if meta_path.exists() and index_path.exists():
            try:
                meta = json.loads(meta_path.read_text())
                if meta.get("stamp") == stamp:
                    return cls(faiss.read_index(str(index_path)), np.array(meta["video_ids"], dtype=object),
                               np.array(meta["times"], dtype=np.float64))
            except (OSError, ValueError, RuntimeError):
                pass
        vids, times, vecs = [], [], []
        for r in runs:
            for row in store.db.query("select t, embedding from frames where run_key = ? order by idx", [r["key"]]):
                vids.append(r["video_id"])
                times.append(row["t"])
                vecs.append(from_blob(row["embedding"]))
        matrix = np.stack(vecs) if vecs else np.zeros((0, 1), np.float32)
        index = flat_index(matrix)
        tmp = Path(f"{index_path}.tmp{os.getpid()}")
        faiss.write_index(index, str(tmp))
        os.replace(tmp, index_path)
        tmpm = Path(f"{meta_path}.tmp{os.getpid()}")
        tmpm.write_text(json.dumps({"stamp": stamp, "video_ids": vids, "times": times}))
        os.replace(tmpm, meta_path)
        return cls(index, np.array(vids, dtype=object), np.array(times, dtype=np.float64))
