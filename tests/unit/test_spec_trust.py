"""Spec files are read only when they can be trusted, and no diagnostic quotes a file that is not
a spec: owner and mode of the file and its directory, symlinks, devices, fifos, size."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from compute_units import spec
from compute_units.cli import app
from compute_units.spec.trust import MAX_SPEC_BYTES

GOOD = "image: 127.0.0.1:5000/nova/compute:1\n"
SECRET = "s3cr3t-HASH-value"


def specs_dir(tmp_path: Path) -> Path:
    directory = tmp_path / "specs"
    directory.mkdir(mode=0o755)
    return directory


def validate(path: Path) -> tuple[int, list[str]]:
    result = CliRunner().invoke(app, ["validate", "--spec", str(path)])
    assert result.stdout == ""
    return result.exit_code, result.stderr.splitlines()


def test_a_root_owned_spec_not_writable_by_others_is_read(tmp_path: Path) -> None:
    directory = specs_dir(tmp_path)
    (directory / "svc.yaml").write_text(GOOD)
    services, _ = spec.load(spec.discover([directory]))
    assert services.names() == ["svc"]


@pytest.mark.parametrize(("mode", "shown"), [(0o664, "0664"), (0o646, "0646")])
def test_a_spec_writable_by_group_or_others_is_refused(tmp_path: Path, mode: int, shown: str) -> None:
    path = specs_dir(tmp_path) / "svc.yaml"
    path.write_text(GOOD)
    path.chmod(mode)
    assert validate(path.parent) == (
        2,
        [
            f"{path}:1:1: spec file {path} is writable by group or others (mode {shown}); it was not read",
            f"    hint: chown root:root {path} && chmod go-w {path}",
            "compute-units: 1 error(s); nothing was written.",
        ],
    )


def test_a_spec_owned_by_another_user_is_refused(tmp_path: Path) -> None:
    path = specs_dir(tmp_path) / "svc.yaml"
    path.write_text(GOOD)
    os.chown(path, 1000, 1000)
    assert validate(path) == (
        2,
        [
            f"{path}:1:1: spec file {path} is owned by uid 1000, not root; it was not read",
            f"    hint: chown root:root {path} && chmod go-w {path}",
            "compute-units: 1 error(s); nothing was written.",
        ],
    )


def test_a_spec_in_a_directory_others_can_write_is_refused(tmp_path: Path) -> None:
    directory = specs_dir(tmp_path)
    directory.chmod(0o1777)  # like /tmp: the sticky bit does not make it trusted
    path = directory / "svc.yaml"
    path.write_text(GOOD)
    for given in (directory, path):  # found in the directory, or named with --spec
        assert validate(given) == (
            2,
            [
                f"{path}:1:1: directory {directory} is writable by group or others (mode 1777); "
                "the spec was not read",
                f"    hint: chown root:root {directory} && chmod go-w {directory}",
                "compute-units: 1 error(s); nothing was written.",
            ],
        )


def test_the_trusted_owner_is_a_parameter(tmp_path: Path) -> None:
    directory = specs_dir(tmp_path)
    path = directory / "svc.yaml"
    path.write_text(GOOD)
    os.chown(directory, 1000, 1000)
    os.chown(path, 1000, 1000)
    service, problems = spec.parse_file(path, owner_uid=1000)
    assert service is not None and problems == []
    _, problems = spec.parse_file(path)
    assert [p.message for p in problems] == [
        f"directory {directory} is owned by uid 1000, not root; the spec was not read"
    ]
    assert problems[0].hint == f"chown root:root {directory} && chmod go-w {directory}"


def test_the_command_context_passes_its_trusted_owner_to_both_loaders(tmp_path: Path) -> None:
    from compute_units.context import Context
    from compute_units.errors import SpecError

    directory = specs_dir(tmp_path)
    (directory / "svc.yaml").write_text(GOOD)
    os.chown(directory, 1000, 1000)
    os.chown(directory / "svc.yaml", 1000, 1000)
    as_user = Context((directory,), Path("/"), (), owner_uid=1000)
    assert as_user.load()[0].names() == ["svc"]
    assert as_user.load_for(["svc"]).names() == ["svc"]
    for load in (
        Context((directory,), Path("/"), ()).load,
        lambda: Context((directory,), Path("/"), ()).load_for(["svc"]),
    ):
        with pytest.raises(SpecError) as caught:
            load()
        assert [d.message for d in caught.value.diagnostics] == [
            f"directory {directory} is owned by uid 1000, not root; the spec was not read"
        ]


def test_a_symlink_is_followed_only_to_a_trusted_spec_file(tmp_path: Path) -> None:
    directory = specs_dir(tmp_path)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir(mode=0o755)
    (elsewhere / "real.yaml").write_text(GOOD)
    (directory / "svc.yaml").symlink_to(elsewhere / "real.yaml")
    services, _ = spec.load(spec.discover([directory]))
    assert services.names() == ["svc"]
    elsewhere.chmod(0o777)
    code, lines = validate(directory)
    assert (code, lines[0]) == (
        2,
        f"{directory}/svc.yaml:1:1: directory {elsewhere} is writable by group or others (mode 0777); "
        "the spec was not read",
    )


@pytest.mark.parametrize("target", ["/etc/shadow", "/etc/passwd", "/dev/zero"])
def test_a_symlink_to_a_file_that_is_not_a_spec_is_not_read(tmp_path: Path, target: str) -> None:
    link = specs_dir(tmp_path) / "svc.yaml"
    link.symlink_to(target)
    assert validate(link.parent) == (
        2,
        [
            f"{link}:1:1: spec is a symlink to {target}, which is not a .yaml or .yml file; it was not read",
            "    hint: symlinks may point only at spec files",
            "compute-units: 1 error(s); nothing was written.",
        ],
    )


def test_devices_and_fifos_are_refused_without_being_opened(tmp_path: Path) -> None:
    directory = specs_dir(tmp_path)
    fifo = directory / "fifo.yaml"
    os.mkfifo(fifo, 0o644)  # opening it for reading would block: the check must come first
    device = tmp_path / "dev.yaml"
    os.mknod(device, 0o644 | 0o020000, os.makedev(1, 5))  # a character device, /dev/zero's numbers
    (directory / "zero.yaml").symlink_to(device)
    code, lines = validate(directory)
    assert code == 2
    assert lines == [
        f"{fifo}:1:1: spec is not a regular file (a device, fifo or socket); it was not read",
        "    hint: specs are regular files",
        f"{directory}/zero.yaml:1:1: spec is not a regular file (a device, fifo or socket), through a "
        f"symlink to {device}; it was not read",
        "    hint: specs are regular files",
        "compute-units: 2 error(s); nothing was written.",
    ]


def test_a_spec_over_the_size_limit_is_refused_before_parsing(tmp_path: Path) -> None:
    path = specs_dir(tmp_path) / "svc.yaml"
    path.write_text(GOOD + "#" * MAX_SPEC_BYTES + "\n")
    assert validate(path) == (
        2,
        [
            f"{path}:1:1: spec file is larger than 1024 KiB (the limit); it was not read",
            "compute-units: 1 error(s); nothing was written.",
        ],
    )


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            f"root:{SECRET}:19000:0:99999:7:::\nnova:!:19000::::::\n",
            "not a service spec: none of its keys is a spec key",
        ),
        (f"root:{SECRET}:19000:0:99999:7\n", "expected a mapping, got a string"),
        (f"password: {SECRET}\nuser: nova\n", "not a service spec: none of its keys is a spec key"),
        (f"- {SECRET}\n", "expected a mapping, got a list"),
        (f"image: *{SECRET}\n", "YAML syntax error: found undefined alias"),
        (f"image: x\n{SECRET}: [\n", "YAML syntax error: did not find expected node content"),
        (f'image: "\\{SECRET}"\n', "YAML syntax error: found unknown escape character"),
        ("@" + SECRET + "\n", "YAML syntax error: found character that cannot start any token"),
    ],
)
def test_no_diagnostic_quotes_a_file_that_is_not_a_spec(tmp_path: Path, text: str, message: str) -> None:
    path = specs_dir(tmp_path) / "svc.yaml"
    path.write_text(text)
    _, problems = spec.parse_file(path)
    assert [p.message for p in problems] == [message]
    assert not [p for p in problems if SECRET in p.format()]
