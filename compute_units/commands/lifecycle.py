"""Lifecycle commands: apply, start, stop, restart, status. systemd does the work; we read results."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import typer
from rich.table import Table

from .. import disruptive, jobs, podman
from ..errors import ComputeUnitsError, ExitCode, UsageError
from ..jobs import UNIT_DIR, require_root
from ..model import Service, ServiceSet
from ..names import TARGET_NAME
from ..state import State, digest_of
from ..systemd import JobOutcome, Systemd
from .common import (
    DEFAULT_SETTLE,
    DEFAULT_TIMEOUT,
    AllowDisruptiveOpt,
    JsonOpt,
    RootOpt,
    ServicesArg,
    SettleOpt,
    SpecOpt,
    TemplatesOpt,
    TimeoutOpt,
    emit_json,
    make_context,
    out,
    print_diagnostics,
    reporting,
    select,
)

ACTIVE_STATES = ("active", "activating", "reloading")  # a restart job restarts these


def _lifecycle(
    verb: str,
    names: list[str] | None,
    specs: list[Path] | None,
    root: Path,
    timeout: float,
    as_json: bool,
    settle: float = 0.0,
    allow_disruptive: bool = False,
) -> None:
    with reporting(as_json):
        ctx = make_context(specs, root, None)
        outcomes = jobs.lifecycle(verb, names or [], ctx, timeout, settle, allow_disruptive)
    code = jobs.print_outcomes(outcomes, as_json=as_json)
    if code:
        raise typer.Exit(code)


def start(
    services: ServicesArg = None,
    specs: SpecOpt = None,
    root: RootOpt = Path("/"),
    timeout: TimeoutOpt = DEFAULT_TIMEOUT,
    settle: SettleOpt = DEFAULT_SETTLE,
    as_json: JsonOpt = False,
) -> None:
    """Start services through systemd and report each job's real result."""
    _lifecycle("start", services, specs, root, timeout, as_json, settle)


def stop(
    services: ServicesArg = None,
    specs: SpecOpt = None,
    root: RootOpt = Path("/"),
    timeout: TimeoutOpt = DEFAULT_TIMEOUT,
    as_json: JsonOpt = False,
) -> None:
    """Stop services (dependents first, as systemd orders them)."""
    _lifecycle("stop", services, specs, root, timeout, as_json)


