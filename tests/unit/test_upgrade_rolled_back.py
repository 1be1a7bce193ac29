"""What an upgrade that was rolled back leaves for the next one, and how its report reads (the
engine on fakes, as tests/unit/test_upgrade_engine.py)."""

from __future__ import annotations

import pytest

from compute_units.commands.upgrade import _print_report
from compute_units.targets import choose_target
from compute_units.upgrade import RolledBack, UpgradeInterrupted
from tests.unit.fakes import FakeStore, FakeWorld
from tests.unit.test_upgrade_engine import D2, D3, REG, V1, V2, V3, engine, service, svc, world

__all__ = ["world"]  # the fixture, shared with test_upgrade_engine.py


def test_a_rolled_back_upgrade_reads_from_the_failed_target_back_to_what_runs(
    world: FakeWorld, capsys: pytest.CaptureFixture[str]
) -> None:
    """The report's line says where it ended, as a `rollback`'s does; JSON keeps the attempt's from/to."""
    store, services = FakeStore(world), service()
    world.bad_digests.add(D3)
    up = engine(world, store, services)
    with pytest.raises(RolledBack):
        up.upgrade(svc(services), f"{REG}:v3")
    failed = up.reports[0]
    assert (failed.source, failed.target, failed.runs) == (V1, V3, V1)
    data = failed.as_dict()
    assert (data["from"], data["to"], "runs" in data) == (V1, V3, False)
    back = engine(world, store, services)
    world.bad_digests.clear()
    back.upgrade(svc(services), f"{REG}:v2")
    back.upgrade(svc(services), V1, kind="rollback")
    for report in (failed, *back.reports):
        _print_report(report)
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("svc: ")]
    assert lines == [
        f"svc: rolled-back {V3} -> {V1}",
        f"svc: upgraded {V1} -> {V2}",
        f"svc: rolled-back {V2} -> {V1}",
    ]


@pytest.mark.parametrize("fault", ["unhealthy", "signal"])
def test_the_first_upgrade_since_apply_is_retried_after_its_rollback(world: FakeWorld, fault: str) -> None:
    """Deployed by `apply` (no upgrade yet), the spec edited to v2, the upgrade rolled back: the next
    plain `upgrade` goes to the spec's image again. The rollback is not a pin (found by a fleet
    re-run after Ctrl-C: nova-compute stayed on v1 while the play said ok)."""
    store, services = FakeStore(world), service(image=f"{REG}:v2")
    if fault == "unhealthy":
        world.bad_digests.add(D2)
    else:
        world.signal_at = "health"
    with pytest.raises((RolledBack, UpgradeInterrupted)):
        engine(world, store, services).upgrade(svc(services))
    assert (store.load().get("svc").current, world.running["svc.service"]) == (V1, V1)
    world.bad_digests.clear()
    world.signal_at = world.signalled = None  # the fault is gone; a new run, no signal pending
    assert choose_target(svc(services), store.load().get("svc"), None) == (f"{REG}:v2", "the spec's image")
    report = engine(world, store, services).upgrade(svc(services))
    assert (report.result, report.source, report.target) == ("upgraded", V1, V2)
    assert world.running["svc.service"] == V2
