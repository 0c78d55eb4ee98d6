"""Queries use the models that built the index.

A video's ``frames`` run records the CLIP spec (``runs.model``), its identity (``runs.model_fp``) and the
profile (``stats.profile``). ``adopt_recorded`` picks the run to search and makes ``models`` embed the
query with that very CLIP (and, when the user named no profile, answer with that profile's models):
- nothing chosen by the user: the newest frames run; its CLIP and profile are adopted;
- a CLIP or a profile chosen: the run whose identity is that CLIP's; none -> one line naming both;
- the recorded CLIP's weights changed since (its identity differs now): one line saying so, since the
  stored image embeddings no longer match what that CLIP computes.
"""

from __future__ import annotations

import json
from typing import Any

from pipelines.errors import ModelError, NotIndexedError


def _stats(run: dict[str, Any]) -> dict[str, Any]:
    try:
        return json.loads(run.get("stats") or "{}") or {}
    except (TypeError, ValueError):
        return {}


def done_frames_runs(store, video_id: str) -> list[dict[str, Any]]:
    return list(store.db.query(
        "select * from runs where video_id = ? and stage = 'frames' and status = 'done' "
        "order by finished_at desc", [video_id]))


def recorded_profile(run: dict[str, Any]) -> str | None:
    """The profile a frames run was made with: recorded since identities are content hashes; for older
    runs, the built-in profile whose CLIP has that identity."""
    from pipelines.backends.profiles import PROFILES
    from pipelines.backends.registry import identify

    name = _stats(run).get("profile")
    if name in PROFILES:
        return name
    for prof in PROFILES.values():
        if prof.clip == run["model"]:
            try:
                if identify("clip", prof.clip) == run["model_fp"]:
                    return prof.name
            except ModelError:
                continue
    return None


def adopt_recorded(store, video: dict[str, Any], models) -> dict[str, Any]:
    """The frames run to search (see the module docstring); ``models`` is switched in place to the CLIP
    (and profile) that made it when the user chose neither."""
    from pipelines.backends.registry import identify

    runs = done_frames_runs(store, video["id"])
    name = video.get("path") or video["id"]
    if not runs:
        raise NotIndexedError("no frame embeddings yet (run `vqa index` on it)", name)
    chosen = {"clip", "profile"} & set(models.explicit)
    if chosen:
        want = models.identity("clip")
        for run in runs:
            if run["model_fp"] == want:
                return run
        got = runs[0]
        prof = recorded_profile(got)
        clips = list(dict.fromkeys(r["model"] for r in runs))
        was = " and ".join(f"'{c}'" for c in clips)
        was = f"CLIP {was}" + (f" (profile {prof})" if prof else "")
        raise ModelError(f"it was indexed with {was}, not with CLIP '{models.profile.clip}': search it with the "
                         f"CLIP that indexed it (leave out --clip/--profile"
                         f"{', or pass --profile ' + prof if prof else ''}), or index it with the other one "
                         f"first (vqa index VIDEO --clip ...)", name)
    run = runs[0]
    now = identify("clip", run["model"], device=models.device)
    if now != run["model_fp"]:
        raise ModelError(f"the CLIP that indexed it ('{run['model']}') has other weights now than when it indexed "
                         "it: run `vqa index` on it again to embed its frames with the current weights", name)
    _adopt(models, run)
    return run


def _adopt(models, run: dict[str, Any]) -> None:
    """Make ``models`` the profile and CLIP a frames run was made with."""
    from pipelines.backends.profiles import PROFILES

    prof = recorded_profile(run)
    if prof and prof != models.profile.name:
        models.adopt(PROFILES[prof])
    if models.profile.clip != run["model"]:
        models.adopt(models.profile.with_overrides(clip=run["model"]))


def library_clip(store, models) -> str:
    """The identity of the CLIP to search the whole library with: the user's, or else the one that indexed
    the most videos (which ``models`` adopts, with its profile)."""

    if {"clip", "profile"} & set(models.explicit):
        return models.identity("clip")
    rows = list(store.db.query(
        "select model, model_fp, max(finished_at) as last, count(distinct video_id) as n, stats from runs "
        "where stage = 'frames' and status = 'done' group by model_fp order by n desc, last desc limit 1"))
    if not rows:
        return models.identity("clip")
    _adopt(models, rows[0])
    return rows[0]["model_fp"]
