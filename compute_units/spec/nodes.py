"""YAML node checking: the generic shapes of a spec (mapping, string, list, boolean, path,
duration), each recording a diagnostic with file:line:column and key path when the node is wrong."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import yaml

from ..errors import Diagnostic, Location
from .values import MAX_ITEMS, MAX_STRING, bad_char, did_you_mean, normal_path, parse_duration_ms


@dataclass
class Field:
    key: str
    node: yaml.Node


class NodeChecker:
    """Checks the generic shapes of one spec's YAML nodes and records every problem on the way."""

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
    def mapping(self, node: yaml.Node, key: str, allowed: Sequence[str] | None) -> dict[str, Field] | None:
        if not isinstance(node, yaml.MappingNode):
            self.error(node, key, f"expected a mapping, got {kind(node)}")
            return None
        if not self.count(node, key):
            return None
        result: dict[str, Field] = {}
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
            result[name] = Field(name, value_node)
        return result

    def count(self, node: yaml.MappingNode | yaml.SequenceNode, key: str) -> bool:
        """At most MAX_ITEMS entries?"""
        if len(node.value) > MAX_ITEMS:
            self.error(node, key, f"has {len(node.value)} entries; the limit is {MAX_ITEMS}")
            return False
        return True

    def string(
        self, node: yaml.Node, key: str, *, allow_empty: bool = False, limit: int = MAX_STRING
    ) -> str | None:
        if not isinstance(node, yaml.ScalarNode):
            self.error(node, key, f"expected a string, got {kind(node)}")
            return None
        if node.tag == "tag:yaml.org,2002:null" and node.style is None:
            self.error(node, key, "expected a string, got nothing (null)")
            return None
        value: str = node.value
        bad = bad_char(value)
        if bad:
            self.error(node, key, f"value contains {bad}", "unit files cannot carry it; remove it")
            return None
        if not value and not allow_empty:
            self.error(node, key, "must not be empty")
            return None
        if len(value) > limit:
            self.error(node, key, f"value is {len(value)} characters long; the limit is {limit}")
            return None
        return value

    def boolean(self, node: yaml.Node, key: str) -> bool | None:
        if isinstance(node, yaml.ScalarNode) and node.value in ("true", "True", "TRUE"):
            return True
        if isinstance(node, yaml.ScalarNode) and node.value in ("false", "False", "FALSE"):
            return False
        shown = f"'{node.value}'" if isinstance(node, yaml.ScalarNode) else kind(node)
        self.error(node, key, f"expected true or false, got {shown}")
        return None

    def string_list(
        self, node: yaml.Node, key: str, *, allow_empty: bool = False
    ) -> list[tuple[str, yaml.Node]] | None:
        if isinstance(node, yaml.ScalarNode) and node.tag == "tag:yaml.org,2002:null":
            return []
        if not isinstance(node, yaml.SequenceNode):
            self.error(node, key, f"expected a list, got {kind(node)}")
            return None
        if not self.count(node, key):
            return None
        items: list[tuple[str, yaml.Node]] = []
        for index, item in enumerate(node.value):
            value = self.string(item, f"{key}[{index}]", allow_empty=allow_empty)
            if value is not None:
                items.append((value, item))
        return items

    def string_items(self, node: yaml.Node, key: str) -> list[tuple[int, str, yaml.Node]]:
        """string_list() with each item's own index in the list (an invalid item is skipped, and
        the items after it keep their index: `key[3]` names the fourth item whatever came before)."""
        items = self.string_list(node, key) or []
        index = {id(item): i for i, item in enumerate(node.value)} if items else {}
        return [(index[id(item)], value, item) for value, item in items]

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
        normal = normal_path(value)
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


def kind(node: yaml.Node, show: bool = True) -> str:
    """What a node is, for a message; with `show`, a scalar's value is quoted."""
    if isinstance(node, yaml.MappingNode):
        return "a mapping"
    if isinstance(node, yaml.SequenceNode):
        return "a list"
    if node.tag == "tag:yaml.org,2002:null":
        return "nothing (null)"
    if not show:
        return "a string" if node.tag == "tag:yaml.org,2002:str" else "a scalar"
    if node.tag == "tag:yaml.org,2002:str":
        return f"the string '{node.value}'"
    return f"'{node.value}'"
