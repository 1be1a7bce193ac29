"""Stand-in for ansible-test's pip bootstrap script (its download host is not reachable here).

ansible-test runs `get_pip_<version>.py` from ~/.ansible/test/cache with pip's install options;
this one installs pip from Python's bundled wheel (ensurepip), then runs `pip install --upgrade`
with those options (minus get-pip's own) against the configured package index.
"""

import ensurepip
import os
import runpy
import ssl
import sys

ensurepip.bootstrap()
# get-pip's own options, not pip's
options = [a for a in sys.argv[1:] if a not in ("--no-setuptools", "--no-wheel")]
# the system's CA bundle (ansible-test passes no pip settings through; pip's own bundle may not do)
cafile = ssl.get_default_verify_paths().cafile or "/etc/ssl/certs/ca-certificates.crt"
if os.path.exists(cafile):
    options = ["--cert", cafile, *options]
sys.argv = ["pip", "install", "--upgrade", *options]
runpy.run_module("pip", run_name="__main__", alter_sys=True)
