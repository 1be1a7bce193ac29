"""`compute-units doctor`: is this host ready to run compute-node containers and keep VMs alive?"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from . import host, runner
from .cli import JsonOpt, RootOpt, SpecOpt, app, emit_json, make_context, out, reporting
from .errors import CommandError, ComputeUnitsError
from .jobs import require_root
from .model import ServiceSet
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


def check_kvm() -> Finding:
    if not Path("/dev/kvm").exists():
        return Finding(
            "/dev/kvm",
            "fail",
            "missing: no hardware virtualisation",
            "enable VT-x/AMD-V; load kvm_intel/kvm_amd",
        )
    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        return Finding("/dev/kvm", "warn", "not read-write for this user")
    return Finding("/dev/kvm", "ok", "present")


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


def check_registries(services: ServiceSet) -> list[Finding]:
    import urllib.error
    import urllib.request

    findings = []
    remote = {s.image.registry for s in services if s.image.registry and s.image.registry != "localhost"}
    for registry in sorted(remote):
        ok_url = None
        problem = ""
        for scheme in ("https", "http"):
            url = f"{scheme}://{registry}/v2/"
            try:
                with urllib.request.urlopen(url, timeout=5):
                    ok_url = url
            except urllib.error.HTTPError as exc:
                if exc.code == 401:  # answers, wants a login: reachable
                    ok_url = url
                else:
                    problem = f"HTTP {exc.code}"
            except (urllib.error.URLError, OSError) as exc:
                problem = str(getattr(exc, "reason", exc))
            if ok_url:
                break
        if ok_url:
            findings.append(Finding(f"registry {registry}", "ok", f"answers at {ok_url}"))
        else:
            findings.append(
                Finding(
                    f"registry {registry}",
                    "fail",
                    f"unreachable: {problem}",
                    "check network, DNS, registries.conf",
                )
            )
    return findings


def run_checks(services: ServiceSet, *, fix: bool) -> list[Finding]:
    modules = sorted({*SEED_MODULES, *(m for s in services for m in s.preflight.kernel_modules)})
    units = sorted({*SEED_HOST_UNITS, *(u for s in services for u in s.preflight.host_units_inactive)})
    paths = sorted({str(p) for s in services for p in s.preflight.paths})
    layout = cgroup_layout(Path("/proc/self/mountinfo").read_text())
    findings = check_modules(modules, fix)
    try:
        with Systemd.connect() as systemd:
            findings += check_units(systemd, units, fix)
            findings.append(check_machined(systemd, fix))
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
    findings += check_tools()
    findings += check_registries(services)
    return findings


@app.command()
def doctor(
    specs: SpecOpt = None,
    root: RootOpt = Path("/"),
    fix: Annotated[
        bool,
        typer.Option("--fix", help="Load modules (and persist), stop+mask host libvirt, start machined."),
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Check the host: kernel modules, host libvirt, /dev/kvm, machined, cgroups, tools, registries.

    Exit 0 when nothing fails (warnings allowed), 3 when the host is not ready.
    """
    with reporting(as_json):
        services, _ = make_context(specs, root, None).load()
        if fix:
            require_root("doctor --fix")
        findings = run_checks(services, fix=fix)
        if as_json:
            emit_json(
                {"ok": all(f.status != "fail" for f in findings), "findings": [asdict(f) for f in findings]}
            )
        else:
            table = Table("", "check", "result", "how to fix", box=None)
            marks = {"ok": "ok", "warn": "WARN", "fail": "FAIL"}
            for f in findings:
                table.add_row(marks[f.status], f.check, f.message, f.fix or "")
            out.print(table)
        if any(f.status == "fail" for f in findings):
            raise typer.Exit(3)
