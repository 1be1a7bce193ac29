"""doctor's registry probe: a manifest request per image a service would pull, bounded in time
(through the fakes of tests/unit/fakes.py; test_doctor.py has the plain-HTTP and unreachable cases)."""

from __future__ import annotations

from pathlib import Path

from compute_units.doctor import SINGLE_IMAGE, Finding, by_digest, check_registries
from compute_units.errors import CommandError
from compute_units.model import ServiceSet
from compute_units.runner import Result
from compute_units.spec import load_lenient
from compute_units.state import State
from tests.unit.fakes import FakeStore, FakeWorld

REF = "registry.example:5000/nova/libvirt:2024.1"
OTHER = REF.replace("libvirt", "compute")
DIGEST = "sha256:" + "a" * 64


def services(tmp_path: Path, *images: str) -> ServiceSet:
    for number, image in enumerate(images):
        (tmp_path / f"s{number}.yaml").write_text(f"image: {image}\n")
    loaded, diagnostics = load_lenient(sorted(tmp_path.glob("*.yaml")), check_files=False)
    assert [d for d in diagnostics if d.severity == "error"] == []
    return loaded


def probe(world: FakeWorld, found: ServiceSet, store: FakeStore | None = None, **kw: float) -> list[Finding]:
    return check_registries(world.effects(store or FakeStore(world)), found, **kw)


def test_each_image_manifest_is_asked_for_with_a_timeout(tmp_path: Path) -> None:
    world = FakeWorld()
    found = probe(world, services(tmp_path, REF, OTHER), timeout=3)
    assert world.log == [f"manifest inspect {OTHER} within 3 s", f"manifest inspect {REF} within 3 s"]
    assert found == [
        Finding("registry registry.example:5000", "ok", f"serves the manifest of {OTHER}, {REF}")
    ]


def test_the_default_timeout_is_10_s_and_local_images_are_not_asked_for(tmp_path: Path) -> None:
    world = FakeWorld()
    assert probe(world, services(tmp_path, REF, "localhost/x:1", "plain/name:1")) == [
        Finding("registry registry.example:5000", "ok", f"serves the manifest of {REF}")
    ]
    assert world.log == [f"manifest inspect {REF} within 10 s"]


def test_podman_4_refusing_to_show_a_single_image_means_it_was_served(tmp_path: Path) -> None:
    world = FakeWorld()
    world.registry_answers[REF] = Result(
        ("podman",), 125, "", f"Error: parsing manifest blob ...: {SINGLE_IMAGE}"
    )
    assert probe(world, services(tmp_path, REF))[0].status == "ok"


def test_a_black_holed_registry_fails_within_the_timeout(tmp_path: Path) -> None:
    world = FakeWorld()
    world.registry_answers[REF] = CommandError(["podman"], 124, "", "timed out after 3 s")
    assert probe(world, services(tmp_path, REF), timeout=3) == [
        Finding(
            "registry registry.example:5000",
            "fail",
            f"no answer within 3 s for the manifest of {REF}: the pull would hang",
            "check the registry (it accepts connections but does not answer), network, proxies",
        )
    ]


def test_podman_that_cannot_run_fails_with_its_message(tmp_path: Path) -> None:
    world = FakeWorld()
    world.registry_answers[REF] = CommandError(["podman"], 127, "", "podman: command not found")
    (finding,) = probe(world, services(tmp_path, REF))
    assert (finding.status, finding.fix) == ("fail", "check podman")
    assert finding.message.startswith("cannot run podman: ")


def test_a_missing_tag_fails(tmp_path: Path) -> None:
    world = FakeWorld()
    world.registry_answers[REF] = Result(
        ("podman",), 125, "", "Error: reading manifest 2024.1 in x: manifest unknown"
    )
    (finding,) = probe(world, services(tmp_path, REF))
    assert (finding.status, finding.message) == ("fail", f"has no manifest for {REF}: the pull would fail")


def test_a_kept_pin_is_asked_for_by_digest(tmp_path: Path) -> None:
    """The next `upgrade` keeps a pin to another tag: that image is the one whose manifest counts."""
    world = FakeWorld()
    store = FakeStore(world)
    state = State()
    pin = f"{REF.replace('2024.1', '2024.2')}@{DIGEST}"
    state.get("s0").current, state.get("s0").spec_image = pin, REF
    store.save(state)
    assert probe(world, services(tmp_path, REF), store) == [
        Finding("registry registry.example:5000", "ok", f"serves the manifest of {pin}")
    ]
    assert world.log == [f"manifest inspect registry.example:5000/nova/libvirt@{DIGEST} within 10 s"]


def test_a_pinned_reference_is_asked_for_by_digest() -> None:
    assert by_digest(f"127.0.0.1:5000/cu-test/svc:v2@{DIGEST}") == f"127.0.0.1:5000/cu-test/svc@{DIGEST}"
    assert by_digest(f"127.0.0.1:5000/svc@{DIGEST}") == f"127.0.0.1:5000/svc@{DIGEST}"
    assert by_digest("127.0.0.1:5000/cu-test/svc:v2") == "127.0.0.1:5000/cu-test/svc:v2"
