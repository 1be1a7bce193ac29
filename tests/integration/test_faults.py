"""Fault injection on a real node, as an operator would meet the faults: signals delivered to the
real CLI at a step seen in its progress output, a full /var/lib/compute-units, a black-holed
registry, power loss and a boot over the same disk, hostile spec and state files, a unit systemd
cannot load. Each test asserts the exit code, the message, the service's end state and the state
files. The table of scenarios is in docs/reliability.md."""

from __future__ import annotations

import json
import os
import re
import select
import shlex
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from compute_units.errors import ExitCode
from compute_units_dev.node import Node, reboot
from compute_units_dev.specs import svc_spec
from tests.harness.fixtures import Image, cu

SPEC_DIR = "/etc/compute-units/services"
STATE_DIR = "/var/lib/compute-units"
CLI = "/usr/local/bin/compute-units"
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b[()][A-Za-z0-9]|\r")
SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


HOLD = "/var/lib/cu-test-hold/health"  # while it exists, the power node's health check fails


def held_spec(reference: str) -> str:
    """svc_spec() whose health check also fails while HOLD exists on the node: an upgrade then stays
    in its health step (the gate is 60 s) for as long as the test needs to cut the power in it."""
    return svc_spec(
        reference,
        health='{command: [sh, -c, "test ! -e /hold/health && exec /usr/local/bin/healthcheck.sh"], '
        "interval: 30s, timeout: 2s, start_period: 60s}",
        extra="mounts: [{source: /var/lib/cu-test-hold, target: /hold, create: true}]\n",
    )


def pinned(image: Image) -> str:
    return f"{image.reference}@{image.digest}"


def running_digest(node: Node) -> str:
    image = node.run(["podman", "inspect", "svc", "--format", "{{.Image}}"]).stdout.strip()
    return node.run(["podman", "image", "inspect", image, "--format", "{{.Digest}}"]).stdout.strip()


def svc_state(node: Node) -> dict[str, object]:
    entry: dict[str, object] = json.loads(node.read_file(f"{STATE_DIR}/state.json"))["services"]["svc"]
    return entry


def active(node: Node, unit: str = "svc.service") -> str:
    props = node.show(unit, "ActiveState", "SubState")
    return f"{props['ActiveState']}/{props['SubState']}"


def assert_settled_on(node: Node, image: Image) -> None:
    """The service runs `image`, state.json says so with no upgrade in flight, status exits 0."""
    assert active(node) == "active/running"
    assert running_digest(node) == image.digest
    entry = svc_state(node)
    assert (entry["phase"], entry["current"]) == ("idle", pinned(image))
    status = cu(node, "status", "svc", "--json")
    assert status.returncode == 0, status.stdout + status.stderr
    row = json.loads(status.stdout)[0]
    assert (row["upgrade_phase"], row["problem"], row["image_digest"]) == ("idle", "", image.digest), row


@dataclass
class Interactive:
    """The real CLI at a pseudo-terminal (script(1)), as an operator runs it over ssh: its progress
    output is read as it comes, and signals go to the CLI's own process."""

    node: Node
    argv: list[str]
    proc: subprocess.Popen[bytes] = field(init=False)
    text: str = ""

    def __post_init__(self) -> None:
        command = shlex.join(self.argv)
        self.proc = subprocess.Popen(
            self.node.argv(["script", "--quiet", "--return", "--command", command, "/dev/null"]),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )

    def wait_for(self, needle: str, timeout: float = 120) -> None:
        """Read the output until `needle` appears (escape sequences removed)."""
        assert self.proc.stdout is not None
        deadline = time.monotonic() + timeout
        while needle not in self.text:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self.proc.stdout], [], [], left)[0]:
                raise AssertionError(f"no {needle!r} within {timeout} s; output:\n{self.text}")
            chunk = os.read(self.proc.stdout.fileno(), 65536)
            if not chunk:
                raise AssertionError(f"exited before {needle!r}; output:\n{self.text}")
            self.text += ANSI.sub("", chunk.decode(errors="replace"))

    def cli_pid(self) -> int:
        """The CLI's python process, a descendant of nsenter → script → sh, seen from the host."""
        todo = [self.proc.pid]
        while todo:
            pid = todo.pop()
            try:
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
                children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
            except OSError:
                continue
            if len(cmdline) > 1 and cmdline[1] == CLI.encode():
                return pid
            todo += [int(c) for c in children]
        raise AssertionError(f"no {CLI} process under {self.proc.pid}")

    def send(self, sig: signal.Signals) -> None:
        os.kill(self.cli_pid(), sig)  # only the CLI we started

    def finish(self, timeout: float = 300) -> int:
        assert self.proc.stdout is not None
        rest, _ = self.proc.communicate(timeout=timeout)
        self.text += ANSI.sub("", rest.decode(errors="replace"))
        return self.proc.returncode

    def lines(self) -> list[str]:
        return [line.strip() for line in self.text.splitlines() if line.strip()]


