"""Held sockets against the alternatives: what libvirt's clients see while libvirt is upgraded.

One sandbox node ("socks"), containerised libvirt with a KVM guest running, `--reps` upgrades
(image v1 <-> v2) for each of
  - compute-units, sockets held (`sockets:`): `compute-units upgrade nova-libvirt --image ...`,
  - bare podman: `podman stop -t 10 nova-libvirt && podman run --replace ...` (same flags, no
    systemd, so nobody holds the sockets),
  - `podman auto-update` on the unit (no sockets: what podman offers by itself), after pushing
    the other digest to its tag.
All three keep /var/cache/libvirt (a volume), so the difference is the held sockets alone.

Watched from the host, the same way for all three, by two libvirt RPC clients (compute_units_dev/rpc.py):
  - new connections: a fresh connection and one RPC every 5 ms; per variant the requests made
    during the upgrades, how many were refused (connect failed), dropped (accepted by the old
    libvirtd, then closed unanswered) or answered, and the longest answered request;
  - a long-lived client (nova-compute's pattern): one kept connection, an RPC on it every 5 ms;
    when it breaks it reconnects every 5 ms; "usable again" runs from the failed RPC to the first
    answer on the new connection.
A QMP client polls the guest every 20 ms throughout; every sample must say "running".

Run: python -m bench.bench_sockets [--reps N]   (boots node "socks", builds images on first use)
"""

from __future__ import annotations

import argparse
import shlex
import statistics
import time
from dataclasses import dataclass, field

from bench.bench_vm import bare_argv
from compute_units_dev.images import BUILD_PODMAN, Builder, Registry
from compute_units_dev.libvirt import QmpPoller, libvirt_images, start_guest
from compute_units_dev.node import Node, boot
from compute_units_dev.rpc import LongLived, NewConnections, Request
from compute_units_dev.specs import held_spec, libvirt_spec

SPEC = "/etc/compute-units/services/nova-libvirt.yaml"
CACHE = "  - {source: /var/cache/libvirt, target: /var/cache/libvirt, create: true}\n"


def plain_spec(reference: str) -> str:
    """The held spec without `sockets:` (cache volume kept)."""
    return libvirt_spec(reference).replace("devices: [/dev/kvm]\n", CACHE + "devices: [/dev/kvm]\n")


@dataclass
class Variant:
    name: str
    per_upgrade: list[list[Request]] = field(default_factory=list)
    usable_again: list[float] = field(default_factory=list)  # long-lived client, per break
    failed_reconnects: int = 0  # long-lived client: connection attempts refused before one answered
    unbroken: int = 0  # upgrades during which the kept connection never broke
    windows: list[float] = field(default_factory=list)  # command start -> both clients answered


