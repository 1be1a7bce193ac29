"""What every typer command shares: options, consoles, and turning errors into exit codes."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from ..context import (
    Context,
    emit_json,
    make_context,
    print_diagnostics,
    report_error,
    select,
    unknown_service,
)
from ..errors import ComputeUnitsError
from ..lean import LEAN_DEFAULTS

__all__ = [
    "AllowDisruptiveOpt",
    "Context",
    "JsonOpt",
    "RootOpt",
    "ServicesArg",
    "SettleOpt",
    "SpecOpt",
    "TemplatesOpt",
    "TimeoutOpt",
    "emit_json",
    "err",
    "make_context",
    "out",
    "print_diagnostics",
    "reporting",
    "select",
    "unknown_service",
]

# tables keep their rows on one line when piped (grep, less); a terminal gets its own width
out = Console(highlight=False, soft_wrap=True, width=None if sys.stdout.isatty() else 200)
err = Console(stderr=True, highlight=False, soft_wrap=True)

SpecOpt = Annotated[
    list[Path] | None,
    typer.Option(
        "--spec",
        metavar="PATH",
        help="Spec file or directory (repeatable). Default: the search path "
        "/etc/compute-units/services, /run/compute-units/services, /usr/share/compute-units/services.",
    ),
]
RootOpt = Annotated[Path, typer.Option("--root", help="Prefix for every host path (image builds, tests).")]
TemplatesOpt = Annotated[
    list[Path] | None,
    typer.Option(
        "--templates",
        metavar="DIR",
        help="Directory whose templates override the built-in ones by file name (repeatable).",
    ),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable output on stdout.")]
TimeoutOpt = Annotated[float, typer.Option("--timeout", help="Seconds to wait for systemd's jobs to finish.")]
SettleOpt = Annotated[
    float,
    typer.Option(
        "--settle",
        help="After a start job, watch the unit this many seconds: a container that dies at once "
        "is reported as failed (systemd already counts the job as done).",
    ),
]
AllowDisruptiveOpt = Annotated[
    bool,
    typer.Option(
        "--allow-disruptive",
        help="Also restart services whose spec says `disruptive:` (e.g. ovs-vswitchd, whose restart "
        "cuts every VM's network); without it such a restart is refused (exit 2).",
    ),
]
ServicesArg = Annotated[
    list[str] | None, typer.Argument(help="Services (default: all), by name or unit name.")
]
DEFAULT_TIMEOUT = LEAN_DEFAULTS["timeout"]
DEFAULT_SETTLE = LEAN_DEFAULTS["settle"]


@contextmanager
def reporting(as_json: bool) -> Iterator[None]:
    """Turn our errors into a message on stderr (or a JSON object) and the documented exit code."""
    try:
        yield
    except ComputeUnitsError as exc:
        raise typer.Exit(report_error(exc, as_json=as_json)) from None
