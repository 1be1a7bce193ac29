"""Fake nodes for the Ansible collection's tests (the collection as built and installed is the
shared `collections` fixture of tests/harness/fixtures.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.harness.fixtures import INSTALLED

FAKE_CLI = Path(__file__).with_name("fake_cli.py")

OLD = "127.0.0.1:5000/compute/nova-libvirt:2024.1"
NEW = "127.0.0.1:5000/compute/nova-libvirt:2024.2"


@dataclass
class FakeHost:
    """One node's fake `compute-units`: DIR/compute-units runs fake_cli.py with FAKE_CU_STATE=DIR."""

    directory: Path

    @property
    def cli(self) -> Path:
        return self.directory / "compute-units"

    def state(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads((self.directory / "state.json").read_text())
        return data

    def update(self, **changes: Any) -> None:
        data = self.state()
        data.update(changes)
        (self.directory / "state.json").write_text(json.dumps(data))

    def calls(self) -> list[list[str]]:
        log = self.directory / "calls.log"
        return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


def make_fake_host(directory: Path, **state: Any) -> FakeHost:
    """A node running nova-libvirt at OLD whose spec says NEW (override with keyword arguments)."""
    directory.mkdir(parents=True, exist_ok=True)
    base: dict[str, Any] = {
        "services": {"nova-libvirt": {"current": f"{OLD}@sha256:{'1' * 64}", "target": NEW}},
        "present": [],
    }
    base.update(state)
    (directory / "state.json").write_text(json.dumps(base))
    wrapper = directory / "compute-units"
    wrapper.write_text(f'#!/bin/sh\nFAKE_CU_STATE="{directory}" exec "{sys.executable}" "{FAKE_CLI}" "$@"\n')
    wrapper.chmod(0o755)
    return FakeHost(directory)


@pytest.fixture
def fake_host(tmp_path: Path) -> FakeHost:
    return make_fake_host(tmp_path / "node")


@dataclass(frozen=True)
class ModuleRun:
    rc: int
    result: dict[str, Any]


@pytest.fixture
def run_module(collections: Path, tmp_path: Path) -> Iterator[Any]:
    """Run a module as Ansible runs it on a node: `python MODULE ARGS_FILE`, JSON on stdout."""

    def run(name: str, args: dict[str, Any], *, check: bool = False, diff: bool = False) -> ModuleRun:
        payload = {"ANSIBLE_MODULE_ARGS": {**args, "_ansible_check_mode": check, "_ansible_diff": diff}}
        args_file = tmp_path / "args.json"
        args_file.write_text(json.dumps(payload))
        module = INSTALLED / "plugins/modules" / f"{name}.py"
        env = {**os.environ, "PYTHONPATH": str(collections)}
        proc = subprocess.run(
            [sys.executable, str(module), str(args_file)],
            capture_output=True,
            text=True,
            env=env,
            check=False,
        )
        assert proc.stdout.strip(), f"module printed nothing; stderr: {proc.stderr}"
        return ModuleRun(proc.returncode, json.loads(proc.stdout))

    yield run
