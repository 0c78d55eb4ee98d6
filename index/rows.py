"""Reading what the stages stored (scenes, frames, captions, timed text), and the errors and answers
tables. Mixed into :class:`index.store.Store`, which provides ``db``, ``write`` and ``get_run``."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from typing import Any

import numpy as np

from .keys import from_blob, now


class StageRows:
    # -- stage outputs --------------------------------------------------------------------------------
    def scenes(self, key: str) -> list[dict[str, Any]]:
        return list(self.db.query(
            "select idx, start, end, rep_t from scenes where run_key = ? order by idx", [key]))

    def scene_images(self, key: str) -> list[dict[str, Any]]:
        return list(self.db.query(
            "select idx, start, end, rep_t, rep_jpeg from scenes where run_key = ? order by idx", [key]))

    def captions(self, key: str) -> list[dict[str, Any]]:
        return list(self.db.query(
            "select scene_idx, start, end, text from captions where run_key = ? order by scene_idx", [key]))

    def frame_matrix(self, key: str) -> tuple[np.ndarray, np.ndarray]:
        """(times (N,), embeddings (N, D) float32) of a done embedding run, in time order. A done run
        never changes, so a process keeps the last few it read (many questions, one read)."""
        cached = self._matrices.get(key)
        if cached is not None:
            return cached
        run = self.get_run(key)
        out = self._read_frame_matrix(key)
        if run and run["status"] == "done":
            if len(self._matrices) >= 8:
                self._matrices.pop(next(iter(self._matrices)))
            self._matrices[key] = out
        return out

    def _read_frame_matrix(self, key: str) -> tuple[np.ndarray, np.ndarray]:
        """One entry per sample: a row that stands for ``n`` unchanged samples (``t`` … ``t_end``) is
        read back as ``n`` samples evenly over that range, all with its embedding, so that search sees
        the same curve whether or not unchanged frames were stored once."""
        times: list[np.ndarray] = []
        vecs, counts = [], []
        for r in self.db.query("select t, t_end, n, embedding from frames where run_key = ? order by idx", [key]):
            n = int(r["n"] or 1)
            times.append(np.linspace(r["t"], r["t_end"], n) if n > 1 and r["t_end"] is not None
                         else np.asarray([r["t"]], dtype=np.float64))
            vecs.append(from_blob(r["embedding"]))
            counts.append(len(times[-1]))
        if not vecs:
            return np.zeros(0, dtype=np.float64), np.zeros((0, 0), dtype=np.float32)
        mat = np.stack(vecs).astype(np.float32, copy=False)
        if any(c > 1 for c in counts):
            mat = np.repeat(mat, counts, axis=0)
        return np.concatenate(times).astype(np.float64, copy=False), mat

    def frame_jpegs(self, key: str, times: Iterable[float]) -> dict[float, bytes]:
        """The stored thumbnail for each time: the row whose time range holds it, else the nearest one (the
        first of equals). The rows' times are read once (no pixels), then only the chosen thumbnails: an
        ``order by`` over the rows with their JPEG columns read every thumbnail of the run."""
        times = list(times)
        rows = list(self.db.query("select idx, t, coalesce(t_end, t) as e from frames where run_key = ? "
                                  "order by idx", [key])) if times else []
        if not rows:
            return {}
        idx = np.asarray([r["idx"] for r in rows])
        a = np.asarray([r["t"] for r in rows], dtype=np.float64)
        e = np.asarray([r["e"] for r in rows], dtype=np.float64)
        pick = {}
        for t in times:
            far = np.where((a <= t) & (t <= e), 0.0, np.minimum(np.abs(a - t), np.abs(e - t)))
            pick[t] = int(idx[int(np.argmin(far))])
        wanted = sorted(set(pick.values()))
        jpegs = {r["idx"]: r["jpeg"] for r in self.db.query(
            f"select idx, jpeg from frames where run_key = ? and idx in ({','.join('?' * len(wanted))})",
            [key, *wanted])}
        return {t: jpegs[i] for t, i in pick.items()}

    def probe_frames(self, key: str) -> dict[tuple[float, float, float], tuple[np.ndarray, np.ndarray]]:
        """The frames an embedding run decoded where its grid under-samples the shots (see
        ``pipelines.indexing``): (range start, range end, fps) -> (times (M,), embeddings (M, D)), each
        rounded to the millisecond; empty for a run indexed before they were stored."""
        out: dict[tuple[float, float, float], tuple[list, list]] = {}
        for r in self.db.query("select a, b, fps, t, embedding from probe_frames where run_key = ? order by idx",
                               [key]):
            ts, vs = out.setdefault((round(r["a"], 3), round(r["b"], 3), round(r["fps"], 3)), ([], []))
            ts.append(r["t"])
            vs.append(from_blob(r["embedding"]))
        return {k: (np.asarray(ts, dtype=np.float64), np.stack(vs).astype(np.float32, copy=False))
                for k, (ts, vs) in out.items()}

    def probe_jpegs(self, key: str, times: Iterable[float]) -> dict[float, bytes]:
        """The stored pixels of probe frames at these times (to the millisecond), those there are."""
        out = {}
        for t in times:
            row = self.db.execute("select jpeg from probe_frames where run_key = ? and abs(t - ?) < 0.0005 limit 1",
                                  [key, float(t)]).fetchone()
            if row is not None:
                out[float(t)] = row[0]
        return out

    def held_windows(self, key: str, spec: str) -> dict[float, tuple[np.ndarray, np.ndarray]]:
        """The windows an embedding run holds embedded with ``spec`` (its probe frames' and each shot's first
        grid frame's): time (to the millisecond) -> ((R, 4) windows as fractions, (R, D) vectors); empty
        for a run indexed before they were stored or with other windows."""
        cached = self._matrices.get(("windows", key, spec))
        if cached is not None:
            return cached
        out = {}
        for r in self.db.query("select t, boxes, windows from frame_windows where run_key = ? and window_spec = ? "
                               "order by idx", [key, spec]):
            boxes = np.frombuffer(r["boxes"], dtype=np.float64).reshape(-1, 4)
            out[round(float(r["t"]), 3)] = (boxes, from_blob(r["windows"]).reshape(len(boxes), -1))
        run = self.get_run(key)
        if run and run["status"] == "done":
            if len(self._matrices) >= 8:
                self._matrices.pop(next(iter(self._matrices)))
            self._matrices[("windows", key, spec)] = out
        return out

    def held_first_frames(self, key: str, spec: str) -> np.ndarray:
        """Times of the grid frames whose windows the run holds (each shot's first)."""
        return np.asarray([r[0] for r in self.db.execute(
            "select t from frame_windows where run_key = ? and window_spec = ? and kind = 'first' order by t",
            [key, spec])], dtype=np.float64)

    def texts(self, key: str) -> list[dict[str, Any]]:
        return list(self.db.query(
            "select idx, source, start, end, text, confidence, box from texts where run_key = ? order by idx",
            [key]))

    # -- errors and answers -----------------------------------------------------------------------------
    def record_error(self, path: str, message: str, *, video_id: str | None = None,
                     stage: str | None = None) -> None:
        with self.write() as db:
            db["errors"].insert({"path": os.path.abspath(path), "video_id": video_id, "stage": stage,
                                 "message": message, "created_at": now()})

    def clear_errors(self, path: str) -> None:
        apath = os.path.abspath(path)
        if not self.db.execute("select 1 from errors where path = ? limit 1", [apath]).fetchone():
            return  # nothing to clear: no write (an unchanged video is fine on a read-only database)
        with self.write() as db:
            db.execute("delete from errors where path = ?", [apath])

    def failed(self) -> list[dict[str, Any]]:
        return list(self.db.query(
            "select path, stage, message, max(created_at) as created_at from errors group by path "
            "order by created_at"))

    def add_answer(self, row: dict[str, Any]) -> int:
        with self.write() as db:
            enc = {k: (json.dumps(v) if isinstance(v, (dict, list)) else v) for k, v in row.items()}
            enc["created_at"] = now()
            return db["answers"].insert(enc).last_pk

    def answers(self, video_id: str | None = None, limit: int = 20) -> list[dict[str, Any]]:
        if video_id:
            q, args = "select * from answers where video_id = ? order by id desc limit ?", [video_id, limit]
        else:
            q, args = "select * from answers order by id desc limit ?", [limit]
        return list(self.db.query(q, args))
