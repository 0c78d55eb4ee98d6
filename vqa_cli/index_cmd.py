"""`vqa index PATH...`"""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from pipelines import defaults

from .common import (
    CaptionerOpt,
    ClipOpt,
    ClipPretrainedOpt,
    DbOpt,
    DeviceOpt,
    ProfileOpt,
    StderrProgress,
    WhisperOpt,
    build_models,
    err,
    errors_to_exit,
    open_store,
    out_json,
    show,
)


def register(app: typer.Typer) -> None:
    app.command("index")(index)


def index(
    paths: Annotated[list[str], typer.Argument(help="Video files, folders (recursive), globs; '-' reads paths "
                                                    "from stdin.", show_default=False)],
    db: DbOpt = None,
    profile: ProfileOpt = None,
    device: DeviceOpt = None,
    clip: ClipOpt = None,
    clip_pretrained: ClipPretrainedOpt = None,
    captioner: CaptionerOpt = None,
    whisper: WhisperOpt = None,
    fps: Annotated[float, typer.Option("--fps", help="Frames per second embedded with CLIP.")] = defaults.EMBED_FPS,
    detector: Annotated[str, typer.Option(help="Scene detector: content, adaptive, histogram, hash.")] = "content",
    threshold: Annotated[float | None, typer.Option(help="Scene detector threshold (detector default).")] = None,
    min_scene_len: Annotated[float, typer.Option(help="Shortest scene, seconds.")] = defaults.MIN_SCENE_LEN,
    no_captions: Annotated[bool, typer.Option("--no-captions", help="Skip scene captions.")] = False,
    no_speech: Annotated[bool, typer.Option("--no-speech", help="Skip the speech transcript.")] = False,
    no_ocr: Annotated[bool, typer.Option("--no-ocr", help="Skip on-screen text.")] = False,
    language: Annotated[str | None, typer.Option(help="Spoken language (e.g. en); detected if omitted.")] = None,
    glob_pattern: Annotated[str | None, typer.Option("--glob", help="In folders, index files matching this "
                                                                    "pattern (default: video extensions).")] = None,
    null: Annotated[bool, typer.Option("-0", "--null", help="With '-': paths on stdin are NUL-separated.")] = False,
    jobs: Annotated[int, typer.Option("--jobs", "-j", min=1, help="Videos decoded in parallel.")] = 1,
    jsonl: Annotated[bool, typer.Option("--jsonl", help="One JSON line per video on stdout.")] = False,
    engine: Annotated[str, typer.Option("--engine", help="local (this process) or ray (a Ray cluster; --jobs: "
                                                         "workers).")] = "local",
    address: Annotated[str | None, typer.Option("--address", help="--engine ray: the cluster (auto, HOST:PORT, "
                                                                  "ray://HOST:10001); default: a local one.")] = None,
    worker_gpus: Annotated[float | None, typer.Option("--worker-gpus", min=0, help="--engine ray: GPUs per "
                                                      "worker (default: 1 if the cluster has GPUs).")] = None,
    progress: Annotated[bool | None, typer.Option("--progress/--no-progress",
                                                  help="Progress bar on stderr (default: when a TTY).")] = None,
) -> None:
    """Index videos once: scenes, captions, CLIP frame embeddings, speech and on-screen text.

    Unchanged videos are skipped in milliseconds; a renamed copy is recognised by its content.
    Exit code 1 if any input failed (the others are still indexed)."""
    from pipelines.engines import check_engine, progress_line, ray_module
    from pipelines.indexing import Indexer, IndexOptions
    from pipelines.inputs import expand_inputs, read_stdin_paths
    from pipelines.stages.segment import DETECTORS, SceneParams

    with errors_to_exit():
        if check_engine(engine) == "ray":
            ray_module()
    if detector not in DETECTORS:
        err(f"error: unknown detector '{detector}' (choose from {', '.join(DETECTORS)})")
        raise typer.Exit(2)
    items: list[str] = []
    for p in paths:
        items.extend(read_stdin_paths(sys.stdin, nul=null) if p == "-" else [p])
    files = expand_inputs(items, pattern=glob_pattern)
    if not files:
        err("error: no video files found in the given paths")
        raise typer.Exit(1)
    opts = IndexOptions(embed_fps=fps, scene=SceneParams(detector=detector, threshold=threshold,
                                                         min_scene_len=min_scene_len),
                        captions=not no_captions, speech=not no_speech, screen_text=not no_ocr, language=language)
    counts = {"indexed": 0, "unchanged": 0, "failed": 0}
    bar = StderrProgress(progress)
    with errors_to_exit(), open_store(db) as store:
        models = build_models(profile, device=device, clip=clip, clip_pretrained=clip_pretrained,
                              captioner=captioner, whisper=whisper)
        indexer = Indexer(store, models, opts, progress=bar)
        from pipelines.batch import index_many

        if engine == "ray":
            from pipelines.engines.ray_engine import index_on_ray

            results = index_on_ray(store, models, opts, files, address=address, jobs=jobs if jobs > 1 else None,
                                   worker_gpus=worker_gpus,
                                   progress=(lambda *a: err(progress_line(*a))) if bar.enabled else None)
        else:
            results = index_many(indexer, files, jobs=jobs)
        try:
            for res in results:
                bar.close()
                counts[res.status] += 1
                if jsonl:
                    out_json(res.as_dict())
                if res.status == "failed":
                    err(f"{res.path}: {res.error}")
                elif not jsonl:
                    stages = ", ".join(res.stages_run) if res.stages_run else "nothing to do"
                    typer.echo(f"{res.status:9s} {show(res.path)}  ({stages}; {res.seconds:.1f} s)")
        finally:
            results.close()  # on Ctrl-C: workers stop now, before the message and exit code 130
            bar.close()
    err(f"{counts['indexed']} indexed, {counts['unchanged']} unchanged, {counts['failed']} failed")
    if counts["failed"]:
        raise typer.Exit(1)
