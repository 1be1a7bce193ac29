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
) -> Result:
    """Run argv (never through a shell). With check, a non-zero exit raises CommandError."""
    try:
        proc = subprocess.run(
            list(argv),
            input=input,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except FileNotFoundError as exc:
        raise CommandError(list(argv), 127, "", f"{argv[0]}: command not found") from exc
    except subprocess.TimeoutExpired as exc:
        raise CommandError(list(argv), 124, "", f"timed out after {timeout} s") from exc
    result = Result(tuple(argv), proc.returncode, proc.stdout, proc.stderr)
    if check and proc.returncode != 0:
        raise CommandError(list(argv), proc.returncode, proc.stdout, proc.stderr)
    return result
