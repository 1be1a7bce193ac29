"""state.json and history.jsonl are checked on read: wrong shapes are clear errors naming the file and
the key, never tracebacks; fuzzed contents never raise anything else."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from compute_units import state
from compute_units.state import LockBusy, ServiceState, State, StateError, Store, describe_holder

REF = "127.0.0.1:5000/cu/svc:v1@sha256:" + "1" * 64


def store_with(tmp_path: Path, text: str | bytes) -> Store:
    store = Store(tmp_path)
    data = text.encode() if isinstance(text, str) else text
    (tmp_path / "state.json").write_bytes(data)
    return store


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[]", "(top level): expected a JSON object"),
        ('{"services": []}', "services: expected an object of services"),
        ('{"services": {"svc": 3}}', "services.svc: expected an object"),
        ('{"services": {"svc": {"current": 5}}}', "services.svc.current: expected a string or null"),
        ('{"services": {"svc": {"phase": "dancing"}}}', "services.svc.phase: expected one of idle, recorded"),
        ('{"services": {"svc": {"phase": "pinned"}}}', "services.svc.target: expected a reference while"),
        (
            '{"services": {"svc": {"started": "yesterday"}}}',
            "services.svc.started: expected a number or null",
        ),
        ('{"services": {"svc": {"vms_before": [1]}}}', "services.svc.vms_before: expected an object or null"),
        ("not json", "not valid JSON (JSONDecodeError)"),
        (b"\xff\xfe\x00", "not valid JSON (UnicodeDecodeError)"),
    ],
)
def test_a_state_file_of_the_wrong_shape_is_a_clear_error(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(StateError) as failed:
        store_with(tmp_path, text).load()
    assert failed.value.message.startswith(f"{tmp_path / 'state.json'}: {message}")
    assert failed.value.exit_code == 1


def test_a_good_state_round_trips(tmp_path: Path) -> None:
    store = Store(tmp_path)
    state = State({"svc": ServiceState(current=REF, spec_image="127.0.0.1:5000/cu/svc:v1")})
    store.save(state)
    assert store.load() == state
    assert (tmp_path / "state.json").stat().st_mode & 0o777 == 0o600


def test_history_skips_damaged_lines_and_counts_them(tmp_path: Path) -> None:
    store = Store(tmp_path)
    store.append_history({"service": "svc", "result": "upgraded"})
    with (tmp_path / "history.jsonl").open("ab") as handle:
        handle.write(b'[1, 2]\n\xff\xfe binary\n{"service": 7}\n{"torn": ')
    store.append_history({"service": "svc", "result": "rolled-back"})
    assert [e["result"] for e in store.history("svc")] == ["upgraded", "rolled-back"]
    assert store.history_problems() == 4


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(st.binary(max_size=2000))
def test_fuzzed_state_bytes_load_or_fail_cleanly(tmp_path: Path, data: bytes) -> None:
    with contextlib.suppress(StateError):
        store_with(tmp_path, data).load()


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=30,
)
service_like = st.fixed_dictionaries(
    {},
    optional={
        k: json_values | st.text(max_size=30)
        for k in ("current", "phase", "target", "previous", "started", "vms_before", "boot_id")
    },
)


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(
    st.dictionaries(
        st.sampled_from(["services", "version", "x"]),
        st.dictionaries(st.text(max_size=8), service_like) | json_values,
    )
)
def test_fuzzed_state_shapes_load_or_fail_cleanly(tmp_path: Path, data: dict[str, object]) -> None:
    try:
        state = store_with(tmp_path, json.dumps(data)).load()
    except StateError:
        return
    for entry in state.services.values():
        entry.pin()  # a loaded state is usable


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(st.lists(st.binary(max_size=200), max_size=20))
def test_fuzzed_history_never_raises(tmp_path: Path, lines: list[bytes]) -> None:
    (tmp_path / "history.jsonl").write_bytes(b"\n".join(lines))
    store = Store(tmp_path)
    entries = store.history()
    assert all(isinstance(e, dict) for e in entries)


# ------------------------------------------------------------------ the upgrade lock's holder
def hold_lock(tmp_path: Path) -> int:
    """Take the upgrade lock as another process would, without saying who we are (yet)."""
    fd = os.open(tmp_path / "upgrade.lock", os.O_RDWR | os.O_CREAT, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX)
    return fd


def test_a_waiter_names_a_holder_that_writes_who_it_is_just_after_taking_the_lock(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    holder = hold_lock(tmp_path)
    slept: list[float] = []

    def holder_speaks(seconds: float) -> None:  # the holder writes while the waiter waits
        slept.append(seconds)
        os.pwrite(holder, b"4242 10:00:00 upgrading svc: restart\n", 0)

    monkeypatch.setattr(time, "sleep", holder_speaks)
    with pytest.raises(LockBusy) as busy, Store(tmp_path).lock(0.0):
        pass
    assert str(busy.value) == (
        "another upgrade is running on this host (pid 4242, since 10:00:00: upgrading svc: restart); "
        f"lock {tmp_path}/upgrade.lock"
    )
    assert slept == [0.02]
    os.close(holder)


def test_a_holder_that_never_says_who_it_is_is_unknown_after_the_grace(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    holder = hold_lock(tmp_path)
    monkeypatch.setattr(state, "HOLDER_GRACE", 0.0)
    with pytest.raises(LockBusy) as busy, Store(tmp_path).lock(0.0):
        pass
    assert (
        str(busy.value)
        == f"another upgrade is running on this host (holder unknown); lock {tmp_path}/upgrade.lock"
    )
    os.close(holder)


def test_the_lock_tells_waiters_its_pid_and_step_and_a_shorter_step_replaces_a_longer(
    tmp_path: Path,
) -> None:
    with Store(tmp_path).lock(0.0) as lock:
        lock.tell("upgrading a-service-with-a-long-name: pull")
        lock.tell("x")
        raw = (tmp_path / "upgrade.lock").read_bytes()
        assert raw.endswith(b" x\n") and raw.count(b"\n") == 1
        assert re.fullmatch(rf"pid {os.getpid()}, since \d\d:\d\d:\d\d: x", describe_holder(raw))
    assert (tmp_path / "upgrade.lock").read_bytes() == b""  # released: no stale holder


@pytest.mark.parametrize(
    ("raw", "described"),
    [
        (b"", "holder unknown"),
        (b"garbage\n", "holder unknown"),
        (b"17\n", "pid 17"),
        (b"17 10:00:00 x\n0 01:02:03 a longer tail being cut", "pid 17, since 10:00:00: x"),
        (b"\xff\xfe", "holder unknown"),
    ],
)
def test_describe_holder_reads_only_the_first_whole_line(raw: bytes, described: str) -> None:
    assert describe_holder(raw) == described
