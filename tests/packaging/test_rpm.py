"""The RPM: built once per session with packaging/build-rpm.sh, inspected with rpm and rpmlint,
installed into a scratch root and run from there.

The installed scripts start with #!/usr/bin/python3, and that is the interpreter they run with
here: the runtime dependencies come from the distribution's packages (`make deps` installs
python3-jinja2, -yaml, -typer, -rich and -pystemd), never from the venv running pytest, so a
dependency the package forgot would show. PYTHONPATH adds the scratch root's site-packages and,
on Debian 12 only, typer 0.15.2 next to Debian's (python3-typer 0.7 cannot build the CLI; Fedora's
is newer): the same overlay the sandbox nodes use (compute_units_dev/rootfs.py, PYPI_EXTRAS).
"""

from __future__ import annotations

import gzip
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest
import typer.core
import typer.main

from compute_units import __version__, facts
from compute_units.cli import app
from compute_units.errors import ExitCode

REPO = Path(__file__).resolve().parents[2]
SPEC = REPO / "packaging" / "compute-units.spec"
BUILD_PYTHON = sys.executable  # builds the package (setuptools from the venv)
PYTHON = "/usr/bin/python3"  # runs it: what the installed scripts' #! names


def host_release() -> str:
    fields = dict(
        line.split("=", 1) for line in Path("/etc/os-release").read_text().splitlines() if "=" in line
    )
    return fields.get("VERSION_CODENAME", "").strip('"')


def python_overlay() -> list[str]:
    """Where PYPI_EXTRAS for this host's Debian release are (none on other hosts)."""
    from compute_units_dev.rootfs import PYPI_EXTRAS, python_extras

    release = host_release()
    extras = python_extras(release) if release in PYPI_EXTRAS else None
    return [str(extras)] if extras else []


GENERATOR = "/usr/lib/systemd/system-generators/compute-units-generator"
DOCS = "/usr/share/doc/compute-units"
REQUIRES = (
    "podman",
    "conmon",
    "systemd",
    "python3-jinja2",
    "python3-pyyaml",
    "python3-typer",
    "python3-rich",
    "python3-pystemd",
)


def run(
    *args: str | Path,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    check: bool = True,
) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [str(a) for a in args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        cwd=cwd,
        timeout=600,
        check=False,
    )
    if check and result.returncode != 0:
        pytest.fail(f"{args} exited {result.returncode}\n{result.stdout}\n{result.stderr}")
    return result


@dataclass(frozen=True)
class Build:
    rpm: Path
    srpm: Path
    seconds: float
    files: tuple[str, ...]

    @property
    def sitelib(self) -> str:
        """/usr/lib/pythonX.Y/site-packages, as the package has it."""
        init = next(
            f
            for f in self.files
            if re.fullmatch(r"/usr/lib/python3\.\d+/site-packages/compute_units/__init__\.py", f)
        )
        return init.removesuffix("/compute_units/__init__.py")


@dataclass(frozen=True)
class Installed:
    root: Path
    sitelib: Path

    def env(self, **extra: str) -> dict[str, str]:
        return {"PYTHONPATH": os.pathsep.join([str(self.sitelib), *python_overlay()]), **extra}

    def run(
        self, script: str, *args: str | Path, check: bool = True, **env: str
    ) -> subprocess.CompletedProcess[str]:
        """An installed entry point, run by the system's python3 (see the module doc)."""
        return run(
            PYTHON, self.root / script.lstrip("/"), *args, env=self.env(**env), cwd=self.root, check=check
        )


@pytest.fixture(scope="session")
def build(tmp_path_factory: pytest.TempPathFactory) -> Build:
    # `make deps` installs rpm: a missing rpmbuild is a broken setup, not a reason to skip
    assert shutil.which("rpmbuild") is not None, "rpmbuild not installed (Debian: apt-get install rpm)"
    out = tmp_path_factory.mktemp("build")
    started = time.monotonic()
    result = run(REPO / "packaging" / "build-rpm.sh", env={"BUILD": str(out), "PYTHON": BUILD_PYTHON})
    seconds = time.monotonic() - started
    rpm = Path(result.stdout.strip().splitlines()[-1])
    (srpm,) = (out / "rpm" / "SRPMS").glob("*.src.rpm")
    files = tuple(run("rpm", "-qlp", rpm).stdout.splitlines())
    return Build(rpm, srpm, seconds, files)


