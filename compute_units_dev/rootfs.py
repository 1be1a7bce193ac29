"""The root filesystem a sandbox node boots: `debootstrap --variant=minbase` of a Debian release.

One read-only tree per (release, package list, recipe), cached under build/rootfs/ and shared by
every node of that release as the overlay's lowerdir. It is built in a temporary directory and
renamed into place only when complete, under a lock, so a crash never leaves a half tree that a
later run would trust. debootstrap runs in a private mount namespace: the proc/sys mounts it makes
in the target vanish with it, even when it is killed.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

BUILD = Path(__file__).resolve().parents[1] / "build"
ROOTFS = BUILD / "rootfs"
RELEASES = ("bookworm", "trixie")

# what the node needs to run the integration tests: systemd with machined, podman, a registry,
# the tools the tests call, and compute-units' runtime dependencies as Debian packages
# (compute-units itself runs from the bound-in checkout). No nftables/iptables: podman must not
# be able to touch the host's firewall (the node shares the host's network namespace).
COMMON_PACKAGES = (
    "systemd",
    "systemd-sysv",
    "systemd-container",
    "dbus",
    "podman",
    "crun",
    "conmon",
    "uidmap",
    "iproute2",
    "procps",
    "util-linux",
    "bsdutils",
    "busybox-static",
    "curl",
    "docker-registry",
    "python3",
    "python3-jinja2",
    "python3-yaml",
    "python3-typer",
    "python3-rich",
    "python3-pystemd",
)
# podman needs a container-network-stack, a virtual package debootstrap cannot resolve: name the
# provider. bookworm: CNI plugins, as Debian 12 hosts have; trixie: netavark (podman 5 has no CNI).
# Containers still use the host's network namespace (node.CONTAINERS_CONF).
PACKAGES = {
    "bookworm": (*COMMON_PACKAGES, "containernetworking-plugins"),
    "trixie": (*COMMON_PACKAGES, "netavark"),
}
# Python packages the release's Debian packages cannot supply: pure-Python wheels from PyPI,
# installed (--no-deps, the rest stays Debian's) into build/node-python/RELEASE-HASH, which the
# node's entry points put on sys.path after the checkout. bookworm's python3-typer is 0.7.0; the
# CLI declares its options with typing.Annotated and `X | None` (typer 0.9 still fails on the
# latter; pyproject says typer>=0.9: too low). trixie's 0.15.2 works, with click 8.1.3.
PYPI_EXTRAS = {"bookworm": ("typer==0.15.2", "shellingham==1.5.4"), "trixie": ()}
# bump when the steps below change what ends up in the tree
RECIPE = "1"


class RootfsError(RuntimeError):
    pass


def rootfs_name(release: str) -> str:
    if release not in PACKAGES:
        raise RootfsError(f"unknown release {release!r}: choose one of {', '.join(RELEASES)}")
    key = hashlib.sha256(f"{RECIPE}\n{release}\n{','.join(sorted(PACKAGES[release]))}".encode())
    return f"{release}-{key.hexdigest()[:12]}"


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    with path.open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)  # another session building the same tree: wait for it
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def rootfs(release: str) -> Path:
    """The cached tree for `release`; built on first use (about 1-2 minutes)."""
    name = rootfs_name(release)
    target = ROOTFS / name
    if target.is_dir():
        return target
    ROOTFS.mkdir(parents=True, exist_ok=True)
    with _locked(ROOTFS / f".{name}.lock"):
        if target.is_dir():  # built by another session while we waited
            return target
        _remove_stale(name)
        partial = ROOTFS / f".partial-{name}-{time.time_ns()}"
        started = time.monotonic()
        _debootstrap(release, partial)
        seconds = time.monotonic() - started
        partial.rename(target)
    size = subprocess.run(["du", "-sb", str(target)], capture_output=True, text=True, check=True)
    info = {"release": release, "packages": PACKAGES[release], "build_seconds": round(seconds, 1)}
    info["bytes"] = int(size.stdout.split()[0])
    (ROOTFS / f"{name}.json").write_text(json.dumps(info, indent=1) + "\n")
    return target


def _remove_stale(name: str) -> None:
    """Partial trees of crashed builds (never trusted), and older trees of the same release."""
    for stale in ROOTFS.glob(f".partial-{name}-*"):
        shutil.rmtree(stale)
    release = name.split("-", 1)[0]
    for old in ROOTFS.glob(f"{release}-*"):
        if old.is_dir() and old.name != name:
            with (ROOTFS / f".{old.name}.lock").open("w") as handle:
                try:
                    fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    continue  # being built right now
                shutil.rmtree(old)
                (ROOTFS / f"{old.name}.json").unlink(missing_ok=True)


def _debootstrap(release: str, directory: Path) -> None:
    argv = [
        "unshare",
        "--mount",
        "--propagation",
        "private",
        "debootstrap",
        "--variant=minbase",
        f"--include={','.join(PACKAGES[release])}",
        release,
        str(directory),
    ]
    proc = subprocess.run(argv, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        log = directory / "debootstrap/debootstrap.log"
        detail = proc.stderr[-1500:] + (log.read_text(errors="replace")[-1500:] if log.exists() else "")
        raise RootfsError(f"debootstrap {release} failed (exit {proc.returncode}):\n{detail}")
    # downloaded .debs are not part of the tree (about a third of its size)
    for deb in (directory / "var/cache/apt/archives").glob("*.deb"):
        deb.unlink()
    # per-boot identity comes from the node's upper dir (node.boot writes both)
    for identity in ("etc/machine-id", "etc/hostname"):
        (directory / identity).unlink(missing_ok=True)


def python_extras(release: str) -> Path | None:
    """The directory of PYPI_EXTRAS[release] (built once, renamed into place), or None."""
    wanted = PYPI_EXTRAS[release]
    if not wanted:
        return None
    key = hashlib.sha256("\n".join(wanted).encode()).hexdigest()[:12]
    target = BUILD / "node-python" / f"{release}-{key}"
    if target.is_dir():
        return target
    partial = target.with_name(f".partial-{target.name}-{time.time_ns()}")
    partial.parent.mkdir(parents=True, exist_ok=True)
    pip = [sys.executable, "-m", "pip", "install", "-q", "--disable-pip-version-check", "--no-deps"]
    proc = subprocess.run(
        [*pip, "--target", str(partial), *wanted], capture_output=True, text=True, check=False
    )
    if proc.returncode != 0:
        shutil.rmtree(partial, ignore_errors=True)
        raise RootfsError(f"pip install {' '.join(wanted)} failed:\n{proc.stderr[-1500:]}")
    partial.rename(target)
    return target


def versions(release: str, packages: tuple[str, ...]) -> dict[str, str]:
    """Installed versions of `packages` in the cached tree (dpkg's database, read from the host)."""
    argv = ["dpkg-query", f"--admindir={rootfs(release)}/var/lib/dpkg", "-W", "-f=${Package} ${Version}\n"]
    out = subprocess.run([*argv, *packages], capture_output=True, text=True, check=True).stdout
    return dict(line.split(" ", 1) for line in out.splitlines())
