"""The sandbox node itself: boots a real systemd of the chosen release with what the tool needs,
and leaves no trace."""

from __future__ import annotations

import json
import os
import shlex
import time

import pytest

from compute_units_dev.hostcheck import Canaries, HostSnapshot
from compute_units_dev.images import BUILD_PODMAN, Builder
from compute_units_dev.node import Node, NodeError, boot

# what each release's node is: systemd, podman and the cgroup layout its hosts run
EXPECTED = {
    "bookworm": {"systemd": "252", "podman": "4.3.", "cgroup": "v1", "python": "3.11."},
    "trixie": {"systemd": "257", "podman": "5.4.", "cgroup": "v2", "python": "3.13."},
}


def check_node(node: Node, release: str) -> None:
    expected = EXPECTED[release]
    assert node.run(["systemctl", "is-system-running"]).stdout.strip() == "running"
    assert node.run(["systemctl", "is-active", "systemd-machined"]).stdout.strip() == "active"
    assert node.run(["systemctl", "--version"]).stdout.split()[1] == expected["systemd"]
    info = json.loads(node.run(["podman", "info", "--format", "json"]).stdout)
    assert info["host"]["cgroupManager"] == "systemd"
    assert info["host"]["cgroupVersion"] == expected["cgroup"]
    assert info["host"]["ociRuntime"]["name"] == "crun"
    assert info["version"]["Version"].startswith(expected["podman"])
    fstype = node.run(["stat", "-f", "-c", "%T", "/sys/fs/cgroup"]).stdout.strip()
    assert fstype == ("cgroup2fs" if release == "trixie" else "tmpfs")
    # the node's own python3 runs compute-units from the checkout, with Debian's packages
    version = node.run(["python3", "-c", "import sys; print(sys.version)"]).stdout
    assert version.startswith(expected["python"])
    assert "Usage: compute-units [OPTIONS] COMMAND [ARGS]..." in node.run(["compute-units", "--help"]).stdout
    # its own /tmp and /run: a file made in the node is not on the host
    node.run(["touch", "/tmp/made-in-node", "/run/made-in-node"])
    assert not os.path.exists("/tmp/made-in-node")
    assert not os.path.exists("/run/made-in-node")


def test_node_boots_with_machined_podman_and_leaves_the_host_as_it_was(release: str) -> None:
    canaries = Canaries("test-node")
    canaries.plant()
    try:
        boot_twice(release)
    finally:
        missing = canaries.missing()
        canaries.remove()
    assert missing == []


def boot_twice(release: str) -> None:
    before = HostSnapshot.take()
    started = time.monotonic()
    node = boot("clean", release)
    boot_s = time.monotonic() - started
    try:
        check_node(node, release)
        # a cache hit in a second node: images persist in the node's store across boots
        first = Builder(node)
        ref = first.busybox_base()
        save = shlex.join([*BUILD_PODMAN, "save", ref])
        node.run(["sh", "-c", f"{save} | podman load --quiet"])  # the build store -> the runtime store
        # a container without --network shares the node's (= the host's) network namespace:
        # no bridge may appear on the host
        netns = node.run(["podman", "run", "--rm", ref, "readlink", "/proc/self/ns/net"]).stdout.strip()
        assert netns == os.readlink("/proc/self/ns/net")
        # a container left running is removed at shutdown, quickly
        node.run(["podman", "run", "-d", "--name", "left-behind", ref, "sleep", "1000"])
        stopping = time.monotonic()
    finally:
        node.shutdown()
    teardown_s = time.monotonic() - stopping
    assert before.differences(HostSnapshot.take()) == []
    print(f"{release}: boot {boot_s:.2f} s, teardown {teardown_s:.2f} s")
    assert teardown_s < 5

    again = boot("clean", release)
    try:
        second = Builder(again)
        assert second.busybox_base() == ref
        assert second.hits == [ref] and second.built == []
        assert again.run(["podman", "ps", "-a", "--format", "{{.Names}}"]).stdout.split() == []
    finally:
        again.shutdown()
    assert before.differences(HostSnapshot.take()) == []


FAILING_UNIT = """[Unit]
Description=fails at boot
[Service]
Type=oneshot
ExecStart=/bin/sh -c "echo cu-fail-says-why >&2; exit 3"
"""


def test_a_node_that_boots_degraded_names_the_failed_unit_and_what_it_said(release: str) -> None:
    """The node is shut down after a failed boot, its journal with it: the error keeps the words."""
    files = {
        "/etc/systemd/system/cu-fail.service": (FAILING_UNIT, 0o644),
        "/etc/systemd/system/sandbox.target.d/fail.conf": ("[Unit]\nWants=cu-fail.service\n", 0o644),
    }
    with pytest.raises(NodeError) as failed:
        boot("degraded", release, files=files)
    message = str(failed.value)
    assert message.startswith("node state 'degraded' (systemctl exited 1: ''); failed units:\n"), message
    assert "cu-fail.service" in message.splitlines()[1]
    assert "cu-fail-says-why" in message
    assert "status=3/NOTIMPLEMENTED" in message
