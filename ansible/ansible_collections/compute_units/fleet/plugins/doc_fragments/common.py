# Copyright: compute-units developers
# Apache License 2.0 (see LICENSE in the compute-units repository)

from __future__ import absolute_import, division, print_function

__metaclass__ = type


class ModuleDocFragment(object):
    DOCUMENTATION = r"""
options:
  executable:
    description:
      - The C(compute-units) command to run on the managed node, a name looked up on C(PATH) or a path.
    type: path
    default: compute-units
  spec:
    description:
      - Spec files or directories, passed as C(--spec) (repeatable).
      - Default is the CLI's search path C(/etc/compute-units/services), C(/run/compute-units/services),
        C(/usr/share/compute-units/services).
    type: list
    elements: path
notes:
  - The module runs C(compute-units ... --json) and reads only its JSON output.
  - "Exit codes of the CLI: 0 ok, 1 an operation failed, 2 invalid spec or command line, 3 host not ready
    or preflight refused, 4 needs root, 5 upgrade failed and was rolled back; any other code is a failure."
requirements:
  - compute-units on the managed node
"""
