"""Lifecycle on a real systemd 252 + podman 4.3 node: generate, systemctl, compute-units start/stop/
restart/status/apply, failure reporting, ordering, secrets."""

from __future__ import annotations

import json
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from compute_units_dev.node import Node
from tests.harness.fixtures import Image, cu

CANARY = f"CANARY-{uuid.uuid4().hex}"
SERVICES = ("nova-libvirt", "nova-compute", "nova-network")


def seed_specs(images: dict[str, Image]) -> dict[str, str]:
    """The seed's compute node with the stand-in image but the real flags and mounts."""
    v1 = images["v1"].reference
    return {
        "nova-libvirt": f"""
description: Nova libvirt (stand-in)
image: {v1}
host_namespaces: [pid, network, cgroup]
privileged: true
mounts:
  - /sys:/sys
  - /sys/fs/cgroup:/sys/fs/cgroup
  - /var/lib/libvirt:/var/lib/libvirt
  - {{source: /var/lib/nova, target: /var/lib/nova, create: true}}
health: {{command: [/usr/local/bin/healthcheck.sh], interval: 30s, timeout: 5s, start_period: 10s}}
keeps_vms: true
""",
        "nova-compute": f"""
description: Nova compute (stand-in)
image: {v1}
host_namespaces: [pid, network]
privileged: true
mounts: [/var/lib/nova:/var/lib/nova, /var/lib/libvirt:/var/lib/libvirt]
environment: {{RABBIT_USERID: stackrabbit, NETWORK_MANAGER: nova, ODD: "50% of $HOME costs 'a b'"}}
secrets: {{NOVA_DB_PASSWORD: {{file: /etc/compute-units/secrets/nova_db_password}}}}
requires: [nova-libvirt]
""",
        "nova-network": f"""
description: Nova network (stand-in)
image: {v1}
host_namespaces: [pid, network]
privileged: true
mounts: [/var/lib/nova:/var/lib/nova]
environment: {{NETWORK_MANAGER: nova}}
""",
    }


def deploy(node: Node, specs: dict[str, str], pull: tuple[str, ...] = ()) -> None:
    for name, text in specs.items():
        node.write_file(f"/etc/compute-units/services/{name}.yaml", text)
    for name in pull:  # podman 4.3's secrets loader runs the image's ENTRYPOINT and CMD: read when pulled
        pulled = cu(node, "pull", name)
        assert pulled.returncode == 0, pulled.stderr
    result = cu(node, "generate")
    assert result.returncode == 0, result.stderr
    node.systemctl("daemon-reload")


def undeploy(node: Node) -> None:
    cu(node, "stop")
    node.run(["sh", "-c", "rm -f /etc/compute-units/services/*.yaml"])
    node.run(
        [
            "sh",
            "-c",
            "rm -f /etc/systemd/system/nova-*.service /etc/systemd/system/broken.service "
            "/etc/systemd/system/compute-node.target",
        ]
    )
    node.systemctl("daemon-reload")
    node.systemctl("reset-failed", check=False)


@pytest.fixture
def seed(node: Node, svc_images: dict[str, Image]) -> Iterator[dict[str, str]]:
    node.write_file("/etc/compute-units/secrets/nova_db_password", CANARY, mode=0o600)
    specs = seed_specs(svc_images)
    deploy(node, specs, pull=("nova-compute",))
    yield specs
    undeploy(node)


def container(node: Node, name: str) -> dict[str, object]:
    data: list[dict[str, object]] = json.loads(node.run(["podman", "container", "inspect", name]).stdout)
    return data[0]


def ns(node: Node, pid: int | str, kind: str) -> str:
    return node.run(["readlink", f"/proc/{pid}/ns/{kind}"]).stdout.strip()


