"""Reading a spec file only when it can be trusted, and never more of it than a spec can be.

A spec decides what runs as root with every privilege, so it is read only when the file and the
directory it is in are owned by the trusted user (root; a parameter, for tests) and writable by
nobody else. A symlink is followed only to a regular .yaml/.yml file that passes the same
checks, in a directory that does too (so a link to /etc/shadow is never read). Anything that is not a regular file (a device, a fifo, a socket) is
refused without being opened. The file is opened once, and the checks are repeated on the open
descriptor, so a file swapped between the checks and the read is refused too.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from ..errors import Diagnostic, Location

MAX_SPEC_BYTES = 1024 * 1024  # 1 MiB: far more than any spec needs, read no further


class Untrusted(Exception):
    """The spec file (or its directory) may not be read; the diagnostic says why and how to fix it."""

    def __init__(self, diagnostic: Diagnostic) -> None:
        super().__init__(diagnostic.message)
        self.diagnostic = diagnostic


def read_trusted(path: Path, *, owner_uid: int = 0, max_bytes: int = MAX_SPEC_BYTES) -> bytes:
    """The bytes of spec `path`, or `Untrusted` (or `OSError` for a file that cannot be read)."""
    where = Location(path)
    link = os.lstat(path)
    _check_directory(path.parent, path, owner_uid)
    target = path
    if stat.S_ISLNK(link.st_mode):
        target = Path(os.path.realpath(path))
        if target.suffix not in (".yaml", ".yml"):
            message = f"spec is a symlink to {target}, which is not a .yaml or .yml file; it was not read"
            raise Untrusted(Diagnostic(where, "", message, "symlinks may point only at spec files"))
        _check_directory(target.parent, path, owner_uid)
    before = os.stat(path)
    _check_file(before, path, target, owner_uid, max_bytes)
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY)
    try:
        now = os.fstat(fd)
        if (now.st_dev, now.st_ino) != (before.st_dev, before.st_ino):
            raise Untrusted(Diagnostic(where, "", "spec file changed while it was being read; not read"))
        _check_file(now, path, target, owner_uid, max_bytes)
        chunks: list[bytes] = []
        size = 0
        while size <= max_bytes and (chunk := os.read(fd, 65536)):
            chunks.append(chunk)
            size += len(chunk)
    finally:
        os.close(fd)
    if size > max_bytes:
        raise Untrusted(Diagnostic(where, "", too_big(max_bytes)))
    return b"".join(chunks)


def too_big(max_bytes: int) -> str:
    return f"spec file is larger than {max_bytes // 1024} KiB (the limit); it was not read"


def _owner(uid: int) -> str:
    return "root" if uid == 0 else f"uid {uid}"


def _fix(uid: int, path: Path) -> str:
    owner = "root:root" if uid == 0 else str(uid)
    return f"chown {owner} {path} && chmod go-w {path}"


def _check_file(st: os.stat_result, path: Path, target: Path, owner_uid: int, max_bytes: int) -> None:
    where = Location(path)
    shown = f"{path} -> {target}" if target != path else str(path)
    if not stat.S_ISREG(st.st_mode):
        what = "a directory" if stat.S_ISDIR(st.st_mode) else "not a regular file (a device, fifo or socket)"
        via = f", through a symlink to {target}" if target != path else ""
        raise Untrusted(
            Diagnostic(where, "", f"spec is {what}{via}; it was not read", "specs are regular files")
        )
    if st.st_uid != owner_uid:
        message = f"spec file {shown} is owned by uid {st.st_uid}, not {_owner(owner_uid)}; it was not read"
        raise Untrusted(Diagnostic(where, "", message, _fix(owner_uid, target)))
    if st.st_mode & 0o022:
        mode = stat.S_IMODE(st.st_mode)
        message = f"spec file {shown} is writable by group or others (mode {mode:04o}); it was not read"
        raise Untrusted(Diagnostic(where, "", message, _fix(owner_uid, target)))
    if st.st_size > max_bytes:
        raise Untrusted(Diagnostic(where, "", too_big(max_bytes)))


def _check_directory(directory: Path, path: Path, owner_uid: int) -> None:
    st = os.stat(directory)
    where = Location(path)
    if st.st_uid != owner_uid:
        message = f"directory {directory} is owned by uid {st.st_uid}, not {_owner(owner_uid)}; the spec was not read"
        raise Untrusted(Diagnostic(where, "", message, _fix(owner_uid, directory)))
    if st.st_mode & 0o022:
        mode = stat.S_IMODE(st.st_mode)
        message = (
            f"directory {directory} is writable by group or others (mode {mode:04o}); the spec was not read"
        )
        raise Untrusted(Diagnostic(where, "", message, _fix(owner_uid, directory)))
