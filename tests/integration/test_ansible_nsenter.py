"""The collection's nsenter connection against one real sandbox node (compute_units_dev/node.py).

Groundwork for the fleet test of issue #13 item 5: each of ~20 nodes is reached through a real
Ansible connection plugin, without sshd, ports or keys.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from compute_units_dev.hostcheck import HostSnapshot
from compute_units_dev.node import Node, boot
from tests.harness.fixtures import BIN


@pytest.fixture(scope="module")
def node(host_before: HostSnapshot) -> Iterator[Node]:
    n = boot("ansible")
    yield n
    n.shutdown()


def ansible(node: Node, collections: Path, tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    inventory = tmp_path / "inventory.ini"
    inventory.write_text(
        f"node ansible_connection=compute_units.fleet.nsenter ansible_nsenter_pid={node.pid} "
        "ansible_python_interpreter=/usr/bin/python3\n"
    )
    env = {
        **os.environ,
        "ANSIBLE_COLLECTIONS_PATH": str(collections),
        "ANSIBLE_NOCOLOR": "1",
        "ANSIBLE_LOCAL_TEMP": str(tmp_path / "tmp"),
    }
    return subprocess.run(
        [str(BIN / "ansible"), "-i", str(inventory), "node", *args],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )


def test_command_runs_in_the_node(node: Node, collections: Path, tmp_path: Path) -> None:
    started = time.monotonic()
    proc = ansible(
        node, collections, tmp_path, "-m", "ansible.builtin.command", "-a", "systemctl is-system-running"
    )
    elapsed = time.monotonic() - started
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.splitlines()[1:] == ["running"]
    print(f"ad-hoc command through nsenter: {elapsed:.2f} s", file=sys.stderr)
    init = ansible(node, collections, tmp_path, "-m", "ansible.builtin.command", "-a", "cat /proc/1/comm")
    assert init.stdout.splitlines()[1:] == [
        "systemd"
    ]  # the node's PID namespace (the host's PID 1 is not systemd)


def test_files_in_and_out(node: Node, collections: Path, tmp_path: Path) -> None:
    copy = ansible(
        node, collections, tmp_path, "-m", "ansible.builtin.copy", "-a", "content=hello dest=/run/probe.txt"
    )
    assert copy.returncode == 0, copy.stdout + copy.stderr
    assert node.read_file("/run/probe.txt") == "hello"
    assert not Path("/run/probe.txt").exists()  # the node's /run, not the host's
    fetch = ansible(
        node,
        collections,
        tmp_path,
        "-m",
        "ansible.builtin.fetch",
        "-a",
        f"src=/run/probe.txt dest={tmp_path}/ flat=true",
    )
    assert fetch.returncode == 0, fetch.stdout + fetch.stderr
    assert (tmp_path / "probe.txt").read_text() == "hello"


def test_a_gone_node_is_unreachable(collections: Path, tmp_path: Path) -> None:
    gone = subprocess.Popen(["true"])
    gone.wait()
    inventory = tmp_path / "inventory.ini"
    inventory.write_text(
        f"node ansible_connection=compute_units.fleet.nsenter ansible_nsenter_pid={gone.pid}\n"
    )
    env = {**os.environ, "ANSIBLE_COLLECTIONS_PATH": str(collections), "ANSIBLE_NOCOLOR": "1"}
    proc = subprocess.run(
        [str(BIN / "ansible"), "-i", str(inventory), "node", "-m", "ansible.builtin.ping"],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert proc.returncode == 4  # unreachable
    assert f"no process {gone.pid} to enter: is the node running?" in proc.stdout
