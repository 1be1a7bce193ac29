"""The `compute-units` command line: argument parsing and output only; work happens in the modules.

Exit codes (also in --help and the README):
  0 success · 1 an operation failed (job, health check, write) · 2 invalid spec or command line
  3 the host is not ready (D-Bus/systemd unreachable, preflight refused) · 4 needs root
  5 upgrade failed and was rolled back
"""

from __future__ import annotations

import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from . import __version__
from .context import (
    Context,
    emit_json,
    make_context,
    print_diagnostics,
    report_error,
    select,
    unknown_service,
)
from .errors import ComputeUnitsError, Diagnostic

__all__ = ["Context", "app", "emit_json", "make_context", "print_diagnostics", "reporting", "select"]

if TYPE_CHECKING:  # jinja2 is imported only by the commands that render
    from . import install

EXIT_CODES = """Exit codes: 0 success; 1 an operation failed; 2 invalid spec or command line;
3 host not ready (systemd/D-Bus unreachable, preflight refused); 4 needs root;
5 upgrade failed and was rolled back."""

app = typer.Typer(
    name="compute-units",
    help="Run OpenStack compute-node services as podman containers under systemd.\n\n" + EXIT_CODES,
    no_args_is_help=True,
    add_completion=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)
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


@contextmanager
def reporting(as_json: bool) -> Iterator[None]:
    """Turn our errors into a message on stderr (or a JSON object) and the documented exit code."""
    try:
        yield
    except ComputeUnitsError as exc:
        raise typer.Exit(report_error(exc, as_json=as_json)) from None


def version_callback(value: bool) -> None:
    if value:
        out.print(f"compute-units {__version__}", markup=False)
        raise typer.Exit()


@app.callback()
def main(
    version: Annotated[
        bool,
        typer.Option("--version", callback=version_callback, is_eager=True, help="Show the version."),
    ] = False,
) -> None:
    """Run OpenStack compute-node services as podman containers under systemd."""


@app.command()
def validate(
    specs: SpecOpt = None,
    root: RootOpt = Path("/"),
    as_json: JsonOpt = False,
) -> None:
    """Check every spec and report all problems at once (file:line:column: key: message)."""
    with reporting(as_json):
        ctx = make_context(specs, root, None)
        services, warnings = ctx.load()
        if as_json:
            emit_json(
                {"ok": True, "services": services.names(), "diagnostics": [d.as_dict() for d in warnings]}
            )
        else:
            print_diagnostics(warnings)
            out.print(f"{len(services)} service(s) valid: {', '.join(services.names())}", markup=False)


@app.command()
def generate(
    specs: SpecOpt = None,
    root: RootOpt = Path("/"),
    templates: TemplatesOpt = None,
    output_dir: Annotated[
        Path | None,
        typer.Option("--output-dir", help="Where units go. Default: ROOT/etc/systemd/system."),
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Print the plan and a unified diff; write nothing.")
    ] = False,
    enable: Annotated[
        bool,
        typer.Option(
            "--enable/--no-enable",
            help="Link compute-node.target into multi-user.target.wants (start at boot).",
        ),
    ] = True,
    as_json: JsonOpt = False,
) -> None:
    """Render every spec into systemd units and write them atomically; remove stale ones of ours."""
    from . import install, render

    with reporting(as_json):
        ctx = make_context(specs, root, templates)
        directory = output_dir or root / "etc/systemd/system"
        services, warnings = ctx.load()
        units = render.render_all(services, ctx.render_options())
        changes = install.plan(units, directory)
        if not dry_run:
            install.apply(changes, directory, enable=enable)
        report_plan(changes, directory, warnings, dry_run=dry_run, as_json=as_json)


def report_plan(
    changes: Sequence[install.Change],
    directory: Path,
    warnings: Sequence[Diagnostic],
    *,
    dry_run: bool,
    as_json: bool,
) -> None:
    if as_json:
        emit_json(
            {
                "ok": True,
                "dry_run": dry_run,
                "directory": str(directory),
                "changes": [{"unit": c.name, "action": c.action, "diff": c.diff(directory)} for c in changes],
                "diagnostics": [d.as_dict() for d in warnings],
            }
        )
        return
    print_diagnostics(warnings)
    verb = {"add": "added", "change": "changed", "remove": "removed", "unchanged": "unchanged"}
    counts = {a: sum(c.action == a for c in changes) for a in verb}
    for change in changes:
        if change.action != "unchanged":
            out.print(f"{verb[change.action]:>9}  {directory / change.name}", markup=False)
    summary = ", ".join(f"{counts[a]} {verb[a]}" for a in verb)
    prefix = "would be: " if dry_run else ""
    out.print(f"{prefix}{summary}", markup=False)
    if dry_run:
        for change in changes:
            text = change.diff(directory)
            if text:
                out.print(text, markup=False, end="")


@app.command("render")
def render_cmd(
    name: Annotated[str, typer.Argument(help="Service name (or unit name, or compute-node.target).")],
    specs: SpecOpt = None,
    root: RootOpt = Path("/"),
    templates: TemplatesOpt = None,
) -> None:
    """Print one rendered unit to stdout."""
    from . import render

    with reporting(False):
        ctx = make_context(specs, root, templates)
        services, warnings = ctx.load()
        print_diagnostics(warnings)
        units = render.render_all(services, ctx.render_options())
        unit = name if name in units else f"{name}.service"
        if unit not in units:
            raise unknown_service(name, services)
        sys.stdout.write(units[unit])


@app.command("list")
def list_cmd(
    specs: SpecOpt = None,
    root: RootOpt = Path("/"),
    as_json: JsonOpt = False,
) -> None:
    """List the services: name, unit, image, requires, spec file."""
    with reporting(as_json):
        services, warnings = make_context(specs, root, None).load()
        rows: list[dict[str, Any]] = [
            {
                "name": s.name,
                "unit": s.unit,
                "image": str(s.image),
                "requires": list(s.requires),
                "keeps_vms": s.keeps_vms,
                "spec": str(s.source),
            }
            for s in services
        ]
        if as_json:
            emit_json(rows)
            return
        print_diagnostics(warnings)
        table = Table("service", "unit", "image", "requires", "spec", box=None)
        for row in rows:
            table.add_row(
                row["name"], row["unit"], row["image"], ", ".join(row["requires"]) or "-", row["spec"]
            )
        out.print(table)


def run() -> None:
    app()


# Command groups live in their own modules and add themselves to `app` on import.
from . import doctor, interop_cmd, lifecycle, upgrade_cmd  # noqa: E402, F401

if __name__ == "__main__":  # pragma: no cover
    run()
