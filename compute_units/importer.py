"""`docker run` / `podman run` command lines → spec YAML. Pure: text in, YAML text and messages out.

Reads no files and runs nothing: `interop_cmd` reads scripts and `--env-file`s and writes results.

Shell handling is deliberately small. A script is split into simple commands (newlines, `;`, `&&`,
`||`), with quotes, backslash escapes, `\\` line continuations and comments handled as the shell
does. Nothing is expanded: `$PASSWORD`, `${X}`, `$(cmd)` and backquotes stay in the text as written
and the word is flagged, so values that came from shell variables are reported, never guessed.
Anything else (pipes, redirections, subshells, `&`) is refused with the offending character.

Option parsing follows docker's (pflag) rules: `--opt=value`, `--opt value`, clustered short flags
(`-it`, `-dit`), attached short values (`-eFOO=bar`), `--` ends the options and the first word
that is not an option is the image; everything after it is the container's argv.

Each known option is either mapped to a typed spec key, ignored with a note (foreground/terminal
options such as `-d`, `--rm`, `-it`, which mean nothing under systemd), dropped with a warning
(what the spec cannot express, or what compute-units sets itself), or copied into `podman_args:` as
one `--opt=value` item. Only options that cannot conflict with the typed keys or with the systemd
integration are copied (resource limits, capabilities, security options, user, workdir, ...: see
`PASS`). An unknown option is an error: without knowing whether it takes a value the rest of the
line cannot be parsed.
"""

from __future__ import annotations

import json
import posixpath
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Literal

import yaml

from . import spec
from .errors import UsageError
from .model import NAMESPACES, PROPAGATIONS, ImageRef

Severity = Literal["error", "warning", "note"]

DEFAULT_SECRETS_DIR = PurePosixPath("/etc/compute-units/secrets")
SECRET_WORDS = ("PASSWORD", "PASSWD", "TOKEN", "SECRET", "CREDENTIAL")
RESTART_MAP = {"no": "no", "always": "always", "unless-stopped": "always", "on-failure": "on-failure"}
DOCKER_HEALTH_DEFAULTS = "interval 30s, timeout 30s, start period 0s, retries 3"
SPEC_HEALTH_DEFAULTS = "interval 30s, timeout 5s, start period 20s, retries 3"

_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_ASSIGNMENT_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*=")
_REFERENCE_RE = re.compile(r"\$(?:[A-Za-z_{(]|[0-9@*#?!$-])|`")
_GO_DURATION_RE = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")
_GO_UNITS_MS = {"ns": 1e-6, "us": 1e-3, "µs": 1e-3, "ms": 1.0, "s": 1000.0, "m": 60_000.0, "h": 3_600_000.0}
_BOOLEANS = {"1": True, "t": True, "T": True, "true": True, "TRUE": True, "True": True}
_BOOLEANS |= {"0": False, "f": False, "F": False, "false": False, "FALSE": False, "False": False}
_SHELL_META = set("|&;<>()$`\\\"'*?[]#~{}!\n")


# --------------------------------------------------------------------------- messages and results


@dataclass(frozen=True)
class Message:
    """One thing to tell the operator, tied to a command line (`where`: script:line, or empty)."""

    severity: Severity
    where: str
    text: str
    hint: str | None = None

    def format(self) -> str:
        place = f"{self.where}: " if self.where else ""
        line = f"compute-units: {self.severity}: {place}{self.text}"
        return f"{line}\n  hint: {self.hint}" if self.hint else line


class ImportFailed(UsageError):
    """One or more command lines cannot be imported (exit 2; nothing is written)."""

    def __init__(self, problems: Sequence[Message]) -> None:
        self.problems = list(problems)
        super().__init__(f"{len(self.problems)} error(s) in the command lines")


@dataclass(frozen=True)
class SecretValue:
    """A secret taken out of the spec: `value` goes to the file `path` (None: unknown here)."""

    service: str
    variable: str
    path: PurePosixPath  # the host path the spec names
    value: str | None
    origin: str  # how the value was given: the shell reference ('$PASSWORD'), or a description
    where: str


@dataclass
class ImportedSpec:
    name: str
    where: str
    text: str  # the spec YAML
    secrets: list[SecretValue] = field(default_factory=list)


@dataclass(frozen=True)
class Word:
    """A shell word after quote removal; `expands` when it holds an unexpanded $VAR, $(..) or `..`."""

    text: str
    expands: bool = False


@dataclass(frozen=True)
class CommandLine:
    words: tuple[Word, ...]
    source: str = ""  # script name, empty for a command line given as arguments
    line: int = 1

    @property
    def where(self) -> str:
        return f"{self.source}:{self.line}" if self.source else ""


# --------------------------------------------------------------------------- shell splitting


def split_script(text: str, source: str = "") -> list[CommandLine]:
    """Split shell text into simple commands; raise ImportFailed for syntax we do not handle."""
    return _ShellSplitter(text, source).run()


def from_arguments(arguments: Sequence[str]) -> list[CommandLine]:
    """Words given on our own command line (after `--`); one word with blanks is a shell line."""
    if len(arguments) == 1 and any(c in arguments[0] for c in " \t\n"):
        return split_script(arguments[0])
    words = tuple(Word(a, bool(_REFERENCE_RE.search(a))) for a in arguments)
    return [CommandLine(words)] if words else []


