"""Commands: upgrade, rollback, history."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.progress import Progress as RichProgress
from rich.progress import SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from .cli import JsonOpt, SpecOpt, TemplatesOpt, app, emit_json, err, make_context, out, reporting, select
from .context import Context
from .errors import ComputeUnitsError, UsageError
from .jobs import UNIT_DIR, require_root
from .model import Service, ServiceSet
from .systemd import Systemd

if TYPE_CHECKING:  # the upgrade machinery (and jinja2) load only when an upgrade runs
    from .upgrade import Progress, PullDisplay, Report

WaitOpt = Annotated[
    float, typer.Option("--wait", help="Seconds to wait for another upgrade's lock (default: fail at once).")
]


@contextmanager
def progress_reporter(enabled: bool) -> Iterator[tuple[Progress, PullDisplay | None]]:
    """For people at a terminal: a spinner with the current step, and podman's own progress bars
    while it pulls (the spinner steps aside meanwhile). Nothing for --json or a non-terminal."""
    if not enabled or not sys.stderr.isatty():
        yield (lambda message: None), None
        return
    with RichProgress(
        SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(), console=err, transient=True
    ) as bar:
        task = bar.add_task("starting")

        @contextmanager
        def pull_display() -> Iterator[None]:
            bar.stop()
            try:
                yield
            finally:
                bar.start()

        yield (lambda message: bar.update(task, description=message)), pull_display


def _print_report(report: Report) -> None:
    steps = ", ".join(f"{s.name} {s.ms} ms" + ("" if s.ok else " FAILED") for s in report.steps)
    out.print(
        f"{report.service}: {report.result} {report.source or '-'} -> {report.target or '-'}", markup=False
    )
    out.print(f"    steps: {steps}", markup=False)
    if report.vm_before is not None and report.vm_before.qemu:
        pids = ", ".join(str(p["pid"]) for p in report.vm_before.qemu)
        verdict = "all alive, guests running" if not report.vm_check else "; ".join(report.vm_check)
        out.print(f"    VMs: qemu PID {pids}: {verdict}", markup=False)


def run_upgrades(
    ctx: Context,
    services: ServiceSet,
    chosen: list[Service],
    image: str | None,
    wait: float,
    as_json: bool,
) -> None:
    """Upgrade `chosen` in dependency order; stop at the first failure. Reports every step."""
    from .upgrade import Upgrader

    require_root("upgrade")
    failure: ComputeUnitsError | None = None
    store = ctx.store()
    with (
        store.lock(wait),
        Systemd.connect() as systemd,
        progress_reporter(not as_json) as (
            progress,
            pull_display,
        ),
    ):
        upgrader = Upgrader(
            systemd,
            store,
            services,
            ctx.render_options(),
            unit_dir=UNIT_DIR,
            progress=progress,
            pull_display=pull_display,
        )
        for service in chosen:
            try:
                upgrader.upgrade(service, image)
            except ComputeUnitsError as exc:
                failure = exc
                break
    if as_json:
        emit_json(
            {
                "ok": failure is None,
                "error": failure.message if failure else None,
                "hint": failure.hint if failure else None,
                "services": [r.as_dict() for r in upgrader.reports],
            }
        )
    else:
        for report in upgrader.reports:
            _print_report(report)
    if failure is not None:
        if as_json:
            raise typer.Exit(failure.exit_code)
        raise failure


@app.command()
def upgrade(
    services: Annotated[list[str] | None, typer.Argument(help="Services to upgrade.")] = None,
    all_services: Annotated[bool, typer.Option("--all", help="Upgrade every service.")] = False,
    image: Annotated[
        str | None,
        typer.Option("--image", help="Image to upgrade to (one service only). Default: the spec's."),
    ] = None,
    specs: SpecOpt = None,
    templates: TemplatesOpt = None,
    wait: WaitOpt = 0.0,
    as_json: JsonOpt = False,
) -> None:
    """Pull, pin to the digest, restart, health-gate; roll back automatically on failure.

    Nothing stops before the new image is pulled. Services that require an upgraded one are
    restarted after it. Exit 5: the upgrade failed and the previous image runs again.
    """
    with reporting(as_json):
        if not services and not all_services:
            raise UsageError("name the services to upgrade, or pass --all")
        if image and (all_services or len(services or []) != 1):
            raise UsageError("--image applies to exactly one service")
        ctx = make_context(specs, Path("/"), templates)
        loaded, _ = ctx.load()
        chosen = select(loaded, [] if all_services else services or [])
        run_upgrades(ctx, loaded, chosen, image, wait, as_json)


@app.command()
def rollback(
    service: Annotated[
        str, typer.Argument(help="Service to return to the image it ran before its last upgrade.")
    ],
    specs: SpecOpt = None,
    templates: TemplatesOpt = None,
    wait: WaitOpt = 0.0,
    as_json: JsonOpt = False,
) -> None:
    """Return a service to the image it ran before its last successful upgrade (same safe steps)."""
    with reporting(as_json):
        ctx = make_context(specs, Path("/"), templates)
        loaded, _ = ctx.load()
        chosen = select(loaded, [service])
        upgrades = [e for e in ctx.store().history(chosen[0].name) if e.get("result") == "upgraded"]
        if not upgrades or not upgrades[-1].get("from"):
            raise UsageError(f"{chosen[0].name} has no upgrade to roll back")
        run_upgrades(ctx, loaded, chosen, upgrades[-1]["from"], wait, as_json)


@app.command()
def history(
    service: Annotated[str | None, typer.Argument(help="Only this service.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Past upgrades and rollbacks: when, from which digest to which, result, step timings."""
    with reporting(as_json):
        entries = make_context(None, Path("/"), None).store().history(service)
        if as_json:
            emit_json(entries)
            return
        table = Table("time", "service", "result", "from", "to", "ms", "failed step", box=None)
        for e in entries:
            table.add_row(
                e.get("time", ""),
                e.get("service", ""),
                e.get("result", ""),
                _short(e.get("from")),
                _short(e.get("to")),
                str(e.get("duration_ms", "")),
                e.get("failed_step") or "-",
            )
        out.print(table)


def _short(reference: str | None) -> str:
    if not reference:
        return "-"
    name, _, digest = reference.partition("@")
    return f"{name}@{digest[:19]}" if digest else name
