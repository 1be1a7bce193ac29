#!/usr/bin/python
# Copyright: compute-units developers
# Apache License 2.0 (see LICENSE in the compute-units repository)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: upgrade
short_description: Upgrade compute-units services on a node, with automatic rollback
description:
  - Runs C(compute-units upgrade SERVICE... | --all [--image REF] --json) on the managed node. The CLI
    pulls first, pins the digest, restarts, health-gates, checks that the guests survived and rolls back
    by itself when a step fails.
  - The result is C(changed) only when a service's image digest changed.
  - The task fails when a service was rolled back, failed or refused (preflight), with the CLI's message.
  - In check mode the CLI runs with C(--dry-run), which resolves the target digest and restarts nothing.
version_added: 0.1.0
author: Compute Units Developers (@compute-units)
options:
  services:
    description: Services to upgrade. Mutually exclusive with O(all).
    type: list
    elements: str
  all:
    description: Upgrade every service (C(--all)).
    type: bool
    default: false
  image:
    description: Image to upgrade to (exactly one service). Default is the image in the service's spec.
    type: str
  wait:
    description: Seconds to wait for another upgrade's lock on the node (default is to fail at once).
    type: float
extends_documentation_fragment:
  - compute_units.fleet.common
attributes:
  check_mode:
    support: full
    description: Runs the CLI with C(--dry-run); nothing is pulled or restarted.
  diff_mode:
    support: none
    description: Nothing to compare.
"""

EXAMPLES = r"""
- name: Upgrade nova-libvirt to the image in its spec
  compute_units.fleet.upgrade:
    services: [nova-libvirt]

- name: Upgrade one service to a given image
  compute_units.fleet.upgrade:
    services: [nova-compute]
    image: 127.0.0.1:5000/compute/nova-compute:2024.2

- name: What would an upgrade of everything do?
  compute_units.fleet.upgrade:
    all: true
  check_mode: true
  register: plan
"""

RETURN = r"""
services:
  description: One report per service, as C(compute-units upgrade --json) gives it.
  returned: always
  type: list
  elements: dict
  contains:
    service:
      description: Service name.
      type: str
    result:
      description: upgraded, unchanged, rolled-back, failed, refused; in check mode would-upgrade or unchanged.
      type: str
    from:
      description: Reference (C(repo:tag@sha256:...)) before the upgrade.
      type: str
    to:
      description: Reference the upgrade went (or would go) to.
      type: str
    failed_step:
      description: The step that failed, if any.
      type: str
    reason:
      description: Why it failed, if it did.
      type: str
    steps:
      description: Each step with C(name), C(ms), C(ok) and C(detail).
      type: list
      elements: dict
    vm_before:
      description: qemu processes, machined machines and running guests before the restart.
      type: dict
    vm_after:
      description: The same after the restart.
      type: dict
    vm_check:
      description: Problems found with the guests after the restart; empty when all guests survived.
      type: list
      elements: str
  sample:
    - service: nova-libvirt
      result: upgraded
      from: "127.0.0.1:5000/compute/nova-libvirt:2024.1@sha256:1111"
      to: "127.0.0.1:5000/compute/nova-libvirt:2024.2@sha256:2222"
      failed_step: null
      reason: null
      steps: [{name: pull, ms: 82, ok: true, detail: ""}, {name: restart, ms: 661, ok: true, detail: ""}]
      vm_before: {qemu: [{pid: 4242}], machines: [qemu-1-tiny], running_guests: [tiny]}
      vm_after: {qemu: [{pid: 4242}], machines: [qemu-1-tiny], running_guests: [tiny]}
      vm_check: []
upgraded:
  description: Services whose image digest changed (in check mode, would change).
  returned: always
  type: list
  elements: str
  sample: [nova-libvirt]
error:
  description: The CLI's error message, when it gave one.
  returned: always
  type: str
hint:
  description: The CLI's hint, when it gave one.
  returned: always
  type: str
rc:
  description: Exit code of the CLI.
  returned: always
  type: int
cmd:
  description: The command that ran.
  returned: always
  type: list
  elements: str
"""

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.compute_units.fleet.plugins.module_utils.cli import (
    COMMON_ARGUMENT_SPEC,
    digest_of,
    run,
    service_words,
)

FAILED_RESULTS = ("rolled-back", "failed", "refused")


def digest_changed(report, check_mode):
    if check_mode:
        return report.get("result") == "would-upgrade"
    if report.get("result") != "upgraded":
        return False
    return digest_of(report.get("from")) != digest_of(report.get("to"))


def failure_message(cli, reports):
    bad = [r for r in reports if r.get("result") in FAILED_RESULTS]
    if isinstance(cli.data, dict) and cli.data.get("error"):
        return cli.message()
    if bad:
        first = bad[0]
        return "%s %s at %s: %s" % (
            first.get("service"),
            first.get("result"),
            first.get("failed_step") or "?",
            first.get("reason") or "no reason given",
        )
    return cli.message()


def main():
    argument_spec = dict(
        services=dict(type="list", elements="str"),
        all=dict(type="bool", default=False),
        image=dict(type="str"),
        wait=dict(type="float"),
    )
    argument_spec.update(COMMON_ARGUMENT_SPEC)
    module = AnsibleModule(
        argument_spec=argument_spec,
        mutually_exclusive=[("services", "all")],
        supports_check_mode=True,
    )
    if not module.params["services"] and not module.params["all"]:
        module.fail_json(msg="name the services to upgrade, or set all: true")
    if module.params["image"] and (module.params["all"] or len(module.params["services"] or []) != 1):
        module.fail_json(msg="image applies to exactly one service")

    words = ["upgrade"] + service_words(module)
    if module.params["image"]:
        words += ["--image", module.params["image"]]
    if module.params["wait"] is not None:
        words += ["--wait", str(module.params["wait"])]
    if module.check_mode:
        words.append("--dry-run")

    cli = run(module, words)
    data = cli.data if isinstance(cli.data, dict) else {}
    reports = data.get("services") or []
    upgraded = [r.get("service") for r in reports if digest_changed(r, module.check_mode)]
    result = dict(
        changed=bool(upgraded),
        services=reports,
        upgraded=upgraded,
        error=data.get("error"),
        hint=data.get("hint"),
        **cli.as_dict()
    )
    if "diagnostics" in data:
        result["diagnostics"] = data["diagnostics"]
    if not cli.ok or data.get("ok") is False or any(r.get("result") in FAILED_RESULTS for r in reports):
        module.fail_json(msg=failure_message(cli, reports), **result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
