"""Rendering: golden units for the seed example, systemd-analyze verify, ExecStart= round trips,
template overrides, and a property test over random valid specs."""

from __future__ import annotations

import dataclasses
import os
import shutil
import subprocess
from pathlib import Path, PurePosixPath
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from compute_units import render, spec, unitfile
from compute_units.cli import app
from compute_units.model import ServiceSet
from compute_units.names import TARGET_NAME
from compute_units.unitfile import Unit
from tests.unit.conftest import KOLLA, HostFacts
from tests.unit.execparse import parse_exec

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "examples/services"
GOLDEN = Path(__file__).with_name("golden")
SECRETS = ("keystone_admin_token", "nova_db_password", "rabbit_password", "nova_keystone_password")


def with_facts(
    services: ServiceSet, version: tuple[int, ...] = (4, 3, 1), **kwargs: Any
) -> render.RenderOptions:
    """Render options as facts.py would give them on a host with this podman and KOLLA images."""
    images = {str(s.image): KOLLA for s in services}
    return render.RenderOptions(podman_version=version, images=images, **kwargs)


def argv_of(service: Any, options: render.RenderOptions) -> list[str]:
    image = str(service.image)
    return render.podman_run_argv(service, image, secrets=render.secret_plan(service, image, options))


@pytest.fixture
def root(tmp_path: Path) -> Path:
    secrets = tmp_path / "root/etc/compute-units/secrets"
    secrets.mkdir(parents=True)
    for name in SECRETS:
        (secrets / name).write_text(f"{name}-VALUE")
        (secrets / name).chmod(0o600)
    return tmp_path / "root"


def generate(specs: Path, root: Path, out: Path, *extra: str) -> None:
    result = CliRunner().invoke(
        app, ["generate", "--spec", str(specs), "--root", str(root), "--output-dir", str(out), *extra]
    )
    assert result.exit_code == 0, result.stderr


def verify(directory: Path) -> None:
    """systemd-analyze verify every unit: exit 0 and not a single warning."""
    units = sorted(p.name for p in directory.iterdir() if p.suffix in (".service", ".target"))
    proc = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", *(f"./{u}" for u in units)],
        cwd=directory,
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""


def test_seed_example_matches_golden_units(tmp_path: Path, root: Path) -> None:
    out = tmp_path / "out"
    generate(EXAMPLES, root, out)
    produced = {
        p.name: p.read_text().replace(str(EXAMPLES), "EXAMPLES") for p in out.iterdir() if p.is_file()
    }
    assert sorted(produced) == [
        TARGET_NAME,
        "nova-compute.service",
        "nova-libvirt.service",
        "nova-network.service",
    ]
    if os.environ.get("UPDATE_GOLDEN"):
        GOLDEN.mkdir(exist_ok=True)
        for name, text in produced.items():
            (GOLDEN / name).write_text(text)
    for name, text in produced.items():
        assert text == (GOLDEN / name).read_text(), f"{name} differs from tests/unit/golden (UPDATE_GOLDEN=1)"
    assert (out / "multi-user.target.wants" / TARGET_NAME).readlink() == Path(f"../{TARGET_NAME}")
    verify(out)


NATIVE = GOLDEN / "podman-5.4"  # units that differ on podman >= 5.3: those with secrets


def test_seed_example_on_podman_54_passes_secrets_natively(
    tmp_path: Path, root: Path, host_facts: HostFacts
) -> None:
    host_facts.version = "podman version 5.4.2"
    out = tmp_path / "out"
    generate(EXAMPLES, root, out)
    produced = {
        p.name: p.read_text().replace(str(EXAMPLES), "EXAMPLES") for p in out.iterdir() if p.is_file()
    }
    native = ("nova-compute.service", "nova-network.service")
    if os.environ.get("UPDATE_GOLDEN"):
        NATIVE.mkdir(exist_ok=True)
        for name in native:
            (NATIVE / name).write_text(produced[name])
    for name, text in produced.items():
        expected = (NATIVE if name in native else GOLDEN) / name
        assert text == expected.read_text(), f"{name} differs from {expected} (UPDATE_GOLDEN=1)"
    assert host_facts.asked == ["--version"]  # no image config is needed natively
    verify(out)


