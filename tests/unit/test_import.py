"""`compute-units import`: docker/podman run lines → specs.

The seed's own nova-libvirt line must give a unit that runs the container with the same effective
options (read back from the rendered ExecStart=), with its secrets out of the spec and the unit;
malformed lines fail with exact messages and write nothing; the seed's start-compute script gives
one spec per line.
"""

from __future__ import annotations

import json
import shlex
import stat
from pathlib import Path, PurePosixPath

import pytest
import yaml
from typer.testing import CliRunner

from compute_units import render, spec
from compute_units.cli import app
from compute_units.model import Service
from tests.unit.conftest import KOLLA
from tests.unit.execparse import parse_exec

# the launch command of the seed blog post, character for character
SEED_LINE = (
    'sudo docker run -d --privileged -e "KEYSTONE_ADMIN_TOKEN=$PASSWORD" -e "NOVA_DB_PASSWORD=$PASSWORD" '
    '-e "RABBIT_PASSWORD=$PASSWORD" -e "RABBIT_USERID=stackrabbit" -e NETWORK_MANAGER="nova" '
    '-e "GLANCE_API_SERVICE_HOST=$SERVICE_HOST" -e "KEYSTONE_PUBLIC_SERVICE_HOST=$SERVICE_HOST" '
    '-e "RABBITMQ_SERVICE_HOST=$SERVICE_HOST" -e "NOVA_KEYSTONE_PASSWORD=$PASSWORD" '
    "-v /sys/fs/cgroup:/sys/fs/cgroup -v /var/lib/nova:/var/lib/nova --pid=host --net=host "
    "sdake/fedora-rdo-nova-libvirt"
)
LIBVIRT = "fedora-rdo-nova-libvirt"
SEED_SECRETS = ("KEYSTONE_ADMIN_TOKEN", "NOVA_DB_PASSWORD", "RABBIT_PASSWORD", "NOVA_KEYSTONE_PASSWORD")

# start-compute: the seed "merged the 3 run commands into a script"; only the libvirt one is
# quoted in the post, the other two follow its pattern.
START_COMPUTE = f"""#!/bin/bash
# start-compute: nova-network, nova-libvirt and nova-compute of one compute node
PASSWORD=secrete
SERVICE_HOST=192.0.2.10

sudo docker run -d --privileged \\
    -e "NOVA_DB_PASSWORD=$PASSWORD" -e "RABBIT_PASSWORD=$PASSWORD" \\
    -e "RABBIT_USERID=stackrabbit" -e NETWORK_MANAGER="nova" \\
    -e "RABBITMQ_SERVICE_HOST=$SERVICE_HOST" \\
    --pid=host --net=host sdake/fedora-rdo-nova-network

{SEED_LINE}

# nova-compute talks to libvirt through /var/lib/nova
sudo docker run -d --privileged -e "KEYSTONE_ADMIN_TOKEN=$PASSWORD" \\
    -e "NOVA_DB_PASSWORD=$PASSWORD" -e "RABBIT_PASSWORD=$PASSWORD" \\
    -e "RABBIT_USERID=stackrabbit" -e NETWORK_MANAGER="nova" \\
    -e "NOVA_KEYSTONE_PASSWORD=$PASSWORD" \\
    -v /sys/fs/cgroup:/sys/fs/cgroup -v /var/lib/nova:/var/lib/nova \\
    --pid=host --net=host sdake/fedora-rdo-nova-compute
"""
COMMANDS = [
    "--command",
    "fedora-rdo-nova-network=/usr/bin/nova-network",
    "--command",
    f"{LIBVIRT}=/usr/sbin/libvirtd",
    "--command",
    "fedora-rdo-nova-compute=/usr/bin/nova-compute",
]


def run(*args: str) -> tuple[int, str, list[str]]:
    result = CliRunner().invoke(app, ["import", *args])
    return result.exit_code, result.stdout, result.stderr.splitlines()


def load(text: str, name: str = "svc", root: Path = Path("/"), check_files: bool = False) -> Service:
    service, diagnostics = spec.parse_text(text, Path(f"{name}.yaml"), root=root, check_files=check_files)
    assert service is not None, [d.format() for d in diagnostics]
    return service