class _ShellSplitter:
    def __init__(self, text: str, source: str) -> None:
        self.text = text
        self.source = source
        self.pos = 0
        self.line = 1
        self.commands: list[CommandLine] = []
        self.problems: list[Message] = []
        self.words: list[Word] = []
        self.chars: list[str] | None = None  # the word being built, None between words
        self.expands = False
        self.start_line = 1
        self.broken = False  # the current command had a syntax error: drop it

    def where(self, line: int) -> str:
        return f"{self.source}:{line}" if self.source else ""

    def fail(self, line: int, message: str, hint: str | None = None) -> None:
        self.problems.append(Message("error", self.where(line), message, hint))
        self.broken = True

    def begin(self) -> list[str]:
        if self.chars is None:
            self.chars = []
            self.expands = False
            if not self.words:
                self.start_line = self.line
        return self.chars

    def end_word(self) -> None:
        if self.chars is not None:
            self.words.append(Word("".join(self.chars), self.expands))
            self.chars = None

    def end_command(self) -> None:
        self.end_word()
        if self.words and not self.broken:
            self.commands.append(CommandLine(tuple(self.words), self.source, self.start_line))
        self.words = []
        self.broken = False

    def run(self) -> list[CommandLine]:
        text = self.text
        while self.pos < len(text):
            c = text[self.pos]
            if c == "\\":
                self.backslash()
            elif c in " \t\r":
                self.end_word()
                self.pos += 1
            elif c == "\n":
                self.end_command()
                self.line += 1
                self.pos += 1
            elif c == "#" and self.chars is None:
                end = text.find("\n", self.pos)
                self.pos = len(text) if end < 0 else end
            elif c == "'":
                self.single_quoted()
            elif c == '"':
                self.double_quoted()
            elif c in "$`":
                self.begin().append(self.expansion())
            elif c == ";" or text.startswith(("&&", "||"), self.pos):
                self.end_command()
                self.pos += 1 if c == ";" else 2
            elif c in "&|<>()":
                self.fail(
                    self.line,
                    f"unsupported shell syntax '{c}': only simple commands can be imported",
                    "remove redirections, pipes and subshells from the line",
                )
                self.skip_line()
            else:
                if c == "~" and self.chars is None:
                    self.begin()
                    self.expands = True
                self.begin().append(c)
                self.pos += 1
        self.end_command()
        if self.problems:
            raise ImportFailed(self.problems)
        return self.commands

    def skip_line(self) -> None:
        """After a syntax error: drop the rest of the physical line (continuations included)."""
        text = self.text
        while self.pos < len(text) and text[self.pos] != "\n":
            if text.startswith("\\\n", self.pos):
                self.line += 1
                self.pos += 1
            self.pos += 1
        self.chars = None

    def backslash(self) -> None:
        text = self.text
        if text.startswith("\\\n", self.pos):  # line continuation
            self.pos += 2
            self.line += 1
            return
        nxt = text[self.pos + 1 : self.pos + 2]
        self.begin().append(nxt or "\\")
        self.pos += 2

    def single_quoted(self) -> None:
        start_line = self.line
        end = self.text.find("'", self.pos + 1)
        if end < 0:
            self.unbalanced("'", start_line)
            return
        body = self.text[self.pos + 1 : end]
        self.begin().extend(body)
        self.line += body.count("\n")
        self.pos = end + 1

    def double_quoted(self) -> None:
        text = self.text
        start_line = self.line
        chars = self.begin()
        self.pos += 1
        while self.pos < len(text):
            c = text[self.pos]
            if c == '"':
                self.pos += 1
                return
            if c == "\\" and self.pos + 1 < len(text):
                nxt = text[self.pos + 1]
                if nxt == "\n":
                    self.line += 1
                elif nxt in '$`"\\':
                    chars.append(nxt)
                else:
                    chars.extend(("\\", nxt))
                self.pos += 2
                continue
            if c in "$`":
                chars.append(self.expansion())
                continue
            if c == "\n":
                self.line += 1
            chars.append(c)
            self.pos += 1
        self.unbalanced('"', start_line)

    def unbalanced(self, quote: str, line: int) -> None:
        self.fail(line, f"unbalanced quotes: the {quote} opened here is never closed")
        self.pos = len(self.text)
        self.chars = None

    def expansion(self) -> str:
        """The text of `$NAME`, `${...}`, `$(...)` or a backquoted command, kept as written."""
        text = self.text
        start = self.pos
        if text[start] == "`":
            end = text.find("`", start + 1)
            end = len(text) - 1 if end < 0 else end
            self.pos = end + 1
            self.expands = True
            return text[start : self.pos]
        nxt = text[start + 1 : start + 2]
        if nxt in ("(", "{"):
            close = ")" if nxt == "(" else "}"
            depth = 0
            i = start + 1
            while i < len(text):
                if text[i] == nxt:
                    depth += 1
                elif text[i] == close:
                    depth -= 1
                    if depth == 0:
                        break
                i += 1
            self.pos = min(i + 1, len(text))
            self.expands = True
            return text[start : self.pos]
        match = re.compile(r"[A-Za-z_][A-Za-z0-9_]*|[0-9@*#?!$-]").match(text, start + 1)
        if match:
            self.pos = match.end()
            self.expands = True
            return text[start : self.pos]
        self.pos = start + 1
        return "$"


# --------------------------------------------------------------------------- option table

