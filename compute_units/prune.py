"""`compute-units prune`: which local images of our services' repositories may go.

The decision is pure (`plan`): from the local images, the specs, state.json and the history. An
image is kept when a container uses it, when a spec names it, when state.json names it (the pin
that runs, an upgrade in flight: target and previous, a pre-pulled target), or when a rollback
could need it: the `from` of every upgrade or rollback in the history, and the `to` of every
upgrade that was committed (a later upgrade's rollback returns to it). What is left is removable:
an upgrade's target that was rolled back, images of these repositories pulled by hand, targets a
spec no longer names. Images of other repositories are never considered (not ours to judge), nor is
an image of ours that also carries a name of another repository.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from .model import ServiceSet
from .podman import repository_of
from .state import State


@dataclass(frozen=True)
class LocalImage:
    id: str
    tags: tuple[str, ...]  # repository:tag
    digests: tuple[str, ...]  # repository@sha256:...
    containers: int  # containers (running or not) using it
    size: int  # bytes


@dataclass(frozen=True)
class Decision:
    image: LocalImage
    keep: bool
    reason: str

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.image.id,
            "names": list(self.image.tags or self.image.digests),
            "size": self.image.size,
            "keep": self.keep,
            "reason": self.reason,
        }


class ImageStore(Protocol):
    def images(self) -> list[LocalImage]: ...
    def remove(self, image: LocalImage) -> None: ...


def rmi_names(image: LocalImage) -> list[str]:
    """What `podman rmi` is given: the image's tags, else its ID (podman refuses an ID with two
    tags unless forced, and --force would remove containers too)."""
    return list(image.tags) or [image.id]


def needed(services: ServiceSet, state: State, history: Sequence[dict[str, Any]]) -> dict[str, str]:
    """reference -> why it must stay. References are repo:tag (specs) or repo[:tag]@sha256:..."""
    keep: dict[str, str] = {}
    for service in services:
        keep.setdefault(str(service.image), f"the spec of {service.name} names it")
    for name, entry in state.services.items():
        for reference, why in (
            (entry.current, f"{name} runs it (state.json)"),
            (entry.target, f"the unfinished upgrade of {name} goes to it"),
            (entry.previous, f"the unfinished upgrade of {name} may roll back to it"),
            (entry.pulled, f"pre-pulled for the next upgrade of {name}"),
        ):
            if reference:
                keep.setdefault(reference, why)
    for item in history:
        name = item.get("service", "?")
        source, target = item.get("from"), item.get("to")
        if isinstance(source, str) and source:
            keep.setdefault(source, f"a rollback of {name} could return to it (history)")
        if isinstance(target, str) and target and item.get("result") == "upgraded":
            keep.setdefault(target, f"a rollback of {name} could return to it (history)")
    return keep


def _matches(image: LocalImage, reference: str) -> bool:
    name, _, digest = reference.partition("@")
    if digest:
        repository = repository_of(name)
        return f"{repository}@{digest}" in image.digests
    return reference in image.tags


def repositories(references: Iterable[str]) -> set[str]:
    return {repository_of(r) for r in references}


def plan(
    images: Sequence[LocalImage], services: ServiceSet, state: State, history: Sequence[dict[str, Any]]
) -> list[Decision]:
    """A decision for every local image of a repository our services, state or history use."""
    keep = needed(services, state, history)
    ours = repositories(keep)
    decisions = []
    for image in images:
        names = [repository_of(n) for n in (*image.tags, *image.digests)]
        if not any(n in ours for n in names):
            continue
        if image.containers:
            decisions.append(Decision(image, True, f"used by {image.containers} container(s)"))
            continue
        why = next((why for reference, why in keep.items() if _matches(image, reference)), None)
        foreign = [n for n in (*image.tags, *image.digests) if repository_of(n) not in ours]
        if why is not None:
            decisions.append(Decision(image, True, why))
        elif foreign:  # the same image under a name of another repository: not ours to judge
            decisions.append(Decision(image, True, f"also named {foreign[0]}, which no service uses"))
        else:
            decisions.append(Decision(image, False, "no service runs it and no rollback could need it"))
    return decisions


def parse_images(data: Sequence[dict[str, Any]]) -> list[LocalImage]:
    """`podman images --format json`: Id, Names (repository:tag), RepoDigests, Containers, Size."""
    images = []
    for item in data:
        digests = item.get("RepoDigests") or []
        images.append(
            LocalImage(
                id=str(item.get("Id", "")),
                tags=tuple(str(n) for n in item.get("Names") or [] if "@" not in str(n)),
                digests=tuple(str(d) for d in digests if "@" in str(d)),
                containers=int(item.get("Containers") or 0),
                size=int(item.get("Size") or 0),
            )
        )
    return images


class PodmanImages:
    """The node's image store through podman (ImageStore)."""

    def images(self) -> list[LocalImage]:
        import json

        from . import runner
        from .podman import PODMAN

        result = runner.run([PODMAN, "images", "--format", "json"])
        data: list[dict[str, Any]] = json.loads(result.stdout or "[]")
        return parse_images(data)

    def remove(self, image: LocalImage) -> None:
        from . import runner
        from .podman import PODMAN

        runner.run([PODMAN, "rmi", *rmi_names(image)])
