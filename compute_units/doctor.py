"""`compute-units doctor`: is this host ready to run compute-node containers, keep VMs alive, and
upgrade? Every check returns Findings (ok/warn/fail with a fix); `commands/doctor.py` prints them.

Every check asks the host through the injected `effects.Effects` bundle (systemd, podman, host,
state store), so each ok/fail message is unit-tested with fakes (tests/unit/test_doctor.py);
`real_effects` opens the real bundle and the sandbox-node tests prove it end to end.
"""

from __future__ import annotations

import stat as stat_
import time
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

from . import effects, host
from .effects import Effects, StateStore, SystemdApi
from .errors import CommandError, ComputeUnitsError
from .host import MODULES_LOAD
from .model import ServiceSet
from .systemd import JobOutcome, Machine, Systemd, UnitState
from .vms import NO_CONTROLLERS

SEED_MODULES = ("ebtables",)
SEED_HOST_UNITS = ("libvirtd.service", "libvirtd.socket")

__all__ = ["MODULES_LOAD", "Finding", "real_effects", "repair_state", "run_checks"]


@dataclass(frozen=True)
class Finding:
    check: str
    status: str  # ok, warn, fail
    message: str
    fix: str = ""
    fixed: bool = False  # doctor --fix repaired it in this run


class Unreachable:
    """systemd as doctor sees it when D-Bus does not answer: every question raises why, which
    `run_checks` reports as its `systemd` finding (the other checks still run)."""

    def __init__(self, error: ComputeUnitsError) -> None:
        self.error = error

    def _fail(self) -> ComputeUnitsError:
        return self.error

    def state(self, unit: str) -> UnitState:
        raise self._fail()

    def reload(self) -> None:
        raise self._fail()

    def run_jobs(
        self, verb: str, units: Sequence[str], *, timeout: float = 300.0, settle: float = 0.0
    ) -> list[JobOutcome]:
        raise self._fail()

    def settle(self, outcomes: Sequence[JobOutcome], seconds: float) -> list[JobOutcome]:
        raise self._fail()

    def mask(self, units: Sequence[str]) -> None:
        raise self._fail()

    def fragment_path(self, unit: str) -> str:
        raise self._fail()

    def kill_signal(self, unit: str) -> int:
        raise self._fail()

    def machines(self) -> list[Machine]:
        raise self._fail()

    def load_error(self, unit: str) -> str:
        raise self._fail()


@contextmanager
def real_effects(store: StateStore) -> Iterator[Effects]:
    """The production bundle; a systemd that cannot be reached becomes `Unreachable`."""
    from .jobs import UNIT_DIR

    with ExitStack() as stack:
        try:
            systemd: SystemdApi = stack.enter_context(Systemd.connect())
        except ComputeUnitsError as exc:
            systemd = Unreachable(exc)
        yield effects.real(systemd, store, UNIT_DIR)


def cgroup_layout(mountinfo: str) -> str:
    """'unified' (cgroup v2 only), 'hybrid' (v1 controllers + v2), or 'legacy' (v1 only)."""
    types = {line.split(" - ", 1)[1].split()[0] for line in mountinfo.splitlines() if " - " in line}
    if "cgroup" in types and "cgroup2" in types:
        return "hybrid"
    if "cgroup2" in types:
        return "unified"
    return "legacy" if "cgroup" in types else "none"


def check_modules(fx: Effects, modules: list[str], fix: bool) -> list[Finding]:
    findings = []
    for module in modules:
        if fx.host.module_available(module):
            findings.append(Finding(f"module {module}", "ok", "loaded"))
            continue
        if fix:
            try:
                persisted = fx.host.load_module(module)
            except (CommandError, OSError) as exc:
                findings.append(
                    Finding(f"module {module}", "fail", f"cannot load: {exc}", f"modprobe {module}")
                )
                continue
            findings.append(
                Finding(f"module {module}", "ok", f"loaded now and persisted in {persisted}", fixed=True)
            )
            continue
        findings.append(
            Finding(
                f"module {module}",
                "fail",
                "not loaded: nova-network's bridges need it (the seed's host requirement)",
                f"modprobe {module} && echo {module} >> {MODULES_LOAD} (or doctor --fix)",
            )
        )
    return findings


