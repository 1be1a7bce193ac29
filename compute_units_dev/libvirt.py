"""Containerised libvirt images, a tiny KVM guest, and a QMP poller that watches it from the host."""

from __future__ import annotations

import json
import re
import socket
import subprocess
from dataclasses import dataclass
from pathlib import Path

from .images import CACHE, Builder, Registry, tree_hash
from .node import Node, NodeError, wait_until
from .sampler import Sampler

GUEST_SOURCE = Path(__file__).with_name("guest") / "halt.S"
LIBVIRT_VARIANTS = {"v1": {"VERSION": "1"}, "v2": {"VERSION": "2"}, "v3": {"VERSION": "3", "HEALTHY": "no"}}


def guest_kernel() -> Path:
    """Assemble the multiboot guest (cached by source hash)."""
    target = CACHE / f"halt-{tree_hash(GUEST_SOURCE)}.elf"
    if not target.exists():
        CACHE.mkdir(parents=True, exist_ok=True)
        partial = target.with_suffix(".partial")
        subprocess.run(
            [
                "gcc",
                "-m32",
                "-nostdlib",
                "-static",
                "-Wl,-N",
                "-Wl,-Ttext=0x100000",
                "-Wl,--build-id=none",
                "-o",
                str(partial),
                str(GUEST_SOURCE),
            ],
            check=True,
            capture_output=True,
        )
        partial.rename(target)
    return target


@dataclass(frozen=True)
class LibvirtImages:
    references: dict[str, str]  # tag -> registry reference
    digests: dict[str, str]


def libvirt_images(builder: Builder, registry: Registry) -> LibvirtImages:
    base = builder.debootstrap_base()
    libvirt = builder.build("libvirt", base, name="libvirt-base")
    references, digests = {}, {}
    for tag, args in LIBVIRT_VARIANTS.items():
        local = builder.build("libvirt-version", libvirt, args, name="libvirt")
        digests[tag] = registry.push(local, "cu-test/libvirt", tag)
        references[tag] = registry.reference("cu-test/libvirt", tag)
    return LibvirtImages(references, digests)


MODULAR_VARIANTS = {"v1": {"VERSION": "1"}, "v2": {"VERSION": "2"}}


def modular_images(builder: Builder, registry: Registry) -> LibvirtImages:
    """virtqemud + virtlogd + qemu (images/libvirt-modular), from trixie on every node; compiled
    once per checkout (`save`: the other nodes load the saved archives)."""
    base = builder.debootstrap_base("trixie")
    references, digests = {}, {}
    for tag, args in MODULAR_VARIANTS.items():
        local = builder.build("libvirt-modular", base, args, name="libvirt-modular", save=True)
        digests[tag] = registry.push(local, "cu-test/libvirt-modular", tag)
        references[tag] = registry.reference("cu-test/libvirt-modular", tag)
    return LibvirtImages(references, digests)


def domain_xml(name: str) -> str:
    return f"""<domain type='kvm' xmlns:qemu='http://libvirt.org/schemas/domain/qemu/1.0'>
  <name>{name}</name>
  <memory unit='MiB'>32</memory>
  <vcpu>1</vcpu>
  <os><type arch='x86_64' machine='pc'>hvm</type><kernel>/var/lib/libvirt/images/halt.elf</kernel></os>
  <on_poweroff>destroy</on_poweroff>
  <devices>
    <serial type='file'><source path='/var/lib/libvirt/qmp/{name}.serial'/></serial>
    <memballoon model='none'/>
  </devices>
  <qemu:commandline>
    <qemu:arg value='-qmp'/>
    <qemu:arg value='unix:/var/lib/libvirt/qmp/{name}.sock,server=on,wait=off'/>
  </qemu:commandline>
</domain>
"""


@dataclass
class Guest:
    node: Node
    name: str
    container: str

    @property
    def qmp_path(self) -> Path:
        return self.node.directory / "libvirt-lib" / "qmp" / f"{self.name}.sock"

    def qemu_pid(self) -> int:
        out = self.node.run(["pgrep", "-f", f"guest={self.name},"]).stdout.split()
        if len(out) != 1:
            raise NodeError(f"expected one qemu for {self.name}, found {out}")
        return int(out[0])

    def virsh(self, *args: str, check: bool = False) -> subprocess.CompletedProcess[str]:
        """The image's real virsh (v3 images put a broken one first in PATH for the health check)."""
        return self.node.run(
            ["podman", "exec", self.container, "/usr/bin/virsh", "-c", "qemu:///system", *args], check=check
        )

    def running_in_libvirt(self) -> bool:
        result = self.virsh("domstate", self.name)
        return result.returncode == 0 and result.stdout.strip() == "running"

    def destroy(self) -> None:
        self.virsh("destroy", self.name)