@pytest.fixture(scope="session")
def installed(build: Build, tmp_path_factory: pytest.TempPathFactory) -> Installed:
    """`rpm -i` into an empty root: no dependencies (not RPMs here), no scriptlets (there are none)."""
    root = tmp_path_factory.mktemp("root")
    db = ("--root", str(root), "--dbpath", "/var/lib/rpm")
    run("rpm", *db, "--nodeps", "--noscripts", "-i", build.rpm)
    assert run("rpm", *db, "-q", "compute-units").stdout.strip() == build.rpm.name.removesuffix(".rpm")
    return Installed(root, root / build.sitelib.lstrip("/"))


@pytest.fixture(scope="session")
def configured(installed: Installed) -> Installed:
    """What an admin does after installing: secret files, and the example specs as live specs."""
    examples = installed.root / DOCS.lstrip("/") / "examples" / "services"
    secrets = installed.root / "etc/compute-units/secrets"
    for spec in examples.glob("*.yaml"):
        for name in re.findall(r"/etc/compute-units/secrets/(\w+)", spec.read_text()):
            (secrets / name).write_text(f"{name}-value\n")
            (secrets / name).chmod(0o600)
        shutil.copy(spec, installed.root / "etc/compute-units/services" / spec.name)
    return installed


# --- the build -----------------------------------------------------------------------------------


def test_build_prints_the_rpm(build: Build) -> None:
    assert build.rpm.is_file()
    assert build.rpm.name == f"compute-units-{__version__}-1.noarch.rpm"
    assert build.srpm.name == f"compute-units-{__version__}-1.src.rpm"
    print(f"build-rpm.sh took {build.seconds:.1f} s")


def test_file_list(build: Build) -> None:
    files = set(build.files)
    sitelib = build.sitelib
    expected = {
        "/usr/bin/compute-units",
        GENERATOR,
        f"{sitelib}/compute_units/cli.py",
        f"{sitelib}/compute_units/generator.py",
        f"{sitelib}/compute_units/templates/service.j2",
        "/usr/share/compute-units/templates/service.j2",
        "/usr/share/compute-units/templates/target.j2",
        "/usr/share/compute-units/services",
        "/usr/share/bash-completion/completions/compute-units",
        "/usr/share/zsh/site-functions/_compute-units",
        f"{DOCS}/README.md",
        f"{DOCS}/examples/services/nova-libvirt.yaml",
        f"{DOCS}/examples/services/nova-compute.yaml",
        f"{DOCS}/examples/services/nova-network.yaml",
        "/usr/share/licenses/compute-units/LICENSE",
        "/etc/compute-units/services",
        "/etc/compute-units/secrets",
        "/var/lib/compute-units",
        "/var/cache/compute-units",
        "/var/cache/compute-units/generator.cache",  # %ghost: owned, removed with the package
    }
    assert expected <= files, sorted(expected - files)
    assert any(
        re.fullmatch(r"/usr/share/man/man1/compute-units\.1(\.gz|\.bz2|\.xz|\.zst)?", f) for f in files
    )
    # the examples are documentation, never specs on the search path
    live = ("/etc/compute-units/", "/run/compute-units/", "/usr/share/compute-units/")
    assert not [f for f in files if f.endswith(".yaml") and f.startswith(live)]
    assert "/usr/bin/compute-units-generator" not in files


def test_modes(build: Build) -> None:
    query = "[%{FILEMODES:perms} %{FILEUSERNAME}:%{FILEGROUPNAME} %{FILENAMES}\n]"
    modes = {
        line.split(" ", 2)[2]: line.split(" ", 2)[:2]
        for line in run("rpm", "-qp", "--qf", query, build.rpm).stdout.splitlines()
    }
    assert modes["/etc/compute-units/secrets"] == ["drwx------", "root:root"]
    assert modes["/var/lib/compute-units"] == ["drwx------", "root:root"]
    assert modes["/var/cache/compute-units"] == ["drwxr-xr-x", "root:root"]
    assert modes["/etc/compute-units/services"] == ["drwxr-xr-x", "root:root"]
    assert modes["/usr/bin/compute-units"] == ["-rwxr-xr-x", "root:root"]
    assert modes[GENERATOR] == ["-rwxr-xr-x", "root:root"]


def test_metadata(build: Build) -> None:
    info = dict(
        (key.strip(), value.strip())
        for key, _, value in (
            line.partition(":") for line in run("rpm", "-qip", build.rpm).stdout.splitlines()
        )
        if key.strip() in ("Name", "Version", "License", "Architecture", "Summary")
    )
    assert info["Name"] == "compute-units"
    assert info["Version"] == __version__
    assert info["License"] == "Apache-2.0"
    assert info["Architecture"] == "noarch"
    requires = {line.split()[0] for line in run("rpm", "-qpR", build.rpm).stdout.splitlines()}
    assert set(REQUIRES) <= requires, sorted(set(REQUIRES) - requires)


