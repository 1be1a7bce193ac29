"""Commands: pull, upgrade, rollback, history."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.progress import Progress as RichProgress
from rich.progress import SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from ..context import Context
from ..errors import ComputeUnitsError, ExitCode, UsageError
from ..interrupts import Abandoned, SignalGuard
from ..jobs import UNIT_DIR, require_root
from ..model import Service, ServiceSet
from ..systemd import Systemd
from .common import (
    AllowDisruptiveOpt,
    JsonOpt,
    SpecOpt,
    TemplatesOpt,
    emit_json,
    err,
    make_context,
    out,
    reporting,
    select,
)

if TYPE_CHECKING:  # the upgrade machinery (and jinja2) load only when an upgrade runs
    from .. import render
    from ..upgrade import Progress, PullDisplay, Report, Upgrader

WaitOpt = Annotated[
    float, typer.Option("--wait", help="Seconds to wait for another upgrade's lock (default: fail at once).")
]
PullTimeoutOpt = Annotated[
    float,
    typer.Option("--pull-timeout", help="Seconds a pull may take before it is given up (nothing changed)."),
]
ImageOpt = Annotated[
    str | None,
    typer.Option("--image", help="Image to go to (one service only). Default: see `upgrade --help`."),
]
ServicesArg = Annotated[list[str] | None, typer.Argument(help="Services, by name.")]
AllOpt = Annotated[bool, typer.Option("--all", help="Every service.")]
DEFAULT_PULL_TIMEOUT = 600.0


@contextmanager
def progress_reporter(enabled: bool) -> Iterator[tuple[Progress, PullDisplay | None]]:
    """For people at a terminal: a spinner with the current step, and podman's own progress bars
    while it pulls (the spinner steps aside meanwhile). Nothing for --json or a non-terminal."""
    if not enabled or not sys.stderr.isatty():
        yield (lambda message: None), None
        return
    with RichProgress(
        SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(), console=err, transient=True
    ) as bar:
        task = bar.add_task("starting")

        @contextmanager
        def pull_display() -> Iterator[None]:
            bar.stop()
            try:
                yield
            finally:
                bar.start()

        yield (lambda message: bar.update(task, description=message)), pull_display


def _print_report(report: Report) -> None:
    from ..vms import verdict

    steps = ", ".join(f"{s.name} {s.ms} ms" + ("" if s.ok else " FAILED") for s in report.steps)
    source, target = report.source, report.target
    if report.result == "rolled-back" and report.runs == source:
        # a failed upgrade's from/to are the attempt's: the line says where it went back to, as a
        # `rollback`'s does (`rolled-back B -> A`: A runs again)
        source, target = target, source
    out.print(f"{report.service}: {report.result} {source or '-'} -> {target or '-'}", markup=False)
    if report.note:
        out.print(f"    target: {report.note}", markup=False)
    out.print(f"    steps: {steps}", markup=False)
    line = verdict(report.vm_before, report.vm_check)
    if line:
        out.print(f"    VMs: {line}", markup=False)


def check_selection(verb: str, services: list[str] | None, all_services: bool, image: str | None) -> None:
    """Names or --all; --image for exactly one service, validated like a spec's image."""
    if not services and not all_services:
        raise UsageError(f"name the services to {verb}, or pass --all")
    if image is None:
        return
    if all_services or len(services or []) != 1:
        raise UsageError("--image applies to exactly one service")
    if not image:
        raise UsageError("--image '': not an image reference", hint="give --image REGISTRY/NAME:TAG")
    from ..spec import check_image_reference

    check_image_reference(image)


