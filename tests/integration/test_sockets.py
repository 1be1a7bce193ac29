"""Held sockets (`sockets:`): systemd keeps libvirtd's listening sockets open while the container
is restarted or upgraded, so a client that connects meanwhile waits instead of being refused.

A host thread opens a new connection to libvirt every 5 ms and makes an RPC on it; across
restarts and an upgrade not one connection may be refused. Behaviour only: no timings asserted.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator

import pytest

from compute_units_dev.images import Builder, Registry
from compute_units_dev.libvirt import LibvirtImages, libvirt_images
from compute_units_dev.node import Node
from compute_units_dev.rpc import NewConnections
from compute_units_dev.specs import SOCKET_UNITS as UNITS
from compute_units_dev.specs import held_spec


@pytest.fixture(scope="module")
def libvirt(builder: Builder, registry: Registry) -> LibvirtImages:
    return libvirt_images(builder, registry)


def cu(node: Node, *args: str) -> subprocess.CompletedProcess[str]:
    return node.run(["compute-units", *args], check=False)


@pytest.fixture(scope="module")
def held(node: Node, libvirt: LibvirtImages) -> Iterator[Node]:
    node.write_file("/etc/compute-units/services/nova-libvirt.yaml", held_spec(libvirt.references["v1"]))
    applied = cu(node, "apply")
    assert applied.returncode == 0, applied.stdout + applied.stderr
    yield node
    cu(node, "stop")
    node.run(["sh", "-c", "rm -rf /etc/compute-units/services/*.yaml /var/lib/compute-units"])
    assert cu(node, "generate").returncode in (0, 2)
    node.systemctl("daemon-reload")
    node.systemctl("reset-failed", check=False)


def libvirtd_pid(node: Node) -> int:
    return int(node.run(["podman", "inspect", "nova-libvirt", "--format", "{{.State.Pid}}"]).stdout)


def listening_inode(node: Node) -> int:
    return node.host_path("/run/libvirt/libvirt-sock").stat().st_ino


def test_libvirtd_takes_the_sockets_systemd_holds(held: Node) -> None:
    for unit in UNITS:
        assert held.show(unit, "ActiveState")["ActiveState"] == "active"
    pid = libvirtd_pid(held)
    environ = held.run(["cat", f"/proc/{pid}/environ"]).stdout.split("\0")
    assert f"LISTEN_PID={pid}" in environ  # the shim's, not podman's LISTEN_PID=1
    assert "LISTEN_FDS=3" in environ
    # libvirtd uses the fds it was given: no socket of its own, none of systemd's replaced
    inode = listening_inode(held)
    held.systemctl("restart", "nova-libvirt")
    assert listening_inode(held) == inode
    with NewConnections(held.host_path("/run/libvirt/libvirt-sock")) as probe:
        probe.wait_ok()


def test_no_connection_is_refused_across_restarts(held: Node) -> None:
    inode = listening_inode(held)
    with NewConnections(held.host_path("/run/libvirt/libvirt-sock")) as probe:
        probe.wait_ok()
        start = time.monotonic()
        pids = {libvirtd_pid(held)}
        for _ in range(3):
            held.systemctl("restart", "nova-libvirt")
            probe.wait_ok()
            pids.add(libvirtd_pid(held))
        end = time.monotonic()
    requests = probe.between(start, end)
    assert len(pids) == 4  # four libvirtds answered in turn
    assert [r for r in requests if r.outcome == "refused"] == []
    assert [r for r in requests if r.outcome == "timeout"] == []
    assert listening_inode(held) == inode


def test_no_connection_is_refused_across_an_upgrade(held: Node, libvirt: LibvirtImages) -> None:
    with NewConnections(held.host_path("/run/libvirt/libvirt-sock")) as probe:
        probe.wait_ok()
        start = time.monotonic()
        before = libvirtd_pid(held)
        result = cu(held, "upgrade", "nova-libvirt", "--image", libvirt.references["v2"])
        assert result.returncode == 0, result.stdout + result.stderr
        probe.wait_ok()
        end = time.monotonic()
    assert libvirtd_pid(held) != before
    requests = probe.between(start, end)
    assert [r for r in requests if r.outcome == "refused"] == []
    for unit in UNITS:
        assert held.show(unit, "ActiveState")["ActiveState"] == "active"


def test_stop_stops_the_sockets_so_no_client_restarts_libvirt(held: Node) -> None:
    stopped = cu(held, "stop", "nova-libvirt")
    assert stopped.returncode == 0, stopped.stdout + stopped.stderr
    for unit in [*UNITS, "nova-libvirt.service"]:
        assert held.show(unit, "ActiveState")["ActiveState"] == "inactive"
    started = cu(held, "start", "nova-libvirt")  # Requires= brings the sockets back
    assert started.returncode == 0, started.stdout + started.stderr
    for unit in UNITS:
        assert held.show(unit, "ActiveState")["ActiveState"] == "active"
