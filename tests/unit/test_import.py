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

from compute_units import importer, render, spec
from compute_units.cli import app
from compute_units.importer import Word
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


# --------------------------------------------------------------------------- malformed lines

# (case, line given as one shell string, expected stderr)
MALFORMED: list[tuple[str, str, list[str]]] = [
    (
        "not-run",
        "docker ps",
        ["'docker ps' is not supported: only 'docker run' and 'podman run' lines can be imported"],
    ),
    (
        "not-docker",
        "ls -l",
        ["'ls' is not supported: only 'docker run' and 'podman run' lines can be imported"],
    ),
    (
        "global-option",
        "docker -H tcp://x run img",
        ["'docker -H': global options before 'run' are not supported"],
    ),
    (
        "no-image",
        "sudo docker run -d --privileged",
        ["'docker run' has no image", "    hint: give the image after the options"],
    ),
    ("missing-long-value", "docker run --name", ["option '--name' needs a value"]),
    ("missing-short-value", "podman run -v", ["option '-v' needs a value"]),
    ("unknown-option", "docker run --frobnicate img", ["unknown option '--frobnicate'"]),
    ("unknown-short", "docker run -itx img", ["unknown option '-x' in '-itx'"]),
    (
        "unbalanced-double",
        'docker run -e "FOO=bar img',
        ['unbalanced quotes: the " opened here is never closed'],
    ),
    (
        "unbalanced-single",
        "docker run -e 'FOO=bar img",
        ["unbalanced quotes: the ' opened here is never closed"],
    ),
    (
        "bad-boolean",
        "docker run --privileged=maybe img",
        ["option '--privileged' takes true or false, got 'maybe'"],
    ),
    (
        "pipe",
        "docker run img | tee log",
        [
            "unsupported shell syntax '|': only simple commands can be imported",
            "    hint: remove redirections, pipes and subshells from the line",
        ],
    ),
    (
        "redirect",
        "docker run img >/dev/null",
        [
            "unsupported shell syntax '>': only simple commands can be imported",
            "    hint: remove redirections, pipes and subshells from the line",
        ],
    ),
    (
        "rootfs",
        "podman run --rootfs /srv/root",
        ["--rootfs runs a directory, not an image; only images can be imported"],
    ),
    (
        "restart",
        "docker run --restart=sometimes img",
        ["--restart 'sometimes': expected no, always, unless-stopped or on-failure[:N]"],
    ),
    (
        "restart-count",
        "docker run --restart always:3 img",
        ["--restart 'always:3': expected no, always, unless-stopped or on-failure[:N]"],
    ),
    (
        "stop-timeout",
        "docker run --stop-timeout 0 img",
        ["--stop-timeout '0': expected whole seconds from 1 to 3600"],
    ),
    (
        "bad-name",
        "docker run --name Nova img",
        [
            "--name 'Nova' is not a valid service name",
            "    hint: use lowercase letters, digits, '_', '.' and '-', starting with a letter or digit",
        ],
    ),
    (
        "bad-image",
        "docker run Sdake/Nova",
        ["invalid image 'Sdake/Nova': repository 'Sdake/Nova' must be lowercase"],
    ),
    (
        "image-variable",
        "docker run registry/nova:$TAG",
        [
            "invalid image 'registry/nova:$TAG': bad tag '$TAG'",
            "    hint: the image refers to a shell variable; write the real reference",
        ],
    ),
    (
        "relative-target",
        "docker run -v /a:relative img",
        ["-v /a:relative: container path 'relative' must be absolute"],
    ),
    (
        "duplicate-target",
        "docker run -v /a:/x --volume /b:/x img",
        ["--volume=/b:/x: duplicate mount target '/x'"],
    ),
    (
        "mount-target",
        "docker run --mount type=bind,source=/a img",
        ["--mount 'type=bind,source=/a': needs source= and target="],
    ),
    ("relative-device", "docker run --device kvm img", ["--device=kvm: 'kvm' must be an absolute path"]),
    ("env-name", "docker run -e 1X=y img", ["-e 1X=y: '1X' is not a valid variable name"]),
    (
        "health-duration",
        "docker run --health-cmd=true --health-interval=5 img",
        ["--health-interval '5': expected a duration such as 30s or 1m30s"],
    ),
    (
        "health-short",
        "docker run --health-cmd=true --health-timeout=500ms img",
        ["--health-timeout '500ms': compute-units needs at least 1s"],
    ),
    (
        "health-json",
        "docker run --health-cmd='[\"virsh\"' img",
        ["--health-cmd '[\"virsh\"': not a JSON array of strings"],
    ),
    (
        "secret-target",
        "podman run --secret db,type=env,target=1A img",
        ["--secret=db,type=env,target=1A: '1A' is not a valid variable name"],
    ),
    (
        "reserved-name",
        "docker run --name compute-node img:1",
        ["the imported spec is invalid: name: the name 'compute-node' is reserved for the target"],
    ),
    (
        "control-character",
        "docker run -e 'A=x\ny' img:1",
        [
            "the imported spec is invalid: environment.A: value contains a newline",
            "    hint: unit files cannot carry it; remove it",
        ],
    ),
]


