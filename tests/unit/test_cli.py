"""The command line's single sources: every command registered once, the lean start/stop/restart
parser agreeing with the typer commands, and the exit codes in --help coming from the enum."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import typer.core
import typer.main

from compute_units import lean
from compute_units.cli import COMMANDS, app
from compute_units.errors import ExitCode

PACKAGE = Path(__file__).resolve().parents[2] / "compute_units"


def group() -> typer.core.TyperGroup:
    command = typer.main.get_command(app)
    assert isinstance(command, typer.core.TyperGroup)
    return command


def click_command(name: str) -> typer.core.TyperCommand:
    command = group().get_command(typer.main.get_command(app).context_class(group()), name)
    assert isinstance(command, typer.core.TyperCommand)
    return command


@pytest.mark.parametrize("verb", lean.LEAN_VERBS)
def test_the_lean_parser_has_the_typer_commands_options(verb: str) -> None:
    typer_options = {
        (opt, p.default if not isinstance(p.default, list) else None)
        for p in click_command(verb).params
        if isinstance(p, typer.core.TyperOption)
        for opt in p.opts
    }
    lean_options = {
        (opt, a.default if not isinstance(a.default, list) else None)
        for a in lean.parser(verb)._actions
        for opt in a.option_strings
    }
    normal = {(o, str(d) if d is not None else None) for o, d in typer_options if o != "--help"}
    assert {(o, str(d) if d is not None else None) for o, d in lean_options} == normal


def test_every_command_is_registered_once_and_listed_in_help() -> None:
    names = [name for name, _ in COMMANDS]
    assert len(names) == len(set(names))
    g = group()
    assert sorted(g.list_commands(g.context_class(g))) == sorted(names)


def test_help_lists_every_exit_code_from_the_enum() -> None:
    text = app.info.help or ""
    for code in ExitCode:
        assert f"{int(code)} {code.meaning}" in text


def test_no_command_module_imports_the_cli() -> None:
    """cli.py imports the commands; the commands never import cli (no cycle)."""
    for path in sorted((PACKAGE / "commands").glob("*.py")):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                assert node.module not in ("cli", "compute_units.cli"), path
                assert not (node.level == 2 and node.module == "cli"), path


def test_docs_list_the_same_exit_codes() -> None:
    text = (PACKAGE.parent / "docs" / "cli.md").read_text()
    for code in ExitCode:
        assert f"| {int(code)} | {code.meaning} |" in text


def test_docs_list_every_command_once() -> None:
    text = (PACKAGE.parent / "docs" / "cli.md").read_text()
    rows = [line.split("`")[1].split()[0] for line in text.splitlines() if line.startswith("| `")]
    commands = [r for r in rows if not r.startswith("-")]
    assert sorted(commands) == sorted(name for name, _ in COMMANDS)
