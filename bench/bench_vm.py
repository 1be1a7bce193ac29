"""Benchmarks on a sandbox systemd node (real systemd, podman, registry, libvirt, KVM guest).

compute-units runs as installed from a wheel by the system python3 (bench/installed.py).

1. restart: `compute-units restart X` vs `systemctl restart X`, same unit, same run (ratio).
2. upgrade window of containerised libvirt with a guest running, for
   - `compute-units upgrade nova-libvirt --image v1|v2` (pull, pin, restart, health gate, VM checks),
   - bare `podman stop && podman run --replace` of the same container (same flags, outside systemd),
   - `podman auto-update` on the same unit after pushing a new digest to its tag.
   The window is measured from outside, the same way for all three: a host thread sends libvirt
   an RPC over its socket every 5 ms; the window runs from the first failed request until
   requests have succeeded for 200 ms (old libvirtd gone -> new one answering). A QMP client
   polls the guest every 20 ms throughout; every sample must say "running".

Run: make bench, or python -m bench.bench_vm [--reps N]   (boots node "bench", builds images on
first use)
"""

from __future__ import annotations

import argparse
import random
import socket
import statistics
import struct
import time
from pathlib import Path

from bench.installed import installed_cli
from compute_units import render, spec
from compute_units_dev.images import BUILD_PODMAN, Builder, Registry
from compute_units_dev.libvirt import LibvirtImages, QmpPoller, libvirt_images, start_guest
from compute_units_dev.node import Node, boot
from compute_units_dev.sampler import Sampler
from compute_units_dev.specs import SVC_VARIANTS, libvirt_spec

# libvirt RPC call REMOTE_PROC_AUTH_LIST (66): length, program 0x20008086, version 1, procedure,
# type CALL, serial, status OK; the daemon answers with a reply header and its auth types
AUTH_LIST = struct.pack(">7I", 28, 0x20008086, 1, 66, 0, 1, 0)


class Probe(Sampler[bool]):
    """Asks libvirtd (over its unix socket) for its auth types every `interval` s; records (time, ok)."""

    def __init__(self, path: Path, interval: float = 0.005) -> None:
        super().__init__(interval)
        self.path = path

    def sample(self) -> bool:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(0.2)
        try:
            s.connect(str(self.path))
            s.sendall(AUTH_LIST)  # a real RPC: a listening socket alone proves nothing
            return len(s.recv(64)) >= 28
        except OSError:
            return False
        finally:
            s.close()

    def window(self, start: float, stable: float = 0.2, timeout: float = 60) -> float:
        """Unavailability caused by an operation that began at `start`: from the first refused
        request after `start` until requests have succeeded for `stable` seconds without a break
        (a daemon that answers, then restarts, is not back yet). Blocks until then."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            first_down: float | None = None
            up_since: float | None = None
            for t, ok in list(self.samples):
                if t < start:
                    continue
                if not ok:
                    first_down = first_down if first_down is not None else t
                    up_since = None
                elif first_down is not None and up_since is None:
                    up_since = t
                if up_since is not None and t - up_since >= stable:
                    return up_since - first_down  # type: ignore[operator]
            self._stop.wait(0.02)
        raise RuntimeError("libvirt did not come back")

    def wait_ok(self, timeout: float = 60) -> None:
        """Until the latest request succeeded (setup steps, not measured)."""
        deadline = time.monotonic() + timeout
        while not (self.samples and self.samples[-1][1]):
            if time.monotonic() > deadline:
                raise RuntimeError("libvirt does not answer")
            self._stop.wait(0.01)


def stats(values: list[float]) -> str:
    values = sorted(values)
    p95 = values[min(len(values) - 1, round(0.95 * (len(values) - 1)))]
    return f"{statistics.median(values) * 1000:.0f} ms | {p95 * 1000:.0f} ms"


def bench_restart(node: Node, cli: str, reps: int) -> list[tuple[str, float]]:
    """Each repetition runs the three commands in a shuffled order (the unit's recent history,
    e.g. a container that started a moment ago, must not favour one of them)."""
    commands = {
        "systemctl": ["systemctl", "restart", "bench-svc"],
        "cu": [cli, "restart", "bench-svc"],
        "cu0": [cli, "restart", "bench-svc", "--settle", "0"],
    }
    results: dict[str, list[float]] = {key: [] for key in commands}
    order = random.Random(0)
    for _ in range(reps):
        keys = list(commands)
        order.shuffle(keys)
        for key in keys:
            node.run(["systemctl", "reset-failed", "bench-svc"])  # the start rate limiter
            started = time.perf_counter()
            node.run(commands[key])
            results[key].append(time.perf_counter() - started)
    base = statistics.median(results["systemctl"])
    return [
        ("systemctl restart", base),
        ("compute-units restart --settle 0", statistics.median(results["cu0"])),
        ("compute-units restart (default --settle 1)", statistics.median(results["cu"])),
    ]


def bare_argv(node: Node, image: str) -> list[str]:
    """The unit's podman run argv, minus what only makes sense under systemd."""
    services, _ = spec.load(spec.discover([node.host_path("/etc/compute-units/services/nova-libvirt.yaml")]))
    service = services.get("nova-libvirt")
    assert service is not None
    argv = render.podman_run_argv(service, image)
    return [
        a
        for a in argv
        if not isinstance(a, render.Specified) and a not in ("--cgroups=split", "--sdnotify=conmon")
    ]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--reps", type=int, default=10)
    args = parser.parse_args()
    cli = installed_cli()
    node = boot("bench")
    try:
        builder = Builder(node)
        registry = Registry.start(node)
        base = builder.busybox_base()
        svc = builder.build("svc", base, SVC_VARIANTS["v1"])
        registry.push(svc, "cu-test/svc", "v1")
        images: LibvirtImages = libvirt_images(builder, registry)
        node.write_file(
            "/etc/compute-units/services/bench-svc.yaml",
            f"image: {registry.reference('cu-test/svc', 'v1')}\nhost_namespaces: [pid, network]\n",
        )
        node.write_file(
            "/etc/compute-units/services/nova-libvirt.yaml", libvirt_spec(images.references["v1"])
        )
        node.run(["compute-units", "apply"])
        restart_rows = bench_restart(node, cli, max(args.reps, 10))

        guest = start_guest(node, "nova-libvirt")
        socket_path = node.host_path("/run/libvirt/libvirt-sock")
        refs = [f"{images.references[t]}@{images.digests[t]}" for t in ("v2", "v1")]
        with QmpPoller(guest.qmp_path) as qmp, Probe(socket_path) as probe:
            pid = guest.qemu_pid()
            windows = {
                "compute-units upgrade": window_upgrade(node, cli, refs, probe, args.reps),
                "podman stop && podman run": window_bare(node, refs, probe, args.reps),
                "podman auto-update": window_auto_update(node, registry, images, probe, args.reps),
            }
            same_pid = guest.qemu_pid() == pid
        guest.destroy()
        print_results(restart_rows, windows, args.reps, len(qmp.samples), len(qmp.not_running), same_pid)
    finally:
        node.shutdown()


