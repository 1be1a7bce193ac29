"""`docker run` / `podman run` command lines → spec YAML. Pure: text in, YAML text and messages out.

Reads no files and runs nothing: `interop_cmd` reads scripts and `--env-file`s and writes results.

The package: `shell` splits script text into simple commands (nothing is expanded), `runline`
parses one run line's options (docker's pflag rules), `mapper` (with `mounts`, `environment`,
`health`) turns it into a spec, `values` converts durations, env files and YAML; this module runs
the whole import and checks the result with the spec checker.

Each known option is either mapped to a typed spec key, ignored with a note (foreground/terminal
options such as `-d`, `--rm`, `-it`, which mean nothing under systemd), dropped with a warning
(what the spec cannot express, or what compute-units sets itself), or copied into `podman_args:` as
one `--opt=value` item. Only options that cannot conflict with the typed keys or with the systemd
integration are copied (resource limits, workdir, ...: see `options.PodmanOption.passes`). Every
problem is an `errors.Diagnostic` located on its script line (or `<command line>`). An unknown option is an error: without knowing whether it takes a value the rest of the
line cannot be parsed.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path, PurePosixPath

from .. import spec
from ..errors import Diagnostic, Location
from .mapper import Mapper, provisional_name
from .results import COMMAND_LINE, ImportedSpec, ImportFailed, SecretValue, described, problem
from .runline import Option, RunLine, parse_run
from .shell import CommandLine, Word, from_arguments, split_script
from .values import go_duration_ms, is_secret_name, parse_env_file, to_yaml

__all__ = [
    "DEFAULT_SECRETS_DIR",
    "CommandLine",
    "ImportFailed",
    "ImportedSpec",
    "Option",
    "RunLine",
    "SecretValue",
    "Word",
    "env_files_of",
    "from_arguments",
    "go_duration_ms",
    "import_commands",
    "is_secret_name",
    "parse_env_file",
    "parse_overrides",
    "parse_run",
    "split_script",
    "to_yaml",
]

DEFAULT_SECRETS_DIR = PurePosixPath("/etc/compute-units/secrets")


def env_files_of(commands: Sequence[CommandLine]) -> Iterator[str]:
    """Every `--env-file` path named by importable lines (for the caller to read)."""
    for command in commands:
        run, _ = parse_run(command)
        if run is not None:
            for option in run.options:
                if option.name == "--env-file" and option.value is not None:
                    yield option.value


def import_commands(
    commands: Sequence[CommandLine],
    *,
    secrets_dir: PurePosixPath = DEFAULT_SECRETS_DIR,
    env_files: Mapping[str, str] | None = None,
    overrides: Mapping[str, Sequence[str]] | None = None,
) -> tuple[list[ImportedSpec], list[Diagnostic]]:
    """Specs for every command line, plus warnings and notes; ImportFailed lists every error."""
    messages: list[Diagnostic] = []
    specs: list[ImportedSpec] = []
    seen: dict[str, str] = {}
    overrides = dict(overrides or {})
    used_overrides: set[str] = set()
    runs: list[RunLine] = []
    for command in commands:
        run, problems = parse_run(command)
        messages += problems
        if run is not None:
            runs.append(run)
    if not runs and not any(m.severity == "error" for m in messages):
        messages.append(problem(COMMAND_LINE, "no 'docker run' or 'podman run' lines found"))
    for run in runs:
        name_hint = provisional_name(run)
        argv = overrides.get(name_hint) if name_hint is not None else None
        if argv is not None and name_hint is not None:
            used_overrides.add(name_hint)
        mapper = Mapper(run, secrets_dir, env_files or {}, argv)
        data, secret_values = mapper.build()
        messages += mapper.messages
        if data is None:
            continue
        name = str(data["name"])
        where = described(run.where)
        if name in seen:
            messages.append(
                problem(
                    run.where,
                    f"service name '{name}' is already used by {seen[name]}",
                    "give each line its own --name",
                )
            )
            continue
        seen[name] = where
        warnings = [m for m in mapper.messages if m.severity == "warning"]
        header = [
            f"Imported by `compute-units import` from {where} ({run.engine} run).",
            "Review before use; these warnings were also printed:" if warnings else "Review before use.",
            *(f"  {m.message}" for m in warnings),
        ]
        text = to_yaml(data, header)
        problems = _validate(text, name, run.where)
        messages += problems
        if any(p.severity == "error" for p in problems):
            continue
        found = [SecretValue(name, v.variable, v.path, v.value, v.origin, v.where) for v in secret_values]
        specs.append(ImportedSpec(name, run.where, text, found))
    for name in sorted(set(overrides) - used_overrides):
        messages.append(problem(COMMAND_LINE, f"--command {name}=…: no imported service is named '{name}'"))
    errors = [m for m in messages if m.severity == "error"]
    if errors:
        raise ImportFailed(errors)
    _check_shared_secrets(specs)
    return specs, messages


def _validate(text: str, name: str, where: Location) -> list[Diagnostic]:
    """Run the generated YAML through the spec checker (secret files are not looked at)."""
    _, diagnostics = spec.parse_text(text, Path(f"{name}.yaml"), check_files=False)
    result: list[Diagnostic] = []
    for d in diagnostics:
        key = f"{d.key}: " if d.key else ""
        if d.severity == "error":
            result.append(problem(where, f"the imported spec is invalid: {key}{d.message}", d.hint))
        else:
            result.append(problem(where, f"spec {key}{d.message}", d.hint, "warning"))
    return result


def _check_shared_secrets(specs: Sequence[ImportedSpec]) -> None:
    """Two lines may share a secret file only when they give it the same value."""
    by_path: dict[PurePosixPath, SecretValue] = {}
    problems: list[Diagnostic] = []
    for imported in specs:
        for value in imported.secrets:
            other = by_path.get(value.path)
            if other is None or other.value is None:
                by_path[value.path] = value
            elif value.value is not None and value.value != other.value:
                problems.append(
                    problem(
                        value.where,
                        f"secret {value.variable} has a different value than on "
                        f"{described(other.where)}; both would be written to {value.path}",
                        "give one of them a different variable name, or the same value",
                    )
                )
    if problems:
        raise ImportFailed(problems)


def parse_overrides(items: Sequence[str]) -> dict[str, list[str]]:
    """--command NAME=ARGV (ARGV split like a shell line, no expansion)."""
    result: dict[str, list[str]] = {}
    problems: list[Diagnostic] = []
    for item in items:
        name, eq, argv_text = item.partition("=")
        if not eq or not name:
            problems.append(problem(COMMAND_LINE, f"--command '{item}': expected NAME=ARGV"))
            continue
        try:
            commands = split_script(argv_text)
        except ImportFailed as exc:
            problems += [problem(COMMAND_LINE, f"--command {name}: {p.message}") for p in exc.problems]
            continue
        if len(commands) != 1:
            problems.append(problem(COMMAND_LINE, f"--command {name}: expected one command line"))
            continue
        result[name] = [w.text for w in commands[0].words]
    if problems:
        raise ImportFailed(problems)
    return result
