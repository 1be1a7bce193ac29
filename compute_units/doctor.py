"""`compute-units doctor`: is this host ready to run compute-node containers, keep VMs alive, and
upgrade? Every check returns Findings (ok/warn/fail with a fix); `commands/doctor.py` prints them."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from . import host, runner
from .errors import CommandError, ComputeUnitsError
from .model import ServiceSet
from .state import ServiceState, Store
from .systemd import Systemd

SEED_MODULES = ("ebtables",)
SEED_HOST_UNITS = ("libvirtd.service", "libvirtd.socket")
MODULES_LOAD = Path("/etc/modules-load.d/compute-units.conf")


@dataclass(frozen=True)
class Finding:
    check: str
    status: str  # ok, warn, fail
    message: str
    fix: str = ""


def cgroup_layout(mountinfo: str) -> str:
    """'unified' (cgroup v2 only), 'hybrid' (v1 controllers + v2), or 'legacy' (v1 only)."""
    types = {line.split(" - ", 1)[1].split()[0] for line in mountinfo.splitlines() if " - " in line}
    if "cgroup" in types and "cgroup2" in types:
        return "hybrid"
    if "cgroup2" in types:
        return "unified"
    return "legacy" if "cgroup" in types else "none"


def check_modules(modules: list[str], fix: bool) -> list[Finding]:
    findings = []
    for module in modules:
        if host.module_available(module):
            findings.append(Finding(f"module {module}", "ok", "loaded"))
            continue
        if fix:
            try:
                runner.run(["modprobe", module])
                MODULES_LOAD.parent.mkdir(parents=True, exist_ok=True)
                existing = MODULES_LOAD.read_text().split() if MODULES_LOAD.exists() else []
                if module not in existing:
                    with MODULES_LOAD.open("a") as handle:
                        handle.write(f"{module}\n")
                findings.append(
                    Finding(f"module {module}", "ok", f"loaded now and persisted in {MODULES_LOAD}")
                )
                continue
            except (CommandError, OSError) as exc:
                findings.append(
                    Finding(f"module {module}", "fail", f"cannot load: {exc}", f"modprobe {module}")
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


def check_units(systemd: Systemd | None, units: list[str], fix: bool) -> list[Finding]:
    if systemd is None:
        return [Finding("host units", "fail", "systemd is not reachable over D-Bus", "run on a systemd host")]
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
            findings.append(Finding(f"host {unit}", "ok", "stopped and masked now"))
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


def check_machined(systemd: Systemd | None, fix: bool) -> Finding:
    if systemd is None:
        return Finding("systemd-machined", "fail", "systemd is not reachable over D-Bus")
    st = systemd.state("systemd-machined.service")
    if st.active_state == "active":
        return Finding("systemd-machined", "ok", "active")
    if fix and st.load_state == "loaded":
        outcome = systemd.run_jobs("start", ["systemd-machined.service"], timeout=60)[0]
        if outcome.ok:
            return Finding("systemd-machined", "ok", "started now")
    return Finding(
        "systemd-machined",
        "fail",
        f"{st.load_state}/{st.active_state}: without it libvirt cannot give guests their own scopes "
        "and restarting nova-libvirt kills every VM",
        "apt/dnf install systemd-container; systemctl unmask --now systemd-machined",
    )


def check_kvm(path: Path = Path("/dev/kvm")) -> Finding:
    """/dev/kvm must be the KVM character device, and open read-write."""
    import stat as stat_

    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        return Finding(
            str(path),
            "fail",
            "missing: no hardware virtualisation",
            "enable VT-x/AMD-V; load kvm_intel/kvm_amd",
        )
    if not stat_.S_ISCHR(mode):
        return Finding(
            str(path),
            "fail",
            "not a character device: qemu cannot use it",
            f"rm {path}; modprobe kvm_intel (or kvm_amd)",
        )
    try:
        fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
    except OSError as exc:
        return Finding(
            str(path),
            "fail",
            f"cannot open read-write: {exc.strerror}",
            "check permissions and the kvm module",
        )
    os.close(fd)
    return Finding(str(path), "ok", "character device, opens read-write")


def check_tools() -> list[Finding]:
    findings = []
    try:
        data = json.loads(runner.run(["podman", "version", "--format", "json"]).stdout)
        version = data.get("Client", data).get("Version", "?")
        major_minor = tuple(int(x) for x in version.split(".")[:2])
        status = "ok" if major_minor >= (4, 3) else "warn"
        findings.append(
            Finding("podman", status, version, "" if status == "ok" else "podman >= 4.3 is tested")
        )
    except (CommandError, ValueError) as exc:
        findings.append(Finding("podman", "fail", f"not usable: {exc}", "install podman"))
    for tool in ("conmon", "crun"):
        try:
            first = runner.run([tool, "--version"]).stdout.splitlines()[0]
            findings.append(Finding(tool, "ok", first))
        except (CommandError, IndexError) as exc:
            findings.append(Finding(tool, "warn", f"not found: {exc}", f"install {tool}"))
    return findings


Run = Callable[..., runner.Result]


REGISTRY_TIMEOUT = 10.0  # seconds for one manifest request (a black-holed registry never answers)
# podman 4 fetches the manifest, then refuses to show a single image as a list: the registry did serve it
SINGLE_IMAGE = "Treating single images as manifest lists is not implemented"


def pull_references(services: ServiceSet, store: Store | None) -> dict[str, str]:
    """The reference each service's next `upgrade` would pull (its pin is kept, targets.py)."""
    from .state import State, StateError
    from .targets import choose_target

    try:
        state = store.load() if store is not None else State()
    except StateError:
        state = State()  # check_state reports it
    return {s.name: choose_target(s, state.services.get(s.name) or ServiceState(), None)[0] for s in services}