COMPUTE_NODE = REPO / "examples/compute-node"
VARIANTS = {
    "monolithic": ["nova-compute", "nova-libvirt", "ovn-controller", "ovs-vswitchd", "ovsdb-server"],
    "modular": [
        "nova-compute",
        "nova-virtlogd",
        "nova-virtnodedevd",
        "nova-virtproxyd",
        "nova-virtqemud",
        "nova-virtsecretd",
        "ovn-controller",
        "ovs-vswitchd",
        "ovsdb-server",
    ],
}


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_present_day_examples_render_units_systemd_accepts(tmp_path: Path, variant: str) -> None:
    out = tmp_path / "out"
    generate(COMPUTE_NODE / variant, tmp_path, out)
    assert sorted(p.stem for p in out.glob("*.service")) == VARIANTS[variant]
    verify(out)


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_present_day_examples_order_ovs_and_libvirt_first(tmp_path: Path, variant: str) -> None:
    services, warnings = spec.load(spec.discover([COMPUTE_NODE / variant]), root=tmp_path)
    assert warnings == []
    libvirt = "nova-libvirt" if variant == "monolithic" else "nova-virtqemud"
    requires = {s.name: s.requires for s in services}
    assert requires["ovs-vswitchd"] == ("ovsdb-server",)
    assert requires["ovn-controller"] == ("ovs-vswitchd",)
    assert requires["nova-compute"] == (libvirt,)
    by_name = {s.name: s for s in services}
    assert by_name["nova-compute"].stop_timeout_s >= 190  # nova's graceful_shutdown_timeout is 180 s
    disruptive = ["nova-virtlogd", "ovs-vswitchd"] if variant == "modular" else ["ovs-vswitchd"]
    assert sorted(s.name for s in services if s.disruptive) == disruptive
    assert [s.name for s in services if s.keeps_vms] == [libvirt]
    daemons = [s for s in services if s.image.repository == "compute/nova-libvirt"]
    for daemon in daemons:
        assert PurePosixPath("/var/cache/libvirt") in {m.target for m in daemon.mounts}, daemon.name


def test_both_variants_share_the_same_ovs_and_ovn_specs() -> None:
    for name in ("ovsdb-server", "ovs-vswitchd", "ovn-controller"):
        monolithic = (COMPUTE_NODE / "monolithic" / f"{name}.yaml").read_text()
        assert (COMPUTE_NODE / "modular" / f"{name}.yaml").read_text() == monolithic, name


def test_seed_units_have_the_seed_flags(tmp_path: Path, root: Path) -> None:
    services, _ = spec.load(spec.discover([EXAMPLES]), root=root)
    libvirt = services.get("nova-libvirt")
    assert libvirt is not None
    argv = render.podman_run_argv(libvirt, str(libvirt.image))
    for flag in ("--pid=host", "--network=host", "--cgroupns=host", "--privileged", "--device=/dev/kvm"):
        assert flag in argv
    for volume in (
        "/sys:/sys",
        "/sys/fs/cgroup:/sys/fs/cgroup",
        "/var/lib/libvirt:/var/lib/libvirt",
        "/var/lib/nova:/var/lib/nova",
    ):
        assert f"--volume={volume}" in argv
    compute = services.get("nova-compute")
    assert compute is not None
    argv = argv_of(compute, with_facts(services))
    assert "--env=RABBIT_USERID=stackrabbit" in argv
    assert not [a for a in argv if "-VALUE" in a]
    assert "-VALUE" not in render.render_service(compute, with_facts(services))
    assert (
        "--secret=compute-units.nova-compute.NOVA_DB_PASSWORD,type=mount,mode=0400,target=NOVA_DB_PASSWORD"
        in argv
    )


def test_unit_model_prints_sections_in_order() -> None:
    unit = Unit(
        "x.service",
        ("# header",),
        (
            unitfile.section("Unit", [("Description", "x"), unitfile.comment("why"), ("After", "a b")]),
            unitfile.section("Install", [("WantedBy", "y.target")]),
        ),
    )
    assert (
        unit.text == "# header\n\n[Unit]\nDescription=x\n# why\nAfter=a b\n\n[Install]\nWantedBy=y.target\n"
    )
    assert unit.section("Unit").values("After") == ["a b"]
    with pytest.raises(KeyError, match=r"x.service has no \[Service\] section"):
        unit.section("Service")


def test_service_unit_decides_every_line(root: Path) -> None:
    services, _ = spec.load(spec.discover([EXAMPLES]), root=root)
    text = render.render_all(services, with_facts(services))
    for service in services:
        unit = render.service_unit(service, with_facts(services))
        assert unit.name == service.unit
        assert [s.name for s in unit.sections] == ["Unit", "Service", "Install"]
        assert unit.text == text[service.unit]  # the built-in template prints the model as it is
    keeps_vms = services.get("nova-libvirt")
    assert keeps_vms is not None
    libvirt = render.service_unit(keeps_vms, render.RenderOptions())
    assert libvirt.section("Service").entries[8:12] == (
        ("#", render.KEEPS_VMS_COMMENT[0]),
        ("#", render.KEEPS_VMS_COMMENT[1]),
        ("KillSignal", "SIGKILL"),
        ("SuccessExitStatus", "143 SIGKILL"),
    )
    assert libvirt.section("Unit").values("Wants") == ["network-online.target", "systemd-machined.service"]
    target = render.target_unit(services)
    assert target.text == text[TARGET_NAME]
    assert target.section("Unit").values("Wants") == [s.unit for s in services]


