"""Upgrade state, history and the host-wide upgrade lock, under /var/lib/compute-units/.

state.json   {"services": {name: {"digest", "image", "previous", "phase", "target", "started"}}}
history.jsonl one JSON object per finished upgrade or rollback, appended
upgrade.lock flock()ed by the running upgrade; holds its PID for the error message of a second one
Every write of state.json is atomic (temp file, fsync, rename).
"""

from __future__ import annotations

import fcntl
import json
import os
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .errors import ComputeUnitsError
from .install import atomic_write

STATE_DIR = Path("/var/lib/compute-units")


class LockBusy(ComputeUnitsError):
    exit_code = 1


@dataclass
class ServiceState:
    """What compute-units pinned a service to, and the upgrade in flight, if any.

    References are full and pinned: repository[:tag]@sha256:...
    """

    current: str | None = None  # committed pin (None: unpinned, the spec's own reference)
    phase: str = "idle"  # idle, or the step an interrupted upgrade/rollback reached
    target: str | None = None  # where the in-flight upgrade goes
    previous: str | None = None  # where it came from (what an automatic rollback returns to)
    started: float | None = None
    vms_before: dict[str, Any] | None = None  # VM snapshot taken before the in-flight restart

    def commit(self, reference: str | None) -> None:
        """End the in-flight operation: `reference` is what runs now."""
        self.current, self.phase, self.target, self.previous = reference, "idle", None, None
        self.started, self.vms_before = None, None

    def pin(self) -> str | None:
        """The reference the unit must run now."""
        if self.phase == "rolling-back":
            return self.previous
        if self.phase != "idle" and self.target:
            return self.target
        return self.current


@dataclass
class State:
    services: dict[str, ServiceState] = field(default_factory=dict)

    def get(self, name: str) -> ServiceState:
        return self.services.setdefault(name, ServiceState())

    def pins(self) -> dict[str, str]:
        return {name: pin for name, s in self.services.items() if (pin := s.pin())}


def digest_of(reference: str | None) -> str | None:
    return reference.rsplit("@", 1)[1] if reference and "@" in reference else None


class Store:
    """State, history and lock in one directory (root-prefixed in tests and image builds)."""

    def __init__(self, directory: Path = STATE_DIR) -> None:
        self.directory = directory

    @property
    def state_path(self) -> Path:
        return self.directory / "state.json"

    @property
    def history_path(self) -> Path:
        return self.directory / "history.jsonl"

    def load(self) -> State:
        try:
            data = json.loads(self.state_path.read_text())
        except FileNotFoundError:
            return State()
        except (OSError, ValueError) as exc:
            raise ComputeUnitsError(
                f"cannot read {self.state_path}: {exc}",
                hint="restore it from backup or remove it to unpin all",
            ) from exc
        known = ServiceState.__dataclass_fields__
        services = {
            name: ServiceState(**{k: v for k, v in entry.items() if k in known})
            for name, entry in data.get("services", {}).items()
        }
        return State(services)

    def save(self, state: State) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        data = {"version": 1, "services": {n: asdict(s) for n, s in sorted(state.services.items())}}
        atomic_write(self.state_path, json.dumps(data, indent=2, sort_keys=True) + "\n", mode=0o600)

    def append_history(self, entry: dict[str, Any]) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        line = json.dumps(entry, sort_keys=True) + "\n"
        fd = os.open(self.history_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, line.encode())
            os.fsync(fd)
        finally:
            os.close(fd)

    def history(self, service: str | None = None) -> list[dict[str, Any]]:
        try:
            lines = self.history_path.read_text().splitlines()
        except FileNotFoundError:
            return []
        entries = []
        for line in lines:
            try:
                entry = json.loads(line)
            except ValueError:
                continue  # a line torn by a crash mid-append: skip it
            if service is None or entry.get("service") == service:
                entries.append(entry)
        return entries

    @contextmanager
    def lock(self, wait: float = 0.0) -> Iterator[None]:
        """One upgrade at a time per host. Waits up to `wait` seconds, then fails naming the holder."""
        self.directory.mkdir(parents=True, exist_ok=True)
        path = self.directory / "upgrade.lock"
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            if not _flock(fd, wait):
                holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
                raise LockBusy(
                    f"another upgrade is running on this host (pid {holder}); lock {path}",
                    hint="wait for it to finish, or pass --wait SECONDS",
                )
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
            yield
        finally:
            os.close(fd)


class _LockTimeout(Exception):
    pass


def _flock(fd: int, wait: float) -> bool:
    """Take an exclusive flock; block up to `wait` seconds (SIGALRM interrupts the blocking call)."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        if wait <= 0:
            return False

    def on_alarm(signum: int, frame: object) -> None:
        raise _LockTimeout

    previous = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, wait)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        return True
    except _LockTimeout:
        return False
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
