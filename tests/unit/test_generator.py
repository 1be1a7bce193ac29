"""The systemd generator: search path precedence, masking, broken specs skipped, nothing outside."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

from tests.unit.execparse import parse_exec
from tests.unit.test_render import verify

IMG = "image: 127.0.0.1:5000/x:1\n"


def tree(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


def run_generator(root: Path, out: Path) -> subprocess.CompletedProcess[str]:
    for d in ("normal", "early", "late"):
        (out / d).mkdir(parents=True, exist_ok=True)
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "compute_units.generator",
            str(out / "normal"),
            str(out / "early"),
            str(out / "late"),
        ],
        env={**os.environ, "COMPUTE_UNITS_ROOT": str(root)},
        capture_output=True,
        text=True,
        check=False,
    )


def test_generator_reads_the_search_path_and_skips_broken_specs(tmp_path: Path) -> None:
    root = tmp_path / "root"
    usr = root / "usr/share/compute-units/services"
    etc = root / "etc/compute-units/services"
    usr.mkdir(parents=True)
    etc.mkdir(parents=True)
    (usr / "libvirt.yaml").write_text(IMG + "description: from usr\n")
    (etc / "libvirt.yaml").write_text(IMG + "description: site override\n")  # /etc wins
    (usr / "network.yaml").write_text(IMG)
    (etc / "network.yaml").symlink_to("/dev/null")  # masked
    (usr / "compute.yaml").write_text(IMG + "requires: [libvirt]\n")
    (usr / "broken.yaml").write_text(IMG + "restart: sometimes\n")
    (usr / "needs-broken.yaml").write_text(IMG + "requires: [broken]\n")
    out = tmp_path / "gen"
    before = tree(tmp_path)
    result = run_generator(root, out)
    assert result.returncode == 0
    broken = usr / "broken.yaml"
    assert result.stderr.splitlines() == [
        f"compute-units-generator: {broken}:2:10: restart: invalid restart policy 'sometimes' (expected one "
        "of no, always, on-success, on-failure, on-abnormal, on-abort, on-watchdog)",
        f"compute-units-generator: {usr / 'needs-broken.yaml'}:2:12: requires[0]: requires service 'broken', "
        "which has errors",
        f"compute-units-generator: skipped {broken}: fix the errors above and run `systemctl daemon-reload`",
        f"compute-units-generator: skipped {usr / 'needs-broken.yaml'}: fix the errors above and run "
        "`systemctl daemon-reload`",
        "compute-units-generator: generated 2 service(s): libvirt, compute",
    ]
    normal = out / "normal"
    assert sorted(p.name for p in normal.iterdir()) == [
        "compute-node.target",
        "compute-units-spec-errors.service",
        "compute.service",
        "libvirt.service",
        "multi-user.target.wants",
    ]
    # at boot the generator's stderr is lost (no journald yet): a unit names the skipped files in
    # the journal, with our own words only (a diagnostic may quote the spec)
    report = (normal / "compute-units-spec-errors.service").read_text()
    printed = parse_exec(report, "ExecStart", "compute-units-spec-errors.service")
    assert printed[0] == [
        "/usr/bin/printf",
        "%s\\n",
        f"skipped {broken}: 1 error(s)",
        f"skipped {usr / 'needs-broken.yaml'}: 1 error(s)",
        "run `compute-units validate` to see the errors; fix them and run `systemctl daemon-reload`",
        "generated 2 service(s): libvirt, compute",
    ]
    assert printed[1] == ["/bin/false"]
    assert sorted(p.name for p in (normal / "multi-user.target.wants").iterdir()) == [
        "compute-node.target",
        "compute-units-spec-errors.service",
    ]
    assert "Description=site override" in (normal / "libvirt.service").read_text()
    assert (normal / "multi-user.target.wants/compute-node.target").readlink() == Path(
        "../compute-node.target"
    )
    # nothing written anywhere but NORMAL_DIR
    after = tree(tmp_path)
    assert {p for p in after - before if not p.startswith("gen/normal")} == {"gen", "gen/early", "gen/late"}
    assert list((out / "early").iterdir()) == [] and list((out / "late").iterdir()) == []


def test_generator_with_no_specs_generates_nothing_and_succeeds(tmp_path: Path) -> None:
    result = run_generator(tmp_path / "empty-root", tmp_path / "gen")
    assert result.returncode == 0
    assert result.stderr == "compute-units-generator: no valid service specs; nothing generated\n"
    assert list((tmp_path / "gen/normal").iterdir()) == []


def test_generator_usage_error(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "compute_units.generator", "a", "b"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 2
    assert (
        result.stderr
        == "compute-units-generator: usage: compute-units-generator NORMAL_DIR [EARLY_DIR LATE_DIR]\n"
    )


def test_report_unit_carries_no_text_from_specs(tmp_path: Path) -> None:
    root = tmp_path / "root"
    usr = root / "usr/share/compute-units/services"
    usr.mkdir(parents=True)
    (usr / "good.yaml").write_text(IMG)
    hostile = "HOSTILE $(reboot) %n\\nExecStartPre=/bin/evil"
    (usr / "bad.yaml").write_text(IMG + f"restart: {json.dumps(hostile)}\nstop_timeout: never\n")
    odd = usr / "odd\nExecStartPre=\x1b.yaml"
    odd.write_text(IMG + "restart: sometimes\n")
    result = run_generator(root, tmp_path / "gen")
    assert result.returncode == 0
    assert "HOSTILE $(reboot)" in result.stderr  # the diagnostics still go to the generator's log
    normal = tmp_path / "gen/normal"
    report = (normal / "compute-units-spec-errors.service").read_text()
    assert "HOSTILE" not in report and "reboot" not in report and "sometimes" not in report
    assert "ExecStartPre" not in "".join(line for line in report.splitlines() if "ExecStart=" not in line)
    printed = parse_exec(report, "ExecStart", "compute-units-spec-errors.service")
    assert printed[0][2:] == [
        f"skipped {usr / 'bad.yaml'}: 2 error(s)",
        f"skipped {usr}/odd\\nExecStartPre=\\x1b.yaml: 2 error(s)",  # a bad name too
        "run `compute-units validate` to see the errors; fix them and run `systemctl daemon-reload`",
        "generated 1 service(s): good",
    ]
    verify(normal)


def test_generator_writes_socket_units_and_removes_them_with_the_spec(tmp_path: Path) -> None:
    root = tmp_path / "root"
    etc = root / "etc/compute-units/services"
    etc.mkdir(parents=True)
    (etc / "daemon.yaml").write_text(IMG + "sockets: [{path: /run/daemon.sock}, {port: 8000}]\n")
    out = tmp_path / "gen"
    assert run_generator(root, out).returncode == 0
    normal = out / "normal"
    assert sorted(p.name for p in normal.iterdir() if p.is_file()) == [
        "compute-node.target",
        "daemon-daemon.sock.socket",
        "daemon-tcp-8000.socket",
        "daemon.service",
    ]
    verify(normal)
    (etc / "daemon.yaml").write_text(IMG)  # the sockets go: so do their units, at the next reload
    assert run_generator(root, out).returncode == 0
    assert sorted(p.name for p in normal.iterdir() if p.is_file()) == [
        "compute-node.target",
        "daemon.service",
    ]


def test_a_boot_during_an_unfinished_upgrade_runs_the_declared_image(tmp_path: Path) -> None:
    """Power lost after the pin: the unit file (in /etc, or ours) names the target; the node must
    boot the last committed image (the target had not passed its health gate), through a drop-in
    that also covers a unit file in /etc."""
    root = tmp_path / "root"
    etc = root / "etc/compute-units/services"
    etc.mkdir(parents=True)
    (etc / "svc.yaml").write_text("image: 127.0.0.1:5000/x:1\n")
    old, new = f"127.0.0.1:5000/x:1@sha256:{'a' * 64}", f"127.0.0.1:5000/x:2@sha256:{'b' * 64}"
    entry = {"current": old, "previous": old, "target": new, "phase": "pinned", "boot_id": "an-earlier-boot"}
    state = root / "var/lib/compute-units/state.json"
    state.parent.mkdir(parents=True)
    state.write_text(json.dumps({"services": {"svc": entry}}))
    out = tmp_path / "gen"
    result = run_generator(root, out)
    assert result.returncode == 0, result.stderr
    assert f"compute-units-generator: svc.service: booted during an unfinished upgrade: runs {old}" in (
        result.stderr.splitlines()
    )
    dropin = (out / "normal/svc.service.d/50-compute-units-boot-pin.conf").read_text().splitlines()
    assert dropin[2:5] == ["[Unit]", f"X-ComputeUnits-Image={old}", "[Service]"]
    assert dropin[5] == "ExecStart="
    unit = (out / "normal/svc.service").read_text()
    assert f"X-ComputeUnits-Image={old}" in unit
    # the very ExecStart= of a unit rendered with the declared image (continuation lines included)
    exec_start = re.findall(r"^ExecStart=(?:.*\\\n)*.*$", unit, re.MULTILINE)
    assert "\n".join(dropin[6:]) == exec_start[0]
    assert f"        {old}" in exec_start[0]
    # the same boot (the upgrade's own daemon-reloads): the unit follows the pin, no drop-in
    entry["boot_id"] = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    state.write_text(json.dumps({"services": {"svc": entry}}))
    again = tmp_path / "again"  # systemd empties the generators' directories before each run
    assert run_generator(root, again).returncode == 0
    assert not (again / "normal/svc.service.d").exists()
    assert f"X-ComputeUnits-Image={new}" in (again / "normal/svc.service").read_text()
