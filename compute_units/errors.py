"""Error types. Every failure the tool reports is one of these, never a bare tuple or string."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum
from pathlib import Path


class ExitCode(IntEnum):
    """Every exit code of `compute-units`; `--help`, the man page and docs/cli.md are made from this."""

    OK = 0
    FAILED = 1
    USAGE = 2
    NOT_READY = 3
    NOT_ROOT = 4
    ROLLED_BACK = 5
    INTERRUPTED = 6
    DEGRADED = 7

    @property
    def meaning(self) -> str:
        return _MEANINGS[self]


_MEANINGS = {
    ExitCode.OK: "success",
    ExitCode.FAILED: "an operation failed (job, health check, pull, write, rollback)",
    ExitCode.USAGE: "invalid spec or command line (nothing was written)",
    ExitCode.NOT_READY: "host not ready (systemd/D-Bus unreachable, unit not generated, preflight refused)",
    ExitCode.NOT_ROOT: "needs root",
    ExitCode.ROLLED_BACK: "upgrade failed and was rolled back: the previous image runs again",
    ExitCode.INTERRUPTED: "interrupted by a signal: the message says the state it left (committed, "
    "rolled back, or abandoned and what to run)",
    ExitCode.DEGRADED: "status: a managed service is not running its recorded image, or an upgrade "
    "is unfinished",
}


def exit_codes_text() -> str:
    """One line per exit code, for --help and the man page."""
    return "\n".join(f"{int(code)} {code.meaning}" for code in ExitCode)


class ComputeUnitsError(Exception):
    """Base class: a failure with a message meant for an operator, and an exit code."""

    exit_code: int = ExitCode.FAILED

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint


@dataclass(frozen=True, order=True)
class Location:
    """A position in a spec file or script (1-based line and column; 0: not known, not shown)."""

    path: Path
    line: int = 1
    column: int = 1

    def __str__(self) -> str:
        line = f":{self.line}" if self.line else ""
        column = f":{self.column}" if self.line and self.column else ""
        return f"{self.path}{line}{column}"


@dataclass(frozen=True)
class Diagnostic:
    """One problem found in a spec or a command line: where, which key, what, and how to fix it."""

    location: Location
    key: str
    message: str
    hint: str | None = None
    severity: str = "error"  # "error", "warning" or "note"

    def format(self) -> str:
        prefix = f"{self.location}: "
        if self.severity != "error":
            prefix += f"{self.severity}: "
        text = f"{prefix}{self.key}: {self.message}" if self.key else f"{prefix}{self.message}"
        if self.hint:
            text += f"\n    hint: {self.hint}"
        return text

    def as_dict(self) -> dict[str, object]:
        return {
            "file": str(self.location.path),
            "line": self.location.line,
            "column": self.location.column,
            "key": self.key,
            "message": self.message,
            "hint": self.hint,
            "severity": self.severity,
        }


@dataclass
class SpecError(ComputeUnitsError):
    """One or more specs are invalid. Carries every diagnostic, not just the first."""

    diagnostics: list[Diagnostic] = field(default_factory=list)
    exit_code = ExitCode.USAGE

    def __post_init__(self) -> None:
        errors = [d for d in self.diagnostics if d.severity == "error"]
        super().__init__(f"{len(errors)} error(s) in service specs")

    def __str__(self) -> str:
        return "\n".join(d.format() for d in self.diagnostics)


class UsageError(ComputeUnitsError):
    """The command line asked for something that does not exist or cannot be done."""

    exit_code = ExitCode.USAGE


class InstallError(ComputeUnitsError):
    """Writing or removing unit files failed."""

    exit_code = ExitCode.FAILED


class CommandError(ComputeUnitsError):
    """A subprocess (podman, systemd-analyze, ...) failed."""

    def __init__(self, argv: list[str], returncode: int, stdout: str = "", stderr: str = "") -> None:
        self.argv = argv
        self.returncode = returncode
        self.stdout = stdout
        self.stderr = stderr
        detail = stderr.strip().splitlines()[-1] if stderr.strip() else f"exit status {returncode}"
        super().__init__(f"{argv[0]} failed: {detail}")


class SystemdError(ComputeUnitsError):
    """systemd is unreachable or a job did not end as asked."""


class NotRootError(ComputeUnitsError):
    """The command changes the host and needs root."""

    exit_code = ExitCode.NOT_ROOT


def describe(exc: BaseException) -> str:
    """An exception as one line for an operator: our message, an OSError's text and file, or its type."""
    if isinstance(exc, ComputeUnitsError):
        return exc.message
    if isinstance(exc, OSError):
        where = f" ({exc.filename})" if exc.filename else ""
        return f"{exc.strerror or exc}{where}"
    return f"{type(exc).__name__}: {exc}"