def check_units(systemd: SystemdApi, units: list[str], fix: bool) -> list[Finding]:
    findings = []
    for unit in units:
        st = systemd.state(unit)
        if st.load_state in ("not-found", "masked") or st.active_state in ("inactive", "failed"):
            findings.append(Finding(f"host {unit}", "ok", f"{st.load_state}, {st.active_state}"))
            continue
        if fix:
            try:
                systemd.run_jobs("stop", [unit], timeout=60)
                systemd.mask([unit])
            except ComputeUnitsError as exc:
                findings.append(
                    Finding(f"host {unit}", "fail", f"--fix failed: {exc.message}", f"systemctl mask {unit}")
                )
                continue
            findings.append(Finding(f"host {unit}", "ok", "stopped and masked now", fixed=True))
            continue
        findings.append(
            Finding(
                f"host {unit}",
                "fail",
                f"{st.active_state} on the host: the host's libvirt would fight the containerised one",
                f"systemctl disable --now {unit} && systemctl mask {unit} (or doctor --fix)",
            )
        )
    return findings


def check_machined(systemd: SystemdApi, fix: bool) -> Finding:
    st = systemd.state("systemd-machined.service")
    if st.active_state == "active":
        return Finding("systemd-machined", "ok", "active")
    if fix and st.load_state == "loaded":
        outcome = systemd.run_jobs("start", ["systemd-machined.service"], timeout=60)[0]
        if outcome.ok:
            return Finding("systemd-machined", "ok", "started now", fixed=True)
    return Finding(
        "systemd-machined",
        "fail",
        f"{st.load_state}/{st.active_state}: without it libvirt cannot give guests their own scopes "
        "and restarting nova-libvirt kills every VM",
        "apt/dnf install systemd-container; systemctl unmask --now systemd-machined",
    )


def check_kvm(fx: Effects, path: str = "/dev/kvm") -> Finding:
    """/dev/kvm must be the KVM character device, and open read-write."""
    mode = fx.host.device_mode(path)
    if mode is None:
        return Finding(
            path,
            "fail",
            "missing: no hardware virtualisation",
            "enable VT-x/AMD-V; load kvm_intel/kvm_amd",
        )
    if not stat_.S_ISCHR(mode):
        return Finding(
            path,
            "fail",
            "not a character device: qemu cannot use it",
            f"rm {path}; modprobe kvm_intel (or kvm_amd)",
        )
    try:
        fx.host.open_rw(path)
    except OSError as exc:
        return Finding(
            path,
            "fail",
            f"cannot open read-write: {exc.strerror}",
            "check permissions and the kvm module",
        )
    return Finding(path, "ok", "character device, opens read-write")


def check_tools(fx: Effects) -> list[Finding]:
    findings = []
    try:
        version = fx.podman.version()
        major_minor = tuple(int(x) for x in version.split(".")[:2])
        status = "ok" if major_minor >= (4, 3) else "warn"
        findings.append(
            Finding("podman", status, version, "" if status == "ok" else "podman >= 4.3 is tested")
        )
    except (CommandError, ValueError) as exc:
        findings.append(Finding("podman", "fail", f"not usable: {exc}", "install podman"))
    for tool in ("conmon", "crun"):
        try:
            findings.append(Finding(tool, "ok", fx.host.tool_version(tool)))
        except (CommandError, IndexError) as exc:
            findings.append(Finding(tool, "warn", f"not found: {exc}", f"install {tool}"))
    return findings


REGISTRY_TIMEOUT = 10.0  # seconds for one manifest request (a black-holed registry never answers)
# podman 4 fetches the manifest, then refuses to show a single image as a list: the registry did serve it
SINGLE_IMAGE = "Treating single images as manifest lists is not implemented"


