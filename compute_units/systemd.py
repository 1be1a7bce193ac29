"""The one place that talks to systemd over D-Bus (pystemd).

Jobs are run the way systemctl does it: subscribe, match `JobRemoved`, enqueue the job, process the
bus until our job's signal arrives or a deadline passes, then read the unit's state. A job result of
"done" is not proof that the service runs (a container can die right after): callers read
ActiveState too, which `run_jobs` returns with the result.
"""

from __future__ import annotations

import errno
import signal
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .errors import SystemdError

if TYPE_CHECKING:
    from types import ModuleType

DEST = b"org.freedesktop.systemd1"
PATH = b"/org/freedesktop/systemd1"
MANAGER = b"org.freedesktop.systemd1.Manager"
UNIT_IFACE = b"org.freedesktop.systemd1.Unit"
SERVICE_IFACE = b"org.freedesktop.systemd1.Service"
PROPERTIES_IFACE = b"org.freedesktop.DBus.Properties"
JOB_METHODS = {"start": b"StartUnit", "stop": b"StopUnit", "restart": b"RestartUnit"}
HELD = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)  # interrupts.SIGNALS


@contextmanager
def held() -> Iterator[None]:
    """The signals an upgrade handles wait until the D-Bus round trip inside is over.

    sd-bus (systemd < 253) fails a call whose wait for the reply a signal interrupts with EINTR,
    after the request went out: a RestartUnit cannot be sent again, and the step would fail. Held,
    the signal is delivered as the call returns (interrupts.SignalGuard then sees it).
    """
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, HELD)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def _pystemd() -> tuple[ModuleType, ModuleType]:
    """pystemd's bus modules (dbuslib, dbusexc), without running the package's __init__.

    `import pystemd.dbuslib` first runs pystemd/__init__.py, which builds the introspection classes
    (pystemd.systemd1, .machine1) and imports lxml: about 12 ms on every `compute-units restart`,
    for classes this module never uses. When nothing has imported pystemd yet, a bare package
    object with pystemd's search path stands in for it; `import pystemd.systemd1` and friends
    still work through that path.
    """
    import sys

    if "pystemd" not in sys.modules:
        import importlib.util
        import types

        spec = importlib.util.find_spec("pystemd")
        if spec is not None and spec.submodule_search_locations is not None:
            package = types.ModuleType("pystemd")
            package.__path__ = list(spec.submodule_search_locations)
            package.__spec__ = spec
            sys.modules["pystemd"] = package
    import pystemd.dbusexc
    import pystemd.dbuslib

    return pystemd.dbuslib, pystemd.dbusexc


class HostNotReady(SystemdError):
    exit_code = 3


class UnitNotFound(SystemdError):
    exit_code = 3


@dataclass(frozen=True)
class UnitState:
    name: str
    load_state: str
    active_state: str
    sub_state: str
    result: str
    main_pid: int
    exec_main_status: int
    exec_main_code: int
    active_enter_us: int
    invocation_id: str
    control_group: str
    need_daemon_reload: bool

    @property
    def exit_description(self) -> str:
        # ExecMainCode: CLD_EXITED=1, CLD_KILLED=2, CLD_DUMPED=3
        if self.exec_main_code == 1:
            return f"exit status {self.exec_main_status}"
        if self.exec_main_code in (2, 3):
            return f"killed by signal {self.exec_main_status}"
        return "no main process result"


@dataclass(frozen=True)
class JobOutcome:
    unit: str
    verb: str
    job_result: str  # done, failed, canceled, timeout, dependency, skipped, or "deadline"
    state: UnitState

    @property
    def ok(self) -> bool:
        if self.job_result != "done":
            return False
        if self.verb == "stop":
            # "failed" after a stop means the stop itself went wrong (timeout, kill)
            return self.state.active_state == "inactive"
        return self.state.active_state in ("active", "reloading")


