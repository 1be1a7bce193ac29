"""`compute-units import`: how each docker/podman flag maps to a spec key, shell splitting, durations."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from compute_units import importer
from compute_units.importer import Word
from tests.unit.test_import import exec_start, load, run

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
