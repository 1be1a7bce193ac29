"""Spec loading and validation: YAML files → `ServiceSet`, or a `SpecError` listing every problem.

Reads only the spec files themselves (and stats secret files under `root`). YAML is composed into
nodes (PyYAML's C composer when available) so that every value keeps its line and column; values
are converted by hand, so YAML 1.1 surprises (`yes` → true, `010` → 8) never reach a unit.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import os
import re
import stat
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, fields, replace
from pathlib import Path, PurePosixPath

import yaml

from .errors import Diagnostic, Location, SpecError
from .model import (
    NAMESPACES,
    PROPAGATIONS,
    RESTART_VALUES,
    Health,
    ImageRef,
    Mount,
    Preflight,
    Secret,
    Service,
    ServiceSet,
)

try:
    _Loader: type[yaml.SafeLoader] = yaml.CSafeLoader  # type: ignore[assignment]
except AttributeError:  # pragma: no cover - libyaml missing
    _Loader = yaml.SafeLoader

SEARCH_PATH = (
    PurePosixPath("/etc/compute-units/services"),
    PurePosixPath("/run/compute-units/services"),
    PurePosixPath("/usr/share/compute-units/services"),
)
SPEC_SUFFIXES = (".yaml", ".yml")

TOP_KEYS = (
    "name",
    "description",
    "image",
    "command",
    "host_namespaces",
    "privileged",
    "mounts",
    "devices",
    "environment",
    "secrets",
    "requires",
    "health",
    "stop_timeout",
    "restart",
    "keeps_vms",
    "preflight",
    "podman_args",
)
MOUNT_KEYS = ("source", "target", "read_only", "propagation", "create")
HEALTH_KEYS = ("command", "interval", "timeout", "start_period", "retries")
PREFLIGHT_KEYS = ("kernel_modules", "host_units_inactive", "paths")
SECRET_KEYS = ("file", "podman_secret")

NAME_RE = re.compile(r"[a-z0-9][a-z0-9_.-]*\Z")
ENV_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
MODULE_RE = re.compile(r"[A-Za-z0-9_-]+\Z")
UNIT_RE = re.compile(r"[A-Za-z0-9:_.@\\-]+\.(service|socket|target|mount|path|timer|slice|scope)\Z")
PODMAN_SECRET_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*\Z")
_DOMAIN = r"(?:[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*|\[[0-9A-Fa-f:]+\])(?::[0-9]+)?"
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
DOMAIN_RE = re.compile(_DOMAIN + r"\Z")
REPO_RE = re.compile(_COMPONENT + r"(?:/" + _COMPONENT + r")*\Z")
TAG_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}\Z")
DIGEST_RE = re.compile(r"sha256:[0-9a-f]{64}\Z")
_DURATION_UNITS = {
    "ms": 1,
    "s": 1000,
    "sec": 1000,
    "m": 60_000,
    "min": 60_000,
    "h": 3_600_000,
    "hr": 3_600_000,
}
_DURATION_RE = re.compile(r"\s*(\d+)\s*(ms|sec|s|min|m|hr|h)?")
_CONTROL_NAMES = {"\n": "a newline", "\r": "a carriage return", "\x00": "a NUL byte", "\t": "a tab"}

# podman options that compute-units sets itself: map to the typed key that owns them
# (None: set by compute-units for systemd and not for the spec to change).
OWNED_OPTIONS: dict[str, str | None] = {
    "--name": "name",
    "--pid": "host_namespaces",
    "--network": "host_namespaces",
    "--net": "host_namespaces",
    "--ipc": "host_namespaces",
    "--uts": "host_namespaces",
    "--cgroupns": "host_namespaces",
    "--privileged": "privileged",
    "-v": "mounts",
    "--volume": "mounts",
    "--mount": "mounts",
    "--device": "devices",
    "-e": "environment",
    "--env": "environment",
    "--env-file": "environment",
    "--secret": "secrets",
    "--health-cmd": "health",
    "--health-interval": "health",
    "--health-timeout": "health",
    "--health-start-period": "health",
    "--health-retries": "health",
    "--stop-timeout": "stop_timeout",
    "--restart": "restart",
    "--rm": None,
    "-d": None,
    "--detach": None,
    "--replace": None,
    "--cidfile": None,
    "--cgroups": None,
    "--sdnotify": None,
    "--log-driver": None,
}


def default_search_path(root: Path = Path("/")) -> list[Path]:
    return [root / str(p).lstrip("/") for p in SEARCH_PATH]


def discover(paths: Sequence[Path]) -> list[Path]:
    """Spec files from the given files and directories; among directories the first file name wins.

    A file that is empty or a symlink to /dev/null masks files of the same name further down.
    """
    chosen: dict[str, Path] = {}
    explicit: list[Path] = []
    for path in paths:
        if path.is_dir():
            for entry in sorted(path.iterdir()):
                if entry.suffix in SPEC_SUFFIXES and entry.name not in chosen:
                    chosen[entry.name] = entry
        elif path.exists():
            explicit.append(path)
        else:
            raise SpecError(diagnostics=[Diagnostic(Location(path, 1, 1), "", "spec path does not exist")])
    found = [p for p in chosen.values() if not _is_mask(p)]
    return [p.absolute() for p in sorted(found, key=lambda p: p.name) + explicit]


def _is_mask(path: Path) -> bool:
    try:
        return path.resolve() == Path("/dev/null") or path.stat().st_size == 0
    except OSError:
        return False


def load(
    paths: Sequence[Path],
    *,
    root: Path = Path("/"),
    strict_files: bool = True,
) -> tuple[ServiceSet, list[Diagnostic]]:
    """Load and validate every spec; raise `SpecError` with all errors, or return services + warnings."""
    services, diagnostics = load_lenient(paths, root=root, check_files=strict_files)
    if any(d.severity == "error" for d in diagnostics):
        raise SpecError(diagnostics=diagnostics)
    return services, diagnostics


def load_lenient(
    paths: Sequence[Path], *, root: Path = Path("/"), check_files: bool = True
) -> tuple[ServiceSet, list[Diagnostic]]:
    """Like `load`, but drop services with errors instead of failing (the generator's mode).

    Services that require a dropped service are dropped too, with an error naming the cause.
    """
    diagnostics: list[Diagnostic] = []
    parsed: list[Service] = []
    broken: set[str] = set()  # names (file stems) of specs with errors, to explain their dependents
    for path in paths:
        service, problems = parse_file(path, root=root, check_files=check_files)
        diagnostics.extend(problems)
        if service is not None and not any(p.severity == "error" for p in problems):
            parsed.append(service)
        else:
            broken.add(path.stem)
    service_set, problems = _link(parsed, broken)
    diagnostics.extend(problems)
    return service_set, diagnostics


def parse_file(
    path: Path, *, root: Path = Path("/"), check_files: bool = True
) -> tuple[Service | None, list[Diagnostic]]:
    try:
        data = path.read_bytes()
    except OSError as exc:
        return None, [Diagnostic(Location(path), "", f"cannot read spec: {exc.strerror}")]
    return parse_text(data, path, root=root, check_files=check_files)


def parse_text(
    data: bytes | str, path: Path, *, root: Path = Path("/"), check_files: bool = True
) -> tuple[Service | None, list[Diagnostic]]:
    try:
        node = yaml.compose(data, Loader=_Loader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        loc = Location(path, mark.line + 1, mark.column + 1) if mark else Location(path)
        problem = exc.problem or exc.context or "invalid YAML"
        return None, [Diagnostic(loc, "", f"YAML syntax error: {problem}")]
    except yaml.reader.ReaderError as exc:
        text = data.decode(errors="replace") if isinstance(data, bytes) else data
        before = text[: exc.position]
        loc = Location(path, before.count("\n") + 1, len(before) - (before.rfind("\n") + 1) + 1)
        char = exc.character if isinstance(exc.character, int) else ord(str(exc.character)[:1] or "?")
        return None, [Diagnostic(loc, "", f"YAML error: unacceptable character U+{char:04X}")]
    except yaml.YAMLError as exc:
        return None, [Diagnostic(Location(path), "", f"YAML error: {exc}")]
    checker = _Checker(path, root, check_files)
    service = checker.service(node)
    return service, checker.diagnostics


# --------------------------------------------------------------------------- linking


def _link(parsed: list[Service], broken: set[str]) -> tuple[ServiceSet, list[Diagnostic]]:
    diagnostics: list[Diagnostic] = []
    by_name: dict[str, Service] = {}
    for service in parsed:
        other = by_name.get(service.name)
        if other is not None:
            diagnostics.append(
                Diagnostic(
                    service.location,
                    "name",
                    f"duplicate service '{service.name}' (also defined at {other.location})",
                    "service names must be unique across all spec files",
                )
            )
            continue
        by_name[service.name] = service

    # requires naming unknown services: drop the service (and, transitively, its dependents)
    changed = True
    while changed:
        changed = False
        for name, service in list(by_name.items()):
            for index, dep in enumerate(service.requires):
                if dep not in by_name:
                    known = [n for n in by_name if n != name]
                    parsed_names = {s.name for s in parsed} | broken
                    message = (
                        f"requires service '{dep}', which has errors"
                        if dep in parsed_names
                        else f"unknown service '{dep}'"
                    )
                    diagnostics.append(
                        Diagnostic(
                            service.requires_at[index],
                            f"requires[{index}]",
                            message,
                            did_you_mean(dep, known) if dep not in parsed_names else None,
                        )
                    )
                    del by_name[name]
                    changed = True
                    break

    order, cycles = _toposort(by_name)
    for cycle in cycles:
        first = by_name[cycle[0]]
        diagnostics.append(
            Diagnostic(
                first.requires_at[first.requires.index(cycle[1 % len(cycle)])],
                "requires",
                "dependency cycle: " + " -> ".join([*cycle, cycle[0]]),
                "remove one of these requires",
            )
        )
    return ServiceSet(tuple(by_name[n] for n in order)), diagnostics


def _toposort(by_name: dict[str, Service]) -> tuple[list[str], list[list[str]]]:
    """Dependency order (stable by name); services on or behind a cycle are left out."""
    order: list[str] = []
    state: dict[str, int] = {}  # 1 visiting, 2 done, 3 broken
    cycles: list[list[str]] = []

    def visit(name: str, stack: list[str]) -> bool:
        mark = state.get(name)
        if mark == 2:
            return True
        if mark == 3:
            return False
        if mark == 1:
            cycles.append(stack[stack.index(name) : -1])  # the stack ends with `name` again
            return False
        state[name] = 1
        ok = True
        for dep in sorted(by_name[name].requires):
            ok = visit(dep, [*stack, dep]) and ok
        state[name] = 2 if ok else 3
        if ok:
            order.append(name)
        return ok

    for name in sorted(by_name):
        visit(name, [name])
    return order, cycles


# --------------------------------------------------------------------------- value checks


def did_you_mean(word: str, choices: Iterable[str]) -> str | None:
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f"did you mean '{close[0]}'?" if close else None


def parse_duration_ms(text: str) -> int | None:
    """systemd-style duration ('30s', '1min 30s', '500ms', bare seconds) in ms, or None."""
    text = text.strip()
    if not text:
        return None
    if text.isdigit():
        return int(text) * 1000
    total = 0
    pos = 0
    while pos < len(text):
        match = _DURATION_RE.match(text, pos)
        if not match or match.end() == pos or match.group(2) is None:
            return None
        total += int(match.group(1)) * _DURATION_UNITS[match.group(2)]
        pos = match.end()
        while pos < len(text) and text[pos] == " ":
            pos += 1
    return total


def parse_image(text: str) -> tuple[ImageRef | None, str | None]:
    """Parse an image reference; return (ref, None) or (None, reason)."""
    rest = text
    digest = None
    if "@" in rest:
        rest, digest = rest.split("@", 1)
        if not DIGEST_RE.match(digest):
            return None, f"bad digest '{digest}' (expected sha256: and 64 hex digits)"
    registry = None
    first, slash, remainder = rest.partition("/")
    if slash and ("." in first or ":" in first or first == "localhost" or first.startswith("[")):
        if not DOMAIN_RE.match(first):
            return None, f"bad registry '{first}'"
        registry, rest = first, remainder
    tag = None
    last_slash = rest.rfind("/")
    colon = rest.rfind(":")
    if colon > last_slash:
        rest, tag = rest[:colon], rest[colon + 1 :]
        if not TAG_RE.match(tag):
            return None, f"bad tag '{tag}'"
    if not rest:
        return None, "repository name is empty"
    if rest.lower() != rest and REPO_RE.match(rest.lower()):
        return None, f"repository '{rest}' must be lowercase"
    if not REPO_RE.match(rest):
        return None, f"bad repository name '{rest}'"
    return ImageRef(registry, rest, tag, digest), None


def _bad_char(value: str) -> str | None:
    for ch in value:
        if ch in _CONTROL_NAMES:
            return _CONTROL_NAMES[ch]
        if ord(ch) < 0x20 or ord(ch) == 0x7F:
            return f"a control character (U+{ord(ch):04X})"
    return None


def _normalised(path: str) -> str:
    normal = os.path.normpath(path)
    return "/" + normal.lstrip("/") if normal.startswith("//") else normal


# --------------------------------------------------------------------------- the checker


@dataclass
class _Field:
    key: str
    node: yaml.Node


class _Checker:
    """Walks one spec's YAML nodes, builds the Service, and records every problem on the way."""

    def __init__(self, path: Path, root: Path, check_files: bool) -> None:
        self.path = path
        self.root = root
        self.check_files = check_files
        self.diagnostics: list[Diagnostic] = []

    # -- reporting
    def loc(self, node: yaml.Node | None) -> Location:
        if node is None:
            return Location(self.path, 1, 1)
        return Location(self.path, node.start_mark.line + 1, node.start_mark.column + 1)

    def error(self, node: yaml.Node | None, key: str, message: str, hint: str | None = None) -> None:
        self.diagnostics.append(Diagnostic(self.loc(node), key, message, hint))

    def warn(self, node: yaml.Node | None, key: str, message: str, hint: str | None = None) -> None:
        self.diagnostics.append(Diagnostic(self.loc(node), key, message, hint, "warning"))

    # -- generic shapes
    def mapping(self, node: yaml.Node, key: str, allowed: Sequence[str] | None) -> dict[str, _Field] | None:
        if not isinstance(node, yaml.MappingNode):
            self.error(node, key, f"expected a mapping, got {_kind(node)}")
            return None
        result: dict[str, _Field] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                self.error(key_node, key, "keys must be plain strings")
                continue
            name = key_node.value
            path = f"{key}.{name}" if key else name
            if name in result:
                first = result[name].node
                self.error(
                    key_node,
                    path,
                    f"duplicate key '{name}' (first given at line {first.start_mark.line + 1})",
                )
                continue
            if allowed is not None and name not in allowed:
                self.error(key_node, path, f"unknown key '{name}'", did_you_mean(name, allowed))
                continue
            result[name] = _Field(name, value_node)
        return result

    def string(self, node: yaml.Node, key: str, *, allow_empty: bool = False) -> str | None:
        if not isinstance(node, yaml.ScalarNode):
            self.error(node, key, f"expected a string, got {_kind(node)}")
            return None
        if node.tag == "tag:yaml.org,2002:null" and node.style is None:
            self.error(node, key, "expected a string, got nothing (null)")
            return None
        value: str = node.value
        bad = _bad_char(value)
        if bad:
            self.error(node, key, f"value contains {bad}", "unit files cannot carry it; remove it")
            return None
        if not value and not allow_empty:
            self.error(node, key, "must not be empty")
            return None
        return value

    def boolean(self, node: yaml.Node, key: str) -> bool | None:
        if isinstance(node, yaml.ScalarNode) and node.value in ("true", "True", "TRUE"):
            return True
        if isinstance(node, yaml.ScalarNode) and node.value in ("false", "False", "FALSE"):
            return False
        shown = f"'{node.value}'" if isinstance(node, yaml.ScalarNode) else _kind(node)
        self.error(node, key, f"expected true or false, got {shown}")
        return None

    def string_list(
        self, node: yaml.Node, key: str, *, allow_empty: bool = False
    ) -> list[tuple[str, yaml.Node]] | None:
        if isinstance(node, yaml.ScalarNode) and node.tag == "tag:yaml.org,2002:null":
            return []
        if not isinstance(node, yaml.SequenceNode):
            self.error(node, key, f"expected a list, got {_kind(node)}")
            return None
        items: list[tuple[str, yaml.Node]] = []
        for index, item in enumerate(node.value):
            value = self.string(item, f"{key}[{index}]", allow_empty=allow_empty)
            if value is not None:
                items.append((value, item))
        return items

    def abs_path(
        self, value: str, node: yaml.Node, key: str, *, colon_ok: bool = True
    ) -> PurePosixPath | None:
        if not colon_ok and ":" in value:
            self.error(
                node, key, f"path contains ':': '{value}'", "podman's --volume and --device split on ':'"
            )
            return None
        if not value.startswith("/"):
            self.error(node, key, f"path must be absolute: '{value}'")
            return None
        normal = _normalised(value)
        if normal != value:
            self.error(node, key, f"path is not normalised: '{value}'", f"write '{normal}'")
            return None
        return PurePosixPath(value)

    def duration(self, node: yaml.Node, key: str) -> int | None:
        text = self.string(node, key)
        if text is None:
            return None
        value = parse_duration_ms(text)
        if value is None:
            self.error(node, key, f"invalid duration '{text}'", "write e.g. 30s, 2min, 500ms or 1h")
        return value

    # -- the service
    def service(self, root_node: yaml.Node | None) -> Service | None:
        if root_node is None:
            self.error(None, "", "spec is empty", "a spec needs at least 'image'")
            return None
        top = self.mapping(root_node, "", TOP_KEYS)
        if top is None:
            return None
        get = top.get

        name_field = get("name")
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

        image: ImageRef | None = None
        image_field = get("image")
        if image_field is None:
            self.error(
                root_node,
                "image",
                "required key is missing",
                "add e.g. image: registry:5000/nova-compute:2024.1",
            )
        else:
            text = self.string(image_field.node, "image")
            if text is not None:
                image, reason = parse_image(text)
                if image is None:
                    self.error(image_field.node, "image", f"invalid image reference '{text}': {reason}")
                elif image.registry is None:
                    self.warn(
                        image_field.node,
                        "image",
                        f"'{text}' names no registry",
                        "podman under systemd cannot ask which registry to use: write e.g. "
                        f"REGISTRY:PORT/{text}",
                    )
                elif image.tag is None and image.digest is None:
                    self.warn(
                        image_field.node,
                        "image",
                        f"'{text}' has no tag or digest and means ':latest'",
                        "pin a tag so upgrades are deliberate",
                    )

        description = ""
        if (f := get("description")) is not None:
            description = self.string(f.node, "description", allow_empty=True) or ""

        command: tuple[str, ...] | None = None
        if (f := get("command")) is not None:
            if isinstance(f.node, yaml.ScalarNode) and f.node.tag == "tag:yaml.org,2002:str":
                self.error(
                    f.node,
                    "command",
                    "expected a list of strings (argv), got a string",
                    "shell strings are not accepted; write command: [/usr/sbin/libvirtd, --listen]",
                )
            else:
                items = self.string_list(f.node, "command", allow_empty=True)
                if items is not None:
                    if not items:
                        self.error(
                            f.node, "command", "must not be empty", "omit command: to use the image's default"
                        )
                    command = tuple(v for v, _ in items)

        namespaces: list[str] = []
        if (f := get("host_namespaces")) is not None:
            for index, (value, node) in enumerate(self.string_list(f.node, "host_namespaces") or []):
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

        privileged = False
        if (f := get("privileged")) is not None:
            privileged = bool(self.boolean(f.node, "privileged"))

        mounts = self.mounts(get("mounts"))
        devices = self.devices(get("devices"))
        environment = self.environment(get("environment"))
        secrets = self.secrets(get("secrets"), {k for k, _ in environment})

        requires: list[str] = []
        requires_at: list[Location] = []
        if (f := get("requires")) is not None:
            for index, (value, node) in enumerate(self.string_list(f.node, "requires") or []):
                if value.endswith(".service"):
                    value = value[: -len(".service")]
                if value == name:
                    self.error(node, f"requires[{index}]", "a service cannot require itself")
                elif value in requires:
                    self.error(node, f"requires[{index}]", f"'{value}' is listed twice")
                else:
                    requires.append(value)
                    requires_at.append(self.loc(node))

        health = self.health(get("health"))

        stop_timeout_s = 10
        if (f := get("stop_timeout")) is not None:
            ms = self.duration(f.node, "stop_timeout")
            if ms is not None:
                if ms <= 0 or ms > 3_600_000:
                    self.error(f.node, "stop_timeout", "must be between 1s and 1h")
                else:
                    stop_timeout_s = -(-ms // 1000)

        restart = "on-failure"
        if (f := get("restart")) is not None:
            policy = self.string(f.node, "restart")
            if policy is not None and policy not in RESTART_VALUES:
                self.error(
                    f.node,
                    "restart",
                    f"invalid restart policy '{policy}' (expected one of {', '.join(RESTART_VALUES)})",
                    did_you_mean(policy, RESTART_VALUES),
                )
            elif policy is not None:
                restart = policy

        keeps_vms = False
        if (f := get("keeps_vms")) is not None:
            keeps_vms = bool(self.boolean(f.node, "keeps_vms"))
            if keeps_vms:
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

        secrets_field = get("secrets")
        if secrets and secrets_field is not None and get("command") is None:
            self.error(
                secrets_field.node,
                "secrets",
                "services with secrets need command: (the full argv)",
                "secrets are loaded by a /bin/sh entrypoint that then runs command:, replacing the "
                "image's ENTRYPOINT and CMD",
            )

        preflight = self.preflight(get("preflight"))
        podman_args = self.podman_args(get("podman_args"), namespaces, bool(secrets))

        if name is None or image is None or any(d.severity == "error" for d in self.diagnostics):
            return None
        service = Service(
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
            preflight=preflight,
            podman_args=tuple(podman_args),
        )
        return _with_hash(service)

    def mounts(self, f: _Field | None) -> list[Mount]:
        if f is None:
            return []
        if not isinstance(f.node, yaml.SequenceNode):
            self.error(f.node, "mounts", f"expected a list, got {_kind(f.node)}")
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

    def devices(self, f: _Field | None) -> list[PurePosixPath]:
        if f is None:
            return []
        devices: list[PurePosixPath] = []
        for index, (value, node) in enumerate(self.string_list(f.node, "devices") or []):
            path = self.abs_path(value, node, f"devices[{index}]", colon_ok=False)
            if path is not None and path in devices:
                self.error(node, f"devices[{index}]", f"'{value}' is listed twice")
            elif path is not None:
                devices.append(path)
        return devices

    def environment(self, f: _Field | None) -> list[tuple[str, str]]:
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
            value = self.string(entry.node, key, allow_empty=True)
            if value is not None:
                result.append((name, value))
        return result

    def secrets(self, f: _Field | None, plain: set[str]) -> list[Secret]:
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

    def health(self, f: _Field | None) -> Health | None:
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

    def preflight(self, f: _Field | None) -> Preflight:
        if f is None:
            return Preflight()
        entries = self.mapping(f.node, "preflight", PREFLIGHT_KEYS) or {}
        modules: list[str] = []
        units: list[str] = []
        paths: list[PurePosixPath] = []
        if (sub := entries.get("kernel_modules")) is not None:
            for index, (value, node) in enumerate(
                self.string_list(sub.node, "preflight.kernel_modules") or []
            ):
                if not MODULE_RE.match(value):
                    self.error(node, f"preflight.kernel_modules[{index}]", f"invalid module name '{value}'")
                else:
                    modules.append(value)
        if (sub := entries.get("host_units_inactive")) is not None:
            for index, (value, node) in enumerate(
                self.string_list(sub.node, "preflight.host_units_inactive") or []
            ):
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
            for index, (value, node) in enumerate(self.string_list(sub.node, "preflight.paths") or []):
                path = self.abs_path(value, node, f"preflight.paths[{index}]")
                if path is not None:
                    paths.append(path)
        return Preflight(tuple(modules), tuple(units), tuple(paths))

    def podman_args(self, f: _Field | None, namespaces: list[str], has_secrets: bool) -> list[str]:
        if f is None:
            return []
        result: list[str] = []
        for index, (value, node) in enumerate(self.string_list(f.node, "podman_args") or []):
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
            option = value.split("=", 1)[0]
            if option in OWNED_OPTIONS:
                owner = OWNED_OPTIONS[option]
                if owner is None:
                    self.error(node, key, f"{option} is set by compute-units and cannot be changed")
                else:
                    self.error(
                        node,
                        key,
                        f"{option} conflicts with the typed option '{owner}'",
                        f"use the spec key '{owner}' instead",
                    )
                continue
            if option in ("--label", "-l") and value.split("=", 1)[-1].startswith("compute-units."):
                self.error(node, key, "labels compute-units.* are set by compute-units")
                continue
            if option == "--entrypoint" and has_secrets:
                self.error(
                    node,
                    key,
                    "--entrypoint cannot be combined with secrets",
                    "secrets are loaded by compute-units' own entrypoint; put the program in command:",
                )
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


def _kind(node: yaml.Node) -> str:
    if isinstance(node, yaml.MappingNode):
        return "a mapping"
    if isinstance(node, yaml.SequenceNode):
        return "a list"
    if node.tag == "tag:yaml.org,2002:null":
        return "nothing (null)"
    if node.tag == "tag:yaml.org,2002:str":
        return f"the string '{node.value}'"
    return f"'{node.value}'"


def _with_hash(service: Service) -> Service:
    """Attach a hash of everything that affects the unit (not where the spec lives)."""
    payload = {
        f.name: getattr(service, f.name)
        for f in fields(service)
        if f.name not in ("source", "location", "spec_hash", "requires_at")
    }
    text = json.dumps(payload, default=_jsonable, sort_keys=True)
    digest = hashlib.sha256(text.encode()).hexdigest()[:16]
    return replace(service, spec_hash=digest)


def _jsonable(value: object) -> object:
    if hasattr(value, "__dataclass_fields__"):
        return {k: getattr(value, k) for k in value.__dataclass_fields__}
    return str(value)
