"""The sandbox node itself: boots a real systemd with what the tool needs, and leaves no trace."""

from __future__ import annotations

import json
import os
import time

import pytest

from tests.harness.images import Builder
from tests.harness.node import HostSnapshot, boot

pytestmark = pytest.mark.integration


def test_node_boots_with_machined_podman_and_leaves_the_host_as_it_was() -> None:
    before = HostSnapshot.take()
    started = time.monotonic()
    node = boot("clean")
    boot_s = time.monotonic() - started
    try:
        assert node.run(["systemctl", "is-system-running"]).stdout.strip() == "running"
        assert node.run(["systemctl", "is-active", "systemd-machined"]).stdout.strip() == "active"
        info = json.loads(node.run(["podman", "info", "--format", "json"]).stdout)
        assert info["host"]["cgroupManager"] == "systemd"
        assert info["host"]["ociRuntime"]["name"] == "crun"
        # its own /tmp and /run: a file made in the node is not on the host
        node.run(["touch", "/tmp/made-in-node", "/run/made-in-node"])
        assert not os.path.exists("/tmp/made-in-node")
        assert not os.path.exists("/run/made-in-node")
        # a cache hit in a second node: images persist in the node's store across boots
        first = Builder(node)
        ref = first.busybox_base()
    finally:
        node.shutdown()
    assert HostSnapshot.take() == before
    print(f"boot {boot_s:.2f} s")

    again = boot("clean")
    try:
        second = Builder(again)
        assert second.busybox_base() == ref
        assert second.hits == [ref] and second.built == []
    finally:
        again.shutdown()
    assert HostSnapshot.take() == before
