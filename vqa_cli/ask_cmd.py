"""`vqa ask`, `vqa search`, `vqa log`, `vqa transcript`."""

from __future__ import annotations

import contextlib
import json
import logging
import sys
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
    show,
)


def register(app: typer.Typer) -> None:
    app.command("ask")(ask)
    app.command("search")(search)
    app.command("log")(log)
    app.command("transcript")(transcript)


def _fmt(t: float) -> str:
    m, s = divmod(float(t), 60)
    h, m = divmod(int(m), 60)
    return f"{h}:{m:02d}:{s:05.2f}" if h else f"{m:02d}:{s:05.2f}"


def _print_answer(r: dict) -> None:
    a = r["answer"]
    head = f"{a['choice']}. {a['choice_text']}" if a.get("choice") else a["text"]
    typer.echo(f"Answer: {head}")
    said = (a.get("model_text") or a["text"]).strip()
    if said and said not in (a["text"].strip(), a.get("choice"), head):
        typer.echo(f"  (model said: {said})")
    if a.get("abstained"):
        typer.echo(f"Why: {a['reason']}")
    elif a.get("confidence") is not None:
        typer.echo(f"Confidence: {a['confidence_label']} ({a['confidence']:.2f}): {a['reason']}")
    if a.get("cited") and not a.get("abstained"):
        typer.echo("Cited: " + ", ".join(_fmt(t) for t in a["cited"]))
    models = r["settings"]["models"]
    random = [k for k, m in models.items() if m and m.get("random_weights")]
    if models["answerer"].get("random_weights"):
        typer.echo(f"Note: random-weight models ({', '.join(random)}): this answer means nothing.")
    elif random:
        typer.echo(f"Note: {' and '.join(random)} have random weights: keyframes are not chosen by what the "
                   "frames show (speech and on-screen text still count).")
    typer.echo("Keyframes:")
    for k in r["keyframes"]:
        extra = f"  {k['image']}" if k.get("image") else ""
        zoom = f", zoom round {k['round']}" if k["round"] else ""
        region = "  region " + ",".join(f"{x:.2f}" for x in k["region"]) if k.get("region") else ""
        typer.echo(f"  {_fmt(k['t'])}  score {k['score']:+.2f}  scene {k['scene']}{zoom}{region}{extra}")
    for c in r.get("closeups") or []:
        extra = f"  {c['image']}" if c.get("image") else ""
        typer.echo(f"  close-up of keyframe {c['keyframe']} ({_fmt(c['t'])}): {c['size'][0]}x{c['size'][1]} px "
                   f"of the source{extra}")
    if r["context"]:
        typer.echo("Evidence lines:")
        for c in r["context"]:
            typer.echo(f"  [{c['source']} {_fmt(c['start'])}-{_fmt(c['end'])}] {c['text']}")
    logged = f"answer #{r['answer_id']}" if r.get("answer_id") is not None else "not logged"
    typer.echo(f"({r['timings']['total_ms'] / 1000:.2f} s; {logged})")