def test_installed_scripts_use_the_system_python(installed: Installed) -> None:
    for script in ("usr/bin/compute-units", GENERATOR.lstrip("/")):
        assert (installed.root / script).read_text().splitlines()[0].startswith("#!/usr/bin/python3")


def test_rpmlint(build: Build) -> None:
    assert shutil.which("rpmlint") is not None, "rpmlint not installed (make deps installs it)"
    config = REPO / "packaging" / "rpmlint.toml"
    result = run("rpmlint", "-c", config, build.rpm, build.srpm, SPEC, check=False)
    print(result.stdout, result.stderr)
    summary = re.search(r"(\d+) errors, (\d+) warnings", result.stdout)
    assert summary, result.stdout + result.stderr
    assert summary.group(1) == "0", result.stdout
    assert result.returncode == 0, result.stdout + result.stderr


# --- installed into a scratch root, and run from there -------------------------------------------


def test_installed_cli_version(installed: Installed) -> None:
    assert (
        installed.run("/usr/bin/compute-units", "--version").stdout.strip() == f"compute-units {__version__}"
    )
    where = run(
        PYTHON,
        "-c",
        "import compute_units; print(compute_units.__file__)",
        env=installed.env(),
        cwd=installed.root,
    )
    assert Path(where.stdout.strip()).is_relative_to(installed.sitelib)


def test_installed_cli_validates_the_examples(configured: Installed) -> None:
    examples = configured.root / DOCS.lstrip("/") / "examples" / "services"
    result = configured.run(
        "/usr/bin/compute-units", "validate", "--spec", examples, "--root", configured.root
    )
    assert "3 service(s) valid: " in result.stdout
    for name in ("nova-compute", "nova-libvirt", "nova-network"):
        assert name in result.stdout


def test_installed_cli_without_secrets_is_exit_2(installed: Installed, tmp_path: Path) -> None:
    examples = installed.root / DOCS.lstrip("/") / "examples" / "services"
    result = installed.run(
        "/usr/bin/compute-units", "validate", "--spec", examples, "--root", tmp_path, check=False
    )
    assert result.returncode == 2, result.stdout + result.stderr
    assert "secrets" in result.stderr


def pulled(root: Path, podman_version: str, images: Mapping[str, tuple[list[str], list[str]]]) -> None:
    """What a host has once podman is installed and `compute-units pull` ran: a podman binary and
    the facts record (podman's version; for podman < 5.3, the images' ENTRYPOINT and CMD). The
    generator under COMPUTE_UNITS_ROOT never runs podman: it reads the record, as at boot."""
    podman = root / facts.PODMAN.lstrip("/")
    podman.parent.mkdir(parents=True, exist_ok=True)
    podman.write_text("#!/bin/sh\nexit 1\n")
    podman.chmod(0o755)
    probe = facts.Probe(lambda: f"podman version {podman_version}", lambda refs: {r: images[r] for r in refs})
    recorder = facts.Recorder(root, probe, str(podman))
    recorder.podman_version()
    recorder.image_configs(list(images), ask_first=True)
    recorder.save()


def test_installed_generator(configured: Installed, tmp_path: Path) -> None:
    normal, early, late = (tmp_path / d for d in ("normal", "early", "late"))
    for directory in (normal, early, late):
        directory.mkdir()
    kolla = (["dumb-init", "--single-child", "--"], ["kolla_start"])
    images = {f"127.0.0.1:5000/compute/{name}:2024.1": kolla for name in ("nova-compute", "nova-network")}
    pulled(configured.root, "4.9.4", images)  # the examples with secrets
    result = configured.run(GENERATOR, normal, early, late, COMPUTE_UNITS_ROOT=str(configured.root))
    assert "generated 3 service(s)" in result.stderr
    units = {p.relative_to(normal).as_posix() for p in normal.rglob("*")}
    for unit in (
        "nova-libvirt.service",
        "nova-compute.service",
        "nova-network.service",
        "compute-node.target",
    ):
        assert unit in units
    assert (normal / "multi-user.target.wants" / "compute-node.target").exists()
    assert "127.0.0.1:5000/compute/nova-libvirt:2024.1" in (normal / "nova-libvirt.service").read_text()
    # podman 4.9: the recorded ENTRYPOINT runs after the secrets loader
    compute = (normal / "nova-compute.service").read_text()
    assert "\n# Secrets: loader (" in compute
    assert r"\"compute-units-secrets\",\"dumb-init\",\"--single-child\",\"--\"]" in compute
    assert not any(early.iterdir()) and not any(late.iterdir())


# --- man page and completion ---------------------------------------------------------------------


