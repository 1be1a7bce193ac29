"""Disruptive services: the spec key, the unit line the lean restart path reads, the restart set
(what restarts with a named service), `apply`'s check before it writes, and `list`/`doctor`."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pytest
from typer.testing import CliRunner

from compute_units import disruptive, doctor, install, lean, render, spec
from compute_units.apply import refuse_disruptive_changes
from compute_units.cli import app
from compute_units.model import ServiceSet
from tests.unit.fakes import unit_state

IMG = "image: 127.0.0.1:5000/cu/ovs:1\n"
REASON = "its restart cuts every VM's network (100% of them)"


def node(tmp_path: Path, reason: str = f'"{REASON}"') -> Path:
    specs = tmp_path / "specs"
    specs.mkdir()
    (specs / "ovsdb-server.yaml").write_text(IMG)
    (specs / "ovs-vswitchd.yaml").write_text(IMG + f"requires: [ovsdb-server]\ndisruptive: {reason}\n")
    (specs / "ovn-controller.yaml").write_text(IMG + "requires: [ovs-vswitchd]\n")
    return specs


def load(specs: Path) -> ServiceSet:
    services, _ = spec.load(spec.discover([specs]), root=specs)
    return services


@pytest.mark.parametrize(
    ("written", "model"),
    [("true", "its spec marks it disruptive"), ("false", None), ('"cuts the network"', "cuts the network")],
)
def test_the_key_takes_true_false_or_a_reason(tmp_path: Path, written: str, model: str | None) -> None:
    parsed, problems = spec.parse_text(IMG + f"disruptive: {written}\n", tmp_path / "svc.yaml")
    assert parsed is not None and problems == []
    assert parsed.disruptive == model


def test_an_unset_key_keeps_the_spec_hash(tmp_path: Path) -> None:
    plain, _ = spec.parse_text(IMG, tmp_path / "svc.yaml")
    unset, _ = spec.parse_text(IMG + "disruptive: false\n", tmp_path / "svc.yaml")
    marked, _ = spec.parse_text(IMG + "disruptive: true\n", tmp_path / "svc.yaml")
    assert plain is not None and unset is not None and marked is not None
    assert plain.spec_hash == unset.spec_hash != marked.spec_hash


def test_the_unit_carries_the_reason_and_the_lean_path_reads_it_back(tmp_path: Path) -> None:
    services = load(node(tmp_path))
    units = render.render_all(services, render.RenderOptions())
    vswitchd = units["ovs-vswitchd.service"]
    assert "\nX-ComputeUnits-Disruptive=its restart cuts every VM's network (100%% of them)\n" in vswitchd
    assert disruptive.reason_in_unit(vswitchd) == REASON
    assert disruptive.reason_in_unit(units["ovsdb-server.service"]) is None
    assert "X-ComputeUnits-Disruptive" not in units["ovsdb-server.service"]


def test_the_restart_set_names_what_restarts_with_a_service(tmp_path: Path) -> None:
    services = load(node(tmp_path))
    assert disruptive.in_restart(services, ["ovn-controller"]) == []
    assert disruptive.in_restart(services, ["ovsdb-server"]) == [
        disruptive.Hit("ovs-vswitchd", REASON, "ovsdb-server")
    ]
    assert disruptive.in_restart(services, ["ovsdb-server", "ovs-vswitchd"]) == [
        disruptive.Hit("ovs-vswitchd", REASON)
    ]
    assert (
        disruptive.in_restart(services, ["ovsdb-server"], lambda unit: unit != "ovs-vswitchd.service") == []
    )


def test_check_words_the_refusal_and_lets_an_allowed_one_pass() -> None:
    hits = [disruptive.Hit("ovs-vswitchd", "cuts the network"), disruptive.Hit("b", "r", "a")]
    disruptive.check("restart", hits, allowed=True)
    disruptive.check("restart", [], allowed=False)
    with pytest.raises(disruptive.DisruptiveRefused) as refused:
        disruptive.check("restart", hits, allowed=False)
    assert refused.value.exit_code == 2
    assert refused.value.message == (
        "refusing to restart: ovs-vswitchd is disruptive (cuts the network); b is disruptive (r) and "
        "restarts with a; nothing was changed"
    )
    assert refused.value.hint == "pass --allow-disruptive to restart anyway (the guests will notice)"


def test_only_restart_takes_allow_disruptive_on_the_lean_path() -> None:
    args = lean.parse(["restart", "ovs-vswitchd", "--allow-disruptive"])
    assert args is not None and args.allow_disruptive is True
    args = lean.parse(["restart", "ovs-vswitchd"])
    assert args is not None and args.allow_disruptive is False
    assert lean.parse(["start", "ovs-vswitchd", "--allow-disruptive"]) is None  # typer explains


@dataclass
class StatesOnly:
    """What `apply`'s check asks systemd: unit states."""

    active: set[str]

    def state(self, unit: str) -> object:
        return unit_state(unit, "active" if unit in self.active else "inactive")


def test_apply_refuses_a_change_that_restarts_a_running_disruptive_service(tmp_path: Path) -> None:
    services = load(node(tmp_path))
    change = [install.Change("ovsdb-server.service", "change", "old", "new")]
    running = StatesOnly({"ovsdb-server.service", "ovs-vswitchd.service"})
    with pytest.raises(disruptive.DisruptiveRefused) as refused:
        refuse_disruptive_changes(running, services, change, allowed=False)  # type: ignore[arg-type]
    assert refused.value.message == (
        f"refusing to apply: ovs-vswitchd is disruptive ({REASON}) and restarts with ovsdb-server; "
        "nothing was changed"
    )
    refuse_disruptive_changes(running, services, change, allowed=True)  # type: ignore[arg-type]
    stopped = StatesOnly({"ovs-vswitchd.service"})  # ovsdb-server is not running: apply only starts it
    refuse_disruptive_changes(stopped, services, change, allowed=False)  # type: ignore[arg-type]
    added = [install.Change("ovs-vswitchd.service", "add", None, "new")]
    refuse_disruptive_changes(running, services, added, allowed=False)  # type: ignore[arg-type]


def test_list_and_doctor_show_it(tmp_path: Path) -> None:
    specs = node(tmp_path)
    result = CliRunner().invoke(app, ["list", "--spec", str(specs), "--json"])
    assert result.exit_code == 0, result.stderr
    assert {r["name"]: r["disruptive"] for r in json.loads(result.stdout)} == {
        "ovsdb-server": None,
        "ovs-vswitchd": REASON,
        "ovn-controller": None,
    }
    table = CliRunner().invoke(app, ["list", "--spec", str(specs)]).stdout.splitlines()
    assert table[0].split() == ["service", "unit", "image", "requires", "disruptive", "spec"]
    assert [line.split()[4] for line in table[1:]] == ["-", "yes", "-"]
    assert doctor.check_disruptive(load(specs)) == [
        doctor.Finding(
            "disruptive ovs-vswitchd",
            "ok",
            f"{REASON}: restart, upgrade and apply refuse to restart it without --allow-disruptive",
        )
    ]
