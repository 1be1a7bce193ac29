"""systemd unit files as data: the one model every unit we write is built as, then printed.

A `Unit` is a file name, the comment lines at its top and its sections in order; a `Section` is a
name and its lines in order, each a `(key, value)` pair: `Key=value`, or a comment when the key is
`COMMENT`. Values are final text, already escaped for their key (see `render.exec_line` and
`render.unit_value`): printing adds nothing but `=`, `# ` and newlines.

Builders decide every line (`render.service_unit`, `render.target_unit`, the generator's
`report_unit`, `quadlet.container_file`); templates (templates/*.j2) only print. Pure and
import-light: the generator loads it at every boot. Immutable records as typed NamedTuples, not
frozen dataclasses: making a frozen dataclass class costs ~0.3 ms at import, a NamedTuple ~0.05.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import NamedTuple

COMMENT = "#"  # the key of a comment line: ("#", "text") prints "# text"

Line = tuple[str, str]


def comment(text: str) -> Line:
    return (COMMENT, text)


def comments(lines: Iterable[str]) -> list[Line]:
    return [(COMMENT, text) for text in lines]


class Section(NamedTuple):
    name: str  # Unit, Service, Install, Container, Socket, ...
    entries: tuple[Line, ...]

    @property
    def lines(self) -> list[str]:
        """The section's lines as printed, without the [Name] line."""
        return [f"# {v}" if k == COMMENT else f"{k}={v}" for k, v in self.entries]

    def values(self, key: str) -> list[str]:
        """The values of every `key=` line, in order (a key may repeat: After=, ExecStartPre=)."""
        return [v for k, v in self.entries if k == key]


class Unit(NamedTuple):
    name: str  # file name: nova-libvirt.service, compute-node.target, nova-libvirt.container
    header: tuple[str, ...]  # whole comment lines above the first section (our marker first)
    sections: tuple[Section, ...]

    def section(self, name: str) -> Section:
        for section in self.sections:
            if section.name == name:
                return section
        raise KeyError(f"{self.name} has no [{name}] section")

    @property
    def text(self) -> str:
        """The file: the header, a blank line, then the sections, a blank line between two."""
        parts = [*self.header, ""] if self.header else []
        for section in self.sections:
            parts += [f"[{section.name}]", *section.lines, ""]
        return "\n".join(parts)


def section(name: str, entries: Sequence[Line]) -> Section:
    return Section(name, tuple(entries))
