"""Fakes of the effects (compute_units.effects) for node-free tests of the upgrade engine, `apply`
and `doctor`.

One small in-memory world: a registry (tag -> digest), an image store, one container per unit,
unit states, qemu processes and guests, the unit directory, and the host facts doctor asks about.
`FakeWorld.effects()` wires the fakes into an Effects bundle.
"""

from __future__ import annotations

import stat
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from compute_units import install
from compute_units.effects import Effects, StopOutcome
from compute_units.errors import CommandError
from compute_units.host import MODULES_LOAD, Process
from compute_units.podman import Container
from compute_units.runner import Result
from compute_units.state import State, StateError
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
    cgroup2_controllers: list[str] | None = None  # None: a hybrid host
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
    # apply: the unit directory, units whose state is set by hand, what systemd says it cannot load
    unit_files: dict[str, str] = field(default_factory=dict)
    states: dict[str, UnitState] = field(default_factory=dict)
    load_errors: dict[str, str] = field(default_factory=dict)
    dies_after_start: set[str] = field(default_factory=set)  # units that fail within --settle
    job_error: Exception | None = None  # run_jobs raises it
    # doctor: what the host has (everything, unless listed as missing or set otherwise)
    missing_modules: set[str] = field(default_factory=set)
    module_error: Exception | None = None
    missing_paths: set[str] = field(default_factory=set)
    devices: dict[str, int | None] = field(default_factory=dict)  # path -> st_mode (None: missing)
    open_error: OSError | None = None
    mountinfo: str = "30 1 0:26 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw\n31 1 0:27 / /sys/fs/cgroup/cpu rw - cgroup cgroup rw,cpu\n"
    free: int = 10 << 30
    graph_root: str | Exception = "/var/lib/containers/storage"
    image_sizes: dict[str, int] = field(default_factory=dict)
    podman_version: str | Exception = "4.3.1"
    tools: dict[str, str] = field(
        default_factory=lambda: {"conmon": "conmon version 2.1.6", "crun": "crun version 1.8.1"}
    )
    # reference asked for -> podman manifest inspect's result, or what it raises
    registry_answers: dict[str, Result | Exception] = field(default_factory=dict)
    state_broken: str | None = None  # the store's load raises StateError(this)
    history_bad: int = 0

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
        if unit in self.world.states:
            return self.world.states[unit]
        if unit == "systemd-machined.service" or unit.endswith(".target"):
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
        if self.world.job_error is not None:
            raise self.world.job_error
        outcomes = []
        for unit in units:
            self.world.log.append(f"{verb} {unit}")
            pin = self.world.pinned.get(unit)
            if pin is not None:
                self.world.running[unit] = pin
            if unit in self.world.states:
                active = "inactive" if verb == "stop" else "active"
                self.world.states[unit] = unit_state(unit, active, self.world.states[unit].load_state)
            if self.world.guests_after_restart is not None:
                self.world.guests = dict(self.world.guests_after_restart)
            outcomes.append(JobOutcome(unit, verb, "done", self.state(unit)))
        return outcomes

    def settle(self, outcomes: Sequence[JobOutcome], seconds: float) -> list[JobOutcome]:
        if seconds <= 0:
            return list(outcomes)
        self.world.log.append(f"settle {seconds:g}")
        return [
            JobOutcome(o.unit, o.verb, o.job_result, unit_state(o.unit, "failed"))
            if o.unit in self.world.dies_after_start
            else o
            for o in outcomes
        ]

    def mask(self, units: Sequence[str]) -> None:
        for unit in units:
            self.world.log.append(f"mask {unit}")
            self.world.states[unit] = unit_state(unit, "inactive", "masked")

    def fragment_path(self, unit: str) -> str:
        return f"/etc/systemd/system/{unit}"

    def kill_signal(self, unit: str) -> int:
        return 9

    def machines(self) -> list[Machine]:
        return [Machine(f"qemu-{p.pid}", "vm", "libvirt-qemu", p.pid) for p in self.world.qemu]

    def load_error(self, unit: str) -> str:
        return self.world.load_errors.get(unit, "")


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
        self.world.log.append(f"exec {container} {' '.join(argv)}")
        rows = "".join(
            f" {i}    {n}   {s}\n" for i, (n, s) in enumerate(sorted(self.world.guests.items()), 1)
        )
        return Result(tuple(argv), 0, f" Id   Name   State\n----\n{rows}", "")

    def version(self) -> str:
        if isinstance(self.world.podman_version, Exception):
            raise self.world.podman_version
        return self.world.podman_version

    def manifest_inspect(self, reference: str, *, timeout: float) -> Result:
        self.world.log.append(f"manifest inspect {reference} within {timeout:g} s")
        answer = self.world.registry_answers.get(reference, Result(("podman",), 0, "{}\n", ""))
        if isinstance(answer, Exception):
            raise answer
        return answer

    def graph_root(self) -> str:
        if isinstance(self.world.graph_root, Exception):
            raise self.world.graph_root
        return self.world.graph_root

    def image_size(self, reference: str) -> int | None:
        return self.world.image_sizes.get(reference)


