"""Commands: import (docker/podman run lines → specs) and export --quadlet (specs → Quadlet files).

The parsing and mapping live in `importer` and `quadlet` (pure); this module reads scripts and
env files, checks what would be overwritten, and writes, in that order: any problem is reported
before the first file is written.
"""

from __future__ import annotations

import os
import stat
import sys
from pathlib import Path, PurePosixPath
from typing import Annotated

import typer

from .. import importer
from ..errors import Diagnostic, InstallError, UsageError
from ..importer import ImportFailed
from ..importer.results import COMMAND_LINE, problem
from .common import RootOpt, SpecOpt, make_context, out, print_diagnostics, reporting, select

ForceOpt = Annotated[bool, typer.Option("--force", help="Overwrite files that exist already.")]


def _write(path: Path, text: str, mode: int) -> None:
    from ..install import atomic_write

    try:
        atomic_write(path, text, mode)
    except OSError as exc:
        raise InstallError(f"cannot write {path}: {exc.strerror}") from exc


def _spec_prefix(secrets_dir: Path, root: Path) -> PurePosixPath:
    """How specs name the secrets directory: its path seen from --root (itself when outside root)."""
    directory = Path(os.path.abspath(secrets_dir))
    try:
        return PurePosixPath("/") / directory.relative_to(os.path.abspath(root)).as_posix()
    except ValueError:
        return PurePosixPath(directory.as_posix())


def import_cmd(
    line: Annotated[
        list[str] | None,
        typer.Argument(
            metavar="-- docker|podman run ...",
            help="One run command line after `--` (as words, or as one quoted shell line).",
            show_default=False,
        ),
    ] = None,
    script: Annotated[
        Path | None,
        typer.Option(
            "--script",
            metavar="FILE",
            help="A shell script of run lines (continuations, sudo, comments; variables are not expanded).",
        ),
    ] = None,
    output_dir: Annotated[
        Path | None,
        typer.Option("--output-dir", metavar="DIR", help="Write DIR/<name>.yaml per line. Default: stdout."),
    ] = None,
    secrets_dir: Annotated[
        Path | None,
        typer.Option(
            "--secrets-dir",
            metavar="DIR",
            help="Where secret values go (0600 files in a 0700 dir). Default: ROOT/etc/compute-units/secrets.",
        ),
    ] = None,
    command: Annotated[
        list[str] | None,
        typer.Option(
            "--command",
            metavar="NAME=ARGV",
            help="The container's argv for service NAME (replaces the arguments after the image; CMD of the image when none).",
        ),
    ] = None,
    root: RootOpt = Path("/"),
    force: ForceOpt = False,
) -> None:
    """Turn `docker run` / `podman run` lines into spec YAML; secret values go to files, not specs.

    Options that a spec cannot express are reported and left out; safe ones (limits, capabilities,
    security options, user, workdir, ...) are copied to podman_args as --opt=value.
    """
    with reporting(False):  # ImportFailed is a SpecError: its diagnostics, then "nothing was written"
        _import(line or [], script, output_dir, secrets_dir, command or [], root, force)


def _import(
    line: list[str],
    script: Path | None,
    output_dir: Path | None,
    secrets_dir: Path | None,
    command: list[str],
    root: Path,
    force: bool,
) -> None:
    if bool(line) == bool(script):
        raise UsageError(
            "give either a command line after -- or --script FILE",
            hint="compute-units import -- docker run --name x IMAGE",
        )
    make_context(None, root, None)  # checks --root
    if script is not None:
        try:
            text = script.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
            raise UsageError(f"--script {script}: {reason}") from None
        commands = importer.split_script(text, str(script))
        base = script.parent
    else:
        commands = importer.from_arguments(line)
        base = Path.cwd()
    overrides = importer.parse_overrides(command)

    env_files: dict[str, str] = {}
    problems: list[Diagnostic] = []
    for name in importer.env_files_of(commands):
        path = base / name
        try:
            env_files[name] = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
            problems.append(problem(COMMAND_LINE, f"--env-file {name}: cannot read {path}: {reason}"))
    if problems:
        raise ImportFailed(problems)

    directory = secrets_dir or root / "etc/compute-units/secrets"
    specs, messages = importer.import_commands(
        commands, secrets_dir=_spec_prefix(directory, root), env_files=env_files, overrides=overrides
    )

    # everything that would be written, checked before anything is
    spec_files = [(output_dir / f"{s.name}.yaml", s.text) for s in specs] if output_dir else []
    for path, _ in spec_files:
        if path.exists() and not force:
            problems.append(problem(COMMAND_LINE, f"{path} exists", "pass --force to overwrite it"))
    secret_files, secret_messages = _plan_secrets(specs, directory, force, problems)
    if problems:
        raise ImportFailed(problems)

    print_diagnostics([*messages, *secret_messages])
    if secret_files:
        _secrets_dir(directory)
        for path, value in secret_files.items():
            if _read(path) != value or stat.S_IMODE(path.stat().st_mode) != 0o600:
                _write(path, value, 0o600)
    if output_dir is None:
        sys.stdout.write("---\n".join(s.text for s in specs))
        return
    try:
        output_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InstallError(f"cannot create {output_dir}: {exc.strerror}") from exc
    for path, text in spec_files:
        _write(path, text, 0o644)
        out.print(f"wrote {path}", markup=False)


