"""One parsed run line → one spec (as an ordered mapping), with notes, warnings and errors.

Each option is handled by what the registry (`options`) says of it: options that map to typed
spec keys have a handler here (dispatched by canonical name), foreground/terminal options are
ignored with a note, options compute-units sets for systemd are dropped with a warning, options a
spec's podman_args may carry are copied there as `--opt=value`, and the rest are dropped with
the registry's reason.
"""

from __future__ import annotations

import json
from collections.abc import Callable

from .. import options as registry
from ..model import NAMESPACES, ImageRef
from ..spec import NAME_RE, parse_image
from .environment import EnvironmentMapper
from .health import HealthMapper
from .mounts import MountMapper
from .results import SecretValue
from .runline import BOOLEANS, Option, RunLine

RESTART_MAP = {"no": "no", "always": "always", "unless-stopped": "always", "on-failure": "on-failure"}
TERMINAL_NOTE = "under systemd the container runs detached, without a terminal"


def provisional_name(run: RunLine) -> str | None:
    """The service name a line will get (for --command), before the full mapping."""
    for option in reversed(run.options):
        if option.name == "--name":
            return option.value
    ref, _ = parse_image(run.image.text)
    return ref.repository.rsplit("/", 1)[-1] if ref is not None else None


def _value(option: Option) -> str:
    assert option.value is not None  # the registry says it takes one
    return option.value


def _takes_value(name: str) -> bool:
    known = registry.lookup(name)
    return known is not None and known.takes_value


