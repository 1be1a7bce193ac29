"""`export --quadlet` against the real Quadlet (podman 5.4's generator, trixie nodes only).

For every bundled example, the exported `.container` file is turned into a unit by Quadlet's own
generator (at `systemctl daemon-reload`) and our unit of the same spec by `compute-units
generate`; systemd itself parses both ExecStart= lines (read back over D-Bus, specifiers
resolved), and the two `podman run` argvs are compared option by option. Then the examples, on the
stand-in image, are started through Quadlet and must run with the same container settings.

Bookworm's podman 4.3 has no Quadlet (it came with 4.4): skipped there.
"""

from __future__ import annotations

import json
import shlex
from collections import Counter
from collections.abc import Iterator

import pytest
import yaml

from compute_units import options, secretplan, spec
from compute_units_dev.node import REPO, Node
from tests.harness.fixtures import Image

EXAMPLES = REPO / "examples/services"
SERVICES = sorted(p.stem for p in EXAMPLES.glob("*.yaml"))
QUADLET_DIR = "/etc/containers/systemd"
SECRETS = "/etc/compute-units/secrets"
SECRET_FILES = ("keystone_admin_token", "nova_db_password", "rabbit_password", "nova_keystone_password")

Option = tuple[str, str | None]


def unit_path(unit: str) -> str:
    """The unit's D-Bus object path (systemd's bus_label_escape)."""
    label = "".join(c if c.isalnum() else f"_{ord(c):02x}" for c in unit)
    return f"/org/freedesktop/systemd1/unit/{label}"


def exec_start(node: Node, unit: str) -> list[str]:
    """ExecStart='s argv as systemd parsed it (specifiers resolved, `$$` kept for exec time)."""
    out = node.run(
        [
            "busctl",
            "get-property",
            "--json=short",
            "org.freedesktop.systemd1",
            unit_path(unit),
            "org.freedesktop.systemd1.Service",
            "ExecStart",
        ]
    ).stdout
    commands = json.loads(out)["data"]
    assert len(commands) == 1, commands
    argv: list[str] = commands[0][1]
    return argv


def split_run(argv: list[str]) -> tuple[list[Option], list[str]]:
    """`podman run` argv → its options as (canonical flag, value) and [image, *command]."""
    assert argv[:2] == ["/usr/bin/podman", "run"], argv
    words = argv[2:]
    found: list[Option] = []
    i = 0
    while words[i].startswith("-"):
        name, eq, value = words[i].partition("=")
        option = options.lookup(name)
        assert option is not None, f"unknown podman run option {words[i]!r} in {shlex.join(argv)}"
        if option.takes_value and not eq:
            i += 1
            value = words[i]
        found.append((option.flag, value if option.takes_value else None))
        i += 1
    return found, words[i:]


def differences(ours: list[str], theirs: list[str]) -> tuple[list[Option], list[Option]]:
    """(options only in our unit's podman run, options only in Quadlet's), image and command equal."""
    our_options, our_rest = split_run(ours)
    their_options, their_rest = split_run(theirs)
    assert our_rest == their_rest, "image or command differ"
    only_ours = Counter(our_options) - Counter(their_options)
    only_theirs = Counter(their_options) - Counter(our_options)
    return sorted(only_ours.elements()), sorted(only_theirs.elements())


def expected_differences(service: str, stop_timeout: int) -> tuple[list[Option], list[Option]]:
    """What differs on purpose: where each keeps the container id, and the export's podman-side
    stop timeout (our units pass `podman stop -t` instead)."""
    return (
        [("--cidfile", f"/run/{service}.service.ctr-id")],
        [("--cidfile", f"/run/{service}.cid"), ("--stop-timeout", str(stop_timeout))],
    )