class Systemd:
    """A connection to one systemd manager; pass it in, do not create it deep inside."""

    def __init__(self, bus: Any) -> None:
        self.bus = bus
        self._removed: dict[bytes, str] = {}
        self._subscribed = False
        self._callbacks: list[Any] = []
        self._paths: dict[str, bytes] = {}

    @classmethod
    @contextmanager
    def connect(cls) -> Iterator[Systemd]:
        dbuslib, dbusexc = _pystemd()
        bus = dbuslib.DBus()
        try:
            bus.open()
        except dbusexc.DBusBaseError as exc:
            raise HostNotReady(
                f"cannot reach systemd over D-Bus ({dbus_text(exc)})",
                hint="is systemd PID 1 here and the system bus running?",
            ) from exc
        try:
            manager = cls(bus)
            manager.call(b"GetDefaultTarget", [])  # fail early and clearly if no systemd answers
            yield manager
        finally:
            bus.close()

    # -- low level
    def call(
        self, method: bytes, args: list[tuple[int, Any]], *, path: bytes = PATH, iface: bytes = MANAGER
    ) -> Any:
        from pystemd.dbusexc import DBusBaseError

        try:
            with held():
                return self.bus.call_method(DEST, path, iface, method, args).body
        except DBusBaseError as exc:
            raise _translate(exc, method) from exc

    def prop(self, path: bytes, iface: bytes, name: bytes, signature: bytes) -> Any:
        from pystemd.dbusexc import DBusBaseError

        try:
            with held():
                return self.bus.get_property(DEST, path, iface, name, signature)
        except DBusBaseError as exc:
            raise _translate(exc, name) from exc

    # -- manager
    def reload(self) -> None:
        """daemon-reload; the call returns when the reload is complete."""
        self.call(b"Reload", [])

    def unit_path(self, unit: str) -> bytes:
        """The unit's object path (LoadUnit: loads it if needed; a unit's path never changes)."""
        from pystemd.dbuslib import apply_signature

        if unit not in self._paths:
            body = self.call(b"LoadUnit", apply_signature(b"s", [unit.encode()]))
            self._paths[unit] = bytes(body[0] if isinstance(body, (list, tuple)) else body)
        return self._paths[unit]

    def unit_properties(self, unit: str) -> dict[bytes, Any]:
        """Every property of the unit's Unit interface, in one round trip (GetAll)."""
        from pystemd.dbuslib import apply_signature

        body = self.call(
            b"GetAll",
            apply_signature(b"s", [UNIT_IFACE]),
            path=self.unit_path(unit),
            iface=PROPERTIES_IFACE,
        )
        return dict(body[0] if isinstance(body, (list, tuple)) else body)

    def state(self, unit: str) -> UnitState:
        props = self.unit_properties(unit)
        load_state = text(props[b"LoadState"])
        is_service = unit.endswith(".service") and load_state == "loaded"
        path = self.unit_path(unit)

        def s(name: bytes, sig: bytes, default: Any) -> Any:
            # five of the Service interface's ~300 properties: single reads beat a GetAll here
            return self.prop(path, SERVICE_IFACE, name, sig) if is_service else default

        invocation = props[b"InvocationID"]
        return UnitState(
            name=unit,
            load_state=load_state,
            active_state=text(props[b"ActiveState"]),
            sub_state=text(props[b"SubState"]),
            result=text(s(b"Result", b"s", b"success")),
            main_pid=int(s(b"MainPID", b"u", 0)),
            exec_main_status=int(s(b"ExecMainStatus", b"i", 0)),
            exec_main_code=int(s(b"ExecMainCode", b"i", 0)),
            active_enter_us=int(props[b"ActiveEnterTimestamp"]),
            invocation_id=bytes(invocation).hex() if invocation else "",
            control_group=text(s(b"ControlGroup", b"s", b"")),
            need_daemon_reload=bool(props[b"NeedDaemonReload"]),
        )

    def mask(self, units: Sequence[str]) -> None:
        from pystemd.dbuslib import apply_signature

        args = apply_signature(b"asbb", [[u.encode() for u in units], False, True])
        self.call(b"MaskUnitFiles", args)
        self.reload()

    def fragment_path(self, unit: str) -> str:
        return text(self.unit_properties(unit)[b"FragmentPath"])

    def kill_signal(self, unit: str) -> int:
        return kill_signal(self, unit)

    def machines(self) -> list[Machine]:
        return list_machines(self)

    def load_error(self, unit: str) -> str:
        """Why systemd could not load the unit ("" when it loaded): its LoadError message."""
        props = self.unit_properties(unit)
        error = props.get(b"LoadError")
        if not error or len(error) < 2:
            return ""
        name, message = text(error[0]), text(error[1])
        return f"{message} ({name})" if name and message else message or name

    def require_loaded(self, units: Sequence[str]) -> None:
        missing = [u for u in units if self.state(u).load_state == "not-found"]
        if missing:
            raise UnitNotFound(
                f"unit {', '.join(missing)} is not generated yet",
                hint="run `compute-units generate` (or `compute-units apply`) first",
            )

    # -- jobs
    def _subscribe(self) -> None:
        if self._subscribed:
            return
        self.call(b"Subscribe", [])
        removed = self._removed

        def on_job_removed(msg: Any, error: Any = None, userdata: Any = None) -> None:
            msg.process_reply(True)
            _job_id, job_path, _unit, result = msg.body
            removed[bytes(job_path)] = text(result)

        self._match(PATH, MANAGER, b"JobRemoved", on_job_removed)
        self._subscribed = True

    def _match(self, path: bytes, iface: bytes, member: bytes, callback: Any) -> None:
        """pystemd keeps only a borrowed pointer to the callback: hold a reference as long as the bus."""
        self._callbacks.append(callback)
        with held():
            self.bus.match_signal(DEST, path, iface, member, callback)

    def run_jobs(
        self, verb: str, units: Sequence[str], *, timeout: float = 300.0, settle: float = 0.0
    ) -> list[JobOutcome]:
        """Enqueue one job per unit ("replace" mode) and wait for all of their JobRemoved signals.

        With `settle`, units that came up are then watched for that many seconds (PropertiesChanged
        signals, no polling): a container that dies right after its start job is reported failed.
        """
        from pystemd.dbuslib import apply_signature

        self._subscribe()
        method = JOB_METHODS[verb]
        jobs: dict[bytes, str] = {}
        for unit in units:
            body = self.call(method, apply_signature(b"ss", [unit.encode(), b"replace"]))
            jobs[bytes(body[0] if isinstance(body, (list, tuple)) else body)] = unit
        results = self.wait_jobs(list(jobs), timeout=timeout)
        outcomes = [
            JobOutcome(unit, verb, results.get(job, "deadline"), self.state(unit))
            for job, unit in jobs.items()
        ]
        return self.settle(outcomes, settle) if verb != "stop" else outcomes

    def settle(self, outcomes: Sequence[JobOutcome], seconds: float) -> list[JobOutcome]:
        """Re-check outcomes whose unit left the active state within `seconds` after its job."""
        if seconds <= 0:
            return list(outcomes)
        left = self.watch_active([o.unit for o in outcomes if o.ok], seconds)
        return [
            JobOutcome(o.unit, o.verb, o.job_result, self.state(o.unit)) if o.unit in left else o
            for o in outcomes
        ]

    def watch_active(self, units: Sequence[str], seconds: float) -> set[str]:
        """Watch units for `seconds`; return those that left the active state meanwhile."""
        if not units:
            return set()
        paths = {self.unit_path(u): u for u in units}
        left: set[str] = set()

        def on_change(msg: Any, error: Any = None, userdata: Any = None) -> None:
            msg.process_reply(True)
            unit = paths.get(bytes(msg.headers.get("Path") or b""))
            if unit is None or len(msg.body) < 2:
                return
            state = msg.body[1].get(b"ActiveState")
            if state is not None and text(state) != "active":
                left.add(unit)

        for path in paths:
            self._match(path, PROPERTIES_IFACE, b"PropertiesChanged", on_change)
        # a change between the job's end and the subscription above is caught by reading once more
        left |= {u for u in units if self.state(u).active_state != "active"}
        deadline = time.monotonic() + seconds
        while len(left) < len(units):
            self._drain()
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            self._wait(remaining)
        return left

    def _drain(self) -> None:
        """Dispatch every message already queued on the bus (signal callbacks run here)."""
        while True:
            with held():
                msg = self.bus.process()
            if msg.is_empty():
                break

    def _wait(self, seconds: float) -> None:
        """Until the bus has something to process or `seconds` pass; a signal only ends it early."""
        from pystemd.dbusexc import DBusBaseError

        try:
            self.bus.wait(int(seconds * 1_000_000))
        except DBusBaseError as exc:
            if abs(getattr(exc, "errno", 0) or 0) != errno.EINTR:
                raise

    def wait_jobs(self, jobs: Sequence[bytes], *, timeout: float) -> dict[bytes, str]:
        deadline = time.monotonic() + timeout
        pending = set(jobs)
        while True:
            self._drain()
            pending -= self._removed.keys()
            if not pending:
                break
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            self._wait(min(remaining, 1.0))
        return {job: self._removed.pop(job) for job in jobs if job in self._removed}


