"""`compute-units prune` on fakes: state and history made by the real upgrade engine (fakes.py),
the image store a fake. Never an image a rollback could need; the node test is in
tests/integration/test_prune.py."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from compute_units.commands.common import make_context
from compute_units.commands.prune import PruneFailed, run_prune
from compute_units.prune import LocalImage, parse_images, plan, rmi_names
from compute_units.state import Store
from compute_units.upgrade import RolledBack
from tests.unit.fakes import FakeImages, FakeStore, FakeWorld
from tests.unit.test_upgrade_engine import D1, D2, D3, REG, engine, service, svc

D4 = f"sha256:{'4' * 64}"
OTHER = LocalImage("other", ("quay.example/other/tool:1",), (), 0, 5)


def upgraded_then_rolled_back(world: FakeWorld) -> FakeStore:
    """v1 -> v2 committed, then v3 (unhealthy) rolled back to v2; D4 pulled by hand."""
    store, services = FakeStore(world), service()
    engine(world, store, services).upgrade(svc(services), f"{REG}:v2")
    world.bad_digests.add(D3)
    with pytest.raises(RolledBack):
        engine(world, store, services).upgrade(svc(services), f"{REG}:v3")
    world.images.add(D4)
    return store


@pytest.fixture
def world() -> FakeWorld:
    w = FakeWorld(registry={f"{REG}:v1": D1, f"{REG}:v2": D2, f"{REG}:v3": D3}, images={D1})
    w.running["svc.service"] = f"{REG}:v1@{D1}"
    return w


def test_the_rolled_back_target_goes_and_what_a_rollback_needs_stays(world: FakeWorld) -> None:
    store = upgraded_then_rolled_back(world)
    images = FakeImages(world, REG, extra=[OTHER])
    decisions = plan(images.images(), service(), store.load(), store.history())
    assert [(d.image.id, d.keep, d.reason) for d in decisions] == [
        (D1, True, "a rollback of svc could return to it (history)"),
        (D2, True, "used by 1 container(s)"),
        (D3, False, "no service runs it and no rollback could need it"),
        (D4, False, "no service runs it and no rollback could need it"),
    ]  # the other repository's image is not ours to judge: not even listed


def test_the_spec_image_and_a_prepulled_target_stay(world: FakeWorld) -> None:
    store = upgraded_then_rolled_back(world)
    state = store.load()
    state.get("svc").pulled = f"{REG}:v4@{D4}"
    tagged = LocalImage("tagged", (f"{REG}:v1",), (), 0, 1)
    images = [*FakeImages(world, REG).images(), tagged]
    decisions = {d.image.id: (d.keep, d.reason) for d in plan(images, service(), state, store.history())}
    assert decisions[D4] == (True, "pre-pulled for the next upgrade of svc")
    assert decisions["tagged"] == (True, "the spec of svc names it")
    assert decisions[D3] == (False, "no service runs it and no rollback could need it")


def test_an_unfinished_upgrade_keeps_its_target_and_previous(world: FakeWorld) -> None:
    store = upgraded_then_rolled_back(world)
    state = store.load()
    entry = state.get("svc")
    entry.phase, entry.target, entry.previous = "pinned", f"{REG}:v3@{D3}", f"{REG}:v2@{D2}"
    decisions = {
        d.image.id: (d.keep, d.reason) for d in plan(FakeImages(world, REG).images(), service(), state, [])
    }
    assert decisions[D3] == (True, "the unfinished upgrade of svc goes to it")
    assert decisions[D4] == (False, "no service runs it and no rollback could need it")


@pytest.fixture
def node(tmp_path: Path, world: FakeWorld) -> tuple[Path, FakeStore]:
    """A --root with the spec and the engine's state.json and history.jsonl in the real store."""
    fake = upgraded_then_rolled_back(world)
    (tmp_path / "specs").mkdir()
    (tmp_path / "specs/svc.yaml").write_text(f"image: {REG}:v1\n")
    real = Store(tmp_path / "var/lib/compute-units")
    real.save(fake.load())
    for entry in fake.history():
        real.append_history(entry)
    return tmp_path, fake