# canonical option -> takes a value. Groups say what happens to it (see the module docstring).
TYPED: dict[str, bool] = {
    "--name": True,
    "--pid": True,
    "--network": True,
    "--ipc": True,
    "--uts": True,
    "--cgroupns": True,
    "--privileged": False,
    "--volume": True,
    "--mount": True,
    "--device": True,
    "--env": True,
    "--env-file": True,
    "--secret": True,
    "--health-cmd": True,
    "--health-interval": True,
    "--health-timeout": True,
    "--health-start-period": True,
    "--health-retries": True,
    "--no-healthcheck": False,
    "--stop-timeout": True,
    "--restart": True,
    "--entrypoint": True,
    "--init": False,
    "--label": True,
    "--publish": True,
    "--publish-all": False,
}
NOTE: dict[str, bool] = {
    "--detach": False,
    "--rm": False,
    "--interactive": False,
    "--tty": False,
    "--attach": True,
    "--detach-keys": True,
    "--sig-proxy": False,
    "--quiet": False,
    "--disable-content-trust": False,
}
OWNED: dict[str, bool] = {
    "--cidfile": True,
    "--replace": False,
    "--sdnotify": True,
    "--cgroups": True,
    "--log-driver": True,
    "--conmon-pidfile": True,
    "--cgroup-parent": True,
}
PASS: dict[str, bool] = {
    **dict.fromkeys(
        (
            "--add-host",
            "--annotation",
            "--blkio-weight",
            "--blkio-weight-device",
            "--cap-add",
            "--cap-drop",
            "--cgroup-conf",
            "--chrootdirs",
            "--cpu-period",
            "--cpu-quota",
            "--cpu-rt-period",
            "--cpu-rt-runtime",
            "--cpu-shares",
            "--cpus",
            "--cpuset-cpus",
            "--cpuset-mems",
            "--device-cgroup-rule",
            "--device-read-bps",
            "--device-read-iops",
            "--device-write-bps",
            "--device-write-iops",
            "--dns",
            "--dns-option",
            "--dns-search",
            "--expose",
            "--gidmap",
            "--group-add",
            "--health-on-failure",
            "--hostname",
            "--hostuser",
            "--image-volume",
            "--init-path",
            "--ip",
            "--ip6",
            "--log-opt",
            "--mac-address",
            "--memory",
            "--memory-reservation",
            "--memory-swap",
            "--memory-swappiness",
            "--oom-score-adj",
            "--passwd-entry",
            "--personality",
            "--pids-limit",
            "--runtime",
            "--seccomp-policy",
            "--security-opt",
            "--shm-size",
            "--stop-signal",
            "--storage-opt",
            "--subgidname",
            "--subuidname",
            "--sysctl",
            "--systemd",
            "--timeout",
            "--tmpfs",
            "--tz",
            "--uidmap",
            "--ulimit",
            "--umask",
            "--unsetenv",
            "--user",
            "--userns",
            "--workdir",
        ),
        True,
    ),
    **dict.fromkeys(
        ("--oom-kill-disable", "--read-only", "--read-only-tmpfs", "--no-hosts", "--http-proxy"), False
    ),
}
DROP_REASONS: dict[str, str] = {
    "--pull": "compute-units pulls images itself (compute-units upgrade)",
    "--pod": "compute-units runs one container per unit, without pods",
    "--pod-id-file": "compute-units runs one container per unit, without pods",
    "--requires": "podman container dependencies are not services; use requires: in the spec",
    "--volumes-from": "volumes of another container cannot be expressed; add them as mounts",
    "--link": "legacy container links cannot be expressed",
    "--network-alias": "compute-units services use the host network or the default one",
    "--link-local-ip": "compute-units services use the host network or the default one",
    "--label-file": "labels from a file are not read; add them to podman_args as --label=KEY=VALUE",
    "--env-host": "the environment of the systemd unit is not the shell's",
    "--env-merge": "cannot be expressed in a spec",
    "--preserve-fds": "systemd passes no extra file descriptors",
    "--pidfile": "compute-units tracks the container with its own cidfile",
    "--platform": "image selection is the image reference's job",
    "--arch": "image selection is the image reference's job",
    "--os": "image selection is the image reference's job",
    "--variant": "image selection is the image reference's job",
    "--authfile": "registry credentials are podman's configuration, not the spec's",
    "--creds": "registry credentials are podman's configuration, not the spec's",
    "--cert-dir": "registry credentials are podman's configuration, not the spec's",
    "--tls-verify": "registry settings are podman's configuration, not the spec's",
    "--decryption-key": "image decryption cannot be expressed in a spec",
    "--volume-driver": "only bind mounts of host paths can be expressed",
    "--isolation": "a Windows-only option",
    "--cpu-count": "a Windows-only option",
    "--cpu-percent": "a Windows-only option",
    "--io-maxbandwidth": "a Windows-only option",
    "--io-maxiops": "a Windows-only option",
    "--gpus": "not supported by podman; use devices: or podman_args with --device=nvidia.com/gpu=all",
    "--kernel-memory": "deprecated and ignored by current kernels",
    "--domainname": "not supported by podman",
    "--health-startup-cmd": "startup health checks cannot be expressed in a spec",
    "--health-startup-interval": "startup health checks cannot be expressed in a spec",
    "--health-startup-retries": "startup health checks cannot be expressed in a spec",
    "--health-startup-success": "startup health checks cannot be expressed in a spec",
    "--health-startup-timeout": "startup health checks cannot be expressed in a spec",
}
DROP_BOOLEAN = {"--env-host", "--tls-verify"}
SENSITIVE = {"--creds", "--decryption-key"}
ERRORS: dict[str, tuple[bool, str]] = {
    "--rootfs": (False, "--rootfs runs a directory, not an image; only images can be imported"),
    "--help": (False, "--help is not a container option"),
}
ALIASES = {
    "--net": "--network",
    "--dns-opt": "--dns-option",
    "-e": "--env",
    "-v": "--volume",
    "-p": "--publish",
    "-P": "--publish-all",
    "-u": "--user",
    "-w": "--workdir",
    "-h": "--hostname",
    "-l": "--label",
    "-m": "--memory",
    "-c": "--cpu-shares",
    "-a": "--attach",
    "-d": "--detach",
    "-i": "--interactive",
    "-t": "--tty",
    "-q": "--quiet",
}


def _arity(option: str) -> bool | None:
    """Whether a canonical option takes a value; None for an unknown option."""
    for table in (TYPED, NOTE, OWNED, PASS):
        if option in table:
            return table[option]
    if option in DROP_REASONS:
        return option not in DROP_BOOLEAN
    if option in ERRORS:
        return ERRORS[option][0]
    return None


# --------------------------------------------------------------------------- run-line parsing


@dataclass(frozen=True)
class Option:
    written: str  # as on the line: -e, --net, --env
    name: str  # canonical: --env, --network
    value: str | None  # None for a boolean given without =value
    expands: bool = False

    @property
    def shown(self) -> str:
        if self.value is None:
            return self.written
        if self.name in SENSITIVE:
            return f"{self.written}=…"
        return (
            f"{self.written}={self.value}"
            if self.written.startswith("--")
            else f"{self.written} {self.value}"
        )


