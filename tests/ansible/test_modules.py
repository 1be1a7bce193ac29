"""The collection's modules run as Ansible runs them, against the fake `compute-units`."""

from __future__ import annotations

import importlib
import json
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.ansible.conftest import NEW, OLD, FakeHost, make_fake_host

OLD_REF = f"{OLD}@sha256:{'1' * 64}"


def new_ref() -> str:
    fake_cli = importlib.import_module("tests.ansible.fake_cli")
    ref: str = fake_cli.resolve(NEW)
    return ref


def canned(host: FakeHost, command: str, rc: int, stdout: object = None, stderr: str = "") -> None:
    text = "" if stdout is None else stdout if isinstance(stdout, str) else json.dumps(stdout)
    host.update(override={command: {"rc": rc, "stdout": text, "stderr": stderr}})


# ---------------------------------------------------------------- upgrade
def test_upgrade_changes_digest_and_reports_steps(fake_host: FakeHost, run_module: Any) -> None:
    run = run_module("upgrade", {"services": ["nova-libvirt"], "executable": str(fake_host.cli)})
    assert run.rc == 0
    assert run.result["changed"] is True
    assert run.result["upgraded"] == ["nova-libvirt"]
    report = run.result["services"][0]
    assert (report["result"], report["from"], report["to"]) == ("upgraded", OLD_REF, new_ref())
    assert [s["name"] for s in report["steps"]][:2] == ["pull", "preflight"]
    assert report["vm_after"]["guests"] == {"tiny": "running"}
    assert report["guests"] == {"running_before": 1, "running_after": 1, "kept": 1}
    assert fake_host.calls() == [["upgrade", "nova-libvirt", "--json"]]


def test_upgrade_again_is_ok_not_changed(fake_host: FakeHost, run_module: Any) -> None:
    run_module("upgrade", {"all": True, "executable": str(fake_host.cli)})
    run = run_module("upgrade", {"all": True, "executable": str(fake_host.cli)})
    assert (run.rc, run.result["changed"], run.result["upgraded"]) == (0, False, [])
    assert run.result["services"][0]["result"] == "unchanged"


def test_check_mode_runs_dry_run_and_restarts_nothing(fake_host: FakeHost, run_module: Any) -> None:
    run = run_module("upgrade", {"services": ["nova-libvirt"], "executable": str(fake_host.cli)}, check=True)
    assert (run.rc, run.result["changed"]) == (0, True)
    assert run.result["services"][0]["result"] == "would-upgrade"
    assert fake_host.calls() == [["upgrade", "nova-libvirt", "--dry-run", "--json"]]
    assert fake_host.state()["services"]["nova-libvirt"]["current"] == OLD_REF


def test_rolled_back_fails_with_the_cli_message(fake_host: FakeHost, run_module: Any) -> None:
    fake_host.update(
        upgrade_fails={"nova-libvirt": {"failed_step": "health", "reason": "unit inactive after start"}}
    )
    run = run_module("upgrade", {"services": ["nova-libvirt"], "executable": str(fake_host.cli)})
    assert run.result["failed"] is True
    assert run.result["rc"] == 5
    assert run.result["msg"] == (
        f"compute-units exited 5 (upgrade failed and was rolled back): nova-libvirt: upgrade to {new_ref()} "
        f"failed at health: unit inactive after start; rolled back to {OLD_REF}"
    )
    assert run.result["changed"] is False
    report = run.result["services"][0]
    assert (report["result"], report["failed_step"]) == ("rolled-back", "health")
    assert report["steps"][-1]["name"] == "rollback"


def test_refused_report_fails_even_without_an_error_text(fake_host: FakeHost, run_module: Any) -> None:
    report = {
        "service": "nova-libvirt",
        "result": "refused",
        "failed_step": "preflight",
        "reason": "machined is not active",
    }
    canned(fake_host, "upgrade", 3, {"ok": False, "error": None, "hint": None, "services": [report]})
    run = run_module("upgrade", {"services": ["nova-libvirt"], "executable": str(fake_host.cli)})
    assert run.result["failed"] is True
    assert run.result["msg"] == "nova-libvirt refused at preflight: machined is not active"


