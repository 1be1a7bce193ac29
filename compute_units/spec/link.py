"""Linking parsed services: duplicate names, unknown or broken `requires`, cycles, and the order."""

from __future__ import annotations

from ..errors import Diagnostic
from ..model import Service, ServiceSet
from .values import did_you_mean


def link(parsed: list[Service], broken: set[str]) -> tuple[ServiceSet, list[Diagnostic]]:
    diagnostics: list[Diagnostic] = []
    by_name: dict[str, Service] = {}
    for service in parsed:
        other = by_name.get(service.name)
        if other is not None:
            diagnostics.append(
                Diagnostic(
                    service.location,
                    "name",
                    f"duplicate service '{service.name}' (also defined at {other.location})",
                    "service names must be unique across all spec files",
                )
            )
            continue
        by_name[service.name] = service
    diagnostics += _shared_sockets(by_name)

    # requires naming unknown services: drop the service (and, transitively, its dependents)
    changed = True
    while changed:
        changed = False
        for name, service in list(by_name.items()):
            for index, dep in enumerate(service.requires):
                if dep not in by_name:
                    known = [n for n in by_name if n != name]
                    parsed_names = {s.name for s in parsed} | broken
                    message = (
                        f"requires service '{dep}', which has errors"
                        if dep in parsed_names
                        else f"unknown service '{dep}'"
                    )
                    diagnostics.append(
                        Diagnostic(
                            service.requires_at[index],
                            f"requires[{index}]",
                            message,
                            did_you_mean(dep, known) if dep not in parsed_names else None,
                        )
                    )
                    del by_name[name]
                    changed = True
                    break

    order, cycles = _toposort(by_name)
    for cycle in cycles:
        first = by_name[cycle[0]]
        diagnostics.append(
            Diagnostic(
                first.requires_at[first.requires.index(cycle[1 % len(cycle)])],
                "requires",
                "dependency cycle: " + " -> ".join([*cycle, cycle[0]]),
                "remove one of these requires",
            )
        )
    return ServiceSet(tuple(by_name[n] for n in order)), diagnostics


def _shared_sockets(by_name: dict[str, Service]) -> list[Diagnostic]:
    """Two services holding the same socket unit, path or port: the later one is dropped."""
    diagnostics: list[Diagnostic] = []
    owners: dict[str, Service] = {}
    for name, service in list(by_name.items()):
        mine = [*service.socket_units, *(s.listen for s in service.sockets)]
        clash = next((m for m in mine if m in owners), None)
        if clash is not None:
            other = owners[clash]
            diagnostics.append(
                Diagnostic(
                    service.location,
                    "sockets",
                    f"'{clash}' is also a socket of service '{other.name}' (defined at {other.location})",
                    "one owner per socket: systemd can pass it to one service only",
                )
            )
            del by_name[name]
            continue
        owners.update(dict.fromkeys(mine, service))
    return diagnostics


def _toposort(by_name: dict[str, Service]) -> tuple[list[str], list[list[str]]]:
    """Dependency order (stable by name); services on or behind a cycle are left out."""
    order: list[str] = []
    state: dict[str, int] = {}  # 1 visiting, 2 done, 3 broken
    cycles: list[list[str]] = []

    def visit(name: str, stack: list[str]) -> bool:
        mark = state.get(name)
        if mark == 2:
            return True
        if mark == 3:
            return False
        if mark == 1:
            cycles.append(stack[stack.index(name) : -1])  # the stack ends with `name` again
            return False
        state[name] = 1
        ok = True
        for dep in sorted(by_name[name].requires):
            ok = visit(dep, [*stack, dep]) and ok
        state[name] = 2 if ok else 3
        if ok:
            order.append(name)
        return ok

    for name in sorted(by_name):
        visit(name, [name])
    return order, cycles
