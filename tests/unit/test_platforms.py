"""Facts that differ between Debian 12-like hosts (hybrid cgroups, systemd 252) and Debian 13 / RHEL
10-like ones (cgroup2 only, systemd 257): where a process is, whether guests get machine scopes."""

from __future__ import annotations

from pathlib import Path

import pytest

from compute_units import host, spec
from compute_units.doctor import Finding, check_guest_scopes
from compute_units.host import Process
from compute_units.model import ServiceSet

HYBRID_QEMU = """\
12:pids:/machine.slice/machine-qemu\\x2d1\\x2dtiny.scope
9:name=systemd:/machine.slice/machine-qemu\\x2d1\\x2dtiny.scope
1:cpu:/machine.slice/machine-qemu\\x2d1\\x2dtiny.scope/emulator
0::/machine.slice/machine-qemu\\x2d1\\x2dtiny.scope
"""
UNIFIED_QEMU = "0::/machine.slice/machine-qemu\\x2d1\\x2dtiny.scope/libvirt\n"
# libvirt on a cgroup2 without controllers: qemu stays in libvirtd's container, inside the unit
UNIFIED_STRANDED = "0::/system.slice/nova-libvirt.service/libpod-payload-0123abcd\n"


# a process in a cgroup2-only node (or container) on a hybrid kernel: the kernel still lists the
# v1 hierarchies, at the namespace's root or above it; the node's systemd uses the unified one
UNIFIED_ON_HYBRID_KERNEL = """\
9:name=systemd:/..
8:pids:/..
0::/system.slice/nova-libvirt.service/libpod-payload-0123abcd
"""


def test_the_unified_path_counts_on_a_cgroup2_host_even_with_v1_lines() -> None:
    path = "/system.slice/nova-libvirt.service/libpod-payload-0123abcd"
    assert host.systemd_cgroup(UNIFIED_ON_HYBRID_KERNEL, unified=True) == path
    assert host.systemd_cgroup(UNIFIED_ON_HYBRID_KERNEL, unified=False) == "/.."
    assert host.systemd_cgroup(HYBRID_QEMU, unified=False) == (
        "/machine.slice/machine-qemu\\x2d1\\x2dtiny.scope"
    )


@pytest.mark.parametrize(
    ("text", "path", "scoped"),
    [
        (HYBRID_QEMU, "/machine.slice/machine-qemu\\x2d1\\x2dtiny.scope", True),
        (UNIFIED_QEMU, "/machine.slice/machine-qemu\\x2d1\\x2dtiny.scope/libvirt", True),
        (UNIFIED_STRANDED, "/system.slice/nova-libvirt.service/libpod-payload-0123abcd", False),
        # a hybrid host where libvirt used the v1 controllers without machined
        (
            "9:name=systemd:/system.slice/nova-libvirt.service\n1:cpu:/machine/qemu-1-tiny\n0::/\n",
            "/system.slice/nova-libvirt.service",
            False,
        ),
        # a custom resource partition (<resource><partition>/machine/gold)
        (
            "0::/machine.slice/machine-gold.slice/machine-qemu\\x2d2\\x2dbig.scope/libvirt\n",
            "/machine.slice/machine-gold.slice/machine-qemu\\x2d2\\x2dbig.scope/libvirt",
            True,
        ),
        # a unit that merely carries the name is no machine scope
        ("0::/system.slice/machine-qemu.scope\n", "/system.slice/machine-qemu.scope", False),
    ],
)
def test_a_process_cgroup_on_both_layouts(text: str, path: str, scoped: bool) -> None:
    unified = not any(":name=systemd:" in line for line in text.splitlines())
    assert host.systemd_cgroup(text, unified) == path
    assert host.machine_scoped(Process(7, "qemu-system-x86", path, 1)) is scoped


def test_cgroup2_controllers(tmp_path: Path) -> None:
    assert host.cgroup2_controllers(tmp_path) is None  # hybrid: /sys/fs/cgroup is a tmpfs
    assert host.unified_layout(tmp_path) is False
    (tmp_path / "cgroup.controllers").write_text("cpuset cpu io memory pids\n")
    assert host.cgroup2_controllers(tmp_path) == ["cpuset", "cpu", "io", "memory", "pids"]
    (tmp_path / "cgroup.controllers").write_text("\n")
    assert host.cgroup2_controllers(tmp_path) == []
    assert host.unified_layout(tmp_path) is True


def services(keeps_vms: bool) -> ServiceSet:
    text = f"""
image: 127.0.0.1:5000/compute/nova-libvirt:1
host_namespaces: [pid, network, cgroup]
mounts: [/sys/fs/cgroup:/sys/fs/cgroup]
keeps_vms: {"true" if keeps_vms else "false"}
"""
    parsed, problems = spec.parse_text(text, Path("/specs/nova-libvirt.yaml"))
    assert parsed is not None, problems
    return ServiceSet((parsed,))


SCOPED = Process(41, "qemu-system-x86", "/machine.slice/machine-qemu\\x2d1\\x2dtiny.scope/libvirt", 1)
STRANDED = Process(42, "qemu-system-x86", "/system.slice/nova-libvirt.service/libpod-payload-0123", 1)


def test_guest_scopes_ok_on_both_layouts() -> None:
    ok = [Finding("guest scopes", "ok", "1 qemu running, each in a machine scope")]
    assert check_guest_scopes(services(True), None, [SCOPED]) == ok
    assert check_guest_scopes(services(True), ["cpu", "memory", "pids"], [SCOPED]) == ok
    assert check_guest_scopes(services(False), [], [STRANDED]) == []  # no service keeps VMs


def test_guest_scopes_fail_on_cgroup2_without_controllers_and_for_each_stranded_guest() -> None:
    assert check_guest_scopes(services(True), [], [SCOPED, STRANDED]) == [
        Finding(
            "guest scopes",
            "fail",
            "this host's cgroup2 offers no controllers, so libvirt gives guests no machine scope "
            "(/sys/fs/cgroup/cgroup.controllers is empty): guests started now stay in the libvirt "
            "unit's cgroup and die when it restarts",
            "give this host's cgroup2 its controllers (a container or nested host: delegate them)",
        ),
        Finding(
            "guest PID 42",
            "fail",
            "qemu-system-x86 runs in /system.slice/nova-libvirt.service/libpod-payload-0123, not in a "
            "machine scope: it dies with that unit",
            "let libvirt reach systemd-machined (mount /run/dbus/system_bus_socket; on cgroup2 it needs controllers too), then stop and start this guest",
        ),
    ]
