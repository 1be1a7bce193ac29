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
MODULE_MARKERS = {
    "integration/test_upgrade_vm.py": ("vm",),  # needs a KVM guest as well
    "integration/test_sockets.py": ("vm",),  # libvirt's RPC clients (a KVM guest in bench_sockets)
    "integration/test_fleet.py": ("vm", "fleet"),  # ~20 nodes, 3 of them with KVM guests
}

# Node tests that exist on some releases only: their other releases are not collected (deselected,
# not skipped: there is nothing to test there).
MODULE_RELEASES = {
    "integration/test_quadlet.py": ("trixie",),  # Quadlet needs podman >= 4.4; bookworm has 4.3
}


def relative_path(path: Path) -> str:
    return path.resolve().relative_to(TESTS).as_posix()


def markers_for(path: Path) -> tuple[str, ...]:
    relative = relative_path(path)
    directory = relative.split("/", 1)[0]
    if directory not in DIRECTORY_MARKERS:
        raise pytest.UsageError(f"tests/{directory}: no markers declared in tests/conftest.py")
    return DIRECTORY_MARKERS[directory] + MODULE_MARKERS.get(relative, ())


def applies(item: pytest.Item) -> bool:
    """False for a node test parametrised with a release its module does not exist on."""
    only = MODULE_RELEASES.get(relative_path(item.path))
    callspec = getattr(item, "callspec", None)
    release = callspec.params.get("release") if callspec is not None else None
    return only is None or release is None or release in only


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        for name in markers_for(item.path):
            item.add_marker(getattr(pytest.mark, name))
    kept: list[pytest.Item] = []
    dropped: list[pytest.Item] = []
    for item in items:
        (kept if applies(item) else dropped).append(item)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = kept
