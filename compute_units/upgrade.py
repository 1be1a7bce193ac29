"""Atomic upgrade: lock → pull → preflight → record → pin → restart → health → post-check → commit.

Any failure after `record` — a failed step, any exception (a full disk included) or a signal —
rolls back to the previous digest the same way, post-check included. Every step is idempotent and
its progress is recorded in state.json before the next begins, so running the same command again
after a crash (even kill -9) resumes and converges: state.json == the digest that runs. After a
reboot in the middle of an upgrade the node runs the declared image (`ServiceState.boot_pin`) and
the next run settles the state to it before it does anything else.

Effects come in through `effects.Effects`; nothing here calls podman, systemd or /proc directly.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from . import disruptive, preflight, sockets, vms
from .effects import Effects
from .errors import CommandError, ComputeUnitsError, ExitCode, describe
from .host import signal_name
from .model import Service, ServiceSet
from .state import ServiceState, State, digest_of
from .targets import choose_target
from .vms import VmSnapshot

HEALTH_POLL_S = 0.5
PODMAN_EXEC_MARGIN_S = 5.0  # what `podman healthcheck run` adds to the command's own time, at most
DEFAULT_PULL_TIMEOUT_S = 600.0
GENERATOR_DIRS = ("/run/systemd/generator", "/run/systemd/generator.late", "/run/systemd/generator.early")


class PullFailed(ComputeUnitsError):
    exit_code = ExitCode.FAILED


class RolledBack(ComputeUnitsError):
    exit_code = ExitCode.ROLLED_BACK


class UpgradeInterrupted(ComputeUnitsError):
    exit_code = ExitCode.INTERRUPTED


class StepFailed(Exception):
    def __init__(self, step: str, reason: str) -> None:
        super().__init__(reason)
        self.step = step
        self.reason = reason


class Interrupted(Exception):
    """A signal asked the run to stop; raised between steps, never from the handler itself."""

    def __init__(self, signame: str) -> None:
        super().__init__(signame)
        self.signame = signame


@dataclass
class Step:
    name: str
    ms: int
    ok: bool
    detail: str = ""


@dataclass
class Report:
    service: str
    kind: str = "upgrade"  # upgrade, rollback
    result: str = "pending"  # upgraded, unchanged, rolled-back, failed, refused, interrupted, would-upgrade
    source: str | None = None
    target: str | None = None
    note: str = ""  # why this target (e.g. "kept the image pinned by an earlier --image")
    undoes: str | None = None  # rollback: the time of the upgrade it undoes
    failed_step: str | None = None
    reason: str | None = None
    steps: list[Step] = field(default_factory=list)
    vm_before: VmSnapshot | None = None
    vm_after: VmSnapshot | None = None
    vm_check: list[str] = field(default_factory=list)  # problems found; empty = all guests fine
    runs: str | None = None  # after a rollback: the image it brought back (for the report's line)

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        del data["runs"]  # from/to keep their meaning in JSON and history: the attempt's
        data["from"] = data.pop("source")
        data["to"] = data.pop("target")
        data["guests"] = vms.guests_kept(self.vm_before, self.vm_after)
        return data


Progress = Callable[[str], None]
# for people at a terminal: a context in which podman may draw its own pull progress on stderr
PullDisplay = Callable[[], AbstractContextManager[None]]
RenderUnits = Callable[[Service, str | None], Mapping[str, str]]  # its unit (and socket units) by name


def _resumes(image: str, entry: ServiceState) -> bool:
    """Whether `--image` names the unfinished upgrade's target (by digest, or by the same name)."""
    target = str(entry.target)
    if "@" in image:
        return digest_of(image) == digest_of(target)
    return image == target.split("@", 1)[0]


