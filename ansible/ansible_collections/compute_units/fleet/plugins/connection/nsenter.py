# Copyright: compute-units developers
# Apache License 2.0 (see LICENSE in the compute-units repository)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
name: nsenter
short_description: Run tasks inside another process's namespaces (a sandbox node) with nsenter
description:
  - Runs every command as C(nsenter -t PID -a -r -- /bin/sh -c CMD) on the controller, so a task runs inside
    the namespaces (mount, PID, cgroup, UTS, IPC, network) of process PID, typically the systemd of a
    sandbox test node (C(compute_units_dev/node.py)). Files are copied in and out through C(cat) inside the node.
  - Needs root on the controller; the node must share the controller's machine.
version_added: 0.1.0
author: Compute Units Developers (@compute-units)
options:
  pid:
    description: PID of the process whose namespaces to enter (the node's PID 1, seen from the controller).
    type: int
    required: true
    vars:
      - name: ansible_nsenter_pid
  nsenter_path:
    description: The nsenter command on the controller.
    type: str
    default: nsenter
    vars:
      - name: ansible_nsenter_path
"""

import os
import subprocess

from ansible.errors import AnsibleConnectionFailure, AnsibleError
from ansible.module_utils.common.text.converters import to_bytes, to_native
from ansible.plugins.connection import ConnectionBase


class Connection(ConnectionBase):
    """nsenter into a process's namespaces; no daemon, no port, no keys."""

    transport = "compute_units.fleet.nsenter"
    has_pipelining = True

    def _prefix(self):
        return [self.get_option("nsenter_path"), "-t", str(self.get_option("pid")), "-a", "-r", "--"]

    def _connect(self):
        if not self._connected:
            pid = self.get_option("pid")
            if not os.path.isdir("/proc/%d" % pid):
                raise AnsibleConnectionFailure("no process %d to enter: is the node running?" % pid)
            self._connected = True
        return self

    def exec_command(self, cmd, in_data=None, sudoable=True):
        super(Connection, self).exec_command(cmd, in_data=in_data, sudoable=sudoable)
        self._connect()
        argv = self._prefix() + ["/bin/sh", "-c", cmd]
        self._display.vvv("EXEC %s" % argv, host=self._play_context.remote_addr)
        try:
            proc = subprocess.Popen(
                [to_bytes(a, errors="surrogate_or_strict") for a in argv],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
            )
        except OSError as exc:
            raise AnsibleConnectionFailure("cannot run %s: %s" % (argv[0], to_native(exc)))
        stdout, stderr = proc.communicate(in_data)
        return proc.returncode, stdout, stderr

    def _copy(self, argv, stdin, stdout, what):
        proc = subprocess.run(argv, stdin=stdin, stdout=stdout, stderr=subprocess.PIPE, check=False)
        if proc.returncode != 0:
            raise AnsibleError("%s failed (exit %d): %s" % (what, proc.returncode, to_native(proc.stderr).strip()))

    def put_file(self, in_path, out_path):
        super(Connection, self).put_file(in_path, out_path)
        self._connect()
        if not os.path.isfile(to_bytes(in_path, errors="surrogate_or_strict")):
            raise AnsibleError("file to copy into the node does not exist: %s" % in_path)
        argv = self._prefix() + ["/bin/sh", "-c", 'cat > "$1"', "sh", out_path]
        with open(to_bytes(in_path, errors="surrogate_or_strict"), "rb") as source:
            self._copy(argv, source, subprocess.DEVNULL, "copy of %s into the node at %s" % (in_path, out_path))

    def fetch_file(self, in_path, out_path):
        super(Connection, self).fetch_file(in_path, out_path)
        self._connect()
        argv = self._prefix() + ["cat", "--", in_path]
        with open(to_bytes(out_path, errors="surrogate_or_strict"), "wb") as target:
            self._copy(argv, subprocess.DEVNULL, target, "copy of %s out of the node to %s" % (in_path, out_path))

    def close(self):
        self._connected = False
