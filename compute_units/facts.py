"""Facts about this host that units depend on, obtained here and handed to the pure renderer.

Only services with secrets need any (see secretplan): podman's version, and for podman < 5.3 the
ENTRYPOINT and CMD of the images they run. Nothing is asked when no service has secrets.

Both are recorded in STATE_DIR/facts.json so that the generator, which runs at every boot and
daemon-reload, asks podman nothing in the steady state:

  {"podman": {"binary": [inode, size, mtime_ns], "version": "4.3.1"},
   "images": {REFERENCE: {"entrypoint": [...], "cmd": [...]}}}

The version is valid while the podman binary's inode, size and mtime are those recorded (a
package upgrade replaces the file); one `podman --version` otherwise. Image configs: commands
(generate, apply, render, upgrade's pin) read them from the local store and record them, falling
back to the record when the image is gone; the generator reads the record first and asks the
local store only for what is missing. The generator never writes the file (/var may be
read-only or not mounted yet); a missing or unreadable file is treated as empty.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import secretplan
from .secretplan import ImageConfig

if TYPE_CHECKING:
    from .model import Service, ServiceSet
    from .render import RenderOptions

FACTS_FILE = "var/lib/compute-units/facts.json"
PODMAN = "/usr/bin/podman"
MAX_IMAGES = 4096  # image configs recorded at most (the oldest are forgotten first)


@dataclasses.dataclass
class Probe:
    """How facts are asked of podman (podman.py through runner.py); replaced in unit tests."""

    version: Callable[[], str]
    image_configs: Callable[[Sequence[str]], dict[str, tuple[list[str], list[str]]]]


def real_probe() -> Probe:
    from . import podman

    return Probe(podman.version, podman.image_configs)


def binary_key(path: str = PODMAN) -> list[int] | None:
    """What identifies the installed podman binary (None: not installed)."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return [st.st_ino, st.st_size, st.st_mtime_ns]


def no_probe() -> Probe:
    """For the generator under COMPUTE_UNITS_ROOT (a tree, not this host): never runs podman."""
    return Probe(lambda: "", lambda references: {})


class Recorder:
    """The facts file of one root: read once, written back (best effort) only when it changed.

    `podman`: the binary whose version counts (the generator under a COMPUTE_UNITS_ROOT: the tree's).
    """

    def __init__(self, root: Path, probe: Probe | None = None, podman: str = PODMAN) -> None:
        self.path = root / FACTS_FILE
        self.podman = podman
        self.probe = probe or real_probe()
        self.changed = False
        self.data: dict[str, Any] = {}
        try:
            loaded = json.loads(self.path.read_text())
        except (OSError, ValueError):
            loaded = {}
        if isinstance(loaded, dict):
            self.data = loaded

    def podman_version(self) -> tuple[int, int, int] | None:
        key = binary_key(self.podman)
        if key is None:
            return None
        recorded = self.data.get("podman")
        if isinstance(recorded, dict) and recorded.get("binary") == key:
            version = secretplan.parse_version(str(recorded.get("version", "")))
            if version is not None:
                return version
        version = secretplan.parse_version(self.probe.version())
        if version is not None:
            self.data["podman"] = {"binary": key, "version": ".".join(map(str, version))}
            self.changed = True
        return version

    def image_configs(self, references: Iterable[str], *, ask_first: bool) -> dict[str, ImageConfig]:
        """Configs of `references`, in at most one podman call.

        `ask_first`: the local store is asked for tag references (a tag can move) and the record is
        the fallback; pinned (@digest) references, immutable, are asked only when not recorded.
        Without it (the generator), only what is not recorded is asked.
        """
        recorded = self.data.get("images")
        if not isinstance(recorded, dict):
            recorded = self.data["images"] = {}
        found: dict[str, ImageConfig] = {}
        for reference in set(references):
            entry = recorded.get(reference)
            known = _config(entry) if isinstance(entry, dict) else None
            if known is not None:
                found[reference] = known
        ask = sorted(r for r in set(references) if r not in found or (ask_first and "@" not in r))
        for reference, (entrypoint, cmd) in (self.probe.image_configs(ask) if ask else {}).items():
            found[reference] = ImageConfig(tuple(entrypoint), tuple(cmd))
            new = {"entrypoint": entrypoint, "cmd": cmd}
            if recorded.get(reference) != new:
                recorded.pop(reference, None)  # newest last: the oldest go first past MAX_IMAGES
                recorded[reference] = new
                self.changed = True
        for stale in list(recorded)[: max(0, len(recorded) - MAX_IMAGES)]:
            del recorded[stale]
        return found

    def save(self) -> None:
        if not self.changed:
            return
        from .install import atomic_write

        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write(self.path, json.dumps(self.data, indent=1, sort_keys=True) + "\n")
        except OSError:
            return  # a record only: the next command asks podman again
        self.changed = False


def _config(entry: dict[str, Any]) -> ImageConfig | None:
    entrypoint, cmd = entry.get("entrypoint"), entry.get("cmd")
    if not isinstance(entrypoint, list) or not isinstance(cmd, list):
        return None
    return ImageConfig(tuple(str(w) for w in entrypoint), tuple(str(w) for w in cmd))


def render_options(
    services: ServiceSet,
    options: RenderOptions,
    recorder: Recorder,
    *,
    at_boot: bool = False,
    version: tuple[int, ...] | None = None,
) -> RenderOptions:
    """`options` with the facts the services' secrets need (unchanged when none has secrets).

    `version`: the podman the units are for (`export --quadlet --podman-version`), else this host's.
    """
    with_secrets = [s for s in services if s.secrets]
    if not with_secrets:
        return options
    version = version or recorder.podman_version()
    images: dict[str, ImageConfig] = dict(options.images)
    if version is not None and secretplan.mode_for(version) == "loader":
        wanted = [
            options.pins.get(s.name) or str(s.image)
            for s in with_secrets
            if secretplan.spec_entrypoint(s) is None
        ]
        images.update(recorder.image_configs(wanted, ask_first=not at_boot))
    return dataclasses.replace(options, podman_version=version, images=images)


def with_image(options: RenderOptions, service: Service, reference: str, recorder: Recorder) -> RenderOptions:
    """`options` that also know `reference`'s config (an upgrade's pin: pulled just before)."""
    loader = options.podman_version is not None and secretplan.mode_for(options.podman_version) == "loader"
    if not service.secrets or not loader or secretplan.spec_entrypoint(service) is not None:
        return options
    images = dict(options.images)
    images.update(recorder.image_configs([reference], ask_first=True))
    recorder.save()
    return dataclasses.replace(options, images=images)


def record_pulled(recorder: Recorder, service: Service, references: Sequence[str]) -> None:
    """After a pull: the ENTRYPOINT and CMD a secrets loader will need, recorded for the generator."""
    if not service.secrets or secretplan.spec_entrypoint(service) is not None:
        return
    version = recorder.podman_version()
    if version is not None and secretplan.mode_for(version) == "loader":
        recorder.image_configs(references, ask_first=True)
    recorder.save()