def _plan_secrets(
    specs: list[importer.ImportedSpec], directory: Path, force: bool, problems: list[Diagnostic]
) -> tuple[dict[Path, str], list[Diagnostic]]:
    """The secret files to write, and what to tell about each secret (conflicts go to `problems`)."""
    secret_files: dict[Path, str] = {}
    secret_messages: list[Diagnostic] = []
    for imported in specs:
        for secret in imported.secrets:
            path = directory / secret.path.name
            label = f"secret {secret.variable} of {imported.name}"
            if secret.value is None:
                if path.exists():
                    text = (
                        f"{label}: the value ({secret.origin}) is not known here; {path} exists and is used"
                    )
                    secret_messages.append(problem(secret.where, text, severity="note"))
                else:
                    text = f"{label}: the value is {secret.origin}, not known here; no file written"
                    hint = f"create {path} (mode 0600) with the real value before `compute-units generate`"
                    secret_messages.append(problem(secret.where, text, hint, "warning"))
                continue
            if path in secret_files:
                continue
            unchanged = _read(path) == secret.value
            if path.exists() and not unchanged and not force:
                hint = "pass --force to overwrite it"
                problems.append(problem(secret.where, f"{label}: {path} exists with another value", hint))
            secret_files[path] = secret.value
            verb = "is already in" if unchanged else "written to"
            text = f"{label}: value {verb} {path} (mode 0600), not to the spec"
            secret_messages.append(problem(secret.where, text, severity="warning"))
    return secret_files, secret_messages


def _read(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None


def _secrets_dir(directory: Path) -> None:
    try:
        if not directory.is_dir():
            directory.mkdir(parents=True, mode=0o700)
            directory.chmod(0o700)  # whatever the umask
            return
        mode = stat.S_IMODE(directory.stat().st_mode)
    except OSError as exc:
        raise InstallError(f"cannot create {directory}: {exc.strerror}") from exc
    if mode & 0o077:
        message = f"secrets directory {directory} is accessible by group or others (mode {mode:04o})"
        print_diagnostics([problem(COMMAND_LINE, message, f"chmod 0700 {directory}", "warning")])


def export_cmd(
    services: Annotated[
        list[str] | None, typer.Argument(help="Services (default: all), by name or unit name.")
    ] = None,
    quadlet: Annotated[
        bool, typer.Option("--quadlet", help="Write Quadlet .container files (podman >= 4.4).")
    ] = False,
    output_dir: Annotated[
        Path | None,
        typer.Option(
            "--output-dir", metavar="DIR", help="Write DIR/<name>.container per service. Default: stdout."
        ),
    ] = None,
    podman_version: Annotated[
        str,
        typer.Option(
            "--podman-version",
            metavar="X.Y",
            help="Oldest podman the files must work with: 4.4 passes secrets and health checks with "
            "PodmanArgs=, 4.5 and later use Secret= and HealthCmd=.",
        ),
    ] = "4.4",
    specs: SpecOpt = None,
    root: RootOpt = Path("/"),
    force: ForceOpt = False,
) -> None:
    """Export services in another format: --quadlet writes podman Quadlet .container files.

    Each file starts with a comment listing what Quadlet cannot express for that service.
    """
    from .. import quadlet as quadlet_mod
    from .. import render

    with reporting(False):
        if not quadlet:
            raise UsageError("choose the format to export", hint="--quadlet is the only one so far")
        version = quadlet_mod.parse_version(podman_version)
        ctx = make_context(specs, root, None)
        loaded, warnings = ctx.load()
        chosen = select(loaded, services or [])
        print_diagnostics(warnings)
        options = ctx.render_options(loaded, version=version)
        files = [
            quadlet_mod.container_file(
                s, image=render.image_for(s, options), options=options, version=version
            )
            for s in chosen
        ]
        if output_dir is None:
            sys.stdout.write("\n".join(f.text for f in files))
            return
        existing = [output_dir / f.name for f in files if (output_dir / f.name).exists()]
        if existing and not force:
            shown = ", ".join(str(p) for p in existing)
            raise UsageError(
                f"{shown} exist(s) already; nothing was written", hint="pass --force to overwrite"
            )
        try:
            output_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise InstallError(f"cannot create {output_dir}: {exc.strerror}") from exc
        for f in files:
            _write(output_dir / f.name, f.text, 0o644)
            out.print(f"wrote {output_dir / f.name}", markup=False)
