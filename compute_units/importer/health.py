"""Health checks of a run line: --health-* and --no-healthcheck → health:."""

from __future__ import annotations

import json

from .base import MapperBase
from .values import go_duration_ms, spec_duration

DOCKER_HEALTH_DEFAULTS = "interval 30s, timeout 30s, start period 0s, retries 3"
SPEC_HEALTH_DEFAULTS = "interval 30s, timeout 5s, start period 20s, retries 3"
_SHELL_META = set("|&;<>()$`\\\"'*?[]#~{}!\n")


class HealthMapper(MapperBase):
    def finish_health(self) -> None:
        options = self.health_options
        command_option = next((o for o in reversed(options) if o.name == "--health-cmd"), None)
        if self.no_healthcheck or (command_option is not None and command_option.value in ("none", "NONE")):
            for option in options:
                if option.name != "--health-cmd":
                    self.note(f"{option.shown} ignored: the health check is disabled")
            if "--no-healthcheck" not in self.podman_args:
                self.podman_args.append("--no-healthcheck")
                self.note("health check disabled: --no-healthcheck copied to podman_args")
            return
        if command_option is None:
            for option in options:
                self.dropped(option, "health settings without --health-cmd cannot be expressed")
            return
        assert command_option.value is not None
        argv = self.health_command(command_option.value)
        if argv is None:
            return
        self.health = {"command": argv}
        given: set[str] = set()
        for option in options:
            if option.name == "--health-cmd":
                continue
            assert option.value is not None
            key = option.name.removeprefix("--health-").replace("-", "_")
            if option.name == "--health-retries":
                if not option.value.isdigit():
                    self.error(f"--health-retries '{option.value}': expected a positive integer")
                elif int(option.value) == 0:
                    self.note("--health-retries=0 means the default (3)")
                else:
                    self.health["retries"] = int(option.value)
                    given.add(key)
                continue
            ms = go_duration_ms(option.value)
            if ms is None:
                self.error(f"{option.written} '{option.value}': expected a duration such as 30s or 1m30s")
            elif ms == 0:
                self.note(f"{option.shown} means the default")
            elif ms < 1000:
                self.error(f"{option.written} '{option.value}': compute-units needs at least 1s")
            elif ms != round(ms):
                self.error(f"{option.written} '{option.value}': compute-units needs whole milliseconds")
            else:
                self.health[key] = spec_duration(ms)
                given.add(key)
        missing = [k for k in ("interval", "timeout", "start_period", "retries") if k not in given]
        if missing:
            self.note(
                f"health check: {', '.join(m.replace('_', ' ') for m in missing)} not given; compute-units' "
                f"defaults ({SPEC_HEALTH_DEFAULTS}) apply, docker's were {DOCKER_HEALTH_DEFAULTS}"
            )

    def health_command(self, value: str) -> list[str] | None:
        if value.startswith("["):
            try:
                parsed = json.loads(value)
            except ValueError:
                parsed = None
            if not isinstance(parsed, list) or not parsed or not all(isinstance(p, str) for p in parsed):
                self.error(f"--health-cmd '{value}': not a JSON array of strings")
                return None
            if parsed[0] == "CMD":
                parsed = parsed[1:]
            elif parsed[0] == "CMD-SHELL":
                parsed = ["/bin/sh", "-c", " ".join(parsed[1:])]
            if not parsed:
                self.error(f"--health-cmd '{value}': no command")
                return None
            return list(parsed)
        if not value.strip():
            self.error("--health-cmd: no command")
            return None
        if not any(c in _SHELL_META for c in value):
            return value.split()
        # docker runs a string health check with /bin/sh -c: so do we
        return ["/bin/sh", "-c", value]
