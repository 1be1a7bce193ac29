"""The spec's `sockets:` section: listening sockets systemd holds for a service (socket units) and
passes into its container by socket activation, checked into `model.Socket`s."""

from __future__ import annotations

import ipaddress
import re

import yaml

from ..model import Socket, socket_unit_name
from .nodes import Field, NodeChecker, kind

SOCKET_KEYS = ("name", "path", "port", "address", "mode", "owner", "group")
UNIX_ONLY = ("mode", "owner", "group")
# a file descriptor name (systemd: printable ASCII, no ':') that also makes a unit name
FD_NAME_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,99}\Z")
MODE_RE = re.compile(r"0?[0-7]{3}\Z")
ACCOUNT_RE = re.compile(r"([a-z_][a-z0-9_-]{0,31}|[0-9]{1,10})\Z")
MAX_SOCKET_PATH = 107  # bytes: sockaddr_un.sun_path holds 108 with the terminating NUL


class SocketChecker(NodeChecker):
    """Checks `sockets:`: a list of unix stream paths and TCP ports."""

    def sockets(self, f: Field | None, service: str | None) -> list[Socket]:
        if f is None:
            return []
        if not isinstance(f.node, yaml.SequenceNode):
            self.error(f.node, "sockets", f"expected a list, got {kind(f.node)}")
            return []
        if not self.count(f.node, "sockets"):
            return []
        result: list[Socket] = []
        seen: dict[str, tuple[str, int]] = {}  # unit name / listen value -> (what, index)
        for index, node in enumerate(f.node.value):
            key = f"sockets[{index}]"
            socket = self.socket(node, key)
            if socket is None:
                continue
            unit = socket_unit_name(service or "x", socket.name)
            for what, value in (("name", unit), ("listen", socket.listen)):
                if value in seen:
                    shown = socket.name if what == "name" else socket.listen
                    self.error(node, key, f"'{shown}' is also sockets[{seen[value][1]}]'s {seen[value][0]}")
                    break
            else:
                seen[unit] = ("name", index)
                seen[socket.listen] = ("path" if socket.path is not None else "port", index)
                result.append(socket)
        return result

    def socket(self, node: yaml.Node, key: str) -> Socket | None:
        entries = self.mapping(node, key, SOCKET_KEYS)
        if entries is None:
            return None
        path_f, port_f = entries.get("path"), entries.get("port")
        if (path_f is None) == (port_f is None):
            self.error(
                node,
                key,
                "give exactly one of 'path' (a unix socket) or 'port' (TCP)",
                "e.g. {path: /run/libvirt/libvirt-sock, mode: '0666'} or {port: 16509}",
            )
            return None
        values = {name: self.string(e.node, f"{key}.{name}") for name, e in entries.items()}
        if None in values.values():
            return None
        if path_f is not None:
            return self.unix_socket(entries, values, key)
        return self.tcp_socket(entries, values, key)

    def unix_socket(
        self, entries: dict[str, Field], values: dict[str, str | None], key: str
    ) -> Socket | None:
        node = entries["path"].node
        path = self.abs_path(str(values["path"]), node, f"{key}.path")
        if path is None:
            return None
        ok = True
        if len(str(path).encode()) > MAX_SOCKET_PATH:
            self.error(
                node, f"{key}.path", f"path is longer than {MAX_SOCKET_PATH} bytes (a unix socket's limit)"
            )
            ok = False
        mode = values.get("mode")
        if mode is not None and not MODE_RE.match(mode):
            self.error(
                entries["mode"].node,
                f"{key}.mode",
                f"invalid mode '{mode}'",
                "write it in octal, quoted: '0660'",
            )
            ok = False
        for which in ("owner", "group"):
            value = values.get(which)
            if value is not None and not ACCOUNT_RE.match(value):
                self.error(
                    entries[which].node,
                    f"{key}.{which}",
                    f"invalid {'user' if which == 'owner' else 'group'} '{value}'",
                )
                ok = False
        if "address" in entries:
            self.error(
                entries["address"].node,
                f"{key}.address",
                "'address' applies only to TCP sockets (port:)",
            )
            ok = False
        name = self.fd_name(entries, values, key, default=path.name)
        if name is None or not ok:
            return None
        mode = f"0{mode}" if mode is not None and len(mode) == 3 else mode
        return Socket(name, path=path, mode=mode, owner=values.get("owner"), group=values.get("group"))

    def tcp_socket(self, entries: dict[str, Field], values: dict[str, str | None], key: str) -> Socket | None:
        ok = True
        text = str(values["port"])
        port = int(text) if text.isdigit() else 0
        if not 1 <= port <= 65535:
            self.error(entries["port"].node, f"{key}.port", f"invalid port '{text}' (expected 1 to 65535)")
            ok = False
        for which in UNIX_ONLY:
            if which in entries:
                self.error(
                    entries[which].node, f"{key}.{which}", f"'{which}' applies only to unix sockets (path:)"
                )
                ok = False
        address = values.get("address")
        if address is not None:
            try:
                address = str(ipaddress.ip_address(address))
            except ValueError:
                self.error(
                    entries["address"].node,
                    f"{key}.address",
                    f"invalid address '{address}'",
                    "give an IPv4 or IPv6 address, e.g. 127.0.0.1; omit it for every address",
                )
                ok = False
        name = self.fd_name(entries, values, key, default=f"tcp-{port}")
        if name is None or not ok:
            return None
        return Socket(name, port=port, address=address)

    def fd_name(
        self, entries: dict[str, Field], values: dict[str, str | None], key: str, default: str
    ) -> str | None:
        name = values.get("name")
        if name is None:
            name = default
            node = entries["path" if "path" in entries else "port"].node
        else:
            node = entries["name"].node
        if not FD_NAME_RE.match(name):
            self.error(
                node,
                f"{key}.name",
                f"invalid socket name '{name}'",
                "use letters, digits, '_', '.' and '-' (at most 100), starting with a letter, digit or '_'"
                + ("" if "name" in entries else "; the name comes from the path: set name:"),
            )
            return None
        return name
