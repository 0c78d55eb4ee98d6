"""`vqa mcp`: serve the index to AI assistants over the Model Context Protocol (stdio)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from .common import (
    AnswererOpt,
    CaptionerOpt,
    ClipOpt,
    ClipPretrainedOpt,
    DbOpt,
    DeviceOpt,
    ProfileOpt,
    WhisperOpt,
    build_models,
    err,
    errors_to_exit,
    open_store,
)


def register(app: typer.Typer) -> None:
    app.command("mcp")(mcp)


def mcp(
    db: DbOpt = None,
    profile: ProfileOpt = None,
    device: DeviceOpt = None,
    clip: ClipOpt = None,
    clip_pretrained: ClipPretrainedOpt = None,
    captioner: CaptionerOpt = None,
    whisper: WhisperOpt = None,
    answerer: AnswererOpt = None,
    api_base: Annotated[str | None, typer.Option(help="OpenAI-compatible server for the answerer.")] = None,
    api_model: Annotated[str | None, typer.Option(help="Model name on that server.")] = None,
    api_key_env: Annotated[str, typer.Option(help="Environment variable holding the API key.")] = "VQA_API_KEY",
    reports: Annotated[Path | None, typer.Option(help="Where the report tool writes when not told "
                                                      "(default: $VQA_HOME/reports).")] = None,
) -> None:
    r"""Serve the index over MCP on stdin/stdout, for an AI assistant (Claude, Cursor, an agent SDK).

    Tools: list_videos, index, search, ask, text, scenes, frames, report, server_info.
    The models load on first use and stay loaded for the server's life.
    Needs the mcp extra: pip install 'vqa\[mcp]'."""
    try:
        import mcp.server.mcpserver  # noqa: F401
    except ImportError:
        err("error: `vqa mcp` needs the MCP SDK 2.x: pip install 'vqa[mcp]'")
        raise typer.Exit(1) from None
    from pipelines.serve.mcp_server import serve_stdio
    from pipelines.serve.tools import VideoTools

    if api_base and not answerer:
        answerer = "openai"
    with errors_to_exit(), open_store(db) as store:
        models = build_models(profile, device=device, clip=clip, clip_pretrained=clip_pretrained,
                              captioner=captioner, answerer=answerer, whisper=whisper, api_base=api_base,
                              api_model=api_model, api_key_env=api_key_env)
        serve_stdio(VideoTools(store, models, reports_dir=reports))
