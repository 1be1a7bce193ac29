"""Run the real CLI with a crash injected at one crash point: `python -m tests.harness.crash_cli POINT ARGS…`.

The crash goes through the engine's injected `checkpoint` (compute_units.effects), not through
anything in production code: the real effects bundle is wrapped so that reaching POINT kills this
process with SIGKILL, as a power cut or `kill -9` would.
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path
from typing import Any

from compute_units import effects, main


def _crash_at(point: str) -> None:
    real = effects.real

    def wrapped(*args: Any, **kwargs: Any) -> effects.Effects:
        fx = real(*args, **kwargs)

        def checkpoint(reached: str) -> None:
            if reached == point:
                os.kill(os.getpid(), signal.SIGKILL)

        fx.checkpoint = checkpoint
        return fx

    effects.real = wrapped


if __name__ == "__main__":
    _crash_at(sys.argv[1])
    sys.argv = [str(Path(sys.argv[0]).name), *sys.argv[2:]]
    main.run()
