"""A thread that takes a sample every `interval` seconds between __enter__ and __exit__."""

from __future__ import annotations

import threading
import time
from typing import Generic, Self, TypeVar

T = TypeVar("T")


class Sampler(Generic[T]):
    """Records (monotonic time, `sample()`) every `interval` s; subclasses say what a sample is."""

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self.samples: list[tuple[float, T]] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def sample(self) -> T:
        raise NotImplementedError

    def finish(self) -> None:
        """Called in the sampling thread after the last sample (close connections here)."""

    def __enter__(self) -> Self:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                self.samples.append((time.monotonic(), self.sample()))
                self._stop.wait(self.interval)  # the sampling period itself, not a wait for an event
        finally:
            self.finish()
