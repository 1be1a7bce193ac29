"""Fixtures shared by every test directory (registered once, by tests/conftest.py): one sandbox
systemd node per Debian release, a registry in it, the test images, the Ansible collection as built
and installed, and the check that the host was left as it was (`host_before`, asserted when the
session ends, after every node is down). The machinery itself is the `compute_units_dev` package.

Every node test runs once per release in CU_RELEASES (comma-separated; default "bookworm,trixie"),
ids [bookworm] / [trixie]: `CU_RELEASES=trixie pytest -m integration`.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from compute_units_dev.hostcheck import Canaries, HostSnapshot
from compute_units_dev.images import Builder, Registry
from compute_units_dev.node import Node, boot
from compute_units_dev.rootfs import RELEASES
from compute_units_dev.specs import SVC_VARIANTS

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent  # the venv's ansible-*, python
COLLECTION_SOURCE = REPO / "ansible/ansible_collections/compute_units/fleet"
ANSIBLE_BUILD = REPO / "build/ansible"
COLLECTIONS = ANSIBLE_BUILD / "collections"
INSTALLED = COLLECTIONS / "ansible_collections/compute_units/fleet"


def cu(node: Node, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """`compute-units ARGS` inside the node; the result whatever the exit status."""
    return node.run(["compute-units", *args], check=False, env=env)


def selected_releases() -> list[str]:
    chosen = [r.strip() for r in os.environ.get("CU_RELEASES", ",".join(RELEASES)).split(",") if r.strip()]
    unknown = sorted(set(chosen) - set(RELEASES))
    if unknown or not chosen:
        raise pytest.UsageError(
            f"CU_RELEASES: unknown {unknown or chosen}; choose from {', '.join(RELEASES)}"
        )
    return chosen


@dataclass(frozen=True)
class Image:
    reference: str  # 127.0.0.1:PORT/cu-test/svc:v1
    digest: str  # what the registry serves for it


@pytest.fixture(scope="session")
def host_before() -> Iterator[HostSnapshot]:
    """The host as the session found it; compared when the session ends (after every node is down)."""
    canaries = Canaries("session")
    canaries.plant()
    before = HostSnapshot.take()
    yield before
    problems = canaries.missing() + before.differences(HostSnapshot.take())
    canaries.remove()
    assert problems == [], "the sandbox nodes changed the host:\n" + "\n".join(problems)


@pytest.fixture(scope="session", params=selected_releases())
def release(request: pytest.FixtureRequest) -> str:
    value: str = request.param
    return value


@pytest.fixture(scope="session")
def node(host_before: HostSnapshot, release: str) -> Iterator[Node]:
    n = boot("it", release)
    yield n
    n.shutdown()


@pytest.fixture(scope="session")
def builder(node: Node) -> Builder:
    return Builder(node)


@pytest.fixture(scope="session")
def registry(node: Node) -> Registry:
    return Registry.start(node)


@pytest.fixture(scope="session")
def svc_images(builder: Builder, registry: Registry) -> dict[str, Image]:
    """The service stand-in, pushed as cu-test/svc:v1, v2, v3 (unhealthy) and bad (exits 1)."""
    base = builder.busybox_base()
    images = {}
    for tag, args in SVC_VARIANTS.items():
        local = builder.build("svc", base, args)
        digest = registry.push(local, "cu-test/svc", tag)
        images[tag] = Image(registry.reference("cu-test/svc", tag), digest)
    return images


@pytest.fixture(scope="session")
def registry_address(registry: Registry) -> str:
    return registry.address


def _newest_source() -> float:
    return max(
        p.stat().st_mtime
        for p in COLLECTION_SOURCE.rglob("*")
        if p.is_file() and "tests/output" not in str(p)
    )


def install_collection() -> Path:
    """The collection is built with `ansible-galaxy collection build` and installed into
    build/ansible/collections once per change of its sources (a stamp records the newest source
    mtime), so the tests run what ships, not the source tree.

    Build and install the collection if its sources changed since the last install."""
    stamp = ANSIBLE_BUILD / "installed.stamp"
    newest = str(_newest_source())
    if stamp.exists() and stamp.read_text() == newest and INSTALLED.is_dir():
        return COLLECTIONS
    ANSIBLE_BUILD.mkdir(parents=True, exist_ok=True)
    galaxy = str(BIN / "ansible-galaxy")
    subprocess.run(
        [
            galaxy,
            "collection",
            "build",
            str(COLLECTION_SOURCE),
            "--output-path",
            str(ANSIBLE_BUILD),
            "--force",
        ],
        check=True,
        capture_output=True,
    )
    tarball = ANSIBLE_BUILD / "compute_units-fleet-0.1.0.tar.gz"
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
