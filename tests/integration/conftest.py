"""Integration tests: the known gaps on trixie, and the host check for every test here (the
fixtures themselves are in tests/harness/fixtures.py)."""

from __future__ import annotations

import pytest

from compute_units_dev.hostcheck import HostSnapshot

# Known gaps on trixie (systemd 257, podman 5.4, cgroup2 without controllers) that need product
# changes: test name -> reason. Marked xfail(strict=True) on trixie only, so an unexpected pass
# fails the run and the entry must be removed.
STOP_SIGNAL = (
    "podman 5 reports Config.StopSignal as a name ('SIGTERM'), podman 4.3 as a number: "
    "compute_units/podman.py inspect_container does int() on it (ValueError)"
)
TRIXIE_XFAIL: dict[str, str] = {
    name: STOP_SIGNAL
    for name in (
        "test_upgrade_pins_through_state_under_var",
        "test_status_reports_containers_digests_and_health",
        "test_a_broken_unrelated_spec_does_not_block_a_restart",
        "test_at_a_terminal_the_pull_shows_podmans_progress",
        "test_kill_9_at_every_step_then_rerun_converges",
        "test_a_second_upgrade_waits_for_the_lock_or_fails",
        "test_rollback_and_history",
        "test_unhealthy_image_rolls_back_automatically",
        "test_generate_keeps_the_pinned_digest",
        "test_upgrade_v1_to_v2_keeps_the_guest_running",
        "test_unhealthy_v3_is_rolled_back_and_the_guest_survives",
        "test_preflight_refuses_without_machined_and_restarts_nothing",
        "test_preflight_refuses_unit_settings_that_would_kill_children",
    )
} | {
    "test_doctor_reports_each_check": (
        "the test expects doctor's 'hybrid layout' (Debian 12 hosts); a trixie node is cgroup2 only "
        "and doctor rightly says 'unified layout': the expectation must follow the node's layout"
    ),
    "test_guest_runs_in_its_own_machine_scope": (
        "libvirt 11 in the container leaves qemu in the unit's cgroup "
        "(0::/system.slice/nova-libvirt.service/libpod-payload-…), not machine.slice/machine-qemu…: "
        "on cgroup2 the guest would die with the unit; needs investigation (libvirt/machined on v2)"
    ),
}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        callspec = getattr(item, "callspec", None)
        if callspec is None or callspec.params.get("release") != "trixie":
            continue
        reason = TRIXIE_XFAIL.get(getattr(item, "originalname", item.name))
        if reason:
            item.add_marker(pytest.mark.xfail(strict=True, reason=f"trixie: {reason}"))


@pytest.fixture(autouse=True)
def _host_checked(host_before: HostSnapshot) -> None:
    """Every test here may boot a node: the session's host snapshot is taken before the first."""
