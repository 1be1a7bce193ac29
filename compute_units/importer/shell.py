"""Shell splitting for `compute-units import`: script text → simple commands of words.

Deliberately small. A script is split into simple commands (newlines, `;`, `&&`, `||`), with
quotes, backslash escapes, `\\` line continuations and comments handled as the shell does.
Nothing is expanded: `$PASSWORD`, `${X}`, `$(cmd)` and backquotes stay in the text as written and
the word is flagged, so values that came from shell variables are reported, never guessed.
Anything else (pipes, redirections, subshells, `&`) is refused with the offending character.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from ..errors import Diagnostic, Location
from .results import ImportFailed, at, problem

MAX_SCRIPT_CHARACTERS = 1024 * 1024  # far more than any script of run lines
REFERENCE_RE = re.compile(r"\$(?:[A-Za-z_{(]|[0-9@*#?!$-])|`")
_VARIABLE_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*|[0-9@*#?!$-]")


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
    def where(self) -> Location:
        return at(self.source, self.line)


def split_script(text: str, source: str = "") -> list[CommandLine]:
    """Split shell text into simple commands; raise ImportFailed for syntax we do not handle."""
    if len(text) > MAX_SCRIPT_CHARACTERS:
        limit = f"the limit is {MAX_SCRIPT_CHARACTERS // 1024} KiB"
        raise ImportFailed([problem(at(source, 1), f"the script is {len(text)} characters long; {limit}")])
    return _ShellSplitter(text, source).run()


def from_arguments(arguments: Sequence[str]) -> list[CommandLine]:
    """Words given on our own command line (after `--`); one word with blanks is a shell line."""
    if len(arguments) == 1 and any(c in arguments[0] for c in " \t\n"):
        return split_script(arguments[0])
    words = tuple(Word(a, bool(REFERENCE_RE.search(a))) for a in arguments)
    return [CommandLine(words)] if words else []


class _ShellSplitter:
    def __init__(self, text: str, source: str) -> None:
        self.text = text
        self.source = source
        self.pos = 0
        self.line = 1
        self.commands: list[CommandLine] = []
        self.problems: list[Diagnostic] = []
        self.words: list[Word] = []
        self.chars: list[str] | None = None  # the word being built, None between words
        self.expands = False
        self.start_line = 1
        self.broken = False  # the current command had a syntax error: drop it

    def fail(self, line: int, message: str, hint: str | None = None) -> None:
        self.problems.append(problem(at(self.source, line), message, hint))
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
        match = _VARIABLE_RE.match(text, start + 1)
        if match:
            self.pos = match.end()
            self.expands = True
            return text[start : self.pos]
        self.pos = start + 1
        return "$"