def dbus_text(exc: Exception) -> str:
    """The D-Bus error name and message, without pystemd's decorations."""
    name = text(getattr(exc, "err_name", "") or "")
    message = text(getattr(exc, "err_message", "") or "")
    if name or message:
        return ": ".join(part for part in (name, message) if part)
    errno_ = getattr(exc, "errno", None)
    return f"error {errno_}" if errno_ is not None else (str(exc) or type(exc).__name__)


def text(value: Any) -> str:
    """A D-Bus string as str (pystemd gives bytes)."""
    return value.decode() if isinstance(value, bytes) else str(value)


def _translate(exc: Exception, what: bytes) -> SystemdError:
    detail = dbus_text(exc)
    if "NoSuchUnit" in detail or "not found" in detail.lower() or "not loaded" in detail.lower():
        return UnitNotFound(f"systemd: {detail}")
    if "AccessDenied" in detail or "Permission denied" in detail or "EACCES" in detail:
        return SystemdError(f"systemd refused {what.decode()}: {detail}", hint="run as root")
    return SystemdError(f"systemd {what.decode()} failed: {detail}")


MACHINE_DEST = b"org.freedesktop.machine1"
MACHINE_PATH = b"/org/freedesktop/machine1"
MACHINE_MANAGER = b"org.freedesktop.machine1.Manager"


@dataclass(frozen=True)
class Machine:
    name: str
    klass: str  # "vm" or "container"
    service: str  # who registered it, e.g. "libvirt-qemu"
    leader: int


def list_machines(systemd: Systemd) -> list[Machine]:
    """Machines registered with systemd-machined (libvirt registers every guest)."""
    from pystemd.dbusexc import DBusBaseError

    try:
        with held():
            reply = systemd.bus.call_method(MACHINE_DEST, MACHINE_PATH, MACHINE_MANAGER, b"ListMachines", [])
    except DBusBaseError as exc:
        raise HostNotReady(
            f"systemd-machined does not answer: {exc}", hint="systemctl start systemd-machined"
        ) from exc
    body = reply.body
    machines = []
    for name, klass, service, path in body[0] if body and isinstance(body[0], list) else body:
        with held():
            leader = systemd.bus.get_property(
                MACHINE_DEST, bytes(path), b"org.freedesktop.machine1.Machine", b"Leader", b"u"
            )
        machines.append(Machine(text(name), text(klass), text(service), int(leader)))
    return machines


def kill_signal(systemd: Systemd, unit: str) -> int:
    return int(systemd.prop(systemd.unit_path(unit), SERVICE_IFACE, b"KillSignal", b"i"))
