"""The reason the project exists: upgrade containerised libvirt while a real KVM guest keeps running.

libvirtd + qemu run in a container with the seed's flags; the guest is a tiny multiboot kernel
booted through libvirt. A QMP client polls the guest every 20 ms from the host during upgrades.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from compute_units.host import systemd_cgroup
from compute_units_dev.images import Builder, Registry
from compute_units_dev.libvirt import (
    Guest,
    LibvirtImages,
    QmpPoller,
    clear_run_libvirt,
    libvirt_images,
    start_guest,
)
from compute_units_dev.node import Node
from compute_units_dev.specs import compute_spec, libvirt_spec
from tests.harness.fixtures import Image, cu
from tests.harness.reports import upgraded_keeping_the_guest


@pytest.fixture(scope="module")
def libvirt(builder: Builder, registry: Registry) -> LibvirtImages:
    return libvirt_images(builder, registry)


@pytest.fixture(scope="module")
def deployed(node: Node, libvirt: LibvirtImages, svc_images: dict[str, Image]) -> Iterator[Guest]:
    clear_run_libvirt(node)
    node.write_file("/etc/compute-units/services/nova-libvirt.yaml", libvirt_spec(libvirt.references["v1"]))
    node.write_file("/etc/compute-units/services/nova-compute.yaml", compute_spec(svc_images["v1"].reference))
    applied = cu(node, "apply")
    assert applied.returncode == 0, applied.stderr
    guest = start_guest(node, "nova-libvirt")
    yield guest
    guest.destroy()
    cu(node, "stop")
    node.run(["sh", "-c", "rm -rf /etc/compute-units/services/*.yaml /var/lib/compute-units"])
    assert cu(node, "generate").returncode in (0, 2)
    node.systemctl("daemon-reload")
    node.systemctl("reset-failed", check=False)
    clear_run_libvirt(node)


def running_digest(node: Node, name: str) -> str:
    image = node.run(["podman", "inspect", name, "--format", "{{.Image}}"]).stdout.strip()
    return node.run(["podman", "image", "inspect", image, "--format", "{{.Digest}}"]).stdout.strip()


def state(node: Node) -> dict[str, object]:
    data: dict[str, object] = json.loads(node.read_file("/var/lib/compute-units/state.json"))
    return data


def test_guest_runs_in_its_own_machine_scope(node: Node, deployed: Guest) -> None:
    pid = deployed.qemu_pid()
    cgroup = node.read_file(f"/proc/{pid}/cgroup")
    assert "machine.slice/machine-qemu" in cgroup
    assert "nova-libvirt.service" not in cgroup
    assert deployed.running_in_libvirt()
    machines = node.run(["machinectl", "list", "--no-legend"]).stdout.split()
    assert "qemu-1-tiny" in machines


def test_upgrade_v1_to_v2_keeps_the_guest_running(
    node: Node, deployed: Guest, libvirt: LibvirtImages
) -> None:
    pid = deployed.qemu_pid()
    start_time = node.read_file(f"/proc/{pid}/stat").split()[21]
    compute_before = node.run(["podman", "inspect", "nova-compute", "--format", "{{.Id}}"]).stdout.strip()
    with QmpPoller(deployed.qmp_path) as poller:
        result = cu(node, "upgrade", "nova-libvirt", "--image", libvirt.references["v2"], "--json")
    # the old libvirtd was stopped by us (pidfd wait) before the unit's restart, not by ExecStop
    entry = upgraded_keeping_the_guest(result, f"{libvirt.references['v2']}@{libvirt.digests['v2']}", pid)
    # the guest never stopped: same qemu process, every 20 ms sample "running"
    print(
        f"upgrade v1->v2: {len(poller.samples)} QMP samples, steps {[(s['name'], s['ms']) for s in entry['steps']]}"
    )
    assert len(poller.samples) > 20
    assert poller.not_running == []
    assert deployed.qemu_pid() == pid
    assert node.read_file(f"/proc/{pid}/stat").split()[21] == start_time
    assert deployed.running_in_libvirt()
    assert running_digest(node, "nova-libvirt") == libvirt.digests["v2"]
    # the dependent was restarted after libvirt, and works
    compute_after = node.run(["podman", "inspect", "nova-compute", "--format", "{{.Id}}"]).stdout.strip()
    assert compute_after != compute_before
    libvirt_up = node.show("nova-libvirt.service", "ActiveEnterTimestampMonotonic")
    compute_up = node.show("nova-compute.service", "InactiveExitTimestampMonotonic", "ActiveState")
    assert int(compute_up["InactiveExitTimestampMonotonic"]) >= int(
        libvirt_up["ActiveEnterTimestampMonotonic"]
    )
    assert compute_up["ActiveState"] == "active"
    assert node.run(["podman", "healthcheck", "run", "nova-compute"], check=False).returncode == 0
    services = state(node)["services"]
    assert services["nova-libvirt"]["current"] == entry["to"]  # type: ignore[index]
    assert services["nova-libvirt"]["phase"] == "idle"  # type: ignore[index]
    # and the same digest again: nothing to do, no restart
    invocation = node.show("nova-libvirt.service", "InvocationID")["InvocationID"]
    again = cu(node, "upgrade", "nova-libvirt", "--image", libvirt.references["v2"])
    assert again.returncode == 0
    assert again.stdout.splitlines()[0].startswith("nova-libvirt: unchanged ")
    assert node.show("nova-libvirt.service", "InvocationID")["InvocationID"] == invocation


def test_unhealthy_v3_is_rolled_back_and_the_guest_survives(
    node: Node, deployed: Guest, libvirt: LibvirtImages
) -> None:
    pid = deployed.qemu_pid()
    before = running_digest(node, "nova-libvirt")
    with QmpPoller(deployed.qmp_path) as poller:
        result = cu(node, "upgrade", "nova-libvirt", "--image", libvirt.references["v3"], "--json")
    assert result.returncode == 5
    report = json.loads(result.stdout)
    assert report["ok"] is False
    (entry,) = report["services"]
    assert entry["result"] == "rolled-back"
    assert entry["failed_step"] == "health"
    assert entry["reason"].startswith(
        "nova-libvirt: health check ['virsh', '-c', 'qemu:///system', 'list'] did not pass within"
    )
    assert report["error"].startswith(f"nova-libvirt: upgrade to {libvirt.references['v3']}@")
    assert running_digest(node, "nova-libvirt") == before
    assert node.show("nova-libvirt.service", "ActiveState")["ActiveState"] == "active"
    assert poller.not_running == []
    assert deployed.qemu_pid() == pid
    assert deployed.running_in_libvirt()
    history = json.loads(cu(node, "history", "nova-libvirt", "--json").stdout)
    assert [h["result"] for h in history][-2:] == ["upgraded", "rolled-back"]


def test_preflight_refuses_without_machined_and_restarts_nothing(
    node: Node, deployed: Guest, libvirt: LibvirtImages
) -> None:
    container = node.run(["podman", "inspect", "nova-libvirt", "--format", "{{.Id}}"]).stdout.strip()
    node.systemctl("stop", "systemd-machined")
    try:
        result = cu(node, "upgrade", "nova-libvirt", "--image", libvirt.references["v1"])
    finally:
        node.systemctl("start", "systemd-machined")
    assert result.returncode == 3
    assert result.stderr.splitlines()[-1] == (
        "compute-units: error: nova-libvirt: refusing to restart: systemd-machined is not active: libvirt "
        "could not keep guests in their own scopes and a restart would kill them (systemctl unmask --now "
        "systemd-machined); nothing was changed"
    )
    assert node.run(["podman", "inspect", "nova-libvirt", "--format", "{{.Id}}"]).stdout.strip() == container
    assert deployed.running_in_libvirt()


def test_preflight_refuses_unit_settings_that_would_kill_children(
    node: Node, deployed: Guest, libvirt: LibvirtImages
) -> None:
    container = node.run(["podman", "inspect", "nova-libvirt", "--format", "{{.Id}}"]).stdout.strip()
    node.write_file(
        "/etc/systemd/system/nova-libvirt.service.d/50-unsafe.conf", "[Service]\nKillSignal=SIGTERM\n"
    )
    node.systemctl("daemon-reload")
    try:
        result = cu(node, "upgrade", "nova-libvirt", "--image", libvirt.references["v1"])
    finally:
        node.run(["rm", "-r", "/etc/systemd/system/nova-libvirt.service.d"])
        node.systemctl("daemon-reload")
    assert result.returncode == 3
    assert "is loaded with KillSignal other than SIGKILL" in result.stderr
    assert node.run(["podman", "inspect", "nova-libvirt", "--format", "{{.Id}}"]).stdout.strip() == container
    assert deployed.running_in_libvirt()


def node_controllers(node: Node) -> list[str] | None:
    """The node's cgroup2 controllers (None: a hybrid node, where libvirt uses the v1 ones)."""
    text = node.run(["cat", "/sys/fs/cgroup/cgroup.controllers"], check=False)
    return text.stdout.split() if text.returncode == 0 else None


