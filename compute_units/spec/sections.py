"""The spec's structured sections: mounts, devices, environment, secrets, health, preflight and
podman_args, each checked into model values."""

from __future__ import annotations

import stat
from pathlib import PurePosixPath

import yaml

from .. import options
from ..model import PROPAGATIONS, Health, Mount, Preflight, Secret
from .nodes import Field, NodeChecker, kind
from .values import (
    ENV_NAME_RE,
    HEALTH_KEYS,
    MAX_ENV_VALUE,
    MODULE_RE,
    MOUNT_KEYS,
    PODMAN_SECRET_RE,
    PREFLIGHT_KEYS,
    SECRET_KEYS,
    UNIT_RE,
    did_you_mean,
)

ENTRYPOINT_HINT = (
    "in the host PID namespace compute-units' own entrypoint sets LISTEN_PID; put the program in command:"
)


class SectionChecker(NodeChecker):
    """Checks the sections of a spec that have structure of their own."""

    def mounts(self, f: Field | None) -> list[Mount]:
        if f is None:
            return []
        if not isinstance(f.node, yaml.SequenceNode):
            self.error(f.node, "mounts", f"expected a list, got {kind(f.node)}")
            return []
        if not self.count(f.node, "mounts"):
            return []
        mounts: list[Mount] = []
        targets: dict[PurePosixPath, int] = {}
        for index, node in enumerate(f.node.value):
            key = f"mounts[{index}]"
            mount = (
                self.mount_short(node, key)
                if isinstance(node, yaml.ScalarNode)
                else self.mount_long(node, key)
            )
            if mount is None:
                continue
            if mount.target in targets:
                self.error(
                    node,
                    key,
                    f"duplicate mount target '{mount.target}' (also mounts[{targets[mount.target]}])",
                )
                continue
            targets[mount.target] = index
            mounts.append(mount)
        return mounts

    def mount_short(self, node: yaml.Node, key: str) -> Mount | None:
        text = self.string(node, key)
        if text is None:
            return None
        parts = text.split(":")
        if len(parts) not in (2, 3):
            self.error(node, key, f"expected 'source:target[:options]', got '{text}'")
            return None
        source = self.abs_path(parts[0], node, f"{key}.source")
        target = self.abs_path(parts[1], node, f"{key}.target")
        read_only = False
        propagation = None
        if len(parts) == 3:
            for option in parts[2].split(","):
                if option in ("ro", "rw"):
                    read_only = option == "ro"
                elif option in PROPAGATIONS:
                    propagation = option
                else:
                    self.error(
                        node,
                        key,
                        f"unknown mount option '{option}' (expected ro, rw or one of {', '.join(PROPAGATIONS)})",
                        did_you_mean(option, ("ro", "rw", *PROPAGATIONS)),
                    )
                    return None
        if source is None or target is None:
            return None
        return Mount(source, target, read_only, propagation)

    def mount_long(self, node: yaml.Node, key: str) -> Mount | None:
        fields_ = self.mapping(node, key, MOUNT_KEYS)
        if fields_ is None:
            return None
        ok = True
        paths: dict[str, PurePosixPath] = {}
        for which in ("source", "target"):
            f = fields_.get(which)
            if f is None:
                self.error(node, f"{key}.{which}", "required key is missing")
                ok = False
                continue
            text = self.string(f.node, f"{key}.{which}")
            path = self.abs_path(text, f.node, f"{key}.{which}", colon_ok=False) if text is not None else None
            if path is None:
                ok = False
            else:
                paths[which] = path
        read_only = False
        if (f := fields_.get("read_only")) is not None:
            value = self.boolean(f.node, f"{key}.read_only")
            ok = ok and value is not None
            read_only = bool(value)
        propagation = None
        if (f := fields_.get("propagation")) is not None:
            propagation = self.string(f.node, f"{key}.propagation")
            if propagation is not None and propagation not in PROPAGATIONS:
                self.error(
                    f.node,
                    f"{key}.propagation",
                    f"unknown propagation '{propagation}' (expected one of {', '.join(PROPAGATIONS)})",
                    did_you_mean(propagation, PROPAGATIONS),
                )
                ok = False
        create = False
        if (f := fields_.get("create")) is not None:
            value = self.boolean(f.node, f"{key}.create")
            ok = ok and value is not None
            create = bool(value)
        if not ok:
            return None
        return Mount(paths["source"], paths["target"], read_only, propagation, create)

    def devices(self, f: Field | None) -> list[PurePosixPath]:
        if f is None:
            return []
        devices: list[PurePosixPath] = []
        for index, value, node in self.string_items(f.node, "devices"):
            path = self.abs_path(value, node, f"devices[{index}]", colon_ok=False)
            if path is not None and path in devices:
                self.error(node, f"devices[{index}]", f"'{value}' is listed twice")
            elif path is not None:
                devices.append(path)
        return devices

    def environment(self, f: Field | None) -> list[tuple[str, str]]:
        if f is None:
            return []
        entries = self.mapping(f.node, "environment", None)
        result: list[tuple[str, str]] = []
        for name, entry in (entries or {}).items():
            key = f"environment.{name}"
            if not ENV_NAME_RE.match(name):
                self.error(entry.node, key, f"invalid variable name '{name}'")
                continue
            if isinstance(entry.node, yaml.ScalarNode) and entry.node.tag == "tag:yaml.org,2002:bool":
                self.warn(
                    entry.node,
                    key,
                    f"'{entry.node.value}' is passed as the string '{entry.node.value}'",
                    "quote it to make that explicit",
                )
            value = self.string(entry.node, key, allow_empty=True, limit=MAX_ENV_VALUE)
            if value is not None:
                result.append((name, value))
        return result

    def secrets(self, f: Field | None, plain: set[str]) -> list[Secret]:
        if f is None:
            return []
        entries = self.mapping(f.node, "secrets", None)
        result: list[Secret] = []
        for name, entry in (entries or {}).items():
            key = f"secrets.{name}"
            if not ENV_NAME_RE.match(name):
                self.error(entry.node, key, f"invalid variable name '{name}'")
                continue
            if name in plain:
                self.error(
                    entry.node,
                    key,
                    f"'{name}' is also set in environment",
                    "a variable is either plain or secret",
                )
                continue
            if isinstance(entry.node, yaml.ScalarNode) and entry.node.tag == "tag:yaml.org,2002:str":
                self.error(
                    entry.node,
                    key,
                    "secret values are never written in a spec",
                    f"write {name}: {{file: /etc/compute-units/secrets/{name.lower()}}} or {{podman_secret: NAME}}",
                )
                continue
            source = self.mapping(entry.node, key, SECRET_KEYS)
            if source is None:
                continue
            if len(source) != 1:
                self.error(entry.node, key, "give exactly one of 'file' or 'podman_secret'")
                continue
            if (s := source.get("file")) is not None:
                text = self.string(s.node, f"{key}.file")
                path = self.abs_path(text, s.node, f"{key}.file") if text is not None else None
                if path is not None:
                    self.check_secret_file(path, s.node, f"{key}.file")
                    result.append(Secret(name, file=path))
            elif (s := source.get("podman_secret")) is not None:
                text = self.string(s.node, f"{key}.podman_secret")
                if text is not None and not PODMAN_SECRET_RE.match(text):
                    self.error(s.node, f"{key}.podman_secret", f"invalid podman secret name '{text}'")
                elif text is not None:
                    result.append(Secret(name, podman_secret=text))
        return result

    def check_secret_file(self, path: PurePosixPath, node: yaml.Node, key: str) -> None:
        if not self.check_files:
            return
        host_path = self.root / str(path).lstrip("/")
        try:
            st = host_path.stat()
        except FileNotFoundError:
            self.error(
                node, key, f"secret file does not exist: {path}", "create it with mode 0600, owned by root"
            )
            return
        except OSError as exc:
            self.error(node, key, f"cannot read secret file {path}: {exc.strerror}")
            return
        if not stat.S_ISREG(st.st_mode):
            self.error(node, key, f"secret file is not a regular file: {path}")
        elif st.st_mode & 0o077:
            self.warn(
                node,
                key,
                f"secret file {path} is readable by group or others (mode {stat.S_IMODE(st.st_mode):04o})",
                f"chmod 0600 {path}",
            )

    def health(self, f: Field | None) -> Health | None:
        if f is None:
            return None
        entries = self.mapping(f.node, "health", HEALTH_KEYS)
        if entries is None:
            return None
        command_field = entries.get("command")
        if command_field is None:
            self.error(f.node, "health.command", "required key is missing", "e.g. command: [virsh, list]")
            return None
        if isinstance(command_field.node, yaml.ScalarNode):
            self.error(
                command_field.node,
                "health.command",
                "expected a list of strings (argv), got a string",
                "shell strings are not accepted; write command: [virsh, -c, 'qemu:///system', list]",
            )
            return None
        items = self.string_list(command_field.node, "health.command", allow_empty=True)
        if not items:
            if items is not None:
                self.error(command_field.node, "health.command", "must not be empty")
            return None
        if items[0][0] in ("CMD", "CMD-SHELL", "NONE"):
            self.error(
                items[0][1],
                "health.command[0]",
                f"'{items[0][0]}' is Docker's health-check syntax, not a program",
                "give the argv itself, e.g. [virsh, list]",
            )
            return None
        values: dict[str, int] = {}
        for which, default in (("interval", 30_000), ("timeout", 5_000), ("start_period", 20_000)):
            sub = entries.get(which)
            if sub is None:
                values[which] = default
                continue
            ms = self.duration(sub.node, f"health.{which}")
            if ms is not None and ms < 1000:
                self.error(sub.node, f"health.{which}", "must be at least 1s")
            values[which] = ms if ms is not None else default
        retries = 3
        if (sub := entries.get("retries")) is not None:
            text = self.string(sub.node, "health.retries")
            if text is not None and (not text.isdigit() or int(text) < 1):
                self.error(sub.node, "health.retries", f"expected a positive integer, got '{text}'")
            elif text is not None:
                retries = int(text)
        return Health(
            command=tuple(v for v, _ in items),
            interval_ms=values["interval"],
            timeout_ms=values["timeout"],
            start_period_ms=values["start_period"],
            retries=retries,
        )

    def preflight(self, f: Field | None) -> Preflight:
        if f is None:
            return Preflight()
        entries = self.mapping(f.node, "preflight", PREFLIGHT_KEYS) or {}
        modules: list[str] = []
        units: list[str] = []
        paths: list[PurePosixPath] = []
        if (sub := entries.get("kernel_modules")) is not None:
            for index, value, node in self.string_items(sub.node, "preflight.kernel_modules"):
                if not MODULE_RE.match(value):
                    self.error(node, f"preflight.kernel_modules[{index}]", f"invalid module name '{value}'")
                else:
                    modules.append(value)
        if (sub := entries.get("host_units_inactive")) is not None:
            for index, value, node in self.string_items(sub.node, "preflight.host_units_inactive"):
                if not UNIT_RE.match(value):
                    self.error(
                        node,
                        f"preflight.host_units_inactive[{index}]",
                        f"invalid unit name '{value}'",
                        "give the full unit name, e.g. libvirtd.service",
                    )
                else:
                    units.append(value)
        if (sub := entries.get("paths")) is not None:
            for index, value, node in self.string_items(sub.node, "preflight.paths"):
                path = self.abs_path(value, node, f"preflight.paths[{index}]")
                if path is not None:
                    paths.append(path)
        return Preflight(tuple(modules), tuple(units), tuple(paths))

    def podman_args(self, f: Field | None, namespaces: list[str], listen_pid_shim: bool) -> list[str]:
        """`listen_pid_shim`: compute-units sets --entrypoint itself (sockets, host PID namespace)."""
        if f is None:
            return []
        result: list[str] = []
        for index, value, node in self.string_items(f.node, "podman_args"):
            key = f"podman_args[{index}]"
            if not value.startswith("-"):
                self.error(
                    node,
                    key,
                    f"'{value}' is not an option",
                    "give each option with its value in one item (--ulimit=nofile=4096); "
                    "the container's argv goes in command:",
                )
                continue
            option, eq, _ = value.partition("=")
            if not self.podman_option(option, bool(eq), node, key):
                continue
            if option in ("--label", "-l") and value.split("=", 1)[-1].startswith("compute-units."):
                self.error(node, key, "labels compute-units.* are set by compute-units")
                continue
            if option == "--entrypoint" and listen_pid_shim:
                self.error(node, key, "--entrypoint cannot be combined with sockets", ENTRYPOINT_HINT)
                continue
            if option == "--init" and "pid" in namespaces:
                self.error(
                    node,
                    key,
                    "--init cannot be combined with the host PID namespace",
                    "podman refuses --init with --pid=host; remove one of them",
                )
                continue
            result.append(value)
        return result

    def podman_option(self, option: str, has_value: bool, node: yaml.Node, key: str) -> bool:
        """Is `option` one podman_args may carry (given with a value when it takes one)?"""
        known = options.lookup(option)
        if known is None:
            self.error(
                node,
                key,
                f"unknown podman option '{option}'",
                "podman_args takes only the options listed in docs/spec-limits.md, each in one item "
                "(--opt=value)",
            )
            return False
        refusal = known.refusal(option)
        if refusal is not None:
            self.error(node, key, *refusal)
            return False
        if known.takes_value and not has_value:
            self.error(node, key, f"{option} needs a value", f"write {option}=VALUE in one item")
            return False
        return True