class FakeHost:
    def __init__(self, world: FakeWorld) -> None:
        self.world = world

    def module_available(self, name: str) -> bool:
        return name not in self.world.missing_modules

    def exists(self, path: str) -> bool:
        return path not in self.world.missing_paths

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

    def mountinfo(self) -> str:
        return self.world.mountinfo

    def device_mode(self, path: str) -> int | None:
        return self.world.devices.get(path, stat.S_IFCHR | 0o660)

    def open_rw(self, path: str) -> None:
        if self.world.open_error is not None:
            raise self.world.open_error

    def free_bytes(self, path: str) -> int:
        return self.world.free

    def tool_version(self, tool: str) -> str:
        if tool not in self.world.tools:
            raise CommandError([tool, "--version"], 127, "", f"{tool}: command not found")
        return self.world.tools[tool]

    def load_module(self, name: str) -> Path:
        if self.world.module_error is not None:
            raise self.world.module_error
        self.world.log.append(f"modprobe {name}")
        self.world.missing_modules.discard(name)
        return MODULES_LOAD

    def cgroup2_controllers(self) -> list[str] | None:
        return self.world.cgroup2_controllers


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

    def plan(self, units: Mapping[str, str]) -> list[install.Change]:
        return install.compare(units, self.world.unit_files, self.directory)

    def apply(self, changes: Sequence[install.Change]) -> None:
        if self.world.write_error is not None:
            error, self.world.write_error = self.world.write_error, None
            raise error
        for change in changes:
            if change.action == "remove":
                self.world.log.append(f"remove {change.name}")
                del self.world.unit_files[change.name]
            elif change.action != "unchanged" and change.new is not None:
                self.world.log.append(f"{change.action} {change.name}")
                self.world.unit_files[change.name] = change.new


class FakeStore:
    """In memory, but through JSON like the real one (what a crash leaves is what was saved)."""

    def __init__(self, world: FakeWorld) -> None:
        self.world = world
        self.saved: dict[str, Any] | None = None
        self.entries: list[dict[str, Any]] = []

    state_path = Path("/var/lib/compute-units/state.json")
    history_path = Path("/var/lib/compute-units/history.jsonl")

    def load(self) -> State:
        import json

        from compute_units.state import parse_state

        if self.world.state_broken is not None:
            raise StateError(self.world.state_broken)
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

    def history_problems(self) -> int:
        return self.world.history_bad

    def set_aside(self, name: str) -> Path:
        self.world.log.append(f"set aside {name}")
        self.world.state_broken = None
        return self.state_path.with_name(name)


def render_pin(service: Any, pin: str | None) -> dict[str, str]:
    """The fake unit text is just the reference it runs (the spec's image when unpinned)."""
    return {service.unit: pin or str(service.image)}


class FakeImages:
    """An image store for `prune` (compute_units.prune.ImageStore): the world's images plus extras."""

    def __init__(self, world: FakeWorld, repository: str, extra: Sequence[Any] = ()) -> None:
        from compute_units.prune import LocalImage

        running = {ref.rsplit("@", 1)[-1] for ref in world.running.values()}
        self.store: list[LocalImage] = [
            LocalImage(digest, (), (f"{repository}@{digest}",), int(digest in running), 1_000_000)
            for digest in sorted(world.images)
        ]
        self.store += list(extra)
        self.removed: list[str] = []
        self.fail: dict[str, str] = {}  # image id -> podman's error

    def images(self) -> list[Any]:
        return list(self.store)

    def remove(self, image: Any) -> None:
        if image.id in self.fail:
            raise CommandError(["podman", "rmi", image.id], 2, "", self.fail[image.id])
        self.removed.append(image.id)
        self.store = [i for i in self.store if i.id != image.id]
