"""Faults docs/reliability.md listed as not covered on a node: a rollback that fails too (a cause
outside the image makes both images fail their health check), and a spec's image edited for a
pinned service. Each asserts the exit code, the exact message, what runs, state.json and `status`."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator

import pytest

from compute_units.errors import ExitCode
from compute_units_dev.node import Node
from compute_units_dev.specs import svc_spec
from tests.harness.fixtures import Image, cu
from tests.integration.test_faults import (
    SPEC_DIR,
    STATE_DIR,
    active,
    assert_settled_on,
    deployed,
    on,
    pinned,
    svc_state,
)
from tests.integration.test_faults_more import error_lines, snapshot

HOLD_DIR = "/var/lib/cu-test-hold"
# While HOLD_DIR/health exists, every image's health check fails (a cause outside the image, as a
# dependency that is down); the gate gives up after start_period + timeout = 5 s.
HELD = svc_spec(
    "{reference}",
    health='{command: [sh, -c, "test ! -e /hold/health && exec /usr/local/bin/healthcheck.sh"], '
    "interval: 1s, timeout: 2s, start_period: 3s}",
    extra=f"mounts: [{{source: {HOLD_DIR}, target: /hold, create: true}}]\n",
)


@pytest.fixture(scope="module")
def svc(node: Node, svc_images: dict[str, Image]) -> Iterator[dict[str, Image]]:
    yield from deployed(node, svc_images)


@pytest.fixture
def held(node: Node, svc: dict[str, Image]) -> Iterator[str]:
    """svc on v1 with the hold-aware health check; the spec is put back after."""
    on(node, svc, "v1")
    node.write_file(f"{SPEC_DIR}/svc.yaml", HELD.replace("{reference}", svc["v1"].reference))
    applied = cu(node, "apply")
    assert applied.returncode == 0, applied.stderr
    yield f"{HOLD_DIR}/health"
    node.run(["rm", "-f", f"{HOLD_DIR}/health"])
    node.write_file(f"{SPEC_DIR}/svc.yaml", svc_spec(svc["v1"].reference))
    cu(node, "upgrade", "svc")  # finishes whatever a failed assertion left
    applied = cu(node, "apply")
    assert applied.returncode == 0, applied.stderr


def test_a_rollback_that_fails_too_is_loud_and_the_next_upgrade_finishes_it(
    node: Node, svc: dict[str, Image], held: str
) -> None:
    v1, v2 = pinned(svc["v1"]), pinned(svc["v2"])
    node.write_file(held, "")
    result = cu(node, "upgrade", "svc", "--image", svc["v2"].reference)
    assert result.returncode == ExitCode.FAILED, result.stdout + result.stderr
    (error,) = error_lines(result)
    assert error.startswith(f"compute-units: error: svc: rollback to {v1} failed: "), error
    assert "health check" in error and "did not pass within" in error, error
    assert result.stderr.splitlines()[-1] == (
        "  hint: the unit is pinned to the previous image and state.json says 'rolling-back'; inspect "
        "`journalctl -u svc.service`, then run `compute-units upgrade svc` again to finish the rollback"
    )
    # loud until fixed: state, status and doctor all say so; the unit is pinned to the previous image
    entry = svc_state(node)
    assert (entry["phase"], entry["current"], entry["target"]) == ("rolling-back", v1, v2), entry
    assert v1 in node.read_file("/etc/systemd/system/svc.service")
    status = cu(node, "status", "svc", "--json")
    assert status.returncode == ExitCode.DEGRADED, status.stdout + status.stderr
    row = json.loads(status.stdout)[0]
    assert (row["upgrade_phase"], row["upgrade_target"]) == ("rolling-back", v2), row
    assert row["problem"], row
    doctor = cu(node, "doctor", "--json")
    assert doctor.returncode != 0, doctor.stdout
    findings = {f["check"]: f for f in json.loads(doctor.stdout)["findings"]}
    assert findings["upgrade of svc"] == {
        "check": "upgrade of svc",
        "status": "fail",
        "message": f"unfinished: phase rolling-back, target {v2}",
        "fix": "compute-units upgrade svc (resumes, then commits or rolls back)",
        "fixed": False,
    }
    history = node.read_file(f"{STATE_DIR}/history.jsonl").splitlines()
    last = json.loads(history[-1])
    assert (last["kind"], last["result"], last["to"]) == ("upgrade", "failed", v2), last
    assert "; rollback also failed: " in last["reason"], last
    # the cause is fixed: the next upgrade of the service finishes the rollback, then has nothing to do
    node.run(["rm", "-f", held])
    finished = cu(node, "upgrade", "svc")
    assert finished.returncode == ExitCode.OK, finished.stdout + finished.stderr
    assert re.fullmatch(
        rf"svc: rolled-back {re.escape(v2)} -> {re.escape(v1)}\n"
        r"    target: finishing a rollback left unfinished earlier\n"
        r"    steps: rollback \d+ ms\n"
        rf"svc: unchanged {re.escape(v1)} -> {re.escape(v1)}\n"
        r"    target: the spec's image\n"
        r"    steps: pull \d+ ms, pin \d+ ms\n",
        finished.stdout,
    ), finished.stdout
    assert_settled_on(node, svc["v1"])
    (entry,) = [
        json.loads(line) for line in node.read_file(f"{STATE_DIR}/history.jsonl").splitlines()[len(history) :]
    ]
    assert (entry["result"], entry["from"], entry["to"]) == ("rolled-back", v2, v1), entry


def test_apply_refuses_a_spec_image_edit_of_a_pinned_service_and_upgrade_takes_it(
    node: Node, svc: dict[str, Image]
) -> None:
    on(node, svc, "v1")
    before = snapshot(node)
    node.write_file(f"{SPEC_DIR}/svc.yaml", svc_spec(svc["v2"].reference))
    try:
        result = cu(node, "apply")
        assert result.returncode == ExitCode.USAGE, result.stdout + result.stderr
        assert error_lines(result) == [
            f"compute-units: error: svc: the spec's image changed from {svc['v1'].reference} to "
            f"{svc['v2'].reference} since the last upgrade pinned {pinned(svc['v1'])}; nothing was written"
        ]
        assert snapshot(node) == before and active(node) == "active/running"
        upgraded = cu(node, "upgrade", "svc")  # the gated way to the edited image
        assert upgraded.returncode == ExitCode.OK, upgraded.stdout + upgraded.stderr
        assert_settled_on(node, svc["v2"])
    finally:
        node.write_file(f"{SPEC_DIR}/svc.yaml", svc_spec(svc["v1"].reference))
    on(node, svc, "v1")


def test_the_first_upgrade_since_apply_follows_the_spec_after_its_rollback(
    node: Node, svc: dict[str, Image]
) -> None:
    """A service `apply` deployed and no upgrade has pinned: its spec edited to v3 (unhealthy), the
    upgrade rolled back to v1; the spec fixed to v2, a plain `upgrade` goes to v2. Found by an
    operator trial: a fleet re-run after Ctrl-C left nova-compute on v1 while the play said ok (the
    rollback's v1 was kept as if an earlier upgrade had pinned it)."""
    spec = f"{SPEC_DIR}/first.yaml"
    v1, v2, v3 = pinned(svc["v1"]), pinned(svc["v2"]), pinned(svc["v3"])
    node.write_file(spec, svc_spec(svc["v1"].reference))
    try:
        applied = cu(node, "apply")
        assert applied.returncode == ExitCode.OK, applied.stdout + applied.stderr
        node.write_file(spec, svc_spec(svc["v3"].reference))
        failed = cu(node, "upgrade", "first")
        assert failed.returncode == ExitCode.ROLLED_BACK, failed.stdout + failed.stderr
        assert failed.stdout.splitlines()[0] == f"first: rolled-back {v3} -> {v1}", failed.stdout
        node.write_file(spec, svc_spec(svc["v2"].reference))
        again = cu(node, "upgrade", "first")
        assert again.returncode == ExitCode.OK, again.stdout + again.stderr
        assert again.stdout.splitlines()[:2] == [
            f"first: upgraded {v1} -> {v2}",
            "    target: the spec's image",
        ]
        entry = json.loads(node.read_file(f"{STATE_DIR}/state.json"))["services"]["first"]
        assert (entry["phase"], entry["current"]) == ("idle", v2), entry
        image = node.run(["podman", "inspect", "first", "--format", "{{.Image}}"]).stdout.strip()
        digest = node.run(["podman", "image", "inspect", image, "--format", "{{.Digest}}"]).stdout.strip()
        assert digest == svc["v2"].digest
    finally:
        cu(node, "stop", "first")
        node.run(["rm", "-f", spec])
        cu(node, "generate")
        node.systemctl("daemon-reload")
        node.systemctl("reset-failed", check=False)