@pytest.mark.parametrize(("case", "line", "expected"), MALFORMED, ids=[c[0] for c in MALFORMED])
def test_malformed_lines(tmp_path: Path, case: str, line: str, expected: list[str]) -> None:
    out = tmp_path / "out"
    code, stdout, stderr = run("--root", str(tmp_path), "--output-dir", str(out), "--", line)
    assert code == 2
    assert stdout == ""
    errors = [e for e in stderr if not e.startswith(("<command line>: note:", "<command line>: warning:"))]
    assert errors[0] == "<command line>: " + expected[0]
    assert errors[1:] == [*expected[1:], "compute-units: 1 error(s); nothing was written."]
    assert list(tmp_path.iterdir()) == []  # no spec, no secrets directory


def test_every_error_of_a_script_is_reported_with_its_line(tmp_path: Path) -> None:
    script = tmp_path / "run.sh"
    script.write_text(
        "docker run --name a img:1\n"
        "docker stop a\n"
        "docker run --name a other:1\n"
        'docker run -e "X=1 \\\n  img:1\n'
    )
    code, _, stderr = run("--script", str(script))
    assert code == 2
    assert stderr == [
        f'{script}:4: unbalanced quotes: the " opened here is never closed',
        "compute-units: 1 error(s); nothing was written.",
    ]
    script.write_text("docker run --name a img:1\ndocker stop a\ndocker run --name a other:1\n")
    code, _, stderr = run("--script", str(script))
    assert [e for e in stderr if "error" in e] == [
        f"{script}:2: 'docker stop' is not supported: only 'docker run' and 'podman run' "
        "lines can be imported",
        f"{script}:3: service name 'a' is already used by {script}:1",
        "compute-units: 2 error(s); nothing was written.",
    ]


def test_command_line_usage_errors(tmp_path: Path) -> None:
    assert run()[2] == [
        "compute-units: error: give either a command line after -- or --script FILE",
        "  hint: compute-units import -- docker run --name x IMAGE",
    ]
    code, _, stderr = run("--command", "nocommand", "--", "docker", "run", "img")
    assert (code, stderr) == (
        2,
        [
            "<command line>: --command 'nocommand': expected NAME=ARGV",
            "compute-units: 1 error(s); nothing was written.",
        ],
    )
    code, _, stderr = run("--command", "other=/bin/x", "--", "docker", "run", "img:1")
    assert code == 2
    assert stderr[-2:] == [
        "<command line>: --command other=…: no imported service is named 'other'",
        "compute-units: 1 error(s); nothing was written.",
    ]
    code, _, stderr = run("--script", str(tmp_path / "missing"))
    assert (code, stderr[0]) == (
        2,
        f"compute-units: error: --script {tmp_path}/missing: No such file or directory",
    )
    code, _, stderr = run("--", "docker run --env-file ./none.env img:1")
    assert code == 2
    assert stderr[0].startswith("<command line>: --env-file ./none.env: cannot read ")
    assert stderr[0].endswith("/none.env: No such file or directory")


