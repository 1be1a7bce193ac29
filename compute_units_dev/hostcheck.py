"""What a node must leave as it found it on the host, checked without trusting a quiet machine.

Several engineers' checkouts boot nodes and write /tmp on the same host at the same time, so a
plain before/after listing of /tmp or /run fails for reasons that are not ours. What is compared:

- mounts: the whole table, except mount points inside another checkout's build/ (its own nodes'
  mounts, should they ever leak, are that checkout's finding);
- cgroups and processes: everything carrying this checkout's node prefix (none may remain);
- /tmp, /var/tmp, /run *removals*: canary files, aged 30 days, planted at the start; a node whose
  systemd-tmpfiles cleaned the host's directories (the failure this guards against) deletes them,
  while other people's runs do not touch names they never made;
- /tmp, /run *additions*: the paths that podman, crun, machined, nspawn, libvirt or dbus would
  create if a node's mount namespace leaked (exists before == exists after), and any new entry
  whose name carries this checkout's node prefix;
- host network: no new `podman0`/`cni-podman0`/`netavark*` link (a podman run without host
  networking in a node would create the bridge in the host's namespace, which nodes share).
"""

from __future__ import annotations

import os
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from .node import BUILD, NODE_PREFIX

CANARY_DIRS = (Path("/tmp"), Path("/var/tmp"), Path("/run"))
CANARY_AGE = 30 * 24 * 3600
LEAK_PATHS = (
    "/run/containers",
    "/run/libpod",
    "/run/crun",
    "/run/netns",
    "/run/cni",
    "/run/podman",
    "/run/systemd/nspawn",
    "/run/systemd/machines",
    "/run/systemd/generator",
    "/run/systemd/transient",
    "/run/libvirt",
    "/run/dbus/system_bus_socket",
    "/run/compute-units",
    "/var/lib/compute-units",
    "/etc/compute-units",
    "/tmp/containers-user-0",
    "/tmp/podman-run-0",
)
CANARY = f"{NODE_PREFIX}canary-"
BRIDGES = ("podman", "cni-podman", "netavark")


def _listing(path: Path) -> set[str]:
    try:
        return set(os.listdir(path))
    except OSError:
        return set()


def _links() -> set[str]:
    out = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True, check=True).stdout
    return {line.split(":", 2)[1].strip().split("@")[0] for line in out.splitlines()}


def _foreign_build(mount_point: str) -> bool:
    """A mount point inside another checkout's build/nodes or build/rootfs."""
    if mount_point.startswith(f"{BUILD}/"):
        return False
    return "/build/nodes/" in mount_point or "/build/rootfs/" in mount_point


def _mounts() -> list[str]:
    lines = Path("/proc/self/mounts").read_text().splitlines()
    return [line for line in lines if not _foreign_build(line.split()[1])]


def _ours() -> tuple[list[str], list[int]]:
    # os.walk, not rglob: a running node's cgroups come and go during the walk (rglob raises
    # FileNotFoundError then); a node's own cgroup is reported, not walked into
    cgroups = []
    for parent, directories, _ in os.walk("/sys/fs/cgroup"):
        ours = [d for d in directories if d.startswith(NODE_PREFIX)]
        cgroups += [os.path.join(parent, d) for d in ours]
        directories[:] = [d for d in directories if d not in ours]
    cgroups.sort()
    processes = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and NODE_PREFIX in (entry / "cgroup").read_text():
                processes.append(int(entry.name))
        except OSError:
            continue
    return cgroups, sorted(processes)


@dataclass
class HostSnapshot:
    mounts: list[str]
    sandbox_cgroups: list[str]
    sandbox_processes: list[int]
    leak_paths: dict[str, bool]
    tagged: dict[str, set[str]]  # dir -> entries carrying this checkout's prefix
    links: set[str]

    @classmethod
    def take(cls) -> HostSnapshot:
        cgroups, processes = _ours()
        tagged = {
            str(d): {e for e in _listing(d) if NODE_PREFIX in e and not e.startswith(CANARY)}
            for d in CANARY_DIRS
        }
        return cls(
            _mounts(),
            cgroups,
            processes,
            {p: os.path.lexists(p) for p in LEAK_PATHS},
            tagged,
            {link for link in _links() if link.startswith(BRIDGES)},
        )

    def differences(self, after: HostSnapshot) -> list[str]:
        """What changed on the host between self (before) and after; [] when nothing did."""
        found = []
        before_mounts, after_mounts = set(self.mounts), set(after.mounts)
        found += [f"mount appeared: {m}" for m in sorted(after_mounts - before_mounts)]
        found += [f"mount vanished: {m}" for m in sorted(before_mounts - after_mounts)]
        found += [f"cgroup left: {c}" for c in after.sandbox_cgroups if c not in self.sandbox_cgroups]
        found += [f"process left: {p}" for p in after.sandbox_processes if p not in self.sandbox_processes]
        for path, existed in self.leak_paths.items():
            if after.leak_paths[path] != existed:
                found.append(f"{path} {'vanished' if existed else 'appeared'} on the host")
        for directory, entries in after.tagged.items():
            found += [f"{directory}/{e} appeared" for e in sorted(entries - self.tagged[directory])]
        found += [f"network link appeared on the host: {link}" for link in sorted(after.links - self.links)]
        return found


class Canaries:
    """Aged files in the host's /tmp, /var/tmp and /run that a leaking tmpfiles clean-up would delete."""

    def __init__(self, label: str) -> None:
        self.paths = [d / f"{CANARY}{label}-{os.getpid()}" for d in CANARY_DIRS if d.is_dir()]

    def plant(self) -> None:
        old = time.time() - CANARY_AGE
        for path in self.paths:
            path.write_text("a sandbox node must not delete this file\n")
            os.utime(path, (old, old))

    def missing(self) -> list[str]:
        return [f"{p} was deleted (host directory cleaned?)" for p in self.paths if not p.exists()]

    def remove(self) -> None:
        for path in self.paths:
            path.unlink(missing_ok=True)
