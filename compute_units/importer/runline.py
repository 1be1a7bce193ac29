"""One `docker run` / `podman run` command line → its options, image and argv.

Option parsing follows docker's (pflag) rules: `--opt=value`, `--opt value`, clustered short flags
(`-it`, `-dit`), attached short values (`-eFOO=bar`), `--` ends the options and the first word
that is not an option is the image; everything after it is the container's argv. Which options
exist, their aliases and whether they take a value come from the registry (`options`).
"""

from __future__ import annotations

import posixpath
import re
from dataclasses import dataclass

from .. import options as registry
from ..errors import Diagnostic, Location
from .results import problem
from .shell import CommandLine, Word

BOOLEANS = {"1": True, "t": True, "T": True, "true": True, "TRUE": True, "True": True}
BOOLEANS |= {"0": False, "f": False, "F": False, "false": False, "FALSE": False, "False": False}
_ASSIGNMENT_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*=")
_SUDO_VALUED = ("-u", "-g", "-p", "-C", "-D", "-r", "-t", "-U", "-T", "-R")


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
        if self.name in registry.SENSITIVE:
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
    where: Location


class _Refused(Exception):
    """A run line that cannot be imported: the message (and hint) say why."""

    def __init__(self, text: str, hint: str | None = None) -> None:
        super().__init__(text)
        self.text = text
        self.hint = hint


def parse_run(command: CommandLine) -> tuple[RunLine | None, list[Diagnostic]]:
    """The options, image and argv of one `docker run` / `podman run` line (or the errors)."""
    where = command.where
    messages: list[Diagnostic] = []
    words = list(command.words)
    while words and _ASSIGNMENT_RE.match(words[0].text):
        name = words[0].text.split("=", 1)[0]
        text = f"shell assignment to {name} ignored: compute-units does not run the script and expands no variables"
        messages.append(problem(where, text, severity="warning"))
        words.pop(0)
    if not words:
        return None, messages
    try:
        engine, verb, rest = _run_words(words)
        options, i = _OptionParser(rest).run()
        if i >= len(rest):
            raise _Refused(f"'{verb} run' has no image", "give the image after the options")
        for option in options:
            known = registry.lookup(option.name)
            if known is not None and known.import_error:
                raise _Refused(known.reason or f"{option.written} cannot be imported")
    except _Refused as refused:
        messages.append(problem(where, refused.text, refused.hint))
        return None, messages
    return RunLine(engine, tuple(options), rest[i], tuple(rest[i + 1 :]), where), messages


def _run_words(words: list[Word]) -> tuple[str, str, list[Word]]:
    """(engine, verb as written, the words after `run`), past a leading sudo and its options."""
    if posixpath.basename(words[0].text) == "sudo":
        words = words[1:]
        while words and words[0].text.startswith("-"):
            flag = words.pop(0).text
            if flag == "--":
                break
            if flag in _SUDO_VALUED and words:
                words.pop(0)
        if not words:
            raise _Refused("'sudo' without a command")
    engine = posixpath.basename(words[0].text)
    supported = "only 'docker run' and 'podman run' lines can be imported"
    if engine not in ("docker", "podman"):
        raise _Refused(f"'{words[0].text}' is not supported: {supported}")
    rest = words[1:]
    if rest and rest[0].text.startswith("-"):
        raise _Refused(f"'{engine} {rest[0].text}': global options before 'run' are not supported")
    verb = engine
    if rest and rest[0].text == "container":
        rest = rest[1:]
        verb = f"{engine} container"
    if not rest or rest[0].text != "run":
        shown = f"{verb} {rest[0].text}" if rest else verb
        raise _Refused(f"'{shown}' is not supported: {supported}")
    return engine, verb, rest[1:]


class _OptionParser:
    """The options before the image, by the registry's names and arities (pflag rules)."""

    def __init__(self, rest: list[Word]) -> None:
        self.rest = rest
        self.i = 0
        self.options: list[Option] = []

    def run(self) -> tuple[list[Option], int]:
        rest = self.rest
        while self.i < len(rest):
            word = rest[self.i]
            text = word.text
            if text == "--":
                self.i += 1
                break
            if not text.startswith("-") or text == "-":
                break
            self.i += 1
            if text.startswith("--"):
                self.long(word)
            else:
                self.short(word)
        return self.options, self.i

    def long(self, word: Word) -> None:
        written, eq, attached = word.text.partition("=")
        known = registry.lookup(written)
        if known is None:
            raise _Refused(f"unknown option '{written}'")
        if not known.takes_value:
            value: str | None = attached if eq else None
            if value is not None and value not in BOOLEANS:
                raise _Refused(f"option '{written}' takes true or false, got '{value}'")
            self.options.append(Option(written, known.flag, value, word.expands))
        else:
            self.valued(written, known.flag, attached if eq else None, word)

    def short(self, word: Word) -> None:
        """Short options, possibly clustered (-it) or with an attached value (-eX=1, -e=X=1)."""
        text = word.text
        for j in range(1, len(text)):
            written = "-" + text[j]
            known = registry.lookup(written)
            if known is None:
                raise _Refused(f"unknown option '{written}'" + (f" in '{text}'" if len(text) > 2 else ""))
            if not known.takes_value:
                self.options.append(Option(written, known.flag, None))
                continue
            attached = text[j + 1 :]
            if attached.startswith("="):
                attached = attached[1:]
            self.valued(written, known.flag, attached or None, word)
            return

    def valued(self, written: str, name: str, attached: str | None, word: Word) -> None:
        """An option that takes a value: attached to it, or the next word."""
        if attached is not None:
            self.options.append(Option(written, name, attached, word.expands))
        elif self.i < len(self.rest):
            self.options.append(Option(written, name, self.rest[self.i].text, self.rest[self.i].expands))
            self.i += 1
        else:
            raise _Refused(f"option '{written}' needs a value")