def facts_for(service: Service, version: tuple[int, ...] = (4, 3, 1)) -> render.RenderOptions:
    """Render options on a host with this podman, whose images are all KOLLA."""
    return render.RenderOptions(podman_version=version, images={str(service.image): KOLLA})


def exec_start(service: Service, version: tuple[int, ...] = (4, 3, 1)) -> tuple[str, list[str]]:
    unit = render.render_service(service, facts_for(service, version))
    (argv,) = parse_exec(unit, "ExecStart", service.unit)
    return unit, argv


# --------------------------------------------------------------------------- effective options


def docker_effective(line: str) -> set[tuple[str, str]]:
    """What a `docker run` line asks of the container (a test-side reading of the seed's flags)."""
    words = shlex.split(line)
    assert words[:3] == ["sudo", "docker", "run"]
    found: set[tuple[str, str]] = set()
    rest = words[3:]
    while rest[0].startswith("-"):
        flag = rest.pop(0)
        if flag == "-d":
            continue
        if flag == "--privileged":
            found.add(("privileged", "true"))
        elif flag in ("-e", "-v"):
            value = rest.pop(0)
            found.add(("env", value.split("=", 1)[0]) if flag == "-e" else ("volume", value))
        else:
            option, value = flag.split("=", 1)
            found.add(({"--pid": "pid", "--net": "network"}[option], value))
    (image,) = rest
    found.add(("image", f"docker.io/{image}"))  # what docker pulls for a Docker Hub short name
    return found


OURS = {
    "--cidfile",
    "--cgroups",
    "--rm",
    "--sdnotify",
    "-d",
    "--replace",
    "--log-driver",
    "--name",
    "--label",
}


def unit_effective(argv: list[str]) -> tuple[set[tuple[str, str]], set[str], list[str]]:
    """(effective options, compute-units' own options, command) of a rendered `podman run` argv."""
    assert argv[:2] == ["/usr/bin/podman", "run"]
    found: set[tuple[str, str]] = set()
    own: set[str] = set()
    words = argv[2:]
    while words[0].startswith("-"):
        option, _, value = words.pop(0).partition("=")
        if option in OURS or option == "--entrypoint":
            own.add(option)
        elif option in ("--pid", "--network", "--ipc", "--uts", "--cgroupns"):
            found.add((option[2:], value))
        elif option == "--privileged":
            found.add(("privileged", "true"))
        elif option == "--volume":
            found.add(("volume", value))
        elif option == "--env":
            found.add(("env", value.split("=", 1)[0]))
        elif option == "--secret":
            settings = dict(item.partition("=")[::2] for item in value.split(",")[1:])
            found.add(("env", settings["target"]))
        else:
            raise AssertionError(f"unexpected option {option}")
    found.add(("image", words.pop(0)))
    return found, own, words


