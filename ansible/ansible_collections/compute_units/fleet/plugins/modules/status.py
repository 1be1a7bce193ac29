#!/usr/bin/python
# Copyright: compute-units developers
# Apache License 2.0 (see LICENSE in the compute-units repository)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: status
short_description: State of compute-units services on a node, as facts
description:
  - Runs C(compute-units status [SERVICE...] --json) and returns each service's row, also as the fact
    C(compute_units) (C(ansible_facts.compute_units.services), keyed by service name).
  - Fields the CLI adds later are kept as they are.
version_added: 0.1.0
author: Compute Units Developers (@compute-units)
options:
  services:
    description: Only these services (default every service).
    type: list
    elements: str
extends_documentation_fragment:
  - compute_units.fleet.common
attributes:
  check_mode:
    support: full
    description: Read-only; runs the same in check mode.
  diff_mode:
    support: none
    description: Nothing to compare.
  facts:
    support: full
    description: Sets C(ansible_facts.compute_units).
"""

EXAMPLES = r"""
- name: Read the state of every service
  compute_units.fleet.status:

- name: Show nova-libvirt's pinned image
  ansible.builtin.debug:
    msg: "{{ ansible_facts.compute_units.services['nova-libvirt'].image }}"
"""

RETURN = r"""
services:
  description: One row per service, as C(compute-units status --json) gives it.
  returned: always
  type: list
  elements: dict
  sample:
    - service: nova-libvirt
      unit: nova-libvirt.service
      active_state: active
      sub_state: running
      result: success
      container_id: 0123456789ab
      image: "127.0.0.1:5000/compute/nova-libvirt:2024.2@sha256:2222"
      image_digest: "sha256:2222"
      since: "2026-12-01T10:00:00+00:00"
      health: healthy
      main_pid: 4242
ansible_facts:
  description: Facts set by the module.
  returned: always
  type: dict
  contains:
    compute_units:
      description: C(services) keyed by service name (the rows above).
      type: dict
"""

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.compute_units.fleet.plugins.module_utils.cli import COMMON_ARGUMENT_SPEC, run


def main():
    argument_spec = dict(services=dict(type="list", elements="str"))
    argument_spec.update(COMMON_ARGUMENT_SPEC)
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    cli = run(module, ["status"] + list(module.params["services"] or []))
    rows = cli.data if isinstance(cli.data, list) else []
    result = dict(changed=False, services=rows, **cli.as_dict())
    if not cli.ok or not isinstance(cli.data, list):
        module.fail_json(msg=cli.message(), **result)
    facts = dict(compute_units=dict(services=dict((row.get("service"), row) for row in rows)))
    module.exit_json(ansible_facts=facts, **result)


if __name__ == "__main__":
    main()
