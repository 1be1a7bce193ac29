"""How a service's secrets reach its container, decided from facts about the host. Pure.

Two modes, chosen by podman's version (a fact the effects layer detects, `facts.py`):

native  podman >= 5.3: `--secret NAME,type=env,target=VAR`; podman masks the value in
        `podman inspect` (4.3 showed it in Config.Env). The image's ENTRYPOINT and CMD run as
        they would without secrets.
loader  older podman: the secret is mounted at /run/secrets/VAR (mode 0400) and a /bin/sh
        entrypoint exports it, then execs the image's own ENTRYPOINT and CMD (or `command:` in
        place of CMD, or a `--entrypoint` of podman_args in place of ENTRYPOINT): the argv is the
        one the container would run without secrets. podman resets CMD when --entrypoint is
        given, so CMD is passed explicitly; both come from the image's config (`ImageConfig`).

Units with secrets carry the mode in a header comment (`SECRETS_MARKER`), which `status` and
`doctor` read back.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from .errors import UsageError
from .model import Service

Mode = Literal["native", "loader"]
NATIVE_ENV_SECRETS = (5, 3)  # podman's first version whose type=env secrets inspect masks (measured)
SECRETS_DIR = "/run/secrets"
SECRETS_MARKER = "# Secrets: "  # header line of units with secrets: "# Secrets: MODE (why)"
SECRET_PREFIX = "compute-units"
_VERSION = re.compile(r"(\d+)\.(\d+)(?:\.(\d+))?")


@dataclass(frozen=True)
class ImageConfig:
    """What an image runs by default: its ENTRYPOINT and CMD (each possibly empty)."""

    entrypoint: tuple[str, ...] = ()
    cmd: tuple[str, ...] = ()


@dataclass(frozen=True)
class Plan:
    """The secret part of one service's `podman run`."""

    mode: Mode
    options: tuple[str, ...]  # --secret=... (and the loader's --entrypoint=...)
    command: tuple[str, ...] | None  # the argv after the image (None: the spec's command, if any)


class SecretFactsMissing(UsageError):
    """A fact the secrets of a service need is unknown (podman's version, an image's config)."""


def parse_version(text: str) -> tuple[int, int, int] | None:
    """(major, minor, patch) from `podman --version` output or a bare version; None if none."""
    match = _VERSION.search(text)
    if not match:
        return None
    return int(match.group(1)), int(match.group(2)), int(match.group(3) or 0)


def mode_for(version: tuple[int, ...]) -> Mode:
    return "native" if tuple(version[:2]) >= NATIVE_ENV_SECRETS else "loader"


def marker_line(mode: Mode) -> str:
    why = {
        "native": "podman >= 5.3: --secret type=env, masked in `podman inspect`",
        "loader": "podman < 5.3: mounted files, exported by a /bin/sh loader that runs the image's ENTRYPOINT and CMD",
    }
    return f"{SECRETS_MARKER}{mode} ({why[mode]})"


def read_marker(unit_text: str) -> str:
    """The secrets mode a unit file was rendered with ("" when it has no secrets marker)."""
    for line in unit_text.splitlines():
        if line.startswith(SECRETS_MARKER):
            return line[len(SECRETS_MARKER) :].split(" ", 1)[0]
        if line.startswith("["):
            break
    return ""


def podman_secret_name(service: Service, variable: str) -> str:
    return f"{SECRET_PREFIX}.{service.name}.{variable}"


def plan(
    service: Service,
    image: str,
    version: tuple[int, ...] | None,
    images: Mapping[str, ImageConfig],
) -> Plan | None:
    """The secret options of `service` running `image` (None: it has no secrets).

    SecretFactsMissing when podman's version, or in loader mode the image's config, is unknown.
    """
    if not service.secrets:
        return None
    if version is None:
        raise SecretFactsMissing(
            f"{service.name}: its secrets depend on podman's version, which is not known",
            hint="install podman (or pass the version where the command offers it) and run the command again",
        )
    mode = mode_for(version)
    names = [
        (s.podman_secret or podman_secret_name(service, s.variable), s.variable) for s in service.secrets
    ]
    if mode == "native":
        options = tuple(f"--secret={name},type=env,target={variable}" for name, variable in names)
        return Plan(mode, options, None)
    entrypoint, command = _loader_argv(service, image, images, version)
    options = (
        *(f"--secret={name},type=mount,mode=0400,target={variable}" for name, variable in names),
        f"--entrypoint={json.dumps(loader(service, entrypoint), separators=(',', ':'))}",
    )
    return Plan(mode, options, command)


def _loader_argv(
    service: Service, image: str, images: Mapping[str, ImageConfig], version: tuple[int, ...]
) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(ENTRYPOINT, CMD) as podman would run them without secrets."""
    given = spec_entrypoint(service)
    if given is not None:  # podman drops the image's CMD when --entrypoint is given
        return given, service.command or ()
    config = images.get(image)
    if config is None:
        shown = ".".join(str(v) for v in version)
        raise SecretFactsMissing(
            f"{service.name}: podman {shown} loads secrets through the image's own ENTRYPOINT and CMD, "
            f"and they are not known for {image} (not in the local store, never recorded)",
            hint=f"pull it first (`compute-units pull {service.name}` or `podman pull {image}`), "
            "then run the command again",
        )
    command = service.command if service.command is not None else config.cmd
    if not config.entrypoint and not command:
        raise SecretFactsMissing(
            f"{service.name}: image {image} has neither ENTRYPOINT nor CMD, so there is nothing to run",
            hint="give command: in the spec",
        )
    return config.entrypoint, command


def spec_entrypoint(service: Service) -> tuple[str, ...] | None:
    """The `--entrypoint` of podman_args as an argv (a JSON array or one word), if given."""
    for arg in service.podman_args:
        option, eq, value = arg.partition("=")
        if option == "--entrypoint" and eq:
            if value.startswith("["):
                try:
                    words = json.loads(value)
                except ValueError:
                    return (value,)
                if isinstance(words, list) and all(isinstance(w, str) for w in words):
                    return tuple(words)
            return (value,)
    return None


def loader(service: Service, entrypoint: tuple[str, ...]) -> list[str]:
    """The loader entrypoint: turns mounted secret files into variables, then execs its arguments.

    Its arguments are the image's ENTRYPOINT (after $0) and the CMD podman appends. Variable names
    are validated identifiers, safe in the script; trailing newlines of a secret file are dropped,
    as by $(cat). Needs /bin/sh in the image.
    """
    exports = " && ".join(
        f'{s.variable}="$(cat {SECRETS_DIR}/{s.variable})" && export {s.variable}' for s in service.secrets
    )
    return ["/bin/sh", "-c", f'{exports} && exec "$@"', "compute-units-secrets", *entrypoint]
