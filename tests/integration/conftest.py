"""Session fixtures: one sandbox systemd node, a registry in it, and the test images."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from tests.harness.images import Builder, Registry
from tests.harness.node import HostSnapshot, Node, boot


@dataclass(frozen=True)
class Image:
    reference: str  # 127.0.0.1:PORT/cu-test/svc:v1
    digest: str  # what the registry serves for it


@pytest.fixture(scope="session")
def host_before() -> HostSnapshot:
    return HostSnapshot.take()


@pytest.fixture(scope="session")
def node(host_before: HostSnapshot) -> Iterator[Node]:
    n = boot("it")
    yield n
    n.shutdown()


@pytest.fixture(scope="session")
def builder(node: Node) -> Builder:
    return Builder(node)


@pytest.fixture(scope="session")
def registry(node: Node) -> Registry:
    return Registry.start(node)


SVC_VARIANTS = {
    "v1": {"VERSION": "1"},
    "v2": {"VERSION": "2"},
    "v3": {"VERSION": "3", "HEALTHY": "no"},
    "bad": {"VERSION": "bad", "EXIT_AT_START": "yes"},
}


@pytest.fixture(scope="session")
def svc_images(builder: Builder, registry: Registry) -> dict[str, Image]:
    """The service stand-in, pushed as cu-test/svc:v1, v2, v3 (unhealthy) and bad (exits 1)."""
    base = builder.busybox_base()
    images = {}
    for tag, args in SVC_VARIANTS.items():
        local = builder.build("svc", base, args)
        digest = registry.push(local, "cu-test/svc", tag)
        images[tag] = Image(registry.reference("cu-test/svc", tag), digest)
    return images


@pytest.fixture(scope="session")
def registry_address(registry: Registry) -> str:
    return registry.address
