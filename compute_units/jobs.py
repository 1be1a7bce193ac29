"""start/stop/restart as systemd jobs, and how their outcomes are told. No CLI framework here:
both the typer commands and the lean entry point (`main.py`) use it."""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING

from . import disruptive
from .errors import NotRootError
from .names import MARKER
from .systemd import JobOutcome, Systemd, text

if TYPE_CHECKING:  # specs (and YAML) load only when the units alone cannot answer
    from .context import Context

UNIT_DIR = Path("/etc/systemd/system")
JOURNAL_LINES = 10
EXIT_JOBS_FAILED = 1

# podman's own container lifecycle events: noise next to the container's output and systemd's lines
_PODMAN_EVENT = re.compile(r" podman\[\d+\]: (\d{4}-\d\d-\d\d .* (container|image) \w+ |[0-9a-f]{64}$|$)")


def require_root(action: str) -> None:
    if os.geteuid() != 0:
        raise NotRootError(f"{action} changes the host and needs root", hint="run it with sudo")


def lifecycle(
    verb: str,
    names: Sequence[str],
    ctx: Context,
    timeout: float,
    settle: float,
    allow_disruptive: bool = False,
) -> list[JobOutcome]:
    """Run one `verb` job per selected unit and return what systemd says happened.

    A restart that would restart a running `disruptive:` service is refused unless allowed."""
    from .context import select

    services = ctx.load_for(names)
    chosen = select(services, names)
    require_root(verb)
    asked = [s.name for s in chosen]
    if verb != "start":
        # systemd restarts/stops what Requires= a unit along with it: wait for and report those too
        wanted = {s.name for s in chosen}
        for service in list(chosen):
            wanted.update(d.name for d in services.dependents(service.name))
        chosen = [s for s in services if s.name in wanted]
    units = [s.unit for s in chosen]
    if verb == "stop":
        units.reverse()
    with Systemd.connect() as systemd:
        systemd.require_loaded(units)
        if verb == "restart":
            hits = disruptive.in_restart(services, asked, lambda unit: _running(systemd, unit))
            disruptive.check(verb, hits, allow_disruptive)
        return systemd.run_jobs(verb, units, timeout=timeout, settle=settle)


def lifecycle_by_units(
    verb: str, names: Sequence[str], timeout: float, settle: float, allow_disruptive: bool = False
) -> list[JobOutcome] | None:
    """The same, from the generated units alone: no spec is read (the common, fast case).

    Names must be units we generated and systemd has loaded; what Requires= them is found through
    systemd's RequiredBy=. None when a name is anything else: the spec-based path then explains.
    """
    require_root(verb)
    with Systemd.connect() as systemd:
        units = [n if n.endswith(".service") else f"{n}.service" for n in names]
        props = {unit: systemd.unit_properties(unit) for unit in units}
        texts = {unit: _our_unit_text(p) for unit, p in props.items()}
        if None in texts.values():
            return None
        via: dict[str, str | None] = dict.fromkeys(units)  # unit -> the named unit it restarts with
        if verb != "start":  # systemd stops/restarts what requires a unit with it: report those too
            queue = list(units)
            while queue:
                unit = queue.pop(0)
                for dependent in map(text, props[unit][b"RequiredBy"]):
                    if dependent not in props:
                        props[dependent] = systemd.unit_properties(dependent)
                        texts[dependent] = _our_unit_text(props[dependent])
                        if texts[dependent] is not None:
                            units.append(dependent)
                            queue.append(dependent)
                            via[dependent] = via[unit] or unit
        if verb == "restart":
            hits = [
                disruptive.Hit(
                    u.removesuffix(".service"), reason, (via[u] or "").removesuffix(".service") or None
                )
                for u in units
                if (reason := disruptive.reason_in_unit(texts[u] or "")) is not None
                and text(props[u][b"ActiveState"]) not in ("inactive", "failed")
            ]
            disruptive.check(verb, hits, allow_disruptive)
        if verb == "stop":
            units.reverse()
        return systemd.run_jobs(verb, units, timeout=timeout, settle=settle)


def _our_unit_text(unit_properties: dict[bytes, object]) -> str | None:
    """The unit file systemd loaded, if we generated it (its first line is our marker)."""
    try:
        with open(text(unit_properties.get(b"FragmentPath", b""))) as handle:
            content = handle.read()
    except OSError:
        return None
    return content if content.split("\n", 1)[0] == MARKER else None


def _running(systemd: Systemd, unit: str) -> bool:
    """Whether a restart would stop something (restarting an inactive unit only starts it)."""
    return systemd.state(unit).active_state not in ("inactive", "failed")


def journal_tail(unit: str, lines: int = JOURNAL_LINES) -> list[str]:
    """The unit's last journal lines: the container's output and systemd's verdict."""
    from . import runner

    result = runner.run(
        ["journalctl", "-u", unit, "-n", str(lines * 4), "--no-pager", "-o", "short-iso"], check=False
    )
    kept = [
        line
        for line in result.stdout.splitlines()
        if not line.startswith("-- ") and not _PODMAN_EVENT.search(line)
    ]
    return kept[-lines:]


def describe_failure(outcome: JobOutcome) -> str:
    st = outcome.state
    return (
        f"{outcome.unit}: {outcome.verb} failed: job {outcome.job_result}, unit "
        f"{st.active_state}/{st.sub_state} (Result={st.result}, main process {st.exit_description})"
    )


def print_outcomes(outcomes: Sequence[JobOutcome], *, as_json: bool) -> int:
    """Tell each job's outcome (failures with their journal lines); return the exit code."""
    failed = [o for o in outcomes if not o.ok]
    logs = {o.unit: journal_tail(o.unit) for o in failed}
    if as_json:
        from .context import emit_json

        emit_json(
            {
                "ok": not failed,
                "jobs": [
                    {
                        "unit": o.unit,
                        "verb": o.verb,
                        "job_result": o.job_result,
                        "ok": o.ok,
                        "state": asdict(o.state),
                        "journal": logs.get(o.unit, []),
                    }
                    for o in outcomes
                ],
            }
        )
    else:
        for o in outcomes:
            if o.ok:
                print(f"{o.unit}: {o.verb} ok ({o.state.active_state}/{o.state.sub_state})")
        for o in failed:
            print(describe_failure(o), file=sys.stderr)
            for line in logs[o.unit]:
                print(f"    {line}", file=sys.stderr)
    return EXIT_JOBS_FAILED if failed else 0