@pytest.mark.parametrize("version", [(4, 3, 1), (5, 4, 2)], ids=["loader", "native"])
def test_seed_line_imports_to_a_unit_with_the_same_effective_flags(
    tmp_path: Path, version: tuple[int, ...]
) -> None:
    root = tmp_path / "root"
    root.mkdir()
    code, stdout, stderr = run("--root", str(root), "--", SEED_LINE)
    assert code == 0, stderr
    service = load(stdout, root=root)
    assert service.command is None  # the line gives none: the image's own ENTRYPOINT and CMD run
    unit, argv = exec_start(service, version)
    image = str(service.image)
    plan = render.secret_plan(service, image, facts_for(service, version))
    expected = render.podman_run_argv(service, image, secrets=plan)
    assert expected[2] == "--cidfile=%t/%n.ctr-id"  # systemd expands the specifiers
    assert argv == [*expected[:2], "--cidfile=/run/fedora-rdo-nova-libvirt.service.ctr-id", *expected[3:]]

    effective, own, command = unit_effective(argv)
    assert effective == docker_effective(SEED_LINE)
    if version < (5, 3):  # the secrets loader execs the image's ENTRYPOINT, then its CMD
        assert own == OURS | {"--entrypoint"}
        loader = next(a for a in argv if a.startswith("--entrypoint="))
        assert json.loads(loader.split("=", 1)[1])[3:] == ["compute-units-secrets", *KOLLA.entrypoint]
        assert command == list(KOLLA.cmd)
    else:  # podman's own env secrets: nothing replaces the image's ENTRYPOINT and CMD
        assert own == OURS
        assert command == []

    secrets = {a.split(",")[0] for a in argv if a.startswith("--secret=")}
    assert secrets == {f"--secret=compute-units.{LIBVIRT}.{v}" for v in SEED_SECRETS}
    assert {v.variable for v in service.secrets} == set(SEED_SECRETS)
    assert {v.file for v in service.secrets} == {
        PurePosixPath(f"/etc/compute-units/secrets/{v.lower()}") for v in SEED_SECRETS
    }
    assert dict(service.environment) == {
        "RABBIT_USERID": "stackrabbit",
        "NETWORK_MANAGER": "nova",
        "GLANCE_API_SERVICE_HOST": "$SERVICE_HOST",
        "KEYSTONE_PUBLIC_SERVICE_HOST": "$SERVICE_HOST",
        "RABBITMQ_SERVICE_HOST": "$SERVICE_HOST",
    }
    # the secrets' "values" were shell references: neither they nor anything else leaks
    assert "$PASSWORD" not in stdout and "PASSWORD" not in unit.replace("_PASSWORD", "")
    assert not (root / "etc/compute-units/secrets").exists()  # nothing to write: values unknown

    hint = "create {root}/etc/compute-units/secrets/{name} (mode 0600) with the real value before `compute-units generate`"
    env_warning = (
        "<command line>: warning: environment {0}: '$SERVICE_HOST' refers to a shell variable, written as-is; "
        "the container receives this text literally"
    )
    assert stderr == [
        "<command line>: note: -d ignored: under systemd the container runs detached, without a terminal",
        env_warning.format("GLANCE_API_SERVICE_HOST"),
        "    hint: replace it with the real value in the spec",
        env_warning.format("KEYSTONE_PUBLIC_SERVICE_HOST"),
        "    hint: replace it with the real value in the spec",
        env_warning.format("RABBITMQ_SERVICE_HOST"),
        "    hint: replace it with the real value in the spec",
        "<command line>: note: image 'sdake/fedora-rdo-nova-libvirt' is a Docker Hub short name: written as "
        "'docker.io/sdake/fedora-rdo-nova-libvirt' (podman under systemd cannot ask which registry to use)",
        "<command line>: note: no --restart: docker would not restart the container; the spec keeps "
        "compute-units' default restart: on-failure",
        "<command line>: warning: spec image: 'docker.io/sdake/fedora-rdo-nova-libvirt' has no tag or digest "
        "and means ':latest'",
        "    hint: pin a tag so upgrades are deliberate",
        *[
            line
            for variable in SEED_SECRETS
            for line in (
                f"<command line>: warning: secret {variable} of {LIBVIRT}: the value is the shell reference "
                "'$PASSWORD', not known here; no file written",
                "    hint: " + hint.format(root=root, name=variable.lower()),
            )
        ],
    ]


def test_seed_spec_text(tmp_path: Path) -> None:
    code, stdout, _ = run(
        "--root", str(tmp_path), "--command", f"{LIBVIRT}=/usr/sbin/libvirtd", "--", SEED_LINE
    )
    assert code == 0
    warning = "'$SERVICE_HOST' refers to a shell variable, written as-is; the container receives this text literally"
    assert stdout == "\n".join(
        [
            "# Imported by `compute-units import` from the command line (docker run).",
            "# Review before use; these warnings were also printed:",
            f"#   environment GLANCE_API_SERVICE_HOST: {warning}",
            f"#   environment KEYSTONE_PUBLIC_SERVICE_HOST: {warning}",
            f"#   environment RABBITMQ_SERVICE_HOST: {warning}",
            "name: fedora-rdo-nova-libvirt",
            "description: Imported from docker run",
            "image: docker.io/sdake/fedora-rdo-nova-libvirt",
            "command: [/usr/sbin/libvirtd]",
            "host_namespaces: [pid, network]",
            "privileged: true",
            "mounts:",
            "  - /sys/fs/cgroup:/sys/fs/cgroup",
            "  - /var/lib/nova:/var/lib/nova",
            "environment:",
            "  RABBIT_USERID: stackrabbit",
            "  NETWORK_MANAGER: nova",
            "  GLANCE_API_SERVICE_HOST: $SERVICE_HOST",
            "  KEYSTONE_PUBLIC_SERVICE_HOST: $SERVICE_HOST",
            "  RABBITMQ_SERVICE_HOST: $SERVICE_HOST",
            "secrets:",
            "  KEYSTONE_ADMIN_TOKEN: {file: /etc/compute-units/secrets/keystone_admin_token}",
            "  NOVA_DB_PASSWORD: {file: /etc/compute-units/secrets/nova_db_password}",
            "  RABBIT_PASSWORD: {file: /etc/compute-units/secrets/rabbit_password}",
            "  NOVA_KEYSTONE_PASSWORD: {file: /etc/compute-units/secrets/nova_keystone_password}",
            "",
        ]
    )


