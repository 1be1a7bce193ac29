"""Modular libvirt (examples/compute-node/modular): the KVM guest survives an upgrade of virtqemud.

nova-virtlogd and nova-virtqemud run as two containers with their sockets held by systemd
(`sockets:`); the guest is test_upgrade_vm's tiny multiboot kernel, created over virtqemud's own
socket (no libvirtd, no virtproxyd: qemu:///system reaches virtqemud directly). A QMP client polls
the guest every 20 ms from the host while `compute-units upgrade nova-virtqemud` runs. The image is
trixie's libvirt 11 on both nodes: bookworm's libvirt 9.0.0 has no virtqemud.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator

import pytest

from compute_units_dev.images import Builder, Registry
from compute_units_dev.libvirt import Guest, LibvirtImages, QmpPoller, modular_images, start_guest
from compute_units_dev.node import Node
from compute_units_dev.specs import VIRTQEMUD_SOCKET_UNITS, virtlogd_spec, virtqemud_spec
from tests.harness.fixtures import cu


@pytest.fixture(scope="module")
def modular(builder: Builder, registry: Registry) -> LibvirtImages:
    images = modular_images(builder, registry)
    for ref, seconds in builder.seconds.items():
        how = "loaded" if ref in builder.loaded else "built"
        print(f"{ref}: {how} in {seconds:.1f} s")
    return images


@pytest.fixture(scope="module")
def deployed(node: Node, modular: LibvirtImages) -> Iterator[Guest]:
    node.write_file("/etc/compute-units/services/nova-virtlogd.yaml", virtlogd_spec(modular.references["v1"]))
    node.write_file(
        "/etc/compute-units/services/nova-virtqemud.yaml", virtqemud_spec(modular.references["v1"])
    )
    applied = cu(node, "apply")
    assert applied.returncode == 0, applied.stdout + applied.stderr
    guest = start_guest(node, "nova-virtqemud")
    yield guest
    guest.destroy()
    cu(node, "stop")
    node.run(["sh", "-c", "rm -rf /etc/compute-units/services/*.yaml /var/lib/compute-units"])
    assert cu(node, "generate").returncode in (0, 2)
    node.systemctl("daemon-reload")
    node.systemctl("reset-failed", check=False)


def container_id(node: Node, name: str) -> str:
    return node.run(["podman", "inspect", name, "--format", "{{.Id}}"]).stdout.strip()


def running_digest(node: Node, name: str) -> str:
    image = node.run(["podman", "inspect", name, "--format", "{{.Image}}"]).stdout.strip()
    return node.run(["podman", "image", "inspect", image, "--format", "{{.Digest}}"]).stdout.strip()


def console_pipe(node: Node, qemu: int) -> str:
    """The pipe qemu writes its console output to (stdout), checked to be one virtlogd reads."""
    pipe = node.run(["readlink", f"/proc/{qemu}/fd/1"]).stdout.strip()
    assert pipe.startswith("pipe:["), pipe
    virtlogd = node.run(["podman", "inspect", "nova-virtlogd", "--format", "{{.State.Pid}}"]).stdout.strip()
    held = node.run(["sh", "-c", f"readlink /proc/{virtlogd}/fd/*"]).stdout.split()
    assert pipe in held, (pipe, held)
    return pipe


def test_the_guest_runs_under_virtqemud_in_its_machine_scope(node: Node, deployed: Guest) -> None:
    for unit in VIRTQEMUD_SOCKET_UNITS:
        assert node.show(unit, "ActiveState")["ActiveState"] == "active"
    # virtqemud took the three sockets systemd holds; nothing else serves qemu:///system
    daemon = int(node.run(["podman", "inspect", "nova-virtqemud", "--format", "{{.State.Pid}}"]).stdout)
    environ = node.run(["cat", f"/proc/{daemon}/environ"]).stdout.split("\0")
    assert "LISTEN_FDS=3" in environ
    assert node.run(["cat", f"/proc/{daemon}/comm"]).stdout.strip() == "virtqemud"
    assert not node.host_path("/run/libvirt/libvirt-sock").exists()
    pid = deployed.qemu_pid()
    cgroup = node.read_file(f"/proc/{pid}/cgroup")
    assert "machine.slice/machine-qemu" in cgroup
    assert "nova-virtqemud.service" not in cgroup
    assert deployed.running_in_libvirt()
    assert "qemu-1-tiny" in node.run(["machinectl", "list", "--no-legend"]).stdout.split()
    # qemu's console goes through the other container: virtlogd holds the pipe, writes the log
    console_pipe(node, pid)
    assert node.host_path("/var/log/libvirt/qemu/tiny.log").is_file()


def test_upgrade_of_virtqemud_keeps_the_guest_running(
    node: Node, deployed: Guest, modular: LibvirtImages
) -> None:
    pid = deployed.qemu_pid()
    start_time = node.read_file(f"/proc/{pid}/stat").split()[21]
    virtlogd = container_id(node, "nova-virtlogd")
    pipe = console_pipe(node, pid)
    with QmpPoller(deployed.qmp_path) as poller:
        result = cu(node, "upgrade", "nova-virtqemud", "--image", modular.references["v2"], "--json")
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads(result.stdout)
    assert report["ok"] is True
    (entry,) = report["services"]
    assert entry["result"] == "upgraded"
    assert entry["to"] == f"{modular.references['v2']}@{modular.digests['v2']}"
    assert [s["name"] for s in entry["steps"]] == [
        "pull",
        "preflight",
        "record",
        "pin",
        "restart",
        "health",
        "post-check",
        "commit",
    ]
    assert all(isinstance(s["ms"], int) and s["ok"] for s in entry["steps"])
    restart = next(s for s in entry["steps"] if s["name"] == "restart")
    assert re.fullmatch(r"old container \(PID \d+\) exited \d+ ms after SIGTERM", restart["detail"])
    assert entry["vm_check"] == []
    assert [p["pid"] for p in entry["vm_before"]["qemu"]] == [pid]
    assert entry["vm_before"]["guests"] == {"tiny": "running"}
    assert entry["vm_after"]["guests"] == {"tiny": "running"}
    print(
        f"upgrade nova-virtqemud v1->v2: {len(poller.samples)} QMP samples, "
        f"steps {[(s['name'], s['ms']) for s in entry['steps']]}"
    )
    # the guest never stopped: same qemu process, every 20 ms sample "running", still in its scope
    assert len(poller.samples) > 20
    assert poller.not_running == []
    assert deployed.qemu_pid() == pid
    assert node.read_file(f"/proc/{pid}/stat").split()[21] == start_time
    assert "machine.slice/machine-qemu" in node.read_file(f"/proc/{pid}/cgroup")
    assert deployed.running_in_libvirt()  # the new virtqemud reconnected to it
    assert running_digest(node, "nova-virtqemud") == modular.digests["v2"]
    # virtlogd, which holds the guest's console pipe, was not touched: the same pipe is read
    assert container_id(node, "nova-virtlogd") == virtlogd
    assert console_pipe(node, pid) == pipe
    assert node.show("nova-virtlogd.service", "ActiveState")["ActiveState"] == "active"
