"""`vqa mcp`: the index as Model Context Protocol tools over stdio (the official `mcp` SDK, 2.x).

One process, one store, one ``Models``: the first call that needs a model loads it and every later call
reuses it. A tool that cannot serve its input answers a tool error of one line (``file: problem``) and
the server goes on serving (the SDK's own errors, such as arguments that fail the schema, are folded
into one line too). Every result carries the process's model-load counts in its ``_meta``
(``vqa/loads``), so a client can see that nothing was loaded twice.
"""

from __future__ import annotations

import base64
import contextlib
import json
import logging
import os
import re
import time
from collections.abc import Callable
from typing import Annotated, Any

import anyio.from_thread
from mcp.server.mcpserver import Context, MCPServer
from mcp_types import CallToolResult, ContentBlock, ImageContent, TextContent, ToolAnnotations
from pydantic import Field

from pipelines.backends.loads import LOADS
from pipelines.errors import VqaError
from pipelines.serve.tools import DEFAULT_FRAME_PIXELS, MAX_FRAMES_PER_CALL, VideoTools

INSTRUCTIONS = """\
vqa answers questions about long videos from an index (scenes, CLIP frame embeddings, speech, on-screen
text). Typical loop: list_videos (or index a path), then search a video for moments, read the text of a
time range, look at frames at chosen times, and ask for an answer with evidence. Times are seconds.
Videos are named by their path (or the video_id that list_videos shows)."""

READ_ONLY = ToolAnnotations(read_only_hint=True, open_world_hint=False)
WRITES = ToolAnnotations(read_only_hint=False, destructive_hint=False, idempotent_hint=True,
                         open_world_hint=False)

Video = Annotated[str, Field(description="Video file path, or an indexed video's id.")]


def _one_line(e: BaseException) -> str:
    text = " ".join(str(e).split())
    return text if isinstance(e, VqaError) else f"internal error: {type(e).__name__}: {text}"


def one_line_error(text: str) -> str:
    """The SDK's own tool errors (arguments that fail the schema, an unknown tool) in one line:
    ``Error executing tool frames: 1 validation error for …\ntimes\n  List should have at most 16 items …
    [type=…]\n    For further information visit …`` -> ``invalid arguments: times: List should have …``."""
    text = re.sub(r"^Error executing tool \w+: ", "", text)
    lines = text.splitlines()
    if lines and re.match(r"\d+ validation errors? for ", lines[0]):
        problems, field = [], None
        for line in lines[1:]:
            if not line.startswith(" "):
                field = line.strip()
            elif not line.startswith("    "):
                msg = re.sub(r"\s*\[type=.*$", "", line.strip())
                problems.append(f"{field}: {msg}" if field else msg)
        text = "invalid arguments: " + "; ".join(problems)
    return " ".join(text.split())


async def _one_line_errors(ctx: Any, call_next: Any) -> Any:
    """Middleware: every failed tool call answers one line, whoever wrote the error."""
    res = await call_next(ctx)
    if ctx.method == "tools/call" and isinstance(res, dict) and res.get("isError"):
        for block in res.get("content") or []:
            if block.get("type") == "text":
                block["text"] = one_line_error(block["text"])
    return res


def _meta() -> dict[str, Any]:
    return {"vqa/loads": dict(LOADS)}


def _result(fn: Callable[[], Any], extra: Callable[[Any], list[ContentBlock]] | None = None) -> CallToolResult:
    """Run one tool call: a dict becomes JSON text plus structured content; any failure becomes a
    one-line tool error (the server keeps serving)."""
    try:
        value = fn()
    except Exception as e:  # noqa: BLE001 - a failed call must not end the session: say it in one line
        if not isinstance(e, (VqaError, OSError, ValueError)):
            logging.getLogger("vqa.mcp").exception("tool failed")
        return CallToolResult(content=[TextContent(type="text", text=_one_line(e))], is_error=True, meta=_meta())
    if extra is not None:
        return CallToolResult(content=extra(value), meta=_meta())
    return CallToolResult(content=[TextContent(type="text", text=json.dumps(value, ensure_ascii=False))],
                          structured_content=value, meta=_meta())


def _progress(ctx: Context, every_s: float = 0.5) -> Callable[[str, float, float], None]:
    """An indexer's progress callback (run in the tool's worker thread) that sends MCP progress
    notifications, at most one per ``every_s`` seconds besides each video's start and end."""
    last = {"at": 0.0, "desc": None}

    def report(desc: str, done: float, total: float) -> None:
        now = time.monotonic()
        if desc == last["desc"] and done < total and now - last["at"] < every_s:
            return
        last.update(at=now, desc=desc)
        with contextlib.suppress(Exception):  # a client that asked for no progress, or went away
            anyio.from_thread.run(ctx.report_progress, float(done), float(total), desc)

    return report


