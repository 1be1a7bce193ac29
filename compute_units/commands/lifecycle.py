"""Lifecycle commands: apply, start, stop, restart, status. systemd does the work; we read results."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import typer
from rich.table import Table

from .. import jobs, podman
from ..effects import ContainersApi, SystemdApi
from ..errors import ExitCode
from ..jobs import UNIT_DIR, require_root
from ..model import Service
from ..state import State, digest_of
from ..systemd import Systemd
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
    from .. import effects, render
    from ..apply import apply_changes, plan, refuse_disruptive_changes

    with reporting(as_json):
        ctx = make_context(specs, Path("/"), templates)
        services, warnings = ctx.load()
        changes = plan(
            ctx.store(),
            effects.UnitDirectory(UNIT_DIR),
            services,
            lambda: render.render_all(services, ctx.render_options(services)),
        )
        require_root("apply")
        with Systemd.connect() as systemd:
            fx = effects.real(systemd, ctx.store(), UNIT_DIR)
            refuse_disruptive_changes(fx.systemd, services, changes, allow_disruptive)
            outcomes = apply_changes(fx, services, changes, timeout=timeout, settle=settle)
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
    secrets: str = ""  # how the unit passes secrets: "native", "loader", or "" (none; unit not generated)
    disruptive: str | None = None  # why restarting it hurts; restart/upgrade/apply need --allow-disruptive


def collect_status(
    systemd: SystemdApi, containers: ContainersApi, chosen: Sequence[Service], state: State
) -> list[ServiceStatus]:
    """One row per service; `problem` says what is wrong (unfinished upgrade, digest drift)."""
    rows = []
    pins = state.pins()
    for service in chosen:
        st = systemd.state(service.unit)
        container = containers.unit_container(service.unit) if st.active_state != "inactive" else None
        digest = (
            containers.image_digest(container.image_id, podman.repository_of(container.image))
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
                secrets=unit_secrets_mode(systemd, service.unit) if service.secrets else "",
                disruptive=service.disruptive,
            )
        )
    return rows


def unit_secrets_mode(systemd: SystemdApi, unit: str) -> str:
    """The secrets mode the installed unit file was rendered with (its marker; "" if none)."""
    from ..secretplan import read_marker

    path = systemd.fragment_path(unit)
    try:
        return read_marker(Path(path).read_text()) if path else ""
    except OSError:
        return ""


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
            rows = collect_status(systemd, podman.Podman(), chosen, state)
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
