"""The upgrade engine with fakes of every effect: each step, crash point, signal, resume and rollback
path in milliseconds. The sandbox-node tests (tests/integration) prove the same with real systemd,
podman, a registry and a KVM guest."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from compute_units import spec
from compute_units.disruptive import DisruptiveRefused
from compute_units.errors import ComputeUnitsError
from compute_units.host import Process
from compute_units.model import Service, ServiceSet, Socket
from compute_units.preflight import PreflightRefused
from compute_units.state import ServiceState
from compute_units.targets import choose_target, rollback_target
from compute_units.upgrade import (
    PullFailed,
    RolledBack,
    UpgradeInterrupted,
    Upgrader,
)
from tests.unit.fakes import Crash, FakeStore, FakeWorld, render_pin

REG = "127.0.0.1:5000/cu/svc"
D1, D2, D3 = (f"sha256:{c * 64}" for c in "123")
V1, V2, V3 = f"{REG}:v1@{D1}", f"{REG}:v2@{D2}", f"{REG}:v3@{D3}"
STEPS = ("pull", "preflight", "record", "pin", "stop-container", "restart", "health", "post-check", "commit")


def service(keeps_vms: bool = False, image: str = f"{REG}:v1") -> ServiceSet:
    text = f"""
image: {image}
host_namespaces: [pid, network, cgroup]
mounts: [/sys/fs/cgroup:/sys/fs/cgroup]
health: {{command: [check], timeout: 2s, start_period: 3s}}
keeps_vms: {"true" if keeps_vms else "false"}
"""
    parsed, problems = spec.parse_text(text, Path("/specs/svc.yaml"))
    assert parsed is not None, problems
    return ServiceSet((parsed,))


@pytest.fixture
def world() -> FakeWorld:
    w = FakeWorld(registry={f"{REG}:v1": D1, f"{REG}:v2": D2, f"{REG}:v3": D3}, images={D1})
    w.running["svc.service"] = V1
    return w


def engine(world: FakeWorld, store: FakeStore, services: ServiceSet) -> Upgrader:
    return Upgrader(world.effects(store), services, render_pin)


def svc(services: ServiceSet) -> Service:
    return services.services[0]


def test_upgrade_pulls_first_pins_restarts_gates_and_commits(world: FakeWorld) -> None:
    store, services = FakeStore(world), service()
    report = engine(world, store, services).upgrade(svc(services), f"{REG}:v2")
    assert report.result == "upgraded"
    assert (report.source, report.target) == (V1, V2)
    assert [s.name for s in report.steps] == [
        "pull",
        "preflight",
        "record",
        "pin",
        "restart",
        "health",
        "post-check",
        "commit",
    ]
    assert (
        world.log.index(f"pull {REG}:v2")
        < world.log.index("stop 4242")
        < world.log.index("restart svc.service")
    )
    assert report.steps[4].detail == "old container (PID 4242) exited 50 ms after SIGTERM"
    assert world.running["svc.service"] == V2
    entry = store.load().get("svc")
    assert (entry.phase, entry.current, entry.spec_image) == ("idle", V2, f"{REG}:v1")
    assert [(e["kind"], e["result"], e["to"]) for e in store.entries] == [("upgrade", "upgraded", V2)]
    assert [line for line in world.log if line.startswith("write")] == ["write svc.service"]


def test_same_digest_is_unchanged_and_restarts_nothing(world: FakeWorld) -> None:
    store, services = FakeStore(world), service()
    report = engine(world, store, services).upgrade(svc(services))
    assert report.result == "unchanged"
    assert not [line for line in world.log if line.startswith(("restart", "stop"))]
    assert store.load().get("svc").current == V1


def test_a_failed_pull_changes_nothing(world: FakeWorld) -> None:
    store, services = FakeStore(world), service()
    world.pull_error = "Error: connection refused"
    with pytest.raises(PullFailed) as failed:
        engine(world, store, services).upgrade(svc(services), f"{REG}:v2")
    assert failed.value.message == f"cannot pull {REG}:v2: Error: connection refused; nothing was changed"
    assert store.saved is None and world.running["svc.service"] == V1


def test_an_unhealthy_image_is_rolled_back_with_the_real_elapsed_time(world: FakeWorld) -> None:
    store, services = FakeStore(world), service()
    world.bad_digests.add(D3)
    with pytest.raises(RolledBack) as failed:
        engine(world, store, services).upgrade(svc(services), f"{REG}:v3")
    assert failed.value.exit_code == 5
    message = failed.value.message
    assert message.startswith(
        f"svc: upgrade to {V3} failed at health: svc: health check ['check'] did not pass within 5."
    )
    assert message.endswith(f" s (start_period 3 s + timeout 2 s); rolled back to {V1}")
    assert world.running["svc.service"] == V1
    assert store.load().get("svc").phase == "idle"
    assert store.entries[-1]["result"] == "rolled-back"


@pytest.mark.parametrize("point", STEPS)
def test_kill_9_at_every_point_then_the_same_command_converges(world: FakeWorld, point: str) -> None:
    store, services = FakeStore(world), service()
    world.crash_at = point
    with pytest.raises(Crash):
        engine(world, store, services).upgrade(svc(services), f"{REG}:v2")
    world.crash_at = None
    report = engine(world, store, services).upgrade(svc(services), f"{REG}:v2")
    assert report.result in ("upgraded", "unchanged")
    entry = store.load().get("svc")
    assert (entry.phase, entry.current) == ("idle", V2)
    assert world.running["svc.service"] == V2


@pytest.mark.parametrize("point", ["pin", "stop-container", "restart", "health"])
def test_a_signal_during_the_upgrade_rolls_back_and_says_so(world: FakeWorld, point: str) -> None:
    store, services = FakeStore(world), service()
    world.signal_at = point
    with pytest.raises(UpgradeInterrupted) as stopped:
        engine(world, store, services).upgrade(svc(services), f"{REG}:v2")
    assert stopped.value.exit_code == 6
    assert stopped.value.message == (
        f"svc: interrupted by SIGINT during the upgrade to {V2}; rolled back to {V1}"
    )
    assert world.running["svc.service"] == V1
    assert store.load().get("svc").phase == "idle"
    assert store.entries[-1]["result"] == "interrupted"


@pytest.mark.parametrize("point", ["pull", "preflight"])
def test_a_signal_before_anything_changed_stops_there(world: FakeWorld, point: str) -> None:
    store, services = FakeStore(world), service()
    world.signal_at = point
    with pytest.raises(UpgradeInterrupted) as stopped:
        engine(world, store, services).upgrade(svc(services), f"{REG}:v2")
    assert stopped.value.message.endswith("nothing was changed")
    assert world.running["svc.service"] == V1 and store.load().get("svc").current is None


def test_a_signal_after_verification_commits(world: FakeWorld) -> None:
    store, services = FakeStore(world), service()
    world.signal_at = "post-check"
    with pytest.raises(UpgradeInterrupted) as stopped:
        engine(world, store, services).upgrade(svc(services), f"{REG}:v2")
    assert stopped.value.message == (
        f"svc: interrupted by SIGINT after the upgrade was verified: committed {V2}; nothing else was started"
    )
    assert store.load().get("svc").current == V2


def test_a_full_disk_after_the_pin_rolls_back_without_a_traceback(world: FakeWorld) -> None:
    store, services = FakeStore(world), service()
    world.state_write_error_after = 2  # record, pinned: then ENOSPC
    with pytest.raises(RolledBack) as failed:
        engine(world, store, services).upgrade(svc(services), f"{REG}:v2")
    full = "No space left on device (/var/lib/compute-units/state.json)"
    # the disk stays full: the rollback's own writes fail too, and the message says so
    assert failed.value.message == (
        f"svc: upgrade to {V2} failed at restart: {full}; rolled back to {V1}; state.json not updated: {full}"
    )
    assert world.running["svc.service"] == V1


@pytest.mark.parametrize(
    ("writes", "step"), [(2, "restart"), (3, "health"), (4, "post-check"), (5, "commit")]
)
def test_a_full_disk_at_any_step_then_the_same_command_runs_the_target(
    world: FakeWorld, writes: int, step: str
) -> None:
    """The rollback re-pins the previous image but cannot record it: state.json still says the
    upgrade reached a later phase. The re-run must pin the target again, not restart the old pin."""
    store, services = FakeStore(world), service()
    world.state_write_error_after = writes
    with pytest.raises(RolledBack) as failed:
        engine(world, store, services).upgrade(svc(services), f"{REG}:v2")
    assert f" failed at {step}: " in failed.value.message
    assert world.running["svc.service"] == V1
    world.state_write_error_after = None
    report = engine(world, store, services).upgrade(svc(services), f"{REG}:v2")
    assert (report.result, report.note) == ("upgraded", "resuming the interrupted upgrade")
    assert world.running["svc.service"] == V2
    entry = store.load().get("svc")
    assert (entry.phase, entry.current) == ("idle", V2)


@pytest.mark.parametrize(
    ("outcome", "detail"),
    [
        ("running", "old container (PID 4242) not stopped by SIGTERM within 10s: left to ExecStop"),
        ("absent", "old container (PID 4242) was already gone: left to ExecStop"),
    ],
)
def test_the_restart_says_how_the_old_container_stopped(world: FakeWorld, outcome: str, detail: str) -> None:
    store, services = FakeStore(world), service()
    world.stop_outcome = outcome  # type: ignore[assignment]
    report = engine(world, store, services).upgrade(svc(services), f"{REG}:v2")
    assert report.steps[4].detail == detail


def test_a_guest_that_is_paused_afterwards_fails_the_post_check(world: FakeWorld) -> None:
    store, services = FakeStore(world), service(keeps_vms=True)
    world.qemu = [Process(77, "qemu-system-x86", "/machine.slice/m.scope", 5)]
    world.guests = {"tiny": "running"}
    world.guests_after_restart = {"tiny": "paused"}
    with pytest.raises(RolledBack) as failed:
        engine(world, store, services).upgrade(svc(services), f"{REG}:v2")
    assert "failed at post-check: guest tiny is paused (was running)" in failed.value.message
    rollback = engine(world, store, services).reports  # a new engine has none; the report is in history
    assert rollback == []
    assert store.entries[-1]["vm_check"] == ["guest tiny is paused (was running)"]


def test_the_report_gives_the_guests_kept_figure(world: FakeWorld) -> None:
    store, services = FakeStore(world), service(keeps_vms=True)
    world.qemu = [Process(77, "qemu-system-x86", "/machine.slice/m.scope", 5)]
    world.guests = {"tiny": "running", "idle": "shut off"}
    report = engine(world, store, services).upgrade(svc(services), f"{REG}:v2")
    assert report.as_dict()["guests"] == {"running_before": 1, "running_after": 1, "kept": 1}
    world.guests_after_restart = {"tiny": "paused", "idle": "shut off"}
    with pytest.raises(RolledBack):
        engine(world, store, services).upgrade(svc(services), f"{REG}:v3")
    assert store.entries[-1]["guests"] == {"running_before": 1, "running_after": 0, "kept": 1}
    assert engine(world, store, service()).upgrade(svc(service()), f"{REG}:v1").as_dict()["guests"] is None


def test_a_rollback_is_post_checked_too(world: FakeWorld) -> None:
    store, services = FakeStore(world), service(keeps_vms=True)
    world.qemu = [Process(77, "qemu-system-x86", "/machine.slice/m.scope", 5)]
    world.guests = {"tiny": "running"}
    world.bad_digests.add(D3)
    up = engine(world, store, services)
    with pytest.raises(RolledBack):
        up.upgrade(svc(services), f"{REG}:v3")
    rollback_step = up.reports[0].steps[-1]
    assert (rollback_step.name, rollback_step.detail) == ("rollback", "post-check: ok")


def test_preflight_refuses_without_machined_guests(world: FakeWorld) -> None:
    store, services = FakeStore(world), service(keeps_vms=True)
    world.qemu = [Process(77, "qemu-system-x86", "/system.slice/svc.service/x", 5)]
    with pytest.raises(PreflightRefused) as refused:
        engine(world, store, services).upgrade(svc(services), f"{REG}:v2")
    assert "qemu PID 77 is inside svc.service's cgroup and would be killed with it" in refused.value.message
    assert store.saved is None


def test_preflight_names_the_cause_on_cgroup2_without_controllers(world: FakeWorld) -> None:
    store, services = FakeStore(world), service(keeps_vms=True)
    world.qemu = [Process(77, "qemu-system-x86", "/system.slice/svc.service/libpod-payload-1", 5)]
    world.cgroup2_controllers = []
    with pytest.raises(PreflightRefused) as refused:
        engine(world, store, services).upgrade(svc(services), f"{REG}:v2")
    assert refused.value.message == (
        "svc: refusing to restart: qemu PID 77 is inside svc.service's cgroup and would be killed with "
        "it (this host's cgroup2 offers no controllers, so libvirt gives guests no machine scope: "
        "compute-units doctor); nothing was changed"
    )


def test_a_reboot_mid_upgrade_settles_on_the_committed_image(world: FakeWorld) -> None:
    store, services = FakeStore(world), service()
    world.crash_at = "restart"
    with pytest.raises(Crash):
        engine(world, store, services).upgrade(svc(services), f"{REG}:v2")
    world.crash_at, world.boot = None, "boot-2"
    world.running["svc.service"] = V1  # the generator booted the declared image
    report = engine(world, store, services).upgrade(svc(services), f"{REG}:v1")
    settled = store.entries[0]
    assert settled["result"] == "rolled-back"
    assert settled["reason"] == (
        "the node rebooted during the upgrade (phase restarted); it came up on the committed image"
    )
    assert report.result == "unchanged" and store.load().get("svc").current == V1


def test_a_reboot_after_the_health_gate_keeps_the_target(world: FakeWorld) -> None:
    entry = ServiceState(current=V1, phase="healthy", target=V2, previous=V1, boot_id="boot-1")
    assert entry.boot_pin("boot-2") == V2
    entry.phase = "restarted"
    assert entry.boot_pin("boot-2") == V1
    assert entry.boot_pin("boot-1") == V2  # same boot: the run in flight needs its target


def test_upgrade_without_image_keeps_a_pin_from_image_until_the_spec_changes() -> None:
    services = service()
    entry = ServiceState(current=V2, spec_image=f"{REG}:v1")
    assert choose_target(svc(services), entry, None) == (
        V2,
        f"kept {V2}, pinned by an earlier upgrade (the spec names {REG}:v1; edit the spec or pass --image to move)",
    )
    edited = service(image=f"{REG}:v3")
    assert choose_target(svc(edited), entry, None) == (
        f"{REG}:v3",
        f"the spec's image (changed from {REG}:v1 since the last upgrade)",
    )
    assert choose_target(svc(services), ServiceState(current=V1), None)[0] == f"{REG}:v1"


def test_rollback_twice_goes_further_back_not_back_and_forth() -> None:
    history = [
        {"kind": "upgrade", "result": "upgraded", "from": V1, "to": V2, "time": "t1"},
        {"kind": "upgrade", "result": "upgraded", "from": V2, "to": V3, "time": "t2"},
    ]
    assert rollback_target(history, V3) == (V2, "t2")
    history.append({"kind": "rollback", "result": "rolled-back", "from": V3, "to": V2, "undoes": "t2"})
    assert rollback_target(history, V2) == (V1, "t1")
    history.append({"kind": "rollback", "result": "rolled-back", "from": V2, "to": V1, "undoes": "t1"})
    assert rollback_target(history, V1) is None


def test_a_prepulled_target_skips_the_registry(world: FakeWorld) -> None:
    store, services = FakeStore(world), service()
    up = engine(world, store, services)
    assert up.prepull(svc(services), f"{REG}:v2") == (V2, True, f"--image {REG}:v2")
    world.registry[f"{REG}:v2"] = D3  # the tag moved meanwhile: the fleet keeps what it pulled
    world.log.clear()
    report = up.upgrade(svc(services), f"{REG}:v2")
    assert report.target == V2 and report.steps[0].detail == "pre-pulled by `compute-units pull`"
    assert not [line for line in world.log if line.startswith("pull")]


def with_socket(services: ServiceSet) -> ServiceSet:
    return ServiceSet((replace(svc(services), sockets=(Socket("svc.socket", port=80),)),))


def with_sockets(service: Service, pin: str | None) -> dict[str, str]:
    return {**render_pin(service, pin), **{name: f"socket unit {name}" for name in service.socket_units}}


def test_the_pin_writes_the_socket_units_and_the_restart_leaves_them_alone(world: FakeWorld) -> None:
    store, services = FakeStore(world), with_socket(service())
    upgrader = Upgrader(world.effects(store), services, with_sockets)
    assert upgrader.upgrade(svc(services), f"{REG}:v2").result == "upgraded"
    assert "write svc-svc.socket" in world.log
    assert [line for line in world.log if "svc-svc.socket" in line] == ["write svc-svc.socket"]


def test_a_socket_found_closed_after_the_restart_is_never_committed(world: FakeWorld) -> None:
    store, services = FakeStore(world), with_socket(service())
    world.closed_sockets.add("svc-svc.socket")  # and it stays closed: the rollback cannot fix it either
    upgrader = Upgrader(world.effects(store), services, with_sockets)
    with pytest.raises(ComputeUnitsError) as failed:
        upgrader.upgrade(svc(services), f"{REG}:v2")
    assert failed.value.message == (
        f"svc: rollback to {V1} failed: svc-svc.socket is inactive/dead: svc's socket is not held"
    )
    assert store.entries[-1]["reason"] == (
        "svc-svc.socket is inactive/dead: svc's socket is not held; rollback also failed: "
        "svc-svc.socket is inactive/dead: svc's socket is not held"
    )


def test_history_entries_have_the_keys_state_py_documents(world: FakeWorld) -> None:
    from compute_units import state

    store, services = FakeStore(world), service()
    engine(world, store, services).upgrade(svc(services), f"{REG}:v2")
    doc = (state.__doc__ or "").split("appended:", 1)[1].split("(", 1)[0]
    assert sorted(store.entries[0]) == sorted(k.strip() for k in doc.split(","))


# --- disruptive services: upgrade and rollback need --allow-disruptive ----------------------------

OVS = "127.0.0.1:5000/cu/ovs"


def ovs_pair(world: FakeWorld, reason: str = "true") -> ServiceSet:
    """ovsdb-server and ovs-vswitchd (requires it, disruptive), both running v1."""
    services = []
    for name, extra in (
        ("ovsdb-server", ""),
        ("ovs-vswitchd", f"requires: [ovsdb-server]\ndisruptive: {reason}\n"),
    ):
        parsed, problems = spec.parse_text(f"image: {OVS}:v1\n{extra}", Path(f"/specs/{name}.yaml"))
        assert parsed is not None, problems
        services.append(parsed)
        world.running[f"{name}.service"] = f"{OVS}:v1@{D1}"
    world.registry.update({f"{OVS}:v1": D1, f"{OVS}:v2": D2})
    return ServiceSet(tuple(services))


def restarts(world: FakeWorld) -> list[str]:
    return [line for line in world.log if line.startswith(("restart", "stop"))]


def test_a_disruptive_service_is_refused_before_anything_changes(world: FakeWorld) -> None:
    store, services = FakeStore(world), ovs_pair(world, '"its restart cuts every VM\'s network"')
    vswitchd = services.get("ovs-vswitchd")
    assert vswitchd is not None
    with pytest.raises(DisruptiveRefused) as refused:
        engine(world, store, services).upgrade(vswitchd, f"{OVS}:v2")
    assert refused.value.exit_code == 2
    assert refused.value.message == (
        "refusing to upgrade ovs-vswitchd: ovs-vswitchd is disruptive (its restart cuts every VM's "
        "network); nothing was changed"
    )
    assert refused.value.hint == "pass --allow-disruptive to upgrade anyway (the guests will notice)"
    assert store.saved is None and not restarts(world)
    assert world.running["ovs-vswitchd.service"] == f"{OVS}:v1@{D1}"


def test_the_refusal_is_reported_as_refused_at_preflight(world: FakeWorld) -> None:
    store, services = FakeStore(world), ovs_pair(world)
    upgrader = engine(world, store, services)
    with pytest.raises(DisruptiveRefused):
        upgrader.upgrade(services.services[1], f"{OVS}:v2")
    report = upgrader.reports[0]
    assert (report.result, report.failed_step) == ("refused", "preflight")
    assert report.reason == (
        "refusing to upgrade ovs-vswitchd: ovs-vswitchd is disruptive (its spec marks it disruptive); "
        "nothing was changed"
    )


def test_upgrading_what_a_disruptive_service_requires_is_refused_too(world: FakeWorld) -> None:
    store, services = FakeStore(world), ovs_pair(world)
    with pytest.raises(DisruptiveRefused) as refused:
        engine(world, store, services).upgrade(services.services[0], f"{OVS}:v2")
    assert refused.value.message == (
        "refusing to upgrade ovsdb-server: ovs-vswitchd is disruptive (its spec marks it disruptive) "
        "and restarts with ovsdb-server; nothing was changed"
    )
    assert store.saved is None and not restarts(world)


def test_allow_disruptive_upgrades_and_restarts_the_dependent(world: FakeWorld) -> None:
    store, services = FakeStore(world), ovs_pair(world)
    upgrader = Upgrader(world.effects(store), services, render_pin, allow_disruptive=True)
    report = upgrader.upgrade(services.services[0], f"{OVS}:v2")
    assert report.result == "upgraded"
    assert "restart ovsdb-server.service" in world.log and "restart ovs-vswitchd.service" in world.log


def test_no_restart_no_refusal_unchanged_digest_or_stopped_service(world: FakeWorld) -> None:
    store, services = FakeStore(world), ovs_pair(world)
    vswitchd = services.services[1]
    assert engine(world, store, services).upgrade(vswitchd).result == "unchanged"  # v1 runs already
    del world.running["ovs-vswitchd.service"]  # stopped: the upgrade only starts it
    assert engine(world, store, services).upgrade(vswitchd, f"{OVS}:v2").result == "upgraded"


def test_a_rollback_of_a_disruptive_service_is_refused_without_consent(world: FakeWorld) -> None:
    store, services = FakeStore(world), ovs_pair(world)
    vswitchd = services.services[1]
    Upgrader(world.effects(store), services, render_pin, allow_disruptive=True).upgrade(vswitchd, f"{OVS}:v2")
    with pytest.raises(DisruptiveRefused) as refused:
        engine(world, store, services).upgrade(vswitchd, f"{OVS}:v1@{D1}", kind="rollback")
    assert refused.value.message.startswith("refusing to rollback ovs-vswitchd: ovs-vswitchd is disruptive")
    assert world.running["ovs-vswitchd.service"] == f"{OVS}:v2@{D2}"


def test_a_pull_of_a_tag_that_resolves_to_what_runs_or_was_pulled_is_nothing_new(world: FakeWorld) -> None:
    store, services = FakeStore(world), service()
    up = engine(world, store, services)
    assert up.prepull(svc(services)) == (f"{REG}:v1@{D1}", True, "the spec's image")  # not pinned yet
    assert up.prepull(svc(services)) == (f"{REG}:v1@{D1}", False, "the spec's image")  # pulled before
    up.upgrade(svc(services), f"{REG}:v2")
    assert up.prepull(svc(services), f"{REG}:v2")[1] is False  # runs it
    assert up.prepull(svc(services), f"{REG}:v3")[1] is True


def unfinished_upgrade_to_v2(world: FakeWorld, store: FakeStore, services: ServiceSet) -> None:
    """An upgrade to v2 killed after its health gate: state.json says 'healthy', v2 runs."""
    world.crash_at = "health"
    with pytest.raises(Crash):
        engine(world, store, services).upgrade(svc(services), f"{REG}:v2")
    world.crash_at = None
    assert (store.load().get("svc").phase, world.running["svc.service"]) == ("healthy", V2)


def test_another_image_during_an_unfinished_upgrade_rolls_that_back_first(world: FakeWorld) -> None:
    store, services = FakeStore(world), service()
    unfinished_upgrade_to_v2(world, store, services)
    up = engine(world, store, services)
    report = up.upgrade(svc(services), f"{REG}:v3")
    first, second = up.reports
    assert (first.kind, first.result, first.source, first.target) == ("rollback", "rolled-back", V2, V1)
    assert first.reason == f"--image {REG}:v3 during the unfinished upgrade to {V2}"
    assert second is report and (report.result, report.source, report.target) == ("upgraded", V1, V3)
    assert world.running["svc.service"] == V3
    assert (store.load().get("svc").phase, store.load().get("svc").current) == ("idle", V3)


@pytest.mark.parametrize("image", [f"{REG}:v2", V2, f"{REG}@{D2}"])
def test_the_unfinished_upgrades_own_target_resumes_it(world: FakeWorld, image: str) -> None:
    store, services = FakeStore(world), service()
    unfinished_upgrade_to_v2(world, store, services)
    up = engine(world, store, services)
    report = up.upgrade(svc(services), image)
    assert len(up.reports) == 1
    assert (report.result, report.note, report.target) == ("upgraded", "resuming the interrupted upgrade", V2)
    assert store.load().get("svc").current == V2


def test_a_rollback_during_an_unfinished_upgrade_rolls_that_upgrade_back(world: FakeWorld) -> None:
    store, services = FakeStore(world), service()
    unfinished_upgrade_to_v2(world, store, services)
    up = engine(world, store, services)
    report = up.upgrade(svc(services), "ignored: the unfinished upgrade is what is undone", kind="rollback")
    assert len(up.reports) == 1
    assert (report.kind, report.result, report.target, report.undoes) == ("rollback", "rolled-back", V1, None)
    assert report.reason == report.note == f"`rollback` during the unfinished upgrade to {V2}"
    assert world.running["svc.service"] == V1
    assert (store.load().get("svc").phase, store.load().get("svc").current) == ("idle", V1)
    assert store.entries[-1]["kind"] == "rollback"


def virtlogd_and_virtqemud(world: FakeWorld) -> ServiceSet:
    """nova-virtlogd and nova-virtqemud (requires it, keeps_vms), both running v1."""
    parsed = []
    for name, extra in (
        ("nova-virtlogd", ""),
        ("nova-virtqemud", "requires: [nova-virtlogd]\nkeeps_vms: true\n"),
    ):
        text = f"image: {REG}:v1\nhost_namespaces: [pid, network, cgroup]\nmounts: [/sys/fs/cgroup:/sys/fs/cgroup]\n{extra}"
        one, problems = spec.parse_text(text, Path(f"/specs/{name}.yaml"))
        assert one is not None, problems
        parsed.append(one)
        world.running[f"{name}.service"] = V1
    return ServiceSet(tuple(parsed))


def test_upgrading_what_a_vm_keeper_requires_checks_the_guests_in_the_keeper(world: FakeWorld) -> None:
    """nova-virtlogd's restart restarts nova-virtqemud: its guests are snapshotted and compared."""
    store, services = FakeStore(world), virtlogd_and_virtqemud(world)
    world.qemu = [Process(77, "qemu-system-x86", "/machine.slice/m.scope", 5)]
    world.guests = {"tiny": "running"}
    world.guests_after_restart = {"tiny": "paused"}
    virtlogd = services.services[0]
    with pytest.raises(RolledBack) as failed:
        engine(world, store, services).upgrade(virtlogd, f"{REG}:v2")
    assert "nova-virtlogd: upgrade to" in failed.value.message
    assert "failed at post-check: guest tiny is paused (was running)" in failed.value.message
    assert store.entries[-1]["vm_check"] == ["guest tiny is paused (was running)"]
    assert ("exec", "nova-virtqemud") in [tuple(line.split()[:2]) for line in world.log]
