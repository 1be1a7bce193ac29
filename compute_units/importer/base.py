"""The state one run line's mapping builds up, and how it reports (shared by the mapper's parts)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import PurePosixPath

from ..errors import Diagnostic
from .results import SecretValue, problem
from .runline import Option, RunLine


class MapperBase:
    """Builds one spec (as an ordered mapping) from one parsed run line."""

    def __init__(
        self,
        run: RunLine,
        secrets_dir: PurePosixPath,
        env_files: Mapping[str, str],
        command: Sequence[str] | None,
    ) -> None:
        self.run = run
        self.where = run.where
        self.secrets_dir = secrets_dir
        self.env_files = env_files
        self.command_override = command
        self.messages: list[Diagnostic] = []
        self.failed = False
        self.name: str | None = None
        self.namespaces: list[str] = []
        self.privileged = False
        self.mounts: dict[str, str] = {}  # target -> short form
        self.devices: list[str] = []
        self.environment: dict[str, str] = {}
        self.secret_values: dict[str, SecretValue] = {}
        self.podman_secrets: dict[str, str] = {}
        self.health: dict[str, object] = {}
        self.health_options: list[Option] = []
        self.no_healthcheck = False
        self.stop_timeout: str | None = None
        self.restart: str | None = None
        self.entrypoint: list[str] | None = None
        self.entrypoint_given: Option | None = None
        self.podman_args: list[str] = []

    # -- messages

    # -- messages
    def error(self, text: str, hint: str | None = None) -> None:
        self.messages.append(problem(self.where, text, hint))
        self.failed = True

    def warn(self, text: str, hint: str | None = None) -> None:
        self.messages.append(problem(self.where, text, hint, "warning"))

    def note(self, text: str) -> None:
        self.messages.append(problem(self.where, text, None, "note"))

    def dropped(self, option: Option, reason: str) -> None:
        self.warn(f"{option.shown}: not imported: {reason}")

    # -- the mapping

    def shell_reference(self, shown: str) -> None:
        self.warn(
            f"{shown}: refers to a shell variable or command, written as-is; "
            "the container receives this text literally",
            "replace it with the real value in the spec",
        )
