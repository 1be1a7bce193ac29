# Copyright: compute-units developers
# Apache License 2.0 (see LICENSE in the compute-units repository)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
name: fleet_report
type: aggregate
short_description: Per-host report of a rolling upgrade, printed at the end and written as JSON
description:
  - Collects what the C(compute_units.fleet.upgrade) module reported on each host (result, each step's
    milliseconds, guests kept) and the batch each host ran in.
  - Works when the play halts on C(max_fail_percentage); a final play would not run then. Hosts the play
    never reached are listed as C(not reached).
  - "Host results: upgraded, unchanged, would upgrade (check mode), rolled back, failed, unreachable,
    not reached."
version_added: 0.1.0
author: Compute Units Developers (@compute-units)
requirements:
  - enable it, e.g. C(ANSIBLE_CALLBACKS_ENABLED=compute_units.fleet.fleet_report)
options:
  path:
    description: Where to write the report as JSON; nothing is written when empty.
    type: path
    env:
      - name: COMPUTE_UNITS_FLEET_REPORT
    ini:
      - section: compute_units_fleet_report
        key: path
"""

import json
import os
import time

from ansible.plugins.callback import CallbackBase

UPGRADE_ACTIONS = ("compute_units.fleet.upgrade", "upgrade")
HOST_RESULTS = {
    "rolled-back": "rolled back",
    "failed": "failed",
    "refused": "failed",
}


def service_summary(report):
    """One service: result, from/to, step timings, guests kept (same qemu PID and start time)."""
    before = (report.get("vm_before") or {}).get("qemu") or []
    after = report.get("vm_after") or {}
    figure = report.get("guests") or {}
    if figure:
        running_before, kept = figure.get("running_before"), figure.get("kept")
    else:  # a CLI without the figure: count from the snapshots
        alive = set((q.get("pid"), q.get("start_time")) for q in after.get("qemu") or [])
        running_before = len(before)
        kept = len([q for q in before if (q.get("pid"), q.get("start_time")) in alive])
    guests_after = after.get("guests") or {}
    return dict(
        service=report.get("service"),
        result=report.get("result"),
        source=report.get("from"),
        target=report.get("to"),
        failed_step=report.get("failed_step"),
        reason=report.get("reason"),
        steps=[dict(name=s.get("name"), ms=s.get("ms"), ok=s.get("ok")) for s in report.get("steps") or []],
        guests=dict(
            before=running_before or 0,
            kept=kept or 0,
            running_after=sorted(name for name, state in guests_after.items() if state == "running"),
            problems=report.get("vm_check") or [],
        ),
    )


def host_result(entry):
    if entry["unreachable"]:
        return "unreachable"
    results = [s["result"] for s in entry["services"]]
    for raw in ("rolled-back", "failed", "refused"):
        if raw in results:
            return HOST_RESULTS[raw]
    if entry["failed_task"]:
        return "failed"
    if not entry["upgrade_ran"]:
        return "not reached"
    if "upgraded" in results:
        return "upgraded"
    if "would-upgrade" in results:
        return "would upgrade"
    return "unchanged"


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "aggregate"
    CALLBACK_NAME = "compute_units.fleet.fleet_report"
    CALLBACK_NEEDS_ENABLED = True

    def __init__(self, *args, **kwargs):
        super(CallbackModule, self).__init__(*args, **kwargs)
        self.hosts = {}
        self.play_name = None
        self.batch = 0
        self.playbook = None
        self.plays = []

    # ------------------------------------------------------------------ events
    def v2_playbook_on_start(self, playbook):
        self.playbook = os.path.basename(getattr(playbook, "_file_name", "") or "")

    def v2_playbook_on_play_start(self, play):
        name = play.get_name()
        self.batch = self.batch + 1 if name == self.play_name else 1
        self.end_play()
        self.plays.append(dict(play=name, batch=self.batch if play.serial else None, started=time.monotonic()))
        self.play_name = name
        try:
            inventory = play.get_variable_manager()._inventory
            names = [h.name for h in inventory.get_hosts(play.hosts)]
        except Exception:  # the report must never break the run
            names = []
        batched = bool(play.serial)
        for host in names:
            entry = self.entry(host)
            if batched:
                entry["batch"] = self.batch

    def v2_runner_on_ok(self, result):
        if self.is_upgrade(result):
            self.record_upgrade(result)

    def v2_runner_on_failed(self, result, ignore_errors=False):
        if ignore_errors:
            return
        entry = self.entry(result._host.get_name())
        if self.is_upgrade(result):
            self.record_upgrade(result)
        if not entry["failed_task"] and not entry["unreachable"]:
            entry["failed_task"] = result._task.get_name()
            entry["message"] = result._result.get("msg")

    def v2_runner_on_unreachable(self, result):
        entry = self.entry(result._host.get_name())
        entry["unreachable"] = True
        entry["message"] = result._result.get("msg")

    def v2_playbook_on_stats(self, stats):
        self.end_play()
        report = self.report()
        self.print_report(report)
        path = self.get_option("path")
        if path:
            with open(path, "w") as handle:
                json.dump(report, handle, indent=2, sort_keys=True)
                handle.write("\n")
            self._display.display("fleet report written to %s" % path)

    # ------------------------------------------------------------------ helpers
    def end_play(self):
        """Wall seconds of the play (one batch of a serial play) that ran last."""
        if self.plays and "seconds" not in self.plays[-1]:
            self.plays[-1]["seconds"] = round(time.monotonic() - self.plays[-1].pop("started"), 3)

    def entry(self, host):
        if host not in self.hosts:
            self.hosts[host] = dict(
                host=host, batch=None, services=[], upgrade_ran=False, unreachable=False, failed_task=None, message=None
            )
        return self.hosts[host]

    @staticmethod
    def is_upgrade(result):
        task = result._task
        action = getattr(task, "resolved_action", None) or task.action
        return action in UPGRADE_ACTIONS

    def record_upgrade(self, result):
        entry = self.entry(result._host.get_name())
        entry["upgrade_ran"] = True
        entry["services"] = [service_summary(r) for r in result._result.get("services") or []]
        if result._result.get("failed"):
            entry["failed_task"] = result._task.get_name()
            entry["message"] = result._result.get("msg")

    def report(self):
        hosts = []
        for entry in self.hosts.values():
            row = dict((k, v) for k, v in entry.items() if k not in ("upgrade_ran", "unreachable"))
            row["result"] = host_result(entry)
            if row["result"] in ("upgraded", "unchanged", "would upgrade", "not reached"):
                row["failed_task"], row["message"] = None, None
            hosts.append(row)
        summary = {}
        for row in hosts:
            summary[row["result"]] = summary.get(row["result"], 0) + 1
        return dict(playbook=self.playbook, hosts=hosts, summary=summary, plays=self.plays)

    def print_report(self, report):
        self._display.banner("FLEET REPORT")
        for row in report["hosts"]:
            batch = "-" if row["batch"] is None else str(row["batch"])
            line = "%-20s batch %-3s %s" % (row["host"], batch, row["result"])
            if row["message"]:
                line += ": %s" % row["message"]
            self._display.display(line)
            for svc in row["services"]:
                steps = ", ".join("%s %s ms%s" % (s["name"], s["ms"], "" if s["ok"] else " FAILED") for s in svc["steps"])
                guests = svc["guests"]
                self._display.display(
                    "    %s %s; guests kept %d/%d%s" % (
                        svc["service"],
                        svc["result"],
                        guests["kept"],
                        guests["before"],
                        "; steps: " + steps if steps else "",
                    )
                )
        self._display.display(", ".join("%s: %d" % kv for kv in sorted(report["summary"].items())))
