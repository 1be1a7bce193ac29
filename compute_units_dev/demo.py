"""`make demo`: the whole story on a fresh machine, in a throwaway systemd node.

sandbox node → local registry and images → generate units from specs → start → boot a KVM guest
through the containerised libvirt → upgrade libvirt v1 → v2 while polling the guest over QMP →
guest still running → a broken v3 rolled back → timings. Nothing touches the host's services.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

from compute_units_dev.images import Builder, Registry
from compute_units_dev.libvirt import QmpPoller, libvirt_images, start_guest
from compute_units_dev.node import Node, NodeError, boot
from compute_units_dev.rootfs import RootfsError
from compute_units_dev.specs import SVC_VARIANTS, compute_spec, libvirt_spec

timings: list[tuple[str, float]] = []


@contextmanager
def step(title: str) -> Iterator[None]:
    print(f"\n== {title}", flush=True)
    started = time.monotonic()
    yield
    timings.append((title, time.monotonic() - started))


def show(node: Node, *argv: str) -> subprocess.CompletedProcess[str]:
    print(f"$ {' '.join(argv)}", flush=True)
    result = node.run(list(argv), check=False)
    sys.stdout.write(result.stdout)
    sys.stdout.write(result.stderr)
    return result


def main() -> int:
    with step("boot a sandbox systemd node (own PID/mount/cgroup namespaces)"):
        node = boot("demo")
        print(f"node PID {node.pid}: {node.run(['systemctl', 'is-system-running']).stdout.strip()}")
    try:
        with step("build images locally and push them to a registry on 127.0.0.1"):
            builder = Builder(node)
            registry = Registry.start(node)
            svc = builder.build("svc", builder.busybox_base(), SVC_VARIANTS["v1"])
            registry.push(svc, "cu-test/svc", "v1")
            libvirt = libvirt_images(builder, registry)
            print(
                f"registry {registry.address}; libvirt v1/v2/v3 and a service stand-in; "
                f"{len(builder.hits)} cached, {len(builder.built)} built"
            )
        with step("specs → units (compute-units generate) and start them"):
            node.write_file(
                "/etc/compute-units/services/nova-libvirt.yaml", libvirt_spec(libvirt.references["v1"])
            )
            node.write_file(
                "/etc/compute-units/services/nova-compute.yaml",
                compute_spec(registry.reference("cu-test/svc", "v1")),
            )
            show(node, "compute-units", "validate")
            show(node, "compute-units", "generate")
            node.systemctl("daemon-reload")
            show(node, "compute-units", "start")
            show(node, "compute-units", "status")
        with step("boot a KVM guest through the containerised libvirt"):
            guest = start_guest(node, "nova-libvirt")
            pid = guest.qemu_pid()
            show(node, "podman", "exec", "nova-libvirt", "virsh", "-c", "qemu:///system", "list")
            print(f"qemu PID {pid}; cgroup {node.read_file(f'/proc/{pid}/cgroup').splitlines()[-1]}")
        with (
            step("upgrade nova-libvirt v1 → v2 while polling the guest over QMP every 20 ms"),
            QmpPoller(guest.qmp_path) as poller,
        ):
            upgrade = show(
                node, "compute-units", "upgrade", "nova-libvirt", "--image", libvirt.references["v2"]
            )
        print(
            f"QMP samples: {len(poller.samples)}, not running: {len(poller.not_running)}; "
            f"qemu PID still {guest.qemu_pid()} (was {pid})"
        )
        show(node, "podman", "exec", "nova-libvirt", "virsh", "-c", "qemu:///system", "list")
        with (
            step("a v3 whose health check fails is rolled back automatically"),
            QmpPoller(guest.qmp_path) as poller3,
        ):
            show(node, "compute-units", "upgrade", "nova-libvirt", "--image", libvirt.references["v3"])
        print(
            f"QMP samples: {len(poller3.samples)}, not running: {len(poller3.not_running)}; "
            f"guest running: {guest.running_in_libvirt()}"
        )
        show(node, "compute-units", "history")
        history = json.loads(node.run(["compute-units", "history", "--json"]).stdout)
        guest.destroy()
        print("\n== timings")
        for title, seconds in timings:
            print(f"{seconds * 1000:8.0f} ms  {title}")
        steps = {s["name"]: s["ms"] for s in history[0]["steps"]} if history else {}
        print("upgrade steps (ms): " + ", ".join(f"{k} {v}" for k, v in steps.items()))
        ok = upgrade.returncode == 0 and not poller.not_running and not poller3.not_running
        print("\nresult: " + ("guest kept running through both upgrades" if ok else "FAILED"))
        return 0 if ok else 1
    finally:
        node.shutdown()


def run() -> int:
    """main(), with the harness's own failures (no debootstrap, a node that does not boot, a build
    that fails) said in one message, not a traceback."""
    try:
        return main()
    except (NodeError, RootfsError, subprocess.CalledProcessError) as exc:
        print(f"\ndemo: error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(run())