def pull_references(services: ServiceSet, store: StateStore) -> dict[str, str]:
    """The reference each service's next `upgrade` would pull (its pin is kept, targets.py)."""
    from .state import ServiceState, State, StateError
    from .targets import choose_target

    try:
        state = store.load()
    except StateError:
        state = State()  # check_state reports it
    return {s.name: choose_target(s, state.services.get(s.name) or ServiceState(), None)[0] for s in services}


def check_registries(fx: Effects, services: ServiceSet, timeout: float = REGISTRY_TIMEOUT) -> list[Finding]:
    """A real manifest request per registry, made by podman with the TLS/insecure settings it will
    use for the pull (registries.conf), for each image a service would pull; each bounded by `timeout`."""
    by_registry: dict[str, list[str]] = {}
    for reference in sorted(pull_references(services, fx.store).values()):
        registry = reference.split("/", 1)[0] if "/" in reference else ""
        if ("." not in registry and ":" not in registry) or registry == "localhost":
            continue  # not from a registry (a local image)
        if reference not in by_registry.setdefault(registry, []):
            by_registry[registry].append(reference)
    return [_probe_registry(fx, registry, refs, timeout) for registry, refs in sorted(by_registry.items())]


def by_digest(reference: str) -> str:
    """REPO@DIGEST for a pinned REPO:TAG@DIGEST (podman refuses a tag and a digest together)."""
    name, at, digest = reference.partition("@")
    if not at:
        return reference
    head, slash, last = name.rpartition("/")
    return f"{head}{slash}{last.split(':', 1)[0]}@{digest}"


def _probe_registry(fx: Effects, registry: str, references: list[str], timeout: float) -> Finding:
    check = f"registry {registry}"
    for reference in references:
        try:
            result = fx.podman.manifest_inspect(by_digest(reference), timeout=timeout)
        except CommandError as exc:
            if exc.returncode != 124:
                return Finding(check, "fail", f"cannot run podman: {exc.message}", "check podman")
            return Finding(
                check,
                "fail",
                f"no answer within {timeout:g} s for the manifest of {reference}: the pull would hang",
                "check the registry (it accepts connections but does not answer), network, proxies",
            )
        text = " ".join((result.stderr or "").split())
        if result.returncode == 0 or SINGLE_IMAGE in text:
            continue
        if "HTTP response to HTTPS client" in text:
            return Finding(
                check,
                "fail",
                "speaks plain HTTP but podman would use TLS: the pull would fail",
                f'add [[registry]] location="{registry}" insecure=true to /etc/containers/registries.conf.d/',
            )
        if "manifest unknown" in text:
            return Finding(
                check,
                "fail",
                f"has no manifest for {reference}: the pull would fail",
                "push the image, or fix the image in the spec (or the pin: compute-units upgrade NAME --image)",
            )
        detail = text[-300:] or f"exit status {result.returncode}"
        return Finding(check, "fail", f"unreachable: {detail}", "check network, DNS, registries.conf")
    return Finding(check, "ok", "serves the manifest of " + ", ".join(references))


def check_storage(fx: Effects, services: ServiceSet) -> Finding:
    """Free space in podman's image store against the next image (estimated by the largest now)."""
    try:
        graph_root = fx.podman.graph_root()
        free = fx.host.free_bytes(graph_root)
    except (CommandError, ValueError, KeyError, OSError) as exc:
        return Finding("container storage", "warn", f"cannot tell free space: {exc}")
    largest = max([0, *(size for s in services if (size := fx.podman.image_size(str(s.image))))])
    need = max(largest, 256 << 20)
    shown = f"{free >> 20} MiB free in {graph_root}; the largest image here is {largest >> 20} MiB"
    if free < need:
        return Finding(
            "container storage",
            "fail",
            f"{shown}: the next pull would not fit",
            "podman image prune; grow the filesystem",
        )
    if free < 2 * need:
        return Finding("container storage", "warn", shown, "podman image prune")
    return Finding("container storage", "ok", shown)


