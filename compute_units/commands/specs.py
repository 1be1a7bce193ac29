"""Commands that read specs and write or print units: validate, generate, render, list."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table

from ..errors import Diagnostic
from .common import (
    JsonOpt,
    RootOpt,
    SpecOpt,
    TemplatesOpt,
    emit_json,
    make_context,
    out,
    print_diagnostics,
    reporting,
    unknown_service,
)

if TYPE_CHECKING:  # jinja2 is imported only by the commands that render
    from .. import install


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
    from .. import install, render

    with reporting(as_json):
        ctx = make_context(specs, root, templates)
        directory = output_dir or root / "etc/systemd/system"
        services, warnings = ctx.load()
        units = render.render_all(services, ctx.render_options(services))
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


def render_cmd(
    name: Annotated[str, typer.Argument(help="Service name (or unit name, or compute-node.target).")],
    specs: SpecOpt = None,
    root: RootOpt = Path("/"),
    templates: TemplatesOpt = None,
) -> None:
    """Print one rendered unit to stdout."""
    from .. import render

    with reporting(False):
        ctx = make_context(specs, root, templates)
        services, warnings = ctx.load()
        print_diagnostics(warnings)
        units = render.render_all(services, ctx.render_options(services))
        unit = name if name in units else f"{name}.service"
        if unit not in units:
            raise unknown_service(name, services)
        sys.stdout.write(units[unit])


def list_cmd(
    specs: SpecOpt = None,
    root: RootOpt = Path("/"),
    as_json: JsonOpt = False,
) -> None:
    """List the services: name, unit, image, requires, disruptive, spec file."""
    with reporting(as_json):
        services, warnings = make_context(specs, root, None).load()
        rows: list[dict[str, Any]] = [
            {
                "name": s.name,
                "unit": s.unit,
                "image": str(s.image),
                "requires": list(s.requires),
                "keeps_vms": s.keeps_vms,
                "disruptive": s.disruptive,
                "spec": str(s.source),
            }
            for s in services
        ]
        if as_json:
            emit_json(rows)
            return
        print_diagnostics(warnings)
        table = Table("service", "unit", "image", "requires", "disruptive", "spec", box=None)
        for row in rows:
            table.add_row(
                row["name"],
                row["unit"],
                row["image"],
                ", ".join(row["requires"]) or "-",
                "yes" if row["disruptive"] is not None else "-",
                row["spec"],
            )
        out.print(table)
