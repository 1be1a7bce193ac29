"""Images and containers through podman's CLI (JSON output, typed results), via runner.py.

The engine, `apply`, `status` and `doctor` reach it through `effects.ContainersApi` (`Podman`);
the generated units run podman themselves, and the test harness drives its own."""

from __future__ import annotations

import json
import re
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
        stop_signal=stop_signal_number(c.get("Config", {}).get("StopSignal")),
    )


_REALTIME = re.compile(r"(?:SIG)?RTM(IN|AX)([+-]\d+)?")


def stop_signal_number(value: object) -> int:
    """Config.StopSignal as a number: podman 4 reports 15, podman 5 "SIGTERM"; absent means SIGTERM.

    Raises CommandError for a value that is neither, rather than stopping with a guessed signal.
    """
    if value is None or value == "" or value == 0:
        return int(signal.SIGTERM)
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    text = str(value).strip().upper()
    if text.isdigit():
        return int(text)
    name = text if text.startswith("SIG") else f"SIG{text}"
    if name in signal.Signals.__members__:
        return int(signal.Signals[name])
    realtime = _REALTIME.fullmatch(text)
    if realtime:
        base = signal.SIGRTMIN if realtime.group(1) == "IN" else signal.SIGRTMAX
        return int(base) + int(realtime.group(2) or 0)
    raise CommandError([PODMAN, "container", "inspect"], 0, "", f"unknown Config.StopSignal {value!r}")


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


def version() -> str:
    """podman's version as it prints it (`podman --version`: no storage, no API service)."""
    return runner.run([PODMAN, "--version"], timeout=60).stdout.strip()


def image_configs(references: Sequence[str]) -> dict[str, tuple[list[str], list[str]]]:
    """(ENTRYPOINT, CMD) of those `references` the local store has, in one podman call.

    podman prints the images it found and exits non-zero when one is missing: each found image is
    matched back by its tags and repository digests (repository:tag@digest by the digest).
    """
    if not references:
        return {}
    result = runner.run([PODMAN, "image", "inspect", "--format", "json", *references], check=False)
    try:
        images: list[dict[str, Any]] = json.loads(result.stdout or "[]")
    except ValueError:
        return {}
    found: dict[str, tuple[list[str], list[str]]] = {}
    for reference in references:
        name, at, digest = reference.partition("@")
        if at:
            wanted = f"{repository_of(name)}@{digest}"
            image = next((i for i in images if wanted in (i.get("RepoDigests") or [])), None)
        else:
            tagged = name if repository_of(name) != name else f"{name}:latest"
            image = next((i for i in images if tagged in (i.get("RepoTags") or [])), None)
        if image is not None:
            found[reference] = _entrypoint_and_cmd(image)
    return found


def _entrypoint_and_cmd(image: dict[str, Any]) -> tuple[list[str], list[str]]:
    config = image.get("Config") or {}
    entrypoint = [str(w) for w in config.get("Entrypoint") or []]
    if entrypoint == [""]:  # podman's way of writing "no entrypoint"
        entrypoint = []
    return entrypoint, [str(w) for w in config.get("Cmd") or []]


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

    # doctor's questions (argv starts with "podman": its messages name the command so)
    def version(self) -> str:
        """The client's version ("4.3.1"); CommandError or ValueError when podman is not usable."""
        data = json.loads(runner.run(["podman", "version", "--format", "json"]).stdout)
        return str(data.get("Client", data).get("Version", "?"))

    def manifest_inspect(self, reference: str, *, timeout: float) -> runner.Result:
        """The registry's manifest of `reference`, asked with registries.conf's TLS settings (a real
        request); CommandError (124) when no answer comes within `timeout`."""
        return runner.run(["podman", "manifest", "inspect", reference], check=False, timeout=timeout)

    def graph_root(self) -> str:
        """Where the image store is; CommandError, ValueError or KeyError when podman cannot say."""
        info = json.loads(runner.run(["podman", "info", "--format", "json"], timeout=60).stdout)
        return str(info["store"]["graphRoot"])

    def image_size(self, reference: str) -> int | None:
        """A local image's size in bytes (None when it is not here)."""
        argv = ["podman", "image", "inspect", "--format", "{{.Size}}", reference]
        result = runner.run(argv, check=False, timeout=60)
        size = result.stdout.strip()
        return int(size) if result.returncode == 0 and size.isdigit() else None
