"""A fleet of sandbox nodes for the Ansible collection: ~20 hypervisors on one machine.

One extra node ("fleet-reg") builds the test images (cached in its kept store) and serves them
from Debian's docker-registry on 127.0.0.1 (the registry's blobs live in the kept store too, so
a later session pushes nothing new). Every node shares the host's network namespace, so every
node pulls from that registry. Fleet nodes boot in parallel, each with the project's example
services written before boot: plain nodes run the stand-ins of nova-compute and nova-network;
libvirt nodes run the containerised libvirt (a KVM guest in it, polled over QMP from the host)
and a nova-compute stand-in that is healthy only while libvirt's socket is there.
Ansible reaches each node through the collection's nsenter connection plugin.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from .images import Builder, Registry
from .libvirt import Guest, LibvirtImages, QmpPoller, libvirt_images, start_guest
from .node import Node, NodeError, boot
from .specs import libvirt_spec

T = TypeVar("T")
SERVICES = "/etc/compute-units/services"
CU = "/usr/local/bin/compute-units"  # the node's entry point (the host's venv means nothing there)
# the stand-in service's versions for the fleet: all healthy but `bad`, which exits at start
SVC_VARIANTS = {
    "v1": {"VERSION": "1"},
    "v2": {"VERSION": "2"},
    "v3": {"VERSION": "3"},
    "bad": {"VERSION": "bad", "EXIT_AT_START": "yes"},
}


@dataclass(frozen=True)
class FleetImages:
    svc: dict[str, str]  # tag -> registry reference
    svc_digests: dict[str, str]
    libvirt: LibvirtImages


def svc_spec(description: str, reference: str, *, after_libvirt: bool = False) -> str:
    health = "[/usr/local/bin/healthcheck.sh]"
    extra = ""
    if after_libvirt:  # nova-compute next to a real libvirt: healthy only while libvirt's socket is there
        health = "[test, -S, /run/libvirt/libvirt-sock]"
        extra = (
            "mounts: [{source: /run/libvirt, target: /run/libvirt, create: true}]\nrequires: [nova-libvirt]\n"
        )
    return (
        f"description: {description}\nimage: {reference}\ncommand: [/usr/local/bin/service.sh]\n"
        f"host_namespaces: [pid, network]\nstop_timeout: 5s\n"
        f"health: {{command: {health}, interval: 30s, timeout: 5s, start_period: 10s}}\n{extra}"
    )


def parallel(function: Callable[[Any], T], items: Sequence[Any], workers: int = 20) -> list[T]:
    """function(item) for every item in threads; the first exception is raised after all ended."""
    with ThreadPoolExecutor(max_workers=max(1, min(workers, len(items)))) as pool:
        futures = [pool.submit(function, item) for item in items]
        return [f.result() for f in futures]


@dataclass
class FleetNode:
    node: Node
    host: str  # the inventory name
    libvirt: bool
    guest: Guest | None = None

    def cu(self, *args: str, check: bool = False) -> subprocess.CompletedProcess[str]:
        return self.node.run([CU, *args], check=check)

    def write_specs(self, svc: str, libvirt: str | None = None) -> None:
        """Point the node's specs at new images (what a configuration change would roll out)."""
        for name, text in self.specs(svc, libvirt).items():
            self.node.write_file(f"{SERVICES}/{name}.yaml", text)

    def specs(self, svc: str, libvirt: str | None) -> dict[str, str]:
        if self.libvirt:
            assert libvirt is not None
            return {
                "nova-libvirt": libvirt_spec(libvirt),
                "nova-compute": svc_spec("Nova compute (stand-in)", svc, after_libvirt=True),
            }
        return {
            "nova-compute": svc_spec("Nova compute (stand-in)", svc),
            "nova-network": svc_spec("Nova network (stand-in)", svc),
        }

    def running_digests(self) -> dict[str, str]:
        """service -> digest of the image its container runs (from podman, not from our state)."""
        names = ["nova-libvirt", "nova-compute"] if self.libvirt else ["nova-compute", "nova-network"]
        script = "; ".join(
            f'podman image inspect --format "{{{{.Digest}}}}" '
            f'"$(podman inspect --format "{{{{.Image}}}}" {n})"'
            for n in names
        )
        out = self.node.run(["sh", "-c", script]).stdout.split()
        return dict(zip(names, out, strict=True))


