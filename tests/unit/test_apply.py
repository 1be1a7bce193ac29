"""`apply` with fakes of every effect (tests/unit/fakes.py): the plan, the refusal of silent image
moves, which units are stopped, written, restarted and started, and the load-error path. The
sandbox-node test test_apply_restarts_exactly_the_changed_units proves it with real systemd."""

from __future__ import annotations

from pathlib import Path

import pytest

from compute_units import spec
from compute_units.apply import apply_changes, plan
from compute_units.errors import ComputeUnitsError, InstallError, UsageError
from compute_units.model import ServiceSet
from compute_units.names import MARKER, TARGET_NAME
from compute_units.state import State
from tests.unit.fakes import FakeStore, FakeUnits, FakeWorld, unit_state

REG = "127.0.0.1:5000/cu"
PINNED = f"{REG}/a:v1@sha256:{'1' * 64}"


def services(*names: str, image_of: dict[str, str] | None = None) -> ServiceSet:
    parsed = []
    for name in names:
        image = (image_of or {}).get(name, f"{REG}/{name}:v1")
        service, problems = spec.parse_text(f"image: {image}\n", Path(f"/specs/{name}.yaml"))
        assert service is not None, problems
        parsed.append(service)
    return ServiceSet(tuple(parsed))


def unit(text: str) -> str:
    return f"{MARKER}\n{text}\n"


def rendered(*names: str, version: str = "v1") -> dict[str, str]:
    return {f"{n}.service": unit(f"{n} {version}") for n in names} | {TARGET_NAME: unit("target")}


@pytest.fixture
def world() -> FakeWorld:
    return FakeWorld()


def run_plan(world: FakeWorld, store: FakeStore, chosen: ServiceSet, units: dict[str, str]) -> list[str]:
    return [f"{c.action} {c.name}" for c in plan(store, FakeUnits(world), chosen, lambda: units)]


def test_apply_restarts_exactly_the_changed_units_that_run(world: FakeWorld) -> None:
    world.unit_files = rendered("a", "b", "c")
    world.states = {u: unit_state(u) for u in ("a.service", "b.service")}
    world.states["c.service"] = unit_state("c.service", "inactive")
    chosen, store = services("a", "b", "c"), FakeStore(world)
    new = rendered("a", "b", "c") | {"a.service": unit("a v2"), "c.service": unit("c v2")}
    changes = plan(store, FakeUnits(world), chosen, lambda: new)
    assert [f"{c.action} {c.name}" for c in changes] == [
        "change a.service",
        "unchanged b.service",
        "change c.service",
        f"unchanged {TARGET_NAME}",
    ]
    outcomes = apply_changes(world.effects(store), chosen, changes, timeout=30)
    # c changed too, but it was not running: the target's start brings it up, no restart
    assert world.log == [
        "change a.service",
        "change c.service",
        "reload",
        "restart a.service",
        f"start {TARGET_NAME}",
    ]
    assert [(o.unit, o.verb, o.job_result) for o in outcomes] == [
        ("a.service", "restart", "done"),
        (TARGET_NAME, "start", "done"),
        ("b.service", "start", "done"),
        ("c.service", "start", "done"),
    ]
    assert world.unit_files["a.service"] == unit("a v2")


def test_apply_with_nothing_changed_restarts_nothing(world: FakeWorld) -> None:
    world.unit_files = rendered("a")
    world.states = {"a.service": unit_state("a.service")}
    store, chosen = FakeStore(world), services("a")
    changes = plan(store, FakeUnits(world), chosen, lambda: rendered("a"))
    outcomes = apply_changes(world.effects(store), chosen, changes, timeout=30)
    assert world.log == ["reload", f"start {TARGET_NAME}"]
    assert [o.unit for o in outcomes if o.ok] == [TARGET_NAME, "a.service"]