@dataclass(frozen=True)
class RunLine:
    engine: str  # docker or podman
    options: tuple[Option, ...]
    image: Word
    args: tuple[Word, ...]
    where: str


def parse_run(command: CommandLine) -> tuple[RunLine | None, list[Message]]:
    """The options, image and argv of one `docker run` / `podman run` line (or the errors)."""
    where = command.where
    messages: list[Message] = []

    def error(text: str, hint: str | None = None) -> tuple[None, list[Message]]:
        messages.append(Message("error", where, text, hint))
        return None, messages

    words = list(command.words)
    while words and _ASSIGNMENT_RE.match(words[0].text):
        name = words[0].text.split("=", 1)[0]
        messages.append(
            Message(
                "warning",
                where,
                f"shell assignment to {name} ignored: compute-units does not run the script "
                "and expands no variables",
            )
        )
        words.pop(0)
    if not words:
        return None, messages
    if posixpath.basename(words[0].text) == "sudo":
        words.pop(0)
        while words and words[0].text.startswith("-"):
            flag = words.pop(0).text
            if flag == "--":
                break
            if flag in ("-u", "-g", "-p", "-C", "-D", "-r", "-t", "-U", "-T", "-R") and words:
                words.pop(0)
        if not words:
            return error("'sudo' without a command")
    engine = posixpath.basename(words[0].text)
    supported = "only 'docker run' and 'podman run' lines can be imported"
    if engine not in ("docker", "podman"):
        return error(f"'{words[0].text}' is not supported: {supported}")
    rest = words[1:]
    if rest and rest[0].text.startswith("-"):
        return error(f"'{engine} {rest[0].text}': global options before 'run' are not supported")
    if rest and rest[0].text == "container":
        rest = rest[1:]
        verb = f"{engine} container"
    else:
        verb = engine
    if not rest or rest[0].text != "run":
        shown = f"{verb} {rest[0].text}" if rest else verb
        return error(f"'{shown}' is not supported: {supported}")
    rest = rest[1:]

    options: list[Option] = []
    i = 0

    def add_valued(written: str, name: str, attached: str | None, word: Word) -> bool:
        """An option that takes a value: attached to it, or the next word. False if there is none."""
        nonlocal i
        if attached is not None:
            options.append(Option(written, name, attached, word.expands))
        elif i < len(rest):
            options.append(Option(written, name, rest[i].text, rest[i].expands))
            i += 1
        else:
            return False
        return True

    while i < len(rest):
        word = rest[i]
        text = word.text
        if text == "--":
            i += 1
            break
        if not text.startswith("-") or text == "-":
            break
        i += 1
        if text.startswith("--"):
            written, eq, attached = text.partition("=")
            name = ALIASES.get(written, written)
            takes = _arity(name)
            if takes is None:
                return error(f"unknown option '{written}'")
            if not takes:
                value: str | None = attached if eq else None
                if value is not None and value not in _BOOLEANS:
                    return error(f"option '{written}' takes true or false, got '{value}'")
                options.append(Option(written, name, value, word.expands))
                continue
            if not add_valued(written, name, attached if eq else None, word):
                return error(f"option '{written}' needs a value")
            continue
        # short options, possibly clustered (-it) or with an attached value (-eX=1, -e=X=1)
        j = 1
        while j < len(text):
            written = "-" + text[j]
            name = ALIASES.get(written, written)
            takes = _arity(name)
            if takes is None:
                shown = f"unknown option '{written}'" + (f" in '{text}'" if len(text) > 2 else "")
                return error(shown)
            if not takes:
                options.append(Option(written, name, None))
                j += 1
                continue
            attached = text[j + 1 :]
            if attached.startswith("="):
                attached = attached[1:]
            if not add_valued(written, name, attached or None, word):
                return error(f"option '{written}' needs a value")
            break
    if i >= len(rest):
        return error(f"'{verb} run' has no image", "give the image after the options")
    for option in options:
        if option.name in ERRORS:
            return error(ERRORS[option.name][1])
    image = rest[i]
    return RunLine(engine, tuple(options), image, tuple(rest[i + 1 :]), where), messages


# --------------------------------------------------------------------------- mapping to a spec


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


def _spec_duration(ms: float) -> str:
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