@dataclass
class Fleet:
    registry_node: Node
    registry: Registry
    images: FleetImages
    nodes: list[FleetNode]
    boot_s: float = 0.0
    deploy_s: float = 0.0
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def guests(self) -> list[Guest]:
        return [n.guest for n in self.nodes if n.guest is not None]

    def by_host(self, host: str) -> FleetNode:
        return next(n for n in self.nodes if n.host == host)

    def inventory(self, path: Path, gone: Sequence[str] = (), hostvars: dict[str, str] | None = None) -> Path:
        """An INI inventory, group `compute`, every node through the nsenter connection; `gone`
        are extra hosts whose PID is a finished process (unreachable)."""
        common = f"ansible_connection=compute_units.fleet.nsenter ansible_python_interpreter=/usr/bin/python3 compute_units_executable={CU}"
        lines = ["[compute]"]
        for n in self.nodes:
            extra = (hostvars or {}).get(n.host, "")
            lines.append(f"{n.host} ansible_nsenter_pid={n.node.pid} {common} {extra}".rstrip())
        for host in gone:
            finished = subprocess.Popen(["true"])
            finished.wait()
            lines.append(f"{host} ansible_nsenter_pid={finished.pid} {common}")
        path.write_text("\n".join(lines) + "\n")
        return path

    @contextmanager
    def polling(self, interval: float = 0.1) -> Iterator[list[QmpPoller]]:
        """QMP `query-status` of every guest every `interval` s while the block runs."""
        with ExitStack() as stack:
            yield [stack.enter_context(QmpPoller(g.qmp_path, interval)) for g in self.guests]

    def shutdown(self) -> None:
        for n in self.nodes:
            if n.guest is not None:
                n.guest.destroy()
        parallel(lambda n: n.node.shutdown(), self.nodes)
        self.registry_node.shutdown()


def fleet_images(builder: Builder, registry: Registry) -> FleetImages:
    base = builder.busybox_base()
    references, digests = {}, {}
    for tag, args in SVC_VARIANTS.items():
        local = builder.build("svc", base, args)
        digests[tag] = registry.push(local, "cu-test/fleet-svc", tag)
        references[tag] = registry.reference("cu-test/fleet-svc", tag)
    return FleetImages(references, digests, libvirt_images(builder, registry))


def start_registry(release: str) -> tuple[Node, Registry]:
    """The registry node; its registry keeps blobs in the node's kept store (pushes are no-ops later)."""
    node = boot("fleet-reg", release, timeout=180, files=MASKS)
    try:
        node.run(
            [
                "sh",
                "-c",
                "mkdir -p /var/lib/containers/fleet-registry && ln -s /var/lib/containers/fleet-registry /var/lib/test-registry",
            ]
        )
        return node, Registry.start(node)
    except BaseException:
        node.shutdown()
        raise


# On top of the harness's masks: what a fleet node does not need. The path units matter most:
# every inotify instance counts against the host's fs.inotify.max_user_instances (128 for root,
# shared by every node of every checkout on the machine); with them a node holds 6, without 4.
FLEET_MASKED = [
    "systemd-ask-password-console.path",
    "systemd-ask-password-wall.path",
    "systemd-tmpfiles-clean.timer",
]


# inotify instances a booted fleet node holds (measured: systemd 3, dbus-daemon 1), and what a
# running libvirtd adds
# an empty unit file is a masked unit (systemd.unit(5))
MASKS = {f"/etc/systemd/system/{unit}": ("", 0o644) for unit in FLEET_MASKED}
INOTIFY_PER_NODE = 4
INOTIFY_PER_LIBVIRT = 2


def inotify_instances_in_use() -> int:
    """inotify instances open on this machine (every process runs as root here)."""
    used = 0
    for fd_dir in Path("/proc").glob("[0-9]*/fd"):
        try:
            used += sum(1 for fd in fd_dir.iterdir() if os.readlink(fd) == "anon_inode:inotify")
        except OSError:
            continue  # a process that ended, or a descriptor closed meanwhile
    return used


def check_inotify(nodes: int, libvirt_nodes: int) -> None:
    """Refuse early, and say what to do, rather than hang in boots that cannot finish."""
    limit = int(Path("/proc/sys/fs/inotify/max_user_instances").read_text())
    free = limit - inotify_instances_in_use()
    need = nodes * INOTIFY_PER_NODE + libvirt_nodes * INOTIFY_PER_LIBVIRT
    if free < need:
        raise NodeError(
            f"{nodes} nodes need about {need} inotify instances, {free} of "
            f"{limit} are free (fs.inotify.max_user_instances): stop other nodes, or raise the limit"
        )


def node_files(registry: Registry) -> dict[str, tuple[str, int]]:
    files = {
        "/etc/containers/registries.conf.d/50-sandbox.conf": (
            f'[[registry]]\nlocation = "{registry.address}"\ninsecure = true\n',
            0o644,
        )
    }
    return files | MASKS


