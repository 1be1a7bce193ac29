"""Environment and secrets of a run line: -e/--env, --env-file and --secret → environment: and
secrets: (secret-looking variables go to files, never into the spec)."""

from __future__ import annotations

import re

from ..spec import PODMAN_SECRET_RE
from .base import MapperBase
from .results import SecretValue
from .runline import Option
from .values import is_secret_name, parse_env_file

_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


class EnvironmentMapper(MapperBase):
    def environment_from(self, options: list[Option]) -> None:
        """Env files first, then -e in order (docker's precedence); secrets are split off."""
        assignments: list[tuple[Option, str, str | None, bool]] = []
        for option in sorted(options, key=lambda o: o.name != "--env-file"):
            assert option.value is not None
            if option.name == "--env-file":
                text = self.env_files.get(option.value)
                if text is None:
                    self.error(f"{option.shown}: the file was not read")
                    continue
                for name, value in parse_env_file(text):
                    assignments.append((option, name, value, False))
            else:
                name, eq, value = option.value.partition("=")
                assignments.append((option, name, value if eq else None, option.expands))
        for option, name, maybe_value, expands in assignments:
            if not _NAME_RE.match(name):
                self.error(f"{option.shown}: '{name}' is not a valid variable name")
                continue
            if is_secret_name(name):
                self.environment.pop(name, None)
                self.secret(name, maybe_value, expands, option)
                continue
            self.secret_values.pop(name, None)
            if maybe_value is None:
                self.warn(
                    f"{option.shown}: {name} takes its value from the environment of the shell "
                    "that ran the container; not imported",
                    f"add {name} to environment: in the spec",
                )
                self.environment.pop(name, None)
                continue
            if expands:
                self.warn(
                    f"environment {name}: '{maybe_value}' refers to a shell variable, written as-is; "
                    "the container receives this text literally",
                    "replace it with the real value in the spec",
                )
            self.environment[name] = maybe_value

    def secret(self, name: str, value: str | None, expands: bool, option: Option) -> None:
        path = self.secrets_dir / name.lower()
        if value is None:
            origin = "the environment of the shell that ran the container"
        elif expands:
            origin = f"the shell reference '{value}'"
            value = None
        else:
            origin = f"{option.written}" if option.name == "--env" else f"--env-file {option.value}"
        self.secret_values[name] = SecretValue("", name, path, value, origin, self.where)

    def podman_secret(self, option: Option, value: str) -> None:
        name, *rest = value.split(",")
        settings = dict(item.partition("=")[::2] for item in rest)
        if settings.get("type", "mount") != "env":
            self.dropped(option, "only environment secrets (type=env) can be expressed")
            return
        variable = settings.get("target") or name
        if not PODMAN_SECRET_RE.match(name):
            self.error(f"{option.shown}: invalid podman secret name '{name}'")
        elif not _NAME_RE.match(variable):
            self.error(f"{option.shown}: '{variable}' is not a valid variable name")
        else:
            self.podman_secrets[variable] = name
