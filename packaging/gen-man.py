#!/usr/bin/env python3
"""Write compute-units(1) in roff from the CLI itself: `gen-man.py [-o FILE]`.

Walks the click command tree of `typer.main.get_command(app)`, the same objects `--help` renders,
so the man page and `--help` have one source: every command, its arguments and options (help
text and defaults as `--help` shows them) and the exit codes from the top-level help. The RPM
build runs it against the freshly installed package (PYTHONPATH=BUILDROOT/SITELIB).

Typer >= 0.22 vendors click as `typer._click`, older typer uses click itself: the tree is read
through the small structural interface below, which both provide.
"""

from __future__ import annotations

import argparse
import datetime
import os
import re
import sys
from collections.abc import Callable, Iterator, Sequence
from typing import Any, Protocol, cast

PROG = "compute-units"
SECTION = "1"
EXIT_CODES_PREFIX = "Exit codes:"
NO_REWRAP = "\b"  # click's marker for a paragraph printed as written

# click's Context differs between click and typer's vendored copy; it is only passed back in.
Ctx = Any


class Param(Protocol):
    @property
    def param_type_name(self) -> str: ...

    def get_help_record(self, ctx: Ctx) -> tuple[str, str] | None: ...


class Command(Protocol):
    @property
    def help(self) -> str | None: ...

    @property
    def hidden(self) -> bool: ...

    @property
    def context_class(self) -> Callable[..., Ctx]: ...

    def get_params(self, ctx: Ctx) -> Sequence[Param]: ...

    def collect_usage_pieces(self, ctx: Ctx) -> list[str]: ...


class Group(Command, Protocol):
    def list_commands(self, ctx: Ctx) -> list[str]: ...

    def get_command(self, ctx: Ctx, cmd_name: str) -> Command | None: ...


# --- roff ----------------------------------------------------------------------------------------


def escape(text: str) -> str:
    """Text for a roff text line: backslashes, hyphen-minus (as help2man does), leading control chars."""
    text = text.replace("\\", "\\e").replace("-", "\\-")
    return "\\&" + text if text.startswith((".", "'")) else text


def quoted(text: str) -> str:
    """One macro argument in double quotes."""
    return '"' + escape(text).replace('"', "\\(dq") + '"'


def bold(text: str) -> str:
    return f"\\fB{escape(text)}\\fR"


def italic(text: str) -> str:
    return f"\\fI{escape(text)}\\fR"


def paragraphs(text: str) -> list[str]:
    return [p.strip("\n") for p in re.split(r"\n\s*\n", text.strip()) if p.strip()]


def prose(text: str) -> Iterator[str]:
    """Help text as man paragraphs: lines are rewrapped, except click's \\b paragraphs."""
    for paragraph in paragraphs(text):
        yield ".PP"
        if paragraph.startswith(NO_REWRAP):
            yield ".nf"
            yield from (escape(line) for line in paragraph[1:].strip("\n").splitlines())
            yield ".fi"
        else:
            yield escape(" ".join(line.strip() for line in paragraph.splitlines()))


def term(record: str) -> str:
    """`--spec PATH`, `-h, --help`, `--enable / --no-enable`, `name <str>`: options bold, rest italic."""
    words = []
    for word in record.split(" "):
        if word.startswith("-"):
            comma = word.endswith(",")
            words.append(bold(word.rstrip(",")) + ("," if comma else ""))
        elif word in ("/", ""):
            words.append(word)
        else:
            words.append(italic(word))
    return " ".join(words)


def synopsis(path: str, pieces: Sequence[str]) -> Iterator[str]:
    yield ".PP"
    yield bold(path) + (" " + escape(" ".join(pieces)) if pieces else "")


def param_list(command: Command, ctx: Ctx) -> Iterator[str]:
    """Arguments first, then options (with --help), each as a tagged paragraph, like --help."""
    params = list(command.get_params(ctx))
    for kind in ("argument", "option"):
        for param in params:
            record = param.get_help_record(ctx) if param.param_type_name == kind else None
            if record is None:  # hidden, or the other kind
                continue
            name, help_text = record
            yield ".TP"
            yield term(name)
            yield escape(" ".join(help_text.split())) if help_text.strip() else "\\&"


# --- the command tree ----------------------------------------------------------------------------


def subcommands(command: Command, ctx: Ctx) -> list[tuple[str, Command]]:
    if not hasattr(command, "list_commands"):
        return []
    group = cast(Group, command)
    found = [(name, group.get_command(ctx, name)) for name in group.list_commands(ctx)]
    return [(name, sub) for name, sub in found if sub is not None and not sub.hidden]


