"""Issue #13 item 5: `ansible-playbook compute_units.fleet.rolling_upgrade` against 20 real nodes.

Twenty sandbox systemd nodes (tests/harness/fleet.py), each with its own systemd, podman and
services; three run the containerised libvirt with a KVM guest that the host polls over QMP for
the whole of every play. Ansible reaches them through the collection's nsenter connection; the
collection is built and installed as the other Ansible tests do. The tests of this module run in
order on one fleet: v1 → unreachable host halts everything → v2 all healthy → v3 with a bad
image on a host of the second batch → the fix, re-run.

The fleet is made of bookworm nodes, whatever CU_RELEASES says (the test is not parametrised by
release, so it neither runs twice nor skips): it proves the Ansible side (batches, halting, the
report, re-runs) on real nodes; each release's own behaviour is proven by the single-node suites.
Running it on both releases would double its 6-minute run.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from compute_units_dev.collection import BIN, install_collection
from compute_units_dev.fleet import Fleet, FleetNode, PlayRun, boot_fleet, parallel, play
from compute_units_dev.hostcheck import HostSnapshot

COUNT = 20
LIBVIRT_HOSTS = (1, 5, 12)  # the canary, one in the second batch, one in a later batch
BAD = "fleet04"  # in the second batch of serial [1, 5]


@pytest.fixture(scope="module")
def fleet(host_before: HostSnapshot) -> Iterator[Fleet]:
    f = boot_fleet("bookworm", COUNT, LIBVIRT_HOSTS)
    print(f"\nfleet: booted + images in {f.boot_s:.1f} s, deployed v1 in {f.deploy_s:.1f} s", file=sys.stderr)
    yield f
    f.shutdown()


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fleet")


def run(
    fleet: Fleet, workdir: Path, serial: list[int | str], *extra: str, gone: tuple[str, ...] = ()
) -> PlayRun:
    """One play, every guest polled over QMP throughout; asserts the guests never left `running`."""
    inventory = fleet.inventory(workdir / "inventory.ini", gone=gone)
    pids = {g.name + g.node.name: g.qemu_pid() for g in fleet.guests}
    with fleet.polling() as pollers:
        result = play(BIN, install_collection(), inventory, workdir, {"compute_units_serial": serial}, *extra)
    print(f"play serial={serial}: rc {result.rc}, {result.seconds:.1f} s", file=sys.stderr)
    for poller in pollers:
        assert len(poller.samples) > 10, poller.samples
        assert poller.not_running == [], poller.not_running[:5]
    assert {g.name + g.node.name: g.qemu_pid() for g in fleet.guests} == pids
    return result


def set_specs(fleet: Fleet, svc: str, libvirt: str, overrides: dict[str, str] | None = None) -> None:
    images = fleet.images

    def write(n: FleetNode) -> None:
        n.write_specs(images.svc[(overrides or {}).get(n.host, svc)], images.libvirt.references[libvirt])

    parallel(write, fleet.nodes)


def digests(fleet: Fleet) -> dict[str, dict[str, str]]:
    return dict(
        zip([n.host for n in fleet.nodes], parallel(FleetNode.running_digests, fleet.nodes), strict=True)
    )


def expected(fleet: Fleet, node: FleetNode, svc: str, libvirt: str) -> dict[str, str]:
    if node.libvirt:
        return {
            "nova-libvirt": fleet.images.libvirt.digests[libvirt],
            "nova-compute": fleet.images.svc_digests[svc],
        }
    return {name: fleet.images.svc_digests[svc] for name in ("nova-compute", "nova-network")}


def test_an_unreachable_host_halts_the_run_before_any_restart(fleet: Fleet, workdir: Path) -> None:
    set_specs(fleet, "v2", "v2")
    result = run(fleet, workdir, [1, 5], gone=("fleet21",))
    assert result.rc != 0, result.output
    assert result.results() == {
        **{n.host: (None, "not reached") for n in fleet.nodes},
        "fleet21": (None, "unreachable"),
    }
    message = result.host("fleet21")["message"]
    assert message.startswith("Task failed: no process ") and message.endswith(
        " to enter: is the node running?"
    )
    # 1 host in 21 is 4.8 % > max_fail_percentage 0 of phase 1: nothing pulled, nothing restarted
    assert all(
        d == expected(fleet, n, "v1", "v1") for n, d in zip(fleet.nodes, digests(fleet).values(), strict=True)
    )


def test_all_healthy_every_node_on_the_target(fleet: Fleet, workdir: Path) -> None:
    result = run(fleet, workdir, [1, "50%"])
    assert result.rc == 0, result.output
    batches = {n.host: 1 if i == 0 else 2 if i <= 10 else 3 for i, n in enumerate(fleet.nodes)}
    assert result.results() == {host: (batch, "upgraded") for host, batch in batches.items()}
    assert digests(fleet) == {n.host: expected(fleet, n, "v2", "v2") for n in fleet.nodes}
    for n in fleet.nodes:
        services = {s["service"]: s for s in result.host(n.host)["services"]}
        if n.libvirt:
            assert services["nova-libvirt"]["guests"]["kept"] == 1
            assert services["nova-libvirt"]["guests"]["before"] == 1
            assert services["nova-libvirt"]["guests"]["problems"] == []
        assert {s["result"] for s in services.values()} == {"upgraded"}
    assert result.report["summary"] == {"upgraded": COUNT}
    assert "FLEET REPORT" in result.output


def test_a_bad_image_in_the_second_batch_rolls_back_and_halts(fleet: Fleet, workdir: Path) -> None:
    set_specs(fleet, "v3", "v1", overrides={BAD: "bad"})
    result = run(fleet, workdir, [1, 5])
    assert result.rc == 2, result.output
    hosts = [n.host for n in fleet.nodes]
    want: dict[str, tuple[int | None, str]] = {hosts[0]: (1, "upgraded")}
    want |= {h: (2, "upgraded") for h in hosts[1:6]}
    want |= {BAD: (2, "rolled back")}
    want |= {h: (None, "not reached") for h in hosts[6:]}
    assert result.results() == want
    bad = result.host(BAD)
    assert bad["message"].startswith("compute-units exited 5 (upgrade failed and was rolled back): ")
    failed = [s for s in bad["services"] if s["result"] == "rolled-back"]
    assert [(s["service"], s["failed_step"]) for s in failed] == [("nova-compute", "health")]
    now = digests(fleet)
    # the bad host runs its previous images again; later batches were never touched
    assert now[BAD]["nova-compute"] == fleet.images.svc_digests["v2"]
    for n in fleet.nodes[6:]:
        assert now[n.host] == expected(fleet, n, "v2", "v2"), n.host
    for n in fleet.nodes[:6]:
        if n.host != BAD:
            assert now[n.host] == expected(fleet, n, "v3", "v1"), n.host
    assert result.report["summary"] == {"not reached": COUNT - 6, "rolled back": 1, "upgraded": 5}


def test_a_rerun_after_the_fix_converges(fleet: Fleet, workdir: Path) -> None:
    set_specs(fleet, "v3", "v1")
    result = run(fleet, workdir, [1, 5])
    assert result.rc == 0, result.output
    hosts = [n.host for n in fleet.nodes]
    batch = {h: 1 if i == 0 else (i - 1) // 5 + 2 for i, h in enumerate(hosts)}
    done = set(hosts[:6]) - {BAD}
    assert result.results() == {h: (batch[h], "unchanged" if h in done else "upgraded") for h in hosts}
    for host in done:
        recap = next(
            line for line in result.output.splitlines() if line.startswith(f"{host} ") and "ok=" in line
        )
        assert "changed=0 " in recap, recap
    assert digests(fleet) == {n.host: expected(fleet, n, "v3", "v1") for n in fleet.nodes}
