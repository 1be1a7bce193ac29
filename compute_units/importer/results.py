"""What an import produces: the problems (as `Diagnostic`s located on a script line or the command
line), the specs, and the secret values taken out of them."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from ..errors import Diagnostic, Location, SpecError

COMMAND_LINE = Location(Path("<command line>"), 0, 0)


def at(source: str, line: int) -> Location:
    """Where a command line came from: script:line, or our own command line."""
    return Location(Path(source), line, 0) if source else COMMAND_LINE


def described(where: Location) -> str:
    return "the command line" if where == COMMAND_LINE else str(where)


def problem(where: Location, text: str, hint: str | None = None, severity: str = "error") -> Diagnostic:
    return Diagnostic(where, "", text, hint, severity)


class ImportFailed(SpecError):
    """One or more command lines cannot be imported (exit 2; nothing is written)."""

    def __init__(self, problems: Sequence[Diagnostic]) -> None:
        super().__init__(diagnostics=list(problems))
        self.message = f"{len(self.diagnostics)} error(s) in the command lines"

    @property
    def problems(self) -> list[Diagnostic]:
        return self.diagnostics


@dataclass(frozen=True)
class SecretValue:
    """A secret taken out of the spec: `value` goes to the file `path` (None: unknown here)."""

    service: str
    variable: str
    path: PurePosixPath  # the host path the spec names
    value: str | None
    origin: str  # how the value was given: the shell reference ('$PASSWORD'), or a description
    where: Location


@dataclass
class ImportedSpec:
    name: str
    where: Location
    text: str  # the spec YAML
    secrets: list[SecretValue] = field(default_factory=list)
