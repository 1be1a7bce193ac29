"""A signal during a D-Bus round trip: held until the call returns (sd-bus before systemd 253
fails the call with EINTR after the request went out), and a wait it interrupts just ends early."""

from __future__ import annotations

import errno
import os
import signal
from collections.abc import Iterator
from types import FrameType
from typing import Any

import pytest
from pystemd.dbusexc import DBusError

from compute_units.systemd import HELD, Systemd, held


@pytest.fixture
def received() -> Iterator[list[str]]:
    got: list[str] = []

    def handler(signum: int, frame: FrameType | None) -> None:
        got.append(signal.Signals(signum).name)

    previous = {sig: signal.signal(sig, handler) for sig in HELD}
    try:
        yield got
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def test_a_signal_sent_during_a_call_is_delivered_when_it_returns(received: list[str]) -> None:
    class Bus:
        def call_method(self, *args: Any) -> Any:
            os.kill(os.getpid(), signal.SIGINT)  # only this process: the test's own
            os.kill(os.getpid(), signal.SIGHUP)
            assert received == []  # a real sd-bus call would have failed with EINTR here
            return type("Reply", (), {"body": ["ok"]})()

    assert Systemd(Bus()).call(b"GetDefaultTarget", []) == ["ok"]
    assert sorted(received) == ["SIGHUP", "SIGINT"]
    assert not any(sig in signal.pthread_sigmask(signal.SIG_BLOCK, []) for sig in HELD)


def test_held_restores_the_mask_after_an_error(received: list[str]) -> None:
    with pytest.raises(RuntimeError), held():
        raise RuntimeError("a failed call")
    assert not any(sig in signal.pthread_sigmask(signal.SIG_BLOCK, []) for sig in HELD)


def test_a_wait_a_signal_interrupts_ends_early_and_other_errors_stay() -> None:
    class Bus:
        error = DBusError(-errno.EINTR, "Failed to wait for bus")

        def wait(self, usec: int) -> None:
            raise self.error

    bus = Bus()
    Systemd(bus)._wait(1.0)
    bus.error = DBusError(-errno.ECONNRESET, "Failed to wait for bus")
    with pytest.raises(type(bus.error)):
        Systemd(bus)._wait(1.0)
