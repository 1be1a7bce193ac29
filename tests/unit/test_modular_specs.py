"""The specs test_upgrade_modular deploys keep the shapes of examples/compute-node/modular."""

from __future__ import annotations

from pathlib import Path

import pytest

from compute_units import spec
from compute_units.model import Service
from compute_units_dev.specs import VIRTQEMUD_SOCKET_UNITS, virtlogd_spec, virtqemud_spec

MODULAR = Path(__file__).parents[2] / "examples" / "compute-node" / "modular"
IMAGE = "127.0.0.1:5000/cu-test/libvirt-modular:v1"


def parse(text: str, name: str) -> Service:
    parsed, problems = spec.parse_text(text, Path(f"/specs/{name}.yaml"), check_files=False)
    assert parsed is not None, problems
    assert problems == []
    return parsed


@pytest.mark.parametrize(
    ("name", "text"),
    [("nova-virtqemud", virtqemud_spec(IMAGE)), ("nova-virtlogd", virtlogd_spec(IMAGE))],
)
def test_the_test_specs_have_the_examples_shape(name: str, text: str) -> None:
    test = parse(text, name)
    example = parse((MODULAR / f"{name}.yaml").read_text(), name)
    assert test.sockets == example.sockets
    assert test.host_namespaces == example.host_namespaces
    assert (test.keeps_vms, test.requires, test.disruptive) == (
        example.keeps_vms,
        example.requires,
        example.disruptive,
    )
    assert test.devices == example.devices
    assert test.health is not None and example.health is not None
    assert test.health.command == example.health.command
    # the same directories reach the container (the test node has no /lib/modules, its own /dev)
    assert {m.target for m in test.mounts} <= {m.target for m in example.mounts}


def test_virtqemud_socket_units() -> None:
    assert parse(virtqemud_spec(IMAGE), "nova-virtqemud").socket_units == VIRTQEMUD_SOCKET_UNITS
