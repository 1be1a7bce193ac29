"""podman inspect output of both supported podman versions (4.3 on Debian 12, 5.4 on Debian 13)."""

from __future__ import annotations

import json
import signal
from collections.abc import Sequence
from typing import Any

import pytest

from compute_units import podman, runner
from compute_units.errors import CommandError


def _inspect_answer(monkeypatch: pytest.MonkeyPatch, config: dict[str, Any]) -> None:
    container = {
        "Id": "c0ffee",
        "Name": "nova-libvirt",
        "ImageName": "127.0.0.1:5000/compute/nova-libvirt:2024.1",
        "Image": "1234",
        "State": {"Running": True, "Pid": 4242, "StartedAt": "2026-01-01T00:00:00Z"},
        "Config": config,
    }

    def fake_run(argv: Sequence[str], **kwargs: object) -> runner.Result:
        assert list(argv) == [podman.PODMAN, "container", "inspect", "--format", "json", "c0ffee"]
        return runner.Result(tuple(argv), 0, json.dumps([container]), "")

    monkeypatch.setattr(runner, "run", fake_run)


@pytest.mark.parametrize(
    ("reported", "expected"),
    [
        (15, signal.SIGTERM),  # podman 4.3
        ("SIGTERM", signal.SIGTERM),  # podman 5.4
        (37, signal.SIGRTMIN + 3),  # podman 4.3, an image with STOPSIGNAL SIGRTMIN+3
        ("SIGRTMIN+3", signal.SIGRTMIN + 3),  # podman 5.4, the same image
        ("SIGQUIT", signal.SIGQUIT),
        ("KILL", signal.SIGKILL),
        ("9", signal.SIGKILL),
    ],
)
def test_stop_signal_of_both_podman_versions(
    monkeypatch: pytest.MonkeyPatch, reported: object, expected: int
) -> None:
    _inspect_answer(monkeypatch, {"StopSignal": reported})
    container = podman.inspect_container("c0ffee")
    assert container is not None
    assert container.stop_signal == int(expected)
    assert (container.pid, container.running) == (4242, True)


@pytest.mark.parametrize("config", [{}, {"StopSignal": None}, {"StopSignal": 0}, {"StopSignal": ""}])
def test_absent_stop_signal_means_sigterm(monkeypatch: pytest.MonkeyPatch, config: dict[str, Any]) -> None:
    _inspect_answer(monkeypatch, config)
    container = podman.inspect_container("c0ffee")
    assert container is not None and container.stop_signal == int(signal.SIGTERM)


def test_an_unknown_stop_signal_is_an_error_not_a_guess(monkeypatch: pytest.MonkeyPatch) -> None:
    _inspect_answer(monkeypatch, {"StopSignal": "SIGBOGUS"})
    with pytest.raises(CommandError) as caught:
        podman.inspect_container("c0ffee")
    assert str(caught.value) == "/usr/bin/podman failed: unknown Config.StopSignal 'SIGBOGUS'"
