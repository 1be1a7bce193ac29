"""Secrets in both modes: native (podman >= 5.3) and the loader (older podman) that runs the
image's own ENTRYPOINT and CMD; the facts they depend on, recorded so the generator asks nothing."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from compute_units import facts, generator, render, secretplan, spec
from compute_units.cli import app
from compute_units.model import Service
from compute_units.secretplan import ImageConfig, SecretFactsMissing
from tests.unit.conftest import KOLLA, HostFacts

SAVE = facts.Recorder.save  # conftest's autouse fixture replaces it: these tests restore it
IMAGE = "127.0.0.1:5000/nova/compute:1"
SPEC = f"image: {IMAGE}\nsecrets:\n  DB_PASSWORD: {{podman_secret: db}}\n  TOKEN: {{podman_secret: tok}}\n"


def service_of(text: str = SPEC, name: str = "svc") -> Service:
    service, diagnostics = spec.parse_text(text, Path(f"{name}.yaml"), check_files=False)
    assert service is not None, [d.format() for d in diagnostics]
    return service


def argv(
    service: Service, version: tuple[int, ...], images: dict[str, ImageConfig] | None = None
) -> list[str]:
    options = render.RenderOptions(
        podman_version=version, images={IMAGE: KOLLA} if images is None else images
    )
    return render.podman_run_argv(service, IMAGE, secrets=render.secret_plan(service, IMAGE, options))


def after_image(words: list[str]) -> list[str]:
    return words[words.index(IMAGE) + 1 :]


def loader_of(words: list[str]) -> list[str]:
    (entrypoint,) = [w for w in words if w.startswith("--entrypoint=")]
    loaded: list[str] = json.loads(entrypoint.split("=", 1)[1])
    return loaded


def test_a_spec_with_secrets_needs_no_command(tmp_path: Path) -> None:
    (tmp_path / "svc.yaml").write_text(SPEC)
    result = CliRunner().invoke(app, ["validate", "--spec", str(tmp_path)])
    assert result.exit_code == 0, result.stderr
    assert result.stdout == "1 service(s) valid: svc\n"


@pytest.mark.parametrize("version", [(5, 3, 0), (5, 4, 2), (6, 0, 0)])
def test_native_env_secrets_keep_the_image_entrypoint_and_cmd(version: tuple[int, ...]) -> None:
    words = argv(service_of(), version, images={})  # no image config needed
    assert [w for w in words if w.startswith("--secret=")] == [
        "--secret=db,type=env,target=DB_PASSWORD",
        "--secret=tok,type=env,target=TOKEN",
    ]
    assert not [w for w in words if w.startswith("--entrypoint")]
    assert after_image(words) == []
    assert after_image(argv(service_of(SPEC + "command: [/bin/app, -v]\n"), version)) == ["/bin/app", "-v"]


@pytest.mark.parametrize("version", [(4, 3, 1), (4, 9, 4), (5, 2, 5)])
def test_loader_runs_the_image_entrypoint_then_its_cmd(version: tuple[int, ...]) -> None:
    words = argv(service_of(), version)
    assert [w for w in words if w.startswith("--secret=")] == [
        "--secret=db,type=mount,mode=0400,target=DB_PASSWORD",
        "--secret=tok,type=mount,mode=0400,target=TOKEN",
    ]
    loader = loader_of(words)
    assert loader[:2] == ["/bin/sh", "-c"]
    assert loader[3:] == ["compute-units-secrets", "dumb-init", "--single-child", "--"]
    assert after_image(words) == ["kolla_start"]  # podman drops CMD when --entrypoint is given
    # command: replaces CMD, never ENTRYPOINT: as without secrets
    words = argv(service_of(SPEC + "command: [/bin/app]\n"), version)
    assert loader_of(words)[4:] == list(KOLLA.entrypoint)
    assert after_image(words) == ["/bin/app"]


def test_loader_execs_the_entrypoint_of_podman_args_instead() -> None:
    service = service_of(SPEC + 'command: [-x]\npodman_args: [\'--entrypoint=["/bin/run","-v"]\']\n')
    words = argv(service, (4, 3, 1), images={})  # the image's config is not needed then
    assert [w for w in words if w.startswith("--entrypoint=")] == [
        w for w in words if "compute-units-secrets" in w
    ]
    assert loader_of(words)[4:] == ["/bin/run", "-v"]
    assert after_image(words) == ["-x"]
    # natively it stays podman's own option
    assert '--entrypoint=["/bin/run","-v"]' in argv(service, (5, 4, 2))


def test_the_loader_exports_the_files_and_execs_entrypoint_and_cmd(tmp_path: Path) -> None:
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    (secrets / "DB_PASSWORD").write_text("s3cret 'quoted' $x\n")
    (secrets / "TOKEN").write_text("t")
    loader = secretplan.loader(service_of(), ("/usr/bin/env",))
    script = loader[2].replace(secretplan.SECRETS_DIR, str(secrets))
    proc = subprocess.run(
        [loader[0], "-c", script, *loader[3:], "-0"], capture_output=True, text=True, check=True, env={}
    )
    variables = proc.stdout.split("\0")
    assert "DB_PASSWORD=s3cret 'quoted' $x" in variables  # exactly, trailing newline dropped
    assert "TOKEN=t" in variables


def test_missing_facts_name_the_service_and_the_image() -> None:
    service = service_of()
    with pytest.raises(SecretFactsMissing) as unknown:
        argv(service, (4, 3, 1), images={})
    assert unknown.value.message == (
        f"svc: podman 4.3.1 loads secrets through the image's own ENTRYPOINT and CMD, and they are not "
        f"known for {IMAGE} (not in the local store, never recorded)"
    )
    assert unknown.value.hint == (
        f"pull it first (`compute-units pull svc` or `podman pull {IMAGE}`), then run the command again"
    )
    with pytest.raises(SecretFactsMissing) as empty:
        argv(service, (4, 3, 1), images={IMAGE: ImageConfig()})
    assert (
        empty.value.message
        == f"svc: image {IMAGE} has neither ENTRYPOINT nor CMD, so there is nothing to run"
    )
    assert empty.value.hint == "give command: in the spec"
    with pytest.raises(SecretFactsMissing) as no_podman:
        render.secret_plan(service, IMAGE, render.RenderOptions())
    assert no_podman.value.message == "svc: its secrets depend on podman's version, which is not known"


def test_markers_name_the_mode_and_are_read_back() -> None:
    service = service_of()
    for version, mode in (((4, 3, 1), "loader"), ((5, 4, 2), "native")):
        options = render.RenderOptions(podman_version=version, images={IMAGE: KOLLA})
        text = render.render_service(service, options)
        assert secretplan.read_marker(text) == mode
    assert secretplan.read_marker(render.render_service(service_of(f"image: {IMAGE}\n"), options)) == ""
    assert secretplan.read_marker("[Unit]\n# Secrets: native (in a section)\n") == ""


def test_parse_version() -> None:
    assert secretplan.parse_version("podman version 4.3.1\n") == (4, 3, 1)
    assert secretplan.parse_version("podman version 5.4") == (5, 4, 0)
    assert secretplan.parse_version("podman version dev") is None


# --------------------------------------------------------------------------- the facts record


def recorder(root: Path, monkeypatch: pytest.MonkeyPatch) -> facts.Recorder:
    monkeypatch.setattr(facts.Recorder, "save", SAVE)
    return facts.Recorder(root)


def test_version_is_recorded_with_the_binary_and_asked_again_when_it_changes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, host_facts: HostFacts
) -> None:
    first = recorder(tmp_path, monkeypatch)
    assert first.podman_version() == (4, 3, 1)
    first.save()
    record = json.loads((tmp_path / facts.FACTS_FILE).read_text())
    assert record["podman"] == {"binary": [1, 2, 3], "version": "4.3.1"}
    assert host_facts.asked == ["--version"]
    assert facts.Recorder(tmp_path).podman_version() == (4, 3, 1)
    assert host_facts.asked == ["--version"]  # the record answered
    host_facts.version = "podman version 5.4.2"
    monkeypatch.setattr(facts, "binary_key", lambda path=facts.PODMAN: [9, 9, 9])  # an upgrade replaced it
    assert facts.Recorder(tmp_path).podman_version() == (5, 4, 2)
    assert host_facts.asked == ["--version", "--version"]
    monkeypatch.setattr(facts, "binary_key", lambda path=facts.PODMAN: None)
    assert facts.Recorder(tmp_path).podman_version() is None  # not installed


def test_image_configs_one_call_tags_asked_digests_recorded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, host_facts: HostFacts
) -> None:
    pinned = "127.0.0.1:5000/nova/compute:1@sha256:" + "a" * 64
    first = recorder(tmp_path, monkeypatch)
    assert first.image_configs([IMAGE, pinned], ask_first=True) == {IMAGE: KOLLA, pinned: KOLLA}
    first.save()
    assert host_facts.asked == [f"{IMAGE} {pinned}"]  # one podman call
    host_facts.config = None  # the local store no longer has them
    again = facts.Recorder(tmp_path)
    assert again.image_configs([IMAGE, pinned], ask_first=True) == {IMAGE: KOLLA, pinned: KOLLA}
    assert host_facts.asked[1:] == [IMAGE]  # a tag can move: asked; a digest cannot
    assert facts.Recorder(tmp_path).image_configs([IMAGE, pinned], ask_first=False) == {
        IMAGE: KOLLA,
        pinned: KOLLA,
    }
    assert host_facts.asked[2:] == []  # the generator: the record answers


def test_nothing_is_asked_without_secrets(tmp_path: Path, host_facts: HostFacts) -> None:
    plain = spec.load_lenient([], root=tmp_path)[0]
    options = render.RenderOptions()
    assert facts.render_options(plain, options, facts.Recorder(tmp_path)) is options
    assert host_facts.asked == []


# --------------------------------------------------------------------------- the generator


def write_spec(root: Path, text: str = SPEC, name: str = "svc") -> None:
    directory = root / "etc/compute-units/services"
    directory.mkdir(parents=True, exist_ok=True)
    (directory / f"{name}.yaml").write_text(text)


def test_generator_uses_the_record_and_asks_podman_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, host_facts: HostFacts
) -> None:
    root = tmp_path / "root"
    write_spec(root)
    monkeypatch.setattr(facts.Recorder, "save", SAVE)
    result = CliRunner().invoke(app, ["generate", "--root", str(root), "--output-dir", str(tmp_path / "cli")])
    assert result.exit_code == 0, result.stderr
    assert host_facts.asked == ["--version", IMAGE]
    out = tmp_path / "gen"
    out.mkdir()
    assert generator.generate_into(out, root) == 0
    assert host_facts.asked == ["--version", IMAGE]  # nothing more at boot
    assert (out / "svc.service").read_text() == (tmp_path / "cli/svc.service").read_text()


def test_generator_leaves_out_a_service_whose_image_is_unknown(
    tmp_path: Path, host_facts: HostFacts, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "root"
    write_spec(root)
    write_spec(root, f"image: {IMAGE}\n", "plain")
    record = root / facts.FACTS_FILE  # podman's version recorded, the image's config not
    record.parent.mkdir(parents=True)
    record.write_text(json.dumps({"podman": {"binary": [1, 2, 3], "version": "4.3.1"}}))
    out = tmp_path / "gen"
    out.mkdir()
    assert generator.generate_into(out, root) == 0
    assert sorted(p.name for p in out.glob("*.service")) == [generator.REPORT_UNIT, "plain.service"]
    message = (
        f"skipped svc: podman 4.3.1 loads secrets through the image's own ENTRYPOINT and CMD, and they are "
        f"not known for {IMAGE} (not in the local store, never recorded)"
    )
    assert f"compute-units-generator: {message}; pull it first" in capsys.readouterr().err
    report = (out / generator.REPORT_UNIT).read_text()
    assert message in report
    assert host_facts.asked == []  # under a root (a tree, not this host) podman is never run
    assert (out / "multi-user.target.wants" / generator.REPORT_UNIT).is_symlink()


def test_generate_names_service_and_image_when_facts_are_missing(
    tmp_path: Path, host_facts: HostFacts
) -> None:
    root = tmp_path / "root"
    write_spec(root)
    host_facts.config = None
    result = CliRunner().invoke(app, ["generate", "--root", str(root), "--output-dir", str(tmp_path / "out")])
    assert result.exit_code == 2
    assert result.stderr.splitlines() == [
        f"compute-units: error: svc: podman 4.3.1 loads secrets through the image's own ENTRYPOINT and CMD, "
        f"and they are not known for {IMAGE} (not in the local store, never recorded)",
        f"  hint: pull it first (`compute-units pull svc` or `podman pull {IMAGE}`), then run the command again",
    ]
    assert not (tmp_path / "out").exists()


def test_quadlet_export_follows_the_podman_it_is_for(tmp_path: Path, host_facts: HostFacts) -> None:
    root = tmp_path / "root"
    write_spec(root)

    def export(version: str) -> Any:
        result = CliRunner().invoke(
            app, ["export", "--quadlet", "--root", str(root), "--podman-version", version]
        )
        assert result.exit_code == 0, result.stderr
        return result.stdout

    native = export("5.4")
    assert "Secret=db,type=env,target=DB_PASSWORD\n" in native
    assert "--entrypoint" not in native
    assert "compute-units-secrets" in export("5.2")
