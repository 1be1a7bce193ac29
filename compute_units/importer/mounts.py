"""Mounts and devices of a run line: -v/--volume, --mount and --device → mounts: and devices:."""

from __future__ import annotations

from ..model import PROPAGATIONS
from ..spec import normal_path
from .base import MapperBase
from .runline import BOOLEANS, Option


class MountMapper(MapperBase):
    def volume(self, option: Option, value: str) -> None:
        parts = value.split(":")
        if len(parts) == 1 or len(parts) > 3:
            what = "an anonymous volume" if len(parts) == 1 else "not source:target[:options]"
            self.dropped(option, f"{what} cannot be expressed; mounts are host paths")
            return
        source, target = parts[0], parts[1]
        if not source.startswith("/"):
            self.dropped(option, f"'{source}' is a named volume; mounts need an absolute host path")
            return
        if not target.startswith("/"):
            self.error(f"{option.shown}: container path '{target}' must be absolute")
            return
        flags: list[str] = []
        for flag in parts[2].split(",") if len(parts) == 3 else []:
            if flag in ("ro", "rw", *PROPAGATIONS):
                if flag != "rw":
                    flags.append(flag)
            elif flag:
                self.warn(f"{option.shown}: mount option '{flag}' cannot be expressed; dropped")
        self.add_mount(option, source, target, flags)

    def mount(self, option: Option, value: str) -> None:
        fields_: dict[str, str | None] = {}
        for item in value.split(","):
            key, eq, val = item.partition("=")
            fields_[key.strip()] = val if eq else None
        kind = fields_.pop("type", None) or "volume"
        if kind != "bind":
            self.dropped(option, f"type={kind} cannot be expressed; only bind mounts of host paths")
            return
        source = fields_.pop("source", None) or fields_.pop("src", None)
        target = fields_.pop("target", None) or fields_.pop("destination", None) or fields_.pop("dst", None)
        if not source or not target:
            self.error(f"--mount '{value}': needs source= and target=")
            return
        if not source.startswith("/") or not target.startswith("/"):
            self.error(f"--mount '{value}': source and target must be absolute paths")
            return
        flags: list[str] = []
        for key in ("readonly", "ro"):
            if key in fields_:
                flag = fields_.pop(key)
                if flag is None or BOOLEANS.get(flag, False):
                    flags.append("ro")
        propagation = fields_.pop("bind-propagation", None)
        if propagation:
            if propagation in PROPAGATIONS:
                flags.append(propagation)
            else:
                self.error(f"--mount '{value}': unknown bind-propagation '{propagation}'")
                return
        for key in fields_:
            self.warn(f"{option.shown}: mount option '{key}' cannot be expressed; dropped")
        self.add_mount(option, source, target, flags)

    def add_mount(self, option: Option, source: str, target: str, flags: list[str]) -> None:
        if option.expands:
            self.shell_reference(option.shown)
        source, target = normal_path(source), normal_path(target)
        if target in self.mounts:
            self.error(f"{option.shown}: duplicate mount target '{target}'")
            return
        text = f"{source}:{target}"
        self.mounts[target] = f"{text}:{','.join(flags)}" if flags else text

    def device(self, option: Option, value: str) -> None:
        parts = value.split(":")
        host = parts[0]
        if not host.startswith("/"):
            self.error(f"{option.shown}: '{host}' must be an absolute path")
            return
        inside = parts[1] if len(parts) > 1 else host
        permissions = parts[2] if len(parts) > 2 else "rwm"
        if len(parts) == 2 and parts[1] in ("r", "w", "m", "rw", "rm", "wm", "rwm"):
            inside, permissions = host, parts[1]
        if normal_path(inside) != normal_path(host) or set(permissions) != set("rwm"):
            self.dropped(option, "devices are passed at the same path with full access (rwm) only")
            return
        path = normal_path(host)
        if path not in self.devices:
            self.devices.append(path)
