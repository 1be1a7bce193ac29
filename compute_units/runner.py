"""The one place that runs subprocesses: logs nothing secret, returns typed results, raises CommandError."""

from __future__ import annotations

import subprocess
from collections.abc import Sequence
from dataclasses import dataclass

from .errors import CommandError


@dataclass(frozen=True)
class Result:
    argv: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str


def run(
    argv: Sequence[str],
    *,
    check: bool = True,
    input: str | None = None,
    timeout: float | None = 300,
    show_stderr: bool = False,
) -> Result:
    """Run argv (never through a shell). With check, a non-zero exit raises CommandError.

    `show_stderr` leaves the command's stderr on ours (a terminal: podman draws its pull progress
    there) instead of capturing it; the result's stderr is then empty.
    """
    try:
        proc = subprocess.run(
            list(argv),
            input=input,
            # never the terminal: in a process group of its own, a child reading it would be stopped
            stdin=None if input is not None else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=None if show_stderr else subprocess.PIPE,
            text=True,
            timeout=timeout,
            check=False,
            # a process group of its own: Ctrl-C at the terminal reaches compute-units only, which
            # finishes the step in flight (a podman child killed by it would fail that step)
            process_group=0,
        )
    except FileNotFoundError as exc:
        raise CommandError(list(argv), 127, "", f"{argv[0]}: command not found") from exc
    except subprocess.TimeoutExpired as exc:
        raise CommandError(list(argv), 124, "", f"timed out after {timeout} s") from exc
    stderr = proc.stderr or ""
    result = Result(tuple(argv), proc.returncode, proc.stdout, stderr)
    if check and proc.returncode != 0:
        raise CommandError(list(argv), proc.returncode, proc.stdout, stderr)
    return result
