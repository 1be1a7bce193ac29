"""Benchmark: `compute-units generate` for 1000 services and the generator for 50 specs.

Each figure is compared, in the same run, with the bare alternative:
- generate: a plain Python script that formats the same units with str.format and writes them
  (no validation, no atomicity) — the cost floor of "turn 1000 files into 1000 files";
- generator: `python3 -c pass` — the interpreter start every generator pays.
Prints a markdown table. Run: python3 bench/bench_generate.py
"""

from __future__ import annotations

import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SPEC = """description: Nova compute agent {i}
image: 127.0.0.1:5000/compute/nova-compute-{i}:2024.1@sha256:{digest}
command: [/usr/bin/nova-compute, --config-file, /etc/nova/nova.conf]
host_namespaces: [pid, network]
privileged: true
mounts:
  - /sys/fs/cgroup:/sys/fs/cgroup
  - {{source: /var/lib/nova, target: /var/lib/nova, create: true}}
  - /var/lib/libvirt:/var/lib/libvirt
  - /run/libvirt:/run/libvirt
environment: {{RABBIT_USERID: stackrabbit, NETWORK_MANAGER: nova, RABBITMQ_SERVICE_HOST: 192.0.2.10}}
secrets:
  NOVA_DB_PASSWORD: {{podman_secret: nova_db_password}}
{requires}stop_timeout: 30s
health: {{command: [/usr/bin/healthcheck], interval: 30s}}
"""

DIGEST = "0" * 64

BARE = '''
import sys
from pathlib import Path
UNIT = """[Unit]
Description={description}
{requires}
[Service]
Type=notify
ExecStart=/usr/bin/podman run --name={name} --pid=host --network=host --privileged {image} {command}
[Install]
WantedBy=compute-node.target
"""
src, out = Path(sys.argv[1]), Path(sys.argv[2])
for path in sorted(src.iterdir()):
    lines = path.read_text().splitlines()
    name = path.stem
    (out / f"{name}.service").write_text(UNIT.format(
        description=lines[0], requires="", name=name, image=lines[1], command=lines[2]))
'''


def make_specs(directory: Path, count: int) -> None:
    directory.mkdir(parents=True)
    for i in range(count):
        requires = f"requires: [svc-{i - 1:04d}]\n" if i % 10 else ""
        (directory / f"svc-{i:04d}.yaml").write_text(SPEC.format(i=i, requires=requires, digest=DIGEST))


def record_facts(root: Path, count: int) -> None:
    """What a host that pulled its images has recorded: podman's version (asked once, here) and,
    for podman < 5.3 (whose secrets loader needs them), each image's ENTRYPOINT and CMD. The
    images are pinned (@digest): recorded configs of pinned images are not asked of podman again,
    so neither command runs podman (a tag would cost `generate` one `podman image inspect`)."""
    from compute_units import facts

    recorder = facts.Recorder(root)
    if recorder.podman_version() is None:
        raise SystemExit(f"bench: the specs have secrets, which need podman ({facts.PODMAN})")
    recorder.data["images"] = {
        f"127.0.0.1:5000/compute/nova-compute-{i}:2024.1@sha256:{DIGEST}": {
            "entrypoint": ["dumb-init", "--"],
            "cmd": ["kolla_start"],
        }
        for i in range(count)
    }
    recorder.changed = True
    recorder.save()


def timed(argv: list[str], env: dict[str, str] | None = None, runs: int = 5) -> list[float]:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run(argv, check=True, capture_output=True, env=env)
        times.append(time.perf_counter() - started)
    return times


def main() -> None:
    work = Path(tempfile.mkdtemp(prefix="cu-bench-"))
    try:
        specs = work / "specs"
        make_specs(specs, 1000)
        out = work / "out"
        out.mkdir()
        cli_root = work / "cli-root"
        record_facts(cli_root, 1000)
        cli = [
            sys.executable,
            "-m",
            "compute_units.main",
            "generate",
            "--spec",
            str(specs),
            "--root",
            str(cli_root),
        ]
        cli.append("--output-dir")

        def fresh(name: str) -> str:
            target = work / name
            shutil.rmtree(target, ignore_errors=True)
            target.mkdir()
            return str(target)

        ours = []
        bare = []
        for run in range(5):
            ours += timed([*cli, fresh(f"o{run}")], runs=1)
            (work / "bare.py").write_text(BARE)
            bare += timed([sys.executable, str(work / "bare.py"), str(specs), fresh(f"b{run}")], runs=1)
        gen_root = work / "gen-root"
        make_specs(gen_root / "usr/share/compute-units/services", 50)
        record_facts(gen_root, 50)
        for d in ("n", "e", "l"):
            (work / d).mkdir()
        env = {"COMPUTE_UNITS_ROOT": str(gen_root), "PATH": "/usr/bin:/bin"}
        generator = timed(
            [
                sys.executable,
                "-m",
                "compute_units.generator",
                str(work / "n"),
                str(work / "e"),
                str(work / "l"),
            ],
            env=env,
            runs=11,
        )
        interpreter = timed([sys.executable, "-c", "pass"], runs=11)
        rows = [
            ("generate, 1000 services (goal < 1 s)", ours, bare, "bare str.format writer"),
            (
                "generator, 50 specs, incl. interpreter (goal < 150 ms)",
                generator,
                interpreter,
                "python3 -c pass",
            ),
        ]
        print("| what | compute-units median (min) | bare alternative | bare median | ratio |")
        print("|---|---|---|---|---|")
        for what, mine, base, label in rows:
            m, b = statistics.median(mine), statistics.median(base)
            print(
                f"| {what} | {m * 1000:.0f} ms ({min(mine) * 1000:.0f}) | {label} | {b * 1000:.0f} ms | {m / b:.1f}x |"
            )
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
