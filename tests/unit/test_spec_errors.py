"""Every way a spec can be wrong, with the exact message an operator sees: location, key, text, hint.

Each row runs through the real CLI twice: `validate` (exit 2, all errors) and `generate` into a
directory that must stay byte-for-byte as it was.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from compute_units.cli import app
from tests.unit.spec_error_cases import IMG, PODMAN_ARGS_AND_LIMIT_CASES

# (case, {file name: text}, expected stderr lines; {dir} is the spec directory)
CASES: list[tuple[str, dict[str, str], list[str]]] = [
    (
        "colon-in-mount-path",
        {"svc.yaml": IMG + 'mounts:\n  - {source: "/srv/a:b", target: /data}\n'},
        [
            "{dir}/svc.yaml:3:14: mounts[0].source: path contains ':': '/srv/a:b'",
            "    hint: podman's --volume and --device split on ':'",
            "compute-units: 1 error(s); nothing was written.",
        ],
    ),
    (
        "missing-image",
        {"svc.yaml": "description: x\n"},
        [
            "{dir}/svc.yaml:1:1: image: required key is missing",
            "    hint: add e.g. image: registry:5000/nova-compute:2024.1",
            "compute-units: 1 error(s); nothing was written.",
        ],
    ),
    (
        "uppercase-repo",
        {"svc.yaml": "image: 127.0.0.1:5000/Nova/compute:1\n"},
        [
            "{dir}/svc.yaml:1:8: image: invalid image reference '127.0.0.1:5000/Nova/compute:1': repository 'Nova/compute' must be lowercase",
            "compute-units: 1 error(s); nothing was written.",
        ],
    ),
    (
        "bad-digest",
        {"svc.yaml": "image: nova@sha256:abc\n"},
        [
            "{dir}/svc.yaml:1:8: image: invalid image reference 'nova@sha256:abc': bad digest 'sha256:abc' (expected sha256: and 64 hex digits)",
            "compute-units: 1 error(s); nothing was written.",
        ],
    ),
    (
        "bad-tag",
        {"svc.yaml": "image: 'nova:-bad'\n"},
        [
            "{dir}/svc.yaml:1:8: image: invalid image reference 'nova:-bad': bad tag '-bad'",
            "compute-units: 1 error(s); nothing was written.",
        ],
    ),
    (
        "unknown-key",
        {"svc.yaml": IMG + "privilged: true\n"},
        [
            "{dir}/svc.yaml:2:1: privilged: unknown key 'privilged'",
            "    hint: did you mean 'privileged'?",
            "compute-units: 1 error(s); nothing was written.",
        ],
    ),
    (
        "duplicate-key",
        {"svc.yaml": "image: 127.0.0.1:5000/nova/compute:1\nrestart: always\nrestart: 'no'\n"},
        [
            "{dir}/svc.yaml:3:1: restart: duplicate key 'restart' (first given at line 2)",
            "compute-units: 1 error(s); nothing was written.",
        ],
    ),
    (
        "yaml-syntax",
        {"svc.yaml": IMG + "mounts: [/a:/a\n"},
        [
            "{dir}/svc.yaml:3:1: YAML syntax error: did not find expected ',' or ']'",
            "compute-units: 1 error(s); nothing was written.",
        ],
    ),
    (
        "empty-file-explicit",
        {"svc.yaml": "# nothing\n"},
        [
            "{dir}/svc.yaml:1:1: spec is empty",
            "    hint: a spec needs at least 'image'",
            "compute-units: 1 error(s); nothing was written.",
        ],
    ),
    (
        "not-a-mapping",
        {"svc.yaml": "- image: x\n"},
        [
            "{dir}/svc.yaml:1:1: expected a mapping, got a list",
            "compute-units: 1 error(s); nothing was written.",
        ],
    ),
    (
        "bad-name",
        {"svc.yaml": IMG + "name: Nova_Compute\n"},
        [
            "{dir}/svc.yaml:2:7: name: invalid service name 'Nova_Compute'",
            "    hint: use lowercase letters, digits, '_', '.' and '-', starting with a letter or digit",
            "compute-units: 1 error(s); nothing was written.",
        ],
    ),
    (
        "reserved-name",
        {"svc.yaml": IMG + "name: compute-node\n"},
        [
            "{dir}/svc.yaml:2:7: name: the name 'compute-node' is reserved for the target",
            "compute-units: 1 error(s); nothing was written.",
        ],
    ),
    (
        "duplicate-service",
        {"a.yaml": IMG + "name: nova\n", "b.yaml": IMG + "name: nova\n"},
        [
            "{dir}/b.yaml:2:7: name: duplicate service 'nova' (also defined at {dir}/a.yaml:2:7)",
            "    hint: service names must be unique across all spec files",
            "compute-units: 1 error(s); nothing was written.",
        ],
    ),
    (
        "requires-unknown",
        {"nova-compute.yaml": IMG + "requires: [nova-libvrt]\n", "nova-libvirt.yaml": IMG + ""},
        [
            "{dir}/nova-compute.yaml:2:12: requires[0]: unknown service 'nova-libvrt'",
            "    hint: did you mean 'nova-libvirt'?",
            "compute-units: 1 error(s); nothing was written.",
        ],
    ),
    (
        "requires-cycle",
        {"a.yaml": IMG + "requires: [b]\n", "b.yaml": IMG + "requires: [a]\n"},
        [
            "{dir}/a.yaml:2:12: requires: dependency cycle: a -> b -> a",
            "    hint: remove one of these requires",
            "compute-units: 1 error(s); nothing was written.",
        ],
    ),
    (
        "requires-self",
        {"svc.yaml": IMG + "requires: [svc]\n"},
        [
            "{dir}/svc.yaml:2:12: requires[0]: a service cannot require itself",
            "compute-units: 1 error(s); nothing was written.",
        ],
    ),
    (
        "relative-mount",
        {"svc.yaml": IMG + "mounts: [var/lib/nova:/var/lib/nova]\n"},
        [
            "{dir}/svc.yaml:2:10: mounts[0].source: path must be absolute: 'var/lib/nova'",
            "compute-units: 1 error(s); nothing was written.",
        ],
    ),
    (
        "unnormalised-mount",
        {"svc.yaml": "image: 127.0.0.1:5000/nova/compute:1\nmounts: ['/var//lib/../nova:/var/lib/nova']\n"},
        [
            "{dir}/svc.yaml:2:10: mounts[0].source: path is not normalised: '/var//lib/../nova'",
            "    hint: write '/var/nova'",
            "compute-units: 1 error(s); nothing was written.",
        ],
    ),
    (
        "duplicate-mount-target",
        {"svc.yaml": IMG + "mounts: [/a:/data, /b:/data]\n"},
        [
            "{dir}/svc.yaml:2:20: mounts[1]: duplicate mount target '/data' (also mounts[0])",
            "compute-units: 1 error(s); nothing was written.",
        ],
    ),
    (
        "unknown-mount-option",
        {"svc.yaml": "image: 127.0.0.1:5000/nova/compute:1\nmounts: ['/a:/a:rx']\n"},
        [
            "{dir}/svc.yaml:2:10: mounts[0]: unknown mount option 'rx' (expected ro, rw or one of private, rprivate, shared, rshared, slave, rslave)",
            "compute-units: 1 error(s); nothing was written.",
        ],
    ),
    (
        "long-mount-missing-target",
        {"svc.yaml": IMG + "mounts:\n  - {source: /a}\n"},
        [
            "{dir}/svc.yaml:3:5: mounts[0].target: required key is missing",
            "compute-units: 1 error(s); nothing was written.",
        ],
    ),
    (
        "mount-bad-propagation",
        {"svc.yaml": IMG + "mounts:\n  - {source: /a, target: /a, propagation: share}\n"},
        [
            "{dir}/svc.yaml:3:43: mounts[0].propagation: unknown propagation 'share' (expected one of private, rprivate, shared, rshared, slave, rslave)",
            "    hint: did you mean 'shared'?",
            "compute-units: 1 error(s); nothing was written.",
        ],
    ),
    (
        "newline-in-env",
        {"svc.yaml": IMG + 'environment: {A: "x\\ny"}\n'},
        [
            "{dir}/svc.yaml:2:18: environment.A: value contains a newline",
            "    hint: unit files cannot carry it; remove it",
            "compute-units: 1 error(s); nothing was written.",
        ],
    ),
    (
        "nul-in-description",
        {"svc.yaml": IMG + 'description: "a\\0b"\n'},
        [
            "{dir}/svc.yaml:2:14: description: value contains a NUL byte",
            "    hint: unit files cannot carry it; remove it",
            "compute-units: 1 error(s); nothing was written.",
        ],
    ),
    (
        "bell-in-command",
        {"svc.yaml": IMG + 'command: [/bin/x, "\\x07"]\n'},
        [
            "{dir}/svc.yaml:2:19: command[1]: value contains a control character (U+0007)",
            "    hint: unit files cannot carry it; remove it",
            "compute-units: 1 error(s); nothing was written.",
        ],
    ),
    (
        "tab-in-env",
        {"svc.yaml": IMG + 'environment: {A: "x\\ty"}\n'},
        [
            "{dir}/svc.yaml:2:18: environment.A: value contains a tab",
            "    hint: unit files cannot carry it; remove it",
            "compute-units: 1 error(s); nothing was written.",
        ],
    ),
    (
        "bad-duration",
        {"svc.yaml": IMG + "stop_timeout: 10x\n"},
        [
            "{dir}/svc.yaml:2:15: stop_timeout: invalid duration '10x'",
            "    hint: write e.g. 30s, 2min, 500ms or 1h",
            "compute-units: 1 error(s); nothing was written.",
        ],
    ),
    (
        "stop-timeout-zero",
        {"svc.yaml": IMG + "stop_timeout: 0s\n"},
        [
            "{dir}/svc.yaml:2:15: stop_timeout: must be between 1s and 1h",
            "compute-units: 1 error(s); nothing was written.",
        ],
    ),
    (
        "bad-restart",
        {"svc.yaml": IMG + "restart: on-fail\n"},
        [
            "{dir}/svc.yaml:2:10: restart: invalid restart policy 'on-fail' (expected one of no, always, on-success, on-failure, on-abnormal, on-abort, on-watchdog)",
            "    hint: did you mean 'on-failure'?",
            "compute-units: 1 error(s); nothing was written.",
        ],
    ),
    (
        "unknown-namespace",
        {"svc.yaml": IMG + "host_namespaces: [pid, net]\n"},
        [
            "{dir}/svc.yaml:2:24: host_namespaces[1]: unknown namespace 'net' (expected one of pid, network, ipc, uts, cgroup)",
            "    hint: did you mean 'network'?",
            "compute-units: 1 error(s); nothing was written.",
        ],
    ),
    (
        "namespace-twice",
        {"svc.yaml": IMG + "host_namespaces: [pid, pid]\n"},
        [
            "{dir}/svc.yaml:2:24: host_namespaces[1]: 'pid' is listed twice",
            "compute-units: 1 error(s); nothing was written.",
        ],
    ),
    (
        "command-string",
        {"svc.yaml": IMG + "command: /usr/sbin/libvirtd --listen\n"},
        [
            "{dir}/svc.yaml:2:10: command: expected a list of strings (argv), got a string",
            "    hint: shell strings are not accepted; write command: [/usr/sbin/libvirtd, --listen]",
            "compute-units: 1 error(s); nothing was written.",
        ],
    ),
    (
        "command-empty",
        {"svc.yaml": IMG + "command: []\n"},
        [
            "{dir}/svc.yaml:2:10: command: must not be empty",
            "    hint: omit command: to use the image's default",
            "compute-units: 1 error(s); nothing was written.",
        ],
    ),
    (
        "yes-boolean",
        {"svc.yaml": IMG + "privileged: yes\n"},
        [
            "{dir}/svc.yaml:2:13: privileged: expected true or false, got 'yes'",
            "compute-units: 1 error(s); nothing was written.",
        ],
    ),
    (
        "secret-plain-string",
        {"svc.yaml": IMG + "command: [/x]\nsecrets: {DB_PASSWORD: hunter2}\n"},
        [
            "{dir}/svc.yaml:3:24: secrets.DB_PASSWORD: secret values are never written in a spec",
            "    hint: write DB_PASSWORD: {file: /etc/compute-units/secrets/db_password} or {podman_secret: NAME}",
            "compute-units: 1 error(s); nothing was written.",
        ],
    ),
    (
        "secret-both-sources",
        {
            "svc.yaml": IMG
            + "command: [/x]\nsecrets: {DB_PASSWORD: {file: /etc/compute-units/secrets/db, podman_secret: db}}\n"
        },
        [
            "{dir}/svc.yaml:3:24: secrets.DB_PASSWORD: give exactly one of 'file' or 'podman_secret'",
            "compute-units: 1 error(s); nothing was written.",
        ],
    ),
    (
        "secret-file-missing",
        {
            "svc.yaml": IMG
            + "command: [/x]\nsecrets: {DB_PASSWORD: {file: /etc/compute-units/secrets/missing}}\n"
        },
        [
            "{dir}/svc.yaml:3:31: secrets.DB_PASSWORD.file: secret file does not exist: /etc/compute-units/secrets/missing",
            "    hint: create it with mode 0600, owned by root",
            "compute-units: 1 error(s); nothing was written.",
        ],
    ),
    (
        "secret-also-env",
        {
            "svc.yaml": IMG
            + "command: [/x]\nenvironment: {DB_PASSWORD: x}\nsecrets: {DB_PASSWORD: {podman_secret: db}}\n"
        },
        [
            "{dir}/svc.yaml:4:24: secrets.DB_PASSWORD: 'DB_PASSWORD' is also set in environment",
            "    hint: a variable is either plain or secret",
            "compute-units: 1 error(s); nothing was written.",
        ],
    ),
    (
        "init-with-host-pid",
        {"svc.yaml": IMG + "host_namespaces: [pid]\npodman_args: [--init]\n"},
        [
            "{dir}/svc.yaml:3:15: podman_args[0]: --init cannot be combined with the host PID namespace",
            "    hint: podman refuses --init with --pid=host; remove one of them",
            "compute-units: 1 error(s); nothing was written.",
        ],
    ),
    (
        "keeps-vms-without-pid",
        {
            "svc.yaml": IMG
            + "host_namespaces: [network]\nmounts: [/sys/fs/cgroup:/sys/fs/cgroup]\nkeeps_vms: true\n"
        },
        [
            "{dir}/svc.yaml:4:12: keeps_vms: needs 'pid' and 'cgroup' in host_namespaces",
            "    hint: qemu started by libvirt must outlive the container and stay in its machine scope",
            "compute-units: 1 error(s); nothing was written.",
        ],
    ),
    (
        "keeps-vms-without-cgroup-mount",
        {"svc.yaml": IMG + "host_namespaces: [pid, cgroup]\nkeeps_vms: true\n"},
        [
            "{dir}/svc.yaml:3:12: keeps_vms: needs /sys/fs/cgroup mounted into the container",
            "    hint: add - /sys/fs/cgroup:/sys/fs/cgroup to mounts",
            "compute-units: 1 error(s); nothing was written.",
        ],
    ),
    (
        "disruptive-yes",
        {"svc.yaml": IMG + "disruptive: yes\n"},
        [
            "{dir}/svc.yaml:2:13: disruptive: expected true, false or a reason, got 'yes'",
            "    hint: write disruptive: true, or the reason: disruptive: its restart cuts every VM's network",
            "compute-units: 1 error(s); nothing was written.",
        ],
    ),
    (
        "disruptive-list",
        {"svc.yaml": IMG + "disruptive: [network]\n"},
        [
            "{dir}/svc.yaml:2:13: disruptive: expected a string, got a list",
            "compute-units: 1 error(s); nothing was written.",
        ],
    ),
    (
        "health-without-command",
        {"svc.yaml": IMG + "health: {interval: 30s}\n"},
        [
            "{dir}/svc.yaml:2:9: health.command: required key is missing",
            "    hint: e.g. command: [virsh, list]",
            "compute-units: 1 error(s); nothing was written.",
        ],
    ),
    (
        "health-docker-syntax",
        {"svc.yaml": "image: 127.0.0.1:5000/nova/compute:1\nhealth: {command: [CMD-SHELL, 'virsh list']}\n"},
        [
            "{dir}/svc.yaml:2:20: health.command[0]: 'CMD-SHELL' is Docker's health-check syntax, not a program",
            "    hint: give the argv itself, e.g. [virsh, list]",
            "compute-units: 1 error(s); nothing was written.",
        ],
    ),
    (
        "health-bad-retries",
        {"svc.yaml": IMG + "health: {command: [virsh, list], retries: many}\n"},
        [
            "{dir}/svc.yaml:2:43: health.retries: expected a positive integer, got 'many'",
            "compute-units: 1 error(s); nothing was written.",
        ],
    ),
    (
        "preflight-bad-unit",
        {"svc.yaml": IMG + "preflight: {host_units_inactive: [libvirtd]}\n"},
        [
            "{dir}/svc.yaml:2:35: preflight.host_units_inactive[0]: invalid unit name 'libvirtd'",
            "    hint: give the full unit name, e.g. libvirtd.service",
            "compute-units: 1 error(s); nothing was written.",
        ],
    ),
    (
        "env-bad-name",
        {"svc.yaml": IMG + "environment: {1ABC: x}\n"},
        [
            "{dir}/svc.yaml:2:21: environment.1ABC: invalid variable name '1ABC'",
            "compute-units: 1 error(s); nothing was written.",
        ],
    ),
    (
        "many-errors-one-file",
        {"svc.yaml": "imagee: x\nprivileged: maybe\nmounts: [relative:/x]\nrestart: sometimes\n"},
        [
            "{dir}/svc.yaml:1:1: imagee: unknown key 'imagee'",
            "    hint: did you mean 'image'?",
            "{dir}/svc.yaml:1:1: image: required key is missing",
            "    hint: add e.g. image: registry:5000/nova-compute:2024.1",
            "{dir}/svc.yaml:2:13: privileged: expected true or false, got 'maybe'",
            "{dir}/svc.yaml:3:10: mounts[0].source: path must be absolute: 'relative'",
            "{dir}/svc.yaml:4:10: restart: invalid restart policy 'sometimes' (expected one of no, always, on-success, on-failure, on-abnormal, on-abort, on-watchdog)",
            "compute-units: 5 error(s); nothing was written.",
        ],
    ),
    *PODMAN_ARGS_AND_LIMIT_CASES,
]


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """A host root with one proper secret file, for specs that reference secrets."""
    secrets = tmp_path / "root/etc/compute-units/secrets"
    secrets.mkdir(parents=True)
    (secrets / "db").write_text("s3cret")
    (secrets / "db").chmod(0o600)
    return tmp_path / "root"


def write_specs(directory: Path, files: dict[str, str]) -> Path:
    directory.mkdir()
    for name, text in files.items():
        (directory / name).write_text(text)
    return directory


def test_there_are_enough_cases() -> None:
    assert len(CASES) >= 30
    assert len({case for case, _, _ in CASES}) == len(CASES)


@pytest.mark.parametrize(("case", "files", "expected"), CASES, ids=[c[0] for c in CASES])
def test_validate_reports_every_error(
    case: str, files: dict[str, str], expected: list[str], tmp_path: Path, root: Path
) -> None:
    specs = write_specs(tmp_path / "specs", files)
    result = CliRunner().invoke(app, ["validate", "--spec", str(specs), "--root", str(root)])
    assert result.exit_code == 2
    assert result.stdout == ""
    assert result.stderr.splitlines() == [line.replace("{dir}", str(specs)) for line in expected]


@pytest.mark.parametrize(("case", "files", "expected"), CASES, ids=[c[0] for c in CASES])
def test_generate_writes_nothing(
    case: str, files: dict[str, str], expected: list[str], tmp_path: Path, root: Path
) -> None:
    specs = write_specs(tmp_path / "specs", files)
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.service").write_text("[Service]\nExecStart=/bin/true\n")
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    result = CliRunner().invoke(
        app, ["generate", "--spec", str(specs), "--root", str(root), "--output-dir", str(out)]
    )
    assert result.exit_code == 2
    assert result.stderr.splitlines()[-1].endswith("error(s); nothing was written.")
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


def test_group_readable_secret_file_is_a_warning_not_an_error(tmp_path: Path, root: Path) -> None:
    (root / "etc/compute-units/secrets/db").chmod(0o644)
    specs = write_specs(
        tmp_path / "specs",
        {"svc.yaml": IMG + "command: [/x]\nsecrets: {DB: {file: /etc/compute-units/secrets/db}}\n"},
    )
    result = CliRunner().invoke(app, ["validate", "--spec", str(specs), "--root", str(root)])
    assert result.exit_code == 0
    assert result.stderr.splitlines() == [
        f"{specs}/svc.yaml:3:22: warning: secrets.DB.file: secret file /etc/compute-units/secrets/db "
        "is readable by group or others (mode 0644)",
        "    hint: chmod 0600 /etc/compute-units/secrets/db",
    ]
    assert result.stdout == "1 service(s) valid: svc\n"
