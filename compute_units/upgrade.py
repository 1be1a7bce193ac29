"""Atomic upgrade: lock → pull → preflight → record → pin → restart → health → post-check → commit.

Any failure after `pin` rolls back to the previous digest the same way. Every step is idempotent
and its progress is recorded in state.json before the next begins, so running the same command
again after a crash (even kill -9) resumes and converges: state.json == the digest that runs.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from . import host, install, podman, render, runner
from .errors import CommandError, ComputeUnitsError
from .model import Service, ServiceSet
from .state import ServiceState, State, Store, digest_of
from .systemd import HostNotReady, Systemd, kill_signal, list_machines

SIGKILL = 9
HEALTH_POLL_S = 0.5
GENERATOR_DIRS = ("/run/systemd/generator", "/run/systemd/generator.late", "/run/systemd/generator.early")
# tests only: SIGKILL ourselves right after this step (or "stop-container": inside restart, once
# the old container has stopped and before systemd is asked to restart the unit)
CRASH_ENV = "COMPUTE_UNITS_CRASH_AT"


class PullFailed(ComputeUnitsError):
    exit_code = 1


class PreflightRefused(ComputeUnitsError):
    exit_code = 3


class RolledBack(ComputeUnitsError):
    exit_code = 5


class StepFailed(Exception):
    def __init__(self, step: str, reason: str) -> None:
        super().__init__(reason)
        self.step = step
        self.reason = reason


@dataclass
class Step:
    name: str
    ms: int
    ok: bool
    detail: str = ""


@dataclass
class VmSnapshot:
    qemu: list[dict[str, Any]] = field(default_factory=list)  # pid, comm, start_time, cgroup
    machines: list[str] = field(default_factory=list)
    running_guests: list[str] | None = None  # from virsh in the container, when it has virsh


@dataclass
class Report:
    service: str
    result: str = "pending"  # upgraded, unchanged, rolled-back, failed, refused
    source: str | None = None
    target: str | None = None
    failed_step: str | None = None
    reason: str | None = None
    steps: list[Step] = field(default_factory=list)
    vm_before: VmSnapshot | None = None
    vm_after: VmSnapshot | None = None
    vm_check: list[str] = field(default_factory=list)  # problems found; empty = all guests fine

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["from"] = data.pop("source")
        data["to"] = data.pop("target")
        return data


Progress = Callable[[str], None]
# for people at a terminal: a context in which podman may draw its own pull progress on stderr
PullDisplay = Callable[[], AbstractContextManager[None]]


class Upgrader:
    """Runs upgrades for services of one node. Collaborators are passed in."""

    def __init__(
        self,
        systemd: Systemd,
        store: Store,
        services: ServiceSet,
        options: render.RenderOptions,
        *,
        unit_dir: Path,
        progress: Progress = lambda message: None,
        pull_display: PullDisplay | None = None,
    ) -> None:
        self.systemd = systemd
        self.store = store
        self.services = services
        self.options = options
        self.unit_dir = unit_dir
        self.progress = progress
        self.pull_display = pull_display
        self.crash_at = os.environ.get(CRASH_ENV, "")
        self.reports: list[Report] = []

    # ------------------------------------------------------------------ public
    def upgrade(self, service: Service, image: str | None = None) -> Report:
        """Upgrade one service (and restart its dependents); the report also lands in `self.reports`."""
        report = Report(service.name)
        self.reports.append(report)
        state = self.store.load()
        entry = state.get(service.name)
        if entry.phase == "rolling-back":
            self.progress(f"{service.name}: finishing an interrupted rollback")
            report.source, report.target = entry.target, entry.previous
            self._finish_rollback(service, state, report)
            state = self.store.load()
            entry = state.get(service.name)
            report = Report(service.name)
            self.reports.append(report)
        resume = entry.phase != "idle" and entry.target is not None
        reference = entry.target if resume and entry.target else image or str(service.image)
        if resume:
            self.progress(f"{service.name}: resuming the interrupted upgrade to {entry.target}")
        with self._step(report, "pull"):
            target = self.pull(reference)
        report.target = target
        running = self.running_reference(service)
        report.source = entry.previous if resume else (entry.current or running)
        if not resume and running and digest_of(running) == digest_of(target):
            with self._step(report, "pin"):
                entry.current = target
                self.store.save(state)
                self.pin(service, state)
            report.result = "unchanged"
            return report
        with self._step(report, "preflight"):
            report.vm_before = self.preflight(service)
        if not resume:
            with self._step(report, "record"):
                entry.previous = entry.current or running
                entry.target = target
                entry.phase = "recorded"
                entry.started = time.time()
                entry.vms_before = asdict(report.vm_before)
                self.store.save(state)
        elif entry.vms_before is not None:
            report.vm_before = VmSnapshot(**entry.vms_before)  # what ran before the crash
        try:
            with self._step(report, "pin"):
                self.pin(service, state)
                self._advance(state, entry, "pinned")
            with self._step(report, "restart") as step:
                if entry.phase in ("pinned",) or digest_of(self.running_reference(service)) != digest_of(
                    target
                ):
                    step.detail = self.restart(service)
                self._advance(state, entry, "restarted")
            with self._step(report, "health"):
                self.health_gate(service)
                self._advance(state, entry, "healthy")
            with self._step(report, "post-check"):
                report.vm_after, report.vm_check = self.post_check(service, report.vm_before)
                if report.vm_check:
                    raise StepFailed("post-check", "; ".join(report.vm_check))
                self._advance(state, entry, "verified")
        except StepFailed as failure:
            report.failed_step, report.reason = failure.step, failure.reason
            self._rollback(service, state, report)
            raise RolledBack(
                f"{service.name}: upgrade to {target} failed at {failure.step}: {failure.reason}; "
                f"rolled back to {entry.current or service.image}",
                hint=f"see `journalctl -u {service.unit}` and `compute-units history {service.name}`",
            ) from None
        with self._step(report, "commit"):
            entry.commit(target)
            self.store.save(state)
            report.result = "upgraded"
            self._history(report)
        return report

    # ------------------------------------------------------------------ steps
    @contextmanager
    def _step(self, report: Report, name: str) -> Iterator[Step]:
        """Time one step and record it in the report; the body may fill in `detail`."""
        self.progress(f"{report.service}: {name}")
        started = time.monotonic()
        step = Step(name, 0, True)
        try:
            yield step
        except StepFailed as failure:
            step.ms, step.ok, step.detail = _ms(started), False, failure.reason
            report.steps.append(step)
            raise
        except ComputeUnitsError as exc:
            step.ms, step.ok, step.detail = _ms(started), False, exc.message
            report.steps.append(step)
            report.result, report.failed_step, report.reason = "failed", name, exc.message
            raise
        step.ms = _ms(started)
        report.steps.append(step)
        self._crash_point(name)

    def _crash_point(self, name: str) -> None:
        if self.crash_at == name:
            os.kill(os.getpid(), signal.SIGKILL)

    def _advance(self, state: State, entry: ServiceState, phase: str) -> None:
        entry.phase = phase
        self.store.save(state)

    def pull(self, reference: str) -> str:
        """Pull (before anything stops) and return repository[:tag]@digest."""
        if "@" in reference and podman.image_exists(reference):
            return reference  # resuming: the pinned image is already here, no registry needed
        try:
            if self.pull_display is not None:  # podman's progress bars, then the image id on stdout
                with self.pull_display():
                    result = runner.run([podman.PODMAN, "pull", reference], timeout=1800, show_stderr=True)
            else:
                result = runner.run([podman.PODMAN, "pull", "--quiet", reference], timeout=1800)
        except CommandError as exc:
            raise PullFailed(
                f"cannot pull {reference}: {exc.stderr.strip().splitlines()[-1] if exc.stderr.strip() else exc.message}; nothing was changed",
                hint="check the registry and the image name (compute-units doctor)",
            ) from exc
        image_id = result.stdout.strip().splitlines()[-1]
        digest = podman.image_digest(image_id, podman.repository_of(reference))
        if digest is None:
            raise PullFailed(f"{reference} has no registry digest; nothing was changed")
        return f"{reference.split('@', 1)[0]}@{digest}"

    def running_reference(self, service: Service) -> str | None:
        container = podman.unit_container(service.unit)
        if container is None:
            return None
        name = container.image.split("@", 1)[0]
        digest = podman.image_digest(container.image_id, podman.repository_of(name))
        return f"{name}@{digest}" if digest else None

    def preflight(self, service: Service) -> VmSnapshot:
        problems = []
        for module in service.preflight.kernel_modules:
            if not host.module_available(module):
                problems.append(f"kernel module {module} is not loaded (modprobe {module})")
        for unit in service.preflight.host_units_inactive:
            st = self.systemd.state(unit)
            if st.active_state not in ("inactive", "failed") and st.load_state != "not-found":
                problems.append(f"{unit} is {st.active_state} on the host (systemctl disable --now {unit})")
        for path in service.preflight.paths:
            if not Path(path).exists():
                problems.append(f"{path} does not exist")
        snapshot = VmSnapshot()
        if service.keeps_vms:
            problems += self._vm_safety(service)
            snapshot = self.vm_snapshot(service)
        if problems:
            raise PreflightRefused(
                f"{service.name}: refusing to restart: " + "; ".join(problems) + "; nothing was changed"
            )
        return snapshot

    def _vm_safety(self, service: Service) -> list[str]:
        problems = []
        machined = self.systemd.state("systemd-machined.service")
        if machined.active_state != "active":
            problems.append(
                "systemd-machined is not active: libvirt could not keep guests in their own scopes "
                "and a restart would kill them (systemctl unmask --now systemd-machined)"
            )
        st = self.systemd.state(service.unit)
        if st.active_state == "active":
            inside = [p for p in host.qemu_processes() if host.in_cgroup(p, st.control_group)]
            if inside:
                problems.append(
                    f"qemu PID {', '.join(str(p.pid) for p in inside)} is inside {service.unit}'s cgroup "
                    "and would be killed with it"
                )
            if kill_signal(self.systemd, service.unit) != SIGKILL:
                problems.append(
                    f"{service.unit} is loaded with KillSignal other than SIGKILL: conmon would wait for "
                    "qemu and the stop would time out (regenerate the unit and daemon-reload)"
                )
        return problems

    def vm_snapshot(self, service: Service) -> VmSnapshot:
        qemu = [asdict(p) for p in host.qemu_processes()]
        try:
            machines = sorted(m.name for m in list_machines(self.systemd) if m.klass == "vm")
        except HostNotReady:
            machines = []
        return VmSnapshot(qemu, machines, self._running_guests(service))

    def _running_guests(self, service: Service) -> list[str] | None:
        result = runner.run(
            [
                podman.PODMAN,
                "exec",
                service.name,
                "virsh",
                "-c",
                "qemu:///system",
                "list",
                "--name",
                "--state-running",
            ],
            check=False,
            timeout=60,
        )
        if result.returncode != 0:
            return None
        return sorted(line.strip() for line in result.stdout.splitlines() if line.strip())

    def pin(self, service: Service, state: State) -> None:
        """Render the units with the pins of `state` and daemon-reload."""
        options = render.RenderOptions(
            podman=self.options.podman,
            template_dirs=self.options.template_dirs,
            pins=state.pins(),
            start_limit_interval=self.options.start_limit_interval,
            start_limit_burst=self.options.start_limit_burst,
        )
        fragment = self.systemd.fragment_path(service.unit)
        if not fragment.startswith(GENERATOR_DIRS):
            units = render.render_all(self.services, options)
            install.apply(install.plan(units, self.unit_dir), self.unit_dir)
        self.systemd.reload()

    def restart(self, service: Service) -> str:
        """Restart the service and its dependents; returns how the old container stopped."""
        units = [service.unit] + [d.unit for d in self.services.dependents(service.name)]
        stopped = self.stop_container(service)
        self._crash_point("stop-container")
        outcomes = self.systemd.run_jobs("restart", units, timeout=service.stop_timeout_s + 300)
        failed = [o for o in outcomes if not o.ok]
        if failed:
            o = failed[0]
            raise StepFailed(
                "restart",
                f"{o.unit}: job {o.job_result}, unit {o.state.active_state}/{o.state.sub_state} "
                f"(Result={o.state.result}, main process {o.state.exit_description})",
            )
        return stopped

    def stop_container(self, service: Service) -> str:
        """Stop the old container's main process with its stop signal and return once it is gone.

        The unit's restart follows at once; its ExecStop then finds the container exited. podman's
        stop (in ExecStop, and in `podman auto-update`'s restart) looks for the exit every 100 ms,
        which lengthens the window in which the service is down; we wait on the exit itself. If the
        process is still running after stop_timeout, ExecStop takes over: SIGTERM, then SIGKILL
        after another stop_timeout.
        """
        container = podman.unit_container(service.unit)
        if container is None or not container.running or container.pid <= 0:
            return "no running container"
        control_group = self.systemd.state(service.unit).control_group
        name = signal.Signals(container.stop_signal).name
        started = time.monotonic()
        if host.stop_process(
            container.pid, container.stop_signal, service.stop_timeout_s, cgroup=control_group
        ):
            return f"old container (PID {container.pid}) exited {_ms(started)} ms after {name}"
        return f"old container (PID {container.pid}) not stopped by {name} within {service.stop_timeout_s}s: left to ExecStop"

    def health_gate(self, service: Service) -> None:
        """The unit stays active and its health command passes within start_period (+ timeout)."""
        for svc in [service, *self.services.dependents(service.name)]:
            health = svc.health
            deadline = time.monotonic() + (
                (health.start_period_ms + health.timeout_ms) / 1000 if health else 0
            )
            while True:
                st = self.systemd.state(svc.unit)
                if st.active_state != "active":
                    raise StepFailed(
                        "health",
                        f"{svc.unit} is {st.active_state}/{st.sub_state} (main process {st.exit_description})",
                    )
                if health is None:
                    break
                if podman.healthcheck(svc.name):
                    break
                if time.monotonic() >= deadline:
                    raise StepFailed(
                        "health",
                        f"{svc.name}: health check {list(health.command)} did not pass within "
                        f"{(health.start_period_ms + health.timeout_ms) // 1000}s",
                    )
                time.sleep(HEALTH_POLL_S)  # sleep-ok: podman offers no event for "healthy"

    def post_check(self, service: Service, before: VmSnapshot | None) -> tuple[VmSnapshot, list[str]]:
        if not service.keeps_vms or before is None:
            return VmSnapshot(), []
        after = self.vm_snapshot(service)
        problems = []
        alive = {(p["pid"], p["start_time"]) for p in after.qemu}
        for p in before.qemu:
            if (p["pid"], p["start_time"]) not in alive:
                problems.append(f"qemu PID {p['pid']} died")
        for name in sorted(set(before.machines) - set(after.machines)):
            problems.append(f"machine {name} is gone")
        if before.running_guests is not None:
            if after.running_guests is None:
                problems.append("cannot list guests in the new container")
            else:
                for guest in sorted(set(before.running_guests) - set(after.running_guests)):
                    problems.append(f"guest {guest} is not running")
        return after, problems

    # ------------------------------------------------------------------ rollback
    def _rollback(self, service: Service, state: State, report: Report) -> None:
        entry = state.get(service.name)
        entry.phase = "rolling-back"
        self.store.save(state)
        self._finish_rollback(service, state, report)

    def _finish_rollback(self, service: Service, state: State, report: Report) -> None:
        entry = state.get(service.name)
        with self._step(report, "rollback"):
            self.pin(service, state)
            try:
                self.restart(service)
                self.health_gate(service)
            except StepFailed as failure:
                report.result = "failed"
                report.reason = f"{report.reason}; rollback also failed: {failure.reason}"
                self._history(report)
                raise ComputeUnitsError(
                    f"{service.name}: rollback to {entry.previous or service.image} failed: {failure.reason}",
                    hint=f"the unit is pinned to the previous image; inspect `journalctl -u {service.unit}`",
                ) from None
            entry.commit(entry.previous)
            self.store.save(state)
        report.result = "rolled-back"
        self._history(report)

    def _history(self, report: Report) -> None:
        entry = report.as_dict()
        entry["time"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        entry["duration_ms"] = sum(s.ms for s in report.steps)
        for key in ("vm_before", "vm_after"):
            entry.pop(key, None)
        self.store.append_history(entry)


def _ms(started: float) -> int:
    return int((time.monotonic() - started) * 1000)