def check_registries(
    services: ServiceSet, run: Run = runner.run, store: Store | None = None, timeout: float = REGISTRY_TIMEOUT
) -> list[Finding]:
    """A real manifest request per registry, made by podman with the TLS/insecure settings it will
    use for the pull (registries.conf), for each image a service would pull; each bounded by `timeout`."""
    by_registry: dict[str, list[str]] = {}
    for reference in sorted(pull_references(services, store).values()):
        registry = reference.split("/", 1)[0] if "/" in reference else ""
        if ("." not in registry and ":" not in registry) or registry == "localhost":
            continue  # not from a registry (a local image)
        if reference not in by_registry.setdefault(registry, []):
            by_registry[registry].append(reference)
    return [_probe_registry(registry, refs, run, timeout) for registry, refs in sorted(by_registry.items())]


def by_digest(reference: str) -> str:
    """REPO@DIGEST for a pinned REPO:TAG@DIGEST (podman refuses a tag and a digest together)."""
    name, at, digest = reference.partition("@")
    if not at:
        return reference
    head, slash, last = name.rpartition("/")
    return f"{head}{slash}{last.split(':', 1)[0]}@{digest}"


def _probe_registry(registry: str, references: list[str], run: Run, timeout: float) -> Finding:
    check = f"registry {registry}"
    for reference in references:
        try:
            result = run(
                ["podman", "manifest", "inspect", by_digest(reference)], check=False, timeout=timeout
            )
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


def check_storage(services: ServiceSet, run: Run = runner.run) -> Finding:
    """Free space in podman's image store against the next image (estimated by the largest now)."""
    try:
        info = json.loads(run(["podman", "info", "--format", "json"], timeout=60).stdout)
        graph_root = str(info["store"]["graphRoot"])
        fs = os.statvfs(graph_root)
        free = fs.f_bavail * fs.f_frsize
    except (CommandError, ValueError, KeyError, OSError) as exc:
        return Finding("container storage", "warn", f"cannot tell free space: {exc}")
    largest = 0
    for s in services:
        result = run(
            ["podman", "image", "inspect", "--format", "{{.Size}}", str(s.image)], check=False, timeout=60
        )
        if result.returncode == 0 and result.stdout.strip().isdigit():
            largest = max(largest, int(result.stdout.strip()))
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


