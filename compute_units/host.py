"""Facts read from the host's /proc and /sys: processes, their cgroups, kernel modules; and what
`doctor` asks of the host (devices, free space, tool versions, loading a module): `RealHost`."""

from __future__ import annotations

import os
import select
import signal
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

PROC = Path("/proc")
CGROUP_ROOT = Path("/sys/fs/cgroup")


@dataclass(frozen=True)
class Process:
    pid: int
    comm: str
    cgroup: str  # path in systemd's hierarchy (name=systemd on v1/hybrid, the unified one on v2)
    start_time: int  # jiffies since boot: tells a PID that was reused from the one we saw

    @property
    def alive(self) -> bool:
        current = process(self.pid)
        return current is not None and current.start_time == self.start_time


def process(pid: int, proc: Path = PROC) -> Process | None:
    try:
        comm = (proc / str(pid) / "comm").read_text().strip()
        stat = (proc / str(pid) / "stat").read_text()
        cgroups = (proc / str(pid) / "cgroup").read_text()
    except OSError:
        return None
    fields = stat[stat.rfind(")") + 2 :].split()
    return Process(pid, comm, systemd_cgroup(cgroups), int(fields[19]))


def systemd_cgroup(text: str, unified: bool | None = None) -> str:
    """systemd's own cgroup path from a /proc/PID/cgroup text.

    On a hybrid host that is the name=systemd hierarchy; on a cgroup2-only host the unified one
    (`0::`), even when the kernel lists v1 hierarchies too: a cgroup2-only container or node on
    a hybrid kernel shows a name=systemd line that its systemd does not use ("/" or "/..").
    `unified`: whether /sys/fs/cgroup is cgroup2 alone here (None: look).
    """
    if unified is None:
        unified = unified_layout()
    found = ""
    for line in text.splitlines():
        _id, controllers, path = line.split(":", 2)
        if controllers == "name=systemd" and not unified:
            return path
        if _id == "0" and controllers == "":
            found = path
    return found


def unified_layout(root: Path = CGROUP_ROOT) -> bool:
    """/sys/fs/cgroup is a cgroup2 mount (Debian 13, RHEL 10), not the v1 tmpfs of hybrid hosts."""
    return (root / "cgroup.controllers").exists()


def qemu_processes(proc: Path = PROC) -> list[Process]:
    found = []
    for entry in proc.iterdir():
        if entry.name.isdigit():
            try:
                comm = (entry / "comm").read_text()
            except OSError:
                continue
            if comm.startswith("qemu-system") or comm.startswith("qemu-kvm"):
                p = process(int(entry.name), proc)
                if p is not None:
                    found.append(p)
    return sorted(found, key=lambda p: p.pid)


def in_cgroup(p: Process, cgroup: str) -> bool:
    return bool(cgroup) and (p.cgroup == cgroup or p.cgroup.startswith(cgroup.rstrip("/") + "/"))


def machine_scoped(p: Process) -> bool:
    """In a scope systemd-machined made for a VM: machine.slice/…/machine-NAME.scope[/libvirt].

    The same on both layouts (the name=systemd path on hybrid, the unified one on cgroup2, where
    libvirt adds a `libvirt` sub-cgroup under the scope) and on systemd 252 and 257.
    """
    parts = p.cgroup.split("/")
    return "machine.slice" in parts and any(
        part.startswith("machine-") and part.endswith(".scope") for part in parts
    )


def cgroup2_controllers(root: Path = CGROUP_ROOT) -> list[str] | None:
    """The controllers a cgroup2-only host offers (its cgroup.controllers); None on a hybrid or
    legacy host, where /sys/fs/cgroup is no cgroup2 mount and libvirt uses the v1 controllers.

    An empty list matters: libvirt counts such a cgroup2 as no cgroups at all and then never asks
    systemd-machined for a scope, so every guest stays in libvirt's own unit's cgroup.
    """
    try:
        return (root / "cgroup.controllers").read_text().split()
    except OSError:
        return None


def stop_process(
    pid: int, sig: int, timeout: float, *, cgroup: str
) -> Literal["exited", "running", "absent"]:
    """Send `sig` to `pid` and wait until it has exited.

    The wait is a pidfd: the kernel reports the exit the moment it happens (podman's own stop
    checks every 100 ms). Only a process inside `cgroup` is signalled: a PID read a moment ago
    may belong to another process by now. "exited" once it has; "running" if it still runs after
    `timeout` seconds; "absent" if there is no such process in that cgroup (nothing was signalled).
    """
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return "absent"
    try:
        p = process(pid)  # the pidfd pins this process: the PID cannot be reused while it is open
        if p is None or not in_cgroup(p, cgroup):
            return "absent"
        signal.pidfd_send_signal(fd, sig)
        readable, _, _ = select.select([fd], [], [], timeout)
        return "exited" if readable else "running"
    finally:
        os.close(fd)


def signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def loaded_modules(proc: Path = PROC) -> set[str]:
    try:
        lines = (proc / "modules").read_text().splitlines()
    except OSError:
        return set()
    return {line.split()[0] for line in lines if line}


def builtin_modules(release: str) -> set[str]:
    path = Path("/lib/modules") / release / "modules.builtin"
    try:
        return {Path(line).name.removesuffix(".ko") for line in path.read_text().splitlines()}
    except OSError:
        return set()


# modules whose built-in form leaves no trace in /proc/modules, /sys/module or modules.builtin
# (kernels without module support): the kernel config symbol that provides them
CONFIG_SYMBOLS = {"ebtables": "CONFIG_BRIDGE_NF_EBTABLES", "br_netfilter": "CONFIG_BRIDGE_NETFILTER"}


def module_available(name: str, proc: Path = PROC, sys_module: Path = Path("/sys/module")) -> bool:
    """Loaded, or built into the kernel (then it is never listed in /proc/modules)."""
    import gzip

    normal = name.replace("-", "_")
    if normal in loaded_modules(proc) or (sys_module / normal).is_dir():
        return True
    if normal in {m.replace("-", "_") for m in builtin_modules(os.uname().release)}:
        return True
    symbol = CONFIG_SYMBOLS.get(normal)
    if symbol:
        try:
            config = gzip.decompress((proc / "config.gz").read_bytes()).decode(errors="replace")
        except OSError:
            return False
        return f"{symbol}=y" in config.splitlines()
    return False


BOOT_ID = PROC / "sys/kernel/random/boot_id"
MODULES_LOAD = Path("/etc/modules-load.d/compute-units.conf")


class RealHost:
    """The host facts and process control the upgrade engine uses (effects.HostApi)."""

    def module_available(self, name: str) -> bool:
        return module_available(name)

    def exists(self, path: str) -> bool:
        return Path(path).exists()

    def qemu_processes(self) -> list[Process]:
        return qemu_processes()

    def alive(self, p: Process) -> bool:
        return p.alive

    def stop_process(
        self, pid: int, sig: int, timeout: float, *, cgroup: str
    ) -> Literal["exited", "running", "absent"]:
        return stop_process(pid, sig, timeout, cgroup=cgroup)

    def boot_id(self) -> str:
        return boot_id()

    def mountinfo(self) -> str:
        return (PROC / "self/mountinfo").read_text()

    def device_mode(self, path: str) -> int | None:
        """st_mode of `path` (None when it does not exist)."""
        try:
            return Path(path).stat().st_mode
        except FileNotFoundError:
            return None

    def open_rw(self, path: str) -> None:
        """Open `path` read-write and close it again; OSError when it cannot be opened."""
        os.close(os.open(path, os.O_RDWR | os.O_CLOEXEC))

    def free_bytes(self, path: str) -> int:
        fs = os.statvfs(path)
        return fs.f_bavail * fs.f_frsize

    def tool_version(self, tool: str) -> str:
        """The first line `TOOL --version` prints; CommandError or IndexError when there is none."""
        from . import runner

        return runner.run([tool, "--version"]).stdout.splitlines()[0]

    def load_module(self, name: str) -> Path:
        """modprobe NAME, and list it in MODULES_LOAD for the next boots; returns that file.
        CommandError or OSError when either fails."""
        from . import runner

        runner.run(["modprobe", name])
        MODULES_LOAD.parent.mkdir(parents=True, exist_ok=True)
        existing = MODULES_LOAD.read_text().split() if MODULES_LOAD.exists() else []
        if name not in existing:
            with MODULES_LOAD.open("a") as handle:
                handle.write(f"{name}\n")
        return MODULES_LOAD

    def cgroup2_controllers(self) -> list[str] | None:
        return cgroup2_controllers()


def boot_id(path: Path = BOOT_ID) -> str:
    """This boot's id (changes at every boot: tells a reboot mid-upgrade)."""
    try:
        return path.read_text().strip()
    except OSError:
        return ""