def test_same_digest_under_a_new_tag_is_not_a_change(fake_host: FakeHost, run_module: Any) -> None:
    report = {"service": "nova-libvirt", "result": "upgraded", "from": "r:1@sha256:aa", "to": "r:2@sha256:aa"}
    canned(fake_host, "upgrade", 0, {"ok": True, "error": None, "hint": None, "services": [report]})
    run = run_module("upgrade", {"services": ["nova-libvirt"], "executable": str(fake_host.cli)})
    assert (run.rc, run.result["changed"]) == (0, False)


def test_unknown_exit_code_fails_and_keeps_the_json(fake_host: FakeHost, run_module: Any) -> None:
    canned(
        fake_host,
        "upgrade",
        9,
        {"ok": False, "error": "something new", "hint": "read the docs", "services": []},
    )
    run = run_module("upgrade", {"services": ["nova-libvirt"], "executable": str(fake_host.cli)})
    assert run.result["failed"] is True
    assert (
        run.result["msg"]
        == "compute-units exited 9 (unknown exit code 9): something new (hint: read the docs)"
    )
    assert (run.result["error"], run.result["hint"]) == ("something new", "read the docs")


def test_ok_exit_with_ok_false_is_a_failure(fake_host: FakeHost, run_module: Any) -> None:
    canned(fake_host, "upgrade", 0, {"ok": False, "error": "odd", "hint": None, "services": []})
    run = run_module("upgrade", {"services": ["nova-libvirt"], "executable": str(fake_host.cli)})
    assert run.result["msg"] == "compute-units exited 0 (ok): odd"


def test_no_json_names_the_exit_code_and_stderr(fake_host: FakeHost, run_module: Any) -> None:
    canned(fake_host, "upgrade", 2, None, "Usage: compute-units upgrade\nError: No such option: --dry-run\n")
    run = run_module("upgrade", {"all": True, "executable": str(fake_host.cli)}, check=True)
    assert run.result["msg"] == (
        "compute-units exited 2 (invalid spec or command line): Error: No such option: --dry-run; it printed no JSON"
    )


def test_screen_output_is_refused(fake_host: FakeHost, run_module: Any) -> None:
    canned(fake_host, "upgrade", 0, "nova-libvirt: upgraded\n")
    run = run_module("upgrade", {"all": True, "executable": str(fake_host.cli)})
    assert run.result["msg"] == (
        "compute-units printed something that is not JSON (Expecting value: line 1 column 1 (char 0)); "
        "first line: nova-libvirt: upgraded"
    )


def test_missing_executable(tmp_path: Path, run_module: Any) -> None:
    run = run_module("upgrade", {"all": True, "executable": str(tmp_path / "nowhere")})
    assert run.result["msg"] == f"{tmp_path / 'nowhere'} is not an executable file"


def test_executable_not_on_path(run_module: Any) -> None:
    run = run_module("status", {"executable": "compute-units-not-installed"})
    assert run.result["msg"].startswith("compute-units-not-installed not found on PATH (")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ({"all": True, "image": NEW}, "image applies to exactly one service"),
        ({}, "name the services to upgrade, or set all: true"),
        ({"all": True, "services": ["a"]}, "parameters are mutually exclusive: services|all"),
    ],
)
def test_upgrade_bad_arguments(
    fake_host: FakeHost, run_module: Any, args: dict[str, Any], message: str
) -> None:
    run = run_module("upgrade", {**args, "executable": str(fake_host.cli)})
    assert (run.result["failed"], run.result["msg"]) == (True, message)
    assert fake_host.calls() == []


