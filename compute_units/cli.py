"""The `compute-units` command line: one Typer app; every command registered here, in one place.

The commands live in `compute_units.commands` (argument parsing and output only; the work happens
in the library modules). start/stop/restart also have a lean parser (`lean.py`) used by `main.py`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

import typer

from . import __version__
from .commands import doctor, interop, lifecycle, prune, specs, upgrade
from .commands.common import out
from .errors import exit_codes_text

HELP = "Run OpenStack compute-node services as podman containers under systemd."

# (name, function): the order is the order of `--help`
COMMANDS: list[tuple[str, Callable[..., Any]]] = [
    ("validate", specs.validate),
    ("generate", specs.generate),
    ("render", specs.render_cmd),
    ("list", specs.list_cmd),
    ("apply", lifecycle.apply),
    ("start", lifecycle.start),
    ("stop", lifecycle.stop),
    ("restart", lifecycle.restart),
    ("status", lifecycle.status),
    ("pull", upgrade.pull),
    ("upgrade", upgrade.upgrade),
    ("rollback", upgrade.rollback),
    ("history", upgrade.history),
    ("prune", prune.prune),
    ("doctor", doctor.doctor),
    ("import", interop.import_cmd),
    ("export", interop.export_cmd),
]

app = typer.Typer(
    name="compute-units",
    help=f"{HELP}\n\nExit codes: " + "; ".join(exit_codes_text().splitlines()) + ".",
    no_args_is_help=True,
    add_completion=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)
for _name, _function in COMMANDS:
    app.command(_name)(_function)


def version_callback(value: bool) -> None:
    if value:
        out.print(f"compute-units {__version__}", markup=False)
        raise typer.Exit()


@app.callback()
def main(
    version: Annotated[
        bool,
        typer.Option("--version", callback=version_callback, is_eager=True, help="Show the version."),
    ] = False,
) -> None:
    """Run OpenStack compute-node services as podman containers under systemd."""


def run() -> None:
    app()


if __name__ == "__main__":  # pragma: no cover
    run()
