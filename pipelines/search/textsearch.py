"""Search the timed text of a video (speech, on-screen text, scene captions): SQLite FTS5 (bm25) and
sentence embeddings, fused by reciprocal rank."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass

import numpy as np

from index.store import Store, from_blob
from pipelines.question import search_terms

RRF_K = 10


@dataclass
class TextHit:
    source: str  # speech | screen | caption
    start: float
    end: float
    text: str
    score: float
    via: list[str]  # "fts", "vector"
    run_key: str
    idx: int

    def as_dict(self) -> dict:
        d = asdict(self)
        d["start"], d["end"], d["score"] = round(self.start, 3), round(self.end, 3), round(self.score, 4)
        d.pop("run_key")
        d.pop("idx")
        return d


def fts_query(text: str) -> str | None:
    words = search_terms(text)
    if not words:
        return None
    return " OR ".join('"' + w.replace('"', '') + '"' for w in words)


def current_text_runs(store: Store, video_id: str) -> dict[str, dict]:
    """The latest done run of each text stage of a video."""
    runs = {}
    for stage in ("transcript", "ocr", "captions", "textvec"):
        run = store.latest_run(video_id, stage)
        if run:
            runs[stage] = run
    return runs


def _random_captions(run: dict | None) -> bool:
    return bool(run and json.loads(run["stats"] or "{}").get("random_weights"))


def _text_keys(runs: dict[str, dict], include_random_captions: bool) -> list[str]:
    keys = [runs[s]["key"] for s in ("transcript", "ocr") if s in runs]
    if "captions" in runs and (include_random_captions or not _random_captions(runs["captions"])):
        keys.append(runs["captions"]["key"])
    return keys


def search_text(store: Store, video_id: str, query: str, *, text_embedder=None, limit: int = 10,
                include_random_captions: bool = False) -> list[TextHit]:
    """The timed lines of one video that match the query best (see ``search_texts``)."""
    return search_texts(store, [video_id], query, text_embedder=text_embedder, limit=limit,
                        include_random_captions=include_random_captions)


def search_texts(store: Store, video_ids: list[str], query: str, *, text_embedder=None, limit: int = 10,
                 include_random_captions: bool = False) -> list[TextHit]:
    """The timed lines of these videos that match the query best: one full-text ranking (bm25) over all of
    them and one ranking by sentence-embedding similarity (each video's vectors scored against the query,
    the best of each kept, then ranked together), fused by reciprocal rank."""
    keys: list[str] = []
    vec_runs: dict[str, list[str]] = {}  # textvec run -> the text runs it covers
    for vid in video_ids:
        runs = current_text_runs(store, vid)
        these = _text_keys(runs, include_random_captions)
        keys += these
        if these and "textvec" in runs:
            vec_runs[runs["textvec"]["key"]] = these
    if not keys:
        return []
    ranked: dict[tuple[str, int], dict] = {}

    def add(row: dict, rank: int, via: str) -> None:
        key = (row["run_key"], row["idx"])
        entry = ranked.setdefault(key, {"row": row, "score": 0.0, "via": []})
        entry["score"] += 1.0 / (RRF_K + rank)
        entry["via"].append(via)

    q = fts_query(query)
    if q:
        marks = ",".join("?" * len(keys))
        rows = store.db.query(
            f"select t.run_key, t.idx, t.source, t.start, t.end, t.text from texts_fts "
            f"join texts t on t.rowid = texts_fts.rowid where texts_fts match ? and t.run_key in ({marks}) "
            f"order by bm25(texts_fts) limit ?", [q, *keys, limit * 3])
        for rank, row in enumerate(rows):
            add(row, rank, "fts")
    if text_embedder is not None and vec_runs:
        qv = text_embedder.embed_texts([query])[0]
        found: list[tuple[float, str, int]] = []  # (similarity, text run, idx), the best of each video
        for vec_key, covered in vec_runs.items():
            vec_rows = [r for r in store.db.query(
                "select text_run, idx, embedding from text_vectors where run_key = ?", [vec_key])
                if r["text_run"] in covered]
            if not vec_rows:
                continue
            sims = np.stack([from_blob(r["embedding"]) for r in vec_rows]) @ qv
            for i in np.argsort(-sims)[: limit * 3]:
                if sims[i] < 0.2:  # unrelated sentences sit near 0 with MiniLM
                    break
                found.append((float(sims[i]), vec_rows[i]["text_run"], vec_rows[i]["idx"]))
        found.sort(key=lambda f: -f[0])
        for rank, (_, run_key, idx) in enumerate(found[: limit * 3]):
            row = store.db.execute("select run_key, idx, source, start, end, text from texts where run_key = ? "
                                   "and idx = ?", [run_key, idx]).fetchone()
            if row:
                add(dict(zip(("run_key", "idx", "source", "start", "end", "text"), row)), rank, "vector")
    hits = [TextHit(e["row"]["source"], e["row"]["start"], e["row"]["end"], e["row"]["text"], e["score"],
                    e["via"], e["row"]["run_key"], e["row"]["idx"]) for e in ranked.values()]
    hits.sort(key=lambda h: -h.score)
    return hits[:limit]


def lines_near(store: Store, video_id: str, times: list[float], *, window: float = 2.0,
               include_random_captions: bool = False) -> list[dict]:
    """Speech and on-screen lines overlapping the keyframes' moments (+-window seconds)."""
    keys = _text_keys(current_text_runs(store, video_id), include_random_captions)
    if not keys or not times:
        return []
    rows = list(store.db.query(
        f"select run_key, idx, source, start, end, text from texts where run_key in ({','.join('?' * len(keys))})",
        keys))
    return [r for r in rows if any(r["start"] - window <= t <= r["end"] + window for t in times)]
