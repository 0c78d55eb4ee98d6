"""`vqa search`: the best matching moments of one video or of the whole library, without any language
model: the frames' ranking (CLIP, through the keyframe search or the library-wide FAISS index) and the
timed lines' ranking (speech, on-screen text, captions) fused by reciprocal rank (``fuse_moments``)."""

from __future__ import annotations

import numpy as np

from index.store import Store
from pipelines import search as kf
from pipelines.backends.profiles import Models
from pipelines.indexing import Indexer


def search_moments(store: Store, models: Models, ref: str, text: str, *, top: int = 5,
                   indexer: Indexer | None = None) -> dict:
    """The best matching moments (start, end, score, scene, channel) from frames and timed text."""
    from pipelines.ask import AskOptions, _resolve_video, _scene_of, _scenes, search_keyframes

    video = _resolve_video(store, ref, indexer=indexer)
    out = search_keyframes(store, models, video["path"], text, [], AskOptions(k=2 * top, visual="on"),
                           indexer=None)
    scenes = _scenes(store, video["id"])
    shots = [(s["start"], s["end"]) for s in scenes]
    res = out.result
    duration = float(video["duration"] or (res.curve_times[-1] if len(res.curve_times) else 0.0))
    moments = []
    for start, end, k in kf.visual_moments(res, shots, duration):  # each keyframe's hump in its shot, if a match
        moments.append({"start": start, "end": end, "t": k.t, "score": k.score, "channel": "visual",
                        "text": None, "region": list(k.region) if k.region else None})
    for h in out.text_hits:
        moments.append({"start": h.start, "end": h.end, "t": (h.start + h.end) / 2, "score": None,
                        "channel": h.source, "text": h.text, "via": h.via})
    # a random-weights CLIP ranks frames by noise: then its moments only fill in after the timed lines
    random_clip = bool(models.clip().random_weights)
    ranked = fuse_moments(moments, visual_weight=0.01 if random_clip else 1.0)[:top]  # 2x keyframes: humps merge
    for m in ranked:
        m["scene"] = _scene_of(scenes, m["t"])
    return {"video": video["path"], "video_id": video["id"], "query": text,
            "clip_random_weights": random_clip,
            "subqueries": [s.as_dict() for s in out.subqueries], "moments": ranked,
            "timings": {k: round(v, 2) for k, v in out.timings.items()}}


def fuse_moments(moments: list[dict], *, visual_weight: float = 1.0) -> list[dict]:
    """Reciprocal-rank fusion of the visual ranking and the text ranking; overlapping moments merge and
    keep every channel that found them. Two rankers (the frames, and the timed lines of speech, screen
    and captions) each add their best reciprocal rank once per moment: three weak lines in one place do
    not outweigh the line that matches, nor do several keyframes of one hump count as several findings."""
    vis = sorted([m for m in moments if m["channel"] == "visual"], key=lambda m: -m["score"])
    txt = [m for m in moments if m["channel"] != "visual"]
    for rank, m in enumerate(vis):
        m["rrf"] = visual_weight / (10 + rank)
    for rank, m in enumerate(txt):
        m["rrf"] = 1.5 / (10 + rank)  # what is said or written is exact when it matches
    merged: list[dict] = []
    for m in sorted(vis + txt, key=lambda m: -m["rrf"]):
        ranker = "visual" if m["channel"] == "visual" else "text"
        for g in merged:
            if m.get("video_id") == g.get("video_id") and m["start"] < g["end"] and g["start"] < m["end"]:
                # they share time (touching shots do not), in one video
                if ranker not in g["rankers"]:  # sorted by rrf: a ranker's first hit here is its best
                    g["rankers"].add(ranker)
                    g["rrf"] += m["rrf"]
                g["channels"] = sorted(set(g["channels"]) | {m["channel"]})
                if m.get("text") and not g.get("text"):
                    g["text"] = m["text"]
                break
        else:
            merged.append({"video_id": m.get("video_id"), "start": m["start"], "end": m["end"], "t": m["t"],
                           "rrf": m["rrf"], "rankers": {ranker},
                           "channels": [m["channel"]], "text": m.get("text"),
                           "visual_score": m["score"] if m["channel"] == "visual" else None,
                           "region": m.get("region")})
    merged.sort(key=lambda g: -g["rrf"])
    return [{**({"video_id": g["video_id"]} if g["video_id"] is not None else {}),
             "start": round(g["start"], 3), "end": round(g["end"], 3), "score": round(g["rrf"], 4),
             "channels": g["channels"], "text": g["text"],
             "visual_score": None if g["visual_score"] is None else round(g["visual_score"], 4),
             "region": g.get("region"), "t": g["t"]} for g in merged]


def search_library(store: Store, models: Models, text: str, *, top: int = 10) -> dict:
    """`vqa search --all`: every indexed video; the frames through the library-wide FAISS index and the
    speech and on-screen text of every video, fused as single-video search fuses them (``fuse_moments``;
    moments merge only within one video)."""
    from index.vectors import LibraryIndex, top_k
    from pipelines.backends.index_models import library_clip
    from pipelines.search.textsearch import search_texts

    lib = LibraryIndex.load(store, library_clip(store, models))
    clip = models.clip()
    subs = kf.decompose_question(text)
    q = kf.embed_subqueries(clip.embed_texts, subs)
    w = np.asarray([s.weight for s in subs], dtype=np.float32)
    qv = (q * w[:, None]).sum(axis=0)
    qv /= max(np.linalg.norm(qv), 1e-12)
    scores, ids = top_k(lib.index, qv[None, :], top * 20)
    moments, seen = [], []
    for s, i in zip(scores[0], ids[0]):
        vid, t = lib.video_ids[i], float(lib.times[i])
        if any(v == vid and abs(t - u) < 2.0 for v, u in seen):
            continue
        seen.append((vid, t))
        moments.append({"video_id": vid, "start": max(0.0, t - 0.5), "end": t + 0.5, "t": t, "score": float(s),
                        "channel": "visual", "text": None})
        if len(seen) >= 2 * top:
            break
    videos = [r["id"] for r in store.db.query("select id from videos")]
    temb = models.text_embedder() if models.profile.text_embedder else None
    for h in search_texts(store, videos, text, text_embedder=temb, limit=2 * top):
        row = store.db.execute("select video_id from runs where key = ?", [h.run_key]).fetchone()
        moments.append({"video_id": row[0] if row else None, "start": h.start, "end": h.end,
                        "t": (h.start + h.end) / 2, "score": None, "channel": h.source, "text": h.text})
    random_clip = bool(clip.random_weights)
    results = []
    for m in fuse_moments(moments, visual_weight=0.01 if random_clip else 1.0)[:top]:
        video = store.get_video(m["video_id"])
        results.append({"video": video["path"] if video else m["video_id"], **m})
    with_text = {m["video_id"] for m in moments if m["channel"] != "visual"}
    return {"query": text, "videos": int(len(set(lib.video_ids.tolist()) | with_text)),
            "frames": int(lib.index.ntotal), "clip_random_weights": random_clip, "moments": results}