def walk(command: Command, ctx: Ctx, path: str) -> Iterator[tuple[str, Command, Ctx]]:
    """Every visible subcommand below `command`, depth first, in the order --help lists them."""
    for name, sub in subcommands(command, ctx):
        sub_ctx = sub.context_class(sub, info_name=name, parent=ctx)
        yield f"{path} {name}", sub, sub_ctx
        yield from walk(sub, sub_ctx, f"{path} {name}")


def exit_codes(help_text: str) -> list[tuple[str, str]]:
    """The exit codes, from the one enum the CLI's --help is made from too."""
    from compute_units.errors import ExitCode

    return [(str(int(code)), code.meaning) for code in ExitCode]


def man_date() -> str:
    """SOURCE_DATE_EPOCH (reproducible builds; rpmbuild sets it from %changelog) or today."""
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    when = (
        datetime.datetime.fromtimestamp(int(epoch), tz=datetime.UTC)
        if epoch
        else datetime.datetime.now(tz=datetime.UTC)
    )
    return when.strftime("%Y-%m-%d")


STATIC_SECTIONS = r"""
.SH FILES
.TP
.I /etc/compute\-units/services/
Service specs, one YAML file per service.
Search path, the first file of a name wins:
.IR /etc/compute\-units/services/ ,
.IR /run/compute\-units/services/ ,
.IR /usr/share/compute\-units/services/ .
An empty file or a symlink to
.I /dev/null
masks the spec of the same name further down.
.TP
.I /etc/compute\-units/templates/
Templates that override the built\-in ones
.RI ( service.j2 ", " target.j2 )
by file name.
.TP
.I /etc/compute\-units/secrets/
Secret files that specs reference (directory mode 0700, files 0600).
.TP
.I /var/lib/compute\-units/
Upgrade state: pinned image digests and the upgrade history.
.TP
.I /usr/lib/systemd/system\-generators/compute\-units\-generator
The systemd generator: at boot and at every
.B systemctl daemon\-reload
it renders the specs into the generator directory;
a broken spec is logged and skipped.
.SH EXAMPLES
Example specs are installed in
.IR /usr/share/doc/compute\-units/examples/services/ .
.PP
.RS
.nf
compute\-units validate \-\-spec /usr/share/doc/compute\-units/examples/services
compute\-units generate \-\-dry\-run
compute\-units apply
.fi
.RE
.SH "SEE ALSO"
.BR systemctl (1),
.BR podman\-run (1),
.BR systemd.generator (7),
.BR systemd.unit (5)
"""


def manual(root: Command, version: str, date: str) -> str:
    ctx = root.context_class(root, info_name=PROG)
    help_text = root.help or ""
    description = [p for p in paragraphs(help_text) if not p.startswith(EXIT_CODES_PREFIX)]
    summary = " ".join(description[0].split()).rstrip(".") if description else PROG
    lines = [
        f'.\\" Generated by packaging/gen-man.py from the {PROG} {version} CLI; do not edit.',
        f".TH {quoted(PROG.upper())} {SECTION} {quoted(date)} {quoted(f'{PROG} {version}')} "
        + quoted("User Commands"),
        ".ds AD l",  # groff 1.23's man macros set each paragraph's adjustment from AD: left, never spread
        ".nh",  # no hyphenation: paths and option names are copied from here
        ".ad l",
        ".SH NAME",
        f"{escape(PROG)} \\- {escape(summary[:1].lower() + summary[1:])}",
        ".SH SYNOPSIS",
        *synopsis(PROG, root.collect_usage_pieces(ctx)),
        ".SH DESCRIPTION",
        *prose("\n\n".join(description)),
        ".SH OPTIONS",
        *param_list(root, ctx),
        ".SH COMMANDS",
    ]
    for path, command, sub_ctx in walk(root, ctx, PROG):
        lines += [f".SS {quoted(path.removeprefix(PROG + ' '))}"]
        lines += synopsis(path, command.collect_usage_pieces(sub_ctx))
        lines += prose(command.help or "")
        lines += param_list(command, sub_ctx)
    lines += ['.SH "EXIT STATUS"']
    for code, meaning in exit_codes(help_text):
        lines += [".TP", bold(code), escape(meaning[:1].upper() + meaning[1:]) + "."]
    return "\n".join(lines) + STATIC_SECTIONS


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("-o", "--output", help="Write here instead of stdout.")
    args = parser.parse_args(argv)

    import typer.main

    from compute_units import __version__
    from compute_units.cli import app

    root: Command = typer.main.get_command(app)
    text = manual(root, __version__, man_date())
    if args.output:
        with open(args.output, "w", encoding="utf-8") as out:
            out.write(text)
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