def clear_run_libvirt(node: Node) -> None:
    """Remove what earlier tests' libvirt daemons left in the node's /run/libvirt, while none runs:
    a libvirt client picks its daemon by the sockets that exist (virtqemud-sock before
    libvirt-sock), and systemd leaves a stopped socket unit's file in place."""
    node.run(["sh", "-c", "rm -rf /run/libvirt/*"])


def start_guest(node: Node, container: str, name: str = "tiny") -> Guest:
    lib = node.directory / "libvirt-lib"  # the node's /var/lib/libvirt, a plain host directory
    (lib / "images").mkdir(parents=True, exist_ok=True)
    (lib / "qmp").mkdir(exist_ok=True)
    (lib / "qmp").chmod(0o777)
    (lib / "images" / "halt.elf").write_bytes(guest_kernel().read_bytes())
    (lib / f"{name}.xml").write_text(domain_xml(name))
    node.run(
        [
            "podman",
            "exec",
            container,
            "virsh",
            "-c",
            "qemu:///system",
            "create",
            f"/var/lib/libvirt/{name}.xml",
        ]
    )
    return Guest(node, name, container)


class Qmp:
    """A minimal QMP client over a unix socket."""

    def __init__(self, path: Path, timeout: float = 2.0) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        self.sock.connect(str(path))
        self.reader = self.sock.makefile("r")
        self.events: list[str] = []
        json.loads(self.reader.readline())  # greeting
        self.command("qmp_capabilities")

    def command(self, name: str, arguments: dict[str, object] | None = None) -> dict[str, object]:
        message: dict[str, object] = {"execute": name}
        if arguments:
            message["arguments"] = arguments
        self.sock.sendall(json.dumps(message).encode() + b"\n")
        while True:
            reply: dict[str, object] = json.loads(self.reader.readline())
            if "event" in reply:
                self.events.append(str(reply["event"]))
            else:
                return reply

    def wait_event(self, name: str) -> None:
        """Read until qemu emits event `name` (or the socket's timeout ends the wait)."""
        while name not in self.events:
            reply = json.loads(self.reader.readline())
            if "event" in reply:
                self.events.append(str(reply["event"]))

    def close(self) -> None:
        self.reader.close()
        self.sock.close()


class QmpPoller(Sampler[str]):
    """Polls `query-status` every `interval` s in a thread; records (time, status or error)."""

    def __init__(self, path: Path, interval: float = 0.02) -> None:
        super().__init__(interval)
        self.path = path
        self._client: Qmp | None = None

    def sample(self) -> str:
        try:
            if self._client is None:
                self._client = Qmp(self.path)
            status = self._client.command("query-status").get("return", {})
            return str(status.get("status")) if isinstance(status, dict) else "?"
        except (OSError, ValueError) as exc:
            self.finish()
            return f"error: {exc}"

    def finish(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    @property
    def not_running(self) -> list[tuple[float, str]]:
        return [s for s in self.samples if s[1] != "running"]


KERNEL = range(0x100000, 0x101000)  # where halt.S is linked (-Ttext=0x100000)


def reset_guest(guest: Guest) -> None:
    """Reset the guest over QMP and wait until it has run its kernel again: it has written its line
    to COM1 (qemu has handed it to the serial console's backend) and halts in its own code."""
    qmp = Qmp(guest.qmp_path, timeout=10)
    try:
        qmp.command("system_reset")
        qmp.wait_event("RESET")

        def halted_in_kernel() -> bool:
            reply = qmp.command("human-monitor-command", {"command-line": "info registers"})
            match = re.search(r"EIP=([0-9a-f]+).*?HLT=(\d)", str(reply.get("return")), re.S)
            return match is not None and int(match[1], 16) in KERNEL and match[2] == "1"

        wait_until(halted_in_kernel, 30, f"guest {guest.name} to halt in its kernel after a reset")
    finally:
        qmp.close()
