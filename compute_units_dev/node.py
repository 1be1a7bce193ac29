"""A throwaway systemd "node": systemd as PID 1 of its own PID/mount/cgroup/UTS/IPC namespaces.

For hosts whose PID 1 is not systemd (our CI machines). The node's root is an overlay whose
lowerdir is a debootstrapped Debian release (compute_units_dev/rootfs.py: bookworm = systemd 252 +
podman 4.3 on hybrid cgroups, as today's hosts; trixie = systemd 257 + podman 5.4 on cgroup2 only,
as RHEL 10 runs), with its own /tmp, /run, /var/tmp, /dev and cgroup sub-trees; the network
namespace is the host's. The checkout is bound in at its own path and compute-units runs from it
with the release's python3 and Debian's packages. Nothing it mounts is visible on the host, and
`shutdown()` removes the cgroup directories it created.
See shared/docs/sandbox-node.md for the facts behind each step, docs/testing.md for the harness.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import resource
import shutil
import signal
import socket
import stat
import subprocess
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from .rootfs import RELEASES, python_extras, rootfs

REPO = Path(__file__).resolve().parents[1]
BUILD = REPO / "build"

# nodes of this checkout: several checkouts (git worktrees) may boot nodes on one host at once,
# and a node's cgroup directories and hostname carry this tag so none touches another's
CHECKOUT_TAG = hashlib.sha256(str(REPO).encode()).hexdigest()[:6]
NODE_PREFIX = f"sandbox-{CHECKOUT_TAG}-"
NODE_INIT = Path(__file__).with_name("node-init.sh")

# what basic/sysinit/sockets/timers would start and what would touch the shared host
MASKED = [
    "systemd-udevd.service",
    "systemd-udevd-control.socket",
    "systemd-udevd-kernel.socket",
    "systemd-udev-trigger.service",
    "systemd-udev-settle.service",
    "systemd-sysctl.service",
    "systemd-modules-load.service",
    "systemd-binfmt.service",
    "proc-sys-fs-binfmt_misc.automount",
    "systemd-networkd.service",
    "systemd-networkd.socket",
    "systemd-resolved.service",
    "systemd-timesyncd.service",
    "systemd-logind.service",
    "getty.target",
    "getty@tty1.service",
    "console-getty.service",
    "serial-getty@.service",
    "systemd-remount-fs.service",
    "systemd-fsck-root.service",
    "systemd-pstore.service",
    "ldconfig.service",
    "e2scrub_reap.service",
    "remote-fs.target",
    "sys-kernel-debug.mount",
    "sys-kernel-tracing.mount",
    "sys-kernel-config.mount",
    "sys-fs-fuse-connections.mount",
    "dev-hugepages.mount",
    "dev-mqueue.mount",
    "apt-daily.timer",
    "apt-daily-upgrade.timer",
    "dpkg-db-backup.timer",
    "e2scrub_all.timer",
    "fstrim.timer",
    "man-db.timer",
    "logrotate.timer",
    "podman-auto-update.timer",
    # WantedBy=default.target: it ran at every boot, and once failed in the boot after a power
    # cut (why was not kept: the harness shuts a node down that fails to boot), leaving the node
    # "degraded"; the benchmarks run `podman auto-update` themselves
    "podman-auto-update.service",
    "docker.service",
    "docker.socket",
    "containerd.service",
    "postgresql.service",
    "docker-registry.service",
    "cron.service",
    "ssh.service",
    "podman-restart.service",
]
# trixie enables more at boot (the dhcp proxy is in default.target.wants)
MASKED_TRIXIE = [
    "kmod-static-nodes.service",
    "netavark-dhcp-proxy.service",
    "netavark-dhcp-proxy.socket",
    "netavark-firewalld-reload.service",
    "podman-clean-transient.service",
]
# how each release's node mounts cgroups: bookworm as the Debian 12 hosts (v1 controllers + v2),
# trixie with cgroup2 alone, as RHEL 10 does (the host binds every controller to v1, so the node's
# cgroup2 has none: no pids/memory/cpu limits, hence pids_limit = 0 below)
CGROUPS = {"bookworm": "hybrid", "trixie": "unified"}
# containers never get a network namespace of their own: netavark/CNI would make a bridge in the
# HOST's network namespace, which nodes share
# podman 5 raises a container's open-files and processes limits (1048576, 4194304), above the
# node's hard limits (the launcher's): crun's setrlimit then fails. Containers get the node's.
CONTAINERS_CONF = """# sandbox node: see compute_units_dev/node.py
[containers]
netns = "host"
pids_limit = 0
default_ulimits = ["nofile={nofile}:{nofile}", "nproc={nproc}:{nproc}"]
"""
# the project's entry points, run by the node's python3 from the bound-in checkout
ENTRY_POINT = """#!/usr/bin/python3
import sys