TRICKY = [
    "plain",
    "with space",
    'double " quote',
    "single ' quote",
    "back\\slash",
    "100% sure",
    "%n %t %%",
    "$HOME",
    "${HOME}",
    "$$",
    ";",
    "a;b",
    "-dash",
    "@at",
    "",
    "ünïcødé ✓",
    "trailing\\",
    "{json: [1, 2]}",
    ";not a comment",
    "#not a comment",
]


def spec_with(tmp_path: Path, values: list[str]) -> Path:
    import json

    directory = tmp_path / "specs"
    directory.mkdir()
    env = {f"V{i}": v for i, v in enumerate(values)}
    (directory / "tricky.yaml").write_text(
        "image: 127.0.0.1:5000/x:1\n"
        f"description: {json.dumps(' '.join(values))}\n"
        f"command: {json.dumps(['/bin/echo', *values])}\n"
        f"environment: {json.dumps(env)}\n"
    )
    return directory


def test_exec_start_round_trips_exact_argv(tmp_path: Path, root: Path) -> None:
    specs = spec_with(tmp_path, TRICKY)
    out = tmp_path / "out"
    generate(specs, root, out)
    unit = (out / "tricky.service").read_text()
    services, _ = spec.load(spec.discover([specs]), root=root)
    service = services.get("tricky")
    assert service is not None
    expected = [
        a.replace("%t", "/run").replace("%n", "tricky.service") if isinstance(a, render.Specified) else a
        for a in argv_of(service, with_facts(services))
    ]
    assert parse_exec(unit, "ExecStart", "tricky.service") == [expected]
    assert expected[-len(TRICKY) :] == TRICKY
    for index, value in enumerate(TRICKY):
        assert f"--env=V{index}={value}" in expected
    verify(out)


def golden(name: str) -> str:
    return (GOLDEN / name).read_text().replace("EXAMPLES", str(EXAMPLES))


def test_template_override_by_name(tmp_path: Path, root: Path) -> None:
    templates = tmp_path / "templates"
    templates.mkdir()
    builtin = (REPO / "templates/service.j2").read_text()
    lines = '{{ section.lines | join("\\n") }}\n'
    assert builtin.count(lines) == 1
    extra = '{% if section.name == "Install" %}Alias={{ service.name }}-alias.service\n{% endif -%}\n'
    (templates / "service.j2").write_text(builtin.replace(lines, lines + extra))
    out = tmp_path / "out"
    generate(EXAMPLES, root, out, "--templates", str(templates))
    assert (out / "nova-libvirt.service").read_text() == golden("nova-libvirt.service") + (
        "Alias=nova-libvirt-alias.service\n"
    )
    assert (out / TARGET_NAME).read_text() == golden(TARGET_NAME)


def without_secrets_marker(text: str) -> str:
    return "".join(line for line in text.splitlines(keepends=True) if not line.startswith("# Secrets: "))


# the built-in templates as they were before the unit model (its variables, not `unit`)
BEFORE_MODEL = Path(__file__).with_name("templates-before-model")


def test_overrides_written_before_the_unit_model_still_work(tmp_path: Path, root: Path) -> None:
    templates = tmp_path / "templates"
    shutil.copytree(BEFORE_MODEL, templates)
    old = (templates / "service.j2").read_text()
    (templates / "service.j2").write_text(
        old.replace("[Install]", "[Install]\nAlias={{ service.name }}-alias.service")
    )
    out = tmp_path / "out"
    generate(EXAMPLES, root, out, "--templates", str(templates))
    for name in ("nova-compute.service", "nova-libvirt.service", "nova-network.service"):
        alias = f"Alias={name.removesuffix('.service')}-alias.service"
        expected = golden(name).replace("[Install]\n", f"[Install]\n{alias}\n")
        # they print their own header: without the secrets marker (`status` shows no mode then)
        assert (out / name).read_text() == without_secrets_marker(expected)
    assert (out / TARGET_NAME).read_text() == golden(TARGET_NAME)
    # every variable they use still has its old value: unchanged, they print the very same units
    (templates / "service.j2").write_text(old)
    generate(EXAMPLES, root, out)
    builtin = {p.name: without_secrets_marker(p.read_text()) for p in out.iterdir() if p.is_file()}
    generate(EXAMPLES, root, out, "--templates", str(templates))
    assert {p.name: p.read_text() for p in out.iterdir() if p.is_file()} == builtin
    services, _ = spec.load(spec.discover([EXAMPLES]), root=root)
    pinned = with_facts(services, pins={"nova-libvirt": "r.example/libvirt@sha256:1"}, start_limit_burst=3)
    assert {k: without_secrets_marker(v) for k, v in render.render_all(services, pinned).items()} == (
        render.render_all(services, dataclasses.replace(pinned, template_dirs=(templates,)))
    )


