"""Lifecycle commands: apply, start, stop, restart, status. systemd does the work; we read results."""

from __future__ import annotations

import datetime as dt
import os
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from . import podman, runner
from .cli import (
    JsonOpt,
    RootOpt,
    SpecOpt,
    TemplatesOpt,
    app,
    emit_json,
    err,
    make_context,
    out,
    print_diagnostics,
    reporting,
    select,
)
from .errors import ComputeUnitsError, NotRootError
from .model import TARGET_NAME, Service
from .systemd import JobOutcome, Systemd

UNIT_DIR = Path("/etc/systemd/system")
JOURNAL_LINES = 10

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


class JobsFailed(ComputeUnitsError):
    exit_code = 1


def require_root(action: str) -> None:
    if os.geteuid() != 0:
        raise NotRootError(f"{action} changes the host and needs root", hint="run it with sudo")


# podman's own container lifecycle events: noise next to the container's output and systemd's lines
_PODMAN_EVENT = re.compile(r" podman\[\d+\]: (\d{4}-\d\d-\d\d .* (container|image) \w+ |[0-9a-f]{64}$)")


def journal_tail(unit: str, lines: int = JOURNAL_LINES) -> list[str]:
    """The unit's last journal lines: the container's output and systemd's verdict."""
    result = runner.run(
        ["journalctl", "-u", unit, "-n", str(lines * 4), "--no-pager", "-o", "short-iso"], check=False
    )
    kept = [
        line
        for line in result.stdout.splitlines()
        if not line.startswith("-- ") and not _PODMAN_EVENT.search(line)
    ]
    return kept[-lines:]


def describe_failure(outcome: JobOutcome) -> str:
    st = outcome.state
    return (
        f"{outcome.unit}: {outcome.verb} failed: job {outcome.job_result}, unit "
        f"{st.active_state}/{st.sub_state} (Result={st.result}, main process {st.exit_description})"
    )


def report_outcomes(outcomes: Sequence[JobOutcome], *, as_json: bool) -> None:
    failed = [o for o in outcomes if not o.ok]
    logs = {o.unit: journal_tail(o.unit) for o in failed}
    if as_json:
        emit_json(
            {
                "ok": not failed,
                "jobs": [
                    {
                        "unit": o.unit,
                        "verb": o.verb,
                        "job_result": o.job_result,
                        "ok": o.ok,
                        "state": asdict(o.state),
                        "journal": logs.get(o.unit, []),
                    }
                    for o in outcomes
                ],
            }
        )
    else:
        for o in outcomes:
            if o.ok:
                out.print(f"{o.unit}: {o.verb} ok ({o.state.active_state}/{o.state.sub_state})", markup=False)
        for o in failed:
            err.print(describe_failure(o), markup=False)
            for line in logs[o.unit]:
                err.print(f"    {line}", markup=False)
    if failed:
        raise typer.Exit(JobsFailed.exit_code)


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
        services, _ = make_context(specs, root, None).load()
        chosen = select(services, names or [])
        require_root(verb)
        if verb != "start":
            # systemd restarts/stops what Requires= a unit along with it: wait for and report those too
            names_ = {s.name for s in chosen}
            for service in list(chosen):
                names_.update(d.name for d in services.dependents(service.name))
            chosen = [s for s in services if s.name in names_]
        units = [s.unit for s in chosen]
        if verb == "stop":
            units.reverse()
        with Systemd.connect() as systemd:
            systemd.require_loaded(units)
            outcomes = systemd.run_jobs(verb, units, timeout=timeout, settle=settle)
        report_outcomes(outcomes, as_json=as_json)


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
            outcomes = systemd.settle(outcomes, settle)
            # the target's job is "done" even when a wanted unit failed: check every service
            outcomes += [
                JobOutcome(s.unit, "start", "done", systemd.state(s.unit))
                for s in services
                if s.unit not in {o.unit for o in outcomes}
            ]
        if not as_json:
            print_diagnostics(warnings)
            for c in changes:
                if c.action != "unchanged":
                    out.print(f"{c.action:>9}  {UNIT_DIR / c.name}", markup=False)
        report_outcomes(outcomes, as_json=as_json)


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
    systemd: Systemd, chosen: Sequence[Service], run_dir: Path = Path("/run")
) -> list[ServiceStatus]:
    rows = []
    for service in chosen:
        st = systemd.state(service.unit)
        cid = podman.read_cidfile(service.unit, run_dir) if st.active_state != "inactive" else None
        container = podman.inspect_container(cid) if cid else None
        digest = podman.image_digest(container.image_id) if container else None
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
                image=container.image if container else str(service.image),
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
        loaded, _ = make_context(specs, root, None).load()
        chosen = select(loaded, services or [])
        with Systemd.connect() as systemd:
            rows = collect_status(systemd, chosen)
        if as_json:
            emit_json([asdict(r) for r in rows])
            return
        table = Table("unit", "state", "container", "image", "digest", "since", "health", box=None)
        for r in rows:
            table.add_row(
                r.unit,
                f"{r.active_state}/{r.sub_state}",
                r.container_id or "-",
                r.image,
                r.image_digest[:19] or "-",
                r.since or "-",
                r.health or "-",
            )
        out.print(table)