def window_upgrade(node: Node, cli: str, refs: list[str], probe: Probe, reps: int) -> list[float]:
    found: list[float] = []
    # 1. compute-units upgrade, alternating v2 / v1
    for i in range(reps):
        start = time.monotonic()
        node.run([cli, "upgrade", "nova-libvirt", "--image", refs[i % 2].split("@")[0]])
        found.append(probe.window(start))
        node.run(["systemctl", "reset-failed", "nova-libvirt"])
    return found


def window_bare(node: Node, refs: list[str], probe: Probe, reps: int) -> list[float]:
    found: list[float] = []
    # 2. bare podman, same container and flags, outside systemd
    node.run(["systemctl", "stop", "nova-libvirt"])
    node.run(bare_argv(node, refs[0]))
    probe.wait_ok()
    for i in range(reps):
        start = time.monotonic()
        node.run(
            [
                "sh",
                "-c",
                " ".join(
                    [
                        "podman stop -t 10 nova-libvirt",
                        "&&",
                        *map(_q, bare_argv(node, refs[(i + 1) % 2])),
                    ]
                ),
            ]
        )
        found.append(probe.window(start))
    node.run(["podman", "stop", "-t", "10", "nova-libvirt"])
    node.run(["podman", "rm", "-f", "--ignore", "nova-libvirt"])
    return found


def window_auto_update(
    node: Node, registry: Registry, images: LibvirtImages, probe: Probe, reps: int
) -> list[float]:
    found: list[float] = []
    # 3. podman auto-update on the unit, tag moved between two digests
    node.run(["rm", "-rf", "/var/lib/compute-units"])  # unpin: auto-update follows the tag
    tag = registry.reference("cu-test/libvirt", "bench")
    node.run([*BUILD_PODMAN, "pull", "-q", images.references["v1"]])
    node.run([*BUILD_PODMAN, "pull", "-q", images.references["v2"]])
    node.run([*BUILD_PODMAN, "push", "-q", images.references["v1"], f"docker://{tag}"])
    node.write_file(
        "/etc/compute-units/services/nova-libvirt.yaml",
        libvirt_spec(tag) + "podman_args: [--label=io.containers.autoupdate=registry]\n",
    )
    node.run(["compute-units", "apply"])
    probe.wait_ok()
    for i in range(reps):
        node.run(
            [
                *BUILD_PODMAN,
                "push",
                "-q",
                images.references["v2" if i % 2 == 0 else "v1"],
                f"docker://{tag}",
            ]
        )
        start = time.monotonic()
        node.run(["podman", "auto-update"])
        found.append(probe.window(start))
        node.run(["systemctl", "reset-failed", "nova-libvirt"])
    return found


def print_results(
    restart_rows: list[tuple[str, float]],
    windows: dict[str, list[float]],
    reps: int,
    samples: int,
    not_running: int,
    same_pid: bool,
) -> None:
    base_restart = restart_rows[0][1]
    print("| restart | median | ratio to systemctl |")
    print("|---|---|---|")
    for what, value in restart_rows:
        print(f"| {what} | {value * 1000:.0f} ms | {value / base_restart:.2f}x |")
    print()
    bare = statistics.median(windows["podman stop && podman run"])
    print(
        f"| libvirt unavailable during upgrade ({reps} each, guest running) | median | p95 | ratio to bare podman |"
    )
    print("|---|---|---|---|")
    for what, values in windows.items():
        print(f"| {what} | {stats(values)} | {statistics.median(values) / bare:.2f}x |")
    print()
    print(f"guest: {samples} QMP samples, {not_running} not running; same qemu PID throughout: {same_pid}")


def _q(word: str) -> str:
    import shlex

    return shlex.quote(word)


if __name__ == "__main__":
    main()
