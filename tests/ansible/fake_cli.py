"""A stand-in for `compute-units` on a fleet node: canned JSON and exit codes from a state directory.

Run as `python fake_cli.py ARGS...` with FAKE_CU_STATE=DIR (the per-host wrapper `make_fake_host`
writes sets it). DIR/state.json says what the node runs and how commands behave; every call is
appended to DIR/calls.log as a JSON argv, so tests can assert what the modules ran. The shapes
follow compute_units/upgrade_cmd.py, lifecycle.py, doctor.py and cli.py.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
from pathlib import Path
from typing import Any

STEPS = ("pull", "preflight", "record", "pin", "restart", "health", "post-check", "commit")
VM = {
    "qemu": [{"pid": 4242, "comm": "qemu-system-x86", "start_time": 1000, "cgroup": "machine.slice"}],
    "machines": ["qemu-1-tiny"],
    "guests": {"tiny": "running"},
}
GUESTS = {"running_before": 1, "running_after": 1, "kept": 1}


def resolve(reference: str) -> str:
    """repo:tag → repo:tag@sha256:… (a made-up, stable digest)."""
    if "@" in reference:
        return reference
    return f"{reference}@sha256:{hashlib.sha256(reference.encode()).hexdigest()}"


class Fake:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.path = directory / "state.json"
        self.state: dict[str, Any] = json.loads(self.path.read_text())

    def save(self) -> None:
        self.path.write_text(json.dumps(self.state, indent=1))

    def services(self, names: list[str], all_services: bool) -> list[str]:
        known: list[str] = list(self.state["services"])
        if all_services or not names:
            return known
        unknown = [n for n in names if n not in known]
        if unknown:
            self.fail(2, f"unknown service {unknown[0]}", f"known services: {', '.join(known)}")
        return names

    def fail(self, code: int, error: str, hint: str | None = None) -> None:
        emit({"ok": False, "error": error, "hint": hint})
        sys.exit(code)

    # -- commands
    def upgrade(self, args: argparse.Namespace) -> int:
        if not args.services and not args.all:
            self.fail(2, "name the services to upgrade, or pass --all")
        chosen = self.services(args.services, args.all)
        if args.image and len(chosen) != 1:
            self.fail(2, "--image applies to exactly one service")
        reports: list[dict[str, Any]] = []
        failure: tuple[int, str] | None = None
        for name in chosen:
            svc = self.state["services"][name]
            target = resolve(args.image or svc["target"])
            report = self.report(name, svc["current"], target)
            reports.append(report)
            if svc["current"] == target:
                report["result"] = "unchanged"
            elif args.dry_run:
                report["result"] = "would-upgrade"
            elif name in self.state.get("upgrade_fails", {}):
                failure = self.fail_upgrade(report, self.state["upgrade_fails"][name])
                break
            else:
                report["result"] = "upgraded"
                report["steps"] = [
                    {"name": s, "ms": 10 * (i + 1), "ok": True, "detail": ""} for i, s in enumerate(STEPS)
                ]
                report["vm_before"], report["vm_after"], report["guests"] = VM, VM, GUESTS
                svc["current"] = target
                self.state.setdefault("present", []).append(target)
        self.save()
        emit(
            {
                "ok": failure is None,
                "error": failure[1] if failure else None,
                "hint": None,
                "services": reports,
            }
        )
        return failure[0] if failure else 0

    def report(self, name: str, current: str, target: str) -> dict[str, Any]:
        return {
            "service": name,
            "result": "pending",
            "from": current,
            "to": target,
            "failed_step": None,
            "reason": None,
            "steps": [],
            "vm_before": None,
            "vm_after": None,
            "vm_check": [],
            "guests": None,
        }

    def fail_upgrade(self, report: dict[str, Any], how: dict[str, Any]) -> tuple[int, str]:
        step, reason, result = how["failed_step"], how["reason"], how.get("result", "rolled-back")
        done = STEPS[: STEPS.index(step) + 1]
        report.update(
            result=result, failed_step=step, reason=reason, vm_before=VM, vm_after=VM, guests=GUESTS
        )
        report["steps"] = [
            {"name": s, "ms": 7, "ok": s != step, "detail": reason if s == step else ""} for s in done
        ]
        if result == "rolled-back":
            report["steps"].append({"name": "rollback", "ms": 300, "ok": True, "detail": ""})
            message = f"{report['service']}: upgrade to {report['to']} failed at {step}: {reason}; rolled back to {report['from']}"
            return 5, message
        return int(how.get("rc", 1)), f"{report['service']}: {reason}"

    def pull(self, args: argparse.Namespace) -> int:
        if not args.services and not args.all:  # as the real CLI
            message = "name the services to pull, or pass --all"
            emit({"ok": False, "error": message, "hint": None})
            print(f"compute-units: error: {message}", file=sys.stderr)
            return 2
        chosen = self.services(args.services, args.all)
        present: list[str] = self.state.setdefault("present", [])
        entries = []
        for name in chosen:
            reference = resolve(args.image or self.state["services"][name]["target"])
            entries.append(
                {"service": name, "reference": reference, "pulled": reference not in present, "ms": 5}
            )
            if reference not in present:
                present.append(reference)
        self.save()
        emit({"ok": True, "error": None, "hint": None, "services": entries})
        return 0

    def status(self, args: argparse.Namespace) -> int:
        rows = []
        for name in self.services(args.services, False):
            current = self.state["services"][name]["current"]
            rows.append(
                {
                    "service": name,
                    "unit": f"{name}.service",
                    "active_state": "active",
                    "sub_state": "running",
                    "result": "success",
                    "container_id": "0123456789ab",
                    "image": current,
                    "image_digest": current.rsplit("@", 1)[-1],
                    "since": "2026-12-01T10:00:00+00:00",
                    "health": "healthy",
                    "main_pid": 4711,
                    "upgrade_in_progress": None,
                }
            )
        emit(rows)
        return 0

    def doctor(self, args: argparse.Namespace) -> int:
        findings = self.state.get("doctor") or [
            {"check": "module ebtables", "status": "ok", "message": "loaded", "fix": ""}
        ]
        report: dict[str, Any] = {"findings": findings}
        if args.fix:
            report["findings"] = findings = self.state.get("doctor_after_fix", findings)
            if not self.state.get("doctor_without_fixed"):  # a CLI from before the "fixed" list
                report["fixed"] = [f["check"] for f in findings if f.get("fixed")]
        ok = all(f["status"] != "fail" for f in findings)
        emit({"ok": ok, **report})
        return 0 if ok else 3

    def generate(self, args: argparse.Namespace) -> int:
        units: dict[str, dict[str, str]] = self.state.get("units", {})
        directory = args.output_dir or "/etc/systemd/system"
        changes = [
            {"unit": u, "action": c["action"], "diff": c.get("diff", "")} for u, c in sorted(units.items())
        ]
        if not args.dry_run:
            for change in units.values():
                change.update(action="unchanged", diff="")
            self.save()
        emit(
            {
                "ok": True,
                "dry_run": args.dry_run,
                "directory": directory,
                "changes": changes,
                "diagnostics": [],
            }
        )
        return 0


def emit(data: object) -> None:
    print(json.dumps(data, indent=2))


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="compute-units")
    sub = top.add_subparsers(dest="command", required=True)
    for name in ("upgrade", "pull", "status", "doctor", "generate"):
        p = sub.add_parser(name)
        p.add_argument("--json", action="store_true", required=True)
        p.add_argument("--spec", action="append")
        if name in ("upgrade", "pull", "status"):
            p.add_argument("services", nargs="*")
        if name in ("upgrade", "pull"):
            p.add_argument("--all", action="store_true")
            p.add_argument("--image")
        if name in ("upgrade", "generate"):
            p.add_argument("--dry-run", action="store_true")
        if name == "upgrade":
            p.add_argument("--wait", type=float)
        if name == "doctor":
            p.add_argument("--fix", action="store_true")
        if name == "generate":
            p.add_argument("--output-dir")
            p.add_argument("--no-enable", action="store_true")
    return top


def main(argv: list[str]) -> int:
    directory = Path(os.environ["FAKE_CU_STATE"])
    with (directory / "calls.log").open("a") as log:
        log.write(json.dumps(argv) + "\n")
    fake = Fake(directory)
    override = fake.state.get("override", {}).get(argv[0] if argv else "")
    if override:  # canned raw output and exit code, e.g. an exit code the modules do not know
        sys.stdout.write(override.get("stdout", ""))
        sys.stderr.write(override.get("stderr", ""))
        return int(override["rc"])
    args = parser().parse_args(argv)
    handler = getattr(fake, args.command)
    code: int = handler(args)
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