class _Mapper:
    """Builds one spec (as an ordered mapping) from one parsed run line."""

    def __init__(
        self,
        run: RunLine,
        secrets_dir: PurePosixPath,
        env_files: Mapping[str, str],
        command: Sequence[str] | None,
    ) -> None:
        self.run = run
        self.where = run.where
        self.secrets_dir = secrets_dir
        self.env_files = env_files
        self.command_override = command
        self.messages: list[Message] = []
        self.failed = False
        self.name: str | None = None
        self.namespaces: list[str] = []
        self.privileged = False
        self.mounts: dict[str, str] = {}  # target -> short form
        self.devices: list[str] = []
        self.environment: dict[str, str] = {}
        self.secret_values: dict[str, SecretValue] = {}
        self.podman_secrets: dict[str, str] = {}
        self.health: dict[str, object] = {}
        self.health_options: list[Option] = []
        self.no_healthcheck = False
        self.stop_timeout: str | None = None
        self.restart: str | None = None
        self.entrypoint: list[str] | None = None
        self.entrypoint_option: Option | None = None
        self.podman_args: list[str] = []

    # -- messages
    def error(self, text: str, hint: str | None = None) -> None:
        self.messages.append(Message("error", self.where, text, hint))
        self.failed = True

    def warn(self, text: str, hint: str | None = None) -> None:
        self.messages.append(Message("warning", self.where, text, hint))

    def note(self, text: str) -> None:
        self.messages.append(Message("note", self.where, text))

    def dropped(self, option: Option, reason: str) -> None:
        self.warn(f"{option.shown}: not imported: {reason}")

    # -- the mapping
    def build(self) -> tuple[dict[str, object] | None, list[SecretValue]]:
        run = self.run
        options = run.options
        host_network = any(o.name == "--network" and o.value == "host" for o in options)
        host_pid = any(o.name == "--pid" and o.value == "host" for o in options)
        env_options: list[Option] = []
        for option in options:
            name = option.name
            if name in NOTE:
                self.note(
                    f"{option.shown} ignored: under systemd the container runs detached, without a terminal"
                )
            elif name in OWNED:
                self.warn(f"{option.shown}: not imported: compute-units sets {name} itself")
            elif name in DROP_REASONS:
                self.dropped(option, DROP_REASONS[name])
            elif name in PASS:
                self.pass_through(option)
            elif name in ("--env", "--env-file"):
                env_options.append(option)
            else:
                self.typed(option, host_network=host_network, host_pid=host_pid)
        self.environment_from(env_options)
        self.finish_health()
        image = self.image()
        if self.failed or image is None:
            return None, []
        name = self.name or _provisional_name(run) or ""
        command = self.command(name)
        if self.failed:
            return None, []
        if self.restart is None:
            self.note(
                "no --restart: docker would not restart the container; the spec keeps "
                "compute-units' default restart: on-failure"
            )
        data: dict[str, object] = {"name": name, "description": f"Imported from {run.engine} run"}
        data["image"] = image
        if command is not None:
            data["command"] = command
        if self.namespaces:
            data["host_namespaces"] = [ns for ns in NAMESPACES if ns in self.namespaces]
        if self.privileged:
            data["privileged"] = True
        if self.mounts:
            data["mounts"] = list(self.mounts.values())
        if self.devices:
            data["devices"] = self.devices
        if self.environment:
            data["environment"] = self.environment
        secrets: dict[str, dict[str, str]] = {}
        for variable, value in self.secret_values.items():
            secrets[variable] = {"file": str(value.path)}
        for variable, podman_secret in self.podman_secrets.items():
            secrets[variable] = {"podman_secret": podman_secret}
        if secrets:
            data["secrets"] = secrets
        if self.health:
            data["health"] = self.health
        if self.stop_timeout is not None:
            data["stop_timeout"] = self.stop_timeout
        if self.restart is not None:
            data["restart"] = self.restart
        if self.podman_args:
            data["podman_args"] = self.podman_args
        found = [
            SecretValue(name, v.variable, v.path, v.value, v.origin, v.where)
            for v in self.secret_values.values()
        ]
        return data, found

    def pass_through(self, option: Option) -> None:
        name = option.name
        if name in (
            "--ip",
            "--ip6",
            "--mac-address",
            "--expose",
            "--dns",
            "--dns-option",
            "--dns-search",
        ) and any(o.name == "--network" and o.value == "host" for o in self.run.options):
            self.dropped(option, "meaningless with the host network")
            return
        if option.value is None:
            self.podman_args.append(name)
        elif not PASS[name]:  # a boolean given as --opt=true|false
            if not _BOOLEANS[option.value]:
                return
            self.podman_args.append(name)
        else:
            self.podman_args.append(f"{name}={option.value}")
            if option.expands:
                self.shell_reference(option.shown)
        self.note(f"{option.shown} copied to podman_args")

    def shell_reference(self, shown: str) -> None:
        self.warn(
            f"{shown}: refers to a shell variable or command, written as-is; "
            "the container receives this text literally",
            "replace it with the real value in the spec",
        )

    def typed(self, option: Option, *, host_network: bool, host_pid: bool) -> None:
        name = option.name
        value = option.value
        if name in ("--pid", "--network", "--ipc", "--uts", "--cgroupns"):
            namespace = {"--pid": "pid", "--network": "network", "--ipc": "ipc", "--uts": "uts"}.get(
                name, "cgroup"
            )
            if value == "host":
                if namespace not in self.namespaces:
                    self.namespaces.append(namespace)
            elif value in ("", "private", "bridge", "default", "shareable"):
                self.note(f"{option.shown} is the default: nothing to import")
            else:
                self.dropped(option, "only the host namespace can be expressed (host_namespaces)")
        elif name == "--name":
            assert value is not None
            if not spec.NAME_RE.match(value):
                self.error(
                    f"--name '{value}' is not a valid service name",
                    "use lowercase letters, digits, '_', '.' and '-', starting with a letter or digit",
                )
            self.name = value
        elif name == "--privileged":
            self.privileged = value is None or _BOOLEANS[value]
        elif name == "--volume":
            assert value is not None
            self.volume(option, value)
        elif name == "--mount":
            assert value is not None
            self.mount(option, value)
        elif name == "--device":
            assert value is not None
            self.device(option, value)
        elif name == "--secret":
            assert value is not None
            self.podman_secret(option, value)
        elif name.startswith("--health-") or name == "--no-healthcheck":
            if name == "--no-healthcheck":
                self.no_healthcheck = value is None or _BOOLEANS[value]
            else:
                self.health_options.append(option)
        elif name == "--stop-timeout":
            assert value is not None
            if not value.isdigit() or not 1 <= int(value) <= 3600:
                self.error(f"--stop-timeout '{value}': expected whole seconds from 1 to 3600")
            else:
                self.stop_timeout = f"{int(value)}s"
        elif name == "--restart":
            assert value is not None
            self.restart_policy(value)
        elif name == "--entrypoint":
            assert value is not None
            self.entrypoint_option = option
            if value.startswith("["):
                try:
                    parsed = json.loads(value)
                except ValueError:
                    parsed = None
                if not isinstance(parsed, list) or not all(isinstance(p, str) for p in parsed):
                    self.error(f"--entrypoint '{value}': not a JSON array of strings")
                    return
                self.entrypoint = parsed
            else:
                self.entrypoint = [value]
        elif name == "--init":
            if value is not None and not _BOOLEANS[value]:
                return
            if host_pid:
                self.dropped(option, "podman refuses --init with the host PID namespace")
            else:
                self.podman_args.append("--init")
                self.note("--init copied to podman_args")
        elif name == "--label":
            assert value is not None
            if value.startswith("compute-units."):
                self.dropped(option, "labels compute-units.* are set by compute-units")
            else:
                self.podman_args.append(f"--label={value}")
                self.note(f"{option.shown} copied to podman_args")
        elif name in ("--publish", "--publish-all"):
            if host_network:
                self.dropped(option, "published ports are discarded with the host network")
            elif value is None or name == "--publish":
                self.podman_args.append(name if value is None else f"{name}={value}")
                self.note(f"{option.shown} copied to podman_args")
            elif _BOOLEANS[value]:
                self.podman_args.append(name)

    def volume(self, option: Option, value: str) -> None:
        parts = value.split(":")
        if len(parts) == 1 or len(parts) > 3:
            what = "an anonymous volume" if len(parts) == 1 else "not source:target[:options]"
            self.dropped(option, f"{what} cannot be expressed; mounts are host paths")
            return
        source, target = parts[0], parts[1]
        if not source.startswith("/"):
            self.dropped(option, f"'{source}' is a named volume; mounts need an absolute host path")
            return
        if not target.startswith("/"):
            self.error(f"{option.shown}: container path '{target}' must be absolute")
            return
        flags: list[str] = []
        for flag in parts[2].split(",") if len(parts) == 3 else []:
            if flag in ("ro", "rw", *PROPAGATIONS):
                if flag != "rw":
                    flags.append(flag)
            elif flag:
                self.warn(f"{option.shown}: mount option '{flag}' cannot be expressed; dropped")
        self.add_mount(option, source, target, flags)

    def mount(self, option: Option, value: str) -> None:
        fields_: dict[str, str | None] = {}
        for item in value.split(","):
            key, eq, val = item.partition("=")
            fields_[key.strip()] = val if eq else None
        kind = fields_.pop("type", None) or "volume"
        if kind != "bind":
            self.dropped(option, f"type={kind} cannot be expressed; only bind mounts of host paths")
            return
        source = fields_.pop("source", None) or fields_.pop("src", None)
        target = fields_.pop("target", None) or fields_.pop("destination", None) or fields_.pop("dst", None)
        if not source or not target:
            self.error(f"--mount '{value}': needs source= and target=")
            return
        if not source.startswith("/") or not target.startswith("/"):
            self.error(f"--mount '{value}': source and target must be absolute paths")
            return
        flags: list[str] = []
        for key in ("readonly", "ro"):
            if key in fields_:
                flag = fields_.pop(key)
                if flag is None or _BOOLEANS.get(flag, False):
                    flags.append("ro")
        propagation = fields_.pop("bind-propagation", None)
        if propagation:
            if propagation in PROPAGATIONS:
                flags.append(propagation)
            else:
                self.error(f"--mount '{value}': unknown bind-propagation '{propagation}'")
                return
        for key in fields_:
            self.warn(f"{option.shown}: mount option '{key}' cannot be expressed; dropped")
        self.add_mount(option, source, target, flags)

    def add_mount(self, option: Option, source: str, target: str, flags: list[str]) -> None:
        if option.expands:
            self.shell_reference(option.shown)
        source, target = _normal_path(source), _normal_path(target)
        if target in self.mounts:
            self.error(f"{option.shown}: duplicate mount target '{target}'")
            return
        text = f"{source}:{target}"
        self.mounts[target] = f"{text}:{','.join(flags)}" if flags else text

    def device(self, option: Option, value: str) -> None:
        parts = value.split(":")
        host = parts[0]
        if not host.startswith("/"):
            self.error(f"{option.shown}: '{host}' must be an absolute path")
            return
        inside = parts[1] if len(parts) > 1 else host
        permissions = parts[2] if len(parts) > 2 else "rwm"
        if len(parts) == 2 and parts[1] in ("r", "w", "m", "rw", "rm", "wm", "rwm"):
            inside, permissions = host, parts[1]
        if _normal_path(inside) != _normal_path(host) or set(permissions) != set("rwm"):
            self.dropped(option, "devices are passed at the same path with full access (rwm) only")
            return
        path = _normal_path(host)
        if path not in self.devices:
            self.devices.append(path)

    def podman_secret(self, option: Option, value: str) -> None:
        name, *rest = value.split(",")
        settings = dict(item.partition("=")[::2] for item in rest)
        if settings.get("type", "mount") != "env":
            self.dropped(option, "only environment secrets (type=env) can be expressed")
            return
        variable = settings.get("target") or name
        if not spec.PODMAN_SECRET_RE.match(name):
            self.error(f"{option.shown}: invalid podman secret name '{name}'")
        elif not _NAME_RE.match(variable):
            self.error(f"{option.shown}: '{variable}' is not a valid variable name")
        else:
            self.podman_secrets[variable] = name

    def restart_policy(self, value: str) -> None:
        policy, _, count = value.partition(":")
        if policy not in RESTART_MAP or (count and (policy != "on-failure" or not count.isdigit())):
            self.error(f"--restart '{value}': expected no, always, unless-stopped or on-failure[:N]")
            return
        self.restart = RESTART_MAP[policy]
        if policy == "unless-stopped":
            self.note(
                "--restart=unless-stopped is restart: always (a unit stopped by systemctl stays stopped)"
            )
        if count:
            self.note(
                f"--restart={value}: the retry limit {count} is not imported; "
                "systemd's start limit applies instead"
            )

    def environment_from(self, options: list[Option]) -> None:
        """Env files first, then -e in order (docker's precedence); secrets are split off."""
        assignments: list[tuple[Option, str, str | None, bool]] = []
        for option in sorted(options, key=lambda o: o.name != "--env-file"):
            assert option.value is not None
            if option.name == "--env-file":
                text = self.env_files.get(option.value)
                if text is None:
                    self.error(f"{option.shown}: the file was not read")
                    continue
                for name, value in parse_env_file(text):
                    assignments.append((option, name, value, False))
            else:
                name, eq, value = option.value.partition("=")
                assignments.append((option, name, value if eq else None, option.expands))
        for option, name, maybe_value, expands in assignments:
            if not _NAME_RE.match(name):
                self.error(f"{option.shown}: '{name}' is not a valid variable name")
                continue
            if is_secret_name(name):
                self.environment.pop(name, None)
                self.secret(name, maybe_value, expands, option)
                continue
            self.secret_values.pop(name, None)
            if maybe_value is None:
                self.warn(
                    f"{option.shown}: {name} takes its value from the environment of the shell "
                    "that ran the container; not imported",
                    f"add {name} to environment: in the spec",
                )
                self.environment.pop(name, None)
                continue
            if expands:
                self.warn(
                    f"environment {name}: '{maybe_value}' refers to a shell variable, written as-is; "
                    "the container receives this text literally",
                    "replace it with the real value in the spec",
                )
            self.environment[name] = maybe_value

    def secret(self, name: str, value: str | None, expands: bool, option: Option) -> None:
        path = self.secrets_dir / name.lower()
        if value is None:
            origin = "the environment of the shell that ran the container"
        elif expands:
            origin = f"the shell reference '{value}'"
            value = None
        else:
            origin = f"{option.written}" if option.name == "--env" else f"--env-file {option.value}"
        self.secret_values[name] = SecretValue("", name, path, value, origin, self.where)

    def finish_health(self) -> None:
        options = self.health_options
        command_option = next((o for o in reversed(options) if o.name == "--health-cmd"), None)
        if self.no_healthcheck or (command_option is not None and command_option.value in ("none", "NONE")):
            for option in options:
                if option.name != "--health-cmd":
                    self.note(f"{option.shown} ignored: the health check is disabled")
            if "--no-healthcheck" not in self.podman_args:
                self.podman_args.append("--no-healthcheck")
                self.note("health check disabled: --no-healthcheck copied to podman_args")
            return
        if command_option is None:
            for option in options:
                self.dropped(option, "health settings without --health-cmd cannot be expressed")
            return
        assert command_option.value is not None
        argv = self.health_command(command_option.value)
        if argv is None:
            return
        self.health = {"command": argv}
        given: set[str] = set()
        for option in options:
            if option.name == "--health-cmd":
                continue
            assert option.value is not None
            key = option.name.removeprefix("--health-").replace("-", "_")
            if option.name == "--health-retries":
                if not option.value.isdigit():
                    self.error(f"--health-retries '{option.value}': expected a positive integer")
                elif int(option.value) == 0:
                    self.note("--health-retries=0 means the default (3)")
                else:
                    self.health["retries"] = int(option.value)
                    given.add(key)
                continue
            ms = go_duration_ms(option.value)
            if ms is None:
                self.error(f"{option.written} '{option.value}': expected a duration such as 30s or 1m30s")
            elif ms == 0:
                self.note(f"{option.shown} means the default")
            elif ms < 1000:
                self.error(f"{option.written} '{option.value}': compute-units needs at least 1s")
            elif ms != round(ms):
                self.error(f"{option.written} '{option.value}': compute-units needs whole milliseconds")
            else:
                self.health[key] = _spec_duration(ms)
                given.add(key)
        missing = [k for k in ("interval", "timeout", "start_period", "retries") if k not in given]
        if missing:
            self.note(
                f"health check: {', '.join(m.replace('_', ' ') for m in missing)} not given; compute-units' "
                f"defaults ({SPEC_HEALTH_DEFAULTS}) apply, docker's were {DOCKER_HEALTH_DEFAULTS}"
            )

    def health_command(self, value: str) -> list[str] | None:
        if value.startswith("["):
            try:
                parsed = json.loads(value)
            except ValueError:
                parsed = None
            if not isinstance(parsed, list) or not parsed or not all(isinstance(p, str) for p in parsed):
                self.error(f"--health-cmd '{value}': not a JSON array of strings")
                return None
            if parsed[0] == "CMD":
                parsed = parsed[1:]
            elif parsed[0] == "CMD-SHELL":
                parsed = ["/bin/sh", "-c", " ".join(parsed[1:])]
            if not parsed:
                self.error(f"--health-cmd '{value}': no command")
                return None
            return list(parsed)
        if not value.strip():
            self.error("--health-cmd: no command")
            return None
        if not any(c in _SHELL_META for c in value):
            return value.split()
        # docker runs a string health check with /bin/sh -c: so do we
        return ["/bin/sh", "-c", value]

    def image(self) -> str | None:
        word = self.run.image
        ref, reason = spec.parse_image(word.text)
        if ref is None:
            hint = "the image refers to a shell variable; write the real reference" if word.expands else None
            self.error(f"invalid image '{word.text}': {reason}", hint)
            return None
        if ref.registry is None and self.run.engine == "docker":
            repository = ref.repository if "/" in ref.repository else f"library/{ref.repository}"
            qualified = str(ImageRef("docker.io", repository, ref.tag, ref.digest))
            self.note(
                f"image '{word.text}' is a Docker Hub short name: written as '{qualified}' "
                "(podman under systemd cannot ask which registry to use)"
            )
            return qualified
        return word.text

    def command(self, name: str) -> list[str] | None:
        args = [w.text for w in self.run.args]
        for word in self.run.args:
            if word.expands:
                self.shell_reference(f"argument '{word.text}'")
        if self.command_override is not None:
            if args:
                self.note(f"--command {name}=… replaces the arguments given after the image")
            args = list(self.command_override)
        needs_command = bool(self.secret_values or self.podman_secrets)
        if self.entrypoint is not None and self.entrypoint_option is not None:
            if needs_command:
                # the secret loader replaces the entrypoint and then runs command: entrypoint + args
                self.note(
                    f"{self.entrypoint_option.shown}: becomes the start of command: "
                    "(the secrets loader is the entrypoint)"
                )
                return [*self.entrypoint, *args]
            self.podman_args.append(f"--entrypoint={self.entrypoint_option.value}")
            self.note(f"{self.entrypoint_option.shown} copied to podman_args")
        if needs_command and not args:
            self.error(
                f"{name}: secrets need the container's command, and the line gives none",
                "secrets are loaded by an entrypoint that then runs command:, so the image's default "
                f"cannot be used; append the command after the image or pass --command {name}='ARGV'",
            )
            return None
        return args or None


