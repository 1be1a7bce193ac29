"""SIGINT, SIGTERM and SIGHUP during an upgrade: finish the step in flight, then stop cleanly.

The first signal only sets a flag that the engine reads between steps (it then commits or rolls
back and says which). A second one abandons at once: `Abandoned` is raised from the handler, the
command prints exactly what state is left and what to run. Writing to a terminal that is gone (a
dropped ssh connection) never stops the engine.
"""

from __future__ import annotations

import contextlib
import signal
import sys
from types import FrameType, TracebackType

SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class Abandoned(BaseException):
    """A second signal: stop now, wherever we are (a BaseException, so no step swallows it)."""

    def __init__(self, signame: str) -> None:
        super().__init__(signame)
        self.signame = signame


class SignalGuard:
    """Context manager; `interrupted()` is the first signal's name, or None."""

    def __init__(self, what: str = "the upgrade") -> None:
        self.what = what
        self.first: str | None = None
        self._previous: dict[int, object] = {}

    def interrupted(self) -> str | None:
        return self.first

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        name = signal.Signals(signum).name
        if self.first is None:
            self.first = name
            _say(
                f"compute-units: {name}: finishing the step in flight, then {self.what} stops at a "
                "consistent state (committed or rolled back); send it again to abandon at once"
            )
            return
        raise Abandoned(name)

    def __enter__(self) -> SignalGuard:
        for sig in SIGNALS:
            self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, tb: TracebackType | None
    ) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)  # type: ignore[arg-type]


def _say(message: str) -> None:
    with contextlib.suppress(OSError, ValueError):
        print(message, file=sys.stderr, flush=True)