def test_upgrade_passes_image_wait_and_spec(fake_host: FakeHost, run_module: Any) -> None:
    args = {"services": ["nova-libvirt"], "image": NEW, "wait": 5, "spec": ["/srv/specs"]}
    run_module("upgrade", {**args, "executable": str(fake_host.cli)})
    assert fake_host.calls() == [
        ["upgrade", "nova-libvirt", "--image", NEW, "--wait", "5.0", "--spec", "/srv/specs", "--json"]
    ]


# ---------------------------------------------------------------- pull
def test_pull_changed_then_ok(fake_host: FakeHost, run_module: Any) -> None:
    first = run_module("pull", {"all": True, "executable": str(fake_host.cli)})
    second = run_module("pull", {"all": True, "executable": str(fake_host.cli)})
    assert (first.result["changed"], first.result["pulled"]) == (True, ["nova-libvirt"])
    assert first.result["services"][0]["reference"] == new_ref()
    assert (second.result["changed"], second.result["pulled"]) == (False, [])
    assert fake_host.calls() == [["pull", "--all", "--json"]] * 2


def test_pull_in_check_mode_runs_nothing(fake_host: FakeHost, run_module: Any) -> None:
    run = run_module("pull", {"all": True, "executable": str(fake_host.cli)}, check=True)
    assert (run.rc, run.result["changed"], run.result["msg"]) == (0, False, "check mode: nothing pulled")
    assert fake_host.calls() == []


def test_pull_failure(fake_host: FakeHost, run_module: Any) -> None:
    canned(
        fake_host,
        "pull",
        1,
        {"ok": False, "error": "pull of x failed: manifest unknown", "hint": None, "services": []},
    )
    run = run_module("pull", {"services": ["nova-libvirt"], "executable": str(fake_host.cli)})
    assert (
        run.result["msg"]
        == "compute-units exited 1 (an operation failed): pull of x failed: manifest unknown"
    )


# ---------------------------------------------------------------- status
def test_status_sets_facts_and_keeps_new_fields(fake_host: FakeHost, run_module: Any) -> None:
    run = run_module("status", {"executable": str(fake_host.cli)})
    row = run.result["ansible_facts"]["compute_units"]["services"]["nova-libvirt"]
    assert (run.result["changed"], row["image"], row["active_state"]) == (False, OLD_REF, "active")
    assert "upgrade_in_progress" in row
    assert fake_host.calls() == [["status", "--json"]]


# ---------------------------------------------------------------- doctor
FAIL = {"check": "module ebtables", "status": "fail", "message": "not loaded", "fix": "modprobe ebtables"}
OK = {"check": "module ebtables", "status": "ok", "message": "loaded now", "fix": "", "fixed": True}
WARN = {"check": "cgroups", "status": "warn", "message": "legacy layout", "fix": ""}


def test_doctor_ok_with_warnings(fake_host: FakeHost, run_module: Any) -> None:
    fake_host.update(doctor=[OK, WARN])
    run = run_module("doctor", {"executable": str(fake_host.cli)})
    assert (run.rc, run.result["changed"], run.result["warnings_checks"]) == (0, False, ["cgroups"])


def test_doctor_failure_names_check_and_fix(fake_host: FakeHost, run_module: Any) -> None:
    fake_host.update(doctor=[FAIL, WARN])
    run = run_module("doctor", {"executable": str(fake_host.cli)})
    assert run.result["msg"] == "host not ready: module ebtables: not loaded (fix: modprobe ebtables)"
    assert run.result["failed_checks"] == ["module ebtables"]


def test_doctor_fix_runs_only_when_needed_and_reports_fixed(fake_host: FakeHost, run_module: Any) -> None:
    fake_host.update(doctor=[FAIL], doctor_after_fix=[OK])
    run = run_module("doctor", {"fix": True, "executable": str(fake_host.cli)})
    assert (run.rc, run.result["changed"], run.result["fixed"]) == (0, True, ["module ebtables"])
    assert fake_host.calls() == [["doctor", "--json"], ["doctor", "--fix", "--json"]]


