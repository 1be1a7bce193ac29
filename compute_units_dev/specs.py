"""The service specs and image variants the integration tests, the demo and the benchmarks deploy."""

from __future__ import annotations

SVC_VARIANTS = {
    "v1": {"VERSION": "1"},
    "v2": {"VERSION": "2"},
    "v3": {"VERSION": "3", "HEALTHY": "no"},
    "bad": {"VERSION": "bad", "EXIT_AT_START": "yes"},
}


def libvirt_spec(reference: str) -> str:
    return f"""
description: Nova libvirt (libvirtd + qemu)
image: {reference}
command: [/usr/local/sbin/libvirtd-sandbox]  # /usr/sbin/libvirtd; see the libvirt-version image
host_namespaces: [pid, network, cgroup]
privileged: true
mounts:
  - /sys:/sys
  - /sys/fs/cgroup:/sys/fs/cgroup
  - /run/dbus/system_bus_socket:/run/dbus/system_bus_socket
  - {{source: /var/lib/libvirt, target: /var/lib/libvirt, create: true}}
  - {{source: /var/lib/nova, target: /var/lib/nova, create: true}}
  - {{source: /run/libvirt, target: /run/libvirt, create: true}}
  - {{source: /var/log/libvirt, target: /var/log/libvirt, create: true}}
  - {{source: /etc/libvirt/qemu, target: /etc/libvirt/qemu, create: true}}
devices: [/dev/kvm]
health: {{command: [virsh, -c, "qemu:///system", list], interval: 30s, timeout: 5s, start_period: 15s}}
stop_timeout: 10s
keeps_vms: true
preflight:
  host_units_inactive: [libvirtd.service, libvirtd.socket]
  paths: [/dev/kvm]
"""


def compute_spec(reference: str) -> str:
    """nova-compute stand-in: healthy only while libvirt's socket is there."""
    return f"""
description: Nova compute (stand-in)
image: {reference}
command: [/usr/local/bin/service.sh]
host_namespaces: [pid, network]
mounts: [{{source: /run/libvirt, target: /run/libvirt, create: true}}]
health: {{command: [test, -S, /run/libvirt/libvirt-sock], interval: 30s, timeout: 5s, start_period: 10s}}
requires: [nova-libvirt]
"""