sys.path[0:0] = {paths!r}
from {module} import {function}

sys.exit({function}())
"""
ENTRY_POINTS = {
    "compute-units": ("compute_units.main", "run"),
    "compute-units-generator": ("compute_units.generator", "main"),
}
GENERATOR = "/usr/local/bin/compute-units-generator"
NODE_EXTRAS = "/usr/local/lib/compute-units-python"  # PYPI_EXTRAS inside the node
# the checkout again, outside /tmp, for the entry points: generators get a private /tmp (systemd >= 254)
NODE_CHECKOUT = "/usr/local/lib/compute-units-checkout"
NODE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

SANDBOX_TARGET = """[Unit]
Description=compute-units sandbox node
Requires=basic.target dbus.socket systemd-journald.socket
Wants=systemd-machined.service multi-user.target
After=basic.target dbus.socket
AllowIsolate=yes
"""


class NodeError(RuntimeError):
    pass


def wait_until(predicate: object, timeout: float, what: str, interval: float = 0.02) -> None:
    """Poll `predicate` until true. Only for states that offer no event (a socket file appearing)."""
    deadline = time.monotonic() + timeout
    while not predicate():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise NodeError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)  # sleep-ok: no event for "a file appeared in another mount namespace"


def host_is_systemd() -> bool:
    try:
        return Path("/proc/1/comm").read_text().strip() == "systemd"
    except OSError:
        return False


@dataclass
class Node:
    name: str  # NAME-RELEASE
    release: str
    directory: Path
    launcher: subprocess.Popen[bytes]
    pid: int
    cgroups: list[Path] = field(default_factory=list)

    # -- running things inside
    def argv(self, argv: Sequence[str]) -> list[str]:
        # a clean environment: the host's PATH (a venv whose python lives under /root/.pyenv)
        # means nothing in the node's root
        base = ["env", "-i", f"PATH={NODE_PATH}", "HOME=/root", "LANG=C.UTF-8"]
        # -r: the node's own root even when this process is chrooted (then the mount namespace's
        # root is not the one the node pivoted to)
        return ["nsenter", "-t", str(self.pid), "-a", "-r", *base, *argv]

    def run(
        self,
        argv: Sequence[str],
        *,
        input: str | None = None,
        check: bool = True,
        timeout: float = 300,
        env: dict[str, str] | None = None,
    ) -> subprocess.CompletedProcess[str]:
        full = self.argv(["env", *(f"{k}={v}" for k, v in (env or {}).items()), *argv] if env else argv)
        proc = subprocess.run(full, input=input, capture_output=True, text=True, timeout=timeout, check=False)
        if check and proc.returncode != 0:
            raise NodeError(
                f"in node {self.name}: {' '.join(argv)} exited {proc.returncode}\n"
                f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
            )
        return proc

    def write_file(self, path: str, data: str | bytes, mode: int = 0o644) -> None:
        """Write through the node (writing into a live overlay's upper dir from the host is not allowed)."""
        payload = data.encode() if isinstance(data, str) else data
        directory = os.path.dirname(path)
        proc = subprocess.run(
            self.argv(["sh", "-c", f'mkdir -p "{directory}" && cat > "{path}" && chmod {mode:o} "{path}"']),
            input=payload,
            capture_output=True,
            check=False,
        )
        if proc.returncode != 0:
            raise NodeError(f"cannot write {path} in node {self.name}: {proc.stderr.decode()}")

    def read_file(self, path: str) -> str:
        return self.run(["cat", path]).stdout

    def copy_tree_in(self, source: Path, destination: str) -> None:
        tar = subprocess.Popen(["tar", "-C", str(source), "-c", "."], stdout=subprocess.PIPE)
        proc = subprocess.run(
            self.argv(["sh", "-c", f'mkdir -p "{destination}" && tar -x -C "{destination}"']),
            stdin=tar.stdout,
            capture_output=True,
            check=False,
        )
        tar.wait()
        if proc.returncode != 0 or tar.returncode != 0:
            raise NodeError(f"cannot copy {source} into {destination}: {proc.stderr.decode()}")

    def host_path(self, path: str) -> Path:
        """A path inside the node, seen from the host (through /proc/PID/root)."""
        return Path(f"/proc/{self.pid}/root") / path.lstrip("/")

    def systemctl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return self.run(["systemctl", *args], check=check)

    def show(self, unit: str, *props: str) -> dict[str, str]:
        out = self.run(["systemctl", "show", unit, *(f"--property={p}" for p in props)]).stdout
        return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)

    # -- lifecycle
    def power_off_hard(self) -> None:
        """A power cut: SIGKILL to the node's PID 1 (the PID namespace dies with it), nothing flushed
        or stopped; the overlay's upper dir, the podman store and /var/lib/libvirt stay as they were.
        `reboot(node)` boots it again over them."""
        if self.launcher.poll() is None and _alive(self.pid):
            os.kill(self.pid, signal.SIGKILL)  # only this PID: we started it
        self.launcher.wait(30)
        remove_cgroups(self.cgroups)

    def shutdown(self, timeout: float = 20.0) -> None:
        if self.launcher.poll() is None and _alive(self.pid):
            # containers persist in the kept store, and one whose PID 1 ignores SIGTERM would hold
            # poweroff for 10 s: remove them all first
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.run(["podman", "rm", "--force", "--time", "0", "--all"], check=False, timeout=30)
            os.kill(self.pid, signal.SIGRTMIN + 4)  # systemd: poweroff (only this PID: we started it)
            try:
                self.launcher.wait(timeout)
            except subprocess.TimeoutExpired:
                if _alive(self.pid):
                    os.kill(self.pid, signal.SIGKILL)  # the PID namespace dies with its init
                self.launcher.wait(10)
        remove_cgroups(self.cgroups)
        for sub in ("upper", "work", "root"):
            shutil.rmtree(self.directory / sub, ignore_errors=True)


