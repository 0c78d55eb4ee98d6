"""Housekeeping: `vqa scenes`, `vqa ls`, `vqa rm`, `vqa gc`, `vqa doctor`, `vqa models`."""

from __future__ import annotations

import json
import os
from typing import Annotated

import typer

from .common import DbOpt, JsonOpt, ProfileOpt, db_path, err, errors_to_exit, open_store, out_json, show


def register(app: typer.Typer) -> None:
    app.command("scenes")(scenes)
    app.command("ls")(ls)
    app.command("rm")(rm)
    app.command("gc")(gc)
    app.command("doctor")(doctor)
    app.command("models")(models)


def _fmt_t(t: float | None) -> str:
    if t is None:
        return "-"
    h, rem = divmod(float(t), 3600)
    m, s = divmod(rem, 60)
    return f"{int(h)}:{int(m):02d}:{s:05.2f}" if h else f"{int(m):02d}:{s:05.2f}"


def _video_or_exit(store, ref: str) -> dict:
    video = store.find_video(ref)
    if not video:
        err(f"{ref}: not indexed (run `vqa index {ref}`)")
        raise typer.Exit(1)
    return video


def scenes(
    video: Annotated[str, typer.Argument(help="Video path (or its fingerprint).")],
    db: DbOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """List a video's scenes with their captions."""
    with errors_to_exit(), open_store(db, readonly=True) as store:
        v = _video_or_exit(store, video)
        srun = store.latest_run(v["id"], "scenes")
        if not srun:
            err(f"{video}: scenes not indexed yet (run `vqa index {video}`)")
            raise typer.Exit(1)
        crun = store.latest_run(v["id"], "captions")
        caps = {c["scene_idx"]: c["text"] for c in store.captions(crun["key"])} if crun else {}
        random_caps = bool(crun and json.loads(crun["stats"] or "{}").get("random_weights"))
        rows = [{"scene": s["idx"] + 1, "start": round(s["start"], 3), "end": round(s["end"], 3),
                 "caption": caps.get(s["idx"])} for s in store.scenes(srun["key"])]
        if json_out:
            out_json({"video": v["path"], "video_id": v["id"], "duration": v["duration"],
                      "captions_random_weights": random_caps, "scenes": rows})
            return
        typer.echo(f"{show(v['path'])}  ({_fmt_t(v['duration'])}, {len(rows)} scenes)")
        for r in rows:
            cap = r["caption"] or ""
            if cap and random_caps:
                cap = f"[random-weights captioner] {cap}"
            typer.echo(f"{r['scene']:4d}  {_fmt_t(r['start'])} - {_fmt_t(r['end'])}  {show(cap)}")


def ls(
    db: DbOpt = None,
    profile: ProfileOpt = None,
    failed: Annotated[bool, typer.Option("--failed", help="List inputs that failed, with the cause.")] = False,
    json_out: JsonOpt = False,
) -> None:
    """List indexed videos and the state of each stage (with --profile: against what that profile needs)."""
    import os

    from pipelines.backends.profiles import get_profile
    from pipelines.indexing import IndexOptions, latest_stage_status, stage_status

    if not db_path(db).exists():  # nothing indexed yet (and nothing created by looking)
        if json_out:
            out_json([])
        return
    with errors_to_exit(), open_store(db, readonly=True) as store:
        if failed:
            rows = store.failed()
            if json_out:
                out_json(rows)
            for r in rows if not json_out else []:
                typer.echo(show(f"{r['path']}: {r['message']}"))
            return
        prof = get_profile(profile) if profile or os.environ.get("VQA_PROFILE") else None
        out = []
        for v in store.list_videos():
            paths = store.video_paths(v["id"])
            if prof is None:
                status = latest_stage_status(store, v["id"])
            else:
                status = stage_status(store, v["id"], prof, IndexOptions(), path=paths[0] if paths else None)
            out.append({"video_id": v["id"], "paths": paths, "duration": v["duration"], "stages": status,
                        "complete": all(s == "done" for s in status.values())})
        if json_out:
            out_json(out)
            return
        for r in out:
            marks = " ".join(f"{k}:{'ok' if s == 'done' else s}" for k, s in r["stages"].items())
            path = show(r["paths"][0]) if r["paths"] else "?"
            typer.echo(f"{r['video_id'][:12]}  {_fmt_t(r['duration']):>10}  {path}  [{marks}]")


def rm(
    videos: Annotated[list[str], typer.Argument(help="Video paths or fingerprints to forget.")],
    db: DbOpt = None,
) -> None:
    """Forget videos: their scenes, frames, captions, texts and answers.

    A video that another `vqa` is indexing is removed too: that indexing stops at its next write,
    keeps nothing, and says so. A fingerprint prefix is taken literally and must name one video."""
    from index.errors import AmbiguousVideo

    failed = usage = 0
    with errors_to_exit(), open_store(db, must_exist=True) as store:
        for ref in videos:
            try:
                v = store.find_video(ref)
            except AmbiguousVideo as e:
                err(f"error: {e}")
                usage += 1
                continue
            if not v:
                err(f"{ref}: not indexed")
                failed += 1
                continue
            store.delete_video(v["id"])
            typer.echo(f"removed {show(ref)}")
    if usage or failed:
        raise typer.Exit(2 if usage else 1)


def gc(db: DbOpt = None) -> None:
    """Forget videos whose files are all gone, drop unfinished runs' leftovers and every orphan row (of a
    removed video or a missing run), and vacuum."""
    with errors_to_exit(), open_store(db, must_exist=True) as store:
        removed = 0
        for v in store.list_videos():
            paths = store.video_paths(v["id"])
            for p in paths:
                if not os.path.exists(p):
                    store.forget_path(p)
            if not any(os.path.exists(p) for p in paths):
                store.delete_video(v["id"])
                removed += 1
        purged = store.purge_unfinished()
        orphans = store.purge_orphans()
        store.db.execute("VACUUM")
        typer.echo(f"{removed} videos forgotten; {purged} rows of unfinished runs dropped; {orphans} orphan rows "
                   "dropped; database vacuumed")


def doctor(db: DbOpt = None, profile: ProfileOpt = None, json_out: JsonOpt = False) -> None:
    """Check ffmpeg, GPU, models, and the database's health."""
    from pipelines.doctor import run_checks

    with errors_to_exit():
        checks = run_checks(db_path(db), profile)
    if json_out:
        out_json(checks)
    else:
        for c in checks:
            typer.echo(f"[{'ok' if c['ok'] else '!!'}] {c['name']:<22} {c['detail']}")
    if not all(c["ok"] or c.get("optional") for c in checks):
        raise typer.Exit(1)


def models(profile: ProfileOpt = None, json_out: JsonOpt = False) -> None:
    """List the model profiles, what each resolves to, and the backends installed (vqa's and plugins')."""
    from pipelines.backends.profiles import PROFILES
    from pipelines.backends.registry import backends, origin

    rows = [p.as_dict() for name, p in PROFILES.items() if not profile or name == profile]
    found = [{"kind": b.kind, "name": b.name, "package": origin(b), "default": b.default,
              "random_weights": b.random_weights, "description": b.description} for b in backends()]
    if json_out:
        out_json(rows if profile else {"profiles": rows, "backends": found})
        return
    for p in rows:
        typer.echo(f"{p['name']}: {p['description']}")
        for k in ("clip", "captioner", "answerer", "transcriber", "ocr", "text_embedder"):
            label = "  (random weights)" if k in p["random_weights"] else ""
            typer.echo(f"  {k:<14} {p[k] or '-'}{label}")
        typer.echo("")
    if profile:
        return
    typer.echo("backends (spec NAME or NAME:TARGET; the default takes any other spec of its kind):")
    for b in sorted(found, key=lambda b: (b["kind"], not b["default"], b["name"])):
        tag = " (default)" if b["default"] else ""
        pkg = f" [{b['package']}]" if b["package"] and b["package"] != "vqa" else ""
        typer.echo(f"  {b['kind']:<14} {b['name']}{tag}{pkg}: {b['description']}")
