"""Rolling upgrade of a fleet of sandbox nodes with `ansible-playbook compute_units.fleet.rolling_upgrade`.

Issue #13 item 6. One run of this script, on one fleet (tests/harness/fleet.py, reached through
the collection's nsenter connection):

1. the single-node upgrade window W: the playbook against one node (`--limit`), phase 2's wall time
   (the batch's play: reach, upgrade; the report's `plays`), the median of three runs;
2. the whole fleet with batch sizes 1, 5 and 20 (`serial`): phase 2's wall time against
   batches x W (goal < 2x), and the whole playbook's;
3. pre-pull against pulling inside the serial phase: batch size 5 again with
   `compute_units_prepull=false` (each node's upgrade pulls in its batch);
4. the bare alternative on the same fleet: both units restarted by `systemctl restart` through
   Ansible's `raw` (no module, no CLI: no pin, health gate, VM check or state), with the same batch
   sizes against its own single-node window. What any rolling restart costs on these cores: if the
   bare restart cannot keep batches x its W either, the machine sets the limit, not the tool.

Each playbook run also counts the CPU time it cost: the controller's (ansible-playbook, its
workers, and what they run through nsenter, all waited for: RUSAGE_CHILDREN) plus every node's
and the registry node's cgroup (the units' podman, conmon, containers, health checks). That total
divided by the machine's cores is the shortest wall time the run could take here, whatever the
orchestration: how far a batch is from batches x W because the machine is saturated. Phase 1
alone (the collection's `prepare` tasks in a one-play playbook) is run once more to split the CPU
time: phase 2's is the whole run's minus phase 1's.

Every run upgrades every node to an image none of them has (the previous target is removed from
every store first): the stand-in service plus PAD_MB of incompressible data (--pad-mb), so a pull
costs what a layer of that size costs here. Each node runs two services from that image
(nova-compute and nova-network stand-ins).

Run: python -m bench.bench_fleet [--nodes 20] [--batches 1,5,20] [--pad-mb 32]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import tempfile
import time
from pathlib import Path
from typing import Any

from compute_units_dev.collection import BIN, install_collection
from compute_units_dev.fleet import Fleet, FleetNode, boot_fleet, parallel, play
from compute_units_dev.images import Builder

REPORT = Path(__file__).resolve().parents[1] / "build/bench/fleet.json"


def pad_images(fleet: Fleet, pad_mb: int) -> list[str]:
    """Two padded stand-in images (A, B), built once in the registry node and pushed."""
    builder = Builder(fleet.registry_node)
    svc = builder.build("svc", builder.busybox_base(), {"VERSION": "pad"})
    references = []
    for seed in ("a", "b"):
        local = builder.build("pad", svc, {"PAD_MB": str(pad_mb), "SEED": seed})
        fleet.registry.push(local, "cu-test/fleet-pad", seed)
        references.append(fleet.registry.reference("cu-test/fleet-pad", seed))
    return references


def target(fleet: Fleet, reference: str, nodes: list[FleetNode]) -> None:
    """Point the specs at `reference` and remove it from every store (the pull must be real)."""

    def one(n: FleetNode) -> None:
        n.node.run(["podman", "rmi", "--ignore", reference], check=False)
        n.write_specs(reference)

    parallel(one, nodes)


def phases(report: dict[str, Any]) -> tuple[float, float, int]:
    """(phase 1 s, phase 2 s, batches) from the fleet report's plays."""
    plays = report.get("plays") or []
    prepare = sum(p["seconds"] for p in plays if p["batch"] is None)
    serial = [p for p in plays if p["batch"] is not None]
    return prepare, sum(p["seconds"] for p in serial), len(serial)


def cgroup_cpu_s(cgroups: list[Path]) -> float:
    """CPU seconds a node's processes used, from its cgroup: cpuacct (v1) or cpu.stat (cgroup2)."""
    for directory in cgroups:
        usage = directory / "cpuacct.usage"
        if usage.exists():
            return int(usage.read_text()) / 1e9
    for directory in cgroups:
        stat = directory / "cpu.stat"
        if stat.exists():
            fields = dict(line.split() for line in stat.read_text().splitlines())
            return int(fields["usage_usec"]) / 1e6
    raise SystemExit(f"no CPU accounting in any of {[str(d) for d in cgroups]}")


def cpu_counters(fleet: Fleet) -> tuple[float, float]:
    """(controller, nodes) CPU seconds so far."""
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    nodes = [fleet.registry_node, *(n.node for n in fleet.nodes)]
    return children.ru_utime + children.ru_stime, sum(cgroup_cpu_s(n.cgroups) for n in nodes)


