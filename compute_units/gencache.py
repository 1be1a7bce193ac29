"""The generator's cache: the units of the last clean run, reused while none of its inputs changed.

Python's start alone costs about what podman's whole Quadlet generator does; parsing YAML,
validating and rendering through jinja2 cost several times more. When every input is as it was,
the generator writes the cached tree (files, modes, symlinks) and log lines of the last run
instead: the same bytes, with os, sys and marshal only (no pathlib, YAML, jinja2).

Inputs, stamped by (type and mode, owner, size, mtime, ctime, inode): the spec directories of the
search path and every entry in them (through symlinks), the site and built-in template
directories, the upgrade state file (pins), the facts record and the podman binary (secrets are
rendered per podman version, facts.py), this package's own files (an upgrade of compute-units
changes the output), and the secret files the specs name (their existence and mode are checked).
A run that left a service out for unknown secret facts is not cached (a later pull may fix it),
nor one during an unfinished upgrade: its units depend on the boot id too (a boot after a power
cut runs the declared image, generator.write_boot_pin), and state.json is the same after that boot.
Runs with errors are never cached. A run with an input modified (mtime) in the last 2 s is not cached
either (a same-size edit within the clock's granularity would keep the stamp: git's "racy" rule).
The cache file must be a regular file owned by root and writable by no one else; anything wrong
with it (missing, stale, unreadable, foreign) means the full path, never a failure.
"""

from __future__ import annotations

import marshal
import os
import sys
import time

FORMAT = 1
CACHE = "var/cache/compute-units/generator.cache"  # under COMPUTE_UNITS_ROOT
SEARCH_PATH = ("etc/compute-units/services", "run/compute-units/services", "usr/share/compute-units/services")
SITE_TEMPLATES = "etc/compute-units/templates"
STATE_FILE = "var/lib/compute-units/state.json"
FACTS_FILE = "var/lib/compute-units/facts.json"  # facts.FACTS_FILE (not imported: the hit path stays lean)
PODMAN = "/usr/bin/podman"
RACY_S = 2.0
PACKAGE = os.path.dirname(os.path.abspath(__file__))

Stamp = tuple[object, ...]


def _stat(path: str, follow: bool = True) -> Stamp | None:
    try:
        st = os.stat(path) if follow else os.lstat(path)
    except OSError:
        return None
    return (st.st_mode, st.st_uid, st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino)


def _listing(directory: str) -> list[object]:
    """The directory's stamp and its entries' (name, lstat, stat of the target), sorted."""
    entries: list[object] = [directory, _stat(directory)]
    try:
        names = sorted(os.listdir(directory))
    except OSError:
        return entries
    for name in names:
        if name == "__pycache__":
            continue
        path = os.path.join(directory, name)
        link = _stat(path, follow=False)
        entries.append((name, link, _stat(path), os.path.realpath(path) if link and _is_link(link) else None))
    return entries


def _is_link(stamp: Stamp) -> bool:
    mode = stamp[0]
    return isinstance(mode, int) and (mode & 0o170000) == 0o120000


def inputs(root: str) -> list[object]:
    """Everything the full path reads, except the secret files (named by the specs)."""
    stamp: list[object] = [FORMAT, sys.hexversion, root]
    for directory in SEARCH_PATH:
        listing = _listing(os.path.join(root, directory))
        stamp.append(listing)
        # a symlinked spec's target directory is checked too (owner, mode)
        for entry in listing[2:]:
            target = entry[3] if isinstance(entry, tuple) else None
            if isinstance(target, str):
                stamp.append(_stat(os.path.dirname(target)))
    templates = os.path.join(root, SITE_TEMPLATES)
    for directory in (
        templates,
        os.path.join(PACKAGE, "templates"),
        os.path.join(os.path.dirname(PACKAGE), "templates"),
    ):
        stamp.append(_listing(directory))
    stamp.append(_listing("/usr/share/compute-units/templates"))
    stamp.append(_stat(os.path.join(root, STATE_FILE)))
    # what secrets are rendered from (facts.py): the facts record, and podman (its version)
    stamp.append(_stat(os.path.join(root, FACTS_FILE)))
    stamp.append(_stat(os.path.join(root, PODMAN.lstrip("/"))))
    for directory, dirs, _files in os.walk(PACKAGE):
        dirs[:] = sorted(d for d in dirs if d != "__pycache__")
        stamp.append(_listing(directory))
    return stamp


