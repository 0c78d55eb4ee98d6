"""The `vqa` command: a thin typer app. Each verb group lives in its own module."""

from __future__ import annotations

import typer

from . import ask_cmd, eval_cmd, index_cmd, info_cmd, mcp_cmd, report_cmd

app = typer.Typer(
    name="vqa",
    help="Answer questions about long videos: `vqa index` once, then `vqa ask` in seconds, with the "
         "evidence frames and their timestamps.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)

index_cmd.register(app)
info_cmd.register(app)
ask_cmd.register(app)
eval_cmd.register(app)
mcp_cmd.register(app)
report_cmd.register(app)


GC_THRESHOLDS = (10_000, 10, 10)  # CPython's default is (700, 10, 10)


def main() -> None:
    import gc
    import logging
    import os

    # torch, transformers and open_clip leave millions of long-lived objects behind; with CPython's default
    # thresholds the cyclic GC walks all of them again and again while they load (about 1 s of a `vqa ask`)
    # and once more at exit (another second). Collect less often, and freeze what is alive at exit so that
    # finalisation does not walk it again (the memory goes back to the OS with the process).
    gc.set_threshold(*GC_THRESHOLDS)
    # Libraries log their own retries and errors; ours reach the user as one line each.
    logging.basicConfig(level=logging.DEBUG if os.environ.get("VQA_DEBUG") else logging.CRITICAL)
    try:
        app()
    finally:
        gc.freeze()


if __name__ == "__main__":  # pragma: no cover
    main()