PHASE_1_ONLY = """- name: "Phase 1 only: doctor and pull on every host, in parallel"
  hosts: "{{ compute_units_hosts }}"
  gather_facts: false
  tasks:
    - name: Prepare the host
      ansible.builtin.import_role:
        name: compute_units.fleet.rolling_upgrade
        tasks_from: prepare
"""


def run(
    fleet: Fleet,
    directory: Path,
    serial: int,
    *extra: str,
    variables: dict[str, Any] | None = None,
    playbook: str = "compute_units.fleet.rolling_upgrade",
) -> dict[str, Any]:
    inventory = fleet.inventory(directory / "inventory.ini")
    controller_before, nodes_before = cpu_counters(fleet)
    result = play(
        BIN,
        install_collection(),
        inventory,
        directory,
        {"compute_units_serial": [serial], **(variables or {})},
        *extra,
        playbook=playbook,
    )
    controller_after, nodes_after = cpu_counters(fleet)
    if result.rc != 0:
        raise SystemExit(f"play failed (rc {result.rc}):\n{result.output[-4000:]}")
    prepare, upgrade, batches = phases(result.report)
    results = {h["result"] for h in result.report["hosts"]}
    cpu = (controller_after - controller_before) + (nodes_after - nodes_before)
    return {
        "cpu_controller_s": round(controller_after - controller_before, 1),
        "cpu_nodes_s": round(nodes_after - nodes_before, 1),
        "cpu_bound_s": round(cpu / (os.cpu_count() or 1), 1),  # the shortest wall time on these cores
        "wall_s": round(result.seconds, 1),
        "phase1_s": round(prepare, 1),
        "phase2_s": round(upgrade, 1),
        "batches": batches,
        "results": sorted(results),
    }


BARE = """- name: "Bare restart: systemctl restart of both units, nothing else"
  hosts: "{{ compute_units_hosts }}"
  gather_facts: false
  serial: "{{ compute_units_serial }}"
  tasks:
    - name: Restart the units
      ansible.builtin.raw: systemctl restart nova-compute.service nova-network.service
"""


WINDOW_RUNS = 3  # single-node runs for W (the median): one run alone varied 2.3-2.8 s between runs


def measure(fleet: Fleet, directory: Path, sizes: list[int], pads: list[str]) -> dict[str, Any]:
    """Every playbook run of the benchmark, each upgrading to the pad image the nodes do not have."""
    rows: dict[str, Any] = {}
    flip = 0

    def retarget(nodes: list[FleetNode]) -> None:
        nonlocal flip
        target(fleet, pads[flip], nodes)
        flip = 1 - flip

    for size in sizes:
        retarget(fleet.nodes)
        rows[f"serial {size}"] = run(fleet, directory, size)
        print(f"serial {size}: {rows[f'serial {size}']}", flush=True)
    retarget(fleet.nodes)
    rows["serial 5, no pre-pull"] = run(fleet, directory, 5, variables={"compute_units_prepull": False})
    print(f"serial 5, no pre-pull: {rows['serial 5, no pre-pull']}", flush=True)
    first = fleet.nodes[0]
    singles = []
    for _ in range(WINDOW_RUNS):
        retarget([first])
        singles.append(run(fleet, directory, 1, "--limit", first.host))
        print(f"single node: {singles[-1]}", flush=True)
    rows["single node"] = median_run(singles)
    retarget(fleet.nodes)
    (directory / "phase1.yml").write_text(PHASE_1_ONLY)
    rows["phase 1 only"] = run(fleet, directory, 20, playbook=str(directory / "phase1.yml"))
    print(f"phase 1 only: {rows['phase 1 only']}", flush=True)
    # the bare alternative, same fleet: the two units restarted through Ansible, no CLI at all
    (directory / "bare.yml").write_text(BARE)
    bare = str(directory / "bare.yml")
    for size in sizes:
        rows[f"bare serial {size}"] = run(fleet, directory, size, playbook=bare)
        print(f"bare serial {size}: {rows[f'bare serial {size}']}", flush=True)
    bare_singles = [
        run(fleet, directory, 1, "--limit", first.host, playbook=bare) for _ in range(WINDOW_RUNS)
    ]
    print(f"bare single node: {bare_singles}", flush=True)
    rows["bare single node"] = median_run(bare_singles)
    return rows


