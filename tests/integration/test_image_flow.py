"""Atomic/read-only OS images: specs baked under /usr, units made at boot by the generator."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from compute_units_dev.node import GENERATOR as NODE_GENERATOR
from compute_units_dev.node import Node, boot
from tests.harness.fixtures import Image

GENERATOR = f"""#!/bin/sh
# as the RPM installs it: the systemd generator entry point
exec {NODE_GENERATOR} "$@"
"""


def spec(reference: str, extra: str = "") -> str:
    return (
        f"image: {reference}\ncommand: [/usr/local/bin/service.sh]\nhost_namespaces: [pid, network]\n{extra}"
    )


@pytest.fixture
def image_node(svc_images: dict[str, Image], registry_address: str, release: str) -> Iterator[Node]:
    """A node booted from an "image" that has compute-units and specs, but no generated units."""
    v1 = svc_images["v1"].reference
    files = {
        "/usr/lib/systemd/system-generators/compute-units-generator": (GENERATOR, 0o755),
        "/usr/share/compute-units/services/nova-libvirt.yaml": (spec(v1), 0o644),
        "/usr/share/compute-units/services/nova-compute.yaml": (
            spec(v1, "environment: {FROM: usr}\nrequires: [nova-libvirt]\n"),
            0o644,
        ),
        "/usr/share/compute-units/services/broken.yaml": (spec(v1, "restart: sometimes\n"), 0o644),
        # the site's /etc override of a file of the same name wins over /usr
        "/etc/compute-units/services/nova-compute.yaml": (
            spec(v1, "environment: {FROM: etc}\nrequires: [nova-libvirt]\n"),
            0o644,
        ),
        "/etc/containers/registries.conf.d/50-sandbox.conf": (
            f'[[registry]]\nlocation = "{registry_address}"\ninsecure = true\n',
            0o644,
        ),
    }
    # the broken spec's report unit fails on purpose: the node boots "degraded", not "running"
    node = boot("image", release, files=files, expect="degraded")
    yield node
    node.shutdown()


def test_generator_makes_and_starts_the_units_at_boot(image_node: Node, svc_images: dict[str, Image]) -> None:
    node = image_node
    # no `compute-units generate` was run: the units come from the generator, the target starts them
    for unit in ("nova-libvirt.service", "nova-compute.service"):
        props = node.show(unit, "ActiveState", "FragmentPath")
        assert props["FragmentPath"] == f"/run/systemd/generator/{unit}"
    node.run(["systemctl", "start", "compute-node.target"])  # boot started it; starting again is a no-op
    assert node.show("nova-libvirt.service", "ActiveState")["ActiveState"] == "active"
    assert node.show("nova-compute.service", "ActiveState")["ActiveState"] == "active"
    assert "--env=FROM=etc" in node.read_file("/run/systemd/generator/nova-compute.service")
    assert node.run(["test", "-e", "/run/systemd/generator/broken.service"], check=False).returncode != 0
    journal = node.run(
        ["journalctl", "-b", "--no-pager", "-t", "compute-units-generator", "-o", "cat"]
    ).stdout
    lines = journal.splitlines()
    assert lines[:2] == [
        "skipped /usr/share/compute-units/services/broken.yaml: 1 error(s)",
        "run `compute-units validate` to see the errors; fix them and run `systemctl daemon-reload`",
    ]
    assert "generated 2 service(s): nova-libvirt, nova-compute" in lines
    failed = node.run(["systemctl", "--failed", "--no-legend", "--plain"]).stdout.split()
    assert failed[0] == "compute-units-spec-errors.service"
    # nothing was written to /etc/systemd/system
    assert node.run(["ls", "/etc/systemd/system"]).stdout.split().count("nova-compute.service") == 0


def test_upgrade_pins_through_state_under_var(image_node: Node, svc_images: dict[str, Image]) -> None:
    node = image_node
    # the site masks the broken spec from the image (a symlink to /dev/null in /etc)
    node.run(["ln", "-s", "/dev/null", "/etc/compute-units/services/broken.yaml"])
    node.systemctl("daemon-reload")
    assert (
        node.run(
            ["test", "-e", "/run/systemd/generator/compute-units-spec-errors.service"], check=False
        ).returncode
        != 0
    )
    node.run(["systemctl", "start", "compute-node.target"])
    result = node.run(
        ["compute-units", "upgrade", "nova-libvirt", "--image", svc_images["v2"].reference], check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    pinned = f"{svc_images['v2'].reference}@{svc_images['v2'].digest}"
    # the generator re-rendered the unit from /var/lib/compute-units/state.json at daemon-reload
    assert f"X-ComputeUnits-Image={pinned}" in node.read_file("/run/systemd/generator/nova-libvirt.service")
    state = json.loads(node.read_file("/var/lib/compute-units/state.json"))
    assert state["services"]["nova-libvirt"]["current"] == pinned
    node.systemctl("daemon-reload")
    assert f"X-ComputeUnits-Image={pinned}" in node.read_file("/run/systemd/generator/nova-libvirt.service")
