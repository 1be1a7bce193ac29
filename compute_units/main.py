"""The `compute-units` entry point.

start/stop/restart take a lean path (`lean.py`: argparse, no typer/rich/jinja2 imports, ~100 ms
less per call) when their arguments are plain. Anything else, including --help and every mistake,
goes to the full typer CLI, so help texts and error messages have one source.
"""

from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path


def lean(argv: list[str]) -> int | None:
    """Run a plain start/stop/restart; None when the full CLI should handle the arguments."""
    from .lean import parse

    args = parse(argv)
    if args is None:
        return None
    from . import jobs
    from .errors import ComputeUnitsError

    settle = getattr(args, "settle", 0.0)
    allow = getattr(args, "allow_disruptive", False)
    try:
        outcomes = None
        if args.services and not args.spec and args.root == Path("/"):
            # the named units, straight from systemd: no spec (nor YAML) is read
            outcomes = jobs.lifecycle_by_units(argv[0], args.services, args.timeout, settle, allow)
        if outcomes is None:
            from .context import make_context

            ctx = make_context(args.spec, args.root, None)
            outcomes = jobs.lifecycle(argv[0], args.services, ctx, args.timeout, settle, allow)
    except ComputeUnitsError as exc:
        from .context import report_error

        return report_error(exc, as_json=args.as_json)
    return jobs.print_outcomes(outcomes, as_json=args.as_json)


def run() -> None:
    code = lean(sys.argv[1:])
    if code is not None:
        # skip the interpreter's teardown (about 6 ms of finalising modules): the lean path has
        # closed its bus connection, so only its output is left to flush
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(BrokenPipeError, ValueError):  # reader gone, stream closed
                stream.flush()
        os._exit(code)
    from .cli import app

    app()


if __name__ == "__main__":  # pragma: no cover
    run()
