"""Service assembly: one spec's top-level keys checked and combined into a `Service`."""

from __future__ import annotations

import hashlib
import json
from dataclasses import fields, replace
from pathlib import PurePosixPath

import yaml

from ..errors import Location
from ..model import NAMESPACES, RESTART_VALUES, ImageRef, Mount, Service
from .nodes import Field, kind
from .sections import SectionChecker
from .sockets import SocketChecker
from .values import (
    DEFAULT_DISRUPTIVE_REASON,
    MAX_DESCRIPTION,
    MAX_EXEC_START,
    NAME_RE,
    TOP_KEYS,
    did_you_mean,
    no_registry_hint,
    parse_image,
)


class ServiceChecker(SectionChecker, SocketChecker):
    """Walks one spec's YAML nodes, builds the Service, and records every problem on the way."""

    def service(self, root_node: yaml.Node | None) -> Service | None:
        top = self.spec_mapping(root_node)
        if root_node is None or top is None:
            return None
        get = top.get
        name, name_node = self.name(get("name"))
        image = self.image(get("image"), root_node)
        description = ""
        if (f := get("description")) is not None:
            description = self.string(f.node, "description", allow_empty=True, limit=MAX_DESCRIPTION) or ""
        command = self.command(get("command"))
        namespaces = self.namespaces(get("host_namespaces"))
        privileged = False
        if (f := get("privileged")) is not None:
            privileged = bool(self.boolean(f.node, "privileged"))
        mounts = self.mounts(get("mounts"))
        devices = self.devices(get("devices"))
        environment = self.environment(get("environment"))
        secrets = self.secrets(get("secrets"), {k for k, _ in environment})
        requires, requires_at = self.requires(get("requires"), name)
        health = self.health(get("health"))
        stop_timeout_s = self.stop_timeout(get("stop_timeout"))
        restart = self.restart(get("restart"))
        keeps_vms = self.keeps_vms(get("keeps_vms"), namespaces, mounts)
        disruptive = self.disruptive(get("disruptive"))
        preflight = self.preflight(get("preflight"))
        sockets = self.sockets(get("sockets"), name)
        shim = sockets and "pid" in namespaces
        if shim and (sockets_field := get("sockets")) is not None and get("command") is None:
            self.error(
                sockets_field.node,
                "sockets",
                "sockets of a service in the host PID namespace need command: (the full argv)",
                "a /bin/sh entrypoint sets LISTEN_PID to the daemon's PID, then runs command:, "
                "replacing the image's ENTRYPOINT and CMD",
            )
        podman_args = self.podman_args(get("podman_args"), namespaces, bool(shim))

        if name is None or image is None or any(d.severity == "error" for d in self.diagnostics):
            return None
        service = self.within_exec_limit(
            root_node,
            Service(
                name=name,
                image=image,
                source=self.path,
                location=self.loc(name_node) if name_node is not None else Location(self.path, 1, 1),
                description=description,
                command=command,
                host_namespaces=tuple(namespaces),
                privileged=privileged,
                mounts=tuple(mounts),
                devices=tuple(devices),
                environment=tuple(environment),
                secrets=tuple(secrets),
                requires=tuple(requires),
                requires_at=tuple(requires_at),
                health=health,
                stop_timeout_s=stop_timeout_s,
                restart=restart,
                keeps_vms=keeps_vms,
                disruptive=disruptive,
                preflight=preflight,
                podman_args=tuple(podman_args),
                sockets=tuple(sockets),
            ),
        )
        return with_hash(service) if service is not None else None

    def spec_mapping(self, root_node: yaml.Node | None) -> dict[str, Field] | None:
        """The top-level keys, or None (recorded) when the file is empty or not a spec at all."""
        if root_node is None:
            self.error(None, "", "spec is empty", "a spec needs at least 'image'")
            return None
        # not a spec at all: say so without quoting the file (it may be anything, even /etc/shadow)
        if not isinstance(root_node, yaml.MappingNode):
            self.error(root_node, "", f"expected a mapping, got {kind(root_node, False)}")
            return None
        if not any(isinstance(k, yaml.ScalarNode) and k.value in TOP_KEYS for k, _ in root_node.value):
            self.error(
                root_node,
                "",
                "not a service spec: none of its keys is a spec key",
                "a spec needs at least 'image'",
            )
            return None
        return self.mapping(root_node, "", TOP_KEYS)

    def within_exec_limit(self, root_node: yaml.Node, service: Service) -> Service | None:
        """The service, unless its podman run command line would exceed MAX_EXEC_START characters."""
        length = exec_start_length(service)
        if length <= MAX_EXEC_START:
            return service
        self.error(
            root_node,
            "",
            f"the unit's podman run command line would be about {length} characters long; "
            f"the limit is {MAX_EXEC_START}",
            "put large values in files mounted into the container",
        )
        return None

    def name(self, name_field: Field | None) -> tuple[str | None, yaml.Node | None]:
        if name_field is not None:
            name = self.string(name_field.node, "name")
            name_node: yaml.Node | None = name_field.node
        else:
            name = self.path.stem
            name_node = None
        if name is not None and not NAME_RE.match(name):
            self.error(
                name_node,
                "name",
                f"invalid service name '{name}'",
                "use lowercase letters, digits, '_', '.' and '-', starting with a letter or digit"
                + ("" if name_field else " (the name comes from the file name)"),
            )
            name = None
        elif name == "compute-node":
            self.error(name_node, "name", "the name 'compute-node' is reserved for the target")
            name = None
        return name, name_node

    def image(self, image_field: Field | None, root_node: yaml.Node) -> ImageRef | None:
        if image_field is None:
            self.error(
                root_node,
                "image",
                "required key is missing",
                "add e.g. image: registry:5000/nova-compute:2024.1",
            )
            return None
        text = self.string(image_field.node, "image")
        if text is None:
            return None
        image, reason = parse_image(text)
        if image is None:
            self.error(image_field.node, "image", f"invalid image reference '{text}': {reason}")
        elif image.registry is None:
            self.warn(image_field.node, "image", f"'{text}' names no registry", no_registry_hint(text))
        elif image.tag is None and image.digest is None:
            self.warn(
                image_field.node,
                "image",
                f"'{text}' has no tag or digest and means ':latest'",
                "pin a tag so upgrades are deliberate",
            )
        return image

    def command(self, f: Field | None) -> tuple[str, ...] | None:
        if f is None:
            return None
        if isinstance(f.node, yaml.ScalarNode) and f.node.tag == "tag:yaml.org,2002:str":
            self.error(
                f.node,
                "command",
                "expected a list of strings (argv), got a string",
                "shell strings are not accepted; write command: [/usr/sbin/libvirtd, --listen]",
            )
            return None
        items = self.string_list(f.node, "command", allow_empty=True)
        if items is None:
            return None
        if not items:
            self.error(f.node, "command", "must not be empty", "omit command: to use the image's default")
        return tuple(v for v, _ in items)

    def namespaces(self, f: Field | None) -> list[str]:
        namespaces: list[str] = []
        if f is None:
            return namespaces
        for index, value, node in self.string_items(f.node, "host_namespaces"):
            if value not in NAMESPACES:
                self.error(
                    node,
                    f"host_namespaces[{index}]",
                    f"unknown namespace '{value}' (expected one of {', '.join(NAMESPACES)})",
                    did_you_mean(value, NAMESPACES),
                )
            elif value in namespaces:
                self.error(node, f"host_namespaces[{index}]", f"'{value}' is listed twice")
            else:
                namespaces.append(value)
        return namespaces

    def requires(self, f: Field | None, name: str | None) -> tuple[list[str], list[Location]]:
        requires: list[str] = []
        requires_at: list[Location] = []
        if f is None:
            return requires, requires_at
        for index, value, node in self.string_items(f.node, "requires"):
            if value.endswith(".service"):
                value = value[: -len(".service")]
            if value == name:
                self.error(node, f"requires[{index}]", "a service cannot require itself")
            elif value in requires:
                self.error(node, f"requires[{index}]", f"'{value}' is listed twice")
            else:
                requires.append(value)
                requires_at.append(self.loc(node))
        return requires, requires_at

    def stop_timeout(self, f: Field | None) -> int:
        if f is None:
            return 10
        ms = self.duration(f.node, "stop_timeout")
        if ms is None:
            return 10
        if ms <= 0 or ms > 3_600_000:
            self.error(f.node, "stop_timeout", "must be between 1s and 1h")
            return 10
        return -(-ms // 1000)

    def restart(self, f: Field | None) -> str:
        if f is None:
            return "on-failure"
        policy = self.string(f.node, "restart")
        if policy is not None and policy not in RESTART_VALUES:
            self.error(
                f.node,
                "restart",
                f"invalid restart policy '{policy}' (expected one of {', '.join(RESTART_VALUES)})",
                did_you_mean(policy, RESTART_VALUES),
            )
            return "on-failure"
        return policy or "on-failure"

    def disruptive(self, f: Field | None) -> str | None:
        """`true`, `false`, or the reason (a sentence, which means true): the reason, or None."""
        if f is None:
            return None
        node = f.node
        plain = isinstance(node, yaml.ScalarNode) and not node.style  # the C composer says ""
        if plain and node.value in ("true", "True", "TRUE", "false", "False", "FALSE"):
            return DEFAULT_DISRUPTIVE_REASON if self.boolean(node, "disruptive") else None
        if plain and node.value.lower() in ("yes", "no", "on", "off", "y", "n", "~", "null", ""):
            self.error(
                node,
                "disruptive",
                f"expected true, false or a reason, got '{node.value}'",
                "write disruptive: true, or the reason: disruptive: its restart cuts every VM's network",
            )
            return None
        return self.string(node, "disruptive", limit=MAX_DESCRIPTION)

    def keeps_vms(self, f: Field | None, namespaces: list[str], mounts: list[Mount]) -> bool:
        if f is None:
            return False
        keeps_vms = bool(self.boolean(f.node, "keeps_vms"))
        if not keeps_vms:
            return False
        missing = [ns for ns in ("pid", "cgroup") if ns not in namespaces]
        if missing:
            self.error(
                f.node,
                "keeps_vms",
                f"needs {' and '.join(repr(m) for m in missing)} in host_namespaces",
                "qemu started by libvirt must outlive the container and stay in its machine scope",
            )
        if PurePosixPath("/sys/fs/cgroup") not in {m.target for m in mounts}:
            self.error(
                f.node,
                "keeps_vms",
                "needs /sys/fs/cgroup mounted into the container",
                "add - /sys/fs/cgroup:/sys/fs/cgroup to mounts",
            )
        return True


def with_hash(service: Service) -> Service:
    """Attach a hash of everything that affects the unit (not where the spec lives)."""
    payload = {
        f.name: getattr(service, f.name)
        for f in fields(service)
        if f.name not in ("source", "location", "spec_hash", "requires_at")
        # keys added after v1 count only when set, so existing specs keep their hash
        and not (f.name == "disruptive" and service.disruptive is None)
        and not (f.name == "sockets" and not service.sockets)
    }
    text = json.dumps(payload, default=_jsonable, sort_keys=True)
    digest = hashlib.sha256(text.encode()).hexdigest()[:16]
    return replace(service, spec_hash=digest)


def _jsonable(value: object) -> object:
    if hasattr(value, "__dataclass_fields__"):
        return {k: getattr(value, k) for k in value.__dataclass_fields__}
    return str(value)


def exec_start_length(service: Service) -> int:
    """An upper estimate of the length of the unit's ExecStart= line (quoting doubles at most)."""
    words: list[str] = [str(service.image), *(service.command or ())]
    words += [f"{k}={v}" for k, v in service.environment]
    words += [f"{m.source}:{m.target}:rshared,ro" for m in service.mounts]
    words += [str(d) for d in service.devices] + list(service.podman_args)
    words += [f"{s.variable}{s.file or ''}{s.podman_secret or ''}" for s in service.secrets]
    words += list(service.health.command) if service.health is not None else []
    overhead = 1024 + 64 * len(words)  # compute-units' own options, option names, quotes
    return 2 * sum(len(w) for w in words) + overhead