def test_refuses_to_overwrite_a_spec(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "nginx.yaml").write_text("keep")
    code, _, stderr = run("--output-dir", str(out), "--", "docker", "run", "nginx:1")
    assert code == 2
    assert stderr[-3:] == [
        f"<command line>: {out}/nginx.yaml exists",
        "    hint: pass --force to overwrite it",
        "compute-units: 1 error(s); nothing was written.",
    ]
    assert (out / "nginx.yaml").read_text() == "keep"
    assert run("--output-dir", str(out), "--force", "--", "docker", "run", "nginx:1")[0] == 0
    assert load((out / "nginx.yaml").read_text()).image.repository == "library/nginx"


# --------------------------------------------------------------------------- flag mapping


def import_one(line: str) -> tuple[dict[str, object], list[str]]:
    specs, messages = importer.import_commands(importer.from_arguments([line]))
    (imported,) = specs
    data = yaml.safe_load(imported.text)
    assert isinstance(data, dict)
    load(imported.text)
    return data, [m.format() for m in messages]


def test_namespaces_mounts_devices_and_pass_through() -> None:
    data, messages = import_one(
        "docker run -dit --rm --name nova --pid host --network=host --ipc=host --uts=host --cgroupns=host "
        "--privileged=true -v /sys:/sys -v /run/libvirt:/run/libvirt:shared -v /lib/modules:/lib/modules:ro,z "
        "--mount type=bind,source=/var/lib/libvirt,target=/var/lib/libvirt,bind-propagation=rshared "
        "--mount type=bind,src=/etc/nova/,dst=/etc/nova,readonly "
        "--mount type=volume,source=data,target=/data -v named:/named -v /anonymous "
        "--device /dev/kvm --device=/dev/net/tun:/dev/net/tun:rwm --device /dev/sda:/dev/xvda "
        "--cap-add SYS_ADMIN --ulimit nofile=4096 --security-opt label=disable --read-only --label tier=compute "
        "--label compute-units.service=x --init --pull=always --log-driver json-file -p 8080:80 "
        "registry.example:5000/nova/libvirt:2024.1 /usr/sbin/libvirtd --listen"
    )
    assert data == {
        "name": "nova",
        "description": "Imported from docker run",
        "image": "registry.example:5000/nova/libvirt:2024.1",
        "command": ["/usr/sbin/libvirtd", "--listen"],
        "host_namespaces": ["pid", "network", "ipc", "uts", "cgroup"],
        "privileged": True,
        "mounts": [
            "/sys:/sys",
            "/run/libvirt:/run/libvirt:shared",
            "/lib/modules:/lib/modules:ro",
            "/var/lib/libvirt:/var/lib/libvirt:rshared",
            "/etc/nova:/etc/nova:ro",
        ],
        "devices": ["/dev/kvm", "/dev/net/tun"],
        "podman_args": [
            "--ulimit=nofile=4096",
            "--read-only",
            "--label=tier=compute",
        ],
    }
    warnings = [m for m in messages if ": warning: " in m]
    assert warnings == [
        "<command line>: warning: -v /lib/modules:/lib/modules:ro,z: mount option 'z' cannot be expressed; dropped",
        "<command line>: warning: --mount=type=volume,source=data,target=/data: not imported: type=volume cannot be "
        "expressed; only bind mounts of host paths",
        "<command line>: warning: -v named:/named: not imported: 'named' is a named volume; mounts need an absolute "
        "host path",
        "<command line>: warning: -v /anonymous: not imported: an anonymous volume cannot be expressed; mounts are "
        "host paths",
        "<command line>: warning: --device=/dev/sda:/dev/xvda: not imported: devices are passed at the same path "
        "with full access (rwm) only",
        "<command line>: warning: --cap-add=SYS_ADMIN: not imported: capabilities are part of the privilege "
        "model; use privileged: true",
        "<command line>: warning: --security-opt=label=disable: not imported: security options change the "
        "privilege model; use privileged: true",
        "<command line>: warning: --label=compute-units.service=x: not imported: labels compute-units.* are set by "
        "compute-units",
        "<command line>: warning: --init: not imported: podman refuses --init with the host PID namespace",
        "<command line>: warning: --pull=always: not imported: compute-units pulls images itself (compute-units "
        "upgrade)",
        "<command line>: warning: --log-driver=json-file: not imported: compute-units sets --log-driver itself",
        "<command line>: warning: -p 8080:80: not imported: published ports are discarded with the host network",
    ]
    notes = [m for m in messages if ": note: " in m]
    assert notes[:4] == [
        f"<command line>: note: {flag} ignored: under systemd the container runs detached, without a terminal"
        for flag in ("-d", "-i", "-t", "--rm")
    ]