def restart(
    services: ServicesArg = None,
    specs: SpecOpt = None,
    root: RootOpt = Path("/"),
    timeout: TimeoutOpt = DEFAULT_TIMEOUT,
    settle: SettleOpt = DEFAULT_SETTLE,
    allow_disruptive: AllowDisruptiveOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Restart services: a new container replaces the old one; units that require them follow.

    A running service marked `disruptive:` (or one that would restart with a named one) is
    refused (exit 2, nothing restarted) unless --allow-disruptive is given."""
    _lifecycle("restart", services, specs, root, timeout, as_json, settle, allow_disruptive)


def apply(
    specs: SpecOpt = None,
    templates: TemplatesOpt = None,
    timeout: TimeoutOpt = DEFAULT_TIMEOUT,
    settle: SettleOpt = DEFAULT_SETTLE,
    allow_disruptive: AllowDisruptiveOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Generate units, daemon-reload, (re)start exactly the changed ones, start compute-node.target.

    A pinned service whose spec names another image than at its last upgrade is refused (nothing is
    written): moving images goes through `compute-units upgrade`, which is gated and rolls back.
    So is a change that would restart a running `disruptive:` service, unless --allow-disruptive.
    """
    from .. import install, render

    with reporting(as_json):
        ctx = make_context(specs, Path("/"), templates)
        services, warnings = ctx.load()
        state = ctx.store().load()
        refuse_image_edits(services, state)
        units = render.render_all(services, ctx.render_options())
        changes = install.plan(units, UNIT_DIR)
        require_root("apply")
        with Systemd.connect() as systemd:
            refuse_disruptive_changes(systemd, services, changes, allow_disruptive)
            outcomes = apply_changes(systemd, services, changes, timeout)
            outcomes = systemd.settle(outcomes, settle)
        if not as_json:
            print_diagnostics(warnings)
            for c in changes:
                if c.action != "unchanged":
                    out.print(f"{c.action:>9}  {UNIT_DIR / c.name}", markup=False)
    code = jobs.print_outcomes(outcomes, as_json=as_json)
    if code:
        raise typer.Exit(code)


def refuse_image_edits(services: ServiceSet, state: State) -> None:
    """An image edit in the spec of a pinned service is an upgrade: never applied silently."""
    edits = []
    for service in services:
        entry = state.services.get(service.name)
        if entry is None or entry.current is None or entry.spec_image is None:
            continue
        if entry.spec_image != str(service.image):
            edits.append(
                f"{service.name}: the spec's image changed from {entry.spec_image} to {service.image} "
                f"since the last upgrade pinned {entry.current}"
            )
    if edits:
        raise UsageError(
            "; ".join(edits) + "; nothing was written",
            hint="move to the new image with `compute-units upgrade "
            + " ".join(e.split(":", 1)[0] for e in edits)
            + "` (pulled, health-gated, rolled back on failure), or revert the spec",
        )


def refuse_disruptive_changes(
    systemd: Systemd, services: ServiceSet, changes: Sequence[object], allowed: bool
) -> None:
    """Before anything is written: would the changed units' restarts restart a disruptive service?"""
    from .. import install

    def running(unit: str) -> bool:
        return systemd.state(unit).active_state in ACTIVE_STATES

    restarted = [  # apply restarts the changed units that run; systemd restarts what requires them
        c.name.removesuffix(".service")
        for c in changes
        if isinstance(c, install.Change) and c.action == "change" and running(c.name)
    ]
    disruptive.check("apply", disruptive.in_restart(services, restarted, running), allowed)


def apply_changes(
    systemd: Systemd, services: ServiceSet, changes: Sequence[object], timeout: float
) -> list[JobOutcome]:
    from .. import install

    plan = [c for c in changes if isinstance(c, install.Change)]
    removed = [c.name for c in plan if c.action == "remove" and c.name.endswith(".service")]
    outcomes: list[JobOutcome] = []
    if removed:
        outcomes += systemd.run_jobs("stop", removed, timeout=timeout)
    install.apply(plan, UNIT_DIR)
    systemd.reload()
    unloadable = [s.unit for s in services if systemd.state(s.unit).load_state not in ("loaded", "masked")]
    if unloadable:
        raise ComputeUnitsError(
            "systemd cannot load "
            + "; ".join(f"{u}: {systemd.load_error(u) or 'not loaded'}" for u in unloadable),
            hint="fix the spec (or the template override) and run `compute-units apply` again",
        )
    changed = {c.name for c in plan if c.action in ("add", "change")}
    ordered = [s.unit for s in services if s.unit in changed]
    active = {u for u in ordered if systemd.state(u).active_state in ACTIVE_STATES}
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
    return outcomes


@dataclass(frozen=True)
class ServiceStatus:
    service: str
    unit: str
    active_state: str
    sub_state: str
    result: str
    container_id: str
    image: str  # what the unit is pinned to (or the spec's reference)
    image_digest: str  # what the container runs
    since: str
    health: str
    main_pid: int
    recorded_digest: str  # the digest state.json says should run ("" when unpinned)
    upgrade_phase: str  # "idle", or where an unfinished upgrade stopped
    upgrade_target: str
    upgrade_since: str
    problem: str  # why this service makes `status` exit 7 ("" when fine)
    disruptive: str | None = None  # why restarting it hurts; restart/upgrade/apply need --allow-disruptive


def collect_status(
    systemd: Systemd, chosen: Sequence[Service], state: State, run_dir: Path = Path("/run")
) -> list[ServiceStatus]:
    """One row per service; `problem` says what is wrong (unfinished upgrade, digest drift)."""
    rows = []
    pins = state.pins()
    for service in chosen:
        st = systemd.state(service.unit)
        container = podman.unit_container(service.unit, run_dir) if st.active_state != "inactive" else None
        digest = (
            podman.image_digest(container.image_id, podman.repository_of(container.image))
            if container
            else None
        )
        entry = state.services.get(service.name)
        recorded = digest_of(entry.pin()) if entry else None
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
                since=_iso(st.active_enter_us / 1e6) if st.active_enter_us else "",
                health=(container.health or "none") if container else "",
                main_pid=st.main_pid,
                recorded_digest=recorded or "",
                upgrade_phase=entry.phase if entry else "idle",
                upgrade_target=(entry.target or "") if entry else "",
                upgrade_since=_iso(entry.started) if entry and entry.started and entry.unfinished else "",
                problem=_problem(
                    service, st.active_state, digest, recorded, entry.phase if entry else "idle"
                ),
                disruptive=service.disruptive,
            )
        )
    return rows


def _iso(epoch: float) -> str:
    return dt.datetime.fromtimestamp(epoch, dt.UTC).isoformat(timespec="seconds")


def _problem(service: Service, active: str, running: str | None, recorded: str | None, phase: str) -> str:
    if phase != "idle":
        return f"unfinished upgrade ({phase}): run `compute-units upgrade {service.name}` to finish it"
    if recorded and active == "active" and running != recorded:
        return f"runs {running or 'no container'}, but {recorded} is recorded"
    if recorded and active != "active":
        return f"{active}: not running its recorded image {recorded}"
    return ""


def status(
    services: ServicesArg = None,
    specs: SpecOpt = None,
    root: RootOpt = Path("/"),
    as_json: JsonOpt = False,
) -> None:
    """Show each service: unit state, container, image and digest, since when, health, and any
    unfinished upgrade. Exit 7 when a service is not running its recorded image or an upgrade is
    unfinished."""
    with reporting(as_json):
        ctx = make_context(specs, root, None)
        loaded = ctx.load_for(services or [])
        chosen = select(loaded, services or [])
        state = ctx.store().load()
        with Systemd.connect() as systemd:
            rows = collect_status(systemd, chosen, state)
        if as_json:
            emit_json([asdict(r) for r in rows])
        else:
            table = Table(
                "unit", "state", "container", "image", "digest", "since", "health", "disruptive", box=None
            )
            for r in rows:
                table.add_row(
                    r.unit,
                    f"{r.active_state}/{r.sub_state}",
                    r.container_id or "-",
                    r.image.split("@", 1)[0],
                    r.image_digest[:19] or "-",
                    r.since or "-",
                    r.health or "-",
                    "yes" if r.disruptive is not None else "-",
                )
            out.print(table)
            for r in rows:
                if r.problem:
                    out.print(f"{r.service}: {r.problem}", markup=False)
    if any(r.problem for r in rows):
        raise typer.Exit(ExitCode.DEGRADED)
