"""The upgrade's preflight: what must hold on the host before a service restarts, and for a
service that keeps VMs, that the restart cannot take its guests with it. Effects come in through
`effects.Effects`; nothing is changed here."""

from __future__ import annotations

from . import vms
from .effects import Effects
from .errors import ComputeUnitsError, ExitCode
from .host import in_cgroup
from .model import Service, ServiceSet
from .vms import NO_CONTROLLERS, VmSnapshot

SIGKILL = 9


class PreflightRefused(ComputeUnitsError):
    exit_code = ExitCode.NOT_READY


def vm_holder(services: ServiceSet, service: Service) -> Service | None:
    """The service whose guests a restart of `service` puts at risk: itself when it keeps VMs, or
    else a dependent restarted with it that does (nova-virtqemud when nova-virtlogd is upgraded)."""
    return next((s for s in [service, *services.dependents(service.name)] if s.keeps_vms), None)


def check(fx: Effects, service: Service, holder: Service | None) -> VmSnapshot:
    """What must hold before a restart; the guests' snapshot, taken in `holder` (vm_holder), or
    empty when no restarted service keeps VMs."""
    problems = []
    for module in service.preflight.kernel_modules:
        if not fx.host.module_available(module):
            problems.append(f"kernel module {module} is not loaded (modprobe {module})")
    for unit in service.preflight.host_units_inactive:
        st = fx.systemd.state(unit)
        if st.active_state not in ("inactive", "failed") and st.load_state != "not-found":
            problems.append(f"{unit} is {st.active_state} on the host (systemctl disable --now {unit})")
    for path in service.preflight.paths:
        if not fx.host.exists(str(path)):
            problems.append(f"{path} does not exist")
    snapshot = VmSnapshot()
    if holder is not None:
        problems += _vm_safety(fx, holder)
        snapshot = vms.snapshot(fx, holder)
    if problems:
        raise PreflightRefused(
            f"{service.name}: refusing to restart: " + "; ".join(problems) + "; nothing was changed"
        )
    return snapshot


def _vm_safety(fx: Effects, service: Service) -> list[str]:
    problems = []
    machined = fx.systemd.state("systemd-machined.service")
    if machined.active_state != "active":
        problems.append(
            "systemd-machined is not active: libvirt could not keep guests in their own scopes "
            "and a restart would kill them (systemctl unmask --now systemd-machined)"
        )
    st = fx.systemd.state(service.unit)
    if st.active_state == "active":
        inside = [p for p in fx.host.qemu_processes() if in_cgroup(p, st.control_group)]
        if inside:
            cause = ""
            if fx.host.cgroup2_controllers() == []:
                cause = f" ({NO_CONTROLLERS}: compute-units doctor)"
            problems.append(
                f"qemu PID {', '.join(str(p.pid) for p in inside)} is inside {service.unit}'s cgroup "
                f"and would be killed with it{cause}"
            )
        if fx.systemd.kill_signal(service.unit) != SIGKILL:
            problems.append(
                f"{service.unit} is loaded with KillSignal other than SIGKILL: conmon would wait for "
                "qemu and the stop would time out (regenerate the unit and daemon-reload)"
            )
    return problems
