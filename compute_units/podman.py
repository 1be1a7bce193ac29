"""The only access to images and containers: podman's CLI with JSON output, typed results."""

from __future__ import annotations

import json
import signal
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import runner
from .errors import CommandError

PODMAN = "/usr/bin/podman"


@dataclass(frozen=True)
class Container:
    id: str
    name: str
    image: str  # the reference the container was created from
    image_id: str
    running: bool
    pid: int
    health: str  # "healthy", "unhealthy", "starting", or "" when the container has no health check
    started_at: str
    stop_signal: int  # the signal podman stops it with (the image's STOPSIGNAL, SIGTERM by default)


def read_cidfile(unit: str, run_dir: Path = Path("/run")) -> str | None:
    """The container id systemd's unit recorded (%t/%n.ctr-id), or None when it has none."""
    try:
        text = (run_dir / f"{unit}.ctr-id").read_text().strip()
    except OSError:
        return None
    return text or None


def unit_container(unit: str, run_dir: Path = Path("/run")) -> Container | None:
    """The container a unit started last (its cidfile), or None when there is none (any more)."""
    cid = read_cidfile(unit, run_dir)
    return inspect_container(cid) if cid else None


def _inspect(kind: str, ref: str) -> dict[str, Any] | None:
    """`podman KIND inspect` of one object, or None when podman does not know it."""
    result = runner.run([PODMAN, kind, "inspect", "--format", "json", ref], check=False)
    if result.returncode != 0:
        return None
    data: list[dict[str, Any]] = json.loads(result.stdout)
    return data[0] if data else None


def inspect_container(ref: str) -> Container | None:
    c = _inspect("container", ref)
    if c is None:
        return None
    state = c.get("State", {})
    health = state.get("Health") or state.get("Healthcheck") or {}
    return Container(
        id=c["Id"],
        name=c.get("Name", ""),
        image=c.get("ImageName", ""),
        image_id=c.get("Image", ""),
        running=bool(state.get("Running")),
        pid=int(state.get("Pid") or 0),
        health=str(health.get("Status", "")),
        started_at=str(state.get("StartedAt", "")),
        stop_signal=signal_number(c.get("Config", {}).get("StopSignal")),
    )


def signal_number(value: object) -> int:
    """A container's stop signal: podman 4.3 inspects it as a number, podman 5 as "SIGTERM"."""
    if isinstance(value, int):
        return value
    text = str(value or "").strip()
    if text.isdigit():
        return int(text)
    name = text.upper() if text.upper().startswith("SIG") else f"SIG{text.upper()}"
    known = signal.Signals.__members__.get(name)
    return int(known) if known is not None else int(signal.SIGTERM)


def repository_of(reference: str) -> str:
    """registry/repository of a reference, without :tag or @digest."""
    name = reference.split("@", 1)[0]
    return name.rsplit(":", 1)[0] if ":" in name.rsplit("/", 1)[-1] else name


def image_digest(image_id: str, repository: str | None = None) -> str | None:
    """The registry digest (sha256:...) of a local image, or None if it has none.

    With `repository`, the digest recorded for that repository wins: an image built here and
    pushed keeps its local manifest digest in `Digest`, which the registry does not know.
    """
    image = _inspect("image", image_id)
    if image is None:
        return None
    repo_digests = [str(d) for d in image.get("RepoDigests") or []]
    if repository is not None:
        for repo_digest in reversed(repo_digests):
            name, _, repo_digest_value = repo_digest.rpartition("@")
            if name == repository:
                return repo_digest_value
    own = image.get("Digest")
    if own:
        return str(own)
    return repo_digests[0].rsplit("@", 1)[-1] if repo_digests else None


def running_reference(unit: str, run_dir: Path = Path("/run")) -> str | None:
    """What the unit's container runs, as repository[:tag]@digest (None: no container, no digest)."""
    container = unit_container(unit, run_dir)
    if container is None:
        return None
    name = container.image.split("@", 1)[0]
    digest = image_digest(container.image_id, repository_of(name))
    return f"{name}@{digest}" if digest else None


def healthcheck(container: str, *, timeout: float = 120) -> bool:
    """Run the container's health check once; True when it passes within `timeout` seconds."""
    try:
        runner.run([PODMAN, "healthcheck", "run", container], timeout=timeout)
    except CommandError:
        return False
    return True


def image_exists(reference: str) -> bool:
    return runner.run([PODMAN, "image", "exists", reference], check=False).returncode == 0


class Podman:
    """Image and container access for the upgrade engine (effects.ContainersApi)."""

    def pull(self, reference: str, *, timeout: float, show_progress: bool) -> str:
        """Pull and return the image id. With `show_progress`, podman draws its bars on our stderr."""
        if show_progress:
            result = runner.run([PODMAN, "pull", reference], timeout=timeout, show_stderr=True)
        else:
            result = runner.run([PODMAN, "pull", "--quiet", reference], timeout=timeout)
        lines = result.stdout.strip().splitlines()
        if not lines:
            raise CommandError([PODMAN, "pull", reference], 0, "", "podman printed no image id")
        return lines[-1]

    def image_exists(self, reference: str) -> bool:
        return image_exists(reference)

    def image_digest(self, image_id: str, repository: str | None = None) -> str | None:
        return image_digest(image_id, repository)

    def unit_container(self, unit: str) -> Container | None:
        return unit_container(unit)

    def running_reference(self, unit: str) -> str | None:
        return running_reference(unit)

    def healthcheck(self, container: str, *, timeout: float) -> bool:
        return healthcheck(container, timeout=timeout)

    def exec(self, container: str, argv: Sequence[str], *, timeout: float) -> runner.Result:
        return runner.run([PODMAN, "exec", container, *argv], check=False, timeout=timeout)
