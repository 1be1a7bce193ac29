"""Modular libvirt (examples/compute-node/modular): the KVM guest survives an upgrade of virtqemud.

nova-virtlogd and nova-virtqemud run as two containers with their sockets held by systemd
(`sockets:`); the guest is test_upgrade_vm's tiny multiboot kernel, created over virtqemud's own
socket (no libvirtd, no virtproxyd: qemu:///system reaches virtqemud directly). A QMP client polls
the guest every 20 ms from the host while `compute-units upgrade nova-virtqemud` runs; then
virtlogd is re-executed by SIGUSR1 and upgraded, and the guest's console lines (printed at each
reset) show which of the two keeps its console log. The image is trixie's libvirt 11 on both
nodes (bookworm's libvirt 9.0.0 has no virtqemud), compiled once per checkout (Builder `save`).
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from compute_units_dev.images import Builder, Registry
from compute_units_dev.libvirt import (
    Guest,
    LibvirtImages,
    QmpPoller,
    clear_run_libvirt,
    modular_images,
    reset_guest,
    start_guest,
)
from compute_units_dev.node import Node, wait_until
from compute_units_dev.specs import VIRTQEMUD_SOCKET_UNITS, virtlogd_spec, virtqemud_spec
from tests.harness.fixtures import cu
from tests.harness.reports import upgraded_keeping_the_guest


@pytest.fixture(scope="module")
def modular(builder: Builder, registry: Registry) -> LibvirtImages:
    images = modular_images(builder, registry)
    for what, ref, seconds in builder.timings:
        print(f"{ref}: {what} in {seconds:.1f} s")
    return images


@pytest.fixture(scope="module")
def deployed(node: Node, modular: LibvirtImages) -> Iterator[Guest]:
    clear_run_libvirt(node)
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
    clear_run_libvirt(node)


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
    entry = upgraded_keeping_the_guest(result, f"{modular.references['v2']}@{modular.digests['v2']}", pid)
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


GUEST_LINE = "compute-units test guest up"


def qemu_pipes(node: Node, qemu: int) -> list[str]:
    """qemu's pipes: its stdout/stderr (tiny.log) and the serial console's fdset (tiny.serial)."""
    fds = node.run(["sh", "-c", f"for f in /proc/{qemu}/fd/*; do readlink $f; done"]).stdout.split()
    return sorted({fd for fd in fds if fd.startswith("pipe:[")})


def pipe_holders(node: Node, pipe: str) -> list[str]:
    """The `comm` of every process in the node holding either end of `pipe`."""
    script = f'for f in /proc/[0-9]*/fd/*; do [ "$(readlink "$f")" = "{pipe}" ] && echo "${{f%/fd/*}}"; done'
    procs = set(node.run(["sh", "-c", script], check=False).stdout.split())
    return sorted(node.run(["cat", f"{p}/comm"]).stdout.strip() for p in procs)


def start_stack(node: Node, pid: str) -> str:
    return node.read_file(f"/proc/{pid}/stat").split()[27]  # set anew by every execve()


def test_virtlogd_reexec_keeps_the_console_log_an_upgrade_ends_it(
    node: Node, deployed: Guest, modular: LibvirtImages
) -> None:
    """SIGUSR1 re-executes virtlogd in its container and keeps the pipes; `upgrade nova-virtlogd`
    (a new container) keeps the guest running but leaves its console pipes without a reader."""
    qemu = deployed.qemu_pid()
    serial = node.directory / "libvirt-lib" / "qmp" / "tiny.serial"
    pipes = qemu_pipes(node, qemu)
    assert len(pipes) == 2  # stdout+stderr, and the serial console's fd (libvirt passes an fdset)
    assert all(pipe_holders(node, p) == ["qemu-system-x86", "virtlogd"] for p in pipes)

    def logged(count: int) -> None:
        wait_until(lambda: serial.read_text().count(GUEST_LINE) == count, 20, f"{count} lines in {serial}")

    lines = 1
    logged(lines)  # its first boot's line (SeaBIOS takes seconds: it may still be on its way)
    reset_guest(deployed)  # the guest prints its line again on COM1
    logged(lines + 1)
    # SIGUSR1: virtlogd saves its state and execs its own binary, in the same container
    virtlogd = node.run(["podman", "inspect", "nova-virtlogd", "--format", "{{.State.Pid}}"]).stdout.strip()
    container = container_id(node, "nova-virtlogd")
    stack = start_stack(node, virtlogd)
    node.run(["podman", "kill", "--signal", "USR1", "nova-virtlogd"])
    wait_until(lambda: start_stack(node, virtlogd) != stack, 20, "virtlogd to re-execute itself")
    assert container_id(node, "nova-virtlogd") == container
    assert node.run(["readlink", f"/proc/{virtlogd}/exe"]).stdout.strip() == "/usr/sbin/virtlogd"
    assert all(pipe_holders(node, p) == ["qemu-system-x86", "virtlogd"] for p in pipes)
    reset_guest(deployed)
    logged(lines + 2)  # the re-executed virtlogd still reads the guest's console

    virtqemud = container_id(node, "nova-virtqemud")
    with QmpPoller(deployed.qmp_path) as poller:
        result = cu(
            node,
            "upgrade",
            "nova-virtlogd",
            "--image",
            modular.references["v2"],
            "--allow-disruptive",
            "--json",
        )
    assert result.returncode == 0, result.stdout + result.stderr
    (entry,) = json.loads(result.stdout)["services"]
    assert entry["result"] == "upgraded"
    # virtqemud (keeps_vms) restarts with virtlogd: the guests are checked in it, before and after
    assert [p["pid"] for p in entry["vm_before"]["qemu"]] == [qemu]
    assert entry["vm_before"]["guests"] == entry["vm_after"]["guests"] == {"tiny": "running"}
    assert entry["vm_check"] == []
    print(
        f"upgrade nova-virtlogd v1->v2: {len(poller.samples)} QMP samples, {[(s['name'], s['ms']) for s in entry['steps']]}"
    )
    assert len(poller.samples) > 20
    assert poller.not_running == []
    assert deployed.qemu_pid() == qemu
    assert running_digest(node, "nova-virtlogd") == modular.digests["v2"]
    assert container_id(node, "nova-virtqemud") != virtqemud  # restarted with it (requires:)
    assert deployed.running_in_libvirt()
    # the new virtlogd holds none of the guest's pipes: no process reads them any more
    assert all(pipe_holders(node, p) == ["qemu-system-x86"] for p in pipes)
    reset_guest(deployed)  # the guest has printed its line again (and runs on) ...
    assert deployed.running_in_libvirt()
    assert serial.read_text().count(GUEST_LINE) == lines + 2  # ... and it reached no log
