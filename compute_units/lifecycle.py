"""Lifecycle commands: apply, start, stop, restart, status. systemd does the work; we read results."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from . import jobs, podman
from .cli import (
    JsonOpt,
    RootOpt,
    SpecOpt,
    TemplatesOpt,
    app,
    emit_json,
    make_context,
    out,
    print_diagnostics,
    reporting,
    select,
)
from .jobs import UNIT_DIR, require_root
from .model import Service
from .names import TARGET_NAME
from .systemd import JobOutcome, Systemd

TimeoutOpt = Annotated[float, typer.Option("--timeout", help="Seconds to wait for systemd's jobs to finish.")]
SettleOpt = Annotated[
    float,
    typer.Option(
        "--settle",
        help="After a start job, watch the unit this many seconds: a container that dies at once "
        "is reported as failed (systemd already counts the job as done).",
    ),
]
ServicesArg = Annotated[
    list[str] | None, typer.Argument(help="Services (default: all), by name or unit name.")
]


def _lifecycle(
    verb: str,
    names: list[str] | None,
    specs: list[Path] | None,
    root: Path,
    timeout: float,
    as_json: bool,
    settle: float = 0.0,
) -> None:
    with reporting(as_json):
        outcomes = jobs.lifecycle(verb, names or [], make_context(specs, root, None), timeout, settle)
    code = jobs.print_outcomes(outcomes, as_json=as_json)
    if code:
        raise typer.Exit(code)


@app.command()
def start(
    services: ServicesArg = None,
    specs: SpecOpt = None,
    root: RootOpt = Path("/"),
    timeout: TimeoutOpt = 300.0,
    settle: SettleOpt = 1.0,
    as_json: JsonOpt = False,
) -> None:
    """Start services through systemd and report each job's real result."""
    _lifecycle("start", services, specs, root, timeout, as_json, settle)


@app.command()
def stop(
    services: ServicesArg = None,
    specs: SpecOpt = None,
    root: RootOpt = Path("/"),
    timeout: TimeoutOpt = 300.0,
    as_json: JsonOpt = False,
) -> None:
    """Stop services (dependents first, as systemd orders them)."""
    _lifecycle("stop", services, specs, root, timeout, as_json)


@app.command()
def restart(
    services: ServicesArg = None,
    specs: SpecOpt = None,
    root: RootOpt = Path("/"),
    timeout: TimeoutOpt = 300.0,
    settle: SettleOpt = 1.0,
    as_json: JsonOpt = False,
) -> None:
    """Restart services: a new container replaces the old one; units that require them follow."""
    _lifecycle("restart", services, specs, root, timeout, as_json, settle)


@app.command()
def apply(
    specs: SpecOpt = None,
    templates: TemplatesOpt = None,
    timeout: TimeoutOpt = 300.0,
    settle: SettleOpt = 1.0,
    as_json: JsonOpt = False,
) -> None:
    """Generate units, daemon-reload, (re)start exactly the changed ones, start compute-node.target."""
    from . import install, render

    with reporting(as_json):
        ctx = make_context(specs, Path("/"), templates)
        services, warnings = ctx.load()
        units = render.render_all(services, ctx.render_options())
        changes = install.plan(units, UNIT_DIR)
        require_root("apply")
        with Systemd.connect() as systemd:
            removed = [c.name for c in changes if c.action == "remove" and c.name.endswith(".service")]
            outcomes: list[JobOutcome] = []
            if removed:
                outcomes += systemd.run_jobs("stop", removed, timeout=timeout)
            install.apply(changes, UNIT_DIR)
            systemd.reload()
            changed = {c.name for c in changes if c.action in ("add", "change")}
            ordered = [s.unit for s in services if s.unit in changed]
            active = {
                u for u in ordered if systemd.state(u).active_state in ("active", "activating", "reloading")
            }
            restarts = [u for u in ordered if u in active]
            if restarts:
                outcomes += systemd.run_jobs("restart", restarts, timeout=timeout)
            outcomes += systemd.run_jobs("start", [TARGET_NAME], timeout=timeout)
            # the target's job is "done" even when a wanted unit failed: check every service
            outcomes += [
                JobOutcome(s.unit, "start", "done", systemd.state(s.unit))
                for s in services
                if s.unit not in {o.unit for o in outcomes}
            ]
            outcomes = systemd.settle(outcomes, settle)
        if not as_json:
            print_diagnostics(warnings)
            for c in changes:
                if c.action != "unchanged":
                    out.print(f"{c.action:>9}  {UNIT_DIR / c.name}", markup=False)
    code = jobs.print_outcomes(outcomes, as_json=as_json)
    if code:
        raise typer.Exit(code)


@dataclass(frozen=True)
class ServiceStatus:
    service: str
    unit: str
    active_state: str
    sub_state: str
    result: str
    container_id: str
    image: str
    image_digest: str
    since: str
    health: str
    main_pid: int


def collect_status(
    systemd: Systemd, chosen: Sequence[Service], pins: dict[str, str], run_dir: Path = Path("/run")
) -> list[ServiceStatus]:
    """One row per service. `image` is what the unit is pinned to (or the spec's reference)."""
    rows = []
    for service in chosen:
        st = systemd.state(service.unit)
        container = podman.unit_container(service.unit, run_dir) if st.active_state != "inactive" else None
        digest = (
            podman.image_digest(container.image_id, podman.repository_of(container.image))
            if container
            else None
        )
        since = (
            dt.datetime.fromtimestamp(st.active_enter_us / 1e6, dt.UTC).isoformat(timespec="seconds")
            if st.active_enter_us
            else ""
        )
        rows.append(
            ServiceStatus(
                service=service.name,
                unit=service.unit,
                active_state=st.active_state if st.load_state != "not-found" else "not-generated",
                sub_state=st.sub_state,
                result=st.result,
                container_id=container.id[:12] if container else "",
                image=pins.get(service.name) or str(service.image),
                image_digest=digest or "",
                since=since,
                health=(container.health or "none") if container else "",
                main_pid=st.main_pid,
            )
        )
    return rows


@app.command()
def status(
    services: ServicesArg = None,
    specs: SpecOpt = None,
    root: RootOpt = Path("/"),
    as_json: JsonOpt = False,
) -> None:
    """Show each service: unit state, container, image and digest, since when, health."""
    with reporting(as_json):
        ctx = make_context(specs, root, None)
        loaded = ctx.load_for(services or [])
        chosen = select(loaded, services or [])
        with Systemd.connect() as systemd:
            rows = collect_status(systemd, chosen, ctx.store().load().pins())
        if as_json:
            emit_json([asdict(r) for r in rows])
            return
        table = Table("unit", "state", "container", "image", "digest", "since", "health", box=None)
        for r in rows:
            table.add_row(
                r.unit,
                f"{r.active_state}/{r.sub_state}",
                r.container_id or "-",
                r.image.split("@", 1)[0],
                r.image_digest[:19] or "-",
                r.since or "-",
                r.health or "-",
            )
        out.print(table)