@pytest.fixture(scope="module")
def svc(node: Node, svc_images: dict[str, Image]) -> Iterator[dict[str, Image]]:
    yield from deployed(node, svc_images)


def deployed(node: Node, svc_images: dict[str, Image]) -> Iterator[dict[str, Image]]:
    """The service svc, applied and committed on v1; removed after (the body of each `svc` fixture)."""
    node.write_file(f"{SPEC_DIR}/svc.yaml", svc_spec(svc_images["v1"].reference))
    result = cu(node, "apply")
    assert result.returncode == 0, result.stderr
    upgraded = cu(node, "upgrade", "svc", "--image", svc_images["v1"].reference)
    assert upgraded.returncode == 0, upgraded.stderr
    yield svc_images
    cu(node, "stop")
    node.run(["sh", "-c", f"rm -rf {SPEC_DIR}/svc.yaml {STATE_DIR}"])
    cu(node, "generate")
    node.systemctl("daemon-reload")
    node.systemctl("reset-failed", check=False)


def on(node: Node, svc: dict[str, Image], tag: str) -> None:
    """Make sure the service runs `tag` (committed) before a scenario starts."""
    if svc_state(node).get("current") != pinned(svc[tag]) or svc_state(node).get("phase") != "idle":
        result = cu(node, "upgrade", "svc", "--image", svc[tag].reference)
        assert result.returncode == 0, result.stdout + result.stderr
    assert_settled_on(node, svc[tag])


# ---------------------------------------------------------------------------------------- signals
@pytest.mark.parametrize("step", ["restart", "health"])
def test_a_signal_during_a_step_finishes_it_then_rolls_back(
    node: Node, svc: dict[str, Image], step: str
) -> None:
    for sig in SIGNALS:
        on(node, svc, "v1")
        run = Interactive(node, ["compute-units", "upgrade", "svc", "--image", svc["v2"].reference])
        run.wait_for(f"svc: {step}")
        run.send(sig)
        code = run.finish()
        assert code == ExitCode.INTERRUPTED, (sig.name, run.text)
        assert (
            f"compute-units: {sig.name}: finishing the step in flight, then the upgrade stops at a "
            "consistent state (committed or rolled back); send it again to abandon at once"
        ) in run.text  # printed at once, next to the spinner
        assert (
            f"compute-units: error: svc: interrupted by {sig.name} during the upgrade to "
            f"{pinned(svc['v2'])}; rolled back to {pinned(svc['v1'])}"
        ) in run.lines(), run.text
        assert "Traceback" not in run.text
        assert_settled_on(node, svc["v1"])
        last = json.loads(cu(node, "history", "svc", "--json").stdout)[-1]
        assert (last["result"], last["to"]) == ("interrupted", pinned(svc["v2"]))


