"""Benchmark: our systemd generator against Quadlet's, side by side on a trixie sandbox node.

The same 50 services: our specs (the nova-compute-like specs of bench_generate) for
compute-units-generator, and the `.container` files `compute-units export --quadlet` makes of
them for podman 5.4's Quadlet (/usr/libexec/podman/quadlet, which is
/usr/lib/systemd/system-generators/podman-system-generator). Each generator runs as systemd runs
it: a fresh process with three output directories, interpreter start included for ours (the
node's /usr/bin/python3 3.13 and the bound-in checkout, as the node's entry point runs it).
Bare alternative: `python3 -c pass`. The timing loop runs inside the node (no nsenter per run);
each repetition runs the three in a shuffled order. Median and spread (min-max).

Run: python -m bench.bench_quadlet [--reps N]   (boots node "benchq", trixie; no images needed)
"""

from __future__ import annotations

import argparse
import json

from bench.bench_generate import SPEC
from compute_units.gencache import CACHE
from compute_units_dev.node import GENERATOR, boot

WORK = "/tmp/bench-quadlet"
SPECS = f"{WORK}/root/usr/share/compute-units/services"
CONTAINERS = f"{WORK}/containers"
QUADLET = "/usr/libexec/podman/quadlet"

# runs inside the node, with its python3: times each command `reps` times, shuffled per repetition
TIMER = """
import json, os, random, shutil, subprocess, sys, time
commands = json.loads(sys.argv[1]); reps = int(sys.argv[2]); work = sys.argv[3]
env = dict(os.environ)
times = {key: [] for key in commands}
order = random.Random(0)
for rep in range(reps + 1):
    keys = list(commands)
    order.shuffle(keys)
    for key in keys:
        out = f"{work}/out-{key}"
        for d in ("", "-early", "-late"):
            shutil.rmtree(out + d, ignore_errors=True)
            os.mkdir(out + d)
        argv, extra, forget = commands[key]
        if forget and os.path.exists(forget):
            os.unlink(forget)  # the full path: no cache (a first boot, or inputs changed)
        started = time.perf_counter()
        subprocess.run([*argv, out, out + "-early", out + "-late"] if extra else argv,
                       env={**env, **extra}, check=True, capture_output=True)
        if rep:  # the first repetition warms the page cache and writes the bytecode
            times[key].append(time.perf_counter() - started)
print(json.dumps(times))
"""


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--reps", type=int, default=21)
    parser.add_argument("--count", type=int, default=50)
    args = parser.parse_args()
    node = boot("benchq", "trixie")
    try:
        for i in range(args.count):
            requires = f"requires: [svc-{i - 1:04d}]\n" if i % 10 else ""
            node.write_file(f"{SPECS}/svc-{i:04d}.yaml", SPEC.format(i=i, requires=requires))
        node.run(["compute-units", "export", "--quadlet", "--spec", SPECS, "--output-dir", CONTAINERS])
        node.write_file(f"{WORK}/timer.py", TIMER)
        commands = {
            "ours": [[GENERATOR], {"COMPUTE_UNITS_ROOT": f"{WORK}/root"}, None],
            "full": [[GENERATOR], {"COMPUTE_UNITS_ROOT": f"{WORK}/root"}, f"{WORK}/root/{CACHE}"],
            "quadlet": [[QUADLET], {"QUADLET_UNIT_DIRS": CONTAINERS}, None],
            "python": [["/usr/bin/python3", "-c", "pass"], {}, None],
        }
        out = node.run(["python3", f"{WORK}/timer.py", json.dumps(commands), str(args.reps), WORK]).stdout
        times: dict[str, list[float]] = json.loads(out)
        made = {
            key: node.run(["sh", "-c", f"ls {WORK}/out-{key} | grep -c '\\.service$'"]).stdout.strip()
            for key in ("ours", "full", "quadlet")
        }
        assert set(made.values()) == {str(args.count)}, made
        same = node.run(["diff", "-r", f"{WORK}/out-ours", f"{WORK}/out-full"], check=False)
        assert same.returncode == 0, same.stdout
        print(report(times, args.count, args.reps))
    finally:
        node.shutdown()


def report(times: dict[str, list[float]], count: int, reps: int) -> str:
    def median(key: str) -> float:
        values = sorted(times[key])
        return values[len(values) // 2]

    def cell(key: str) -> str:
        return f"{median(key) * 1000:.1f} ms ({min(times[key]) * 1000:.1f}–{max(times[key]) * 1000:.1f})"

    rows = [
        "| what | median (min–max) | ratio to Quadlet |",
        "|---|---|---|",
        f"| Quadlet's generator (podman 5.4), {count} .container files | {cell('quadlet')} | 1.0× |",
        f"| compute-units-generator (python 3.13), {count} specs, cached | {cell('ours')} "
        f"| {median('ours') / median('quadlet'):.2f}× (goal ≤ 2×) |",
        f"| same, full path (no cache: first boot, changed inputs) | {cell('full')} "
        f"| {median('full') / median('quadlet'):.2f}× |",
        f"| `python3 -c pass` | {cell('python')} | {median('python') / median('quadlet'):.2f}× |",
    ]
    return f"trixie node, {reps} runs each, shuffled\n\n" + "\n".join(rows)


if __name__ == "__main__":
    main()
