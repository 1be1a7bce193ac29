"""A model of how systemd 252 turns an ExecStart= line into argv (written from systemd.service(5)
and systemd.unit(5)): line continuation, %-specifiers, quoting, C escapes, `$$`, lone `\\;`.

Used only to check that what we render reaches the process exactly; the real systemd checks the
same units in the integration tests.
"""

from __future__ import annotations

ESCAPES = {
    "a": "\a",
    "b": "\b",
    "f": "\f",
    "n": "\n",
    "r": "\r",
    "t": "\t",
    "v": "\v",
    "\\": "\\",
    '"': '"',
    "'": "'",
    " ": " ",
    "s": " ",
}


def logical_lines(unit: str) -> list[str]:
    """Join continuation lines: a trailing backslash becomes a space."""
    lines: list[str] = []
    pending = ""
    for raw in unit.splitlines():
        if pending and raw.lstrip().startswith(("#", ";")):
            continue
        if raw.endswith("\\"):
            pending += raw[:-1] + " "
            continue
        lines.append(pending + raw)
        pending = ""
    if pending:
        lines.append(pending)
    return lines


def expand_specifiers(value: str, unit: str) -> str:
    out = []
    i = 0
    while i < len(value):
        ch = value[i]
        if ch == "%":
            nxt = value[i + 1]
            out.append({"%": "%", "t": "/run", "n": unit}[nxt])
            i += 2
            continue
        out.append(ch)
        i += 1
    return "".join(out)


def split_words(value: str) -> list[str]:
    words: list[str] = []
    i = 0
    n = len(value)
    while i < n:
        while i < n and value[i] in " \t":
            i += 1
        if i >= n:
            break
        if value.startswith("\\;", i) and (i + 2 == n or value[i + 2] in " \t"):
            words.append("\\;")
            i += 2
            continue
        word = []
        quote = None
        while i < n:
            ch = value[i]
            if quote is None and ch in " \t":
                break
            if ch == "\\":
                esc = value[i + 1]
                if esc == "x":
                    word.append(chr(int(value[i + 2 : i + 4], 16)))
                    i += 4
                    continue
                word.append(ESCAPES[esc])
                i += 2
                continue
            if quote is None and ch in "\"'":
                quote = ch
            elif ch == quote:
                quote = None
            else:
                word.append(ch)
            i += 1
        assert quote is None, f"unbalanced quote in {value!r}"
        words.append("".join(word))
    return words


def unescape_dollars(word: str) -> str:
    out = []
    i = 0
    while i < len(word):
        if word[i] == "$":
            assert word[i + 1 : i + 2] == "$", f"unescaped variable reference in {word!r}"
            out.append("$")
            i += 2
            continue
        out.append(word[i])
        i += 1
    return "".join(out)


def parse_exec(unit_text: str, key: str, unit: str) -> list[list[str]]:
    """argv of every `key=` line of the unit, as systemd would execute it."""
    commands = []
    for line in logical_lines(unit_text):
        if not line.startswith(f"{key}="):
            continue
        words = split_words(expand_specifiers(line[len(key) + 1 :], unit))
        commands.append([";" if w == "\\;" else unescape_dollars(w) for w in words])
    return commands
