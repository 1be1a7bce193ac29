"""doctor's registry probe: a manifest request per image a service would pull, bounded in time."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from compute_units import runner
from compute_units.doctor import SINGLE_IMAGE, Finding, Run, by_digest, check_registries
from compute_units.errors import CommandError
from compute_units.model import ServiceSet
from compute_units.spec import load_lenient

REF = "registry.example:5000/nova/libvirt:2024.1"


def services(tmp_path: Path, *images: str) -> ServiceSet:
    for number, image in enumerate(images):
        (tmp_path / f"s{number}.yaml").write_text(f"image: {image}\n")
    loaded, diagnostics = load_lenient(sorted(tmp_path.glob("*.yaml")), check_files=False)
    assert [d for d in diagnostics if d.severity == "error"] == []
    return loaded


def fake(returncode: int = 0, stderr: str = "", hang: bool = False) -> tuple[list[list[str]], Run]:
    calls: list[list[str]] = []

    def run(argv: Sequence[str], *, check: bool = True, timeout: float | None = None) -> runner.Result:
        calls.append([*argv, f"timeout={timeout}"])
        if hang:
            raise CommandError(list(argv), 124, "", f"timed out after {timeout} s")
        return runner.Result(tuple(argv), returncode, "", stderr)

    return calls, run


def test_each_image_manifest_is_asked_for_with_a_timeout(tmp_path: Path) -> None:
    calls, run = fake()
    found = check_registries(services(tmp_path, REF, REF.replace("libvirt", "compute")), run, timeout=3)
    assert calls == [
        ["podman", "manifest", "inspect", REF.replace("libvirt", "compute"), "timeout=3"],
        ["podman", "manifest", "inspect", REF, "timeout=3"],
    ]
    assert found == [
        Finding(
            "registry registry.example:5000",
            "ok",
            f"serves the manifest of {REF.replace('libvirt', 'compute')}, {REF}",
        )
    ]


def test_podman_4_refusing_to_show_a_single_image_means_it_was_served(tmp_path: Path) -> None:
    _, run = fake(125, f"Error: parsing manifest blob ...: {SINGLE_IMAGE}")
    assert check_registries(services(tmp_path, REF), run)[0].status == "ok"


def test_a_black_holed_registry_fails_within_the_timeout(tmp_path: Path) -> None:
    _, run = fake(hang=True)
    assert check_registries(services(tmp_path, REF), run, timeout=3) == [
        Finding(
            "registry registry.example:5000",
            "fail",
            f"no answer within 3 s for the manifest of {REF}: the pull would hang",
            "check the registry (it accepts connections but does not answer), network, proxies",
        )
    ]


def test_a_missing_tag_fails(tmp_path: Path) -> None:
    _, run = fake(125, "Error: reading manifest 2024.1 in x: manifest unknown: manifest unknown")
    finding = check_registries(services(tmp_path, REF), run)[0]
    assert (finding.status, finding.message) == ("fail", f"has no manifest for {REF}: the pull would fail")


def test_a_pinned_reference_is_asked_for_by_digest() -> None:
    digest = "sha256:" + "a" * 64
    assert by_digest(f"127.0.0.1:5000/cu-test/svc:v2@{digest}") == f"127.0.0.1:5000/cu-test/svc@{digest}"
    assert by_digest(f"127.0.0.1:5000/svc@{digest}") == f"127.0.0.1:5000/svc@{digest}"
    assert by_digest("127.0.0.1:5000/cu-test/svc:v2") == "127.0.0.1:5000/cu-test/svc:v2"
