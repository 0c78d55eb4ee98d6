"""`vqa eval`: run a benchmark file, resumably, with search baselines side by side."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from pipelines import defaults

from .common import (
    AnswererOpt,
    ClipOpt,
    ClipPretrainedOpt,
    DbOpt,
    DeviceOpt,
    JsonOpt,
    ProfileOpt,
    StderrProgress,
    build_models,
    err,
    errors_to_exit,
    open_store,
    out_json,
)

# Kept in step with pipelines.eval.load.FORMATS and pipelines.eval.runner.METHODS (checked by the tests);
# spelled out here so that `vqa --help` imports nothing heavy.
FORMAT_NAMES = "auto, native, lv-haystack, videomme, mlvu, longvideobench, egoschema, nextqa"
METHOD_NAMES = "uniform, topk, vqa"


def register(app: typer.Typer) -> None:
    app.command("eval")(eval_)


def _methods(text: str) -> list[str]:
    methods = [m.strip() for m in text.split(",") if m.strip()]
    known = [m.strip() for m in METHOD_NAMES.split(",")]
    bad = [m for m in methods if m not in known]
    if not methods or bad or len(set(methods)) != len(methods):
        what = f"unknown method(s) {', '.join(bad)}" if bad else "give distinct methods"
        err(f"error: --search: {what} (choose from {METHOD_NAMES}, comma-separated)")
        raise typer.Exit(2)
    return methods


def _progress_line(done: int, total: int, line: dict) -> str:
    head = f"[{done}/{total}] {line['id']} {line['method']}"
    if line.get("error"):
        return f"{head}: error: {line['error']}"
    parts = []
    if line.get("hit") is not None:
        parts.append("hit" if line["hit"] else "miss")
    if line.get("answer") is not None:
        verdict = {True: "right", False: "wrong", None: "ungraded"}[line.get("correct")]
        parts.append(f"answer {str(line['answer'])[:40]!r} ({verdict})")
    ms = (line.get("timings") or {}).get("search_ms")
    if ms is not None:
        parts.append(f"search {ms:.0f} ms")
    return f"{head}: {', '.join(parts) or 'done'}"


def eval_(
    file: Annotated[Path, typer.Argument(help="Benchmark annotations: a file (JSON, JSON Lines, CSV, Parquet) "
                                              "or a benchmark folder (EgoSchema, MLVU, LongVideoBench, Video-MME).",
                                        show_default=False)],
    fmt: Annotated[str, typer.Option("--format", "-f", help=f"Record layout: {FORMAT_NAMES}.")] = "auto",
    video_root: Annotated[Path | None, typer.Option(
        "--video-root", help="Folder the videos are under (default: next to FILE).", show_default=False)] = None,
    subtitles_root: Annotated[Path | None, typer.Option(
        "--subtitles-root", help="Folder of the benchmark's subtitle files (default: its usual folder, e.g. "
                                 "subtitle/ for Video-MME, subtitles/ for LongVideoBench).", show_default=False)] = None,
    subtitles: Annotated[bool, typer.Option(
        "--subtitles/--no-subtitles", help="The benchmark's subtitles are the speech text of their videos "
                                           "(--no-subtitles: no speech text at all, the 'without subtitles' "
                                           "setting).")] = True,
    frames: Annotated[int, typer.Option("--frames", "-k", min=1, help="Keyframes per item (K).")] = defaults.K,
    limit: Annotated[int | None, typer.Option("--limit", "-n", min=0, help="Only the first N usable items.",
                                              show_default=False)] = None,
    search: Annotated[str, typer.Option("--search", help=f"Methods, comma-separated: {METHOD_NAMES} "
                                                          "(uniform: K evenly spaced frames; topk: plain CLIP "
                                                          "top-K over the index; vqa: the product's search).")]
    = "uniform,topk,vqa",
    search_only: Annotated[bool, typer.Option("--search-only", help="No answerer: keyframe-search metrics only.")]
    = False,
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Results, one JSON line per (item, method) "
                                                                "(default: FILE's name + .results.jsonl, here).",
                                             show_default=False)] = None,
    resume: Annotated[bool, typer.Option("--resume/--no-resume", help="Keep the finished lines of --out and "
                                                                       "run only the rest (--no-resume: start over).")]
    = True,
    delta: Annotated[float, typer.Option("--delta", min=0.0, help="Tolerance of the temporal precision / recall, "
                                                                  "seconds.")] = defaults.DELTA_S,
    seed: Annotated[int, typer.Option(help="Seed of the search and the answerer.")] = defaults.SEED,
    zoom_rounds: Annotated[int, typer.Option(min=0, help="Coarse-to-fine zoom rounds of the vqa search.")] = defaults.ZOOM_ROUNDS,
    db: DbOpt = None,
    profile: ProfileOpt = None,
    device: DeviceOpt = None,
    clip: ClipOpt = None,
    clip_pretrained: ClipPretrainedOpt = None,
    answerer: AnswererOpt = None,
    json_out: JsonOpt = False,
    progress: Annotated[bool, typer.Option("--progress/--no-progress", help="One line per finished item on "
                                                                           "stderr.")] = True,
    engine: Annotated[str, typer.Option("--engine", help="local, or ray: index the videos and answer the "
                                                         "questions on a Ray cluster's workers (results "
                                                         "written here, in order).")] = "local",
    address: Annotated[str | None, typer.Option("--address", help="--engine ray: the cluster (auto, HOST:PORT, "
                                                                  "ray://HOST:10001); default: a local one.")] = None,
    worker_gpus: Annotated[float | None, typer.Option("--worker-gpus", min=0, help="--engine ray: GPUs per "
                                                      "worker (default: 1 if the cluster has GPUs).")] = None,
) -> None:
    """Run a benchmark: search (and answer) every item, append results to --out, print a summary.

    Accuracy overall, by task type and by duration class (short < 4 min, medium 4-20 min, long > 20 min
    when the benchmark gives only seconds); for items with evidence, temporal precision / recall / F1
    within --delta seconds, hit rate (a keyframe inside the evidence) and search cost. A rerun resumes:
    finished items are never redone, failed ones are retried. Records that cannot be used are listed
    on stderr. Exit code 1 if any item failed."""
    formats = [f.strip() for f in FORMAT_NAMES.split(",")]
    if fmt not in formats:
        err(f"error: unknown --format '{fmt}' (choose from {FORMAT_NAMES})")
        raise typer.Exit(2)
    from pipelines.engines import check_engine, progress_line, ray_module

    with errors_to_exit():
        if check_engine(engine) == "ray":
            ray_module()
    methods = _methods(search)
    out_path = out or Path(f"{file.stem if file.is_file() else file.name}.results.jsonl")
    with errors_to_exit():
        from dataclasses import asdict

        from pipelines.eval.load import describe_skipped, load_items
        from pipelines.eval.run import run_eval
        from pipelines.eval.runner import check_resumable, make_runner
        from pipelines.eval.summary import format_table
        from pipelines.indexing import Indexer, IndexOptions

        skipped: list = []
        items = load_items(file, fmt, video_root, limit=limit, skipped=skipped, subtitles_root=subtitles_root,
                           subtitles=subtitles)
        for line in describe_skipped(skipped):
            err(f"skipped: {line}")
        err(f"{len(items)} item(s) to evaluate, {len(skipped)} record(s) skipped; results: {out_path}")
        if not items:
            err("error: no usable items")
            raise typer.Exit(1)
        with_subs = sum(1 for it in items if it.subtitles)
        err(f"subtitles: the benchmark's for {with_subs} item(s), vqa's own speech channel for the others" if subtitles
            else "subtitles: none (--no-subtitles: no speech text reaches the answerer)")
        with open_store(db) as store:
            models = build_models(profile, device=device, clip=clip, clip_pretrained=clip_pretrained,
                                  answerer=answerer)
            random = [k for k in models.profile.as_dict()["random_weights"]
                      if k == "clip" or (k == "answerer" and not search_only)]
            if random:
                err(f"note: random-weight models ({', '.join(random)}): visual scores and answers are noise, "
                    "the numbers below only show that the run works")
            bar = StderrProgress(None)
            runner = make_runner(store, models, Indexer(store, models, IndexOptions(), progress=bar), k=frames,
                                 seed=seed, search_only=search_only, zoom_rounds=zoom_rounds, subtitles=subtitles)
            if resume and out_path.exists():
                check_resumable(out_path, runner.run_settings())
            dispatch = None
            if engine == "ray":
                from pipelines.engines.ray_eval import ray_dispatch

                dispatch = ray_dispatch(store, models, runner, address=address, worker_gpus=worker_gpus,
                                        progress=(lambda *a: err("index: " + progress_line(*a))) if progress
                                        else None)

            def report(done: int, total: int, line: dict) -> None:
                bar.close()
                if progress or line.get("error"):
                    err(_progress_line(done, total, line))

            summary = run_eval(items, methods, runner, out_path, resume=resume, progress=report, delta=delta,
                               dispatch=dispatch)
            bar.close()
    if json_out:
        out_json({"results": str(out_path), "items": len(items), "skipped": [asdict(s) for s in skipped],
                  "summary": summary.as_dict()})
    else:
        typer.echo(format_table(summary))
    if any(m.errors for m in summary.methods):
        raise typer.Exit(1)
