"""Spec loading and validation: YAML files → `ServiceSet`, or a `SpecError` listing every problem.

Reads only the spec files themselves (and stats secret files under `root`). YAML is composed into
nodes (PyYAML's C composer when available) so that every value keeps its line and column; values
are converted by hand, so YAML 1.1 surprises (`yes` → true, `010` → 8) never reach a unit.

The package: `values` (key tables, names, image references, durations), `nodes` (YAML node
shapes), `sections` and `service` (building a `Service`), `link` (requires and order).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path, PurePosixPath

import yaml

from ..errors import Diagnostic, Location, SpecError
from ..model import Service, ServiceSet
from .link import link
from .service import ServiceChecker
from .trust import Untrusted, read_trusted
from .values import (
    NAME_RE,
    PODMAN_SECRET_RE,
    TOP_KEYS,
    check_image_reference,
    did_you_mean,
    normal_path,
    parse_duration_ms,
    parse_image,
)

__all__ = [
    "NAME_RE",
    "PODMAN_SECRET_RE",
    "SEARCH_PATH",
    "TOP_KEYS",
    "check_image_reference",
    "default_search_path",
    "did_you_mean",
    "discover",
    "load",
    "load_lenient",
    "normal_path",
    "parse_duration_ms",
    "parse_file",
    "parse_image",
    "parse_text",
]

# a fragment of the file quoted in a YAML error (a character, an alias or anchor name): never shown
_QUOTED = re.compile(r"(found|alias|anchor|handle|character) '(?!<)[^']*'")

try:
    _Loader: type[yaml.SafeLoader] = yaml.CSafeLoader  # type: ignore[assignment]
except AttributeError:  # pragma: no cover - libyaml missing
    _Loader = yaml.SafeLoader

SEARCH_PATH = (
    PurePosixPath("/etc/compute-units/services"),
    PurePosixPath("/run/compute-units/services"),
    PurePosixPath("/usr/share/compute-units/services"),
)
SPEC_SUFFIXES = (".yaml", ".yml")


def default_search_path(root: Path = Path("/")) -> list[Path]:
    return [root / str(p).lstrip("/") for p in SEARCH_PATH]


def discover(paths: Sequence[Path]) -> list[Path]:
    """Spec files from the given files and directories; among directories the first file name wins.

    A file that is empty or a symlink to /dev/null masks files of the same name further down.
    """
    chosen: dict[str, Path] = {}
    explicit: list[Path] = []
    for path in paths:
        if path.is_dir():
            for entry in sorted(path.iterdir()):
                if entry.suffix in SPEC_SUFFIXES and entry.name not in chosen:
                    chosen[entry.name] = entry
        elif path.exists():
            explicit.append(path)
        else:
            raise SpecError(diagnostics=[Diagnostic(Location(path, 1, 1), "", "spec path does not exist")])
    found = [p for p in chosen.values() if not _is_mask(p)]
    return [p.absolute() for p in sorted(found, key=lambda p: p.name) + explicit]


def _is_mask(path: Path) -> bool:
    """An empty regular file, or a symlink to /dev/null (fifos and devices are not masks)."""
    try:
        return path.resolve() == Path("/dev/null") or (path.is_file() and path.stat().st_size == 0)
    except OSError:
        return False


def load(
    paths: Sequence[Path],
    *,
    root: Path = Path("/"),
    strict_files: bool = True,
    owner_uid: int = 0,
) -> tuple[ServiceSet, list[Diagnostic]]:
    """Load and validate every spec; raise `SpecError` with all errors, or return services + warnings."""
    services, diagnostics = load_lenient(paths, root=root, check_files=strict_files, owner_uid=owner_uid)
    if any(d.severity == "error" for d in diagnostics):
        raise SpecError(diagnostics=diagnostics)
    return services, diagnostics


def load_lenient(
    paths: Sequence[Path], *, root: Path = Path("/"), check_files: bool = True, owner_uid: int = 0
) -> tuple[ServiceSet, list[Diagnostic]]:
    """Like `load`, but drop services with errors instead of failing (the generator's mode).

    Services that require a dropped service are dropped too, with an error naming the cause.
    """
    diagnostics: list[Diagnostic] = []
    parsed: list[Service] = []
    broken: set[str] = set()  # names (file stems) of specs with errors, to explain their dependents
    for path in paths:
        service, problems = parse_file(path, root=root, check_files=check_files, owner_uid=owner_uid)
        diagnostics.extend(problems)
        if service is not None and not any(p.severity == "error" for p in problems):
            parsed.append(service)
        else:
            broken.add(path.stem)
    service_set, problems = link(parsed, broken)
    diagnostics.extend(problems)
    return service_set, diagnostics


def parse_file(
    path: Path, *, root: Path = Path("/"), check_files: bool = True, owner_uid: int = 0
) -> tuple[Service | None, list[Diagnostic]]:
    """One spec file, read only when it can be trusted (see `trust`): owned by `owner_uid`."""
    try:
        data = read_trusted(path, owner_uid=owner_uid)
    except Untrusted as exc:
        return None, [exc.diagnostic]
    except OSError as exc:
        return None, [Diagnostic(Location(path), "", f"cannot read spec: {exc.strerror}")]
    return parse_text(data, path, root=root, check_files=check_files)


def parse_text(
    data: bytes | str, path: Path, *, root: Path = Path("/"), check_files: bool = True
) -> tuple[Service | None, list[Diagnostic]]:
    try:
        node = yaml.compose(data, Loader=_Loader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        loc = Location(path, mark.line + 1, mark.column + 1) if mark else Location(path)
        problem = _QUOTED.sub(r"\1", exc.problem or exc.context or "invalid YAML")  # no file content
        return None, [Diagnostic(loc, "", f"YAML syntax error: {problem}")]
    except yaml.reader.ReaderError as exc:
        text = data.decode(errors="replace") if isinstance(data, bytes) else data
        before = text[: exc.position]
        loc = Location(path, before.count("\n") + 1, len(before) - (before.rfind("\n") + 1) + 1)
        char = exc.character if isinstance(exc.character, int) else ord(str(exc.character)[:1] or "?")
        return None, [Diagnostic(loc, "", f"YAML error: unacceptable character U+{char:04X}")]
    except yaml.YAMLError as exc:
        return None, [Diagnostic(Location(path), "", f"YAML error: {exc}")]
    checker = ServiceChecker(path, root, check_files)
    service = checker.service(node)
    return service, checker.diagnostics
