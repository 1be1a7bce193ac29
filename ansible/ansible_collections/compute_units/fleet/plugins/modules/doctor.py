#!/usr/bin/python
# Copyright: compute-units developers
# Apache License 2.0 (see LICENSE in the compute-units repository)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: doctor
short_description: Check that a node is ready for compute-units (and optionally fix what can be fixed)
description:
  - Runs C(compute-units doctor --json); fails when a check fails, naming each failed check and its fix.
  - With O(fix=true) it first checks; only when something fails does it run C(doctor --fix) and report
    C(changed) when a check that failed before passes now.
  - In check mode O(fix) is ignored; the checks run, nothing is fixed.
version_added: 0.1.0
author: Compute Units Developers (@compute-units)
options:
  fix:
    description: Load and persist kernel modules, stop and mask host libvirt, start machined (C(--fix)).
    type: bool
    default: false
extends_documentation_fragment:
  - compute_units.fleet.common
attributes:
  check_mode:
    support: full
    description: Checks only; O(fix) is not applied.
  diff_mode:
    support: none
    description: Nothing to compare.
"""

EXAMPLES = r"""
- name: Is this node ready?
  compute_units.fleet.doctor:

- name: Fix what doctor can fix
  compute_units.fleet.doctor:
    fix: true
"""

RETURN = r"""
findings:
  description: Every check with C(check), C(status) (ok, warn, fail), C(message) and C(fix).
  returned: always
  type: list
  elements: dict
  sample:
    - {check: module ebtables, status: ok, message: loaded, fix: ""}
failed_checks:
  description: Names of the checks that failed.
  returned: always
  type: list
  elements: str
warnings_checks:
  description: Names of the checks that warned.
  returned: always
  type: list
  elements: str
fixed:
  description: Checks that failed before C(--fix) and pass after it.
  returned: always
  type: list
  elements: str
rc:
  description: Exit code of the (last) CLI run.
  returned: always
  type: int
"""

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.compute_units.fleet.plugins.module_utils.cli import COMMON_ARGUMENT_SPEC, run


def findings_of(cli):
    data = cli.data if isinstance(cli.data, dict) else {}
    return data.get("findings") or []


def names(findings, status):
    return [f.get("check") for f in findings if f.get("status") == status]


def main():
    argument_spec = dict(fix=dict(type="bool", default=False))
    argument_spec.update(COMMON_ARGUMENT_SPEC)
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)

    cli = run(module, ["doctor"])
    findings = findings_of(cli)
    fixed = []
    if module.params["fix"] and not module.check_mode and names(findings, "fail"):
        before = set(names(findings, "fail"))
        cli = run(module, ["doctor", "--fix"])
        findings = findings_of(cli)
        data = cli.data if isinstance(cli.data, dict) else {}
        if isinstance(data.get("fixed"), list):  # what the CLI says it repaired
            fixed = sorted(data["fixed"])
        else:  # an older CLI: what failed before and passes now
            fixed = sorted(before - set(names(findings, "fail")))
    failed = names(findings, "fail")
    result = dict(
        changed=bool(fixed),
        findings=findings,
        failed_checks=failed,
        warnings_checks=names(findings, "warn"),
        fixed=fixed,
        **cli.as_dict()
    )
    if failed:
        detail = "; ".join(
            "%s: %s%s" % (f.get("check"), f.get("message"), " (fix: %s)" % f["fix"] if f.get("fix") else "")
            for f in findings
            if f.get("status") == "fail"
        )
        module.fail_json(msg="host not ready: %s" % detail, **result)
    if not cli.ok:
        module.fail_json(msg=cli.message(), **result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