def test_dry_run_removes_nothing_and_says_what_would_go(
    node: tuple[Path, FakeStore], world: FakeWorld, capsys: pytest.CaptureFixture[str]
) -> None:
    root, _ = node
    images = FakeImages(world, REG)
    ctx = make_context([root / "specs"], root, None)
    run_prune(ctx, images, dry_run=True, as_json=True)
    data = json.loads(capsys.readouterr().out)
    assert images.removed == []
    assert data["dry_run"] is True and data["removed"] == [] and data["ok"] is True
    assert [(i["id"], i["keep"]) for i in data["images"]] == [
        (D1, True),
        (D2, True),
        (D3, False),
        (D4, False),
    ]
    run_prune(ctx, images, dry_run=True, as_json=False)
    lines = capsys.readouterr().out.splitlines()
    assert lines[-2] == f"would remove  {REG}@{D4}  (no service runs it and no rollback could need it)"
    assert lines[-1] == "2 image(s) would remove (2.0 MB), 2 kept"


def test_prune_removes_and_a_podman_error_is_exit_1(
    node: tuple[Path, FakeStore], world: FakeWorld, capsys: pytest.CaptureFixture[str]
) -> None:
    root, _ = node
    images = FakeImages(world, REG)
    images.fail[D4] = "Error: image is in use by a container"
    ctx = make_context([root / "specs"], root, None)
    with pytest.raises(PruneFailed) as failed:
        run_prune(ctx, images, dry_run=False, as_json=True)
    assert failed.value.exit_code == 1
    assert failed.value.message.startswith(f"could not remove {REG}@{D4}: ")
    data = json.loads(capsys.readouterr().out)
    assert data["removed"] == [D3] and data["freed"] == 1_000_000
    assert [e["id"] for e in data["errors"]] == [D4]
    assert [i.id for i in images.images()] == [D1, D2, D4]


def test_prune_waits_for_no_one_while_an_upgrade_holds_the_lock(
    node: tuple[Path, FakeStore], world: FakeWorld
) -> None:
    root, _ = node
    ctx = make_context([root / "specs"], root, None)
    images = FakeImages(world, REG)
    with ctx.store().lock(0.0), pytest.raises(Exception, match="upgrade") as busy:
        run_prune(ctx, images, dry_run=False, as_json=False)
    assert type(busy.value).__name__ == "LockBusy"
    assert images.removed == []


def test_podman_images_json() -> None:
    tagged = {"Id": "a1", "Names": ["r/x:1"], "RepoDigests": ["r/x@sha256:1"], "Containers": 2, "Size": 10}
    untagged = {"Id": "b2", "Names": None, "RepoDigests": ["r/x@sha256:2"], "Containers": 0, "Size": 20}
    assert parse_images([tagged, untagged]) == [
        LocalImage("a1", ("r/x:1",), ("r/x@sha256:1",), 2, 10),
        LocalImage("b2", (), ("r/x@sha256:2",), 0, 20),
    ]


def test_an_image_of_ours_that_another_repository_also_names_stays(world: FakeWorld) -> None:
    """The same image pulled as the rolled-back target and under another repository's name (a
    mirror, a `podman tag`): removing it would remove the other name's image too."""
    store = upgraded_then_rolled_back(world)
    both = LocalImage(D3, (f"{REG}:v3", "mirror.example/svc:v3"), (f"{REG}@{D3}",), 0, 1)
    images = [i for i in FakeImages(world, REG).images() if i.id != D3] + [both]
    decisions = {
        d.image.id: (d.keep, d.reason) for d in plan(images, service(), store.load(), store.history())
    }
    assert decisions[D3] == (True, "also named mirror.example/svc:v3, which no service uses")
    assert decisions[D4] == (False, "no service runs it and no rollback could need it")


def test_podman_rmi_gets_every_tag_of_an_image_or_its_id() -> None:
    two_tags = LocalImage("a1", ("r/x:3", "r/x:latest"), ("r/x@sha256:1",), 0, 10)
    untagged = LocalImage("b2", (), ("r/x@sha256:2",), 0, 20)
    assert rmi_names(two_tags) == ["r/x:3", "r/x:latest"]  # `podman rmi a1` refuses two tags
    assert rmi_names(untagged) == ["b2"]
