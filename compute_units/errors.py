"""Error types. Every failure the tool reports is one of these, never a bare tuple or string."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


class ComputeUnitsError(Exception):
    """Base class: a failure with a message meant for an operator, and an exit code."""

    exit_code = 1

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
    exit_code = 2

    def __post_init__(self) -> None:
        errors = [d for d in self.diagnostics if d.severity == "error"]
        super().__init__(f"{len(errors)} error(s) in service specs")

    def __str__(self) -> str:
        return "\n".join(d.format() for d in self.diagnostics)


class UsageError(ComputeUnitsError):
    """The command line asked for something that does not exist or cannot be done."""

    exit_code = 2


class InstallError(ComputeUnitsError):
    """Writing or removing unit files failed."""

    exit_code = 1


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

    exit_code = 4
