"""Every command is documented in the README and has help text; the README's two commands stay the
ones CI runs."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from typer.main import get_command
from typer.testing import CliRunner

from vqa_cli.app import app

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()
COMMANDS = sorted(get_command(app).commands)


def test_commands_exist():
    assert {"index", "ask", "search", "scenes", "transcript", "log", "eval", "ls", "rm", "gc", "doctor",
            "models"} <= set(COMMANDS)


@pytest.mark.parametrize("name", COMMANDS)
def test_command_documented_with_help(name):
    assert re.search(rf"`vqa {name}\b", README), f"vqa {name} is not in README.md"
    res = CliRunner().invoke(app, [name, "--help"])
    assert res.exit_code == 0
    assert len(res.stdout.strip().splitlines()) > 3


def test_readme_second_command_is_what_ci_runs():
    blocks = re.findall(r"```bash\n(.*?)\n```", README, flags=re.S)
    assert "vqa index assets/demo.mp4" in blocks[0] and "--profile offline" in blocks[0]
    assert blocks[1].strip() in (ROOT / ".ci" / "run").read_text()
