"""systemd generator: `compute-units-generator NORMAL_DIR [EARLY_DIR LATE_DIR]`.

Runs at boot (and at every daemon-reload) before units are loaded: reads the spec search path and
writes units into NORMAL_DIR only. A broken spec is logged and skipped, the rest are still
generated; one bad file never makes it exit non-zero. Imports nothing heavy (no typer/rich): it
runs on every boot and reload.

COMPUTE_UNITS_ROOT (tests and image builds only) prefixes the search path, the state and facts
records, and the podman binary whose version secrets follow; under it, podman is never run.
"""

from __future__ import annotations

import os
import sys

TYPE_CHECKING = False  # not typing's: importing typing would cost every boot a few ms
if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence
    from pathlib import Path

    from .model import ServiceSet
    from .render import RenderOptions
    from .unitfile import Unit


def log(message: str) -> None:
    """To stderr, which systemd sends to the journal for generators; also kmsg when stderr is not a tty."""
    line = f"compute-units-generator: {message}\n"
    _LOGGED.append(line)
    sys.stderr.write(line)


_LOGGED: list[str] = []  # this run's log lines, for the cache


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) not in (1, 3):
        log("usage: compute-units-generator NORMAL_DIR [EARLY_DIR LATE_DIR]")
        return 2
    root = os.environ.get("COMPUTE_UNITS_ROOT", "/")
    try:
        return _generate(args[0], root)
    except Exception as exc:  # a bug must not hide the other generators' output
        log(f"internal error, no units generated: {exc!r}")
        return 1


def _generate(normal_dir: str, root: str) -> int:
    """From the cache when every input is as in the last clean run (gencache), else in full."""
    from . import gencache

    fresh = os.path.isdir(normal_dir) and not os.listdir(normal_dir)  # as systemd hands it over
    if fresh and (entry := gencache.load(root)) is not None:
        gencache.write_tree(normal_dir, entry["tree"])  # type: ignore[arg-type]
        sys.stderr.write("".join(entry["log"]))  # type: ignore[arg-type]
        return 0
    from pathlib import Path

    stamp = gencache.inputs(root)  # before reading: a change during the run misses next time
    record: dict[str, list[str]] = {}
    code = generate_into(Path(normal_dir), Path(root), record)
    if fresh and code == 0 and "secrets" in record:
        gencache.store(root, stamp, record["secrets"], gencache.read_tree(normal_dir), _LOGGED)
    return code


def generate_into(normal_dir: Path, root: Path, record: dict[str, list[str]] | None = None) -> int:
    """The full path; a run without errors puts the secret files the specs name (inputs the cache
    must check) into `record["secrets"]`."""
    from collections import Counter

    from . import install, render, spec

    paths = spec.discover([p for p in spec.default_search_path(root) if p.is_dir()])
    services, diagnostics = spec.load_lenient(paths, root=root)
    errors = Counter(d.location.path for d in diagnostics if d.severity == "error")
    skipped = sorted(errors)
    for diagnostic in diagnostics:
        log(diagnostic.format())
    for path in skipped:
        log(f"skipped {path}: fix the errors above and run `systemctl daemon-reload`")
    if record is not None and not errors:
        files = [str(root / str(s.file).lstrip("/")) for v in services.services for s in v.secrets if s.file]
        record["secrets"] = files
    units: dict[str, str] = {}
    unknown: list[str] = []
    pins, overrides, per_boot = _pins(root)
    if per_boot and record is not None:
        record.pop("secrets", None)  # the units differ after a reboot (write_boot_pin): never cached
    if services.services:
        site = root / "etc/compute-units/templates"
        options = render.RenderOptions(template_dirs=(site,) if site.is_dir() else (), pins=pins)
        services, options, unknown = _with_facts(services, options, root)
        units = render.render_all(services, options)
        if unknown and record is not None:
            record.pop("secrets", None)  # not a clean run: never cached
    if skipped or unknown:
        report = report_unit({path: errors[path] for path in skipped}, services.names(), unknown)
        units[report.name] = report.text
    # the generator's directory belongs to this boot: no foreign files, nothing stale to keep
    install.apply(install.plan(units, normal_dir), normal_dir)
    if skipped or unknown:
        link = normal_dir / install.WANTS_DIR / REPORT_UNIT
        link.parent.mkdir(exist_ok=True)
        if not link.is_symlink():
            link.symlink_to(f"../{REPORT_UNIT}")
    for service in services:
        if service.name in overrides:
            write_boot_pin(normal_dir, render.service_unit(service, options, image=overrides[service.name]))
            log(f"{service.unit}: booted during an unfinished upgrade: runs {overrides[service.name]}")
    if services.services:
        log(f"generated {len(services)} service(s): {', '.join(services.names())}")
    else:
        log("no valid service specs; nothing generated")
    return 0


REPORT_UNIT = "compute-units-spec-errors.service"


