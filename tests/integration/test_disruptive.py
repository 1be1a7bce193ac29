"""Disruptive services on a real node: restart (lean and spec paths), apply and upgrade refuse to
restart a running `disruptive:` service without --allow-disruptive, and restart nothing."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from compute_units_dev.node import Node
from tests.harness.fixtures import Image, cu

REASON = "its restart cuts every VM's network"
NAMES = ("ovsdb-server", "ovs-vswitchd")
REFUSED_HINT = "  hint: pass --allow-disruptive to {verb} anyway (the guests will notice)"


def specs(images: dict[str, Image]) -> dict[str, str]:
    v1 = images["v1"].reference
    return {
        "ovsdb-server": f"description: ovsdb-server (stand-in)\nimage: {v1}\nhost_namespaces: [network]\n",
        "ovs-vswitchd": f"description: ovs-vswitchd (stand-in)\nimage: {v1}\nhost_namespaces: [network]\n"
        f'requires: [ovsdb-server]\ndisruptive: "{REASON}"\n',
    }


def invocations(node: Node) -> dict[str, str]:
    return {n: node.show(f"{n}.service", "InvocationID")["InvocationID"] for n in NAMES}


@pytest.fixture
def ovs(node: Node, svc_images: dict[str, Image]) -> Iterator[dict[str, str]]:
    written = specs(svc_images)
    for name, text in written.items():
        node.write_file(f"/etc/compute-units/services/{name}.yaml", text)
    applied = cu(node, "apply", "--settle", "0")
    assert applied.returncode == 0, applied.stderr
    yield written
    cu(node, "stop")
    node.run(["sh", "-c", "rm -f /etc/compute-units/services/*.yaml /var/lib/compute-units/state.json"])
    node.run(["sh", "-c", "rm -f /etc/systemd/system/ovs*.service /etc/systemd/system/compute-node.target"])
    node.systemctl("daemon-reload")
    node.systemctl("reset-failed", check=False)


def test_restart_refuses_a_running_disruptive_service(node: Node, ovs: dict[str, str]) -> None:
    before = invocations(node)
    lean = cu(node, "restart", "ovs-vswitchd")  # the lean path: the reason comes from the unit
    assert lean.returncode == 2
    assert lean.stdout == ""
    assert lean.stderr.splitlines() == [
        f"compute-units: error: refusing to restart: ovs-vswitchd is disruptive ({REASON}); nothing was changed",
        REFUSED_HINT.format(verb="restart"),
    ]
    dragged = cu(node, "restart", "ovsdb-server")
    assert dragged.returncode == 2
    assert dragged.stderr.splitlines()[0] == (
        f"compute-units: error: refusing to restart: ovs-vswitchd is disruptive ({REASON}) and restarts "
        "with ovsdb-server; nothing was changed"
    )
    every = cu(node, "restart", "--json")  # no names: the spec path
    assert every.returncode == 2
    assert json.loads(every.stdout)["error"] == (
        f"refusing to restart: ovs-vswitchd is disruptive ({REASON}); nothing was changed"
    )
    assert invocations(node) == before

    allowed = cu(node, "restart", "ovsdb-server", "--allow-disruptive", "--settle", "0")
    assert allowed.returncode == 0, allowed.stderr
    assert allowed.stdout.splitlines() == [
        "ovsdb-server.service: restart ok (active/running)",
        "ovs-vswitchd.service: restart ok (active/running)",
    ]
    after = invocations(node)
    assert after["ovsdb-server"] != before["ovsdb-server"] and after["ovs-vswitchd"] != before["ovs-vswitchd"]

    assert cu(node, "stop", "ovs-vswitchd").returncode == 0  # not gated; a stopped one only starts
    started = cu(node, "restart", "ovs-vswitchd", "--settle", "0")
    assert started.returncode == 0, started.stderr


def test_status_and_list_show_it(node: Node, ovs: dict[str, str]) -> None:
    rows = {r["service"]: r for r in json.loads(cu(node, "status", "--json").stdout)}
    assert (rows["ovs-vswitchd"]["disruptive"], rows["ovsdb-server"]["disruptive"]) == (REASON, None)
    table = cu(node, "status").stdout.splitlines()
    assert [line.split()[0] + " " + line.split()[-1] for line in table[1:]] == [
        "ovsdb-server.service -",
        "ovs-vswitchd.service yes",
    ]


def test_apply_and_upgrade_refuse_before_they_change_anything(
    node: Node, ovs: dict[str, str], svc_images: dict[str, Image]
) -> None:
    before = invocations(node)
    unit = node.run(["cat", "/etc/systemd/system/ovsdb-server.service"]).stdout
    node.write_file(
        "/etc/compute-units/services/ovsdb-server.yaml",
        ovs["ovsdb-server"].replace("(stand-in)", "(stand-in, edited)"),
    )
    refused = cu(node, "apply")
    assert refused.returncode == 2
    assert refused.stderr.splitlines() == [
        f"compute-units: error: refusing to apply: ovs-vswitchd is disruptive ({REASON}) and restarts "
        "with ovsdb-server; nothing was changed",
        REFUSED_HINT.format(verb="apply"),
    ]
    assert node.run(["cat", "/etc/systemd/system/ovsdb-server.service"]).stdout == unit

    upgrade = cu(node, "upgrade", "ovs-vswitchd", "--image", svc_images["v2"].reference, "--json")
    assert upgrade.returncode == 2
    report = json.loads(upgrade.stdout)
    assert report["error"] == (
        f"refusing to upgrade ovs-vswitchd: ovs-vswitchd is disruptive ({REASON}); nothing was changed"
    )
    assert [(s["result"], s["failed_step"]) for s in report["services"]] == [("refused", "preflight")]
    assert invocations(node) == before

    applied = cu(node, "apply", "--allow-disruptive", "--settle", "0")
    assert applied.returncode == 0, applied.stderr
    upgraded = cu(
        node, "upgrade", "ovs-vswitchd", "--image", svc_images["v2"].reference, "--allow-disruptive"
    )
    assert upgraded.returncode == 0, upgraded.stderr
    assert upgraded.stdout.startswith("ovs-vswitchd: upgraded ")
