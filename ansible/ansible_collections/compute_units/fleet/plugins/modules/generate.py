#!/usr/bin/python
# Copyright: compute-units developers
# Apache License 2.0 (see LICENSE in the compute-units repository)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: generate
short_description: Write the systemd units of compute-units services
description:
  - Runs C(compute-units generate --json); units are written atomically, stale units of ours removed.
  - In check mode the CLI runs with C(--dry-run) and writes nothing.
  - With C(--diff) the unified diff of every changed unit is returned in Ansible's diff format.
  - It does not reload systemd or restart anything (C(compute-units apply) does).
version_added: 0.1.0
author: Compute Units Developers (@compute-units)
options:
  output_dir:
    description: Where the units go (C(--output-dir)). Default is the CLI's, C(/etc/systemd/system).
    type: path
  enable:
    description: Link C(compute-node.target) into C(multi-user.target.wants).
    type: bool
    default: true
extends_documentation_fragment:
  - compute_units.fleet.common
attributes:
  check_mode:
    support: full
    description: Runs the CLI with C(--dry-run).
  diff_mode:
    support: full
    description: The CLI's unified diff per unit.
"""

EXAMPLES = r"""
- name: Write the units
  compute_units.fleet.generate:

- name: Show what would change
  compute_units.fleet.generate:
  check_mode: true
  diff: true
"""

RETURN = r"""
changes:
  description: Each unit with C(unit), C(action) (add, change, remove, unchanged) and its C(diff).
  returned: always
  type: list
  elements: dict
  sample:
    - {unit: nova-compute.service, action: change, diff: "--- /etc/systemd/system/nova-compute.service ..."}
directory:
  description: Directory the units are (or would be) written to.
  returned: success
  type: str
diagnostics:
  description: Warnings about the specs.
  returned: always
  type: list
  elements: dict
rc:
  description: Exit code of the CLI.
  returned: always
  type: int
"""

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.compute_units.fleet.plugins.module_utils.cli import COMMON_ARGUMENT_SPEC, run


def main():
    argument_spec = dict(
        output_dir=dict(type="path"),
        enable=dict(type="bool", default=True),
    )
    argument_spec.update(COMMON_ARGUMENT_SPEC)
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    words = ["generate"]
    if module.params["output_dir"]:
        words += ["--output-dir", module.params["output_dir"]]
    if not module.params["enable"]:
        words.append("--no-enable")
    if module.check_mode:
        words.append("--dry-run")
    cli = run(module, words)
    data = cli.data if isinstance(cli.data, dict) else {}
    changes = data.get("changes") or []
    changed_units = [c for c in changes if c.get("action") != "unchanged"]
    result = dict(
        changed=bool(changed_units),
        changes=changes,
        directory=data.get("directory"),
        diagnostics=data.get("diagnostics") or [],
        **cli.as_dict()
    )
    if module._diff:
        result["diff"] = [dict(prepared=c["diff"]) for c in changed_units if c.get("diff")]
    if not cli.ok or data.get("ok") is False:
        module.fail_json(msg=cli.message(), **result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