def run_upgrades(
    ctx: Context,
    services: ServiceSet,
    chosen: list[Service],
    act: Callable[[Upgrader, Service], object],
    *,
    wait: float,
    as_json: bool,
    pull_timeout: float = DEFAULT_PULL_TIMEOUT,
    allow_disruptive: bool = False,
) -> None:
    """Run `act` for each chosen service in dependency order under the host lock and a signal
    guard; stop at the first failure. Reports every step."""
    from .. import effects, facts, render
    from ..upgrade import Upgrader

    require_root("upgrade")
    failure: ComputeUnitsError | None = None
    store = ctx.store()
    recorder = facts.Recorder(ctx.root)
    options = ctx.render_options(services, recorder)
    upgrader: Upgrader | None = None

    env = render.make_environment(options.template_dirs)

    def render_units(service: Service, pin: str | None) -> dict[str, str]:
        # the pin was pulled just before: its ENTRYPOINT and CMD are in the local store now
        known = facts.with_image(options, service, pin or str(service.image), recorder)
        unit = render.render_service(service, with_pin(known, service.name, pin), env)
        return {service.unit: unit, **render.render_sockets(service, env)}

    def announce(holder: str) -> None:
        err.print(f"compute-units: waiting up to {wait:g} s for the upgrade lock ({holder})", markup=False)

    try:
        with (
            SignalGuard() as guard,
            store.lock(wait, on_wait=announce) as lock,
            Systemd.connect() as systemd,
            progress_reporter(not as_json) as (progress, pull_display),
        ):
            fx = effects.real(systemd, store, UNIT_DIR)
            fx.interrupted = guard.interrupted

            def tell(message: str) -> None:
                lock.tell(message)
                progress(message)

            upgrader = Upgrader(
                fx,
                services,
                render_units,
                progress=tell,
                pull_display=pull_display,
                pull_timeout=pull_timeout,
                allow_disruptive=allow_disruptive,
            )
            for service in chosen:
                try:
                    act(upgrader, service)
                except ComputeUnitsError as exc:
                    failure = exc
                    break
    except Abandoned as stop:
        _abandoned(ctx, stop.signame, chosen)
    _finish(upgrader.reports if upgrader else [], failure, as_json)


def with_pin(options: render.RenderOptions, name: str, pin: str | None) -> render.RenderOptions:
    """Render options with this service pinned to `pin` (None: the spec's own image)."""
    import dataclasses

    pins = {k: v for k, v in options.pins.items() if k != name}
    if pin:
        pins[name] = pin
    return dataclasses.replace(options, pins=pins)


def _finish(reports: list[Report], failure: ComputeUnitsError | None, as_json: bool) -> None:
    try:
        if as_json:
            emit_json(
                {
                    "ok": failure is None,
                    "error": failure.message if failure else None,
                    "hint": failure.hint if failure else None,
                    "exit_code": failure.exit_code if failure else 0,
                    "services": [r.as_dict() for r in reports],
                }
            )
        else:
            for report in reports:
                _print_report(report)
    except OSError:
        pass  # the terminal is gone; the state and history say what happened
    if failure is not None:
        if as_json:
            raise typer.Exit(failure.exit_code)
        raise failure


def _abandoned(ctx: Context, signame: str, chosen: list[Service]) -> None:
    """A second signal: say exactly what is left and what to run; exit 6."""
    lines = [f"compute-units: abandoned by a second {signame}; the upgrade did not finish."]
    try:
        state = ctx.store().load()
        for service in chosen:
            entry = state.services.get(service.name)
            if entry is not None and entry.unfinished:
                lines.append(
                    f"  {service.name}: phase {entry.phase}, unit pinned to {entry.pin()} "
                    f"(from {entry.previous}); run `compute-units upgrade {service.name}` to finish it "
                    "(it resumes, then commits or rolls back)"
                )
    except ComputeUnitsError as exc:
        lines.append(f"  state unreadable: {exc.message}")
    if len(lines) == 1:
        lines.append("  nothing was in flight: no service was changed")
    lines.append("  `compute-units status` shows each service")
    with suppress(OSError):
        print("\n".join(lines), file=sys.stderr)
    raise typer.Exit(ExitCode.INTERRUPTED)


def _load(ctx: Context, names: list[str], all_services: bool) -> tuple[ServiceSet, list[Service]]:
    """Specs for the named services: an unrelated broken spec is a warning, not a blocker."""
    if all_services:
        loaded, _ = ctx.load()
        return loaded, list(loaded)
    loaded = ctx.load_for(names)
    return loaded, select(loaded, names)