def secret_stamps(paths: list[str]) -> list[object]:
    return [(p, _stat(p)) for p in paths]


def _times(stamp: object, found: list[int]) -> None:
    if isinstance(stamp, tuple) and len(stamp) == 6 and all(isinstance(v, int) for v in stamp):
        found.append(stamp[3])
    elif isinstance(stamp, (list, tuple)):
        for s in stamp:
            _times(s, found)


def racy(*stamps: object) -> bool:
    found: list[int] = []
    for stamp in stamps:
        _times(stamp, found)
    return bool(found) and max(found) > time.time_ns() - int(RACY_S * 1e9)


def read_tree(directory: str) -> list[tuple[str, str, object, int]]:
    """Every entry under `directory`: (relative path, kind, content or link target, mode)."""
    tree: list[tuple[str, str, object, int]] = []
    for here, dirs, files in os.walk(directory):
        dirs.sort()
        rel = os.path.relpath(here, directory)
        for name in sorted(dirs + files):
            path = os.path.join(here, name)
            relpath = os.path.normpath(os.path.join(rel, name))
            st = os.lstat(path)
            if os.path.islink(path):
                tree.append((relpath, "link", os.readlink(path), 0))
            elif os.path.isdir(path):
                tree.append((relpath, "dir", None, st.st_mode & 0o7777))
            else:
                with open(path, "rb") as handle:
                    tree.append((relpath, "file", handle.read(), st.st_mode & 0o7777))
    return tree


def write_tree(directory: str, tree: list[tuple[str, str, object, int]]) -> None:
    for relpath, kind, content, mode in tree:
        path = os.path.join(directory, relpath)
        if kind == "dir":
            os.mkdir(path)
            os.chmod(path, mode)
        elif kind == "link":
            os.symlink(str(content), path)
        else:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
            try:
                os.write(fd, content)  # type: ignore[arg-type]
                os.fchmod(fd, mode)
            finally:
                os.close(fd)


def load(root: str) -> dict[str, object] | None:
    """The cache entry, when it is trustworthy and matches the inputs as they are now."""
    path = os.path.join(root, CACHE)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
    except OSError:
        return None
    try:
        st = os.fstat(fd)
        if (st.st_mode & 0o170000) != 0o100000 or st.st_uid != os.getuid() or st.st_mode & 0o022:
            return None
        with os.fdopen(fd, "rb", closefd=False) as handle:
            entry = marshal.load(handle)
    except (OSError, EOFError, ValueError, TypeError):
        return None
    finally:
        os.close(fd)
    if not isinstance(entry, dict) or entry.get("inputs") != inputs(root):
        return None
    secrets = entry.get("secrets")
    if not isinstance(secrets, list) or entry.get("secret_stamps") != secret_stamps(secrets):
        return None
    return entry


def store(root: str, stamp: list[object], secrets: list[str], tree: object, log: list[str]) -> None:
    """Best effort (a read-only root at boot, no /var yet: no cache, no failure)."""
    secret_stamp = secret_stamps(secrets)
    if racy(stamp, secret_stamp):
        return
    entry = {"inputs": stamp, "secrets": secrets, "secret_stamps": secret_stamp, "tree": tree, "log": log}
    path = os.path.join(root, CACHE)
    temporary = f"{path}.{os.getpid()}.tmp"
    try:
        os.makedirs(os.path.dirname(path), mode=0o755, exist_ok=True)
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        with os.fdopen(fd, "wb") as handle:
            marshal.dump(entry, handle)
        os.replace(temporary, path)
    except (OSError, ValueError):
        if os.path.lexists(temporary):
            os.unlink(temporary)
