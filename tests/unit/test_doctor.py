"""`doctor` with fakes of every effect (tests/unit/fakes.py): each check's ok, warn and fail finding,
`--fix`, an unreachable systemd, and the rebuild of a broken state.json. The sandbox-node tests
(test_doctor_reports_each_check, test_doctor_fix_...) prove the real bundle."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from compute_units import spec
from compute_units.doctor import Finding, Unreachable, cgroup_layout, repair_state, run_checks
from compute_units.errors import CommandError
from compute_units.model import ServiceSet
from compute_units.runner import Result
from compute_units.state import State
from compute_units.systemd import HostNotReady
from tests.unit.fakes import FakeStore, FakeWorld, unit_state

REG = "127.0.0.1:5000/cu/svc"
D1, D2 = (f"sha256:{c * 64}" for c in "12")
MODULES_LOAD = "/etc/modules-load.d/compute-units.conf"

SPEC = f"""
image: {REG}:v1
mounts:
  - /var/lib/svc:/var/lib/svc
  - {{source: /var/lib/made, target: /made, create: true}}
preflight:
  kernel_modules: [br_netfilter]
  host_units_inactive: [openvswitch.service]
  paths: [/dev/kvm, /dev/net/tun]
"""


@pytest.fixture
def services() -> ServiceSet:
    parsed, problems = spec.parse_text(SPEC, Path("/specs/svc.yaml"))
    assert parsed is not None, problems
    return ServiceSet((parsed,))


@pytest.fixture
def world() -> FakeWorld:
    w = FakeWorld(registry={f"{REG}:v1": D1}, images={D1})
    w.running["svc.service"] = f"{REG}:v1@{D1}"
    return w


def findings(world: FakeWorld, services: ServiceSet, *, fix: bool = False) -> dict[str, Finding]:
    found = run_checks(world.effects(FakeStore(world)), services, fix=fix)
    by_check = {f.check: f for f in found}
    assert len(by_check) == len(found), "two findings of one check"
    return by_check


def test_a_ready_host_has_every_check_ok(world: FakeWorld, services: ServiceSet) -> None:
    found = findings(world, services)
    assert [(f.check, f.status, f.message) for f in found.values()] == [
        ("module br_netfilter", "ok", "loaded"),
        ("module ebtables", "ok", "loaded"),
        ("host libvirtd.service", "ok", "not-found, inactive"),
        ("host libvirtd.socket", "ok", "not-found, inactive"),
        ("host openvswitch.service", "ok", "loaded, failed"),
        ("systemd-machined", "ok", "active"),
        ("/dev/kvm", "ok", "character device, opens read-write"),
        ("cgroups", "ok", "hybrid layout"),
        ("path /dev/net/tun", "ok", "exists"),
        ("podman", "ok", "4.3.1"),
        ("conmon", "ok", "conmon version 2.1.6"),
        ("crun", "ok", "crun version 1.8.1"),
        (
            "container storage",
            "ok",
            "10240 MiB free in /var/lib/containers/storage; the largest image here is 0 MiB",
        ),
        ("registry 127.0.0.1:5000", "ok", f"serves the manifest of {REG}:v1"),
        ("upgrade state", "ok", "/var/lib/compute-units/state.json: well-formed"),
    ]


def test_a_missing_module_fails_with_its_fix(world: FakeWorld, services: ServiceSet) -> None:
    world.missing_modules = {"ebtables"}
    assert findings(world, services)["module ebtables"] == Finding(
        "module ebtables",
        "fail",
        "not loaded: nova-network's bridges need it (the seed's host requirement)",
        f"modprobe ebtables && echo ebtables >> {MODULES_LOAD} (or doctor --fix)",
    )


def test_fix_loads_and_persists_a_module(world: FakeWorld, services: ServiceSet) -> None:
    world.missing_modules = {"ebtables"}
    assert findings(world, services, fix=True)["module ebtables"] == Finding(
        "module ebtables", "ok", f"loaded now and persisted in {MODULES_LOAD}", fixed=True
    )
    assert "modprobe ebtables" in world.log


def test_fix_that_cannot_load_a_module_says_why(world: FakeWorld, services: ServiceSet) -> None:
    world.missing_modules = {"ebtables"}
    world.module_error = CommandError(
        ["modprobe", "ebtables"], 1, "", "modprobe: FATAL: Module ebtables not found"
    )
    assert findings(world, services, fix=True)["module ebtables"] == Finding(
        "module ebtables",
        "fail",
        "cannot load: modprobe failed: modprobe: FATAL: Module ebtables not found",
        "modprobe ebtables",
    )


def test_a_running_host_libvirt_fails_and_fix_stops_and_masks_it(
    world: FakeWorld, services: ServiceSet
) -> None:
    world.states["libvirtd.service"] = unit_state("libvirtd.service")
    assert findings(world, services)["host libvirtd.service"] == Finding(
        "host libvirtd.service",
        "fail",
        "active on the host: the host's libvirt would fight the containerised one",
        "systemctl disable --now libvirtd.service && systemctl mask libvirtd.service (or doctor --fix)",
    )
    fixed = findings(world, services, fix=True)["host libvirtd.service"]
    assert fixed == Finding("host libvirtd.service", "ok", "stopped and masked now", fixed=True)
    assert [e for e in world.log if "libvirtd" in e] == ["stop libvirtd.service", "mask libvirtd.service"]


def test_fix_that_cannot_stop_host_libvirt_says_why(world: FakeWorld, services: ServiceSet) -> None:
    world.states["libvirtd.socket"] = unit_state("libvirtd.socket")
    world.job_error = HostNotReady("job for libvirtd.socket timed out")
    found = findings(world, services, fix=True)
    assert found["host libvirtd.socket"] == Finding(
        "host libvirtd.socket",
        "fail",
        "--fix failed: job for libvirtd.socket timed out",
        "systemctl mask libvirtd.socket",
    )


def test_machined_inactive_fails_and_fix_starts_it(world: FakeWorld, services: ServiceSet) -> None:
    world.states["systemd-machined.service"] = unit_state("systemd-machined.service", "inactive")
    assert findings(world, services)["systemd-machined"] == Finding(
        "systemd-machined",
        "fail",
        "loaded/inactive: without it libvirt cannot give guests their own scopes and restarting "
        "nova-libvirt kills every VM",
        "apt/dnf install systemd-container; systemctl unmask --now systemd-machined",
    )
    assert findings(world, services, fix=True)["systemd-machined"] == Finding(
        "systemd-machined", "ok", "started now", fixed=True
    )
    assert "start systemd-machined.service" in world.log


def test_an_unreachable_systemd_is_one_finding_and_the_other_checks_run(
    world: FakeWorld, services: ServiceSet
) -> None:
    fx = world.effects(FakeStore(world))
    fx.systemd = Unreachable(
        HostNotReady(
            "cannot reach systemd over D-Bus (No such file or directory)", hint="is systemd PID 1 here?"
        )
    )
    found = {f.check: f for f in run_checks(fx, services, fix=False)}
    assert found["systemd"] == Finding(
        "systemd",
        "fail",
        "cannot reach systemd over D-Bus (No such file or directory)",
        "is systemd PID 1 here?",
    )
    assert not any(c.startswith(("host ", "systemd-machined", "service ")) for c in found)
    assert found["upgrade state"].status == "ok"


@pytest.mark.parametrize(
    ("mode", "error", "expected"),
    [
        (
            None,
            None,
            Finding(
                "/dev/kvm",
                "fail",
                "missing: no hardware virtualisation",
                "enable VT-x/AMD-V; load kvm_intel/kvm_amd",
            ),
        ),
        (
            stat.S_IFREG | 0o644,
            None,
            Finding(
                "/dev/kvm",
                "fail",
                "not a character device: qemu cannot use it",
                "rm /dev/kvm; modprobe kvm_intel (or kvm_amd)",
            ),
        ),
        (
            stat.S_IFCHR | 0o600,
            PermissionError(13, "Permission denied"),
            Finding(
                "/dev/kvm",
                "fail",
                "cannot open read-write: Permission denied",
                "check permissions and the kvm module",
            ),
        ),
    ],
)
def test_kvm_device_problems(
    world: FakeWorld, services: ServiceSet, mode: int | None, error: OSError | None, expected: Finding
) -> None:
    world.devices["/dev/kvm"], world.open_error = mode, error
    assert findings(world, services)["/dev/kvm"] == expected


@pytest.mark.parametrize(
    ("types", "layout"),
    [(("cgroup2",), "unified"), (("cgroup", "cgroup2"), "hybrid"), (("cgroup",), "legacy"), ((), "none")],
)
def test_cgroup_layout(types: tuple[str, ...], layout: str) -> None:
    mountinfo = "".join(f"3{i} 1 0:2{i} / /sys/fs/cgroup/x{i} rw - {t} {t} rw\n" for i, t in enumerate(types))
    assert cgroup_layout(mountinfo) == layout


def test_a_legacy_cgroup_layout_is_a_warning(world: FakeWorld, services: ServiceSet) -> None:
    world.mountinfo = "31 1 0:27 / /sys/fs/cgroup/cpu rw - cgroup cgroup rw,cpu\n"
    assert findings(world, services)["cgroups"] == Finding("cgroups", "warn", "legacy layout")


def test_missing_preflight_paths_and_mount_sources_fail(world: FakeWorld, services: ServiceSet) -> None:
    world.missing_paths = {"/dev/net/tun", "/var/lib/svc", "/var/lib/made"}
    found = findings(world, services)
    assert found["path /dev/net/tun"] == Finding("path /dev/net/tun", "fail", "missing")
    assert found["mount /var/lib/svc"] == Finding(
        "mount /var/lib/svc",
        "fail",
        "missing: svc cannot start",
        "mkdir -p /var/lib/svc (or create: true in the spec)",
    )
    assert "mount /var/lib/made" not in found  # create: true makes it


def test_tools_old_podman_warns_unusable_podman_fails_missing_conmon_warns(
    world: FakeWorld, services: ServiceSet
) -> None:
    world.podman_version = "4.2.0"
    world.tools.pop("conmon")
    found = findings(world, services)
    assert found["podman"] == Finding("podman", "warn", "4.2.0", "podman >= 4.3 is tested")
    assert found["conmon"] == Finding(
        "conmon", "warn", "not found: conmon failed: conmon: command not found", "install conmon"
    )
    world.podman_version = CommandError(["podman", "version"], 127, "", "podman: command not found")
    assert findings(world, services)["podman"] == Finding(
        "podman", "fail", "not usable: podman failed: podman: command not found", "install podman"
    )


@pytest.mark.parametrize(
    ("free", "status", "fix"),
    [
        (300 << 20, "fail", "podman image prune; grow the filesystem"),
        (700 << 20, "warn", "podman image prune"),
    ],
)
def test_storage_too_small_for_the_next_pull(
    world: FakeWorld, services: ServiceSet, free: int, status: str, fix: str
) -> None:
    world.free, world.image_sizes = free, {f"{REG}:v1": 400 << 20}
    shown = f"{free >> 20} MiB free in /var/lib/containers/storage; the largest image here is 400 MiB"
    message = f"{shown}: the next pull would not fit" if status == "fail" else shown
    assert findings(world, services)["container storage"] == Finding(
        "container storage", status, message, fix
    )


def test_storage_unknown_is_a_warning(world: FakeWorld, services: ServiceSet) -> None:
    world.graph_root = KeyError("store")
    assert findings(world, services)["container storage"] == Finding(
        "container storage", "warn", "cannot tell free space: 'store'"
    )


def test_registry_over_plain_http_and_unreachable(world: FakeWorld, services: ServiceSet) -> None:
    argv = ("podman", "manifest", "inspect", f"{REG}:v1")
    world.registry_answers[f"{REG}:v1"] = Result(
        argv,
        125,
        "",
        'Error: pinging container registry 127.0.0.1:5000: Get "https://127.0.0.1:5000/v2/": http: server gave HTTP response to HTTPS client\n',
    )
    assert findings(world, services)["registry 127.0.0.1:5000"] == Finding(
        "registry 127.0.0.1:5000",
        "fail",
        "speaks plain HTTP but podman would use TLS: the pull would fail",
        'add [[registry]] location="127.0.0.1:5000" insecure=true to /etc/containers/registries.conf.d/',
    )
    world.registry_answers[f"{REG}:v1"] = Result(
        argv, 125, "", "Error: dial tcp 127.0.0.1:5000:\n  connection refused\n"
    )
    assert findings(world, services)["registry 127.0.0.1:5000"] == Finding(
        "registry 127.0.0.1:5000",
        "fail",
        "unreachable: Error: dial tcp 127.0.0.1:5000: connection refused",
        "check network, DNS, registries.conf",
    )
    world.registry_answers[f"{REG}:v1"] = Result(argv, 125, "", "")
    assert findings(world, services)["registry 127.0.0.1:5000"].message == "unreachable: exit status 125"


def test_broken_state_unreadable_history_and_an_unfinished_upgrade(
    world: FakeWorld, services: ServiceSet
) -> None:
    world.state_broken = "/var/lib/compute-units/state.json: not valid JSON (JSONDecodeError)"
    assert findings(world, services)["upgrade state"] == Finding(
        "upgrade state",
        "fail",
        "/var/lib/compute-units/state.json: not valid JSON (JSONDecodeError)",
        "compute-units doctor --fix (rebuilds it from what runs)",
    )
    world.state_broken, world.history_bad = None, 2
    store, state = FakeStore(world), State()
    entry = state.get("svc")
    entry.current, entry.phase, entry.target = f"{REG}:v1@{D1}", "pinned", f"{REG}:v2@{D2}"
    store.save(state)
    found = {f.check: f for f in run_checks(world.effects(store), services, fix=False)}
    assert found["upgrade history"] == Finding(
        "upgrade history", "warn", "2 unreadable line(s) in /var/lib/compute-units/history.jsonl skipped"
    )
    assert found["upgrade of svc"] == Finding(
        "upgrade of svc",
        "fail",
        f"unfinished: phase pinned, target {REG}:v2@{D2}",
        "compute-units upgrade svc (resumes, then commits or rolls back)",
    )
    assert "service svc" not in found  # the unfinished upgrade is the finding, not the drift


def test_a_service_not_running_its_recorded_digest_fails(world: FakeWorld, services: ServiceSet) -> None:
    store, state = FakeStore(world), State()
    state.get("svc").current = f"{REG}:v2@{D2}"
    store.save(state)
    found = {f.check: f for f in run_checks(world.effects(store), services, fix=False)}
    assert found["service svc"] == Finding(
        "service svc", "fail", f"runs {D1}, but {D2} is recorded", "compute-units status svc"
    )


def test_repair_leaves_a_readable_state_alone(world: FakeWorld, services: ServiceSet) -> None:
    assert repair_state(world.effects(FakeStore(world)), services) == []
    assert world.log == []


def test_repair_rebuilds_a_broken_state_from_what_runs(world: FakeWorld, services: ServiceSet) -> None:
    world.state_broken = "/var/lib/compute-units/state.json: not valid JSON (JSONDecodeError)"
    world.now = 0.0
    store = FakeStore(world)
    repaired = repair_state(world.effects(store), services)
    aside = (
        f"state.json.broken-{__import__('time').strftime('%Y%m%dT%H%M%S', __import__('time').localtime(0))}"
    )
    assert repaired == [
        Finding(
            "upgrade state",
            "ok",
            f"rebuilt from what runs (svc {REG}:v1@{D1}); was: /var/lib/compute-units/state.json: not "
            f"valid JSON (JSONDecodeError); old file kept as /var/lib/compute-units/{aside}",
            fixed=True,
        )
    ]
    assert world.log == [f"set aside {aside}"]
    entry = store.load().services["svc"]
    assert (entry.current, entry.spec_image) == (f"{REG}:v1@{D1}", f"{REG}:v1")


def test_repair_that_cannot_write_says_so(world: FakeWorld, services: ServiceSet) -> None:
    world.state_broken, world.state_write_error_after = "broken", 0
    assert repair_state(world.effects(FakeStore(world)), services) == [
        Finding("upgrade state", "fail", "cannot rebuild: No space left on device", "free space in /var/lib")
    ]