def boot_fleet(release: str, count: int, libvirt_hosts: Sequence[int], *, prefix: str = "fleet") -> Fleet:
    """Boot the registry node and `count` fleet nodes (fleet01…), deploy v1 everywhere, start a
    guest on each libvirt host (1-based indexes in `libvirt_hosts`)."""
    check_inotify(count + 1, len(libvirt_hosts))
    started = time.monotonic()
    registry_node, registry = start_registry(release)
    nodes: list[FleetNode] = []
    files = node_files(registry)
    hosts = [(f"{prefix}{i:02d}", i in libvirt_hosts) for i in range(1, count + 1)]

    def boot_one(host: tuple[str, bool]) -> FleetNode:
        name, has_libvirt = host
        fleet_node = FleetNode(boot(name, release, timeout=300, files=files), name, has_libvirt)
        nodes.append(fleet_node)
        return fleet_node

    # the fleet boots while the registry node builds and pushes the images
    pool = ThreadPoolExecutor(max_workers=len(hosts))
    futures = [pool.submit(boot_one, host) for host in hosts]
    try:
        images = fleet_images(Builder(registry_node), registry)
        booted = [f.result() for f in futures]
    except BaseException:
        pool.shutdown(wait=True)  # every boot ended (booted or failed) before the clean-up
        parallel(lambda n: n.node.shutdown(), list(nodes))
        registry_node.shutdown()
        raise
    pool.shutdown()
    fleet = Fleet(registry_node, registry, images, booted, boot_s=time.monotonic() - started)
    try:
        deploy_started = time.monotonic()
        parallel(lambda n: deploy(n, images), booted)
        fleet.deploy_s = time.monotonic() - deploy_started
    except BaseException:
        fleet.shutdown()
        raise
    return fleet


def deploy(n: FleetNode, images: FleetImages) -> None:
    """v1 of every service, started by `compute-units apply`; on libvirt nodes a guest."""
    svc, libvirt = images.svc["v1"], images.libvirt.references["v1"]
    pulls = [svc] + ([libvirt] if n.libvirt else [])
    n.node.run(["sh", "-c", " && ".join(f"podman pull -q {p} >/dev/null" for p in pulls)], timeout=900)
    n.write_specs(svc, libvirt)
    applied = n.cu("apply")
    if applied.returncode != 0:
        raise NodeError(f"{n.host}: compute-units apply exited {applied.returncode}: {applied.stderr}")
    if n.libvirt:
        n.guest = start_guest(n.node, "nova-libvirt")


@dataclass
class PlayRun:
    rc: int
    output: str
    report: dict[str, Any]
    seconds: float

    def results(self) -> dict[str, tuple[int | None, str]]:
        return {h["host"]: (h["batch"], h["result"]) for h in self.report["hosts"]}

    def host(self, name: str) -> dict[str, Any]:
        row: dict[str, Any] = next(h for h in self.report["hosts"] if h["host"] == name)
        return row


def play(
    bin_dir: Path,
    collections: Path,
    inventory: Path,
    directory: Path,
    variables: dict[str, Any],
    *extra: str,
    playbook: str = "compute_units.fleet.rolling_upgrade",
) -> PlayRun:
    """`ansible-playbook PLAYBOOK` (the collection's rolling upgrade) with the fleet report as JSON."""
    report = directory / "report.json"
    report.unlink(missing_ok=True)
    env = {
        **os.environ,
        "ANSIBLE_COLLECTIONS_PATH": str(collections),
        "ANSIBLE_CALLBACKS_ENABLED": "compute_units.fleet.fleet_report",
        "COMPUTE_UNITS_FLEET_REPORT": str(report),
        "ANSIBLE_NOCOLOR": "1",
        "ANSIBLE_RETRY_FILES_ENABLED": "0",
        "ANSIBLE_FORKS": "25",
        "ANSIBLE_PIPELINING": "1",
        "ANSIBLE_LOCAL_TEMP": str(directory / "tmp"),
    }
    argv = [
        str(bin_dir / "ansible-playbook"),
        "-i",
        str(inventory),
        playbook,
        "-e",
        json.dumps({"compute_units_hosts": "compute", **variables}),
        *extra,
    ]
    started = time.monotonic()
    proc = subprocess.run(argv, capture_output=True, text=True, env=env, cwd=directory, check=False)
    seconds = time.monotonic() - started
    output = proc.stdout + proc.stderr
    if not report.exists():
        raise AssertionError(f"no fleet report written:\n{output}")
    return PlayRun(proc.returncode, output, json.loads(report.read_text()), seconds)