@pytest.mark.parametrize(
    ("policy", "expected", "note"),
    [
        ("always", "always", None),
        (
            "unless-stopped",
            "always",
            "--restart=unless-stopped is restart: always (a unit stopped by systemctl stays stopped)",
        ),
        ("on-failure", "on-failure", None),
        (
            "on-failure:5",
            "on-failure",
            "--restart=on-failure:5: the retry limit 5 is not imported; systemd's start limit applies instead",
        ),
        ("no", "no", None),
    ],
)
def test_restart_policies(policy: str, expected: str, note: str | None) -> None:
    data, messages = import_one(f"docker run --restart {policy} img:1")
    assert data["restart"] == expected
    assert [m for m in messages if "--restart" in m] == ([f"<command line>: note: {note}"] if note else [])


@pytest.mark.parametrize(
    ("flags", "health"),
    [
        ("--health-cmd 'virsh list'", {"command": ["virsh", "list"]}),
        (
            "--health-cmd 'curl -f http://localhost/ || exit 1' --health-interval 1m30s --health-timeout 10s "
            "--health-start-period 2m --health-retries 5",
            {
                "command": ["/bin/sh", "-c", "curl -f http://localhost/ || exit 1"],
                "interval": "90s",
                "timeout": "10s",
                "start_period": "120s",
                "retries": 5,
            },
        ),
        (
            '--health-cmd \'["CMD", "virsh", "-c", "qemu:///system", "list"]\'',
            {"command": ["virsh", "-c", "qemu:///system", "list"]},
        ),
        (
            '--health-cmd \'["CMD-SHELL", "pgrep libvirtd"]\' --health-interval=1500ms',
            {"command": ["/bin/sh", "-c", "pgrep libvirtd"], "interval": "1500ms"},
        ),
    ],
)
def test_health_checks(flags: str, health: dict[str, object]) -> None:
    data, _ = import_one(f"docker run {flags} img:1")
    assert data["health"] == health


def test_health_disabled_and_stop_timeout() -> None:
    data, messages = import_one("docker run --health-cmd none --health-interval 5s --stop-timeout 30 img:1")
    assert "health" not in data
    assert data["podman_args"] == ["--no-healthcheck"]
    assert data["stop_timeout"] == "30s"
    assert "<command line>: note: --health-interval=5s ignored: the health check is disabled" in messages
    data, messages = import_one("docker run --health-interval 5s img:1")
    assert "health" not in data
    assert (
        "<command line>: warning: --health-interval=5s: not imported: health settings without --health-cmd "
        "cannot be expressed" in messages
    )