def _normal_path(path: str) -> str:
    normal = posixpath.normpath(path)
    return "/" + normal.lstrip("/") if normal.startswith("//") else normal


# --------------------------------------------------------------------------- YAML


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


# --------------------------------------------------------------------------- the whole import


def env_files_of(commands: Sequence[CommandLine]) -> Iterator[str]:
    """Every `--env-file` path named by importable lines (for the caller to read)."""
    for command in commands:
        run, _ = parse_run(command)
        if run is not None:
            for option in run.options:
                if option.name == "--env-file" and option.value is not None:
                    yield option.value


def import_commands(
    commands: Sequence[CommandLine],
    *,
    secrets_dir: PurePosixPath = DEFAULT_SECRETS_DIR,
    env_files: Mapping[str, str] | None = None,
    overrides: Mapping[str, Sequence[str]] | None = None,
) -> tuple[list[ImportedSpec], list[Message]]:
    """Specs for every command line, plus warnings and notes; ImportFailed lists every error."""
    messages: list[Message] = []
    specs: list[ImportedSpec] = []
    seen: dict[str, str] = {}
    overrides = dict(overrides or {})
    used_overrides: set[str] = set()
    runs: list[RunLine] = []
    for command in commands:
        run, problems = parse_run(command)
        messages += problems
        if run is not None:
            runs.append(run)
    if not runs and not any(m.severity == "error" for m in messages):
        messages.append(Message("error", "", "no 'docker run' or 'podman run' lines found"))
    for run in runs:
        name_hint = _provisional_name(run)
        argv = overrides.get(name_hint) if name_hint is not None else None
        if argv is not None and name_hint is not None:
            used_overrides.add(name_hint)
        mapper = _Mapper(run, secrets_dir, env_files or {}, argv)
        data, secret_values = mapper.build()
        messages += mapper.messages
        if data is None:
            continue
        name = str(data["name"])
        where = run.where or "the command line"
        if name in seen:
            messages.append(
                Message(
                    "error",
                    run.where,
                    f"service name '{name}' is already used by {seen[name]}",
                    "give each line its own --name",
                )
            )
            continue
        seen[name] = where
        warnings = [m for m in mapper.messages if m.severity == "warning"]
        header = [
            f"Imported by `compute-units import` from {where} ({run.engine} run).",
            "Review before use; these warnings were also printed:" if warnings else "Review before use.",
            *(f"  {m.text}" for m in warnings),
        ]
        text = to_yaml(data, header)
        problems = _validate(text, name, run.where)
        messages += problems
        if any(p.severity == "error" for p in problems):
            continue
        found = [SecretValue(name, v.variable, v.path, v.value, v.origin, v.where) for v in secret_values]
        specs.append(ImportedSpec(name, run.where, text, found))
    for name in sorted(set(overrides) - used_overrides):
        messages.append(Message("error", "", f"--command {name}=…: no imported service is named '{name}'"))
    errors = [m for m in messages if m.severity == "error"]
    if errors:
        raise ImportFailed(errors)
    _check_shared_secrets(specs)
    return specs, messages