def test_systemctl_start_runs_containers_with_the_seed_flags(node: Node, seed: dict[str, str]) -> None:
    # systemd 252 expands a glob to loaded units only when given --all (otherwise: active units)
    node.systemctl("start", "--all", "nova-*")
    for name in SERVICES:
        assert node.show(f"{name}.service", "ActiveState")["ActiveState"] == "active"
    libvirt = container(node, "nova-libvirt")
    pid = libvirt["State"]["Pid"]  # type: ignore[index]
    # host PID namespace (the node's, which is the "host" here) and the host's network namespace
    assert ns(node, pid, "pid") == ns(node, 1, "pid")
    assert ns(node, pid, "net") == ns(node, 1, "net")
    assert (
        ns(node, pid, "net")
        == subprocess.run(
            ["readlink", "/proc/self/ns/net"], capture_output=True, text=True, check=True
        ).stdout.strip()
    )
    assert ns(node, pid, "cgroup") == ns(node, 1, "cgroup")
    host_config = libvirt["HostConfig"]
    assert host_config["Privileged"] is True  # type: ignore[index]
    mounts = {(m["Source"], m["Destination"]) for m in libvirt["Mounts"]}  # type: ignore[attr-defined]
    for path in ("/sys", "/sys/fs/cgroup", "/var/lib/libvirt", "/var/lib/nova"):
        assert (path, path) in mounts
    # the same start through compute-node.target after a stop
    node.systemctl("stop", "nova-*")
    node.systemctl("start", "compute-node.target")
    for name in SERVICES:
        assert node.show(f"{name}.service", "ActiveState")["ActiveState"] == "active"


def test_start_stop_restart_through_compute_units(node: Node, seed: dict[str, str]) -> None:
    started = cu(node, "start")
    assert started.returncode == 0, started.stderr
    assert started.stdout.splitlines() == [
        f"{name}.service: start ok (active/running)"
        for name in ("nova-libvirt", "nova-compute", "nova-network")
    ]
    before = container(node, "nova-network")["Id"]
    invocation = node.show("nova-network.service", "InvocationID")["InvocationID"]
    restarted = cu(node, "restart", "nova-network", "--settle", "0")
    assert restarted.returncode == 0, restarted.stderr
    assert restarted.stdout == "nova-network.service: restart ok (active/running)\n"
    after = container(node, "nova-network")["Id"]
    assert after != before
    assert node.show("nova-network.service", "InvocationID")["InvocationID"] != invocation

    # restarting libvirt restarts what requires it, and says so
    restarted = cu(node, "restart", "nova-libvirt", "--settle", "0")
    assert restarted.stdout.splitlines() == [
        "nova-libvirt.service: restart ok (active/running)",
        "nova-compute.service: restart ok (active/running)",
    ]

    stopped = cu(node, "stop")
    assert stopped.returncode == 0, stopped.stderr
    assert sorted(stopped.stdout.splitlines()) == sorted(
        f"{name}.service: stop ok (inactive/dead)" for name in SERVICES
    )
    names = node.run(["podman", "ps", "-a", "--format", "{{.Names}}"]).stdout.split()
    assert not set(names) & set(SERVICES)


def test_requires_orders_start_and_stop(node: Node, seed: dict[str, str]) -> None:
    assert cu(node, "start").returncode == 0
    assert cu(node, "stop").returncode == 0
    assert cu(node, "start").returncode == 0
    libvirt = node.show(
        "nova-libvirt.service", "ActiveEnterTimestampMonotonic", "InactiveExitTimestampMonotonic"
    )
    compute = node.show("nova-compute.service", "InactiveExitTimestampMonotonic")
    # the dependent starts only once libvirt is up
    assert int(compute["InactiveExitTimestampMonotonic"]) >= int(libvirt["ActiveEnterTimestampMonotonic"])
    assert cu(node, "stop").returncode == 0
    libvirt = node.show("nova-libvirt.service", "ActiveExitTimestampMonotonic")
    compute = node.show("nova-compute.service", "InactiveEnterTimestampMonotonic")
    # and stops before libvirt begins to stop
    assert int(compute["InactiveEnterTimestampMonotonic"]) <= int(libvirt["ActiveExitTimestampMonotonic"])