def man_page(installed: Installed) -> Path:
    (page,) = (installed.root / "usr/share/man/man1").glob("compute-units.1*")
    return page


def test_man_page_renders_without_warnings(installed: Installed, tmp_path: Path) -> None:
    page = man_page(installed)
    source = tmp_path / "compute-units.1"
    source.write_bytes(gzip.decompress(page.read_bytes()) if page.suffix == ".gz" else page.read_bytes())
    groff = run("groff", "-man", "-Tutf8", "-ww", "-z", source)
    assert groff.stderr == ""
    man = run(
        "man", "--warnings", "-l", page, env={"MANWIDTH": "100", "MANPAGER": "cat", "LC_ALL": "C.UTF-8"}
    )
    assert man.stderr == ""


def test_man_page_documents_every_command_and_option(installed: Installed) -> None:
    text = run(
        "man", "-l", man_page(installed), env={"MANWIDTH": "200", "MANPAGER": "cat", "LC_ALL": "C.UTF-8"}
    ).stdout
    root = typer.main.get_command(app)
    assert isinstance(root, typer.core.TyperGroup)
    sections = re.split(
        r"\n {3}(\S+)\n", "\n" + text.split("\nCOMMANDS\n", 1)[1].split("\nEXIT STATUS\n", 1)[0]
    )
    documented = dict(zip(sections[1::2], sections[2::2], strict=True))
    assert list(documented) == list(root.commands)
    for name, command in root.commands.items():
        for param in command.params:
            for option in (*param.opts, *param.secondary_opts):
                if option.startswith("-"):
                    assert option in documented[name], f"{name} {option}"
    for option in ("--version", "--install-completion", "--show-completion"):
        assert option in text.split("\nCOMMANDS\n", 1)[0]
    exit_status = text.split("\nEXIT STATUS\n", 1)[1].split("\nFILES\n", 1)[0]
    assert re.findall(r"^ {7}(\d) ", exit_status, re.MULTILINE) == [str(int(c)) for c in ExitCode]


def shim(installed: Installed, directory: Path) -> dict[str, str]:
    """PATH with a `compute-units` that runs the installed one (completion scripts call it by name)."""
    directory.mkdir(exist_ok=True)
    command = directory / "compute-units"
    command.write_text(f'#!/bin/sh\nexec "{PYTHON}" "{installed.root}/usr/bin/compute-units" "$@"\n')
    command.chmod(0o755)
    return installed.env(PATH=f"{directory}:{os.environ['PATH']}")


def test_bash_completion_completes_from_the_installed_cli(installed: Installed, tmp_path: Path) -> None:
    completion = installed.root / "usr/share/bash-completion/completions/compute-units"
    script = (
        f'source "{completion}"\n'
        "complete -p compute-units\n"
        'COMP_WORDS=(compute-units val); COMP_CWORD=1; _compute_units_completion compute-units; echo "${COMPREPLY[@]}"\n'
        'COMP_WORDS=(compute-units generate --dr); COMP_CWORD=2; _compute_units_completion compute-units; echo "${COMPREPLY[@]}"\n'
    )
    lines = run("bash", "--norc", "-c", script, env=shim(installed, tmp_path / "bin")).stdout.splitlines()
    assert lines[0].endswith(" compute-units")
    assert lines[1:] == ["validate", "--dry-run"]


def test_zsh_completion(installed: Installed) -> None:
    text = (installed.root / "usr/share/zsh/site-functions/_compute-units").read_text()
    assert text.lstrip().startswith("#compdef compute-units")
    assert "_COMPUTE_UNITS_COMPLETE=complete_zsh" in text
    if shutil.which("zsh"):
        run("zsh", "-n", installed.root / "usr/share/zsh/site-functions/_compute-units")


def test_show_and_install_completion_agree_with_the_package(installed: Installed, tmp_path: Path) -> None:
    """typer's --show-completion/--install-completion still work and give the packaged script."""
    packaged = (installed.root / "usr/share/bash-completion/completions/compute-units").read_text()
    env = {**shim(installed, tmp_path / "bin"), "HOME": str(tmp_path), "SHELL": "/bin/bash"}
    # through bash (not exec'd: two commands), so typer detects bash as the calling shell
    shown = run("bash", "--norc", "-c", "compute-units --show-completion; exit $?", env=env).stdout
    assert shown.strip() == packaged.strip()
    run("bash", "--norc", "-c", "compute-units --install-completion; exit $?", env=env)
    assert (tmp_path / ".bash_completions" / "compute-units.sh").read_text().strip() == packaged.strip()
    assert "compute-units.sh" in (tmp_path / ".bashrc").read_text()
