"""Assertions on `compute-units upgrade --json` reports that several node tests share."""

from __future__ import annotations

import json
import re
import subprocess
from typing import Any

UPGRADE_STEPS = ["pull", "preflight", "record", "pin", "restart", "health", "post-check", "commit"]


def upgraded_keeping_the_guest(
    result: subprocess.CompletedProcess[str], target: str, qemu_pid: int
) -> dict[str, Any]:
    """The one service entry of an upgrade to `target` that ran every step, stopped the old
    container itself (pidfd wait, not ExecStop) and found the guest `tiny` (qemu `qemu_pid`)
    running before and after."""
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads(result.stdout)
    assert report["ok"] is True
    (entry,) = report["services"]
    assert isinstance(entry, dict)
    assert (entry["result"], entry["to"]) == ("upgraded", target)
    assert [s["name"] for s in entry["steps"]] == UPGRADE_STEPS
    assert all(isinstance(s["ms"], int) and s["ok"] for s in entry["steps"])
    restart = next(s for s in entry["steps"] if s["name"] == "restart")
    assert re.fullmatch(r"old container \(PID \d+\) exited \d+ ms after SIGTERM", restart["detail"])
    assert entry["vm_check"] == []
    assert [p["pid"] for p in entry["vm_before"]["qemu"]] == [qemu_pid]
    assert entry["vm_before"]["guests"] == entry["vm_after"]["guests"] == {"tiny": "running"}
    return entry