def check_state(store: Store) -> list[Finding]:
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


def check_mounts(services: ServiceSet) -> list[Finding]:
    findings = []
    for s in services:
        for m in s.mounts:
            if not m.create and not Path(str(m.source)).exists():
                findings.append(
                    Finding(
                        f"mount {m.source}",
                        "fail",
                        f"missing: {s.name} cannot start",
                        f"mkdir -p {m.source} (or create: true in the spec)",
                    )
                )
    return findings


def run_checks(services: ServiceSet, *, fix: bool, store: Store, run: Run = runner.run) -> list[Finding]:
    modules = sorted({*SEED_MODULES, *(m for s in services for m in s.preflight.kernel_modules)})
    units = sorted({*SEED_HOST_UNITS, *(u for s in services for u in s.preflight.host_units_inactive)})
    paths = sorted({str(p) for s in services for p in s.preflight.paths})
    layout = cgroup_layout(Path("/proc/self/mountinfo").read_text())
    findings = check_modules(modules, fix)
    try:
        with Systemd.connect() as systemd:
            findings += check_units(systemd, units, fix)
            findings.append(check_machined(systemd, fix))
            findings += check_running(systemd, services, store)
    except ComputeUnitsError as exc:
        findings.append(Finding("systemd", "fail", exc.message, exc.hint or ""))
    findings.append(check_kvm())
    findings.append(
        Finding("cgroups", "ok" if layout in ("unified", "hybrid") else "warn", f"{layout} layout")
    )
    findings += [
        Finding(
            f"path {p}", "ok" if Path(p).exists() else "fail", "exists" if Path(p).exists() else "missing"
        )
        for p in paths
        if p != "/dev/kvm"
    ]
    findings += check_mounts(services)
    findings += check_tools()
    findings.append(check_storage(services, run))
    findings += check_registries(services, run, store)
    findings += check_state(store)
    return findings


def check_running(systemd: Systemd, services: ServiceSet, store: Store) -> list[Finding]:
    """Every managed unit that has a recorded digest runs it."""
    from .commands.lifecycle import collect_status
    from .state import StateError

    try:
        state = store.load()
    except StateError:
        return []  # check_state reports it
    rows = collect_status(systemd, list(services), state)
    return [
        Finding(f"service {r.service}", "fail", r.problem, f"compute-units status {r.service}")
        for r in rows
        if r.problem and not r.problem.startswith("unfinished")
    ]


def repair_state(store: Store, services: ServiceSet) -> list[Finding]:
    """A state.json that cannot be read is moved aside and rebuilt: each service pinned to what its
    container runs now (unpinned when none runs). Nothing is done to a readable state."""
    import time

    from . import podman
    from .state import State, StateError

    try:
        store.load()
        return []
    except StateError as exc:
        problem = exc.message
    state = State()
    for s in services:
        reference = podman.running_reference(s.unit)
        if reference:
            entry = state.get(s.name)
            entry.current, entry.spec_image = reference, str(s.image)
    aside = store.state_path.with_name(f"state.json.broken-{time.strftime('%Y%m%dT%H%M%S')}")
    try:
        store.state_path.rename(aside)
        store.save(state)
    except OSError as exc:
        return [Finding("upgrade state", "fail", f"cannot rebuild: {exc.strerror}", "free space in /var/lib")]
    pinned = ", ".join(f"{n} {e.current}" for n, e in sorted(state.services.items())) or "nothing running"
    return [
        Finding(
            "upgrade state",
            "ok",
            f"rebuilt from what runs ({pinned}); was: {problem}; old file kept as {aside}",
        )
    ]
