"""Unit tests run no host commands: any attempt to run podman/systemctl/... through the runner fails."""

from __future__ import annotations

import os
from collections.abc import Sequence

import pytest
from hypothesis import HealthCheck, settings

from compute_units import facts, runner
from compute_units.secretplan import ImageConfig

# the fuzzed tests (test_fuzz.py, test_state_files.py): `make test` runs a short round, `make fuzz`
# a long campaign of 20,000 examples per test
settings.register_profile("default", max_examples=200, deadline=1000)
settings.register_profile(
    "fuzz", max_examples=20_000, deadline=1000, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))


@pytest.fixture(autouse=True)
def no_host_commands(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(argv: Sequence[str], **kwargs: object) -> runner.Result:
        raise AssertionError(f"unit test tried to run {list(argv)}")

    monkeypatch.setattr(runner, "run", refuse)


# the config conftest's fake podman reports for every image (a kolla image's)
KOLLA = ImageConfig(("dumb-init", "--single-child", "--"), ("kolla_start",))


class HostFacts:
    """What the fake podman of unit tests says: its version and the config of every image."""

    def __init__(self) -> None:
        self.version = "podman version 4.3.1"
        self.config: tuple[list[str], list[str]] | None = (list(KOLLA.entrypoint), list(KOLLA.cmd))
        self.asked: list[str] = []

    def probe(self) -> facts.Probe:
        def version() -> str:
            self.asked.append("--version")
            return self.version

        def image_configs(references: Sequence[str]) -> dict[str, tuple[list[str], list[str]]]:
            self.asked.append(" ".join(references))
            return {r: self.config for r in references} if self.config else {}

        return facts.Probe(version, image_configs)


@pytest.fixture(autouse=True)
def host_facts(monkeypatch: pytest.MonkeyPatch) -> HostFacts:
    """Secrets need podman's version and image configs: a fake podman 4.3.1 gives them, and the
    facts record is never written (tests that check it restore `Recorder.save`)."""
    fake = HostFacts()
    monkeypatch.setattr(facts, "real_probe", fake.probe)
    monkeypatch.setattr(facts, "binary_key", lambda path=facts.PODMAN: [1, 2, 3])
    monkeypatch.setattr(facts.Recorder, "save", lambda self: None)
    return fake