def test_entrypoint_and_podman_secrets() -> None:
    data, _ = import_one("docker run --entrypoint /bin/run img:1 --flag")
    assert data["command"] == ["--flag"]
    assert data["podman_args"] == ["--entrypoint=/bin/run"]
    # with secrets too: the loader of podman < 5.3 execs the entrypoint podman_args gives
    data, messages = import_one(
        'podman run --entrypoint \'["/bin/run", "-v"]\' --secret db,type=env,target=DB_PASSWORD '
        "--secret tls-key img:1 --flag"
    )
    assert data["command"] == ["--flag"]
    assert data["secrets"] == {"DB_PASSWORD": {"podman_secret": "db"}}
    assert data["podman_args"] == ['--entrypoint=["/bin/run", "-v"]']
    assert (
        "<command line>: warning: --secret=tls-key: not imported: only environment secrets (type=env) can be expressed"
        in messages
    )


def test_environment_values_and_env_files(tmp_path: Path) -> None:
    env = tmp_path / "nova.env"
    env.write_text(
        '# settings\nRABBIT_USERID=guest\n\nNOVA_DB_PASSWORD=from-file\nQUOTED="kept as is"\nFROM_HOST\n'
    )
    script = tmp_path / "run.sh"
    script.write_text(
        "docker run --env-file nova.env -e RABBIT_USERID=stackrabbit -e 'LITERAL=$NOT_A_VARIABLE' "
        "-e PERCENT=100% -e EMPTY= -e SSH_KEY_FILE --name nova img:1 /bin/nova\n"
    )
    root = tmp_path / "root"
    root.mkdir()
    code, stdout, stderr = run("--script", str(script), "--root", str(root))
    assert code == 0, stderr
    data = yaml.safe_load(stdout)
    assert data["environment"] == {
        "RABBIT_USERID": "stackrabbit",
        "QUOTED": '"kept as is"',
        "LITERAL": "$NOT_A_VARIABLE",
        "PERCENT": "100%",
        "EMPTY": "",
    }
    assert data["secrets"] == {
        "NOVA_DB_PASSWORD": {"file": "/etc/compute-units/secrets/nova_db_password"},
        "SSH_KEY_FILE": {"file": "/etc/compute-units/secrets/ssh_key_file"},
    }
    assert (root / "etc/compute-units/secrets/nova_db_password").read_text() == "from-file"
    where = f"{script}:1"
    assert (
        f"{where}: warning: --env-file=nova.env: FROM_HOST takes its value from the environment of the shell that ran the container; not imported"
        in stderr
    )
    assert (
        f"{where}: warning: secret SSH_KEY_FILE of nova: the value is the environment of the shell that ran the container, not known here; no file written"
        in stderr
    )
    # single quotes: no shell variable, nothing to warn about; the unit passes the text exactly
    assert not [line for line in stderr if "LITERAL" in line]
    argv = exec_start(load(stdout))[1]
    assert "--env=LITERAL=$NOT_A_VARIABLE" in argv and "--env=PERCENT=100%" in argv


def test_shared_secret_files_must_agree() -> None:
    lines = importer.split_script(
        "docker run --name a -e DB_PASSWORD=one img:1 /a\ndocker run --name b -e DB_PASSWORD=two img:1 /b\n",
        "s",
    )
    with pytest.raises(importer.ImportFailed) as failed:
        importer.import_commands(lines)
    assert [p.format() for p in failed.value.problems] == [
        "s:2: secret DB_PASSWORD has a different value than on s:1; both would be written "
        "to /etc/compute-units/secrets/db_password\n"
        "    hint: give one of them a different variable name, or the same value"
    ]
    same = importer.split_script(
        "docker run --name a -e DB_PASSWORD=one img:1 /a\ndocker run --name b -e DB_PASSWORD=one img:1 /b\n",
        "s",
    )
    specs, _ = importer.import_commands(same)
    assert [s.secrets[0].value for s in specs] == ["one", "one"]


# --------------------------------------------------------------------------- pieces