def test_a_second_sigint_abandons_and_says_what_to_run(node: Node, svc: dict[str, Image]) -> None:
    on(node, svc, "v1")
    argv = ["compute-units", "upgrade", "svc", "--image", svc["v2"].reference]
    run = Interactive(node, argv)
    run.wait_for("svc: restart")
    run.send(signal.SIGINT)
    run.wait_for("send it again to abandon at once")
    run.send(signal.SIGINT)
    code = run.finish()
    lines = run.lines()
    assert code == ExitCode.INTERRUPTED, run.text
    assert "compute-units: abandoned by a second SIGINT; the upgrade did not finish." in lines
    phase = str(svc_state(node)["phase"])
    assert phase in ("pinned", "restarted"), phase
    assert (
        f"svc: phase {phase}, unit pinned to {pinned(svc['v2'])} (from {pinned(svc['v1'])}); run "
        "`compute-units upgrade svc` to finish it (it resumes, then commits or rolls back)"
    ) in lines, run.text
    assert "`compute-units status` shows each service" in lines
    assert "Traceback" not in run.text
    # status tells the truth in between
    status = cu(node, "status", "svc", "--json")
    assert status.returncode == ExitCode.DEGRADED
    row = json.loads(status.stdout)[0]
    assert (row["upgrade_phase"], row["upgrade_target"]) == (phase, pinned(svc["v2"]))
    # the same command converges
    again = cu(node, *argv[1:])
    assert again.returncode == 0, again.stdout + again.stderr
    assert again.stdout.splitlines()[0].startswith("svc: upgraded ")
    assert_settled_on(node, svc["v2"])


# ------------------------------------------------------------------------------------ disk full
@pytest.fixture
def small_state_disk(node: Node) -> Iterator[str]:
    """/var/lib/compute-units on a 512 KiB tmpfs holding the same files; the real files come back after."""
    keep = "/var/lib/compute-units.real"
    node.run(
        ["sh", "-c", f"cp -a {STATE_DIR} {keep} && mount -t tmpfs -o size=512k,mode=700 statefs {STATE_DIR}"]
    )
    node.run(["sh", "-c", f"cp -a {keep}/. {STATE_DIR}/"])
    yield f"{STATE_DIR}/filler"
    node.run(["sh", "-c", f"rm -f {STATE_DIR}/filler; cp -a {STATE_DIR}/. {keep}/ && umount {STATE_DIR}"])
    node.run(["sh", "-c", f"rm -rf {STATE_DIR} && mv {keep} {STATE_DIR}"])


def test_a_full_state_disk_during_the_restart_rolls_back(
    node: Node, svc: dict[str, Image], small_state_disk: str
) -> None:
    on(node, svc, "v1")
    try:
        full_disk_during_an_upgrade(node, svc, small_state_disk)
    finally:  # a failed assertion must not leave the disk full for the next scenario
        node.run(["rm", "-f", small_state_disk])
    on(node, svc, "v1")


def full_disk_during_an_upgrade(node: Node, svc: dict[str, Image], small_state_disk: str) -> None:
    run = Interactive(node, ["compute-units", "upgrade", "svc", "--image", svc["v2"].reference])
    run.wait_for("svc: restart")
    node.run(["sh", "-c", f"cat /dev/zero > {small_state_disk}"], check=False)  # ENOSPC ends it
    code = run.finish()
    assert code == ExitCode.ROLLED_BACK, run.text
    assert "Traceback" not in run.text
    lines = run.lines()
    error = next(line for line in lines if line.startswith("compute-units: error: "))
    full = f"No space left on device ({STATE_DIR}/state.json)"
    # the first state write after the fill fails: in restart, or later on a slow machine; either way it rolls back
    step = re.search(r"failed at (\S+): ", error)
    assert step is not None and step.group(1) in ("restart", "health", "post-check", "commit"), error
    failed = f"compute-units: error: svc: upgrade to {pinned(svc['v2'])} failed at {step.group(1)}: {full}; "
    rolled = f"rolled back to {pinned(svc['v1'])}"
    last = {"restart": "pinned", "health": "restarted", "post-check": "healthy", "commit": "verified"}[
        step.group(1)
    ]
    # the service runs the previous image
    assert active(node) == "active/running"
    assert running_digest(node) == svc["v1"].digest
    # state.json is whole (a temp file, renamed): the last write that got in, and the message
    # says which writes did not; `status` tells the truth
    entry = svc_state(node)
    if "state.json not updated" in error:
        expected = f"{failed}{rolled}; state.json not updated: {full}"
        history = f"; history not updated: No space left on device ({STATE_DIR}/history.jsonl)"
        assert error in (expected, expected + history)  # a history line may still fit
        assert (entry["phase"], entry["target"]) == (last, pinned(svc["v2"])), entry
        status = cu(node, "status", "svc", "--json")
        assert status.returncode == ExitCode.DEGRADED
        row = json.loads(status.stdout)[0]
        assert (row["upgrade_phase"], row["upgrade_target"], row["image_digest"]) == (
            last,
            pinned(svc["v2"]),
            svc["v1"].digest,
        ), row
        node.run(["rm", "-f", small_state_disk])
        # the same command resumes the recorded upgrade and converges (gated like any upgrade)
        again = cu(node, "upgrade", "svc", "--image", svc["v2"].reference)
        assert again.returncode == 0, again.stdout + again.stderr
        assert_settled_on(node, svc["v2"])
    else:  # the failed write's temp file freed the room the rollback's writes needed
        assert error == f"{failed}{rolled}"
        assert (entry["phase"], entry["current"]) == ("idle", pinned(svc["v1"]))