class Upgrader:
    """Runs upgrades and rollbacks for services of one node. Every effect is in `fx`."""

    def __init__(
        self,
        fx: Effects,
        services: ServiceSet,
        render_units: RenderUnits,
        *,
        progress: Progress = lambda message: None,
        pull_display: PullDisplay | None = None,
        pull_timeout: float = DEFAULT_PULL_TIMEOUT_S,
        allow_disruptive: bool = False,
    ) -> None:
        self.fx = fx
        self.allow_disruptive = allow_disruptive
        self.services = services
        self.render_units = render_units
        self.progress = progress
        self.pull_display = pull_display
        self.pull_timeout = pull_timeout
        self.reports: list[Report] = []

    # ------------------------------------------------------------------ public
    def upgrade(
        self, service: Service, image: str | None = None, *, kind: str = "upgrade", undoes: str | None = None
    ) -> Report:
        """Upgrade one service (and restart its dependents); the report also lands in `self.reports`."""
        state = self._settle_unfinished(service)
        entry = state.get(service.name)
        if entry.unfinished and (kind == "rollback" or (image is not None and not _resumes(image, entry))):
            # the operator asks for another image than the unfinished upgrade's: undo that one first
            asked = "`rollback`" if kind == "rollback" else f"--image {image}"
            self._tell(f"{service.name}: rolling back the unfinished upgrade to {entry.target} ({asked})")
            entry.phase = "rolling-back"
            self.fx.store.save(state)
            reason = f"{asked} during the unfinished upgrade to {entry.target}"
            rolled = self._finish_recorded_rollback(service, state, "rollback", reason)
            if kind == "rollback":
                return rolled
            state = self.fx.store.load()
            entry = state.get(service.name)
        report = self._new_report(service, kind)
        report.undoes = undoes
        resume = entry.unfinished
        if resume:
            reference, report.note = str(entry.target), "resuming the interrupted upgrade"
            self.progress(f"{service.name}: resuming the interrupted upgrade to {entry.target}")
        else:
            reference, report.note = choose_target(service, entry, image)
        with self._step(report, "pull") as step:
            target, step.detail = self.pull(reference, entry)
        report.target = target
        running = self.running_reference(service)
        report.source = entry.previous if resume else (entry.current or running)
        if not resume and running and digest_of(running) == digest_of(target):
            with self._step(report, "pin"):
                entry.commit(target)
                entry.spec_image = str(service.image)
                self.fx.store.save(state)
                self.pin(service, target)
            report.result = "unchanged"
            return report
        self._stop_if_interrupted(report, "before anything was changed")
        with self._step(report, "preflight"):
            if not resume:  # a resumed upgrade was allowed when it began
                self._refuse_disruptive(service, report)
            snapshot = self.preflight(service)
        if not resume:
            self._stop_if_interrupted(report, "before anything was changed")
            with self._step(report, "record"):
                self._record(state, entry, service, target, snapshot)
            report.vm_before = snapshot
        else:
            stored = entry.vms_before
            report.vm_before = VmSnapshot.from_dict(stored) if stored is not None else snapshot
        self._apply(service, state, entry, report, target)
        return report

    def dry_run(self, service: Service, image: str | None = None) -> Report:
        """What `upgrade` would do: the target resolved (pulled), nothing restarted or recorded."""
        entry = self.fx.store.load().get(service.name)
        report = self._new_report(service, "upgrade")
        reference, report.note = (
            (str(entry.target), "an interrupted upgrade would be resumed")
            if entry.unfinished
            else choose_target(service, entry, image)
        )
        with self._step(report, "pull") as step:
            report.target, step.detail = self.pull(reference, entry)
        running = self.running_reference(service)
        report.source = entry.current or running
        same = running is not None and digest_of(running) == digest_of(report.target)
        report.result = "unchanged" if same else "would-upgrade"
        return report

    def prepull(self, service: Service, image: str | None = None) -> tuple[str, bool, str]:
        """Pull the target `upgrade` would use and record it; (pinned reference, pulled?, note)."""
        state = self.fx.store.load()
        entry = state.get(service.name)
        reference, note = choose_target(service, entry, image)
        present = "@" in reference and self.fx.podman.image_exists(reference)
        known = (entry.current, entry.pulled)  # a tag resolves to what runs or was pulled: nothing new
        target, _ = self.pull(reference, entry)
        entry.pulled_from, entry.pulled = reference, target
        self.fx.store.save(state)
        return target, not (present or target in known), note

    # ------------------------------------------------------------------ flow
    def _new_report(self, service: Service, kind: str) -> Report:
        report = Report(service.name, kind)
        self.reports.append(report)
        return report

    def _record(
        self, state: State, entry: ServiceState, service: Service, target: str, snapshot: VmSnapshot
    ) -> None:
        entry.previous = entry.current or self.running_reference(service)
        entry.target = target
        entry.phase = "recorded"
        entry.started = self.fx.clock.now()
        entry.vms_before = snapshot.as_dict()
        entry.boot_id = self.fx.host.boot_id()
        self.fx.store.save(state)

    def _apply(
        self, service: Service, state: State, entry: ServiceState, report: Report, target: str
    ) -> None:
        """pin → restart → health → post-check → commit; any failure or signal rolls back."""
        try:
            # a resumed upgrade whose rollback could not be recorded runs the previous image: pin again
            if entry.phase in ("recorded", "pinned") or digest_of(
                self.running_reference(service)
            ) != digest_of(target):
                with self._step(report, "pin"):
                    self.pin(service, target)
                    self._advance(state, entry, "pinned")
                self._stop_if_interrupted(report)
                with self._step(report, "restart") as step:
                    step.detail = self.restart(service)
                    self._advance(state, entry, "restarted")
                self._stop_if_interrupted(report)
            with self._step(report, "health"):
                self.health_gate(service)
                self._advance(state, entry, "healthy")
            self._stop_if_interrupted(report)
            with self._step(report, "post-check"):
                report.vm_after, report.vm_check = self.post_check(service, report.vm_before)
                if report.vm_check:
                    raise StepFailed("post-check", "; ".join(report.vm_check))
                self._advance(state, entry, "verified")
            with self._step(report, "commit"):
                self._commit(service, state, entry, target)
        except Interrupted as stop:
            why = f"interrupted by {stop.signame}"
            notes = self._roll_back_after(service, state, report, "interrupted", why)
            raise UpgradeInterrupted(
                f"{service.name}: {why} during the upgrade to {target}; "
                f"rolled back to {entry.current or service.image}{notes}",
                hint=f"`compute-units upgrade {service.name}` starts it again",
            ) from None
        except Exception as exc:  # a failed step, or anything else that went wrong: roll back
            failure = exc if isinstance(exc, StepFailed) else StepFailed(report.steps[-1].name, describe(exc))
            report.failed_step, report.reason = failure.step, failure.reason
            notes = self._roll_back_after(service, state, report, "rolled-back", failure.reason)
            raise RolledBack(
                f"{service.name}: {report.kind} to {target} failed at {failure.step}: {failure.reason}; "
                f"rolled back to {entry.current or service.image}{notes}",
                hint=f"see `journalctl -u {service.unit}` and `compute-units history {service.name}`",
            ) from None
        report.result = "upgraded" if report.kind == "upgrade" else "rolled-back"
        self._history_best_effort(report)
        signame = self.fx.interrupted()
        if signame:
            raise UpgradeInterrupted(
                f"{service.name}: interrupted by {signame} after the upgrade was verified: "
                f"committed {target}; nothing else was started"
            )

    def _commit(self, service: Service, state: State, entry: ServiceState, target: str) -> None:
        """Record `target` as what runs; if state.json cannot be written, `entry` stays as it was."""
        done = replace(entry, spec_image=str(service.image))
        done.commit(target)
        state.services[service.name] = done
        try:
            self.fx.store.save(state)
        except OSError:
            state.services[service.name] = entry
            raise

    def _stop_if_interrupted(self, report: Report, what: str = "") -> None:
        signame = self.fx.interrupted()
        if signame is None:
            return
        if what:  # nothing recorded yet
            report.result, report.reason = "interrupted", f"interrupted by {signame} {what}"
            raise UpgradeInterrupted(
                f"{report.service}: interrupted by {signame} {what}; nothing was changed"
            )
        raise Interrupted(signame)

    # ------------------------------------------------------------------ steps
    @contextmanager
    def _step(self, report: Report, name: str) -> Iterator[Step]:
        """Time one step and record it in the report; the body may fill in `detail`."""
        self._tell(f"{report.service}: {name}")
        started = self.fx.clock.monotonic()
        step = Step(name, 0, True)
        try:
            yield step
        except StepFailed as failure:
            step.ms, step.ok, step.detail = self._ms(started), False, failure.reason
            report.steps.append(step)
            raise
        except ComputeUnitsError as exc:
            step.ms, step.ok, step.detail = self._ms(started), False, exc.message
            report.steps.append(step)
            result = "refused" if isinstance(exc, disruptive.DisruptiveRefused) else "failed"
            report.result, report.failed_step, report.reason = result, name, exc.message
            raise
        except Exception as exc:
            step.ms, step.ok, step.detail = self._ms(started), False, describe(exc)
            report.steps.append(step)
            raise
        step.ms = self._ms(started)
        report.steps.append(step)
        self.fx.checkpoint(name)

    def _tell(self, message: str) -> None:
        with contextlib.suppress(OSError):  # the terminal is gone (a dropped ssh connection): go on
            self.progress(message)

    def _ms(self, started: float) -> int:
        return round((self.fx.clock.monotonic() - started) * 1000)

    def _advance(self, state: State, entry: ServiceState, phase: str) -> None:
        entry.phase = phase
        self.fx.store.save(state)

    def pull(self, reference: str, entry: ServiceState | None = None) -> tuple[str, str]:
        """Pull (before anything stops); (repository[:tag]@digest, how it was obtained)."""
        prepulled = entry.pulled if entry is not None and entry.pulled_from == reference else None
        if prepulled and self.fx.podman.image_exists(prepulled):
            return prepulled, "pre-pulled by `compute-units pull`"
        if "@" in reference and self.fx.podman.image_exists(reference):
            return reference, "already present"  # resuming: the pinned image is here, no registry needed
        display = self.pull_display() if self.pull_display is not None else nullcontext()
        try:
            with display:
                image_id = self.fx.podman.pull(
                    reference, timeout=self.pull_timeout, show_progress=self.pull_display is not None
                )
        except CommandError as exc:
            detail = exc.stderr.strip().splitlines()[-1] if exc.stderr.strip() else exc.message
            if exc.returncode == 124:
                detail = f"no answer within {self.pull_timeout:g} s (--pull-timeout)"
            raise PullFailed(
                f"cannot pull {reference}: {detail}; nothing was changed",
                hint="check the registry and the image name (compute-units doctor)",
            ) from exc
        from .podman import repository_of

        digest = self.fx.podman.image_digest(image_id, repository_of(reference))
        if digest is None:
            raise PullFailed(f"{reference} has no registry digest; nothing was changed")
        return f"{reference.split('@', 1)[0]}@{digest}", "pulled"

    def running_reference(self, service: Service) -> str | None:
        return self.fx.podman.running_reference(service.unit)

    def preflight(self, service: Service) -> VmSnapshot:
        return preflight.check(self.fx, service, preflight.vm_holder(self.services, service))

    def _refuse_disruptive(self, service: Service, report: Report) -> None:
        def running(unit: str) -> bool:
            return self.fx.systemd.state(unit).active_state not in ("inactive", "failed")

        disruptive.check(
            f"{report.kind} {service.name}",
            disruptive.in_restart(self.services, [service.name], running),
            self.allow_disruptive,
        )

    def pin(self, service: Service, reference: str | None) -> None:
        """Write this service's unit files (and socket units; a generator's read state.json); reload."""
        if not self.fx.systemd.fragment_path(service.unit).startswith(GENERATOR_DIRS):
            self.fx.units.write(self.render_units(service, reference))
        self.fx.systemd.reload()

    def restart(self, service: Service) -> str:
        """Restart the service and its dependents; returns how the old container stopped."""
        units = [service.unit] + [d.unit for d in self.services.dependents(service.name)]
        stopped = self.stop_container(service)
        self.fx.checkpoint("stop-container")
        outcomes = self.fx.systemd.run_jobs("restart", units, timeout=service.stop_timeout_s + 300)
        failed = [o for o in outcomes if not o.ok]
        if failed:
            o = failed[0]
            reason = (
                f"{o.unit}: job {o.job_result}, unit {o.state.active_state}/{o.state.sub_state} "
                f"(Result={o.state.result}, main process {o.state.exit_description})"
            )
            if o.state.load_state != "loaded":
                reason += (
                    f"; systemd cannot load it: {self.fx.systemd.load_error(o.unit) or o.state.load_state}"
                )
            raise StepFailed("restart", reason)
        return stopped

    def stop_container(self, service: Service) -> str:
        """Stop the old container's main process with its stop signal and return once it is gone.

        The unit's restart follows at once; its ExecStop then finds the container exited. podman's
        stop looks for the exit every 100 ms; we wait on the exit itself (a pidfd). A process still
        running after stop_timeout is left to ExecStop (SIGTERM, then SIGKILL).
        """
        container = self.fx.podman.unit_container(service.unit)
        if container is None or not container.running or container.pid <= 0:
            return "no running container"
        control_group = self.fx.systemd.state(service.unit).control_group
        name = signal_name(container.stop_signal)
        started = self.fx.clock.monotonic()
        outcome = self.fx.host.stop_process(
            container.pid, container.stop_signal, service.stop_timeout_s, cgroup=control_group
        )
        if outcome == "exited":
            return f"old container (PID {container.pid}) exited {self._ms(started)} ms after {name}"
        if outcome == "running":
            return (
                f"old container (PID {container.pid}) not stopped by {name} within "
                f"{service.stop_timeout_s}s: left to ExecStop"
            )
        return f"old container (PID {container.pid}) was already gone: left to ExecStop"

    def health_gate(self, service: Service) -> None:
        """Each unit stays active and its health command passes within start_period + timeout.

        Every try of the health command is bounded by `timeout`; the message gives the real time.
        """
        for svc in [service, *self.services.dependents(service.name)]:
            sockets.check_held(self.fx.systemd, svc, StepFailed)
            self._gate_one(svc)

    def _gate_one(self, svc: Service) -> None:
        health = svc.health
        started = self.fx.clock.monotonic()
        budget = (health.start_period_ms + health.timeout_ms) / 1000 if health else 0.0
        while True:
            st = self.fx.systemd.state(svc.unit)
            if st.active_state != "active":
                raise StepFailed(
                    "health",
                    f"{svc.unit} is {st.active_state}/{st.sub_state} (main process {st.exit_description})",
                )
            if health is None:
                return
            # each try: the command's own timeout plus podman's start-up (an exec session)
            if self.fx.podman.healthcheck(svc.name, timeout=health.timeout_ms / 1000 + PODMAN_EXEC_MARGIN_S):
                return
            elapsed = self.fx.clock.monotonic() - started
            if elapsed >= budget:
                raise StepFailed(
                    "health",
                    f"{svc.name}: health check {list(health.command)} did not pass within {elapsed:.1f} s "
                    f"(start_period {health.start_period_ms / 1000:g} s + timeout {health.timeout_ms / 1000:g} s)",
                )
            signame = self.fx.interrupted()
            if signame:
                raise Interrupted(signame)
            self.fx.clock.sleep(min(HEALTH_POLL_S, budget - elapsed))  # sleep-ok: podman has no health event

    def post_check(self, service: Service, before: VmSnapshot | None) -> tuple[VmSnapshot, list[str]]:
        holder = preflight.vm_holder(self.services, service)
        if holder is None or before is None:
            return VmSnapshot(), []
        after = vms.snapshot(self.fx, holder)
        return after, vms.compare(self.fx, before, after)

    # ------------------------------------------------------------------ rollback and recovery
    def _roll_back_after(
        self, service: Service, state: State, report: Report, result: str, reason: str
    ) -> str:
        """Roll back after `reason`; what it could not record ("; state.json not updated: …")."""
        entry = state.get(service.name)
        entry.phase = "rolling-back"
        report.reason = report.reason or reason
        self._save_best_effort(state, report)
        self._finish_rollback(service, state, report, result)
        notes = report.reason.removeprefix(reason)
        return notes if notes.startswith("; ") else ""

    def _finish_rollback(self, service: Service, state: State, report: Report, result: str) -> None:
        entry = state.get(service.name)
        with self._step(report, "rollback") as step:
            try:
                self.pin(service, entry.previous)
                self.restart(service)
                self.health_gate(service)
                after, problems = self.post_check(service, report.vm_before)
                report.vm_after, report.vm_check = after, problems
            except Exception as exc:
                why = exc.reason if isinstance(exc, StepFailed) else describe(exc)
                report.result = "failed"
                report.reason = f"{report.reason}; rollback also failed: {why}"
                self._history_best_effort(report)
                raise ComputeUnitsError(
                    f"{service.name}: rollback to {entry.previous or service.image} failed: {why}",
                    hint=f"the unit is pinned to the previous image and state.json says 'rolling-back'; "
                    f"inspect `journalctl -u {service.unit}`, then run `compute-units upgrade {service.name}` "
                    "again to finish the rollback",
                ) from None
            step.detail = "post-check: " + ("; ".join(problems) if problems else "ok")
            report.runs = entry.previous
            entry.commit(entry.previous)
            self._save_best_effort(state, report)
        report.result = result
        self._history_best_effort(report)

    def _settle_unfinished(self, service: Service) -> State:
        """Finish what an earlier run left: a rollback in flight, or an upgrade cut by a reboot."""
        state = self.fx.store.load()
        entry = state.get(service.name)
        if entry.phase == "rolling-back":
            self._tell(f"{service.name}: finishing a rollback left unfinished earlier")
            self._finish_recorded_rollback(
                service, state, "upgrade", "finishing a rollback left unfinished earlier"
            )
            return self.fx.store.load()
        boot = self.fx.host.boot_id()
        if entry.unfinished and entry.boot_id and boot and entry.boot_id != boot:
            report = self._new_report(service, "upgrade")
            declared = entry.boot_pin(boot)
            report.source, report.target = entry.previous, entry.target
            verified = declared == entry.target
            report.result = "upgraded" if verified else "rolled-back"
            report.reason = f"the node rebooted during the upgrade (phase {entry.phase}); it came up on " + (
                "the target, which had passed its health gate" if verified else "the committed image"
            )
            self._tell(f"{service.name}: {report.reason}")
            with self._step(report, "settle-after-reboot"):
                self.pin(service, declared)
                report.runs = declared
                entry.commit(declared)
                entry.spec_image = str(service.image)
                self.fx.store.save(state)
            self._history_best_effort(report)
        return state

    def _finish_recorded_rollback(self, service: Service, state: State, kind: str, reason: str) -> Report:
        """Roll back the upgrade state.json records as 'rolling-back', judged by the stored guests."""
        entry = state.get(service.name)
        report = self._new_report(service, kind)
        report.source, report.target, report.reason = entry.target, entry.previous, reason
        report.note = reason  # shown as the report's "target:" line
        stored = entry.vms_before
        report.vm_before = VmSnapshot.from_dict(stored) if stored is not None else None
        self._finish_rollback(service, state, report, "rolled-back")
        return report

    def _save_best_effort(self, state: State, report: Report) -> None:
        try:
            self.fx.store.save(state)
        except OSError as exc:
            note = f"; state.json not updated: {describe(exc)}"
            if note not in (report.reason or ""):  # said once, however many writes failed
                report.reason = (report.reason or "") + note

    def _history_best_effort(self, report: Report) -> None:
        try:
            self._history(report)
        except OSError as exc:
            report.reason = f"{report.reason}; history not updated: {describe(exc)}"

    def _history(self, report: Report) -> None:
        import time

        entry = report.as_dict()
        entry["time"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.fx.clock.now()))
        entry["duration_ms"] = sum(s.ms for s in report.steps)
        for key in ("vm_before", "vm_after"):
            entry.pop(key, None)
        self.fx.store.append_history(entry)
