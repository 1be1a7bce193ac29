"""Disruptive services: a restart that hurts the node's guests (ovs-vswitchd's cuts every VM's
network) happens only when the operator says so (`--allow-disruptive`).

Pure: callers say which units a command would restart and what makes each disruptive (from the
specs, or from the `X-ComputeUnits-Disruptive=` line of a generated unit); this module decides and
words the refusal.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .errors import ComputeUnitsError, ExitCode

if TYPE_CHECKING:  # the lean start/stop/restart path imports this module without the model
    from .model import ServiceSet

UNIT_KEY = "X-ComputeUnits-Disruptive"  # in [Unit] of a disruptive service's unit; value: the reason
ALLOW_OPTION = "--allow-disruptive"


class DisruptiveRefused(ComputeUnitsError):
    """A command would restart a disruptive service and --allow-disruptive was not given."""

    exit_code = ExitCode.USAGE


@dataclass(frozen=True)
class Hit:
    """A disruptive unit a command would restart; `via`: the asked-for service it restarts with."""

    name: str
    reason: str
    via: str | None = None

    def describe(self) -> str:
        text = f"{self.name} is disruptive ({self.reason})"
        return f"{text} and restarts with {self.via}" if self.via else text


def check(action: str, hits: Sequence[Hit], allowed: bool) -> None:
    """Refuse `action` (e.g. "restart", "upgrade ovsdb-server") when it would restart a disruptive
    service and the operator did not allow it."""
    if hits and not allowed:
        raise DisruptiveRefused(
            f"refusing to {action}: " + "; ".join(h.describe() for h in hits) + "; nothing was changed",
            hint=f"pass {ALLOW_OPTION} to {action.split()[0]} anyway (the guests will notice)",
        )


def in_restart(
    services: ServiceSet, names: Sequence[str], running: Callable[[str], bool] = lambda unit: True
) -> list[Hit]:
    """The disruptive services among `names` and what restarts with them (systemd restarts what
    Requires= a restarted unit), that are running now (restarting a stopped unit only starts it)."""
    found: dict[str, Hit] = {}
    asked = [s for s in (services.get(n) for n in names) if s is not None]
    for service in asked:
        if service.disruptive is not None and running(service.unit):
            found[service.name] = Hit(service.name, service.disruptive)
    for service in asked:
        for dependent in services.dependents(service.name):
            if dependent.disruptive is not None and dependent.name not in found and running(dependent.unit):
                found[dependent.name] = Hit(dependent.name, dependent.disruptive, service.name)
    return list(found.values())


def reason_in_unit(text: str) -> str | None:
    """The reason written into a generated unit, or None when the unit is not disruptive."""
    prefix = UNIT_KEY + "="
    for line in text.splitlines():
        if line.startswith(prefix):
            return line[len(prefix) :].replace("%%", "%")
        if line.startswith("[Service]"):
            return None
    return None