def upgrade(
    services: ServicesArg = None,
    all_services: AllOpt = False,
    image: ImageOpt = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Resolve (pull) the target and say what would change.")
    ] = False,
    specs: SpecOpt = None,
    templates: TemplatesOpt = None,
    wait: WaitOpt = 0.0,
    pull_timeout: PullTimeoutOpt = DEFAULT_PULL_TIMEOUT,
    allow_disruptive: AllowDisruptiveOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Pull, pin to the digest, restart, health-gate; roll back automatically on failure.

    Nothing stops before the new image is pulled. Services that require an upgraded one are
    restarted after it. Without --image the target is the spec's image, except that an image an
    earlier `upgrade --image` pinned is kept while the spec is unchanged (no silent downgrade).
    Exit 5: the upgrade failed and the previous image runs again. Exit 6: interrupted (SIGINT,
    SIGTERM, SIGHUP); the message says whether it committed or rolled back. A service marked
    `disruptive:` (or one whose restart restarts such a service) is refused (exit 2) unless
    --allow-disruptive is given.
    """
    with reporting(as_json):
        check_selection("upgrade", services, all_services, image)
        ctx = make_context(specs, Path("/"), templates)
        loaded, chosen = _load(ctx, services or [], all_services)
        if dry_run:

            def act(u: Upgrader, s: Service) -> object:
                return u.dry_run(s, image)

        else:

            def act(u: Upgrader, s: Service) -> object:
                return u.upgrade(s, image)

        run_upgrades(
            ctx,
            loaded,
            chosen,
            act,
            wait=wait,
            as_json=as_json,
            pull_timeout=pull_timeout,
            allow_disruptive=allow_disruptive,
        )


def rollback(
    service: Annotated[
        str, typer.Argument(help="Service to return to the image it ran before its last upgrade.")
    ],
    specs: SpecOpt = None,
    templates: TemplatesOpt = None,
    wait: WaitOpt = 0.0,
    allow_disruptive: AllowDisruptiveOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Return a service to the image it ran before its last upgrade (same safe steps).

    A second rollback goes further back (to the image before the upgrade before), never back to
    where the first rollback came from.
    """
    from ..targets import rollback_target

    with reporting(as_json):
        ctx = make_context(specs, Path("/"), templates)
        loaded, chosen = _load(ctx, [service], False)
        name = chosen[0].name
        store = ctx.store()
        entry = store.load().get(name)
        found: tuple[str, str | None] | None = rollback_target(store.history(name), entry.current)
        if entry.unfinished:  # the unfinished upgrade is what is undone
            found = (str(entry.previous or chosen[0].image), None)
        if found is None:
            raise UsageError(f"{name} has no upgrade to roll back")
        target, undoes = found

        def act(u: Upgrader, s: Service) -> object:
            return u.upgrade(s, target, kind="rollback", undoes=undoes)

        run_upgrades(ctx, loaded, chosen, act, wait=wait, as_json=as_json, allow_disruptive=allow_disruptive)


def pull(
    services: ServicesArg = None,
    all_services: AllOpt = False,
    image: ImageOpt = None,
    specs: SpecOpt = None,
    pull_timeout: PullTimeoutOpt = DEFAULT_PULL_TIMEOUT,
    as_json: JsonOpt = False,
) -> None:
    """Pull the images `upgrade` would go to, without stopping anything.

    The pinned reference is recorded: a later `upgrade` to the same target uses it without asking
    the registry again (a fleet pulls everywhere first, then restarts in batches).
    """
    import time

    from .. import effects, facts
    from ..facts import Recorder
    from ..upgrade import Upgrader

    with reporting(as_json):
        check_selection("pull", services, all_services, image)
        require_root("pull")
        ctx = make_context(specs, Path("/"), None)
        loaded, chosen = _load(ctx, services or [], all_services)
        rows = []
        with Systemd.connect() as systemd:
            fx = effects.real(systemd, ctx.store(), UNIT_DIR)
            upgrader = Upgrader(fx, loaded, lambda service, pin: {}, pull_timeout=pull_timeout)
            for service in chosen:
                started = time.monotonic()
                reference, pulled, note = upgrader.prepull(service, image)
                facts.record_pulled(Recorder(ctx.root), service, [reference, str(service.image)])
                ms = int((time.monotonic() - started) * 1000)
                rows.append({"service": service.name, "reference": reference, "pulled": pulled, "ms": ms})
                if not as_json:
                    verb = "pulled" if pulled else "present"
                    out.print(f"{service.name}: {verb} {reference} ({ms} ms; {note})", markup=False)
        if as_json:
            emit_json({"ok": True, "error": None, "hint": None, "services": rows})


def history(
    service: Annotated[str | None, typer.Argument(help="Only this service.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Past upgrades and rollbacks: when, from which digest to which, result, step timings."""
    with reporting(as_json):
        entries = make_context(None, Path("/"), None).store().history(service)
        if as_json:
            emit_json(entries)
            return
        table = Table("time", "service", "kind", "result", "from", "to", "ms", "failed step", box=None)
        for e in entries:
            table.add_row(
                str(e.get("time", "")),
                str(e.get("service", "")),
                str(e.get("kind", "upgrade")),
                str(e.get("result", "")),
                _short(e.get("from")),
                _short(e.get("to")),
                str(e.get("duration_ms", "")),
                str(e.get("failed_step") or "-"),
            )
        out.print(table)


def _short(reference: object) -> str:
    if not reference or not isinstance(reference, str):
        return "-"
    name, _, digest = reference.partition("@")
    return f"{name}@{digest[:19]}" if digest else name
