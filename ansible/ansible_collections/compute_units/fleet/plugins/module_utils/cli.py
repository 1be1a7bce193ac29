# Copyright: compute-units developers
# Apache License 2.0 (see LICENSE in the compute-units repository)
"""Run the compute-units CLI with --json and parse what it prints: the one place the modules run it.

The modules wrap only the CLI's JSON, never its screen output. Exit codes (compute-units --help):
0 ok, 1 an operation failed, 2 bad input or spec, 3 host not ready or preflight refused,
4 needs root, 5 upgrade failed and was rolled back. Any other code is a failure too; its JSON, if
any, is kept.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import os

EXIT_MEANINGS = {
    0: "ok",
    1: "an operation failed",
    2: "invalid spec or command line",
    3: "host not ready or preflight refused",
    4: "needs root",
    5: "upgrade failed and was rolled back",
}

COMMON_ARGUMENT_SPEC = dict(
    executable=dict(type="path", default="compute-units"),
    spec=dict(type="list", elements="path"),
)


def meaning(rc):
    """What an exit code means, in words (unknown codes say so)."""
    return EXIT_MEANINGS.get(rc, "unknown exit code %d" % rc)


class CliResult:
    """One run: the argv, exit code, parsed JSON (None when stdout held none) and stderr."""

    def __init__(self, cmd, rc, data, stdout, stderr):
        self.cmd = cmd
        self.rc = rc
        self.data = data
        self.stdout = stdout
        self.stderr = stderr

    @property
    def ok(self):
        return self.rc == 0

    def message(self):
        """The CLI's own error (and hint) when it gave one, else what the exit code means."""
        data = self.data if isinstance(self.data, dict) else {}
        text = data.get("error") or ""
        if data.get("hint"):
            text = "%s (hint: %s)" % (text, data["hint"]) if text else "hint: %s" % data["hint"]
        if not text:
            tail = self.stderr.strip().splitlines()[-1:] if self.stderr.strip() else []
            text = tail[0] if tail else ""
        prefix = "compute-units exited %d (%s)" % (self.rc, meaning(self.rc))
        return "%s: %s" % (prefix, text) if text else prefix

    def as_dict(self):
        return dict(cmd=self.cmd, rc=self.rc, stderr=self.stderr)


def find_executable(module):
    """The CLI's path: `executable` as given when it holds a slash, else looked up on PATH."""
    name = module.params["executable"]
    if os.sep not in name:
        found = module.get_bin_path(name)
        if not found:
            module.fail_json(msg="%s not found on PATH (%s); install it or set executable" % (name, os.environ.get("PATH", "")))
        return found
    if not (os.path.isfile(name) and os.access(name, os.X_OK)):
        module.fail_json(msg="%s is not an executable file" % name)
    return name


def build_command(module, words):
    """argv for `compute-units WORDS... [--spec P]... --json` from the module's common options."""
    cmd = [find_executable(module)] + list(words)
    for path in module.params.get("spec") or []:
        cmd += ["--spec", path]
    cmd.append("--json")
    return cmd


def run(module, words):
    """Run the CLI; fail the module when it cannot be run or printed no JSON at all.

    A non-zero exit with JSON is returned: each module decides what the JSON means.
    """
    cmd = build_command(module, words)
    rc, stdout, stderr = module.run_command(cmd, check_rc=False, environ_update={"LC_ALL": "C.UTF-8"})
    data = None
    if stdout.strip():
        try:
            data = json.loads(stdout)
        except ValueError as exc:
            module.fail_json(
                msg="compute-units printed something that is not JSON (%s); first line: %s"
                % (exc, stdout.strip().splitlines()[0][:200]),
                cmd=cmd,
                rc=rc,
                stdout=stdout,
                stderr=stderr,
            )
    if data is None:
        result = CliResult(cmd, rc, None, stdout, stderr)
        module.fail_json(msg="%s; it printed no JSON" % result.message(), **result.as_dict())
    return CliResult(cmd, rc, data, stdout, stderr)


def digest_of(reference):
    """The sha256 digest of `repo:tag@sha256:...` (None when the reference has none)."""
    if not reference or "@" not in reference:
        return None
    return reference.rsplit("@", 1)[1]


def service_words(module):
    """`SERVICE...` or `--all` from the services/all options."""
    if module.params.get("all"):
        return ["--all"]
    return list(module.params.get("services") or [])
