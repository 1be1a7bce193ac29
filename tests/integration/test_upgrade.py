"""Upgrade mechanics on real systemd/podman/registry with the small service image: pull failures,
idempotence after kill -9 at every step, the lock, rollback, history, doctor."""

from __future__ import annotations

import json
import shlex
from collections.abc import Iterator

import pytest

from compute_units_dev.node import NODE_EXTRAS, REPO, Node, cgroup_layout
from compute_units_dev.specs import svc_spec
from tests.harness.fixtures import Image, cu

PODMAN_MAJOR = {"bookworm": "4.", "trixie": "5."}
# the steps, plus the moment inside `restart` between stopping the old container and the restart job
STEPS = ("pull", "preflight", "record", "pin", "stop-container", "restart", "health", "post-check", "commit")


def spec(reference: str) -> str:
    """The service stand-in with a preflight path (doctor reports it)."""
    return svc_spec(reference, extra="preflight: {paths: [/dev/kvm]}\n")


@pytest.fixture(scope="module")
def svc(node: Node, svc_images: dict[str, Image]) -> Iterator[dict[str, Image]]:
    node.write_file("/etc/compute-units/services/svc.yaml", spec(svc_images["v1"].reference))
    assert cu(node, "apply").returncode == 0
    yield svc_images
    cu(node, "stop")
    node.run(["sh", "-c", "rm -rf /etc/compute-units/services/svc.yaml /var/lib/compute-units"])
    cu(node, "generate")
    node.systemctl("daemon-reload")
    node.systemctl("reset-failed", check=False)


def running_digest(node: Node) -> str:
    image = node.run(["podman", "inspect", "svc", "--format", "{{.Image}}"]).stdout.strip()
    return node.run(["podman", "image", "inspect", image, "--format", "{{.Digest}}"]).stdout.strip()


def container_id(node: Node) -> str:
    return node.run(["podman", "inspect", "svc", "--format", "{{.Id}}"]).stdout.strip()


def svc_state(node: Node) -> dict[str, object]:
    data = json.loads(node.read_file("/var/lib/compute-units/state.json"))
    entry: dict[str, object] = data["services"]["svc"]
    return entry


def test_missing_image_changes_nothing(node: Node, svc: dict[str, Image]) -> None:
    before = container_id(node)
    result = cu(node, "upgrade", "svc", "--image", svc["v1"].reference.replace(":v1", ":no-such-tag"))
    assert result.returncode == 1
    last = result.stderr.splitlines()[-2]
    assert last.startswith(
        f"compute-units: error: cannot pull {svc['v1'].reference.replace(':v1', ':no-such-tag')}: "
    )
    assert last.endswith("; nothing was changed")
    assert container_id(node) == before


def test_at_a_terminal_the_pull_shows_podmans_progress(node: Node, svc: dict[str, Image]) -> None:
    """Under a pseudo-terminal (script(1)) podman draws its pull progress; the upgrade still works."""
    target = "v1" if running_digest(node) == svc["v2"].digest else "v2"
    command = shlex.join(["compute-units", "upgrade", "svc", "--image", svc[target].reference])
    result = node.run(["script", "--quiet", "--return", "--command", command, "/dev/null"], check=False)
    assert result.returncode == 0, result.stdout
    assert f"Trying to pull {svc[target].reference}..." in result.stdout
    assert "Writing manifest to image destination" in result.stdout
    assert f"svc: upgraded {svc['v1' if target == 'v2' else 'v2'].reference}@" in result.stdout
    assert running_digest(node) == svc[target].digest


def test_kill_9_at_every_step_then_rerun_converges(node: Node, svc: dict[str, Image]) -> None:
    target = "v2"
    for step in STEPS:
        crashed = node.run(
            [
                "python3",
                "-m",
                "tests.harness.crash_cli",
                step,
                "upgrade",
                "svc",
                "--image",
                svc[target].reference,
            ],
            check=False,
            # the typer the node's entry points add on bookworm (NODE_EXTRAS), as `compute-units` runs
            env={"PYTHONPATH": f"{REPO}:{NODE_EXTRAS}"},
        )
        assert crashed.returncode in (-9, 137), (step, crashed.stderr)  # SIGKILL, seen through nsenter
        rerun = cu(node, "upgrade", "svc", "--image", svc[target].reference)
        assert rerun.returncode == 0, (step, rerun.stdout, rerun.stderr)
        entry = svc_state(node)
        assert entry["phase"] == "idle", step
        assert entry["current"] == f"{svc[target].reference}@{svc[target].digest}", step
        assert running_digest(node) == svc[target].digest, step
        assert node.show("svc.service", "ActiveState")["ActiveState"] == "active", step
        target = "v1" if target == "v2" else "v2"


def test_a_second_upgrade_waits_for_the_lock_or_fails(node: Node, svc: dict[str, Image]) -> None:
    node.run(["mkdir", "-p", "/var/lib/compute-units"])
    node.run(
        [
            "systemd-run",
            "--unit=hold-upgrade-lock",
            "-p",
            "Type=exec",
            "flock",
            "/var/lib/compute-units/upgrade.lock",
            "sleep",
            "600",
        ]
    )
    try:
        result = cu(node, "upgrade", "svc", "--image", svc["v1"].reference)
        assert result.returncode == 1
        assert result.stderr.splitlines()[0].startswith(
            "compute-units: error: another upgrade is running on this host"
        )
        waited = cu(node, "upgrade", "svc", "--image", svc["v1"].reference, "--wait", "1")
        assert waited.returncode == 1
        lines = waited.stderr.splitlines()
        assert lines[0] == "compute-units: waiting up to 1 s for the upgrade lock (holder unknown)"
        assert lines[1] == (
            "compute-units: error: another upgrade is still running after 1 s (holder unknown); "
            "lock /var/lib/compute-units/upgrade.lock"
        )
    finally:
        node.systemctl("stop", "hold-upgrade-lock")
    assert cu(node, "upgrade", "svc", "--image", svc["v1"].reference).returncode == 0


