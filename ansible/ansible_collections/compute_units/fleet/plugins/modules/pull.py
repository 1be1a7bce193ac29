#!/usr/bin/python
# Copyright: compute-units developers
# Apache License 2.0 (see LICENSE in the compute-units repository)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: pull
short_description: Pull the images compute-units services would upgrade to, restarting nothing
description:
  - Runs C(compute-units pull [SERVICE...] [--image REF | --all] --json) on the managed node, so that a later
    upgrade does not wait for the registry. Nothing is restarted.
  - The result is C(changed) when at least one image was not present before.
  - In check mode nothing is pulled and the CLI is not run (it has no dry run for pulls).
version_added: 0.1.0
author: Compute Units Developers (@compute-units)
options:
  services:
    description: Services whose images to pull. Give O(services) or O(all); with neither, the CLI exits 2.
    type: list
    elements: str
  all:
    description: Pull for every service (C(--all)).
    type: bool
    default: false
  image:
    description: Image to pull (exactly one service).
    type: str
extends_documentation_fragment:
  - compute_units.fleet.common
attributes:
  check_mode:
    support: partial
    description: Nothing is pulled and the CLI is not run.
    details: The result is never C(changed) in check mode.
  diff_mode:
    support: none
    description: Nothing to compare.
"""

EXAMPLES = r"""
- name: Pull every service's image ahead of the restarts
  compute_units.fleet.pull:
    all: true

- name: Pull one image for nova-libvirt
  compute_units.fleet.pull:
    services: [nova-libvirt]
    image: 127.0.0.1:5000/compute/nova-libvirt:2024.2
"""

RETURN = r"""
services:
  description: One entry per service.
  returned: always
  type: list
  elements: dict
  contains:
    service:
      description: Service name.
      type: str
    reference:
      description: The image pulled, C(repo:tag@sha256:...).
      type: str
    pulled:
      description: False when the image was already present.
      type: bool
    ms:
      description: Milliseconds the pull took.
      type: int
  sample:
    - {service: nova-libvirt, reference: "127.0.0.1:5000/compute/nova-libvirt:2024.2@sha256:2222", pulled: true, ms: 812}
pulled:
  description: Services whose image was not present before.
  returned: always
  type: list
  elements: str
error:
  description: The CLI's error message, when it gave one.
  returned: always
  type: str
hint:
  description: The CLI's hint, when it gave one.
  returned: always
  type: str
rc:
  description: Exit code of the CLI (not returned in check mode).
  returned: success
  type: int
"""

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.compute_units.fleet.plugins.module_utils.cli import COMMON_ARGUMENT_SPEC, run, service_words


def main():
    argument_spec = dict(
        services=dict(type="list", elements="str"),
        all=dict(type="bool", default=False),
        image=dict(type="str"),
    )
    argument_spec.update(COMMON_ARGUMENT_SPEC)
    module = AnsibleModule(
        argument_spec=argument_spec,
        mutually_exclusive=[("services", "all")],
        supports_check_mode=True,
    )
    if module.check_mode:
        module.exit_json(changed=False, services=[], pulled=[], error=None, hint=None, msg="check mode: nothing pulled")

    words = ["pull"] + service_words(module)
    if module.params["image"]:
        words += ["--image", module.params["image"]]
    cli = run(module, words)
    data = cli.data if isinstance(cli.data, dict) else {}
    entries = data.get("services") or []
    pulled = [e.get("service") for e in entries if e.get("pulled")]
    result = dict(
        changed=bool(pulled),
        services=entries,
        pulled=pulled,
        error=data.get("error"),
        hint=data.get("hint"),
        **cli.as_dict()
    )
    if not cli.ok or data.get("ok") is False:
        module.fail_json(msg=cli.message(), **result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
