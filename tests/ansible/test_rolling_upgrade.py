"""End to end: `ansible-playbook compute_units.fleet.rolling_upgrade` over fake nodes.

Each inventory host is this machine (ansible_connection=local) with its own fake `compute-units`
and state directory; one host may point at a closed port of 127.0.0.1 over ssh (unreachable).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.ansible.conftest import FakeHost, make_fake_host
from tests.harness.fixtures import BIN

HOOKS = Path(__file__).with_name("hooks")
FAILURE = {"failed_step": "health", "reason": "nova-libvirt.service inactive after start"}


@dataclass
class Run:
    rc: int
    output: str
    report: dict[str, Any]

    def results(self) -> dict[str, tuple[int | None, str]]:
        return {h["host"]: (h["batch"], h["result"]) for h in self.report["hosts"]}

    def host(self, name: str) -> dict[str, Any]:
        row: dict[str, Any] = next(h for h in self.report["hosts"] if h["host"] == name)
        return row


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port  # closed again: a connection is refused at once


@dataclass
class Fleet:
    directory: Path
    collections: Path
    hosts: dict[str, FakeHost] = field(default_factory=dict)
    unreachable: list[str] = field(default_factory=list)

    def add(self, name: str, **state: Any) -> FakeHost:
        self.hosts[name] = make_fake_host(self.directory / name, **state)
        return self.hosts[name]

    def inventory(self) -> Path:
        lines = ["[compute]"]
        for name, host in self.hosts.items():
            lines.append(
                f"{name} ansible_connection=local ansible_python_interpreter={sys.executable} "
                f"compute_units_executable={host.cli}"
            )
        lines += [
            f"{name} ansible_connection=ssh ansible_host=127.0.0.1 ansible_port={closed_port()}"
            for name in self.unreachable
        ]
        path = self.directory / "inventory.ini"
        path.write_text("\n".join(lines) + "\n")
        return path

    def play(self, *extra: str, serial: list[int | str] | None = None) -> Run:
        report = self.directory / "report.json"
        report.unlink(missing_ok=True)
        env = {
            **os.environ,
            "ANSIBLE_COLLECTIONS_PATH": str(self.collections),
            "ANSIBLE_CALLBACKS_ENABLED": "compute_units.fleet.fleet_report",
            "COMPUTE_UNITS_FLEET_REPORT": str(report),
            "ANSIBLE_NOCOLOR": "1",
            "ANSIBLE_RETRY_FILES_ENABLED": "0",
            "ANSIBLE_HOST_KEY_CHECKING": "0",
            "ANSIBLE_FORKS": "10",
            "ANSIBLE_LOCAL_TEMP": str(self.directory / "tmp"),
            "ANSIBLE_REMOTE_TEMP": str(self.directory / "tmp"),
        }
        variables = {"compute_units_hosts": "compute", "compute_units_serial": serial or [1, 2]}
        argv = [
            str(BIN / "ansible-playbook"),
            "-i",
            str(self.inventory()),
            "compute_units.fleet.rolling_upgrade",
            "-e",
            json.dumps(variables),
            *extra,
        ]
        proc = subprocess.run(argv, capture_output=True, text=True, env=env, cwd=self.directory, check=False)
        output = proc.stdout + proc.stderr
        assert report.exists(), output
        return Run(proc.returncode, output, json.loads(report.read_text()))


@pytest.fixture
def fleet(tmp_path: Path, collections: Path) -> Fleet:
    return Fleet(tmp_path, collections)


def test_all_healthy_all_upgraded(fleet: Fleet) -> None:
    for n in range(1, 6):
        fleet.add(f"node{n}")
    run = fleet.play(serial=[1, "40%"])
    assert run.rc == 0, run.output
    assert run.results() == {
        "node1": (1, "upgraded"),
        "node2": (2, "upgraded"),
        "node3": (2, "upgraded"),
        "node4": (3, "upgraded"),
        "node5": (3, "upgraded"),
    }
    svc = run.host("node1")["services"][0]
    assert [(s["name"], s["ms"]) for s in svc["steps"]][:3] == [
        ("pull", 10),
        ("preflight", 20),
        ("record", 30),
    ]
    assert svc["guests"] == {"before": 1, "kept": 1, "running_after": ["tiny"], "problems": []}
    assert run.report["summary"] == {"upgraded": 5}
    assert "FLEET REPORT" in run.output
    calls = fleet.hosts["node3"].calls()
    assert calls == [["doctor", "--json"], ["pull", "--json"], ["upgrade", "--all", "--json"]]


def recap(run: Run, host: str) -> str:
    return next(line for line in run.output.splitlines() if line.startswith(f"{host} ") and "ok=" in line)


def test_failed_host_halts_the_play_and_a_rerun_converges(fleet: Fleet, tmp_path: Path) -> None:
    for n in range(1, 5):
        fleet.add(f"node{n}")
    fleet.hosts["node3"].update(upgrade_fails={"nova-libvirt": FAILURE})
    hooks = [
        "-e",
        json.dumps(
            {
                "compute_units_pre_hook": str(HOOKS / "pre.yml"),
                "compute_units_post_hook": str(HOOKS / "post.yml"),
                "test_hook_dir": str(tmp_path),
            }
        ),
    ]
    run = fleet.play(*hooks)
    assert run.rc == 2, run.output
    assert run.results() == {
        "node1": (1, "upgraded"),
        "node2": (2, "upgraded"),
        "node3": (2, "rolled back"),
        "node4": (None, "not reached"),
    }
    failed = run.host("node3")
    assert failed["message"].startswith(
        "compute-units exited 5 (upgrade failed and was rolled back): nova-libvirt:"
    )
    assert failed["services"][0]["failed_step"] == "health"
    assert failed["services"][0]["guests"]["kept"] == 1
    assert run.report["summary"] == {"not reached": 1, "rolled back": 1, "upgraded": 2}
    # the batch's other host finished, post hook included; the failed one keeps its pre-hook state
    assert sorted(p.name for p in tmp_path.glob("node*.p*")) == [
        "node1.post",
        "node1.pre",
        "node2.post",
        "node2.pre",
        "node3.pre",
    ]
    assert [c[0] for c in fleet.hosts["node4"].calls()] == ["doctor", "pull"]

    fleet.hosts["node3"].update(upgrade_fails={})
    rerun = fleet.play(*hooks)
    assert rerun.rc == 0, rerun.output
    assert rerun.results() == {
        "node1": (1, "unchanged"),
        "node2": (2, "unchanged"),
        "node3": (2, "upgraded"),
        "node4": (3, "upgraded"),
    }
    assert "changed=0 " in recap(rerun, "node1")
    assert "changed=0 " not in recap(rerun, "node4")


def test_unreachable_host_counts_against_max_fail_percentage(fleet: Fleet) -> None:
    for n in range(1, 4):
        fleet.add(f"node{n}")
    fleet.unreachable.append("node4")
    run = fleet.play()
    assert run.rc != 0
    assert run.results() == {
        "node1": (None, "not reached"),
        "node2": (None, "not reached"),
        "node3": (None, "not reached"),
        "node4": (None, "unreachable"),
    }
    assert fleet.hosts["node1"].calls() == []

    # one host in four is 25 %: tolerated when the prepare phase allows 25 %
    run = fleet.play("-e", "compute_units_prepare_max_fail_percentage=25")
    assert run.results() == {
        "node1": (1, "upgraded"),
        "node2": (2, "upgraded"),
        "node3": (2, "upgraded"),
        "node4": (3, "unreachable"),  # the batch it was scheduled in; it ran nothing there
    }
    assert run.host("node4")["message"].startswith("Task failed: Failed to connect to the host via ssh: ")


def test_check_mode_restarts_nothing(fleet: Fleet) -> None:
    for n in range(1, 3):
        fleet.add(f"node{n}")
    run = fleet.play("--check")
    assert run.rc == 0, run.output
    assert run.results() == {"node1": (1, "would upgrade"), "node2": (2, "would upgrade")}
    assert fleet.hosts["node2"].calls() == [["doctor", "--json"], ["upgrade", "--all", "--dry-run", "--json"]]
    assert run.host("node2")["services"][0]["target"].startswith(
        "127.0.0.1:5000/compute/nova-libvirt:2024.2@sha256:"
    )
