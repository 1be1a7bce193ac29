"""The lean start/stop/restart parser (argparse; no typer, rich or jinja2 imported).

start/stop/restart are what operators and scripts run most, often in loops: `main.py` tries this
parser first and falls back to the full typer CLI for anything else (help, mistakes). Its options
are the typer commands' options of the same names (tests/unit/test_cli.py checks they agree).
"""

from __future__ import annotations

import argparse
from pathlib import Path

LEAN_VERBS = ("start", "stop", "restart")
LEAN_DEFAULTS: dict[str, float] = {"timeout": 300.0, "settle": 1.0}


class Unhandled(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        raise Unhandled(message)


def parser(verb: str) -> argparse.ArgumentParser:
    """The options of `compute-units VERB` (no --help: the typer CLI answers that)."""
    p = _Parser(add_help=False, prog=f"compute-units {verb}")
    p.add_argument("services", nargs="*")
    p.add_argument("--spec", action="append", type=Path)
    p.add_argument("--root", type=Path, default=Path("/"))
    p.add_argument("--timeout", type=float, default=LEAN_DEFAULTS["timeout"])
    p.add_argument("--json", dest="as_json", action="store_true")
    if verb != "stop":
        p.add_argument("--settle", type=float, default=LEAN_DEFAULTS["settle"])
    if verb == "restart":
        p.add_argument("--allow-disruptive", dest="allow_disruptive", action="store_true")
    return p


def parse(argv: list[str]) -> argparse.Namespace | None:
    """Parsed arguments of a plain start/stop/restart, or None when the full CLI should handle them."""
    if not argv or argv[0] not in LEAN_VERBS or any(a in ("-h", "--help") for a in argv):
        return None
    try:
        return parser(argv[0]).parse_args(argv[1:])
    except Unhandled:
        return None