def check_state(store: StateStore) -> list[Finding]:
    """state.json and history.jsonl well-formed; no upgrade left unfinished."""
    from .state import StateError

    try:
        state = store.load()
    except StateError as exc:
        return [
            Finding(
                "upgrade state",
                "fail",
                exc.message,
                "compute-units doctor --fix (rebuilds it from what runs)",
            )
        ]
    findings = [Finding("upgrade state", "ok", f"{store.state_path}: well-formed")]
    bad = store.history_problems()
    if bad:
        findings.append(
            Finding("upgrade history", "warn", f"{bad} unreadable line(s) in {store.history_path} skipped")
        )
    for name, entry in sorted(state.services.items()):
        if entry.unfinished:
            findings.append(
                Finding(
                    f"upgrade of {name}",
                    "fail",
                    f"unfinished: phase {entry.phase}, target {entry.target}",
                    f"compute-units upgrade {name} (resumes, then commits or rolls back)",
                )
            )
    return findings


def check_mounts(fx: Effects, services: ServiceSet) -> list[Finding]:
    findings = []
    for s in services:
        for m in s.mounts:
            if not m.create and not fx.host.exists(str(m.source)):
                findings.append(
                    Finding(
                        f"mount {m.source}",
                        "fail",
                        f"missing: {s.name} cannot start",
                        f"mkdir -p {m.source} (or create: true in the spec)",
                    )
                )
    return findings


def check_paths(fx: Effects, paths: list[str]) -> list[Finding]:
    found = {p: fx.host.exists(p) for p in paths if p != "/dev/kvm"}
    return [
        Finding(f"path {p}", "ok" if ok else "fail", "exists" if ok else "missing") for p, ok in found.items()
    ]


def check_disruptive(services: ServiceSet) -> list[Finding]:
    """Not a fault: says which services restart, upgrade and apply leave alone without consent."""
    return [
        Finding(
            f"disruptive {s.name}",
            "ok",
            f"{s.disruptive}: restart, upgrade and apply refuse to restart it without --allow-disruptive",
        )
        for s in services
        if s.disruptive is not None
    ]


def check_guest_scopes(
    services: ServiceSet, controllers: list[str] | None, qemu: list[host.Process]
) -> list[Finding]:
    """Guests live in machine scopes, out of every unit's cgroup, or a restart of libvirt kills them.

    Checked on the evidence (where each qemu runs now, on either layout) and on the one cause this
    host can have: a cgroup2 without controllers, where libvirt never asks machined for a scope.
    """
    if not any(s.keeps_vms for s in services):
        return []
    findings = []
    if controllers == []:
        findings.append(
            Finding(
                "guest scopes",
                "fail",
                f"{NO_CONTROLLERS} (/sys/fs/cgroup/cgroup.controllers is empty): guests started now "
                "stay in the libvirt unit's cgroup and die when it restarts",
                "give this host's cgroup2 its controllers (a container or nested host: delegate them)",
            )
        )
    for p in qemu:
        if not host.machine_scoped(p):
            findings.append(
                Finding(
                    f"guest PID {p.pid}",
                    "fail",
                    f"{p.comm} runs in {p.cgroup}, not in a machine scope: it dies with that unit",
                    "let libvirt reach systemd-machined (mount /run/dbus/system_bus_socket; on cgroup2 it needs controllers too), then stop and start this guest",
                )
            )
    if not findings:
        findings.append(Finding("guest scopes", "ok", f"{len(qemu)} qemu running, each in a machine scope"))
    return findings


def check_running(fx: Effects, services: ServiceSet) -> list[Finding]:
    """Every managed unit that has a recorded digest runs it."""
    from .commands.lifecycle import collect_status
    from .state import StateError

    try:
        state = fx.store.load()
    except StateError:
        return []  # check_state reports it
    rows = collect_status(fx.systemd, fx.podman, list(services), state)
    return [
        Finding(f"service {r.service}", "fail", r.problem, f"compute-units status {r.service}")
        for r in rows
        if r.problem and not r.problem.startswith("unfinished")
    ]