@pytest.mark.parametrize(
    ("name", "secret"),
    [
        ("NOVA_DB_PASSWORD", True),
        ("db_passwd", True),
        ("KEYSTONE_ADMIN_TOKEN", True),
        ("AWS_SECRET_ACCESS_KEY", True),
        ("API_KEY", True),
        ("APIKEY", True),
        ("SSH_KEY_FILE", True),
        ("GOOGLE_CREDENTIALS", True),
        ("KEYSTONE_PUBLIC_SERVICE_HOST", False),  # KEY inside KEYSTONE is not a key
        ("RABBIT_USERID", False),
        ("KEYBOARD_LAYOUT", False),
    ],
)
def test_secret_names(name: str, secret: bool) -> None:
    assert importer.is_secret_name(name) is secret


def test_shell_splitting() -> None:
    text = (
        "#!/bin/sh\n"
        "# a comment\n"
        'sudo -E docker run -e "A=$X" -e \'B=$Y\' -e C=\\$Z -e "D=\\"q\\"" \\\n'
        "   -e E=${W:-x} -e F=$(hostname -f) img:1 # trailing comment\r\n"
        "docker run a:1; docker run b:1 && podman run c:1\n"
    )
    commands = importer.split_script(text, "f")
    assert [(c.line, c.words[:3]) for c in commands] == [
        (3, (Word("sudo"), Word("-E"), Word("docker"))),
        (5, (Word("docker"), Word("run"), Word("a:1"))),
        (5, (Word("docker"), Word("run"), Word("b:1"))),
        (5, (Word("podman"), Word("run"), Word("c:1"))),
    ]
    assert commands[0].words[4:] == (
        Word("-e"),
        Word("A=$X", expands=True),
        Word("-e"),
        Word("B=$Y"),
        Word("-e"),
        Word("C=$Z"),
        Word("-e"),
        Word('D="q"'),
        Word("-e"),
        Word("E=${W:-x}", expands=True),
        Word("-e"),
        Word("F=$(hostname -f)", expands=True),
        Word("img:1"),
    )
    # words given as our own arguments were split by the invoking shell already
    assert importer.from_arguments(["docker", "run", "-e", "P=$PASSWORD", "img"])[0].words[3] == Word(
        "P=$PASSWORD", expands=True
    )


@pytest.mark.parametrize(
    ("text", "ms"),
    [
        ("30s", 30_000.0),
        ("1m30s", 90_000.0),
        ("500ms", 500.0),
        ("1h", 3_600_000.0),
        ("1.5s", 1500.0),
        ("0", 0.0),
        ("30", None),
        ("", None),
    ],
)
def test_go_durations(text: str, ms: float | None) -> None:
    assert importer.go_duration_ms(text) == ms


def test_generated_specs_survive_json_round_trip_of_odd_values() -> None:
    """Values YAML would otherwise turn into booleans, numbers or nulls stay strings."""
    data, _ = import_one(
        "docker run -e A=yes -e B=010 -e C=null -e 'D=x: y' -e 'E=#hash' -e F=~ img:1 on 'a,b' '[x]' ''"
    )
    assert data["environment"] == {"A": "yes", "B": "010", "C": "null", "D": "x: y", "E": "#hash", "F": "~"}
    assert data["command"] == ["on", "a,b", "[x]", ""]
    assert json.loads(json.dumps(data)) == data


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("/usr/bin/docker container run --name a img:1", {"name": "a", "image": "docker.io/library/img:1"}),
        (
            "sudo -u root podman run --name=b --network host -v=/a:/a img:1",
            {"name": "b", "image": "img:1", "host_namespaces": ["network"], "mounts": ["/a:/a"]},
        ),
        (
            "docker run -eFOO=bar -e=BAR=baz -v/x:/x img:1",
            {"environment": {"FOO": "bar", "BAR": "baz"}, "mounts": ["/x:/x"]},
        ),
        ("docker run --privileged=false -- img:1 -x", {"command": ["-x"]}),
    ],
)
def test_command_line_forms(line: str, expected: dict[str, object]) -> None:
    data, _ = import_one(line)
    assert {k: data[k] for k in expected} == expected
    assert "privileged" not in data