def _alive(pid: int) -> bool:
    return Path(f"/proc/{pid}").exists()


def host_unified() -> bool:
    """The host mounts cgroup2 alone at /sys/fs/cgroup (no v1 hierarchy a hybrid node could mount)."""
    return Path("/sys/fs/cgroup/cgroup.controllers").exists()


def cgroup_layout(release: str) -> str:
    """The node's cgroup mounts: the release's (CGROUPS), or unified where the host has no v1."""
    return "unified" if host_unified() else CGROUPS[release]


def cgroup_dirs(name: str) -> list[tuple[Path, Path]]:
    """(parent, new sub-tree) per hierarchy, under this process's current cgroup in each."""
    pairs = []
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        hid, controllers, path = line.split(":", 2)
        if hid == "0":
            mount = "" if host_unified() else "unified"
        elif controllers == "name=systemd":
            mount = "systemd"
        else:
            mount = controllers.split(",")[0]
        parent = Path("/sys/fs/cgroup") / mount / path.lstrip("/")
        if not parent.is_dir():
            continue
        pairs.append((parent, parent / f"{NODE_PREFIX}{name}"))
    return pairs


def remove_cgroups(dirs: Sequence[Path]) -> None:
    for top in dirs:
        if not top.exists():
            continue
        for sub in sorted(
            (p for p in top.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True
        ):
            sub.rmdir()
        top.rmdir()


def _write_config(upper: Path, release: str, hostname: str) -> None:
    units = upper / "etc/systemd/system"
    units.mkdir(parents=True)
    (units / "sandbox.target").write_text(SANDBOX_TARGET)
    (units / "default.target").symlink_to("sandbox.target")
    for unit in MASKED + (MASKED_TRIXIE if release == "trixie" else []):
        (units / unit).symlink_to("/dev/null")
    # a fresh identity per boot (the rootfs has none: several nodes share it)
    (upper / "etc/machine-id").write_text(uuid.uuid4().hex + "\n")
    (upper / "etc/hostname").write_text(hostname + "\n")
    resolv = Path("/etc/resolv.conf")  # image builds run apt-get with the host's network
    if resolv.is_file():
        (upper / "etc/resolv.conf").write_text(resolv.read_text())
    conf = upper / "etc/containers/containers.conf.d"
    conf.mkdir(parents=True)
    nofile, nproc = (resource.getrlimit(r)[1] for r in (resource.RLIMIT_NOFILE, resource.RLIMIT_NPROC))
    (conf / "50-sandbox.conf").write_text(CONTAINERS_CONF.format(nofile=nofile, nproc=nproc))
    bin_dir = upper / "usr/local/bin"
    bin_dir.mkdir(parents=True)
    extras = python_extras(release)
    paths = [NODE_CHECKOUT]
    if extras:
        # a copy in the node's own tree: build/node-python may be a symlink to a shared cache
        # outside the checkout, which is the only host directory a node sees
        shutil.copytree(extras.resolve(), upper / NODE_EXTRAS.lstrip("/"), symlinks=True)
        paths.append(NODE_EXTRAS)
    for command, (module, function) in ENTRY_POINTS.items():
        (bin_dir / command).write_text(ENTRY_POINT.format(paths=paths, module=module, function=function))
        (bin_dir / command).chmod(0o755)


def _prepare(
    directory: Path, release: str, hostname: str, files: dict[str, tuple[str, int]], keep: bool = False
) -> None:
    # the kernel's boot id is the host's: each boot of a node gets its own, bound over it in the node
    (directory / "boot_id").parent.mkdir(parents=True, exist_ok=True)
    (directory / "boot_id").write_text(str(uuid.uuid4()) + "\n")
    if keep:  # booting again over the same disk: nothing is rewritten
        return
    for fresh in ("upper", "work", "root", "libvirt-lib"):  # per boot; storage/ is kept (image cache)
        shutil.rmtree(directory / fresh, ignore_errors=True)
        (directory / fresh).mkdir(parents=True)
    (directory / "storage").mkdir(exist_ok=True)
    _write_config(directory / "upper", release, hostname)
    for path, (text, mode) in files.items():
        target = directory / "upper" / path.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
        target.chmod(mode)


def _make_cgroups(full_name: str) -> list[Path]:
    created: list[Path] = []
    for parent, cgroup in cgroup_dirs(full_name):
        remove_cgroups([cgroup])
        cgroup.mkdir()
        created.append(cgroup)
        if "cpuset" in parent.parts:  # a cpuset cgroup cannot take tasks before it has cpus and mems
            for knob in ("cpuset.cpus", "cpuset.mems"):
                (cgroup / knob).write_text((parent / knob).read_text())
    return created


def boot(
    name: str,
    release: str = "bookworm",
    *,
    base: Path = BUILD / "nodes",
    timeout: float = 60.0,
    files: dict[str, tuple[str, int]] | None = None,
    expect: str = "running",
    keep: bool = False,
) -> Node:
    """Boot a node of Debian `release` and wait until its systemd reports `expect`.

    The node's directory (and podman store, kept across boots) is build/nodes/NAME-RELEASE:
    podman 4.3 and 5.4 never share a store. `files` (path in the node -> (text, mode)) are part of
    the node's image: written before boot, as an image builder would, so generators see them.
    `keep`: boot again over the node's last upper dir and /var/lib/libvirt (after
    `power_off_hard`), as a machine boots again from its disk; only the boot id is new.
    """
    if host_is_systemd():
        raise NodeError("this host runs systemd as PID 1: run the tests against it, not in a sandbox node")
    if release not in RELEASES:
        raise NodeError(f"unknown release {release!r}: choose one of {', '.join(RELEASES)}")
    lower = rootfs(release)
    full_name = f"{name}-{release}"
    hostname = f"{NODE_PREFIX}{full_name}"
    directory = base / full_name
    _prepare(directory, release, hostname, files or {}, keep)
    created = _make_cgroups(full_name)
    procs = " ".join(str(cgroup / "cgroup.procs") for cgroup in created)
    join = f'for f in {procs}; do echo $$ > "$f"; done; exec "$@"'
    unshare = [
        "unshare",
        "--mount",
        "--pid",
        "--cgroup",
        "--uts",
        "--ipc",
        "--fork",
        "--propagation",
        "private",
    ]
    init = [
        str(NODE_INIT),
        str(directory),
        hostname,
        str(REPO),
        str(lower),
        cgroup_layout(release),
        NODE_CHECKOUT,
    ]
    console = open(directory / "console.log", "wb")  # noqa: SIM115 - owned by the node's lifetime
    launcher = subprocess.Popen(
        ["sh", "-c", join, "join", *unshare, *init],
        stdout=console,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
    )
    console.close()
    node = Node(full_name, release, directory, launcher, 0, created)
    try:
        _wait_running(node, timeout, expect)
    except BaseException as exc:
        log = (directory / "console.log").read_text(errors="replace")[-3000:]
        node.shutdown()
        if isinstance(exc, NodeError):
            raise NodeError(f"{exc}\nconsole:\n{log}") from None
        raise
    return node


def reboot(node: Node, timeout: float = 60.0, expect: str = "running") -> Node:
    """Boot `node` again over its kept disk (after `power_off_hard`); a new Node for the new boot."""
    name = node.name.removesuffix(f"-{node.release}")
    return boot(name, node.release, base=node.directory.parent, timeout=timeout, expect=expect, keep=True)


def _wait_running(node: Node, timeout: float, expect: str) -> None:
    launcher = node.launcher
    node.pid = _child_pid(launcher, timeout)
    wait_until(
        lambda: _is_socket(Path(f"/proc/{node.pid}/root/run/systemd/private")) or launcher.poll() is not None,
        timeout,
        "systemd's private socket",
    )
    if launcher.poll() is not None:
        raise NodeError("node exited during boot")
    state = _system_state(node, time.monotonic() + timeout)
    if state.stdout.strip() != expect:
        failed = node.run(["systemctl", "--failed", "--no-legend"], check=False).stdout
        # the failed units' own words: the node is shut down after this, its journal with it
        logs = node.run(
            [
                "sh",
                "-c",
                "for u in $(systemctl --failed --no-legend --plain | cut -d' ' -f1); do "
                'journalctl -b -u "$u" -n 15 --no-pager; done',
            ],
            check=False,
        ).stdout
        raise NodeError(
            f"node state {state.stdout.strip()!r} (systemctl exited {state.returncode}: "
            f"{state.stderr.strip()!r}); failed units:\n{failed}{logs}"
        )


def _system_state(node: Node, deadline: float) -> subprocess.CompletedProcess[str]:
    """`systemctl is-system-running --wait`, asked again while it cannot answer at all: with 20 nodes
    booting on 2 cores its D-Bus call to a busy systemd can time out (no state printed) before the
    boot is done. A state (running, degraded, ...) ends the wait."""
    while True:
        state = node.run(
            ["systemctl", "is-system-running", "--wait"],
            check=False,
            timeout=max(deadline - time.monotonic(), 1),
        )
        if state.stdout.strip() or time.monotonic() >= deadline or node.launcher.poll() is not None:
            return state
        time.sleep(0.2)  # sleep-ok: systemctl failed at once (no bus yet), nothing to wait on: ask again


def _is_socket(path: Path) -> bool:
    try:
        return stat.S_ISSOCK(path.stat().st_mode)
    except OSError:
        return False


def _child_pid(launcher: subprocess.Popen[bytes], timeout: float) -> int:
    """The node's PID 1 seen from the host: the child of `unshare --fork`."""
    found: list[int] = []

    def child() -> bool:
        if launcher.poll() is not None:
            raise NodeError("node launcher exited")
        try:
            text = Path(f"/proc/{launcher.pid}/task/{launcher.pid}/children").read_text().split()
        except OSError:
            return False
        found[:] = [int(t) for t in text]
        return bool(found)

    wait_until(child, timeout, "the node's init process")
    return found[0]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
