"""The typer commands, one module per group; `compute_units.cli` registers them in one place.

Modules here import `common` (options, consoles, error reporting) and the library modules; none
imports `cli`, so there is no import cycle.
"""