class Mapper(MountMapper, EnvironmentMapper, HealthMapper):
    """Builds one spec from one parsed run line."""

    host_network = False
    host_pid = False

    def build(self) -> tuple[dict[str, object] | None, list[SecretValue]]:
        run = self.run
        options = run.options
        self.host_network = any(o.name == "--network" and o.value == "host" for o in options)
        self.host_pid = any(o.name == "--pid" and o.value == "host" for o in options)
        env_options: list[Option] = []
        for option in options:
            handler = _HANDLERS.get(option.name)
            known = registry.lookup(option.name)
            if option.name in ("--env", "--env-file"):
                env_options.append(option)
            elif handler is not None:
                handler(self, option)
            elif known is not None and known.terminal:
                self.note(f"{option.shown} ignored: {TERMINAL_NOTE}")
            elif known is not None and known.systemd:
                self.warn(f"{option.shown}: not imported: compute-units sets {option.name} itself")
            elif known is not None and known.passes:
                self.pass_through(option)
            else:
                self.dropped(option, known.reason if known is not None and known.reason else "unknown option")
        self.environment_from(env_options)
        self.finish_health()
        image = self.image()
        if self.failed or image is None:
            return None, []
        name = self.name or provisional_name(run) or ""
        command = self.command(name)
        if self.failed:
            return None, []
        if self.restart is None:
            self.note(
                "no --restart: docker would not restart the container; the spec keeps "
                "compute-units' default restart: on-failure"
            )
        data: dict[str, object] = {"name": name, "description": f"Imported from {run.engine} run"}
        data["image"] = image
        if command is not None:
            data["command"] = command
        if self.namespaces:
            data["host_namespaces"] = [ns for ns in NAMESPACES if ns in self.namespaces]
        if self.privileged:
            data["privileged"] = True
        if self.mounts:
            data["mounts"] = list(self.mounts.values())
        if self.devices:
            data["devices"] = self.devices
        if self.environment:
            data["environment"] = self.environment
        secrets: dict[str, dict[str, str]] = {}
        for variable, value in self.secret_values.items():
            secrets[variable] = {"file": str(value.path)}
        for variable, podman_secret in self.podman_secrets.items():
            secrets[variable] = {"podman_secret": podman_secret}
        if secrets:
            data["secrets"] = secrets
        if self.health:
            data["health"] = self.health
        if self.stop_timeout is not None:
            data["stop_timeout"] = self.stop_timeout
        if self.restart is not None:
            data["restart"] = self.restart
        if self.podman_args:
            data["podman_args"] = self.podman_args
        found = [
            SecretValue(name, v.variable, v.path, v.value, v.origin, v.where)
            for v in self.secret_values.values()
        ]
        return data, found

    def pass_through(self, option: Option) -> None:
        name = option.name
        if (
            name
            in (
                "--ip",
                "--ip6",
                "--mac-address",
                "--expose",
                "--dns",
                "--dns-option",
                "--dns-search",
            )
            and self.host_network
        ):
            self.dropped(option, "meaningless with the host network")
            return
        if option.value is None:
            self.podman_args.append(name)
        elif not _takes_value(name):  # a boolean given as --opt=true|false
            if not BOOLEANS[option.value]:
                return
            self.podman_args.append(name)
        else:
            self.podman_args.append(f"{name}={option.value}")
            if option.expands:
                self.shell_reference(option.shown)
        self.note(f"{option.shown} copied to podman_args")

    # -- the options that map to typed keys (or need the other options to decide)
    def namespace(self, option: Option) -> None:
        namespace = registry.namespace_of(option.name)
        assert namespace is not None
        if option.value == "host":
            if namespace not in self.namespaces:
                self.namespaces.append(namespace)
        elif option.value in ("", "private", "bridge", "default", "shareable"):
            self.note(f"{option.shown} is the default: nothing to import")
        else:
            self.dropped(option, "only the host namespace can be expressed (host_namespaces)")

    def service_name(self, option: Option) -> None:
        value = _value(option)
        if not NAME_RE.match(value):
            self.error(
                f"--name '{value}' is not a valid service name",
                "use lowercase letters, digits, '_', '.' and '-', starting with a letter or digit",
            )
        self.name = value

    def privileged_flag(self, option: Option) -> None:
        self.privileged = option.value is None or BOOLEANS[option.value]

    def health_option(self, option: Option) -> None:
        if option.name == "--no-healthcheck":
            self.no_healthcheck = option.value is None or BOOLEANS[option.value]
        else:
            self.health_options.append(option)

    def stop_timeout_option(self, option: Option) -> None:
        value = _value(option)
        if not value.isdigit() or not 1 <= int(value) <= 3600:
            self.error(f"--stop-timeout '{value}': expected whole seconds from 1 to 3600")
        else:
            self.stop_timeout = f"{int(value)}s"

    def entrypoint_option(self, option: Option) -> None:
        value = _value(option)
        self.entrypoint_given = option
        if not value.startswith("["):
            self.entrypoint = [value]
            return
        try:
            parsed = json.loads(value)
        except ValueError:
            parsed = None
        if not isinstance(parsed, list) or not all(isinstance(p, str) for p in parsed):
            self.error(f"--entrypoint '{value}': not a JSON array of strings")
            return
        self.entrypoint = parsed

    def init_option(self, option: Option) -> None:
        if option.value is not None and not BOOLEANS[option.value]:
            return
        if self.host_pid:
            self.dropped(option, "podman refuses --init with the host PID namespace")
        else:
            self.podman_args.append("--init")
            self.note("--init copied to podman_args")

    def label(self, option: Option) -> None:
        value = _value(option)
        if value.startswith("compute-units."):
            self.dropped(option, "labels compute-units.* are set by compute-units")
        else:
            self.podman_args.append(f"--label={value}")
            self.note(f"{option.shown} copied to podman_args")

    def publish(self, option: Option) -> None:
        name, value = option.name, option.value
        if self.host_network:
            self.dropped(option, "published ports are discarded with the host network")
        elif value is None or name == "--publish":
            self.podman_args.append(name if value is None else f"{name}={value}")
            self.note(f"{option.shown} copied to podman_args")
        elif BOOLEANS[value]:
            self.podman_args.append(name)

    def restart_policy(self, option: Option) -> None:
        value = _value(option)
        policy, _, count = value.partition(":")
        if policy not in RESTART_MAP or (count and (policy != "on-failure" or not count.isdigit())):
            self.error(f"--restart '{value}': expected no, always, unless-stopped or on-failure[:N]")
            return
        self.restart = RESTART_MAP[policy]
        if policy == "unless-stopped":
            self.note(
                "--restart=unless-stopped is restart: always (a unit stopped by systemctl stays stopped)"
            )
        if count:
            self.note(
                f"--restart={value}: the retry limit {count} is not imported; "
                "systemd's start limit applies instead"
            )

    def image(self) -> str | None:
        word = self.run.image
        ref, reason = parse_image(word.text)
        if ref is None:
            hint = "the image refers to a shell variable; write the real reference" if word.expands else None
            self.error(f"invalid image '{word.text}': {reason}", hint)
            return None
        if ref.registry is None and self.run.engine == "docker":
            repository = ref.repository if "/" in ref.repository else f"library/{ref.repository}"
            qualified = str(ImageRef("docker.io", repository, ref.tag, ref.digest))
            self.note(
                f"image '{word.text}' is a Docker Hub short name: written as '{qualified}' "
                "(podman under systemd cannot ask which registry to use)"
            )
            return qualified
        return word.text

    def command(self, name: str) -> list[str] | None:
        args = [w.text for w in self.run.args]
        for word in self.run.args:
            if word.expands:
                self.shell_reference(f"argument '{word.text}'")
        if self.command_override is not None:
            if args:
                self.note(f"--command {name}=… replaces the arguments given after the image")
            args = list(self.command_override)
        if self.entrypoint is not None and self.entrypoint_given is not None:
            self.podman_args.append(f"--entrypoint={self.entrypoint_given.value}")
            self.note(f"{self.entrypoint_given.shown} copied to podman_args")
        return args or None


_Handler = Callable[[Mapper, Option], None]
_HANDLERS: dict[str, _Handler] = {
    **dict.fromkeys(("--pid", "--network", "--ipc", "--uts", "--cgroupns"), Mapper.namespace),
    "--name": Mapper.service_name,
    "--privileged": Mapper.privileged_flag,
    "--volume": lambda m, o: m.volume(o, _value(o)),
    "--mount": lambda m, o: m.mount(o, _value(o)),
    "--device": lambda m, o: m.device(o, _value(o)),
    "--secret": lambda m, o: m.podman_secret(o, _value(o)),
    **dict.fromkeys(
        (
            "--health-cmd",
            "--health-interval",
            "--health-timeout",
            "--health-start-period",
            "--health-retries",
        ),
        Mapper.health_option,
    ),
    "--no-healthcheck": Mapper.health_option,
    "--stop-timeout": Mapper.stop_timeout_option,
    "--restart": Mapper.restart_policy,
    "--entrypoint": Mapper.entrypoint_option,
    "--init": Mapper.init_option,
    "--label": Mapper.label,
    "--publish": Mapper.publish,
    "--publish-all": Mapper.publish,
}
