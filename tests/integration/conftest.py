"""Integration tests: the known gaps on trixie, and the host check for every test here (the
fixtures themselves are in tests/harness/fixtures.py)."""

from __future__ import annotations

import pytest

from compute_units_dev.hostcheck import HostSnapshot


@pytest.fixture(autouse=True)
def _host_checked(host_before: HostSnapshot) -> None:
    """Every test here may boot a node: the session's host snapshot is taken before the first."""
