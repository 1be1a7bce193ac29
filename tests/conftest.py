"""The one place test markers are set: by directory (and the few modules that need more), so no
test file marks itself. `make unit` runs what is neither `integration` nor `packaging`; `make test`
runs everything. Shared fixtures come from tests/harness/fixtures.py, registered here once."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest_plugins = ["tests.harness.fixtures"]

TESTS = Path(__file__).resolve().parent
DIRECTORY_MARKERS = {
    "unit": (),
    "ansible": (),  # the collection against fake nodes; its test on a real node is in integration/
    "integration": ("integration",),  # boots sandbox nodes (real systemd, podman, a registry)
    "packaging": ("packaging",),  # builds the RPM
}
MODULE_MARKERS = {"integration/test_upgrade_vm.py": ("vm",)}  # needs a KVM guest as well


def markers_for(path: Path) -> tuple[str, ...]:
    relative = path.resolve().relative_to(TESTS)
    directory = relative.parts[0]
    if directory not in DIRECTORY_MARKERS:
        raise pytest.UsageError(f"tests/{directory}: no markers declared in tests/conftest.py")
    return DIRECTORY_MARKERS[directory] + MODULE_MARKERS.get(relative.as_posix(), ())


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        for name in markers_for(item.path):
            item.add_marker(getattr(pytest.mark, name))
