"""`compute-units apply`'s engine: plan the unit files, refuse silent image moves, write, reload,
(re)start exactly the changed units, start compute-node.target, and report every service.

Its effects come in as `effects` interfaces (state store, unit directory, systemd), so every path
is unit-tested with fakes (tests/unit/test_apply.py); `commands/lifecycle.py` wires the real ones.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

from . import disruptive
from .effects import Effects, StateStore, SystemdApi, UnitFiles
from .errors import ComputeUnitsError, UsageError
from .install import Change
from .model import ServiceSet
from .names import TARGET_NAME
from .state import State
from .systemd import JobOutcome

UP = ("active", "activating", "reloading")


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


def plan(
    store: StateStore, units: UnitFiles, services: ServiceSet, render: Callable[[], Mapping[str, str]]
) -> list[Change]:
    """What apply would change (nothing is written): refused when a pinned service's image was
    edited in its spec, or a foreign file is in the way."""
    refuse_image_edits(services, store.load())
    return units.plan(render())


def refuse_disruptive_changes(
    systemd: SystemdApi, services: ServiceSet, changes: Sequence[Change], allowed: bool
) -> None:
    """Before anything is written: would the changed units' restarts restart a disruptive service?"""

    def running(unit: str) -> bool:
        return systemd.state(unit).active_state in UP

    restarted = [  # apply restarts the changed units that run; systemd restarts what requires them
        c.name.removesuffix(".service") for c in changes if c.action == "change" and running(c.name)
    ]
    disruptive.check("apply", disruptive.in_restart(services, restarted, running), allowed)


def apply_changes(
    fx: Effects, services: ServiceSet, changes: Sequence[Change], *, timeout: float, settle: float = 0.0
) -> list[JobOutcome]:
    """Carry out a plan: stop removed services, write, daemon-reload, restart the changed units
    that run, start the target; one outcome per service (watched `settle` seconds)."""
    removed = [c.name for c in changes if c.action == "remove" and c.name.endswith(".service")]
    outcomes: list[JobOutcome] = []
    if removed:
        outcomes += fx.systemd.run_jobs("stop", removed, timeout=timeout)
    fx.units.apply(changes)
    fx.systemd.reload()
    unloadable = [s.unit for s in services if fx.systemd.state(s.unit).load_state not in ("loaded", "masked")]
    if unloadable:
        raise ComputeUnitsError(
            "systemd cannot load "
            + "; ".join(f"{u}: {fx.systemd.load_error(u) or 'not loaded'}" for u in unloadable),
            hint="fix the spec (or the template override) and run `compute-units apply` again",
        )
    changed = {c.name for c in changes if c.action in ("add", "change")}
    ordered = [s.unit for s in services if s.unit in changed]
    restarts = [u for u in ordered if fx.systemd.state(u).active_state in UP]
    if restarts:
        outcomes += fx.systemd.run_jobs("restart", restarts, timeout=timeout)
    outcomes += fx.systemd.run_jobs("start", [TARGET_NAME], timeout=timeout)
    # the target's job is "done" even when a wanted unit failed: check every service
    reported = {o.unit for o in outcomes}
    outcomes += [
        JobOutcome(s.unit, "start", "done", fx.systemd.state(s.unit))
        for s in services
        if s.unit not in reported
    ]
    return fx.systemd.settle(outcomes, settle)