def test_failing_image_reports_result_and_journal(
    node: Node, seed: dict[str, str], svc_images: dict[str, Image]
) -> None:
    deploy(node, {"broken": f"image: {svc_images['bad'].reference}\nrestart: 'no'\n"})
    result = cu(node, "start", "broken")
    assert result.returncode == 1
    lines = result.stderr.splitlines()
    assert lines[0] == (
        "broken.service: start failed: job done, unit failed/failed "
        "(Result=exit-code, main process exit status 1)"
    )
    assert any(line.endswith("service bad: cannot start (test image built to fail)") for line in lines[1:])
    assert any(line.endswith("broken.service: Failed with result 'exit-code'.") for line in lines[1:])
    as_json = json.loads(cu(node, "start", "broken", "--json").stdout)
    assert as_json["ok"] is False
    assert as_json["jobs"][0]["state"]["exec_main_status"] == 1


def test_secret_never_leaves_the_container(node: Node, seed: dict[str, str], release: str) -> None:
    """Without command: in the spec: the image's own CMD runs and gets the secret, on either podman."""
    mode = "native" if release == "trixie" else "loader"  # podman 5.4 / 4.3
    assert cu(node, "start").returncode == 0
    inspected = container(node, "nova-compute")
    pid = inspected["State"]["Pid"]  # type: ignore[index]
    assert "/usr/local/bin/service.sh" in node.run(["cat", f"/proc/{pid}/cmdline"]).stdout.split("\0")
    environ = node.run(["cat", f"/proc/{pid}/environ"]).stdout.split("\0")
    assert f"NOVA_DB_PASSWORD={CANARY}" in environ  # the service gets it...
    assert "ODD=50% of $HOME costs 'a b'" in environ  # ...and plain values arrive exactly as written
    # ...and nothing else shows it
    places = {
        "ps": node.run(["ps", "-eo", "args"]).stdout,
        "unit files": node.run(["sh", "-c", "cat /etc/systemd/system/*.service"]).stdout,
        "systemctl show": node.run(["systemctl", "show", "nova-compute.service"]).stdout,
        "journal": node.run(["journalctl", "-o", "export", "--no-pager"]).stdout,
        "podman inspect": node.run(["podman", "inspect", "nova-compute"]).stdout,
        "status --json": cu(node, "status", "--json").stdout,
    }
    for place, text in places.items():
        assert CANARY not in text, f"secret found in {place}"
    # how: the unit's marker, status --json and doctor agree
    assert f"\n# Secrets: {mode} (" in node.read_file("/etc/systemd/system/nova-compute.service")
    rows = {row["service"]: row["secrets"] for row in json.loads(places["status --json"])}
    assert rows == {"nova-libvirt": "", "nova-compute": mode, "nova-network": ""}
    findings = {f["check"]: f for f in json.loads(cu(node, "doctor", "--json").stdout)["findings"]}
    assert findings["secrets nova-compute"] == {
        "check": "secrets nova-compute",
        "status": "ok",
        "message": f"unit passes them {mode}",
        "fix": "",
    }
    env = inspected["Config"]["Env"]  # type: ignore[index]
    if mode == "native":  # podman masks the value under the secret's name, not the variable's
        assert "compute-units.nova-compute.NOVA_DB_PASSWORD=*******" in env
    else:  # mounted: the variable exists only in the process, set by the loader
        assert not [e for e in env if e.startswith("NOVA_DB_PASSWORD=")]


def test_status_reports_containers_digests_and_health(
    node: Node, seed: dict[str, str], svc_images: dict[str, Image]
) -> None:
    assert cu(node, "start").returncode == 0
    rows = {row["service"]: row for row in json.loads(cu(node, "status", "--json").stdout)}
    assert set(rows) == set(SERVICES)
    for name in SERVICES:
        assert rows[name]["active_state"] == "active"
        assert str(container(node, name)["Id"]).startswith(rows[name]["container_id"])
        assert rows[name]["image_digest"] == svc_images["v1"].digest
    assert rows["nova-libvirt"]["health"] in ("healthy", "starting")
    assert rows["nova-network"]["health"] == "none"
    table = cu(node, "status").stdout.splitlines()
    assert table[0].split() == [
        "unit",
        "state",
        "container",
        "image",
        "digest",
        "since",
        "health",
        "disruptive",
    ]


