"""More faults on a real node (the table is in docs/reliability.md): a registry that refuses the
connection, a health command that hangs, an image that exits at once, two upgrades started at the
same moment, hostile podman_args and an oversized value. Each test asserts the exit code, the exact
message, what runs, and that state.json and the units are as the outcome says."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
from collections.abc import Iterator

import pytest

from compute_units.errors import ExitCode
from compute_units_dev.node import Node, free_port
from compute_units_dev.specs import svc_spec
from tests.harness.fixtures import Image, cu
from tests.integration.test_faults import (
    SPEC_DIR,
    STATE_DIR,
    Interactive,
    assert_settled_on,
    deployed,
    on,
    pinned,
    running_digest,
    svc_state,
)


@pytest.fixture(scope="module")
def svc(node: Node, svc_images: dict[str, Image]) -> Iterator[dict[str, Image]]:
    yield from deployed(node, svc_images)


def snapshot(node: Node) -> tuple[str, str, str]:
    """state.json, the unit file and the container's id: what "nothing was changed" compares."""
    return (
        node.read_file(f"{STATE_DIR}/state.json"),
        node.read_file("/etc/systemd/system/svc.service"),
        node.run(["podman", "inspect", "svc", "--format", "{{.Id}}"]).stdout,
    )


def error_lines(result: subprocess.CompletedProcess[str]) -> list[str]:
    return [line for line in result.stderr.splitlines() if line.startswith("compute-units: error: ")]


# ------------------------------------------------------------------------- registry refuses
@pytest.fixture
def refusing_registry(node: Node) -> Iterator[str]:
    """An insecure registry address on a port nothing listens on: connection refused."""
    port = free_port()
    conf = "/etc/containers/registries.conf.d/52-refusing.conf"
    node.write_file(conf, f'[[registry]]\nlocation = "127.0.0.1:{port}"\ninsecure = true\n')
    assert node.run(["ss", "-Hltn", f"sport = :{port}"]).stdout.strip() == ""
    yield f"127.0.0.1:{port}"
    node.run(["rm", "-f", conf])


def test_a_registry_that_refuses_the_connection_changes_nothing(
    node: Node, svc: dict[str, Image], refusing_registry: str
) -> None:
    on(node, svc, "v1")
    before = snapshot(node)
    target = f"{refusing_registry}/cu-test/svc:v2"
    started = time.monotonic()
    result = cu(node, "upgrade", "svc", "--image", target)
    elapsed = time.monotonic() - started
    assert result.returncode == ExitCode.FAILED, result.stdout + result.stderr
    prefix = f"compute-units: error: cannot pull {target}: "
    (error,) = error_lines(result)
    assert error.startswith(prefix) and error.endswith(
        f"dial tcp {refusing_registry}: connect: connection refused; nothing was changed"
    ), error
    assert (
        result.stderr.splitlines()[-1]
        == "  hint: check the registry and the image name (compute-units doctor)"
    )
    assert "Traceback" not in result.stderr
    assert elapsed < 60, elapsed  # refused at once (podman retries a few times), no pull timeout
    assert snapshot(node) == before
    assert_settled_on(node, svc["v1"])


# ------------------------------------------------------------------------ a hanging health check
HANGING = ["sh", "-c", "grep -qx 2 /VERSION && exec sleep 3600; exec /usr/local/bin/healthcheck.sh"]


def hanging_spec(reference: str) -> str:
    """svc_spec() whose health command hangs in image v2 (its /VERSION says 2) and passes in v1."""
    return svc_spec(
        reference, health=f"{{command: {json.dumps(HANGING)}, interval: 30s, timeout: 2s, start_period: 3s}}"
    )


@pytest.fixture
def hanging_health(node: Node, svc: dict[str, Image]) -> Iterator[None]:
    on(node, svc, "v1")
    node.write_file(f"{SPEC_DIR}/svc.yaml", hanging_spec(svc["v1"].reference))
    applied = cu(node, "apply")
    assert applied.returncode == 0, applied.stdout + applied.stderr
    yield
    node.write_file(f"{SPEC_DIR}/svc.yaml", svc_spec(svc["v1"].reference))
    assert cu(node, "apply").returncode == 0