# ------------------------------------------------------------------------ a black-holed registry
@pytest.fixture(scope="module")
def black_hole(node: Node) -> Iterator[str]:
    """A "registry" that accepts TCP connections and never says a word."""
    from compute_units_dev.node import free_port

    port = free_port()
    code = (
        "import socket, time\n"
        "s = socket.socket()\n"
        f"s.bind(('127.0.0.1', {port}))\n"
        "s.listen(64)\n"
        "while True: time.sleep(3600)\n"
    )
    node.run(["systemd-run", "--unit=black-hole", "-p", "Type=exec", "python3", "-c", code])
    node.write_file(
        "/etc/containers/registries.conf.d/51-black-hole.conf",
        f'[[registry]]\nlocation = "127.0.0.1:{port}"\ninsecure = true\n',
    )
    node.run(["sh", "-c", f"until ss -ltn | grep -q '127.0.0.1:{port} '; do sleep 0.05; done"], timeout=30)
    yield f"127.0.0.1:{port}"
    node.systemctl("stop", "black-hole.service")
    node.run(["rm", "-f", "/etc/containers/registries.conf.d/51-black-hole.conf"])


def test_a_black_holed_registry_bounds_the_pull_and_changes_nothing(
    node: Node, svc: dict[str, Image], black_hole: str
) -> None:
    on(node, svc, "v1")
    before = (
        node.read_file(f"{STATE_DIR}/state.json"),
        node.run(["podman", "inspect", "svc", "--format", "{{.Id}}"]).stdout,
    )
    target = f"{black_hole}/cu-test/svc:v2"
    started = time.monotonic()
    run = Interactive(node, ["compute-units", "upgrade", "svc", "--image", target, "--pull-timeout", "3"])
    run.wait_for(f"Trying to pull {target}...")  # podman's own progress, at a terminal
    code = run.finish()
    elapsed = time.monotonic() - started
    assert code == ExitCode.FAILED, run.text
    assert (
        f"compute-units: error: cannot pull {target}: no answer within 3 s (--pull-timeout); nothing was changed"
    ) in run.lines(), run.text
    assert elapsed < 20, elapsed
    after = (
        node.read_file(f"{STATE_DIR}/state.json"),
        node.run(["podman", "inspect", "svc", "--format", "{{.Id}}"]).stdout,
    )
    assert after == before
    # the lock is free again: another command takes it at once
    assert node.run(["flock", "--nonblock", f"{STATE_DIR}/upgrade.lock", "true"], check=False).returncode == 0
    assert_settled_on(node, svc["v1"])