def secret_differences(node: Node, name: str, version: str) -> tuple[list[Option], list[Option]]:
    """How the secrets of a file for `version` differ from our units' on the node's podman 5.4.

    Our units pass them natively (type=env); a file for podman < 5.3 mounts them and runs the
    loader entrypoint before the image's own ENTRYPOINT (read from the node's local store).
    """
    data = yaml.safe_load((EXAMPLES / f"{name}.yaml").read_text())
    variables = list(data.get("secrets") or {})
    if not variables or secretplan.mode_for(secretplan.parse_version(version) or (0, 0)) == "native":
        return [], []
    secret = f"compute-units.{name}.{{0}}"
    service, diagnostics = spec.parse_text(
        (EXAMPLES / f"{name}.yaml").read_text(), EXAMPLES / f"{name}.yaml", check_files=False
    )
    assert service is not None, diagnostics
    inspected = json.loads(node.run(["podman", "image", "inspect", data["image"]]).stdout)[0]
    entrypoint = tuple(inspected["Config"].get("Entrypoint") or ())
    # systemd keeps `$$` (a literal $ at exec time) in the argv it shows
    loader = json.dumps(secretplan.loader(service, entrypoint), separators=(",", ":")).replace("$", "$$")
    native: list[Option] = [("--secret", f"{secret.format(v)},type=env,target={v}") for v in variables]
    mounted: list[Option] = [
        ("--secret", f"{secret.format(v)},type=mount,mode=0400,target={v}") for v in variables
    ]
    return native, [("--entrypoint", loader), *mounted]


STOP_TIMEOUTS = {"nova-compute": 30, "nova-libvirt": 10, "nova-network": 30}


@pytest.fixture
def quadlet_node(node: Node) -> Iterator[Node]:
    """The node with the examples' secret files (trixie only: tests/conftest.py MODULE_RELEASES)."""
    # the examples' secret files (other tests write some of them: those are left as they are)
    missing = [
        f"{SECRETS}/{n}"
        for n in SECRET_FILES
        if node.run(["test", "-e", f"{SECRETS}/{n}"], check=False).returncode
    ]
    for path in missing:
        node.write_file(path, "s3cret\n", mode=0o600)
    yield node
    node.run(["rm", "-rf", QUADLET_DIR, "/tmp/cu-quadlet-specs", *missing])
    node.run(["sh", "-c", "rm -f /etc/systemd/system/nova-*.service /etc/systemd/system/compute-node.target"])
    node.systemctl("daemon-reload")
    node.systemctl("reset-failed", check=False)


def cu(node: Node, *args: str) -> None:
    result = node.run(["compute-units", *args], check=False)
    assert result.returncode == 0, result.stderr


def quadlet_units(node: Node, specs: str, version: str) -> dict[str, list[str]]:
    """Export, let Quadlet's generator make the units, return each unit's ExecStart argv."""
    node.run(["rm", "-rf", QUADLET_DIR])
    cu(node, "export", "--quadlet", "--spec", specs, "--output-dir", QUADLET_DIR, "--podman-version", version)
    node.systemctl("daemon-reload")
    argvs = {}
    for name in SERVICES:
        props = node.show(f"{name}.service", "LoadState", "SourcePath")
        assert props == {"LoadState": "loaded", "SourcePath": f"{QUADLET_DIR}/{name}.container"}, name
        argvs[name] = exec_start(node, f"{name}.service")
    return argvs


def our_units(node: Node, specs: str) -> dict[str, list[str]]:
    node.run(["rm", "-rf", QUADLET_DIR])
    cu(node, "generate", "--spec", specs, "--output-dir", "/etc/systemd/system", "--no-enable")
    node.systemctl("daemon-reload")
    argvs = {}
    for name in SERVICES:
        props = node.show(f"{name}.service", "LoadState", "FragmentPath")
        assert props == {"LoadState": "loaded", "FragmentPath": f"/etc/systemd/system/{name}.service"}
        argvs[name] = exec_start(node, f"{name}.service")
    node.run(["sh", "-c", "rm -f /etc/systemd/system/nova-*.service /etc/systemd/system/compute-node.target"])
    node.systemctl("daemon-reload")
    return argvs


@pytest.fixture
def examples_pulled(quadlet_node: Node, svc_images: dict[str, Image]) -> Iterator[Node]:
    """The examples' images in the node's local store, as on a host that pulled them: a file for
    podman < 5.3 runs the image's own ENTRYPOINT and CMD after the secrets loader, and `export`
    reads them from there (the stand-in image, tagged as each example's image)."""
    node = quadlet_node
    node.run(["podman", "pull", "-q", svc_images["v1"].reference])
    references = [yaml.safe_load(p.read_text())["image"] for p in EXAMPLES.glob("*.yaml")]
    for reference in references:
        node.run(["podman", "tag", svc_images["v1"].reference, reference])
    yield node
    node.run(["podman", "untag", svc_images["v1"].reference, *references], check=False)