def median_run(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The run whose phase 2 is the median, with every run's phase 2 seconds beside it."""
    ordered = sorted(runs, key=lambda r: float(r["phase2_s"]))
    return {**ordered[len(ordered) // 2], "phase2_runs_s": [r["phase2_s"] for r in runs]}


def table(rows: dict[str, Any], sizes: list[int], prefix: str, phase1_cpu: float) -> None:
    """One table: each batch size's phase 2 against batches x the single-node window (its own W)."""
    window = rows[f"{prefix}single node"]["phase2_s"]
    cores = os.cpu_count() or 1
    print(
        f"{'batch size':>10} {'batches':>7} {'phase 2':>8} {'batches x W':>11} {'ratio':>6} {'phase 1':>8} "
        f"{'wall':>7} {'CPU ctl+nodes':>14} {'CPU / cores':>11} {'phase 2 CPU / cores':>19}"
    )
    keys = [*((str(n), f"{prefix}serial {n}") for n in sizes), ("one node", f"{prefix}single node")]
    for label, key in keys:
        row = rows[key]
        if not key.endswith("single node"):  # phase 1 of the whole fleet is what PHASE_1_ONLY measured
            cpu = row["cpu_controller_s"] + row["cpu_nodes_s"]
            row["phase2_cpu_bound_s"] = round((cpu - phase1_cpu) / cores, 1)
        ideal = row["batches"] * window
        row["ratio"] = round(row["phase2_s"] / ideal, 2)
        print(
            f"{label:>10} {row['batches']:>7} {row['phase2_s']:>7.1f}s {ideal:>10.1f}s {row['ratio']:>6.2f} "
            f"{row['phase1_s']:>7.1f}s {row['wall_s']:>6.1f}s "
            f"{row['cpu_controller_s']:>6.1f}+{row['cpu_nodes_s']:<6.1f}s {row['cpu_bound_s']:>10.1f}s"
            + (f" {row['phase2_cpu_bound_s']:>18.1f}s" if "phase2_cpu_bound_s" in row else "")
        )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--nodes", type=int, default=20)
    parser.add_argument("--batches", default="1,5,20")
    parser.add_argument("--pad-mb", type=int, default=32)
    parser.add_argument("--release", default="bookworm")
    args = parser.parse_args()
    sizes = [int(s) for s in args.batches.split(",")]
    started = time.monotonic()
    fleet = boot_fleet(args.release, args.nodes, libvirt_hosts=())
    print(
        f"fleet of {args.nodes}: booted with images in {fleet.boot_s:.1f} s, deployed in {fleet.deploy_s:.1f} s"
    )
    rows: dict[str, Any] = {"nodes": args.nodes, "pad_mb": args.pad_mb, "boot_s": round(fleet.boot_s, 1)}
    try:
        pads = pad_images(fleet, args.pad_mb)
        with tempfile.TemporaryDirectory() as tmp:
            rows |= measure(fleet, Path(tmp), sizes, pads)
    finally:
        fleet.shutdown()
    window = rows["single node"]["phase2_s"]
    print(
        f"\nsingle-node upgrade window W (phase 2 of a one-node run, median of "
        f"{rows['single node']['phase2_runs_s']}): {window:.1f} s"
    )
    phase1_cpu = rows["phase 1 only"]["cpu_controller_s"] + rows["phase 1 only"]["cpu_nodes_s"]
    table(rows, sizes, "", phase1_cpu)
    bare_window = rows["bare single node"]["phase2_s"]
    print(
        f"\nbare restart (systemctl restart through Ansible's raw, no CLI), its own W (median of "
        f"{rows['bare single node']['phase2_runs_s']}): {bare_window:.1f} s"
    )
    table(rows, sizes, "bare ", 0.0)  # the bare playbook has no phase 1
    pre, nopre = rows.get("serial 5"), rows["serial 5, no pre-pull"]
    if pre:
        print(
            f"pre-pull: phase 1 {pre['phase1_s']:.1f} s + phase 2 {pre['phase2_s']:.1f} s = {pre['wall_s']:.1f} s wall; "
            f"pulling in the batches: phase 1 {nopre['phase1_s']:.1f} s + phase 2 {nopre['phase2_s']:.1f} s = "
            f"{nopre['wall_s']:.1f} s wall"
        )
    rows["single_node_window_s"] = window
    rows["bare_single_node_window_s"] = bare_window
    rows["total_s"] = round(time.monotonic() - started, 1)
    REPORT.parent.mkdir(parents=True, exist_ok=True)
    REPORT.write_text(json.dumps(rows, indent=2) + "\n")
    print(f"written to {REPORT} ({rows['total_s']:.0f} s in all)")


if __name__ == "__main__":
    main()
