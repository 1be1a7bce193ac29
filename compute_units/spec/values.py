"""Spec values: the key tables, name patterns, image references, durations and path normalising.

Pure functions of text; shared by the spec checker, the importer and the commands that take an
image reference on their command line.
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Iterable

from ..errors import UsageError
from ..model import ImageRef

TOP_KEYS = (
    "name",
    "description",
    "image",
    "command",
    "host_namespaces",
    "privileged",
    "mounts",
    "devices",
    "environment",
    "secrets",
    "requires",
    "health",
    "stop_timeout",
    "restart",
    "keeps_vms",
    "disruptive",
    "preflight",
    "podman_args",
)
MOUNT_KEYS = ("source", "target", "read_only", "propagation", "create")
HEALTH_KEYS = ("command", "interval", "timeout", "start_period", "retries")
PREFLIGHT_KEYS = ("kernel_modules", "host_units_inactive", "paths")
SECRET_KEYS = ("file", "podman_secret")
DEFAULT_DISRUPTIVE_REASON = "its spec marks it disruptive"  # `disruptive: true` without a reason

# Limits: far below what systemd accepts (a unit file line may be 1 MiB), far above any real spec.
MAX_DESCRIPTION = 1024  # characters; systemd shows it in every status line
MAX_STRING = 4096  # characters, any other string value (paths, argv items, names, podman_args items)
MAX_ENV_VALUE = 16384  # characters, one environment value
MAX_ITEMS = 256  # entries of one list or mapping (mounts, devices, environment, secrets, command, ...)
MAX_EXEC_START = 131072  # characters, the whole podman run command line of the unit

NAME_RE = re.compile(r"[a-z0-9][a-z0-9_.-]*\Z")
ENV_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
MODULE_RE = re.compile(r"[A-Za-z0-9_-]+\Z")
UNIT_RE = re.compile(r"[A-Za-z0-9:_.@\\-]+\.(service|socket|target|mount|path|timer|slice|scope)\Z")
PODMAN_SECRET_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*\Z")
_DOMAIN = r"(?:[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*|\[[0-9A-Fa-f:]+\])(?::[0-9]+)?"
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
DOMAIN_RE = re.compile(_DOMAIN + r"\Z")
REPO_RE = re.compile(_COMPONENT + r"(?:/" + _COMPONENT + r")*\Z")
TAG_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}\Z")
DIGEST_RE = re.compile(r"sha256:[0-9a-f]{64}\Z")
_DURATION_UNITS = {
    "ms": 1,
    "s": 1000,
    "sec": 1000,
    "m": 60_000,
    "min": 60_000,
    "h": 3_600_000,
    "hr": 3_600_000,
}
_DURATION_RE = re.compile(r"\s*(\d+)\s*(ms|sec|s|min|m|hr|h)?")
_CONTROL_NAMES = {"\n": "a newline", "\r": "a carriage return", "\x00": "a NUL byte", "\t": "a tab"}


def did_you_mean(word: str, choices: Iterable[str]) -> str | None:
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f"did you mean '{close[0]}'?" if close else None


def parse_duration_ms(text: str) -> int | None:
    """systemd-style duration ('30s', '1min 30s', '500ms', bare seconds) in ms, or None."""
    text = text.strip()
    if not text:
        return None
    if text.isdigit():
        return int(text) * 1000
    total = 0
    pos = 0
    while pos < len(text):
        match = _DURATION_RE.match(text, pos)
        if not match or match.end() == pos or match.group(2) is None:
            return None
        total += int(match.group(1)) * _DURATION_UNITS[match.group(2)]
        pos = match.end()
        while pos < len(text) and text[pos] == " ":
            pos += 1
    return total


def parse_image(text: str) -> tuple[ImageRef | None, str | None]:
    """Parse an image reference; return (ref, None) or (None, reason)."""
    rest = text
    digest = None
    if "@" in rest:
        rest, digest = rest.split("@", 1)
        if not DIGEST_RE.match(digest):
            return None, f"bad digest '{digest}' (expected sha256: and 64 hex digits)"
    registry = None
    first, slash, remainder = rest.partition("/")
    if slash and ("." in first or ":" in first or first == "localhost" or first.startswith("[")):
        if not DOMAIN_RE.match(first):
            return None, f"bad registry '{first}'"
        registry, rest = first, remainder
    tag = None
    last_slash = rest.rfind("/")
    colon = rest.rfind(":")
    if colon > last_slash:
        rest, tag = rest[:colon], rest[colon + 1 :]
        if not TAG_RE.match(tag):
            return None, f"bad tag '{tag}'"
    if not rest:
        return None, "repository name is empty"
    if rest.lower() != rest and REPO_RE.match(rest.lower()):
        return None, f"repository '{rest}' must be lowercase"
    if not REPO_RE.match(rest):
        return None, f"bad repository name '{rest}'"
    return ImageRef(registry, rest, tag, digest), None


def check_image_reference(text: str) -> ImageRef:
    """An image reference given on a command line (`upgrade --image`), checked like a spec's image.

    Stricter than a spec in one way: a reference that names no registry is refused, not warned
    about (`--image busybox` would go to whichever public registry podman is configured to ask).
    Raises `UsageError` with the message a spec gets.
    """
    if text.startswith("-"):
        raise UsageError(
            f"'{text}' is an option, not an image reference", hint="give --image REGISTRY/NAME:TAG"
        )
    bad = bad_char(text)
    if bad is not None:
        raise UsageError(f"invalid image reference: it contains {bad}")
    image, reason = parse_image(text)
    if image is None:
        raise UsageError(f"invalid image reference '{text}': {reason}")
    if image.registry is None:
        raise UsageError(f"'{text}' names no registry", hint=no_registry_hint(text))
    return image


def no_registry_hint(text: str) -> str:
    return f"podman under systemd cannot ask which registry to use: write e.g. REGISTRY:PORT/{text}"


def bad_char(value: str) -> str | None:
    for ch in value:
        if ch in _CONTROL_NAMES:
            return _CONTROL_NAMES[ch]
        if ord(ch) < 0x20 or ord(ch) == 0x7F:
            return f"a control character (U+{ord(ch):04X})"
    return None


def normal_path(path: str) -> str:
    """`path` normalised as POSIX does it ('//x' is kept as '/x', as the kernel reads it)."""
    normal = os.path.normpath(path)
    return "/" + normal.lstrip("/") if normal.startswith("//") else normal
