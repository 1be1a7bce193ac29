"""The effects the upgrade engine, `apply` and `doctor` cause, as small interfaces.

Each interface has one real implementation (systemd.py over D-Bus, podman.py through runner.py,
host.py on /proc and /sys, state.py's Store, install.py's atomic writes) and fakes in
tests/unit/fakes.py. The engine never imports those modules for their effects: it gets an
`Effects` bundle, so every step, crash point, resume and rollback path runs in milliseconds in a
unit test, and the sandbox-node tests prove the real bundle end to end.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol

if TYPE_CHECKING:
    from .host import Process
    from .install import Change
    from .podman import Container
    from .runner import Result
    from .state import State
    from .systemd import JobOutcome, Machine, UnitState

StopOutcome = Literal["exited", "running", "absent"]


class Clock(Protocol):
    def monotonic(self) -> float: ...
    def now(self) -> float: ...
    def sleep(self, seconds: float) -> None: ...


class SystemdApi(Protocol):
    def state(self, unit: str) -> UnitState: ...
    def reload(self) -> None: ...
    def run_jobs(
        self, verb: str, units: Sequence[str], *, timeout: float = 300.0, settle: float = 0.0
    ) -> list[JobOutcome]: ...
    def settle(self, outcomes: Sequence[JobOutcome], seconds: float) -> list[JobOutcome]: ...
    def mask(self, units: Sequence[str]) -> None: ...
    def fragment_path(self, unit: str) -> str: ...
    def kill_signal(self, unit: str) -> int: ...
    def machines(self) -> list[Machine]: ...
    def load_error(self, unit: str) -> str: ...


class ContainersApi(Protocol):
    def pull(self, reference: str, *, timeout: float, show_progress: bool) -> str: ...
    def image_exists(self, reference: str) -> bool: ...
    def image_digest(self, image_id: str, repository: str | None = None) -> str | None: ...
    def unit_container(self, unit: str) -> Container | None: ...
    def running_reference(self, unit: str) -> str | None: ...
    def healthcheck(self, container: str, *, timeout: float) -> bool: ...
    def exec(self, container: str, argv: Sequence[str], *, timeout: float) -> Result: ...
    # doctor's questions
    def version(self) -> str: ...
    def manifest_inspect(self, reference: str, *, timeout: float) -> Result: ...
    def graph_root(self) -> str: ...
    def image_size(self, reference: str) -> int | None: ...


class HostApi(Protocol):
    def module_available(self, name: str) -> bool: ...
    def exists(self, path: str) -> bool: ...
    def qemu_processes(self) -> list[Process]: ...
    def alive(self, process: Process) -> bool: ...
    def stop_process(self, pid: int, sig: int, timeout: float, *, cgroup: str) -> StopOutcome: ...
    def boot_id(self) -> str: ...
    # doctor's questions and fixes
    def mountinfo(self) -> str: ...
    def device_mode(self, path: str) -> int | None: ...
    def open_rw(self, path: str) -> None: ...
    def free_bytes(self, path: str) -> int: ...
    def tool_version(self, tool: str) -> str: ...
    def load_module(self, name: str) -> Path: ...
    def cgroup2_controllers(self) -> list[str] | None: ...


class StateStore(Protocol):
    @property
    def state_path(self) -> Path: ...
    @property
    def history_path(self) -> Path: ...
    def load(self) -> State: ...
    def save(self, state: State) -> None: ...
    def append_history(self, entry: dict[str, Any]) -> None: ...
    def history(self, service: str | None = None) -> list[dict[str, Any]]: ...
    def history_problems(self) -> int: ...
    def set_aside(self, name: str) -> Path: ...


class UnitFiles(Protocol):
    """Where generated units live. `write` writes named units atomically, touching no other file
    (an upgrade's pin); `plan` compares a full set with the directory and `apply` carries it out
    (`apply`: stale units removed, compute-node.target enabled)."""

    directory: Path

    def write(self, units: Mapping[str, str]) -> None: ...
    def plan(self, units: Mapping[str, str]) -> list[Change]: ...
    def apply(self, changes: Sequence[Change]) -> None: ...


class RealClock:
    def monotonic(self) -> float:
        return time.monotonic()

    def now(self) -> float:
        return time.time()

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)  # sleep-ok: only where no event exists (podman's health status)


@dataclass
class UnitDirectory:
    directory: Path

    def write(self, units: Mapping[str, str]) -> None:
        from . import install

        install.write_units(units, self.directory)

    def plan(self, units: Mapping[str, str]) -> list[Change]:
        from . import install

        return install.plan(units, self.directory)

    def apply(self, changes: Sequence[Change]) -> None:
        from . import install

        install.apply(changes, self.directory)


def _no_checkpoint(point: str) -> None:
    return None


def _never_interrupted() -> str | None:
    return None


@dataclass
class Effects:
    """Everything the engine touches. `checkpoint` is called at each crash point (tests inject
    a crash there); `interrupted` says whether a signal asked the run to stop (its name)."""

    systemd: SystemdApi
    podman: ContainersApi
    host: HostApi
    store: StateStore
    units: UnitFiles
    clock: Clock = field(default_factory=RealClock)
    checkpoint: Callable[[str], None] = _no_checkpoint
    interrupted: Callable[[], str | None] = _never_interrupted


def real(systemd: SystemdApi, store: StateStore, unit_dir: Path) -> Effects:
    """The production bundle around an open systemd connection."""
    from .host import RealHost
    from .podman import Podman

    return Effects(systemd, Podman(), RealHost(), store, UnitDirectory(unit_dir))