# on a cgroup2-only node without controllers (a trixie node on a hybrid host)
NO_CONTROLLERS = "this host's cgroup2 offers no controllers, so libvirt gives guests no machine scope"


def test_doctor_checks_where_guests_run(node: Node, deployed: Guest) -> None:
    findings = {f["check"]: f for f in json.loads(cu(node, "doctor", "--json").stdout)["findings"]}
    if node_controllers(node) == []:
        # the node says so, although its libvirtd (libvirtd-sandbox) was shown a controller
        assert findings["guest scopes"] == {
            "check": "guest scopes",
            "status": "fail",
            "message": f"{NO_CONTROLLERS} (/sys/fs/cgroup/cgroup.controllers is empty): guests started "
            "now stay in the libvirt unit's cgroup and die when it restarts",
            "fix": "give this host's cgroup2 its controllers (a container or nested host: delegate them)",
            "fixed": False,
        }
    else:
        assert findings["guest scopes"] == {
            "check": "guest scopes",
            "status": "ok",
            "message": "1 qemu running, each in a machine scope",
            "fix": "",
            "fixed": False,
        }
    assert [c for c in findings if c.startswith("guest PID")] == []


def test_a_qemu_in_the_units_cgroup_is_reported_and_refuses_the_restart(
    node: Node, deployed: Guest, libvirt: LibvirtImages
) -> None:
    """What libvirt does without machine scopes, on either layout: qemu in the unit's cgroup."""
    container = node.run(["podman", "inspect", "nova-libvirt", "--format", "{{.Id}}"]).stdout.strip()
    node.run(["podman", "exec", "nova-libvirt", "cp", "/bin/sleep", "/run/qemu-system-x86_64"])
    node.run(["podman", "exec", "--detach", "nova-libvirt", "/run/qemu-system-x86_64", "600"])
    (pid,) = node.run(["pgrep", "-f", "^/run/qemu-system-x86_64 600"]).stdout.split()
    target = "v2" if running_digest(node, "nova-libvirt") == libvirt.digests["v1"] else "v1"
    try:
        unified = node_controllers(node) is not None
        cgroup = systemd_cgroup(node.read_file(f"/proc/{pid}/cgroup"), unified)
        unit_cgroup = node.show("nova-libvirt.service", "ControlGroup")["ControlGroup"]
        assert cgroup.startswith(unit_cgroup + "/")
        doctor = cu(node, "doctor", "--json")
        assert doctor.returncode == 3
        findings = {f["check"]: f for f in json.loads(doctor.stdout)["findings"]}
        assert findings[f"guest PID {pid}"] == {
            "check": f"guest PID {pid}",
            "status": "fail",
            "message": f"qemu-system-x86 runs in {cgroup}, not in a machine scope: it dies with that unit",
            "fix": "let libvirt reach systemd-machined (mount /run/dbus/system_bus_socket; on cgroup2 it needs controllers too), then stop and start this guest",
            "fixed": False,
        }
        result = cu(node, "upgrade", "nova-libvirt", "--image", libvirt.references[target])
    finally:
        node.run(["kill", pid])
    cause = f" ({NO_CONTROLLERS}: compute-units doctor)" if node_controllers(node) == [] else ""
    assert result.returncode == 3
    assert result.stderr.splitlines()[-1] == (
        f"compute-units: error: nova-libvirt: refusing to restart: qemu PID {pid} is inside "
        f"nova-libvirt.service's cgroup and would be killed with it{cause}; nothing was changed"
    )
    assert node.run(["podman", "inspect", "nova-libvirt", "--format", "{{.Id}}"]).stdout.strip() == container
    assert deployed.running_in_libvirt()
