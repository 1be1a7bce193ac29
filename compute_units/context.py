"""What every command shares, without the CLI framework: finding specs, selecting services, and
reporting errors the same way (stderr text or JSON, documented exit codes).

Kept free of typer/rich so the lean entry point (`main.py`) stays fast.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import spec
from .errors import ComputeUnitsError, Diagnostic, SpecError, UsageError
from .model import Service, ServiceSet
from .state import STATE_DIR, Store

if TYPE_CHECKING:  # jinja2 is imported only by the commands that render
    from . import facts, render


@dataclass(frozen=True)
class Context:
    """Where specs, templates and state are for one command run, and who must own spec files
    (`owner_uid`: root; spec/trust.py reads no spec file owned by anyone else)."""

    specs: tuple[Path, ...]
    root: Path
    templates: tuple[Path, ...]
    owner_uid: int = 0

    def spec_paths(self) -> list[Path]:
        if self.specs:
            return list(self.specs)
        return [p for p in spec.default_search_path(self.root) if p.is_dir()]

    def load(self) -> tuple[ServiceSet, list[Diagnostic]]:
        files = spec.discover(self.spec_paths())
        if not files:
            searched = ", ".join(str(p) for p in self.specs or spec.default_search_path(self.root))
            raise UsageError(
                f"no service specs found in {searched}", hint="add *.yaml files or pass --spec PATH"
            )
        return spec.load(files, root=self.root, owner_uid=self.owner_uid)

    def load_for(self, names: Sequence[str]) -> ServiceSet:
        """Specs for an operation on the named services, which writes nothing.

        A broken spec of an unrelated service must not stop a 3 a.m. restart of a healthy one:
        when every named service (and what it requires) loaded, the others' errors are shown as
        warnings. With no names (all services), or a named one broken, it fails like `load`.
        """
        files = spec.discover(self.spec_paths())
        if not files:
            return self.load()[0]  # raises the "no specs" error
        services, diagnostics = spec.load_lenient(files, root=self.root, owner_uid=self.owner_uid)
        errors = [d for d in diagnostics if d.severity == "error"]
        if not errors:
            return services
        defined = {path.stem for path in files}  # broken specs are known by their file name
        missing = [n.removesuffix(".service") for n in names if services.get(n) is None]
        if not names or any(n in defined for n in missing):
            # acting on everything, or a named service is itself broken (or requires one)
            raise SpecError(diagnostics=diagnostics)
        broken = sorted({str(d.location.path) for d in errors})
        print(
            f"compute-units: warning: ignoring {len(broken)} spec(s) with errors: {', '.join(broken)} "
            "(`compute-units validate` shows them)",
            file=sys.stderr,
        )
        return services

    def store(self) -> Store:
        return Store(self.root / str(STATE_DIR).lstrip("/"))

    def render_options(
        self,
        services: ServiceSet,
        recorder: facts.Recorder | None = None,
        version: tuple[int, ...] | None = None,
    ) -> render.RenderOptions:
        """Templates (user dirs first), the references upgrades pinned services to, and the facts
        about this host that the services' secrets need (podman's version, image configs)."""
        from . import facts, render

        site = self.root / "etc/compute-units/templates"
        dirs = [*self.templates, *([site] if site.is_dir() else [])]
        options = render.RenderOptions(template_dirs=tuple(dirs), pins=self.store().load().pins())
        recorder = recorder or facts.Recorder(self.root)
        options = facts.render_options(services, options, recorder, version=version)
        recorder.save()
        return options


def make_context(specs: Sequence[Path] | None, root: Path, templates: Sequence[Path] | None) -> Context:
    if not root.is_dir():
        raise UsageError(f"--root {root}: not a directory")
    for directory in templates or []:
        if not directory.is_dir():
            raise UsageError(f"--templates {directory}: not a directory")
    return Context(tuple(specs or ()), root, tuple(templates or ()))


def unknown_service(name: str, services: ServiceSet) -> UsageError:
    hint = spec.did_you_mean(name, services.names())
    known = ", ".join(services.names()) or "none"
    return UsageError(f"unknown service '{name}' (known: {known})", hint=hint)


def select(services: ServiceSet, names: Sequence[str]) -> list[Service]:
    """The named services (all when none named), in dependency order."""
    if not names:
        return list(services)
    wanted: set[str] = set()
    for name in names:
        service = services.get(name)
        if service is None:
            raise unknown_service(name, services)
        wanted.add(service.name)
    return [s for s in services if s.name in wanted]


def emit_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")


def print_diagnostics(diagnostics: Sequence[Diagnostic]) -> None:
    for diagnostic in diagnostics:
        print(diagnostic.format(), file=sys.stderr)


def report_error(exc: ComputeUnitsError, *, as_json: bool) -> int:
    """Print an error for people (stderr) and, with --json, as an object on stdout; return the exit code."""
    if isinstance(exc, SpecError):
        if as_json:
            emit_json(
                {"ok": False, "error": exc.message, "diagnostics": [d.as_dict() for d in exc.diagnostics]}
            )
        print_diagnostics(exc.diagnostics)
        errors = sum(d.severity == "error" for d in exc.diagnostics)
        print(f"compute-units: {errors} error(s); nothing was written.", file=sys.stderr)
        return exc.exit_code
    if as_json:
        emit_json({"ok": False, "error": exc.message, "hint": exc.hint})
    print(f"compute-units: error: {exc.message}", file=sys.stderr)
    if exc.hint:
        print(f"  hint: {exc.hint}", file=sys.stderr)
    return exc.exit_code