def test_apply_stops_a_removed_service_before_deleting_its_unit(world: FakeWorld) -> None:
    world.unit_files = rendered("a", "old")
    world.states = {u: unit_state(u) for u in ("a.service", "old.service")}
    store, chosen = FakeStore(world), services("a")
    changes = plan(store, FakeUnits(world), chosen, lambda: rendered("a"))
    assert [f"{c.action} {c.name}" for c in changes if c.action != "unchanged"] == ["remove old.service"]
    outcomes = apply_changes(world.effects(store), chosen, changes, timeout=30)
    assert world.log == ["stop old.service", "remove old.service", "reload", f"start {TARGET_NAME}"]
    assert "old.service" not in world.unit_files
    assert [(o.unit, o.verb) for o in outcomes] == [
        ("old.service", "stop"),
        (TARGET_NAME, "start"),
        ("a.service", "start"),
    ]


def test_a_unit_systemd_cannot_load_stops_apply_before_any_job(world: FakeWorld) -> None:
    world.states = {
        "a.service": unit_state("a.service", "inactive", "bad-setting"),
        "b.service": unit_state("b.service", "inactive", "not-found"),
    }
    world.load_errors["a.service"] = (
        "Unit a.service has a bad unit file setting. (org.freedesktop.systemd1.BadUnitSetting)"
    )
    store, chosen = FakeStore(world), services("a", "b")
    changes = plan(store, FakeUnits(world), chosen, lambda: rendered("a", "b"))
    with pytest.raises(ComputeUnitsError) as caught:
        apply_changes(world.effects(store), chosen, changes, timeout=30)
    assert caught.value.message == (
        "systemd cannot load a.service: Unit a.service has a bad unit file setting. "
        "(org.freedesktop.systemd1.BadUnitSetting); b.service: not loaded"
    )
    assert caught.value.hint == "fix the spec (or the template override) and run `compute-units apply` again"
    assert world.log == ["add a.service", "add b.service", f"add {TARGET_NAME}", "reload"]


def test_a_unit_that_dies_within_settle_is_reported_failed(world: FakeWorld) -> None:
    world.states = {"a.service": unit_state("a.service")}
    world.dies_after_start = {"a.service"}
    store, chosen = FakeStore(world), services("a")
    changes = plan(store, FakeUnits(world), chosen, lambda: rendered("a"))
    outcomes = apply_changes(world.effects(store), chosen, changes, timeout=30, settle=1.0)
    assert world.log[-1] == "settle 1"
    assert [(o.unit, o.ok, o.state.active_state) for o in outcomes] == [
        ("a.service", False, "failed"),
        (TARGET_NAME, True, "active"),
    ]


def pinned_store(world: FakeWorld, spec_image: str) -> FakeStore:
    store, state = FakeStore(world), State()
    entry = state.get("a")
    entry.current, entry.spec_image = PINNED, spec_image
    store.save(state)
    return store


def test_apply_refuses_an_image_edit_in_the_spec_of_a_pinned_service(world: FakeWorld) -> None:
    store = pinned_store(world, f"{REG}/a:v1")
    chosen = services("a", "b", image_of={"a": f"{REG}/a:v2"})

    def render() -> dict[str, str]:
        raise AssertionError("rendered although refused")

    with pytest.raises(UsageError) as caught:
        plan(store, FakeUnits(world), chosen, render)
    assert caught.value.message == (
        f"a: the spec's image changed from {REG}/a:v1 to {REG}/a:v2 since the last upgrade "
        f"pinned {PINNED}; nothing was written"
    )
    assert caught.value.hint == (
        "move to the new image with `compute-units upgrade a` (pulled, health-gated, rolled back "
        "on failure), or revert the spec"
    )
    assert world.log == [] and world.unit_files == {}


def test_apply_keeps_a_pinned_service_whose_spec_image_is_unchanged(world: FakeWorld) -> None:
    store = pinned_store(world, f"{REG}/a:v1")
    assert run_plan(world, store, services("a"), rendered("a")) == ["add a.service", f"add {TARGET_NAME}"]


def test_apply_refuses_to_overwrite_a_unit_it_did_not_write(world: FakeWorld) -> None:
    world.unit_files = {"a.service": "[Service]\nExecStart=/bin/true\n"}
    with pytest.raises(InstallError) as caught:
        run_plan(world, FakeStore(world), services("a"), rendered("a"))
    assert caught.value.message == (
        "refusing to overwrite a.service in /etc/systemd/system: not generated by compute-units"
    )
    assert world.log == []
