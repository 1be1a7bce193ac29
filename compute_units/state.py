"""Upgrade state, history and the host-wide upgrade lock, under /var/lib/compute-units/.

state.json    {"version": 1, "services": {NAME: ServiceState fields}} — what each service is pinned
              to and the upgrade in flight, if any; every write is atomic (temp file, fsync, rename),
              so a crash or a full disk leaves the old file or the new one, never half of one.
history.jsonl one JSON object per finished upgrade or rollback, appended: service, kind, result,
              from, to, note, undoes, failed_step, reason, steps, vm_check, guests, time, duration_ms
              (upgrade.Report without its VM snapshots; guests: running before, after, kept)
upgrade.lock  flock()ed by the running upgrade; holds "PID HH:MM:SS activity" (the service and its
              step) for whoever waits

Both files are checked on read: a wrong shape is a `StateError` naming the file and the key, never
a traceback, and never silently taken as "nothing pinned".
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import signal
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from .errors import ComputeUnitsError, ExitCode
from .install import atomic_write

STATE_DIR = Path("/var/lib/compute-units")
PHASES = ("idle", "recorded", "pinned", "restarted", "healthy", "verified", "rolling-back")
MAX_STATE_BYTES = 4 << 20


class LockBusy(ComputeUnitsError):
    exit_code = ExitCode.FAILED


class StateError(ComputeUnitsError):
    """state.json or history.jsonl cannot be trusted (unreadable or of the wrong shape)."""

    exit_code = ExitCode.FAILED


@dataclass
class ServiceState:
    """What compute-units pinned a service to, and the upgrade in flight, if any.

    References are full and pinned: repository[:tag]@sha256:...
    """

    current: str | None = None  # committed pin (None: unpinned, the spec's own reference)
    phase: str = "idle"  # idle, or the step an interrupted upgrade/rollback reached (PHASES)
    target: str | None = None  # where the in-flight upgrade goes
    previous: str | None = None  # where it came from (what an automatic rollback returns to)
    started: float | None = None  # when the in-flight upgrade was recorded (epoch seconds)
    vms_before: dict[str, Any] | None = None  # VM snapshot taken before the in-flight restart
    boot_id: str | None = None  # the boot during which the in-flight upgrade was recorded
    spec_image: str | None = None  # the spec's image when the pin was made (to notice spec edits)
    pulled_from: str | None = None  # what `compute-units pull` was asked for ...
    pulled: str | None = None  # ... and the pinned reference it pulled (an upgrade to it skips the pull)

    def commit(self, reference: str | None) -> None:
        """End the in-flight operation: `reference` is what runs now."""
        self.current, self.phase, self.target, self.previous = reference, "idle", None, None
        self.started, self.vms_before, self.boot_id = None, None, None
        if reference is not None and reference == self.pulled:
            self.pulled_from = self.pulled = None

    def pin(self) -> str | None:
        """The reference the unit must run now."""
        if self.phase == "rolling-back":
            return self.previous
        if self.phase != "idle" and self.target:
            return self.target
        return self.current

    def boot_pin(self, boot_id: str) -> str | None:
        """The reference a node must boot with: the declared image after a reboot mid-upgrade.

        An upgrade recorded during an earlier boot and not finished: the target only if it had
        already passed its health gate, else the last committed image.
        """
        if self.phase == "idle" or self.boot_id in (None, boot_id):
            return self.pin()
        return self.target if self.phase in ("healthy", "verified") else self.previous

    @property
    def unfinished(self) -> bool:
        return self.phase != "idle"


@dataclass
class State:
    services: dict[str, ServiceState] = field(default_factory=dict)

    def get(self, name: str) -> ServiceState:
        return self.services.setdefault(name, ServiceState())

    def pins(self, boot_id: str | None = None) -> dict[str, str]:
        """Pinned references by service (with `boot_id`: as a node booting now must run them)."""
        chosen = {
            name: (s.boot_pin(boot_id) if boot_id is not None else s.pin())
            for name, s in self.services.items()
        }
        return {name: pin for name, pin in chosen.items() if pin}


def digest_of(reference: str | None) -> str | None:
    return reference.rsplit("@", 1)[1] if reference and "@" in reference else None


_OPTIONAL_STR = ("current", "target", "previous", "boot_id", "spec_image", "pulled_from", "pulled")


def parse_state(data: object, path: Path) -> State:
    """A State from decoded JSON, or StateError naming the first key of the wrong shape."""

    def bad(key: str, expected: str) -> StateError:
        return StateError(
            f"{path}: {key}: expected {expected}",
            hint="run `compute-units doctor --fix` to rebuild the state from what runs",
        )

    if not isinstance(data, dict):
        raise bad("(top level)", "a JSON object")
    services = data.get("services", {})
    if not isinstance(services, dict):
        raise bad("services", "an object of services")
    known = {f.name for f in fields(ServiceState)}
    parsed: dict[str, ServiceState] = {}
    for name, entry in services.items():
        if not isinstance(entry, dict):
            raise bad(f"services.{name}", "an object")
        for key in _OPTIONAL_STR:
            value = entry.get(key)
            if value is not None and (not isinstance(value, str) or len(value) > 4096):
                raise bad(f"services.{name}.{key}", "a string or null")
        if entry.get("phase", "idle") not in PHASES:
            raise bad(f"services.{name}.phase", f"one of {', '.join(PHASES)}")
        started = entry.get("started")
        if started is not None and (isinstance(started, bool) or not isinstance(started, (int, float))):
            raise bad(f"services.{name}.started", "a number or null")
        vms = entry.get("vms_before")
        if vms is not None and not isinstance(vms, dict):
            raise bad(f"services.{name}.vms_before", "an object or null")
        state = ServiceState(**{k: v for k, v in entry.items() if k in known})
        if state.phase != "idle" and not state.target:
            raise bad(f"services.{name}.target", "a reference while an upgrade is in flight")
        parsed[str(name)] = state
    return State(parsed)


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
            with self.state_path.open("rb") as handle:
                raw = handle.read(MAX_STATE_BYTES + 1)
        except FileNotFoundError:
            return State()
        except OSError as exc:
            raise StateError(f"cannot read {self.state_path}: {exc.strerror}") from exc
        if len(raw) > MAX_STATE_BYTES:
            raise StateError(f"{self.state_path}: larger than {MAX_STATE_BYTES >> 20} MiB: not ours")
        try:
            data = json.loads(raw.decode())
        except (UnicodeDecodeError, ValueError) as exc:
            raise StateError(
                f"{self.state_path}: not valid JSON ({exc.__class__.__name__})",
                hint="run `compute-units doctor --fix` to rebuild the state from what runs",
            ) from exc
        return parse_state(data, self.state_path)

    def save(self, state: State) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        data = {"version": 1, "services": {n: asdict(s) for n, s in sorted(state.services.items())}}
        atomic_write(self.state_path, json.dumps(data, indent=2, sort_keys=True) + "\n", mode=0o600)

    def append_history(self, entry: dict[str, Any]) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        line = json.dumps(entry, sort_keys=True) + "\n"
        fd = os.open(self.history_path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            size = os.fstat(fd).st_size
            if size and os.pread(fd, 1, size - 1) != b"\n":
                line = "\n" + line  # a line torn by a crash mid-append stays a line of its own
            os.write(fd, line.encode())
            os.fsync(fd)
        except OSError as exc:  # a full disk: name the file, as atomic_write does
            raise OSError(exc.errno, exc.strerror, str(self.history_path)) from exc
        finally:
            os.close(fd)

    def history(self, service: str | None = None) -> list[dict[str, Any]]:
        """Entries, oldest first. Lines that are not JSON objects (torn by a crash mid-append,
        or damaged) are skipped; `history_problems` counts them."""
        return [e for e in self._history_entries()[0] if service is None or e.get("service") == service]

    def history_problems(self) -> int:
        return self._history_entries()[1]

    def set_aside(self, name: str) -> Path:
        """Move state.json to NAME in the same directory (a broken file kept for a post-mortem)."""
        aside = self.state_path.with_name(name)
        self.state_path.rename(aside)
        return aside

    def _history_entries(self) -> tuple[list[dict[str, Any]], int]:
        try:
            raw = self.history_path.read_bytes()
        except FileNotFoundError:
            return [], 0
        except OSError as exc:
            raise StateError(f"cannot read {self.history_path}: {exc.strerror}") from exc
        entries, bad = [], 0
        for line in raw.splitlines():
            try:
                entry = json.loads(line.decode())
            except (UnicodeDecodeError, ValueError):
                bad += 1
                continue
            if isinstance(entry, dict) and isinstance(entry.get("service", ""), str):
                entries.append(entry)
            else:
                bad += 1
        return entries, bad

    @contextmanager
    def lock(
        self, wait: float = 0.0, on_wait: Callable[[str], None] = lambda holder: None
    ) -> Iterator[UpgradeLock]:
        """One upgrade at a time per host. Waits up to `wait` seconds, then fails naming the holder."""
        self.directory.mkdir(parents=True, exist_ok=True)
        path = self.directory / "upgrade.lock"
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            if not _flock(fd, 0.0):
                holder = read_holder(fd)
                if wait <= 0:
                    raise LockBusy(
                        f"another upgrade is running on this host ({holder}); lock {path}",
                        hint="wait for it to finish, or pass --wait SECONDS",
                    )
                on_wait(holder)
                if not _flock(fd, wait):
                    holder = read_holder(fd)
                    raise LockBusy(
                        f"another upgrade is still running after {wait:g} s ({holder}); lock {path}",
                        hint="wait for it to finish, or pass a longer --wait",
                    )
            lock = UpgradeLock(fd)
            lock.tell("starting")
            try:
                yield lock
            finally:
                with contextlib.suppress(OSError):
                    os.ftruncate(fd, 0)  # no stale holder for the next waiter to read
        finally:
            os.close(fd)


class UpgradeLock:
    """The held lock: tells waiters what the holder is doing (PID, service, step, since when)."""

    def __init__(self, fd: int) -> None:
        self.fd = fd

    def tell(self, activity: str) -> None:
        line = f"{os.getpid()} {time.strftime('%H:%M:%S')} {activity}".replace("\n", " ")
        text = line.encode()[:499] + b"\n"
        try:
            # write, then cut: a waiter never reads an empty file, and its first line is whole
            os.pwrite(self.fd, text, 0)
            os.ftruncate(self.fd, len(text))
        except OSError:
            pass  # a full disk must not stop the upgrade: waiters then see less


# A holder writes who it is right after taking the lock; a waiter that reads in between sees nothing
HOLDER_GRACE = 0.5
UNKNOWN_HOLDER = "holder unknown"


def read_holder(fd: int) -> str:
    """Who holds the lock, giving a holder that has just taken it HOLDER_GRACE seconds to say so."""
    deadline = time.monotonic() + HOLDER_GRACE
    while True:
        holder = describe_holder(os.pread(fd, 512, 0))
        if holder != UNKNOWN_HOLDER or time.monotonic() >= deadline:
            return holder
        time.sleep(0.02)  # sleep-ok: no event to wait on, flock(2) tells nobody when a holder writes


def describe_holder(raw: bytes) -> str:
    parts = raw.decode(errors="replace").split("\n", 1)[0].strip().split(" ", 2)
    if not parts or not parts[0].isdigit():
        return UNKNOWN_HOLDER
    if len(parts) < 3:
        return f"pid {parts[0]}"
    return f"pid {parts[0]}, since {parts[1]}: {parts[2]}"


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
