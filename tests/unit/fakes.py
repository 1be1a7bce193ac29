"""Fakes of the effects (compute_units.effects) for node-free tests of the upgrade engine.

One small in-memory world: a registry (tag -> digest), an image store, one container per unit,
unit states, qemu processes and guests. `FakeWorld.effects()` wires the fakes into an Effects bundle.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from compute_units.effects import Effects, StopOutcome
from compute_units.errors import CommandError
from compute_units.host import Process
from compute_units.podman import Container
from compute_units.runner import Result
from compute_units.state import State
from compute_units.systemd import JobOutcome, Machine, UnitState


def unit_state(unit: str, active: str = "active", load: str = "loaded") -> UnitState:
    return UnitState(unit, load, active, "running" if active == "active" else "dead", "success",
                     100, 0, 0, 1, "", f"/system.slice/{unit}", False)  # fmt: skip


class Crash(BaseException):
    """A simulated kill -9 at a crash point (a BaseException: nothing in the engine catches it)."""


@dataclass
class FakeWorld:
    registry: dict[str, str] = field(default_factory=dict)  # repo:tag -> sha256:...
    images: set[str] = field(default_factory=set)  # digests present locally
    running: dict[str, str] = field(default_factory=dict)  # unit -> reference (repo:tag@digest) it runs
    pinned: dict[str, str | None] = field(default_factory=dict)  # unit -> pin written into its unit
    bad_digests: set[str] = field(default_factory=set)  # images whose container never becomes healthy
    crash_digests: set[str] = field(default_factory=set)  # images whose container dies at start
    log: list[str] = field(default_factory=list)
    qemu: list[Process] = field(default_factory=list)
    guests: dict[str, str] = field(default_factory=dict)
    guests_after_restart: dict[str, str] | None = None
    pull_error: str | None = None
    boot: str = "boot-1"
    now: float = 1000.0
    crash_at: str | None = None
    signal_at: str | None = None  # deliver a "signal" when this point is reached
    signalled: str | None = None
    write_error: OSError | None = None  # the next unit write fails with it
    state_write_error_after: int | None = None  # the store's save fails after N more saves
    stop_outcome: StopOutcome = "exited"
    closed_sockets: set[str] = field(default_factory=set)  # socket units found inactive

    def effects(self, store: FakeStore) -> Effects:
        return Effects(
            systemd=FakeSystemd(self),
            podman=FakePodman(self),
            host=FakeHost(self),
            store=store,
            units=FakeUnits(self),
            clock=FakeClock(self),
            checkpoint=self.checkpoint,
            interrupted=lambda: self.signalled,
        )

    def checkpoint(self, point: str) -> None:
        self.log.append(f"checkpoint {point}")
        if point == self.signal_at:
            self.signalled = "SIGINT"
        if point == self.crash_at:
            raise Crash(point)

    def container(self, unit: str) -> Container | None:
        reference = self.running.get(unit)
        if reference is None:
            return None
        digest = reference.rsplit("@", 1)[1]
        return Container("c-" + digest[-6:], unit.removesuffix(".service"), reference, "id-" + digest,
                         True, 4242, "healthy", "", 15)  # fmt: skip


class FakeClock:
    def __init__(self, world: FakeWorld) -> None:
        self.world = world

    def monotonic(self) -> float:
        return self.world.now

    def now(self) -> float:
        return self.world.now

    def sleep(self, seconds: float) -> None:
        self.world.now += seconds


class FakeSystemd:
    def __init__(self, world: FakeWorld) -> None:
        self.world = world

    def state(self, unit: str) -> UnitState:
        if unit == "systemd-machined.service":
            return unit_state(unit)
        if unit.startswith("libvirtd"):
            return unit_state(unit, "inactive", "not-found")
        if unit.endswith(".socket"):
            return (
                unit_state(unit, "inactive", "dead")
                if unit in self.world.closed_sockets
                else unit_state(unit)
            )
        reference = self.world.running.get(unit)
        if reference is None or reference.rsplit("@", 1)[1] in self.world.crash_digests:
            return unit_state(unit, "failed")
        return unit_state(unit)

    def reload(self) -> None:
        self.world.log.append("reload")

    def run_jobs(
        self, verb: str, units: Sequence[str], *, timeout: float = 300.0, settle: float = 0.0
    ) -> list[JobOutcome]:
        outcomes = []
        for unit in units:
            self.world.log.append(f"{verb} {unit}")
            pin = self.world.pinned.get(unit)
            if pin is not None:
                self.world.running[unit] = pin
            if self.world.guests_after_restart is not None:
                self.world.guests = dict(self.world.guests_after_restart)
            outcomes.append(JobOutcome(unit, verb, "done", self.state(unit)))
        return outcomes

    def fragment_path(self, unit: str) -> str:
        return f"/etc/systemd/system/{unit}"

    def kill_signal(self, unit: str) -> int:
        return 9

    def machines(self) -> list[Machine]:
        return [Machine(f"qemu-{p.pid}", "vm", "libvirt-qemu", p.pid) for p in self.world.qemu]

    def load_error(self, unit: str) -> str:
        return ""


class FakePodman:
    def __init__(self, world: FakeWorld) -> None:
        self.world = world

    def pull(self, reference: str, *, timeout: float, show_progress: bool) -> str:
        self.world.log.append(f"pull {reference}")
        if self.world.pull_error:
            raise CommandError(["podman", "pull", reference], 125, "", self.world.pull_error)
        digest = self.world.registry.get(reference.split("@", 1)[0])
        if digest is None:
            raise CommandError(["podman", "pull", reference], 125, "", "Error: manifest unknown")
        self.world.images.add(digest)
        return "id-" + digest

    def image_exists(self, reference: str) -> bool:
        return "@" in reference and reference.rsplit("@", 1)[1] in self.world.images

    def image_digest(self, image_id: str, repository: str | None = None) -> str | None:
        return image_id.removeprefix("id-")

    def unit_container(self, unit: str) -> Container | None:
        return self.world.container(unit)

    def running_reference(self, unit: str) -> str | None:
        return self.world.running.get(unit)

    def healthcheck(self, container: str, *, timeout: float) -> bool:
        reference = self.world.running.get(f"{container}.service", "")
        self.world.log.append(f"healthcheck {container}")
        self.world.now += 0.1
        return reference.rsplit("@", 1)[-1] not in self.world.bad_digests

    def exec(self, container: str, argv: Sequence[str], *, timeout: float) -> Result:
        rows = "".join(
            f" {i}    {n}   {s}\n" for i, (n, s) in enumerate(sorted(self.world.guests.items()), 1)
        )
        return Result(tuple(argv), 0, f" Id   Name   State\n----\n{rows}", "")


class FakeHost:
    def __init__(self, world: FakeWorld) -> None:
        self.world = world

    def module_available(self, name: str) -> bool:
        return True

    def exists(self, path: str) -> bool:
        return True

    def qemu_processes(self) -> list[Process]:
        return list(self.world.qemu)

    def alive(self, process: Process) -> bool:
        return process in self.world.qemu

    def stop_process(self, pid: int, sig: int, timeout: float, *, cgroup: str) -> StopOutcome:
        self.world.log.append(f"stop {pid}")
        self.world.now += 0.05
        return self.world.stop_outcome

    def boot_id(self) -> str:
        return self.world.boot


class FakeUnits:
    directory = Path("/etc/systemd/system")

    def __init__(self, world: FakeWorld) -> None:
        self.world = world

    def write(self, units: Mapping[str, str]) -> None:
        if self.world.write_error is not None:
            error, self.world.write_error = self.world.write_error, None
            raise error
        for name, text in units.items():
            self.world.log.append(f"write {name}")
            self.world.pinned[name] = text or None


class FakeStore:
    """In memory, but through JSON like the real one (what a crash leaves is what was saved)."""

    def __init__(self, world: FakeWorld) -> None:
        self.world = world
        self.saved: dict[str, Any] | None = None
        self.entries: list[dict[str, Any]] = []

    def load(self) -> State:
        import json

        from compute_units.state import parse_state

        if self.saved is None:
            return State()
        return parse_state(json.loads(json.dumps(self.saved)), Path("state.json"))

    def save(self, state: State) -> None:
        from dataclasses import asdict

        limit = self.world.state_write_error_after
        if limit is not None:
            if limit <= 0:
                raise OSError(28, "No space left on device", "/var/lib/compute-units/state.json")
            self.world.state_write_error_after = limit - 1
        self.saved = {"services": {n: asdict(s) for n, s in state.services.items()}}

    def append_history(self, entry: dict[str, Any]) -> None:
        self.entries.append(entry)

    def history(self, service: str | None = None) -> list[dict[str, Any]]:
        return [e for e in self.entries if service is None or e.get("service") == service]


Renderer = Callable[[Any, str | None], str]


def render_pin(service: Any, pin: str | None) -> str:
    """The fake unit text is just the reference it runs (the spec's image when unpinned)."""
    return pin or str(service.image)