def _with_facts(
    services: ServiceSet, options: RenderOptions, root: Path
) -> tuple[ServiceSet, RenderOptions, list[str]]:
    """The facts secrets need, from the record (podman only for what it lacks); services whose
    facts are unknown are left out, each with a line saying why (also logged)."""
    from pathlib import Path

    from . import facts, render
    from .model import ServiceSet
    from .secretplan import SecretFactsMissing

    if not any(s.secrets for s in services):
        return services, options, []  # no facts needed: the record is not even read
    if root == Path("/"):
        recorder = facts.Recorder(root)
    else:  # a tree (tests, image builds): its own podman and record, never this host's podman
        recorder = facts.Recorder(root, facts.no_probe(), str(root / facts.PODMAN.lstrip("/")))
    options = facts.render_options(services, options, recorder, at_boot=True)
    kept, unknown = [], []
    for service in services:
        try:
            render.secret_plan(service, render.image_for(service, options), options)
        except SecretFactsMissing as exc:
            log(f"skipped {exc.message}; {exc.hint}")  # the message starts with the service's name
            unknown.append(f"skipped {exc.message}")
            continue
        kept.append(service)
    return ServiceSet(tuple(kept)), options, unknown


def report_unit(errors: Mapping[Path, int], generated: Sequence[str], unknown: Sequence[str] = ()) -> Unit:
    """A oneshot unit that names the skipped spec files in the journal and fails.

    At boot, generators run before journald, and a container has no /dev/kmsg: their stderr is
    lost. This unit logs which files were skipped once the journal runs, and its failure shows in
    `systemctl --failed` and makes the system "degraded" until the specs are fixed. It carries
    only paths, counts, the names of the services generated (valid names), the names and images
    (validated) of services left out for unknown secret facts, and our own words, never other text
    from a spec (a diagnostic may quote one): `compute-units validate` shows those.
    """
    from .names import MARKER, TARGET_NAME
    from .render import exec_line
    from .unitfile import Unit, section

    lines = [f"skipped {_printable(str(path))}: {count} error(s)" for path, count in errors.items()]
    if errors:
        lines.append(
            "run `compute-units validate` to see the errors; fix them and run `systemctl daemon-reload`"
        )
    if unknown:
        lines += [
            *unknown,
            "run `compute-units generate` to see how to fix it, then `systemctl daemon-reload`",
        ]
    if generated:
        lines.append(f"generated {len(generated)} service(s): {', '.join(generated)}")
    unit = [
        ("Description", "compute-units: service specs with errors were skipped"),
        ("Documentation", "man:compute-units(1)"),
        ("Before", TARGET_NAME),
    ]
    service = [
        ("Type", "oneshot"),
        ("SyslogIdentifier", "compute-units-generator"),
        ("ExecStart", exec_line(["/usr/bin/printf", "%s\\n", *lines])),
        ("ExecStart", "/bin/false"),
    ]
    install = [("WantedBy", "multi-user.target")]
    sections = (section("Unit", unit), section("Service", service), section("Install", install))
    return Unit(REPORT_UNIT, (MARKER,), sections)


def _printable(text: str) -> str:
    """`text` on one line: control and other unprintable characters as Python escapes (\\n, \\x1b)."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


BOOT_PIN_DROPIN = "50-compute-units-boot-pin.conf"


def write_boot_pin(normal_dir: Path, unit: Unit) -> None:
    """A drop-in that makes `unit` run its declared image, whatever its unit file in /etc says.

    A node that loses power between an upgrade's pin and its commit boots with the unit file in
    /etc still naming the upgrade's target; the declared image (state.ServiceState.boot_pin) is
    often the last committed one. Drop-ins in the generator's directory apply to units in /etc
    too, so this replaces the unit's ExecStart= (the one line that names the image) until the next
    run of `compute-units upgrade NAME` settles the state and the next daemon-reload drops it.
    """
    service, meta = unit.section("Service"), unit.section("Unit")
    lines = [
        "# compute-units: this node booted during an unfinished upgrade; the declared image runs",
        "# until `compute-units upgrade NAME` settles it (docs/reliability.md)",
        "[Unit]",
        *(f"X-ComputeUnits-Image={value}" for value in meta.values("X-ComputeUnits-Image")),
        "[Service]",
        "ExecStart=",
        *(f"ExecStart={value}" for value in service.values("ExecStart")),
        "",
    ]
    directory = normal_dir / f"{unit.name}.d"
    directory.mkdir(exist_ok=True)
    (directory / BOOT_PIN_DROPIN).write_text("\n".join(lines))


def _pins(root: Path) -> tuple[dict[str, str], dict[str, str], bool]:
    """(pins, overrides, per_boot): the digests services run at this boot (an upgrade cut by a
    reboot falls back to its declared image, ServiceState.boot_pin); of those, the ones that differ
    from what the last upgrade wrote into unit files; and whether an unfinished upgrade makes them
    depend on the boot. /var may not be mounted yet: then the spec's tags."""
    from .errors import ComputeUnitsError
    from .host import boot_id
    from .state import STATE_DIR, Store

    try:
        state = Store(root / str(STATE_DIR).lstrip("/")).load()
    except ComputeUnitsError as exc:
        log(f"ignoring upgrade state: {exc.message}")
        return {}, {}, False
    boot = boot_id()
    pins = state.pins(boot or None)
    written = state.pins()
    per_boot = any(s.unfinished and s.boot_id for s in state.services.values())
    return pins, {name: ref for name, ref in pins.items() if written.get(name) != ref}, per_boot


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
