"""The CLI the benchmarks time, installed as a package installs it: a wheel, byte-compiled, run by
the distribution's python3 (what an RPM's /usr/bin/compute-units runs). Not `make`'s editable
install into whatever python3 comes first on PATH: an editable install's import hook alone adds
about 9 ms to every call, and a self-built interpreter without PGO starts and imports more slowly.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
VENV = REPO / "build" / "bench-venv"
SYSTEM_PYTHON = "/usr/bin/python3"


def installed_cli() -> str:
    """Install the checkout into build/bench-venv (dependencies once, the project every time)."""
    python = VENV / "bin" / "python"
    pip = [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    if not python.exists():
        subprocess.run([SYSTEM_PYTHON, "-m", "venv", str(VENV)], check=True)
        subprocess.run([*pip, str(REPO)], check=True)
    subprocess.run([*pip, "--no-deps", "--force-reinstall", str(REPO)], check=True)
    return str(VENV / "bin" / "compute-units")