def test_apply_restarts_exactly_the_changed_units(node: Node, seed: dict[str, str]) -> None:
    assert cu(node, "apply").returncode == 0
    ids = {name: container(node, name)["Id"] for name in SERVICES}
    node.write_file(
        "/etc/compute-units/services/nova-network.yaml",
        seed["nova-network"].replace("NETWORK_MANAGER: nova", "NETWORK_MANAGER: nova, EXTRA: '1'"),
    )
    result = cu(node, "apply", "--settle", "0")
    assert result.returncode == 0, result.stderr
    assert "   change  /etc/systemd/system/nova-network.service" in result.stdout.splitlines()
    assert container(node, "nova-network")["Id"] != ids["nova-network"]
    assert container(node, "nova-libvirt")["Id"] == ids["nova-libvirt"]
    assert container(node, "nova-compute")["Id"] == ids["nova-compute"]


def test_errors_name_the_problem(node: Node, seed: dict[str, str]) -> None:
    unknown = cu(node, "restart", "nova-compte")
    assert unknown.returncode == 2
    assert unknown.stderr.splitlines() == [
        "compute-units: error: unknown service 'nova-compte' (known: nova-libvirt, nova-compute, nova-network)",
        "  hint: did you mean 'nova-compute'?",
    ]
    node.write_file("/etc/compute-units/services/late.yaml", "image: localhost/late:1\n")
    not_generated = cu(node, "start", "late")
    assert not_generated.returncode == 3
    assert not_generated.stderr.splitlines() == [
        "compute-units: error: unit late.service is not generated yet",
        "  hint: run `compute-units generate` (or `compute-units apply`) first",
    ]
    node.run(["rm", "/etc/compute-units/services/late.yaml"])


def test_dbus_unreachable_is_reported(tmp_path: Path) -> None:
    """On this host (PID 1 is not systemd) there is no system bus to reach."""
    (tmp_path / "svc.yaml").write_text("image: localhost/svc:1\n")
    result = subprocess.run(
        ["compute-units", "status", "--spec", str(tmp_path)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 3
    assert result.stderr.startswith("compute-units: error: cannot reach systemd over D-Bus (")
    assert result.stderr.splitlines()[1] == "  hint: is systemd PID 1 here and the system bus running?"


def test_a_broken_unrelated_spec_does_not_block_a_restart(node: Node, seed: dict[str, str]) -> None:
    assert cu(node, "start").returncode == 0
    node.write_file(
        "/etc/compute-units/services/broken.yaml", "image: 127.0.0.1:5000/x:1\nrestart: sometimes\n"
    )
    try:
        # a named restart goes by the generated units and reads no spec at all
        named = cu(node, "restart", "nova-network", "--settle", "0")
        assert named.returncode == 0, named.stderr
        assert named.stdout == "nova-network.service: restart ok (active/running)\n"
        assert named.stderr == ""
        # commands that do read the specs go on for named services, and say what they skipped
        status = cu(node, "status", "nova-network", "--json")
        assert status.returncode == 0, status.stderr
        assert json.loads(status.stdout)[0]["active_state"] == "active"
        assert status.stderr == (
            "compute-units: warning: ignoring 1 spec(s) with errors: /etc/compute-units/services/broken.yaml "
            "(`compute-units validate` shows them)\n"
        )
        everything = cu(node, "restart")
        assert everything.returncode == 2
        assert everything.stderr.splitlines()[0].startswith(
            "/etc/compute-units/services/broken.yaml:2:10: restart: invalid restart policy 'sometimes'"
        )
        itself = cu(node, "restart", "broken")
        assert itself.returncode == 2
    finally:
        node.run(["rm", "/etc/compute-units/services/broken.yaml"])
