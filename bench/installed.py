"""The CLI the benchmarks time: installed as a package is (a wheel in a virtual environment of its
own, byte-compiled), not the editable install of `make`. An editable install's import hook alone
adds about 9 ms to every call; an RPM or a wheel has none."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
VENV = REPO / "build" / "bench-venv"


def installed_cli() -> str:
    """Install the checkout into build/bench-venv (dependencies once, the project every time)."""
    python = VENV / "bin" / "python"
    pip = [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
        subprocess.run([*pip, str(REPO)], check=True)
    subprocess.run([*pip, "--no-deps", "--force-reinstall", str(REPO)], check=True)
    return str(VENV / "bin" / "compute-units")
