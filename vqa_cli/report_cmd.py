"""`vqa report VIDEO [QUESTION] -o report.html`"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from .common import (
    AnswererOpt,
    ClipOpt,
    ClipPretrainedOpt,
    DbOpt,
    DeviceOpt,
    ProfileOpt,
    StderrProgress,
    build_models,
    err,
    errors_to_exit,
    open_store,
)


def register(app: typer.Typer) -> None:
    app.command("report")(report)


def require_report_libraries() -> None:
    """Exit 1 with one line when the `report` extra is missing."""
    try:
        import jinja2  # noqa: F401
        import matplotlib  # noqa: F401
    except ImportError as e:
        err(f"error: reports need {e.name}: pip install 'vqa[report]'")
        raise typer.Exit(1) from None


def report(
    video: Annotated[str, typer.Argument(help="Video file (indexed first if needed) or an indexed video's id.")],
    question: Annotated[str | None, typer.Argument(help="Ask this and show how it was answered.")] = None,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="HTML file to write (default: "
                                                "<video name>-report.html here); the plot goes beside "
                                                "it as .png.")] = None,
    option: Annotated[list[str] | None, typer.Option("--option", help="A choice (repeat for A, B, C…).")] = None,
    frames: Annotated[int, typer.Option("--frames", "-k", min=1, help="Keyframes given to the answerer.")] = 8,
    seed: Annotated[int, typer.Option(help="Seed: same seed, same keyframes and answer.")] = 0,
    zoom_rounds: Annotated[int, typer.Option(min=0, help="Coarse-to-fine zoom rounds.")] = 2,
    db: DbOpt = None,
    profile: ProfileOpt = None,
    device: DeviceOpt = None,
    clip: ClipOpt = None,
    clip_pretrained: ClipPretrainedOpt = None,
    answerer: AnswererOpt = None,
    progress: Annotated[bool | None, typer.Option("--progress/--no-progress")] = None,
) -> None:
    """Write one self-contained HTML report that opens offline: the scenes as a timeline with
    thumbnails, the transcript and on-screen text on the same time axis, and with a QUESTION the
    relevance curve with the zoom rounds and chosen keyframes, the keyframes as a contact sheet, the
    answer with its citations linked to their moments, and the settings."""
    require_report_libraries()
    from pipelines.ask import AskOptions
    from pipelines.indexing import Indexer, IndexOptions
    from pipelines.report import build_report, write_report

    out = output or Path(f"{Path(video).stem}-report.html")
    with errors_to_exit(), open_store(db) as store:
        models = build_models(profile, device=device, clip=clip, clip_pretrained=clip_pretrained, answerer=answerer)
        bar = StderrProgress(progress)
        data = build_report(store, models, video, question, option or [],
                            AskOptions(k=frames, seed=seed, zoom_rounds=zoom_rounds),
                            indexer=Indexer(store, models, IndexOptions(), progress=bar))
        bar.close()
        html, png = write_report(data, out)
    typer.echo(str(html))
    typer.echo(str(png))
    if data.answer:
        a = data.answer["answer"]
        err(f"answer: {a['choice'] + '. ' + a['choice_text'] if a.get('choice') else a['text'].strip()}")


def ask_with_report(asker, video: str, question: str, options: list[str], out: Path, *,
                    save_frames: str | None = None) -> dict:
    """`vqa ask … --report FILE`: the answer, with its report written (paths in ``report``, ``report_plot``)."""
    require_report_libraries()
    from pipelines.report import ask_with_report as ask_and_write

    res = ask_and_write(asker, video, question, options, out, save_frames=save_frames)
    err(f"report: {res['report']} (plot: {res['report_plot']})")
    return res