def test_template_with_undefined_variable_fails_cleanly(tmp_path: Path, root: Path) -> None:
    templates = tmp_path / "templates"
    templates.mkdir()
    (templates / "target.j2").write_text("{{ marker }}\n{{ no_such_thing }}\n")
    out = tmp_path / "out"
    out.mkdir()
    result = CliRunner().invoke(
        app,
        [
            "generate",
            "--spec",
            str(EXAMPLES),
            "--root",
            str(root),
            "--output-dir",
            str(out),
            "--templates",
            str(templates),
        ],
    )
    assert result.exit_code == 2
    assert result.stderr.splitlines() == [
        f"compute-units: error: template {templates}/target.j2:2: 'no_such_thing' is undefined",
        "  hint: fix the template or remove it to use the built-in one",
    ]
    assert list(out.iterdir()) == []


# ----------------------------------------------------------------------------- property test

names = st.from_regex(r"[a-z][a-z0-9-]{0,10}", fullmatch=True)
text = st.text(
    # YAML's printable set: no controls, surrogates, U+FFFE/U+FFFF
    alphabet=st.characters(blacklist_categories=("Cs", "Cc"), blacklist_characters="\x7f\ufffe\uffff"),
    max_size=20,
)
env_names = st.from_regex(r"[A-Z_][A-Z0-9_]{0,8}", fullmatch=True)
abs_paths = st.lists(
    st.from_regex(r"[a-z0-9_.-]{1,8}", fullmatch=True).filter(lambda p: p not in (".", "..")),
    min_size=1,
    max_size=3,
).map(lambda parts: "/" + "/".join(parts))


@st.composite
def service_set(draw: st.DrawFn) -> dict[str, str]:
    import json

    count = draw(st.integers(1, 4))
    service_names = draw(
        st.lists(names, min_size=count, max_size=count, unique=True).filter(
            lambda ns: "compute-node" not in ns
        )
    )
    files = {}
    for index, name in enumerate(service_names):
        mounts = draw(
            st.lists(st.tuples(abs_paths, abs_paths, st.booleans()), max_size=3, unique_by=lambda m: m[1])
        )
        data: dict[str, Any] = {
            "image": f"127.0.0.1:5000/svc{index}:{draw(st.from_regex(r'[a-z0-9][a-z0-9.-]{0,6}', fullmatch=True))}",
            "description": draw(text),
            "command": ["/bin/run", *draw(st.lists(text, max_size=4))],
            "host_namespaces": draw(
                st.lists(st.sampled_from(["pid", "network", "ipc", "uts", "cgroup"]), unique=True)
            ),
            "privileged": draw(st.booleans()),
            "mounts": [{"source": s, "target": t, "read_only": ro} for s, t, ro in mounts],
            "environment": draw(st.dictionaries(env_names, text, max_size=3)),
            "requires": draw(st.lists(st.sampled_from(service_names[:index]), unique=True)) if index else [],
            "restart": draw(st.sampled_from(["no", "always", "on-failure"])),
            "stop_timeout": f"{draw(st.integers(1, 600))}s",
        }
        if draw(st.booleans()):
            data["health"] = {
                "command": ["/bin/check", *draw(st.lists(text, max_size=2))],
                "interval": "30s",
                "start_period": "5s",
            }
        if draw(st.booleans()):
            data["secrets"] = {"SECRET_X": {"podman_secret": "some-secret"}}
            data["environment"].pop("SECRET_X", None)
        files[f"{name}.yaml"] = json.dumps(data, ensure_ascii=False)  # JSON is YAML
    return files


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(files=service_set())
def test_random_valid_specs_render_units_that_verify(
    files: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> None:
    base = tmp_path_factory.mktemp("prop")
    specs = base / "specs"
    specs.mkdir()
    for name, content in files.items():
        (specs / name).write_text(content)
    services, _ = spec.load(spec.discover([specs]))
    for version in ((4, 3, 1), (5, 4, 2)):
        options = with_facts(services, version)
        units = render.render_all(services, options)
        out = base / f"out-{version[0]}"
        out.mkdir()
        for name, content in units.items():
            (out / name).write_text(content)
        verify(out)
        for service in services:
            expected = [
                a.replace("%t", "/run").replace("%n", service.unit) if isinstance(a, render.Specified) else a
                for a in argv_of(service, options)
            ]
            assert parse_exec(units[service.unit], "ExecStart", service.unit) == [expected]
