"""What the VM-survival checks look at: qemu processes, machined's VMs and each guest's state.

A snapshot is taken before a keeps_vms service restarts and again after; `compare` says what
changed for the worse: a qemu process gone (same PID and start time, or it is another process), a
machine unregistered, a guest that is no longer in the state it was (running → paused counts).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from .effects import Effects
from .model import Service
from .systemd import HostNotReady

VIRSH_LIST = ["virsh", "-c", "qemu:///system", "list", "--all"]
# why a guest is in its libvirt unit's cgroup on a cgroup2 host whose cgroup.controllers is empty
NO_CONTROLLERS = "this host's cgroup2 offers no controllers, so libvirt gives guests no machine scope"


@dataclass
class VmSnapshot:
    qemu: list[dict[str, Any]] = field(default_factory=list)  # pid, comm, start_time, cgroup
    machines: list[str] = field(default_factory=list)
    guests: dict[str, str] | None = None  # name -> state ("running", "paused", "shut off", …)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> VmSnapshot:
        guests = data.get("guests")
        return cls(
            qemu=[dict(p) for p in data.get("qemu") or [] if isinstance(p, dict)],
            machines=[str(m) for m in data.get("machines") or []],
            guests={str(k): str(v) for k, v in guests.items()} if isinstance(guests, dict) else None,
        )

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def parse_virsh_list(text: str) -> dict[str, str]:
    """`virsh list --all` → {name: state}. The table: ` Id   Name   State`, a rule, then rows."""
    guests: dict[str, str] = {}
    for line in text.splitlines()[2:]:
        parts = line.split(None, 2)
        if len(parts) == 3:
            guests[parts[1]] = parts[2].strip()
    return guests


def snapshot(fx: Effects, service: Service) -> VmSnapshot:
    qemu = [asdict(p) for p in fx.host.qemu_processes()]
    try:
        machines = sorted(m.name for m in fx.systemd.machines() if m.klass == "vm")
    except HostNotReady:
        machines = []
    result = fx.podman.exec(service.name, VIRSH_LIST, timeout=30)
    guests = parse_virsh_list(result.stdout) if result.returncode == 0 else None
    return VmSnapshot(qemu, machines, guests)


def compare(fx: Effects, before: VmSnapshot, after: VmSnapshot) -> list[str]:
    """Problems: what was alive or running before and is not now (empty: all guests fine)."""
    problems = []
    alive = {(p["pid"], p["start_time"]) for p in after.qemu}
    for p in before.qemu:
        if (p["pid"], p["start_time"]) not in alive:
            problems.append(f"qemu PID {p['pid']} died")
    for name in sorted(set(before.machines) - set(after.machines)):
        problems.append(f"machine {name} is gone")
    if before.guests is not None:
        if after.guests is None:
            problems.append("cannot list guests in the new container")
        else:
            for name, state in sorted(before.guests.items()):
                now = after.guests.get(name)
                if now is None:
                    problems.append(f"guest {name} is gone (was {state})")
                elif now != state:
                    problems.append(f"guest {name} is {now} (was {state})")
    return problems


def verdict(before: VmSnapshot | None, problems: list[str]) -> str | None:
    """One line for people: None when there was nothing to watch."""
    if before is None or (not before.qemu and not before.guests):
        return None
    pids = ", ".join(str(p["pid"]) for p in before.qemu) or "none"
    if problems:
        return f"qemu PID {pids}: " + "; ".join(problems)
    guests = before.guests or {}
    states = ", ".join(f"{n} {s}" for n, s in sorted(guests.items())) or "no guests listed"
    return f"qemu PID {pids}: all alive; guests as before ({states})"
