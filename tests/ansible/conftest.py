"""Fixtures for the Ansible collection's tests: the collection as built and installed, fake nodes.

The collection is built with `ansible-galaxy collection build` and installed into
build/ansible/collections once per change of its sources (a stamp records the newest source
mtime), so the tests run what ships, not the source tree.
"""

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

REPO = Path(__file__).resolve().parents[2]
SOURCE = REPO / "ansible/ansible_collections/compute_units/fleet"
BUILD = REPO / "build/ansible"
COLLECTIONS = BUILD / "collections"
INSTALLED = COLLECTIONS / "ansible_collections/compute_units/fleet"
FAKE_CLI = Path(__file__).with_name("fake_cli.py")
BIN = Path(sys.executable).parent

OLD = "127.0.0.1:5000/compute/nova-libvirt:2024.1"
NEW = "127.0.0.1:5000/compute/nova-libvirt:2024.2"


def _newest_source() -> float:
    return max(p.stat().st_mtime for p in SOURCE.rglob("*") if p.is_file() and "tests/output" not in str(p))


def install_collection() -> Path:
    """Build and install the collection if its sources changed since the last install."""
    stamp = BUILD / "installed.stamp"
    newest = str(_newest_source())
    if stamp.exists() and stamp.read_text() == newest and INSTALLED.is_dir():
        return COLLECTIONS
    BUILD.mkdir(parents=True, exist_ok=True)
    galaxy = str(BIN / "ansible-galaxy")
    subprocess.run(
        [galaxy, "collection", "build", str(SOURCE), "--output-path", str(BUILD), "--force"],
        check=True,
        capture_output=True,
    )
    tarball = BUILD / "compute_units-fleet-0.1.0.tar.gz"
    subprocess.run(
        [galaxy, "collection", "install", "--force", "-p", str(COLLECTIONS), str(tarball)],
        check=True,
        capture_output=True,
    )
    stamp.write_text(newest)
    return COLLECTIONS


@pytest.fixture(scope="session")
def collections() -> Path:
    return install_collection()


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
