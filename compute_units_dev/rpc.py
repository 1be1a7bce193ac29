"""libvirt clients that watch availability from the host, as libvirt's own clients see it.

`NewConnections` opens a fresh connection for every request (virsh, a nova-compute that just
started); `LongLived` keeps one connection, as nova-compute does, and reconnects when it breaks.
Both speak libvirt's RPC (REMOTE_PROC_AUTH_LIST), so a listening socket alone proves nothing.
"""

from __future__ import annotations

import errno
import socket
import struct
import time
from dataclasses import dataclass
from pathlib import Path

from .sampler import Sampler

PROGRAM, VERSION, AUTH_LIST = 0x20008086, 1, 66
CALL, REPLY = 0, 1
# ECONNREFUSED: nobody listens; ENOENT: the socket file is gone (a libvirtd deleted it on exit)
REFUSED = (errno.ECONNREFUSED, errno.ENOENT)


def auth_list(serial: int) -> bytes:
    """A CALL of REMOTE_PROC_AUTH_LIST: length, program, version, procedure, type, serial, status."""
    return struct.pack(">7I", 28, PROGRAM, VERSION, AUTH_LIST, CALL, serial, 0)


def read_reply(sock: socket.socket, serial: int) -> bool:
    """Read one framed message; True when it is the OK reply to `serial`. EOF raises EOFError."""
    header = _read_exact(sock, 4)
    (length,) = struct.unpack(">I", header)
    body = _read_exact(sock, length - 4)
    _program, _version, _proc, kind, got, status = struct.unpack(">6I", body[:24])
    return bool(kind == REPLY and got == serial and status == 0)


def _read_exact(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise EOFError("connection closed")
        data += chunk
    return data


@dataclass(frozen=True)
class Request:
    started: float
    seconds: float  # from connect() to the reply, or to the failure
    outcome: str  # "ok", "refused" (connect failed), "dropped" (accepted, then no reply), "timeout"


def one_request(path: Path, timeout: float) -> Request:
    started = time.monotonic()
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    try:
        try:
            s.connect(str(path))
        except OSError as exc:
            return Request(
                started, time.monotonic() - started, "refused" if exc.errno in REFUSED else "timeout"
            )
        try:
            s.sendall(auth_list(1))
            ok = read_reply(s, 1)
        except TimeoutError:
            return Request(started, time.monotonic() - started, "timeout")
        except (OSError, EOFError, struct.error):
            ok = False
        return Request(started, time.monotonic() - started, "ok" if ok else "dropped")
    finally:
        s.close()


class NewConnections(Sampler[Request]):
    """A new connection and one RPC every `interval` s; each sample is a `Request`.

    `timeout` is long: a connection that waits in a held socket's backlog must not be counted as
    failed merely for waiting.
    """

    def __init__(self, path: Path, interval: float = 0.005, timeout: float = 30.0) -> None:
        super().__init__(interval)
        self.path = path
        self.timeout = timeout

    def sample(self) -> Request:
        return one_request(self.path, self.timeout)

    def between(self, start: float, end: float) -> list[Request]:
        return [r for _, r in self.samples if start <= r.started <= end]

    def wait_ok(self, timeout: float = 60) -> None:
        """Until the latest request succeeded (setup steps, not measured)."""
        deadline = time.monotonic() + timeout
        while not (self.samples and self.samples[-1][1].outcome == "ok"):
            if time.monotonic() > deadline:
                raise RuntimeError("libvirt does not answer")
            self._stop.wait(0.01)


@dataclass(frozen=True)
class Loss:
    detected: float  # when a request on the kept connection failed
    usable: float | None  # when a request on a new connection was first answered
    attempts: int  # connection attempts until then (refused ones included)


class LongLived(Sampler[bool]):
    """One kept connection, an RPC on it every `interval` s (nova-compute's keepalive, faster).
    When it breaks, reconnect every `interval` s until a new connection answers; `losses` records
    each break and when the client was usable again."""

    def __init__(self, path: Path, interval: float = 0.005, timeout: float = 30.0) -> None:
        super().__init__(interval)
        self.path = path
        self.timeout = timeout
        self.losses: list[Loss] = []
        self._sock: socket.socket | None = None
        self._serial = 0
        self._answered = False  # the first connection is not a reconnection

    def sample(self) -> bool:
        if self._sock is not None and self._call():
            return True
        detected = time.monotonic()
        attempts = 0
        while not self._stop.is_set():
            attempts += 1
            if self._connect() and self._call():
                if self._answered:
                    self.losses.append(Loss(detected, time.monotonic(), attempts))
                self._answered = True
                return False
            self._stop.wait(self.interval)
        if self._answered:
            self.losses.append(Loss(detected, None, attempts))
        return False

    def _connect(self) -> bool:
        self.finish()
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(self.timeout)
        try:
            s.connect(str(self.path))
        except OSError:
            s.close()
            return False
        self._sock = s
        return True

    def _call(self) -> bool:
        assert self._sock is not None
        self._serial += 1
        try:
            self._sock.sendall(auth_list(self._serial))
            return read_reply(self._sock, self._serial)
        except (OSError, EOFError, struct.error):
            self.finish()
            return False

    def finish(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
