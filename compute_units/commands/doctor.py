"""The `doctor` command: run the host checks of `compute_units.doctor` and print the findings."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from ..doctor import Finding, real_effects, repair_state, run_checks
from ..errors import ExitCode
from ..jobs import require_root
from .common import JsonOpt, RootOpt, SpecOpt, emit_json, make_context, out, reporting


def doctor(
    specs: SpecOpt = None,
    root: RootOpt = Path("/"),
    fix: Annotated[
        bool,
        typer.Option(
            "--fix",
            help="Load modules (and persist), stop+mask host libvirt, start machined, rebuild a "
            "broken state.json from what runs (the old file is kept aside).",
        ),
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Check the host: kernel modules, host libvirt, /dev/kvm, machined, cgroups, mounts, tools,
    container storage, registries (a real manifest request), upgrade state, running digests.

    Exit 0 when nothing fails (warnings allowed), 3 when the host is not ready.
    """
    with reporting(as_json):
        ctx = make_context(specs, root, None)
        services, _ = ctx.load()
        store = ctx.store()
        repaired: list[Finding] = []
        if fix:
            require_root("doctor --fix")
        with real_effects(store) as fx:
            if fix:
                repaired = repair_state(fx, services)
            findings = repaired + run_checks(fx, services, fix=fix)
        if as_json:
            emit_json(
                {"ok": all(f.status != "fail" for f in findings), "findings": [asdict(f) for f in findings]}
            )
        else:
            table = Table("", "check", "result", "how to fix", box=None)
            marks = {"ok": "ok", "warn": "WARN", "fail": "FAIL"}
            for f in findings:
                table.add_row(marks[f.status], f.check, f.message, f.fix or "")
            out.print(table)
        if any(f.status == "fail" for f in findings):
            raise typer.Exit(ExitCode.NOT_READY)