def test_doctor_asks_each_image_manifest_with_a_timeout(
    node: Node, svc: dict[str, Image], black_hole: str, registry_address: str
) -> None:
    hole = f"{black_hole}/cu-test/svc:v2"
    missing = f"{registry_address}/cu-test/svc:no-such-tag"
    node.write_file(f"{SPEC_DIR}/far.yaml", svc_spec(hole))
    node.write_file(f"{SPEC_DIR}/gone.yaml", svc_spec(missing))
    try:
        started = time.monotonic()
        result = cu(node, "doctor", "--json")
        elapsed = time.monotonic() - started
    finally:
        node.run(["rm", f"{SPEC_DIR}/far.yaml", f"{SPEC_DIR}/gone.yaml"])
    assert result.returncode == ExitCode.NOT_READY, result.stderr
    findings = {f["check"]: f for f in json.loads(result.stdout)["findings"]}
    assert findings[f"registry {black_hole}"] == {
        "check": f"registry {black_hole}",
        "status": "fail",
        "message": f"no answer within 10 s for the manifest of {hole}: the pull would hang",
        "fix": "check the registry (it accepts connections but does not answer), network, proxies",
        "fixed": False,
    }
    assert findings[f"registry {registry_address}"] == {
        "check": f"registry {registry_address}",
        "status": "fail",
        "message": f"has no manifest for {missing}: the pull would fail",
        "fix": "push the image, or fix the image in the spec (or the pin: compute-units upgrade NAME --image)",
        "fixed": False,
    }
    assert elapsed < 40, elapsed


# ------------------------------------------------------------------------------- hostile files
def test_hostile_spec_files_are_refused_without_echo(node: Node, svc: dict[str, Image]) -> None:
    units_before = node.run(
        ["sh", "-c", "ls -l --time-style=+%s.%N /etc/systemd/system; cat /etc/systemd/system/svc.service"]
    ).stdout
    evil = f"{SPEC_DIR}/evil.yaml"
    cases = {
        "owner": (
            f"printf 'image: {svc['v1'].reference}\\nprivileged: true\\n' > {evil} && chown 1000 {evil} && chmod 666 {evil}",
            f"{evil}:1:1: spec file {evil} is owned by uid 1000, not root; it was not read",
            f"    hint: chown root:root {evil} && chmod go-w {evil}",
        ),
        "mode": (
            f"printf 'image: {svc['v1'].reference}\\n' > {evil} && chmod 666 {evil}",
            f"{evil}:1:1: spec file {evil} is writable by group or others (mode 0666); it was not read",
            f"    hint: chown root:root {evil} && chmod go-w {evil}",
        ),
        "shadow": (
            f"ln -s /etc/shadow {evil}",
            f"{evil}:1:1: spec is a symlink to /etc/shadow, which is not a .yaml or .yml file; it was not read",
            "    hint: symlinks may point only at spec files",
        ),
        "10 MB": (
            f"head -c 10000000 /dev/zero | tr '\\0' x | sed 's/^/description: /' > {evil}",
            f"{evil}:1:1: spec file is larger than 1024 KiB (the limit); it was not read",
            None,
        ),
    }
    shadow = node.read_file("/etc/shadow").splitlines()
    for case, (make, message, hint) in cases.items():
        node.run(["sh", "-c", make])
        try:
            result = cu(node, "apply")
        finally:
            node.run(["rm", "-f", evil])
        lines = result.stderr.splitlines()
        assert result.returncode == ExitCode.USAGE, (case, result.stderr)
        assert lines[0] == message, case
        assert lines[1:] == ([hint] if hint else []) + ["compute-units: 1 error(s); nothing was written."], (
            case
        )
        assert "Traceback" not in result.stderr
        assert not any(line and line in result.stderr + result.stdout for line in shadow), case
    after = node.run(
        ["sh", "-c", "ls -l --time-style=+%s.%N /etc/systemd/system; cat /etc/systemd/system/svc.service"]
    ).stdout
    assert after == units_before
    assert_settled_on(node, svc[next(t for t in ("v1", "v2") if running_digest(node) == svc[t].digest)])