@pytest.mark.parametrize("version", ["4.4", "4.5", "5.4"])
def test_quadlet_runs_the_same_podman_command_as_our_units(examples_pulled: Node, version: str) -> None:
    node = examples_pulled
    specs = str(EXAMPLES)
    theirs = quadlet_units(node, specs, version)
    ours = our_units(node, specs)
    for name in SERVICES:
        only_ours, only_theirs = expected_differences(name, STOP_TIMEOUTS[name])
        secrets_ours, secrets_theirs = secret_differences(node, name, version)
        expected = sorted(only_ours + secrets_ours), sorted(only_theirs + secrets_theirs)
        assert differences(ours[name], theirs[name]) == expected, name


def ns(node: Node, pid: int | str, kind: str) -> str:
    return node.run(["readlink", f"/proc/{pid}/ns/{kind}"]).stdout.strip()


def stand_in(text: str, image: str) -> str:
    """An example spec on the stand-in image: its own image, command and health check swapped."""
    data = yaml.safe_load(text)
    data["image"] = image
    data["command"] = ["/usr/local/bin/service.sh"]
    if "health" in data:
        data["health"]["command"] = ["/usr/local/bin/healthcheck.sh"]
    dumped: str = yaml.safe_dump(data, sort_keys=False)
    return dumped


@pytest.fixture
def exported(quadlet_node: Node, svc_images: dict[str, Image]) -> Iterator[Node]:
    node = quadlet_node
    for path in EXAMPLES.glob("*.yaml"):
        node.write_file(
            f"/tmp/cu-quadlet-specs/{path.name}", stand_in(path.read_text(), svc_images["v1"].reference)
        )
    node.run(["mkdir", "-p", "/lib/modules"])  # nova-network mounts it; the node's rootfs has no kernel
    cu(
        node,
        "export",
        "--quadlet",
        "--spec",
        "/tmp/cu-quadlet-specs",
        "--output-dir",
        QUADLET_DIR,
        "--podman-version",
        "5.4",
    )
    node.systemctl("daemon-reload")
    yield node
    node.systemctl("stop", *(f"{name}.service" for name in SERVICES), check=False)


def test_exported_services_start_through_quadlet(exported: Node) -> None:
    node = exported
    # nova-compute requires nova-libvirt: starting it starts both
    started = node.systemctl("start", "nova-compute.service", "nova-network.service", check=False)
    assert started.returncode == 0, started.stderr + node.run(["journalctl", "--no-pager", "-n", "60"]).stdout
    for name in SERVICES:
        props = node.show(f"{name}.service", "ActiveState", "SourcePath", "KillSignal")
        assert props["ActiveState"] == "active", name
        assert props["SourcePath"] == f"{QUADLET_DIR}/{name}.container"
        info = json.loads(node.run(["podman", "container", "inspect", name]).stdout)[0]
        host = info["HostConfig"]
        assert (info["State"]["Running"], host["PidMode"], host["NetworkMode"], host["Privileged"]) == (
            True,
            "host",
            "host",
            True,
        ), name
        assert info["Config"]["Labels"]["compute-units.service"] == name
    # keeps_vms' [Service] settings survive Quadlet
    assert node.show("nova-libvirt.service", "KillSignal")["KillSignal"] == "9"
    libvirt = json.loads(node.run(["podman", "container", "inspect", "nova-libvirt"]).stdout)[0]
    pid = libvirt["State"]["Pid"]
    for kind in ("pid", "net", "cgroup"):  # host_namespaces: [pid, network, cgroup]
        assert ns(node, pid, kind) == ns(node, 1, kind), kind
    assert {m["Destination"] for m in libvirt["Mounts"]} >= {"/sys", "/etc/libvirt/qemu", "/run/libvirt"}
    # secrets reach the service's process as variables, and podman inspect never shows them
    # (the journal's "variables:" lines could come from earlier runs of the unit by other tests)
    compute = json.loads(node.run(["podman", "container", "inspect", "nova-compute"]).stdout)[0]
    environ = node.run(["cat", f"/proc/{compute['State']['Pid']}/environ"]).stdout.split("\0")
    values = {n.upper(): node.read_file(f"{SECRETS}/{n}") for n in SECRET_FILES}
    for variable, value in values.items():
        assert f"{variable}={value}" in environ, variable
    assert {"RABBIT_USERID=stackrabbit", "NETWORK_MANAGER=nova", "GLANCE_API_SERVICE_HOST=192.0.2.10"} <= set(
        environ
    )
    inspected = node.run(["podman", "container", "inspect", "nova-compute"]).stdout
    for variable, value in values.items():
        assert value.strip() not in inspected, f"{variable}'s value in podman inspect"
        assert f"compute-units.nova-compute.{variable}=*******" in compute["Config"]["Env"]
