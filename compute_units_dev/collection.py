"""The Ansible collection as it ships: built with `ansible-galaxy collection build` and installed
into build/ansible/collections, for the Ansible tests, the fleet test and the fleet benchmark."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent  # the venv's ansible-*, python
COLLECTION_SOURCE = REPO / "ansible/ansible_collections/compute_units/fleet"
ANSIBLE_BUILD = REPO / "build/ansible"
COLLECTIONS = ANSIBLE_BUILD / "collections"
INSTALLED = COLLECTIONS / "ansible_collections/compute_units/fleet"


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
