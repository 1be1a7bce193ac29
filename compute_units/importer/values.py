"""Value conversions of the importer: secret-looking names, Go durations, env files, spec YAML."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

import yaml

SECRET_WORDS = ("PASSWORD", "PASSWD", "TOKEN", "SECRET", "CREDENTIAL")
_GO_DURATION_RE = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")
_GO_UNITS_MS = {"ns": 1e-6, "us": 1e-3, "µs": 1e-3, "ms": 1.0, "s": 1000.0, "m": 60_000.0, "h": 3_600_000.0}


def is_secret_name(name: str) -> bool:
    """PASSWORD, PASSWD, TOKEN, SECRET, CREDENTIAL anywhere in the name; KEY only as a word.

    KEY as a plain substring would make KEYSTONE_PUBLIC_SERVICE_HOST (a host name, in the seed's
    own line) a secret; as a word of the name (API_KEY, SSH_KEY_FILE) or at its end (APIKEY) it
    still catches keys.
    """
    upper = name.upper()
    if any(word in upper for word in SECRET_WORDS):
        return True
    parts = upper.split("_")
    return any(p in ("KEY", "KEYS") for p in parts) or upper.endswith(("KEY", "KEYS"))


def go_duration_ms(text: str) -> float | None:
    """A Go duration ('30s', '1m30s', '500ms', '0') in milliseconds, or None."""
    if text == "0":
        return 0.0
    total = 0.0
    pos = 0
    while pos < len(text):
        match = _GO_DURATION_RE.match(text, pos)
        if not match:
            return None
        total += float(match.group(1)) * _GO_UNITS_MS[match.group(2)]
        pos = match.end()
    return total if text else None


def spec_duration(ms: float) -> str:
    whole = round(ms)
    return f"{whole // 1000}s" if whole % 1000 == 0 else f"{whole}ms"


def parse_env_file(text: str) -> list[tuple[str, str | None]]:
    """docker's env-file format: NAME=VALUE (taken literally), NAME alone, '#' comments."""
    result: list[tuple[str, str | None]] = []
    for raw in text.splitlines():
        line = raw.lstrip()
        if not line or line.startswith("#"):
            continue
        name, eq, value = line.partition("=")
        result.append((name, value if eq else None))
    return result


def _plain(value: object) -> str:
    text = yaml.safe_dump(value, width=1_000_000, allow_unicode=True)
    return text.removesuffix("\n...\n").rstrip("\n")


def _flow(value: object) -> str:
    return yaml.safe_dump(
        value, default_flow_style=True, width=1_000_000, allow_unicode=True, sort_keys=False
    ).rstrip("\n")


def to_yaml(data: Mapping[str, object], header: Sequence[str]) -> str:
    """The spec text: top-level keys in `spec.TOP_KEYS` order, short lists in flow style."""
    lines = [f"# {h}" if h else "#" for h in header]
    for key, value in data.items():
        if isinstance(value, list) and key == "mounts":
            lines.append(f"{key}:")
            lines += [f"  - {_plain(item)}" for item in value]
        elif isinstance(value, list):
            lines.append(f"{key}: {_flow(value)}")
        elif isinstance(value, dict):
            lines.append(f"{key}:")
            for sub, item in value.items():
                rendered = _flow(item) if isinstance(item, list | dict) else _plain(item)
                lines.append(f"  {_plain(sub)}: {rendered}")
        else:
            lines.append(f"{key}: {_plain(value)}")
    return "\n".join(lines) + "\n"