def _provisional_name(run: RunLine) -> str | None:
    """The service name a line will get (for --command), before the full mapping."""
    for option in reversed(run.options):
        if option.name == "--name":
            return option.value
    ref, _ = spec.parse_image(run.image.text)
    return ref.repository.rsplit("/", 1)[-1] if ref is not None else None


def _validate(text: str, name: str, where: str) -> list[Message]:
    """Run the generated YAML through the spec checker (secret files are not looked at)."""
    _, diagnostics = spec.parse_text(text, Path(f"{name}.yaml"), check_files=False)
    result: list[Message] = []
    for d in diagnostics:
        key = f"{d.key}: " if d.key else ""
        if d.severity == "error":
            result.append(Message("error", where, f"the imported spec is invalid: {key}{d.message}", d.hint))
        else:
            result.append(Message("warning", where, f"spec {key}{d.message}", d.hint))
    return result


def _check_shared_secrets(specs: Sequence[ImportedSpec]) -> None:
    """Two lines may share a secret file only when they give it the same value."""
    by_path: dict[PurePosixPath, SecretValue] = {}
    problems: list[Message] = []
    for imported in specs:
        for value in imported.secrets:
            other = by_path.get(value.path)
            if other is None or other.value is None:
                by_path[value.path] = value
            elif value.value is not None and value.value != other.value:
                problems.append(
                    Message(
                        "error",
                        value.where,
                        f"secret {value.variable} has a different value than on "
                        f"{other.where or 'another line'}; both would be written to {value.path}",
                        "give one of them a different variable name, or the same value",
                    )
                )
    if problems:
        raise ImportFailed(problems)


def parse_overrides(items: Sequence[str]) -> dict[str, list[str]]:
    """--command NAME=ARGV (ARGV split like a shell line, no expansion)."""
    result: dict[str, list[str]] = {}
    problems: list[Message] = []
    for item in items:
        name, eq, argv_text = item.partition("=")
        if not eq or not name:
            problems.append(Message("error", "", f"--command '{item}': expected NAME=ARGV"))
            continue
        try:
            commands = split_script(argv_text)
        except ImportFailed as exc:
            problems += [Message("error", "", f"--command {name}: {p.text}") for p in exc.problems]
            continue
        if len(commands) != 1:
            problems.append(Message("error", "", f"--command {name}: expected one command line"))
            continue
        result[name] = [w.text for w in commands[0].words]
    if problems:
        raise ImportFailed(problems)
    return result
