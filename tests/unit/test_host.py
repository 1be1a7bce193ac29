"""host.stop_process against real child processes, and what the lean start/stop/restart path imports."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator

import pytest

from compute_units import host


@pytest.fixture
def own_cgroup() -> str:
    me = host.process(os.getpid())
    assert me is not None
    return me.cgroup


@pytest.fixture
def children() -> Iterator[list[subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for child in started:  # only processes this test started
        if child.poll() is None:
            child.kill()
        child.wait()


def spawn(children: list[subprocess.Popen[bytes]], script: str) -> subprocess.Popen[bytes]:
    """Run `script` (which says `ready` once set up, then execs); return when it has said so."""
    child = subprocess.Popen(["/bin/sh", "-c", script], stdout=subprocess.PIPE)
    children.append(child)
    assert child.stdout is not None and child.stdout.readline() == b"ready\n"
    return child


def test_stop_process_returns_when_the_process_has_exited(
    own_cgroup: str, children: list[subprocess.Popen[bytes]]
) -> None:
    child = spawn(children, "echo ready; exec sleep 60")
    assert host.stop_process(child.pid, signal.SIGTERM, 30, cgroup=own_cgroup) == "exited"
    assert child.wait(1) == -signal.SIGTERM


def test_stop_process_gives_up_after_the_timeout(
    own_cgroup: str, children: list[subprocess.Popen[bytes]]
) -> None:
    # a process that ignores SIGTERM (ignored signals survive exec)
    child = spawn(children, "trap '' TERM; echo ready; exec sleep 60")
    assert host.stop_process(child.pid, signal.SIGTERM, 0.2, cgroup=own_cgroup) == "running"
    assert child.poll() is None


def test_stop_process_leaves_a_process_outside_the_cgroup_alone(
    children: list[subprocess.Popen[bytes]],
) -> None:
    child = spawn(children, "echo ready; exec sleep 60")
    assert host.stop_process(child.pid, signal.SIGTERM, 5, cgroup="/no-such.slice/unit.service") == "absent"
    assert child.poll() is None


def test_stop_process_of_a_pid_that_is_gone(own_cgroup: str) -> None:
    child = subprocess.Popen(["true"])
    child.wait()
    assert host.stop_process(child.pid, signal.SIGTERM, 5, cgroup=own_cgroup) == "absent"


def test_signal_names() -> None:
    assert [host.signal_name(n) for n in (15, 9, 37)] == ["SIGTERM", "SIGKILL", "signal 37"]


def test_lean_lifecycle_path_imports_no_cli_framework_yaml_or_lxml() -> None:
    """What `compute-units restart X` loads: no typer/rich/jinja2/YAML/pydantic, nor pystemd's
    introspection classes (lxml). pystemd's submodules stay importable afterwards."""
    heavy = [
        "typer",
        "rich",
        "jinja2",
        "yaml",
        "pydantic",
        "lxml",
        "compute_units.spec",
        "compute_units.model",
    ]
    code = (
        "import sys, json\n"
        "from compute_units import jobs, main\n"
        "from compute_units.systemd import _pystemd\n"
        "_pystemd()\n"
        f"loaded = [m for m in {heavy!r} if m in sys.modules]\n"
        "import pystemd.systemd1\n"
        "print(json.dumps(loaded))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert json.loads(out) == []