def test_garbage_state_and_a_binary_history_line(node: Node, svc: dict[str, Image]) -> None:
    on(node, svc, "v1")
    state, history = f"{STATE_DIR}/state.json", f"{STATE_DIR}/history.jsonl"
    node.run(["cp", "-a", state, f"{state}.keep"])
    node.run(["cp", "-a", history, f"{history}.keep"])
    garbage = b"\x89PNG\r\n\x1a\n\x00\xff secret-looking-bytes \xfe\x00"
    try:
        node.write_file(state, garbage, mode=0o600)
        message = f"compute-units: error: {state}: not valid JSON (UnicodeDecodeError)"
        hint = "  hint: run `compute-units doctor --fix` to rebuild the state from what runs"
        for argv in (["status"], ["upgrade", "svc", "--image", svc["v2"].reference], ["rollback", "svc"]):
            result = cu(node, *argv)
            assert result.returncode == ExitCode.FAILED, (argv, result.stderr)
            assert result.stderr.splitlines() == [message, hint], argv
            assert "secret-looking-bytes" not in result.stdout + result.stderr
        assert node.host_path(state).read_bytes() == garbage  # left as it was, for doctor --fix
        assert running_digest(node) == svc["v1"].digest
        node.run(["cp", "-a", f"{state}.keep", state])
        skipped_before = unreadable_history_lines(node)
        with_binary = node.read_file(history).encode() + b"\x00\xff\xfe not json\n[1, 2]\n"
        node.write_file(history, with_binary, mode=0o600)
        shown = cu(node, "history", "svc", "--json")
        assert shown.returncode == 0, shown.stderr
        entries = json.loads(shown.stdout)
        assert entries and all(isinstance(e, dict) for e in entries)
        assert "Traceback" not in shown.stderr
        doctor = {f["check"]: f for f in json.loads(cu(node, "doctor", "--json").stdout)["findings"]}
        assert doctor["upgrade history"] == {
            "check": "upgrade history",
            "status": "warn",
            "message": f"{skipped_before + 2} unreadable line(s) in {history} skipped",
            "fix": "",
            "fixed": False,
        }
    finally:
        node.run(["cp", "-a", f"{state}.keep", state])
        node.run(["cp", "-a", f"{history}.keep", history])
        node.run(["rm", "-f", f"{state}.keep", f"{history}.keep"])
    assert_settled_on(node, svc["v1"])


def unreadable_history_lines(node: Node) -> int:
    """What doctor counts (a line torn by an earlier fault, e.g. the full disk, counts too)."""
    findings = {f["check"]: f for f in json.loads(cu(node, "doctor", "--json").stdout)["findings"]}
    found = findings.get("upgrade history")
    return int(found["message"].split()[0]) if found else 0


# --------------------------------------------------------------------- a unit that cannot load
BROKEN_TEMPLATE = """{{ unit.header | join("\\n") }}

[Unit]
Description=no ExecStart: systemd refuses to load this

[Service]
Type=notify
"""


def test_apply_reports_a_unit_systemd_cannot_load_and_is_not_wedged(
    node: Node, svc: dict[str, Image]
) -> None:
    on(node, svc, "v1")
    template = "/etc/compute-units/templates/service.j2"
    node.write_file(template, BROKEN_TEMPLATE)
    try:
        result = cu(node, "apply")
        second = cu(node, "apply")
    finally:
        node.run(["rm", "-f", template])
    expected = [
        "compute-units: error: systemd cannot load svc.service: Unit svc.service has a bad unit file "
        "setting. (org.freedesktop.systemd1.BadUnitSetting)",
        "  hint: fix the spec (or the template override) and run `compute-units apply` again",
    ]
    assert (result.returncode, result.stderr.splitlines()) == (ExitCode.FAILED, expected)
    assert (second.returncode, second.stderr.splitlines()) == (ExitCode.FAILED, expected)
    assert node.show("svc.service", "LoadState")["LoadState"] == "bad-setting"
    fixed = cu(node, "apply")
    assert fixed.returncode == 0, fixed.stdout + fixed.stderr
    assert node.show("svc.service", "LoadState")["LoadState"] == "loaded"
    assert_settled_on(node, svc["v1"])