def run_checks(fx: Effects, services: ServiceSet, *, fix: bool) -> list[Finding]:
    modules = sorted({*SEED_MODULES, *(m for s in services for m in s.preflight.kernel_modules)})
    units = sorted({*SEED_HOST_UNITS, *(u for s in services for u in s.preflight.host_units_inactive)})
    paths = sorted({str(p) for s in services for p in s.preflight.paths})
    layout = cgroup_layout(fx.host.mountinfo())
    findings = check_modules(fx, modules, fix)
    try:
        findings += check_units(fx.systemd, units, fix)
        findings.append(check_machined(fx.systemd, fix))
        findings += check_running(fx, services)
        findings += check_secrets(fx.systemd, services)
    except ComputeUnitsError as exc:
        findings.append(Finding("systemd", "fail", exc.message, exc.hint or ""))
    findings.append(check_kvm(fx))
    findings.append(
        Finding("cgroups", "ok" if layout in ("unified", "hybrid") else "warn", f"{layout} layout")
    )
    findings += check_paths(fx, paths)
    findings += check_guest_scopes(services, fx.host.cgroup2_controllers(), fx.host.qemu_processes())
    findings += check_mounts(fx, services)
    findings += check_disruptive(services)
    findings += check_tools(fx)
    findings.append(check_storage(fx, services))
    findings += check_registries(fx, services)
    findings += check_state(fx.store)
    return findings


def check_secrets(systemd: SystemdApi, services: ServiceSet, root: Path = Path("/")) -> list[Finding]:
    """podman's version, and that each unit with secrets passes them the way this podman needs."""
    from . import facts
    from .commands.lifecycle import unit_secrets_mode
    from .secretplan import mode_for

    with_secrets = [s for s in services if s.secrets]
    if not with_secrets:
        return []
    version = facts.Recorder(root).podman_version()
    if version is None:
        return [Finding("secrets", "fail", f"podman not found at {facts.PODMAN}", "install podman")]
    shown = ".".join(map(str, version))
    wanted = mode_for(version)
    findings = [Finding("secrets", "ok", f"podman {shown}: {wanted} secrets")]
    for s in with_secrets:
        mode = unit_secrets_mode(systemd, s.unit)
        if mode == wanted:
            findings.append(Finding(f"secrets {s.name}", "ok", f"unit passes them {mode}"))
        else:
            found = f"unit passes them {mode}" if mode else "unit not generated (or has no secrets marker)"
            findings.append(
                Finding(
                    f"secrets {s.name}",
                    "warn",
                    f"{found}; podman {shown} needs {wanted}",
                    "compute-units apply",
                )
            )
    return findings


def repair_state(fx: Effects, services: ServiceSet) -> list[Finding]:
    """A state.json that cannot be read is moved aside and rebuilt: each service pinned to what its
    container runs now (unpinned when none runs). Nothing is done to a readable state."""
    from .state import State, StateError

    try:
        fx.store.load()
        return []
    except StateError as exc:
        problem = exc.message
    state = State()
    for s in services:
        reference = fx.podman.running_reference(s.unit)
        if reference:
            entry = state.get(s.name)
            entry.current, entry.spec_image = reference, str(s.image)
    stamp = time.strftime("%Y%m%dT%H%M%S", time.localtime(fx.clock.now()))
    try:
        aside = fx.store.set_aside(f"state.json.broken-{stamp}")
        fx.store.save(state)
    except OSError as exc:
        return [Finding("upgrade state", "fail", f"cannot rebuild: {exc.strerror}", "free space in /var/lib")]
    pinned = ", ".join(f"{n} {e.current}" for n, e in sorted(state.services.items())) or "nothing running"
    return [
        Finding(
            "upgrade state",
            "ok",
            f"rebuilt from what runs ({pinned}); was: {problem}; old file kept as {aside}",
            fixed=True,
        )
    ]