def test_a_hanging_health_command_is_bounded_and_rolls_back(
    node: Node, svc: dict[str, Image], hanging_health: None
) -> None:
    started = time.monotonic()
    result = cu(node, "upgrade", "svc", "--image", svc["v2"].reference)
    wall = time.monotonic() - started
    assert result.returncode == ExitCode.ROLLED_BACK, result.stdout + result.stderr
    (error,) = error_lines(result)
    match = re.fullmatch(
        rf"compute-units: error: svc: upgrade to {re.escape(pinned(svc['v2']))} failed at health: "
        rf"svc: health check {re.escape(str(HANGING))} did not pass within (\d+\.\d) s "
        rf"\(start_period 3 s \+ timeout 2 s\); rolled back to {re.escape(pinned(svc['v1']))}",
        error,
    )
    assert match, error
    figure = float(match.group(1))
    # the first try hangs until it is given up at timeout + 5 s (7 s); the gate (start_period +
    # timeout = 5 s) is then over: at most one try past the gate, 5 + 7 s, plus scheduling slack
    assert 7.0 <= figure <= 12.0 + 3.0, figure
    assert figure < wall, (figure, wall)  # the real elapsed time, not the configured one
    assert "Traceback" not in result.stderr
    assert_settled_on(node, svc["v1"])
    last = json.loads(cu(node, "history", "svc", "--json").stdout)[-1]
    assert (last["result"], last["to"], last["failed_step"]) == ("rolled-back", pinned(svc["v2"]), "health")


# ------------------------------------------------------------------------- a crash-looping image
def test_an_image_that_exits_at_once_rolls_back(node: Node, svc: dict[str, Image]) -> None:
    on(node, svc, "v1")
    result = cu(node, "upgrade", "svc", "--image", svc["bad"].reference)
    assert result.returncode == ExitCode.ROLLED_BACK, result.stdout + result.stderr
    (error,) = error_lines(result)
    # the restart job may see the container come up (then the gate sees the unit restarting, or
    # already given up), or not: the message names the step, the unit's state and the exit status
    assert re.fullmatch(
        rf"compute-units: error: svc: upgrade to {re.escape(pinned(svc['bad']))} failed at "
        r"(health: svc\.service is (activating/auto-restart|failed/failed) \(main process exit status 1\)"
        r"|restart: svc\.service: job failed, unit (activating/auto-restart|failed/failed) "
        r"\(Result=exit-code, main process exit status 1\)); "
        rf"rolled back to {re.escape(pinned(svc['v1']))}",
        error,
    ), error
    assert "Traceback" not in result.stderr
    assert_settled_on(node, svc["v1"])
    last = json.loads(cu(node, "history", "svc", "--json").stdout)[-1]
    assert (last["result"], last["to"]) == ("rolled-back", pinned(svc["bad"]))
    assert last["failed_step"] in ("restart", "health"), last


# ----------------------------------------------------------------- two upgrades at the same time
@pytest.fixture
def two_services(node: Node, svc: dict[str, Image]) -> Iterator[None]:
    on(node, svc, "v1")
    node.write_file(f"{SPEC_DIR}/other.yaml", svc_spec(svc["v1"].reference))
    applied = cu(node, "apply")
    assert applied.returncode == 0, applied.stdout + applied.stderr
    yield
    cu(node, "stop", "other")
    node.run(["rm", "-f", f"{SPEC_DIR}/other.yaml"])
    assert cu(node, "apply").returncode == 0


def digest_of(node: Node, name: str) -> str:
    image = node.run(["podman", "inspect", name, "--format", "{{.Image}}"]).stdout.strip()
    return node.run(["podman", "image", "inspect", image, "--format", "{{.Digest}}"]).stdout.strip()


def services(node: Node) -> dict[str, dict[str, object]]:
    entries: dict[str, dict[str, object]] = json.loads(node.read_file(f"{STATE_DIR}/state.json"))["services"]
    return entries


