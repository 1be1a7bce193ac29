"""The size rule of docs/STYLE.md: no module over 600 lines, no function over 80 (`make lint`).

python -m compute_units_dev.sizes PATH...    prints each offender, exit 1 if there is one
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

MAX_MODULE_LINES = 600
MAX_FUNCTION_LINES = 80


def python_files(paths: Sequence[Path]) -> Iterator[Path]:
    for path in paths:
        yield from sorted(path.rglob("*.py")) if path.is_dir() else [path]


def offences(path: Path) -> list[str]:
    """What in `path` is over the limits, as `FILE:LINE: what`."""
    text = path.read_text()
    found = []
    lines = len(text.splitlines())
    if lines > MAX_MODULE_LINES:
        found.append(f"{path}:1: module of {lines} lines (limit {MAX_MODULE_LINES})")
    for node in ast.walk(ast.parse(text, str(path))):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            length = (node.end_lineno or node.lineno) - node.lineno + 1
            if length > MAX_FUNCTION_LINES:
                found.append(
                    f"{path}:{node.lineno}: function {node.name} of {length} lines (limit {MAX_FUNCTION_LINES})"
                )
    return found


def main(argv: Sequence[str]) -> int:
    found = [o for p in python_files([Path(a) for a in argv]) for o in offences(p)]
    for line in found:
        print(line, file=sys.stderr)
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