def test_rollback_and_history(node: Node, svc: dict[str, Image]) -> None:
    assert cu(node, "upgrade", "svc", "--image", svc["v1"].reference).returncode == 0
    assert cu(node, "upgrade", "svc", "--image", svc["v2"].reference).returncode == 0
    assert running_digest(node) == svc["v2"].digest
    rolled = cu(node, "rollback", "svc", "--json")
    assert rolled.returncode == 0, rolled.stderr
    assert json.loads(rolled.stdout)["services"][0]["to"] == f"{svc['v1'].reference}@{svc['v1'].digest}"
    assert running_digest(node) == svc["v1"].digest
    history = json.loads(cu(node, "history", "svc", "--json").stdout)
    assert (history[-1]["kind"], history[-1]["result"]) == ("rollback", "rolled-back")
    assert history[-1]["to"].endswith(svc["v1"].digest)
    assert history[-1]["undoes"] == history[-2]["time"]
    assert history[-2]["to"].endswith(svc["v2"].digest)
    table = cu(node, "history", "svc").stdout.splitlines()
    assert table[0].split() == ["time", "service", "kind", "result", "from", "to", "ms", "failed", "step"]


def test_unhealthy_image_rolls_back_automatically(node: Node, svc: dict[str, Image]) -> None:
    assert cu(node, "upgrade", "svc", "--image", svc["v2"].reference).returncode == 0
    result = cu(node, "upgrade", "svc", "--image", svc["v3"].reference)
    assert result.returncode == 5
    assert result.stdout.splitlines()[0].startswith("svc: rolled-back ")
    assert result.stderr.splitlines()[0].startswith(
        f"compute-units: error: svc: upgrade to {svc['v3'].reference}@{svc['v3'].digest} failed at health: "
    )
    assert running_digest(node) == svc["v2"].digest
    assert svc_state(node)["current"] == f"{svc['v2'].reference}@{svc['v2'].digest}"


def test_generate_keeps_the_pinned_digest(node: Node, svc: dict[str, Image]) -> None:
    assert cu(node, "upgrade", "svc", "--image", svc["v2"].reference).returncode == 0
    assert cu(node, "generate").returncode == 0
    unit = node.read_file("/etc/systemd/system/svc.service")
    assert f"X-ComputeUnits-Image={svc['v2'].reference}@{svc['v2'].digest}" in unit


def test_doctor_reports_each_check(node: Node, svc: dict[str, Image], registry_address: str) -> None:
    result = cu(node, "doctor", "--json")
    findings = {f["check"]: f for f in json.loads(result.stdout)["findings"]}
    assert findings["systemd-machined"]["status"] == "ok"
    assert findings["host libvirtd.service"]["status"] == "ok"
    assert findings["/dev/kvm"]["status"] == "ok"
    assert findings["cgroups"]["message"] == f"{cgroup_layout(node.release)} layout"
    assert findings["podman"]["message"].startswith(PODMAN_MAJOR[node.release])
    registry = findings[f"registry {registry_address}"]
    assert (registry["status"], registry["fix"]) == ("ok", "")
    # the image the next `upgrade svc` would pull: the pin an earlier `upgrade --image` made
    pin = svc_state(node)["current"]
    assert registry["message"] == f"serves the manifest of {pin}"
    node.write_file("/etc/compute-units/services/far.yaml", "image: 127.0.0.1:9/nowhere/x:1\n")
    try:
        result = cu(node, "doctor", "--json")
    finally:
        node.run(["rm", "/etc/compute-units/services/far.yaml"])
    assert result.returncode == 3
    far = {f["check"]: f for f in json.loads(result.stdout)["findings"]}["registry 127.0.0.1:9"]
    assert far["status"] == "fail"
    assert far["message"].startswith("unreachable: ")


def test_doctor_fix_stops_host_libvirt_and_starts_machined(node: Node, svc: dict[str, Image]) -> None:
    # where the distribution's package would put it (masking goes to /etc)
    node.write_file("/usr/lib/systemd/system/libvirtd.service", "[Service]\nExecStart=/bin/sleep infinity\n")
    node.systemctl("daemon-reload")
    node.systemctl("start", "libvirtd.service")
    node.systemctl("stop", "systemd-machined.service")
    try:
        before = {f["check"]: f for f in json.loads(cu(node, "doctor", "--json").stdout)["findings"]}
        assert before["host libvirtd.service"]["status"] == "fail"
        assert before["host libvirtd.service"]["fix"].startswith("systemctl disable --now libvirtd.service")
        assert before["systemd-machined"]["status"] == "fail"
        fixed = cu(node, "doctor", "--fix", "--json")
        after = {f["check"]: f for f in json.loads(fixed.stdout)["findings"]}
        assert after["host libvirtd.service"] == {
            "check": "host libvirtd.service",
            "status": "ok",
            "message": "stopped and masked now",
            "fix": "",
            "fixed": True,
        }
        assert json.loads(fixed.stdout)["fixed"] == ["host libvirtd.service", "systemd-machined"]
        assert after["systemd-machined"]["message"] == "started now"
        assert node.show("libvirtd.service", "LoadState")["LoadState"] == "masked"
        assert node.show("systemd-machined.service", "ActiveState")["ActiveState"] == "active"
    finally:
        node.run(["systemctl", "unmask", "libvirtd.service"], check=False)
        node.run(["rm", "-f", "/usr/lib/systemd/system/libvirtd.service"])
        node.systemctl("daemon-reload")
        node.systemctl("start", "systemd-machined.service")
