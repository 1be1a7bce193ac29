"""The typed service model. Frozen dataclasses, built only by `spec.load_*`; nothing here does I/O."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from .errors import Location

NAMESPACES = ("pid", "network", "ipc", "uts", "cgroup")
RESTART_VALUES = (
    "no",
    "always",
    "on-success",
    "on-failure",
    "on-abnormal",
    "on-abort",
    "on-watchdog",
)
PROPAGATIONS = ("private", "rprivate", "shared", "rshared", "slave", "rslave")


@dataclass(frozen=True)
class ImageRef:
    """A parsed image reference: [registry/]repository[:tag][@digest]."""

    registry: str | None
    repository: str
    tag: str | None
    digest: str | None

    @property
    def name(self) -> str:
        """registry/repository without tag or digest."""
        return f"{self.registry}/{self.repository}" if self.registry else self.repository

    def __str__(self) -> str:
        text = self.name
        if self.tag:
            text += f":{self.tag}"
        if self.digest:
            text += f"@{self.digest}"
        return text


@dataclass(frozen=True)
class Mount:
    source: PurePosixPath
    target: PurePosixPath
    read_only: bool = False
    propagation: str | None = None
    create: bool = False  # mkdir -p the source before the container starts

    def volume_arg(self) -> str:
        options = ["ro"] if self.read_only else []
        if self.propagation:
            options.append(self.propagation)
        text = f"{self.source}:{self.target}"
        return f"{text}:{','.join(options)}" if options else text


@dataclass(frozen=True)
class Secret:
    """A secret environment variable: from a host file or an existing podman secret."""

    variable: str
    file: PurePosixPath | None = None
    podman_secret: str | None = None


@dataclass(frozen=True)
class Health:
    command: tuple[str, ...]
    interval_ms: int = 30_000
    timeout_ms: int = 5_000
    start_period_ms: int = 20_000
    retries: int = 3


@dataclass(frozen=True)
class Preflight:
    kernel_modules: tuple[str, ...] = ()
    host_units_inactive: tuple[str, ...] = ()
    paths: tuple[PurePosixPath, ...] = ()


@dataclass(frozen=True)
class Service:
    """One compute-node service: one image, one container, one systemd unit."""

    name: str
    image: ImageRef
    source: Path
    location: Location
    description: str = ""
    command: tuple[str, ...] | None = None
    host_namespaces: tuple[str, ...] = ()
    privileged: bool = False
    mounts: tuple[Mount, ...] = ()
    devices: tuple[PurePosixPath, ...] = ()
    environment: tuple[tuple[str, str], ...] = ()
    secrets: tuple[Secret, ...] = ()
    requires: tuple[str, ...] = ()
    requires_at: tuple[Location, ...] = ()  # where each `requires` item is written (for errors)
    health: Health | None = None
    stop_timeout_s: int = 10
    restart: str = "on-failure"
    keeps_vms: bool = False
    # why restarting it hurts (e.g. cuts every guest's network); None: not disruptive. A restart,
    # upgrade or apply that would restart it needs --allow-disruptive (see disruptive.py).
    disruptive: str | None = None
    preflight: Preflight = field(default_factory=Preflight)
    podman_args: tuple[str, ...] = ()
    spec_hash: str = ""

    @property
    def unit(self) -> str:
        return f"{self.name}.service"


@dataclass(frozen=True)
class ServiceSet:
    """All services of a node, in dependency order (a service comes after what it requires)."""

    services: tuple[Service, ...]

    def __iter__(self) -> Iterator[Service]:
        return iter(self.services)

    def __len__(self) -> int:
        return len(self.services)

    def names(self) -> list[str]:
        return [s.name for s in self.services]

    def get(self, name: str) -> Service | None:
        for service in self.services:
            if service.name == name or service.unit == name:
                return service
        return None

    def dependents(self, name: str) -> list[Service]:
        """Services that require `name`, directly or transitively, in dependency order."""
        wanted = {name}
        found: list[Service] = []
        for service in self.services:
            if wanted.intersection(service.requires):
                wanted.add(service.name)
                found.append(service)
        return found
