"""Development tooling shared by the tests, `make demo` and `make bench` (not shipped in the RPM or
wheel): the sandbox systemd node (`node`, `rootfs`), test images and a local registry (`images`),
the KVM guest through libvirt (`libvirt`), the QMP sampler (`sampler`), the host check
(`hostcheck`), the service specs they deploy (`specs`), and the demo (`demo`, `make demo`).
pytest fixtures built on it live in tests/harness/.
"""