def at_once(node: Node, *argvs: list[str]) -> list[subprocess.CompletedProcess[str]]:
    """Start each `compute-units ARGV` in the node at the same moment (a shared start file)."""
    go = "/run/cu-test-go"
    node.run(["rm", "-f", go])
    wait_then_run = f'echo ready >&2; until [ -e {go} ]; do sleep 0.01; done; exec compute-units "$@"'
    procs = [
        subprocess.Popen(
            node.argv(["sh", "-c", wait_then_run, "sh", *argv]),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for argv in argvs
    ]
    for proc in procs:  # each shell says so before it polls for the start file
        assert proc.stderr is not None
        ready = b""
        while not ready.endswith(b"\n"):  # unbuffered: communicate() reads the rest from the fd
            chunk = os.read(proc.stderr.fileno(), 1)
            assert chunk, "the shell exited before it was ready"
            ready += chunk
        assert ready == b"ready\n", ready
    node.run(["touch", go])
    results = []
    for argv, proc in zip(argvs, procs, strict=True):
        out, err = proc.communicate(timeout=300)
        results.append(subprocess.CompletedProcess(argv, proc.returncode, out, err))
    node.run(["rm", "-f", go])
    return results


def test_two_upgrades_at_the_same_moment_one_fails_naming_the_holder(
    node: Node, svc: dict[str, Image], two_services: None
) -> None:
    before = services(node)
    results = at_once(
        node,
        ["upgrade", "svc", "--image", svc["v2"].reference],
        ["upgrade", "other", "--image", svc["v2"].reference],
    )
    codes = sorted(r.returncode for r in results)
    assert codes == [ExitCode.OK, ExitCode.FAILED], [(r.returncode, r.stderr) for r in results]
    won, lost = sorted(results, key=lambda r: r.returncode)
    winner, loser = won.args[1], lost.args[1]
    (error,) = error_lines(lost)
    assert re.fullmatch(
        r"compute-units: error: another upgrade is running on this host \(pid \d+, since \d\d:\d\d:\d\d: "
        rf"[^)]*\); lock {STATE_DIR}/upgrade.lock",
        error,
    ), error
    assert lost.stderr.splitlines()[-1] == "  hint: wait for it to finish, or pass --wait SECONDS"
    assert digest_of(node, winner) == svc["v2"].digest
    assert digest_of(node, loser) == svc["v1"].digest
    assert services(node).get(loser) == before.get(loser)  # the loser left no trace (none when new)
    # with --wait, both get through, one after the other
    results = at_once(
        node,
        ["upgrade", "svc", "--image", svc["v1"].reference, "--wait", "240"],
        ["upgrade", "other", "--image", svc["v2"].reference, "--wait", "240"],
    )
    assert [r.returncode for r in results] == [ExitCode.OK, ExitCode.OK], [r.stderr for r in results]
    waits = [line for r in results for line in r.stderr.splitlines() if "waiting up to" in line]
    assert len(waits) == 1, waits  # the second waited for the first, which it names
    assert re.fullmatch(
        r"compute-units: waiting up to 240 s for the upgrade lock \(pid \d+, since \d\d:\d\d:\d\d: [^)]*\)",
        waits[0],
    ), waits
    assert_settled_on(node, svc["v1"])
    assert digest_of(node, "other") == svc["v2"].digest
    entries = services(node)
    assert (entries["other"]["phase"], entries["other"]["current"]) == ("idle", pinned(svc["v2"]))
    assert cu(node, "status", "--json").returncode == 0


# --------------------------------------------------------------- hostile podman_args, big values
def test_injection_through_podman_args_and_an_oversized_value_are_refused(
    node: Node, svc: dict[str, Image]
) -> None:
    on(node, svc, "v1")
    evil = f"{SPEC_DIR}/evil.yaml"
    text = (
        f"image: {svc['v1'].reference}\n"
        "podman_args:\n"
        '  - "--ulimit=nofile=1\\nExecStartPre=/bin/touch /pwned"\n'
        '  - "; touch /pwned"\n'
        '  - "--privileged"\n'
        '  - "--volume=/:/host"\n'
        '  - "--security-opt=label=disable"\n'
        f'description: "{"x" * 2000}"\n'
    )
    units = "ls -l --time-style=+%s.%N /etc/systemd/system; cat /etc/systemd/system/svc.service"
    before = (node.run(["sh", "-c", units]).stdout, node.read_file(f"{STATE_DIR}/state.json"))
    node.write_file(evil, text)
    try:
        results = [cu(node, "validate"), cu(node, "apply")]
    finally:
        node.run(["rm", "-f", evil])
    expected = [
        f"{evil}:8:14: description: value is 2000 characters long; the limit is 1024",
        f"{evil}:3:5: podman_args[0]: value contains a newline",
        "    hint: unit files cannot carry it; remove it",
        f"{evil}:4:5: podman_args[1]: '; touch /pwned' is not an option",
        "    hint: give each option with its value in one item (--ulimit=nofile=4096); the container's argv "
        "goes in command:",
        f"{evil}:5:5: podman_args[2]: --privileged conflicts with the typed option 'privileged'",
        "    hint: use the spec key 'privileged' instead",
        f"{evil}:6:5: podman_args[3]: --volume conflicts with the typed option 'mounts'",
        "    hint: use the spec key 'mounts' instead",
        f"{evil}:7:5: podman_args[4]: --security-opt cannot be given in podman_args: security options change "
        "the privilege model; use privileged: true",
        "compute-units: 6 error(s); nothing was written.",
    ]
    for result in results:
        assert (result.returncode, result.stderr.splitlines()) == (ExitCode.USAGE, expected), result.stderr
    assert (node.run(["sh", "-c", units]).stdout, node.read_file(f"{STATE_DIR}/state.json")) == before
    assert node.run(["test", "-e", "/etc/systemd/system/evil.service"], check=False).returncode == 1
    assert node.run(["test", "-e", "/pwned"], check=False).returncode == 1
    assert_settled_on(node, svc["v1"])
    assert running_digest(node) == svc["v1"].digest
    assert svc_state(node)["phase"] == "idle"


# ------------------------------------------------------------------ container storage runs full
@pytest.fixture
def small_store_node(registry_address: str, release: str, svc_images: dict[str, Image]) -> Iterator[Node]:
    """A node of its own whose container storage (/var/lib/containers, in the node's own mount
    namespace) is a fresh 96 MiB tmpfs: filling it fills nothing outside the node."""
    from compute_units_dev.node import boot

    files = {
        "/etc/containers/registries.conf.d/50-sandbox.conf": (
            f'[[registry]]\nlocation = "{registry_address}"\ninsecure = true\n',
            0o644,
        ),
        f"{SPEC_DIR}/svc.yaml": (svc_spec(svc_images["v1"].reference), 0o644),
    }
    node = boot("diskfull", release, files=files)
    try:
        node.run(["mount", "-t", "tmpfs", "-o", "size=96m", "cu-test-store", "/var/lib/containers"])
        yield node
    finally:
        node.shutdown()


def test_full_container_storage_during_the_pull_changes_nothing(
    small_store_node: Node, svc_images: dict[str, Image]
) -> None:
    node, images = small_store_node, svc_images
    assert cu(node, "apply").returncode == 0
    first = cu(node, "upgrade", "svc", "--image", images["v1"].reference)
    assert first.returncode == 0, first.stdout + first.stderr
    assert_settled_on(node, images["v1"])
    filler = "/var/lib/containers/filler"
    node.run(["sh", "-c", f"cat /dev/zero > {filler}"], check=False)  # ENOSPC ends it
    assert node.run(["df", "--output=avail", "/var/lib/containers"]).stdout.split()[-1] == "0"
    before = snapshot(node)
    result = cu(node, "upgrade", "svc", "--image", images["v2"].reference)
    assert result.returncode == ExitCode.FAILED, result.stdout + result.stderr
    (error,) = error_lines(result)
    assert error.startswith(f"compute-units: error: cannot pull {images['v2'].reference}: "), error
    assert error.endswith("no space left on device; nothing was changed"), error
    assert "Traceback" not in result.stderr
    assert snapshot(node) == before
    assert_settled_on(node, images["v1"])
    # once there is room, the same command upgrades
    node.run(["rm", "-f", filler])
    again = cu(node, "upgrade", "svc", "--image", images["v2"].reference)
    assert again.returncode == 0, again.stdout + again.stderr
    assert_settled_on(node, images["v2"])


# ------------------------------------------------------- another image during an unfinished upgrade
def killed_during_health(node: Node, svc: dict[str, Image]) -> None:
    """An upgrade to v2 whose CLI is killed (-9) in the health step: v2 runs, state.json says
    'restarted', nothing finished it."""
    on(node, svc, "v1")
    run = Interactive(node, ["compute-units", "upgrade", "svc", "--image", svc["v2"].reference])
    run.wait_for("svc: health")
    run.send(signal.SIGKILL)
    run.finish()
    assert (svc_state(node)["phase"], svc_state(node)["target"]) == ("restarted", pinned(svc["v2"]))


def test_rollback_during_an_unfinished_upgrade_rolls_that_upgrade_back(
    node: Node, svc: dict[str, Image]
) -> None:
    killed_during_health(node, svc)
    result = cu(node, "rollback", "svc")
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.splitlines()[0] == f"svc: rolled-back {pinned(svc['v2'])} -> {pinned(svc['v1'])}"
    assert result.stdout.splitlines()[1] == (
        f"    target: `rollback` during the unfinished upgrade to {pinned(svc['v2'])}"
    )
    assert_settled_on(node, svc["v1"])
    last = json.loads(cu(node, "history", "svc", "--json").stdout)[-1]
    assert (last["kind"], last["result"], last["to"], last["undoes"]) == (
        "rollback",
        "rolled-back",
        pinned(svc["v1"]),
        None,
    )


def test_another_image_during_an_unfinished_upgrade_rolls_that_back_first(
    node: Node, svc: dict[str, Image]
) -> None:
    killed_during_health(node, svc)
    result = cu(node, "upgrade", "svc", "--image", svc["v1"].reference, "--json")
    assert result.returncode == 0, result.stdout + result.stderr
    reports = json.loads(result.stdout)["services"]
    assert [(r["kind"], r["result"], r["from"], r["to"]) for r in reports] == [
        ("rollback", "rolled-back", pinned(svc["v2"]), pinned(svc["v1"])),
        ("upgrade", "unchanged", pinned(svc["v1"]), pinned(svc["v1"])),
    ]
    assert (
        reports[0]["reason"]
        == f"--image {svc['v1'].reference} during the unfinished upgrade to {pinned(svc['v2'])}"
    )
    assert_settled_on(node, svc["v1"])