def test_seed_line_with_command_keeps_it(tmp_path: Path) -> None:
    code, stdout, stderr = run(
        "--root", str(tmp_path), "--command", f"{LIBVIRT}=/usr/sbin/libvirtd", "--", SEED_LINE
    )
    assert code == 0, stderr
    service = load(stdout, root=tmp_path)
    assert service.command == ("/usr/sbin/libvirtd",)
    # in place of the image's CMD, after its ENTRYPOINT (as without secrets)
    assert exec_start(service)[1][-2:] == [str(service.image), "/usr/sbin/libvirtd"]


def test_literal_secret_values_go_to_0600_files_never_to_spec_or_unit(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    line = (
        "podman run --name nova-compute -e NOVA_DB_PASSWORD=s3cr3t-db -e 'RABBIT_PASSWORD=r4bbit pass' "
        "-e RABBIT_USERID=stackrabbit --pid=host --net=host 127.0.0.1:5000/nova-compute:1 /usr/bin/nova-compute"
    )
    out = tmp_path / "out"
    code, stdout, stderr = run("--root", str(root), "--output-dir", str(out), "--", line)
    assert code == 0, stderr
    secrets = root / "etc/compute-units/secrets"
    assert stat.S_IMODE(secrets.stat().st_mode) == 0o700
    assert (secrets / "nova_db_password").read_text() == "s3cr3t-db"
    assert (secrets / "rabbit_password").read_text() == "r4bbit pass"
    for name in ("nova_db_password", "rabbit_password"):
        assert stat.S_IMODE((secrets / name).stat().st_mode) == 0o600
    assert stdout == f"wrote {out}/nova-compute.yaml\n"
    assert stderr == [
        "<command line>: note: no --restart: docker would not restart the container; the spec keeps "
        "compute-units' default restart: on-failure",
        f"<command line>: warning: secret NOVA_DB_PASSWORD of nova-compute: value written to "
        f"{secrets}/nova_db_password (mode 0600), not to the spec",
        f"<command line>: warning: secret RABBIT_PASSWORD of nova-compute: value written to "
        f"{secrets}/rabbit_password (mode 0600), not to the spec",
    ]
    text = (out / "nova-compute.yaml").read_text()
    assert "s3cr3t" not in text and "r4bbit" not in text
    service = load(text, root=root, check_files=True)  # the files exist, with a safe mode
    unit, argv = exec_start(service)
    assert "s3cr3t" not in unit and "r4bbit" not in unit
    assert (
        "--secret=compute-units.nova-compute.NOVA_DB_PASSWORD,type=mount,mode=0400,target=NOVA_DB_PASSWORD"
        in argv
    )
    assert parse_exec(unit, "ExecStartPre", service.unit)[-1] == [
        "/usr/bin/podman",
        "secret",
        "create",
        "compute-units.nova-compute.RABBIT_PASSWORD",
        "/etc/compute-units/secrets/rabbit_password",
    ]

    # the same import again: nothing changes; another value: refused, unless --force
    code, _, stderr = run("--root", str(root), "--output-dir", str(out), "--force", "--", line)
    assert code == 0
    assert stderr[1].endswith(f"value is already in {secrets}/nova_db_password (mode 0600), not to the spec")
    changed = line.replace("s3cr3t-db", "other")
    code, _, stderr = run("--root", str(root), "--output-dir", str(out), "--", changed)
    assert code == 2
    assert stderr == [
        f"<command line>: {out}/nova-compute.yaml exists",
        "    hint: pass --force to overwrite it",
        f"<command line>: secret NOVA_DB_PASSWORD of nova-compute: {secrets}/nova_db_password exists "
        "with another value",
        "    hint: pass --force to overwrite it",
        "compute-units: 2 error(s); nothing was written.",
    ]
    assert (secrets / "nova_db_password").read_text() == "s3cr3t-db"
    code, _, _ = run("--root", str(root), "--output-dir", str(out), "--force", "--", changed)
    assert code == 0
    assert (secrets / "nova_db_password").read_text() == "other"
    assert stat.S_IMODE((secrets / "nova_db_password").stat().st_mode) == 0o600


def test_secrets_dir_option_and_how_specs_name_it(tmp_path: Path) -> None:
    line = "docker run --name svc -e API_KEY=k1 registry.example/svc:1 /bin/svc"
    inside = tmp_path / "root/srv/secrets"
    (tmp_path / "root").mkdir()
    code, stdout, _ = run("--root", str(tmp_path / "root"), "--secrets-dir", str(inside), "--", line)
    assert code == 0
    assert "  API_KEY: {file: /srv/secrets/api_key}" in stdout.splitlines()
    assert (inside / "api_key").read_text() == "k1"
    outside = tmp_path / "elsewhere"
    code, stdout, _ = run("--root", str(tmp_path / "root"), "--secrets-dir", str(outside), "--", line)
    assert code == 0
    assert f"  API_KEY: {{file: {outside}/api_key}}" in stdout.splitlines()


# --------------------------------------------------------------------------- the start-compute script


def test_start_compute_script_gives_three_specs(tmp_path: Path) -> None:
    script = tmp_path / "start-compute"
    script.write_text(START_COMPUTE)
    out = tmp_path / "out"
    code, stdout, stderr = run(
        "--script", str(script), "--root", str(tmp_path), "--output-dir", str(out), *COMMANDS
    )
    assert code == 0, stderr
    names = ["fedora-rdo-nova-network", LIBVIRT, "fedora-rdo-nova-compute"]
    assert stdout.splitlines() == [f"wrote {out}/{n}.yaml" for n in names]
    services, diagnostics = spec.load(spec.discover([out]), root=tmp_path, strict_files=False)
    assert [d for d in diagnostics if d.severity == "error"] == []
    assert sorted(services.names()) == sorted(names)
    for service in services:
        assert service.host_namespaces == ("pid", "network")
        assert service.privileged
    libvirt = services.get(LIBVIRT)
    assert libvirt is not None
    seed = load(
        run("--root", str(tmp_path), "--command", f"{LIBVIRT}=/usr/sbin/libvirtd", "--", SEED_LINE)[1]
    )
    assert exec_start(libvirt)[1] == exec_start(seed)[1]  # the line in the script imports as on its own
    assert stderr[:2] == [
        f"{script}:3: warning: shell assignment to PASSWORD ignored: compute-units does not "
        "run the script and expands no variables",
        f"{script}:4: warning: shell assignment to SERVICE_HOST ignored: compute-units does not "
        "run the script and expands no variables",
    ]
    # line numbers are where each command starts (after continuations and comments)
    assert {
        line.split(": ")[0].rsplit(":", 1)[1] for line in stderr if line.split(": ")[1:2] == ["note"]
    } == {
        "6",
        "12",
        "15",
    }

    # without --output-dir: one YAML stream, three documents
    code, stdout, _ = run("--script", str(script), "--root", str(tmp_path), *COMMANDS)
    assert code == 0
    documents = list(yaml.safe_load_all(stdout))
    assert [d["name"] for d in documents] == names
    assert stdout.count("\n---\n") == 2


def test_start_compute_without_commands_imports_every_line(tmp_path: Path) -> None:
    script = tmp_path / "start-compute"
    script.write_text(START_COMPUTE)
    out = tmp_path / "out"
    code, _, stderr = run("--script", str(script), "--root", str(tmp_path), "--output-dir", str(out))
    assert code == 0, stderr
    services, diagnostics = spec.load(spec.discover([out]), root=tmp_path, strict_files=False)
    assert [d for d in diagnostics if d.severity == "error"] == []
    assert {s.name: (s.command, bool(s.secrets)) for s in services} == {
        name: (None, True) for name in ("fedora-rdo-nova-network", LIBVIRT, "fedora-rdo-nova-compute")
    }