@contextlib.contextmanager
def _words_on_stderr(bar: StderrProgress):
    """While `vqa ask` works, what each long step is doing (the ``vqa.progress`` log: indexing, loading a
    model, converting the packaged language model, searching, zooming, answering) goes to stderr in words,
    when progress shows (a terminal, or --progress)."""
    if not bar.enabled:
        yield
        return

    class Words(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            bar.close()  # a finished bar does not sit above the next step
            sys.stderr.write(f"vqa: {record.getMessage()}\n")
            sys.stderr.flush()

    log, handler = logging.getLogger("vqa.progress"), Words()
    level, propagate = log.level, log.propagate
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    log.propagate = False
    try:
        yield
    finally:
        log.removeHandler(handler)
        log.setLevel(level)
        log.propagate = propagate


def _read_questions(path: Path) -> list[dict]:
    items = []
    for n, line in enumerate(path.read_text().splitlines(), 1):
        s = line.strip()
        if not s:
            continue
        if s.startswith("{"):
            try:
                obj = json.loads(s)
            except json.JSONDecodeError as e:
                items.append({"line": n, "error": f"line {n}: invalid JSON ({e.msg})"})
                continue
            items.append({"line": n, **obj})
        else:
            items.append({"line": n, "question": s})
    return items


def ask(
    video: Annotated[str | None, typer.Argument(help="Video file (indexed first if needed).")] = None,
    question: Annotated[str | None, typer.Argument(help="The question.")] = None,
    option: Annotated[list[str] | None, typer.Option("--option", "-o", help="A choice (repeat for A, B, C…).")] = None,
    frames: Annotated[int, typer.Option("--frames", "-k", min=1, help="Keyframes given to the answerer.")] = defaults.K,
    seed: Annotated[int, typer.Option(help="Seed: same seed, same keyframes and answer.")] = defaults.SEED,
    zoom_rounds: Annotated[int, typer.Option(min=0, help="Coarse-to-fine zoom rounds.")] = defaults.ZOOM_ROUNDS,
    questions: Annotated[Path | None, typer.Option("--questions", help="JSON Lines ({question, options}) or "
                                                                      "one question per line.")] = None,
    batch: Annotated[Path | None, typer.Option("--batch", help="JSON Lines of {id, video, question, options}.")] = None,
    save_frames: Annotated[Path | None, typer.Option("--save-frames", help="Write the keyframes here.")] = None,
    closeups: Annotated[int, typer.Option("--closeups", min=0, help="Keyframes whose matching region the answerer "
                                                                    "also sees up close.")] = defaults.CLOSEUPS,
    report: Annotated[Path | None, typer.Option("--report", help="Also write an HTML report of this answer "
                                                                "(its plot beside it as .png).")] = None,
    max_new_tokens: Annotated[int, typer.Option(help="Longest answer, in tokens.")] = defaults.MAX_NEW_TOKENS,
    no_text: Annotated[bool, typer.Option("--no-text", help="Ignore speech and on-screen text.")] = False,
    decompose: Annotated[str, typer.Option(help="How the question is split into what must be seen: rules, "
                                                "or llm (the answerer's language model).")] = "rules",
    api_base: Annotated[str | None, typer.Option(help="OpenAI-compatible server, e.g. http://localhost:8000/v1")] = None,
    api_model: Annotated[str | None, typer.Option(help="Model name on that server.")] = None,
    api_key_env: Annotated[str, typer.Option(help="Environment variable holding the API key.")] = "VQA_API_KEY",
    db: DbOpt = None,
    profile: ProfileOpt = None,
    device: DeviceOpt = None,
    clip: ClipOpt = None,
    clip_pretrained: ClipPretrainedOpt = None,
    answerer: AnswererOpt = None,
    json_out: JsonOpt = False,
    progress: Annotated[bool | None, typer.Option("--progress/--no-progress")] = None,
    engine: Annotated[str, typer.Option("--engine", help="With --batch/--questions: local (this process) or ray "
                                                         "(a Ray cluster).")] = "local",
    address: Annotated[str | None, typer.Option("--address", help="--engine ray: the cluster (auto, HOST:PORT, "
                                                                  "ray://HOST:10001); default: a local one.")] = None,
    worker_gpus: Annotated[float | None, typer.Option("--worker-gpus", min=0, help="--engine ray: GPUs per "
                                                      "worker (default: 1 if the cluster has GPUs).")] = None,
) -> None:
    """Answer a question about a video, with the keyframes and timed text it rests on.

    Many questions, one model load: --questions FILE (one video) or --batch FILE (many videos); both
    write one JSON line per item, errors included, in input order."""
    from pipelines.ask import Asker, AskOptions
    from pipelines.errors import VqaError
    from pipelines.indexing import Indexer, IndexOptions

    if api_base and not answerer:
        answerer = "openai"
    if batch is None and (video is None or (question is None and questions is None)):
        err("error: give VIDEO and QUESTION, or VIDEO --questions FILE, or --batch FILE")
        raise typer.Exit(2)
    if report is not None and (batch is not None or questions is not None):
        err("error: --report takes one question (not --questions or --batch)")
        raise typer.Exit(2)
    from pipelines.engines import check_engine, progress_line, ray_module

    with errors_to_exit():
        if check_engine(engine) == "ray":
            if batch is None and questions is None:
                err("error: --engine ray answers --batch FILE or --questions FILE")
                raise typer.Exit(2)
            ray_module()
    if decompose not in ("rules", "llm"):
        err("error: --decompose must be 'rules' or 'llm'")
        raise typer.Exit(2)
    opts = AskOptions(k=frames, seed=seed, zoom_rounds=zoom_rounds, max_new_tokens=max_new_tokens,
                      use_text=not no_text, decompose=decompose, closeups=closeups)
    failed = 0
    bar = StderrProgress(progress)
    with errors_to_exit(), open_store(db) as store, _words_on_stderr(bar):
        models = build_models(profile, device=device, clip=clip, clip_pretrained=clip_pretrained,
                              answerer=answerer, api_base=api_base, api_model=api_model, api_key_env=api_key_env)
        asker = Asker(store, models, opts, indexer=Indexer(store, models, IndexOptions(), progress=bar))
        if batch is not None or questions is not None:
            items = _read_questions(batch or questions)
            if engine == "ray":
                from pipelines.engines.ray_ask import ask_on_ray

                for line, bad in ask_on_ray(store, models, opts, items, batch=batch is not None, video=video,
                                            address=address, worker_gpus=worker_gpus,
                                            progress=(lambda *a: err(progress_line(*a))) if bar.enabled else None):
                    out_json(line)
                    failed += bad
                items = []
            for item in items:
                rid = item.get("id", item["line"])
                if "error" in item:
                    out_json({"id": rid, "error": item["error"]})
                    failed += 1
                    continue
                try:
                    vid = item.get("video") if batch is not None else video
                    if not vid or not item.get("question"):
                        raise VqaError("item needs 'video' and 'question'" if batch is not None
                                       else "item needs 'question'")
                    res = asker.ask(vid, item["question"], item.get("options") or [])
                    bar.close()
                    out_json({"id": rid, **res})
                except VqaError as e:
                    bar.close()
                    out_json({"id": rid, "video": item.get("video", video), "question": item.get("question"),
                              "error": str(e)})
                    failed += 1
        else:
            if report is not None:
                from .report_cmd import ask_with_report

                res = ask_with_report(asker, video, question, option or [], report,
                                      save_frames=str(save_frames) if save_frames else None)
            else:
                res = asker.ask(video, question, option or [], save_frames=str(save_frames) if save_frames else None)
            bar.close()
            if json_out:
                out_json(res)
            else:
                _print_answer(res)
            if res.get("not_logged"):
                err(f"note: the answer was not logged: {res['not_logged']}")
            for problem in res.get("problems", []):
                err(f"error: {problem}")
                failed += 1
    if failed:
        raise typer.Exit(1)


def search(
    video: Annotated[str | None, typer.Argument(help="Video file (or use --all).")] = None,
    text: Annotated[str | None, typer.Argument(help="What to look for.")] = None,
    all_videos: Annotated[bool, typer.Option("--all", help="Search every indexed video.")] = False,
    top: Annotated[int, typer.Option("--top", "-n", min=1, help="How many moments.")] = defaults.SEARCH_TOP,
    db: DbOpt = None,
    profile: ProfileOpt = None,
    device: DeviceOpt = None,
    clip: ClipOpt = None,
    clip_pretrained: ClipPretrainedOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """The best matching moments (start, end, score, scene, channel) without any language model."""
    from pipelines.ask import search_library, search_moments
    from pipelines.indexing import Indexer, IndexOptions

    if all_videos and text is None:
        video, text = None, video
    if text is None or (video is None and not all_videos):
        err("error: give VIDEO TEXT, or --all TEXT")
        raise typer.Exit(2)
    with errors_to_exit(), open_store(db) as store:
        models = build_models(profile, device=device, clip=clip, clip_pretrained=clip_pretrained)
        if all_videos:
            res = search_library(store, models, text, top=top)
        else:
            res = search_moments(store, models, video, text, top=top,
                                 indexer=Indexer(store, models, IndexOptions(), progress=StderrProgress()))
    if json_out:
        out_json(res)
        return
    if res.get("clip_random_weights"):
        err("note: this CLIP has random weights: moments found only by [visual] are noise")
    for m in res["moments"]:
        where = f"{show(m['video'])}  " if all_videos else ""
        scene = f"  scene {m['scene']}" if m.get("scene") else ""
        found = ",".join(m["channels"])
        said = f"  “{m['text']}”" if m.get("text") else ""
        region = "  region " + ",".join(f"{x:.2f}" for x in m["region"]) if m.get("region") else ""
        typer.echo(f"{where}{_fmt(m['start'])} - {_fmt(m['end'])}  score {m['score']:.3f}  [{found}]{scene}"
                   f"{region}{said}")


def log(
    video: Annotated[str | None, typer.Argument(help="Only this video's answers.")] = None,
    limit: Annotated[int, typer.Option("--limit", "-n")] = 20,
    db: DbOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Past answers, newest first."""
    with errors_to_exit(), open_store(db, readonly=True) as store:
        vid = None
        if video:
            v = store.find_video(video)
            if not v:
                err(f"{video}: not indexed")
                raise typer.Exit(1)
            vid = v["id"]
        rows = store.answers(vid, limit)
    for r in rows:
        for k in ("options", "keyframes", "evidence", "settings", "timings", "trace"):
            r[k] = json.loads(r[k]) if r.get(k) else None
    if json_out:
        out_json(rows)
        return
    for r in rows:
        kfs = ", ".join(_fmt(k["t"]) for k in r["keyframes"] or [])
        typer.echo(f"#{r['id']}  {r['question']}\n    -> {r['answer']}  [{kfs}]")


def transcript(
    video: Annotated[str, typer.Argument(help="Indexed video.")],
    fmt: Annotated[str, typer.Option("--format", "-f", help="text, srt, vtt or json.")] = "text",
    srt: Annotated[bool, typer.Option("--srt", help="Same as --format srt.")] = False,
    vtt: Annotated[bool, typer.Option("--vtt", help="Same as --format vtt.")] = False,
    json_out: JsonOpt = False,
    db: DbOpt = None,
) -> None:
    """Print what is said in a video (from `vqa index`)."""
    fmt = "srt" if srt else "vtt" if vtt else "json" if json_out else fmt
    with errors_to_exit(), open_store(db, readonly=True) as store:
        v = store.find_video(video)
        if not v:
            err(f"{video}: not indexed (run `vqa index {video}`)")
            raise typer.Exit(1)
        run = store.latest_run(v["id"], "transcript")
        if not run:
            err(f"{video}: no transcript (index with a profile that has a speech model, e.g. --profile offline)")
            raise typer.Exit(1)
        lines = store.texts(run["key"])
        status = json.loads(run["stats"] or "{}").get("status")
    from pipelines.stages.transcribe import Segment, to_srt, to_vtt

    segs = [Segment(r["start"], r["end"], r["text"], r["confidence"] or 0.0, r["source"]) for r in lines]
    if fmt == "json":
        out_json({"video": v["path"], "status": status, "segments": [
            {"start": s.start, "end": s.end, "text": s.text, "confidence": s.confidence} for s in segs]})
    elif fmt == "srt":
        sys.stdout.write(to_srt(segs))
    elif fmt == "vtt":
        sys.stdout.write(to_vtt(segs))
    else:
        if not segs:
            err(f"{video}: transcript is empty ({status})")
        for s in segs:
            typer.echo(f"[{_fmt(s.start)} - {_fmt(s.end)}] {s.text}")