def build_server(tools: VideoTools) -> MCPServer:
    server = MCPServer("vqa", instructions=INSTRUCTIONS, version=_version(), middleware=[_one_line_errors],
                       log_level="DEBUG" if os.environ.get("VQA_DEBUG") else "WARNING")

    @server.tool(annotations=READ_ONLY)
    def list_videos() -> CallToolResult:
        """The indexed videos: path, id, duration and the state of each index stage."""
        return _result(tools.list_videos)

    @server.tool(annotations=WRITES)
    def index(path: Annotated[str, Field(description="A video file, a folder (recursive) or a glob.")],
              ctx: Context) -> CallToolResult:
        """Index videos (scenes, frame embeddings, speech, on-screen text, captions) with the server's
        models; unchanged videos are skipped in milliseconds. Reports progress (seconds of video done)."""
        return _result(lambda: tools.index(path, progress=_progress(ctx)))

    @server.tool(annotations=READ_ONLY)
    def search(query: Annotated[str, Field(description="What to look for, in words.")],
               video: Annotated[str | None, Field(description="One video (path or id); omit to search every "
                                                              "indexed video.")] = None,
               top: Annotated[int, Field(ge=1, le=50, description="How many moments.")] = 5) -> CallToolResult:
        """The best matching moments (start, end, score, scene, and the channels that found them:
        visual, speech, screen, caption), without any language model."""
        return _result(lambda: tools.search(query, video, top))

    @server.tool(annotations=READ_ONLY)
    def ask(video: Video, question: str,
            options: Annotated[list[str] | None, Field(description="Choices A, B, C… for a multiple-choice "
                                                                   "question.")] = None,
            frames: Annotated[int, Field(ge=1, le=32, description="Keyframes given to the answerer.")] = 8,
            seed: int = 0) -> CallToolResult:
        """Answer a question about a video with its evidence: the keyframes (times, scores), the lines
        said or written on screen, the scenes, and the settings (the same JSON as `vqa ask --json`)."""
        return _result(lambda: tools.ask(video, question, options, frames=frames, seed=seed))

    @server.tool(annotations=READ_ONLY)
    def text(video: Video,
             start: Annotated[float, Field(ge=0, description="From (seconds).")] = 0.0,
             end: Annotated[float | None, Field(ge=0, description="To (seconds); omit for the end.")] = None,
             sources: Annotated[list[str] | None, Field(description="Any of speech, screen, caption "
                                                                    "(default: all).")] = None) -> CallToolResult:
        """What is said (transcript), written on screen (OCR) and captioned between two times."""
        return _result(lambda: tools.text(video, start, end, sources))

    @server.tool(annotations=READ_ONLY)
    def scenes(video: Video) -> CallToolResult:
        """The video's scenes (shots) with their start and end times and captions."""
        return _result(lambda: tools.scenes(video))

    @server.tool(annotations=READ_ONLY)
    def frames(video: Video,
               times: Annotated[list[float], Field(min_length=1, max_length=MAX_FRAMES_PER_CALL,
                                                   description="Times in seconds.")],
               max_pixels: Annotated[int, Field(ge=1024, description="Pixel budget over all the frames of "
                                                                     "this call.")] = DEFAULT_FRAME_PIXELS,
               ) -> CallToolResult:
        """The frames at the given times as JPEG images, each sized so that together they stay within
        max_pixels (never larger than the video)."""

        def content(imgs) -> list[ContentBlock]:
            head = [{"t": f.t, "width": f.width, "height": f.height, "source": f.source} for f in imgs]
            out: list[ContentBlock] = [TextContent(type="text", text=json.dumps({"frames": head}))]
            for f in imgs:
                out.append(ImageContent(type="image", data=base64.b64encode(f.jpeg).decode("ascii"),
                                        mime_type="image/jpeg"))
            return out

        return _result(lambda: tools.frames(video, times, max_pixels), content)

    @server.tool(annotations=WRITES)
    def report(video: Video,
               question: Annotated[str | None, Field(description="Ask this and show how it was answered.")] = None,
               options: list[str] | None = None,
               output: Annotated[str | None, Field(description="HTML file to write (default: under the "
                                                               "vqa data dir, reports/).")] = None,
               ) -> CallToolResult:
        """Write a self-contained HTML report (opens offline): scenes timeline, relevance curve with the
        zoom rounds and chosen keyframes, contact sheet, aligned transcript and on-screen text, the answer
        with linked citations, the settings. Returns its path and the plot as an image."""

        def content(res) -> list[ContentBlock]:
            out: list[ContentBlock] = [TextContent(type="text", text=json.dumps(res, ensure_ascii=False))]
            if res.get("plot"):
                with open(res["plot"], "rb") as f:
                    out.append(ImageContent(type="image", data=base64.b64encode(f.read()).decode("ascii"),
                                            mime_type="image/png"))
            return out

        return _result(lambda: tools.report(video, question, options, output), content)

    @server.tool(annotations=READ_ONLY)
    def server_info() -> CallToolResult:
        """The server's profile and models, which are loaded, and how many times each was loaded."""
        return _result(tools.info)

    return server


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("vqa")
    except PackageNotFoundError:  # pragma: no cover - running from a source tree
        return "0"


def serve_stdio(tools: VideoTools) -> None:
    """Serve until the client closes stdin."""
    build_server(tools).run("stdio")