# ---------------------------------------------------------------------------------- power loss
GENERATOR = """#!/bin/sh
# as the RPM installs it: the systemd generator entry point (units in /etc shadow its own)
exec /usr/local/bin/compute-units-generator "$@"
"""


@pytest.fixture
def power_node(
    node: Node, svc_images: dict[str, Image], registry_address: str, release: str
) -> Iterator[list[Node]]:
    """A node of its own (it loses power), with units installed in /etc by `apply` and the
    generator installed as the RPM does; it pulls from the registry of the shared node."""
    files = {
        "/usr/lib/systemd/system-generators/compute-units-generator": (GENERATOR, 0o755),
        "/etc/containers/registries.conf.d/50-sandbox.conf": (
            f'[[registry]]\nlocation = "{registry_address}"\ninsecure = true\n',
            0o644,
        ),
        f"{SPEC_DIR}/svc.yaml": (held_spec(svc_images["v1"].reference), 0o644),
    }
    from compute_units_dev.node import boot

    nodes = [boot("power", release, files=files)]
    yield nodes  # a test that boots it again appends the new boot
    nodes[-1].shutdown()


def test_power_loss_after_the_pin_boots_the_committed_image(
    power_node: list[Node], svc_images: dict[str, Image]
) -> None:
    node, images = power_node[0], svc_images
    assert cu(node, "apply").returncode == 0
    assert cu(node, "upgrade", "svc", "--image", images["v1"].reference).returncode == 0
    assert node.run(["podman", "pull", "-q", images["v2"].reference]).returncode == 0
    # v2 cannot pass its health gate while HOLD exists: the power is cut inside the health step,
    # after the pin and the restart, whatever the machine's load (no race with a passing gate)
    node.run(["sh", "-c", f"mkdir -p {Path(HOLD).parent} && touch {HOLD}"])
    run = Interactive(node, ["compute-units", "upgrade", "svc", "--image", images["v2"].reference])
    run.wait_for("svc: health")
    node.power_off_hard()
    run.finish(timeout=30)
    node = reboot(node)
    power_node.append(node)
    node.run(["rm", "-f", HOLD])
    # the unit file in /etc names v2 (the pin), the node boots v1 (the upgrade was not verified)
    assert pinned(images["v2"]) in node.read_file("/etc/systemd/system/svc.service")
    assert active(node) == "active/running"
    # on failure: the phase the power cut left and the generator's lines
    generator = node.run(["sh", "-c", "journalctl -b -o cat | grep compute-units-generator"], check=False)
    assert running_digest(node) == images["v1"].digest, (svc_state(node)["phase"], generator.stdout)
    dropin = node.read_file("/run/systemd/generator/svc.service.d/50-compute-units-boot-pin.conf")
    assert f"X-ComputeUnits-Image={pinned(images['v1'])}" in dropin
    phase = str(svc_state(node)["phase"])
    status = cu(node, "status", "svc", "--json")
    assert status.returncode == ExitCode.DEGRADED, status.stdout
    row = json.loads(status.stdout)[0]
    assert (row["upgrade_phase"], row["upgrade_target"]) == (phase, pinned(images["v2"]))
    # the same command settles the interrupted upgrade to what runs, then upgrades anew
    again = cu(node, "upgrade", "svc", "--image", images["v2"].reference)
    assert again.returncode == 0, again.stdout + again.stderr
    out = again.stdout.splitlines()
    assert out[0] == f"svc: rolled-back {pinned(images['v2'])} -> {pinned(images['v1'])}", again.stdout
    reports = [line for line in out if line.startswith("svc: ")]
    assert reports[1] == f"svc: upgraded {pinned(images['v1'])} -> {pinned(images['v2'])}", again.stdout
    history = json.loads(cu(node, "history", "svc", "--json").stdout)
    assert [(e["kind"], e["result"]) for e in history[-2:]] == [
        ("upgrade", "rolled-back"),
        ("upgrade", "upgraded"),
    ]
    assert history[-2]["reason"] == (
        f"the node rebooted during the upgrade (phase {phase}); it came up on the committed image"
    )
    assert_settled_on(node, images["v2"])
