"""Where an upgrade or a rollback goes: pure decisions from the spec, the state and the history."""

from __future__ import annotations

from typing import Any

from .model import Service
from .state import ServiceState, digest_of


def choose_target(service: Service, entry: ServiceState, image: str | None) -> tuple[str, str]:
    """The reference an upgrade goes to, and why. Never a silent move away from a pin.

    --image wins. Without it: the spec's image, unless an earlier upgrade pinned another image and
    the spec has not changed since: then that pin stays (a plain `upgrade --all` is no downgrade).
    """
    spec_ref = str(service.image)
    if image:
        return image, f"--image {image}"
    if entry.current is None or entry.spec_image is None:
        # nothing an upgrade pinned: `current` is at most what a rolled-back first upgrade went back
        # to (every commit of an upgrade records spec_image), and a rollback is no pin
        return spec_ref, "the spec's image"
    pinned_name = entry.current.split("@", 1)[0]
    if pinned_name == spec_ref.split("@", 1)[0]:
        return spec_ref, "the spec's image"
    if entry.spec_image is not None and entry.spec_image != spec_ref:
        return spec_ref, f"the spec's image (changed from {entry.spec_image} since the last upgrade)"
    return entry.current, (
        f"kept {entry.current}, pinned by an earlier upgrade (the spec names {spec_ref}; "
        "edit the spec or pass --image to move)"
    )


def rollback_target(history: list[dict[str, Any]], current: str | None) -> tuple[str, str] | None:
    """(reference, time of the upgrade it undoes) for `rollback`: the image before the upgrade that
    put `current` in place. Rollbacks are not undone by a second rollback: it goes further back."""
    undone = {
        e.get("undoes") for e in history if e.get("kind") == "rollback" and e.get("result") == "rolled-back"
    }
    for entry in reversed(history):
        if entry.get("kind", "upgrade") != "upgrade" or entry.get("result") != "upgraded":
            continue
        if entry.get("time") in undone or not entry.get("from"):
            continue
        if current is None or digest_of(entry.get("to")) == digest_of(current):
            return str(entry["from"]), str(entry.get("time"))
    return None
