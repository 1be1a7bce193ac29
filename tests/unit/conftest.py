"""Unit tests run no host commands: any attempt to run podman/systemctl/... through the runner fails."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from compute_units import runner


@pytest.fixture(autouse=True)
def no_host_commands(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(argv: Sequence[str], **kwargs: object) -> runner.Result:
        raise AssertionError(f"unit test tried to run {list(argv)}")

    monkeypatch.setattr(runner, "run", refuse)
