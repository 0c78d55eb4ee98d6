"""The `vqa` command: a thin typer app. Each verb group lives in its own module."""

from __future__ import annotations

import typer

from . import ask_cmd, eval_cmd, index_cmd, info_cmd

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


def main() -> None:
    import logging
    import os

    # Libraries log their own retries and errors; ours reach the user as one line each.
    logging.basicConfig(level=logging.DEBUG if os.environ.get("VQA_DEBUG") else logging.CRITICAL)
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