def test_doctor_fix_reports_what_the_cli_says_it_fixed(fake_host: FakeHost, run_module: Any) -> None:
    rebuilt = {
        "check": "upgrade state",
        "status": "ok",
        "message": "rebuilt from what runs",
        "fix": "",
        "fixed": True,
    }
    fake_host.update(doctor=[FAIL], doctor_after_fix=[OK, rebuilt])
    run = run_module("doctor", {"fix": True, "executable": str(fake_host.cli)})
    assert run.result["fixed"] == ["module ebtables", "upgrade state"]  # the state was no failed check
    fake_host.update(doctor_without_fixed=True)
    run = run_module("doctor", {"fix": True, "executable": str(fake_host.cli)})
    assert run.result["fixed"] == ["module ebtables"]  # an older CLI: failed before, passes now


def test_doctor_fix_in_check_mode_only_checks(fake_host: FakeHost, run_module: Any) -> None:
    fake_host.update(doctor=[FAIL], doctor_after_fix=[OK])
    run = run_module("doctor", {"fix": True, "executable": str(fake_host.cli)}, check=True)
    assert run.result["failed"] is True
    assert fake_host.calls() == [["doctor", "--json"]]


# ---------------------------------------------------------------- generate
DIFF = "--- /etc/systemd/system/a.service\n+++ /etc/systemd/system/a.service\n@@ -1 +1 @@\n-old\n+new\n"


@pytest.fixture
def units_host(tmp_path: Path) -> FakeHost:
    units = {"a.service": {"action": "change", "diff": DIFF}, "b.service": {"action": "unchanged"}}
    return make_fake_host(tmp_path / "gen", units=units)


def test_generate_check_mode_with_diff(units_host: FakeHost, run_module: Any) -> None:
    run = run_module("generate", {"executable": str(units_host.cli)}, check=True, diff=True)
    assert (run.rc, run.result["changed"], run.result["diff"]) == (0, True, [{"prepared": DIFF}])
    assert units_host.calls() == [["generate", "--dry-run", "--json"]]
    assert units_host.state()["units"]["a.service"]["action"] == "change"


def test_generate_writes_then_is_unchanged(units_host: FakeHost, run_module: Any) -> None:
    first = run_module(
        "generate", {"executable": str(units_host.cli), "enable": False, "output_dir": "/tmp/u"}
    )
    second = run_module("generate", {"executable": str(units_host.cli)})
    assert (first.result["changed"], "diff" in first.result, first.result["directory"]) == (
        True,
        False,
        "/tmp/u",
    )
    assert second.result["changed"] is False
    assert units_host.calls()[0] == ["generate", "--output-dir", "/tmp/u", "--no-enable", "--json"]


# ---------------------------------------------------------------- module_utils
@pytest.fixture
def cli_utils(collections: Path) -> Any:
    sys.path.insert(0, str(collections))
    try:
        yield importlib.import_module("ansible_collections.compute_units.fleet.plugins.module_utils.cli")
    finally:
        sys.path.remove(str(collections))


def test_digest_of(cli_utils: Any) -> None:
    assert cli_utils.digest_of("r:1@sha256:ab") == "sha256:ab"
    assert cli_utils.digest_of("r:1") is None
    assert cli_utils.digest_of(None) is None


@pytest.mark.parametrize(
    ("rc", "data", "stderr", "message"),
    [
        (
            4,
            {"error": "upgrade needs root", "hint": "run it with sudo"},
            "",
            "compute-units exited 4 (needs root): upgrade needs root (hint: run it with sudo)",
        ),
        (
            3,
            {"error": None, "hint": "start machined"},
            "",
            "compute-units exited 3 (host not ready or preflight refused): hint: start machined",
        ),
        (1, None, "a\nlast line\n", "compute-units exited 1 (an operation failed): last line"),
        (42, [], "", "compute-units exited 42 (unknown exit code 42)"),
    ],
)
def test_cli_result_message(cli_utils: Any, rc: int, data: object, stderr: str, message: str) -> None:
    assert cli_utils.CliResult(["x"], rc, data, "", stderr).message() == message