class Watch:
    """Both clients, and what happened between a start and the moment both answer again."""

    def __init__(self, node: Node) -> None:
        path = node.host_path("/run/libvirt/libvirt-sock")
        self.new = NewConnections(path)
        self.kept = LongLived(path)

    def __enter__(self) -> Watch:
        self.new.__enter__()
        self.kept.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.kept.__exit__(*exc)
        self.new.__exit__(*exc)

    def settled_after(self, moment: float, timeout: float = 120) -> float:
        """Wait until both clients were answered after `moment`; return when that was."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            new = [t for t, r in self.new.samples[-5:] if t > moment and r.outcome == "ok"]
            kept = [t for t, ok in self.kept.samples[-5:] if t > moment and ok]
            if new and kept:
                return max(new[0], kept[0])
            time.sleep(0.01)  # polling a sampler's list: there is no event to wait on
        raise RuntimeError("libvirt did not come back")

    def measure(self, variant: Variant, node: Node, argv: list[str]) -> None:
        self.settled_after(time.monotonic() - 0.05)
        losses_before = len(self.kept.losses)
        start = time.monotonic()
        node.run(argv)
        end = self.settled_after(time.monotonic())
        variant.windows.append(end - start)
        variant.per_upgrade.append(self.new.between(start, end))
        losses = self.kept.losses[losses_before:]
        variant.unbroken += not losses
        variant.usable_again += [loss.usable - loss.detected for loss in losses if loss.usable is not None]
        variant.failed_reconnects += sum(loss.attempts - 1 for loss in losses)


def run_variants(node: Node, reps: int, registry: Registry, refs: dict[str, str]) -> list[Variant]:
    def cu(*args: str) -> None:
        node.run(["compute-units", *args])

    held, bare, auto = (
        Variant("compute-units upgrade, sockets held"),
        Variant("podman stop && podman run"),
        Variant("podman auto-update"),
    )
    with Watch(node) as watch:
        # 1. compute-units, sockets held
        for i in range(reps):
            tag = refs["v2" if i % 2 == 0 else "v1"]
            watch.measure(held, node, ["compute-units", "upgrade", "nova-libvirt", "--image", tag])
            node.run(["systemctl", "reset-failed", "nova-libvirt"])
        # 2. bare podman: no unit, no sockets
        cu("stop", "nova-libvirt")
        node.write_file(SPEC, plain_spec(refs["v1"]))
        cu("apply")
        node.run(["systemctl", "stop", "nova-libvirt"])
        node.run(bare_argv(node, refs["v1"]))
        for i in range(reps):
            argv = bare_argv(node, refs["v2" if i % 2 == 0 else "v1"])
            script = "podman stop -t 10 nova-libvirt && " + " ".join(map(shlex.quote, argv))
            watch.measure(bare, node, ["sh", "-c", script])
        node.run(["podman", "rm", "-f", "-t", "10", "nova-libvirt"])
        # 3. podman auto-update on the unit (no sockets), the tag moved between two digests
        node.run(["rm", "-rf", "/var/lib/compute-units"])  # unpin: auto-update follows the tag
        tag = registry.reference("cu-test/libvirt", "bench")
        node.run([*BUILD_PODMAN, "push", "-q", refs["v1"], f"docker://{tag}"])
        node.write_file(SPEC, plain_spec(tag) + "podman_args: [--label=io.containers.autoupdate=registry]\n")
        cu("apply")
        for i in range(reps):
            node.run([*BUILD_PODMAN, "push", "-q", refs["v2" if i % 2 == 0 else "v1"], f"docker://{tag}"])
            watch.measure(auto, node, ["podman", "auto-update"])
            node.run(["systemctl", "reset-failed", "nova-libvirt"])
    return [held, bare, auto]


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.0f}"


def report(variants: list[Variant], reps: int) -> None:
    print(
        f"| variant (n={reps} upgrades each) | new connections | refused | dropped | timed out | longest answered request, median / max | long-lived client usable again, median / max | its failed reconnects |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for v in variants:
        requests = [r for window in v.per_upgrade for r in window]
        count = {o: sum(r.outcome == o for r in requests) for o in ("ok", "refused", "dropped", "timeout")}
        longest = [max((r.seconds for r in w if r.outcome == "ok"), default=0.0) for w in v.per_upgrade]
        usable = sorted(v.usable_again)
        usable_text = f"{ms(statistics.median(usable))} / {ms(usable[-1])} ms" if usable else "n/a"
        if v.unbroken:
            usable_text += f" ({v.unbroken} upgrades did not break it)"
        print(
            f"| {v.name} | {len(requests)} | {count['refused']} | {count['dropped']} | {count['timeout']} "
            f"| {ms(statistics.median(longest))} / {ms(max(longest))} ms | {usable_text} "
            f"| {v.failed_reconnects} |"
        )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--reps", type=int, default=20)
    args = parser.parse_args()
    node = boot("socks")
    try:
        builder = Builder(node)
        registry = Registry.start(node)
        images = libvirt_images(builder, registry)
        refs = {t: images.references[t] for t in ("v1", "v2")}
        for ref in refs.values():
            node.run([*BUILD_PODMAN, "pull", "-q", ref])
        node.write_file(SPEC, held_spec(refs["v1"]))
        node.run(["compute-units", "apply"])
        guest = start_guest(node, "nova-libvirt")
        with QmpPoller(guest.qmp_path) as qmp:
            pid = guest.qemu_pid()
            variants = run_variants(node, args.reps, registry, refs)
            same_pid = guest.qemu_pid() == pid
        guest.destroy()
        report(variants, args.reps)
        print()
        print(
            f"guest: {len(qmp.samples)} QMP samples, {len(qmp.not_running)} not running; "
            f"same qemu PID throughout: {same_pid}"
        )
    finally:
        node.shutdown()


if __name__ == "__main__":
    main()
