"""The service specs and image variants the integration tests, the demo and the benchmarks deploy."""

from __future__ import annotations

SVC_VARIANTS = {
    "v1": {"VERSION": "1"},
    "v2": {"VERSION": "2"},
    "v3": {"VERSION": "3", "HEALTHY": "no"},
    "bad": {"VERSION": "bad", "EXIT_AT_START": "yes"},
}


# the service stand-in's health check takes a second: an upgrade's health step lasts long enough for
# a test to see it in the progress output (on an idle node it came and went between two frames)
SVC_HEALTH = (
    '{command: [sh, -c, "sleep 1; exec /usr/local/bin/healthcheck.sh"], '
    "interval: 30s, timeout: 3s, start_period: 3s}"
)


def svc_spec(reference: str, *, health: str = SVC_HEALTH, extra: str = "") -> str:
    """The spec of the service stand-in (the svc image of SVC_VARIANTS) the integration tests deploy;
    `health` replaces its health mapping, `extra` adds top-level keys (YAML lines)."""
    return f"""
image: {reference}
command: [/usr/local/bin/service.sh]
host_namespaces: [pid, network]
health: {health}
{extra}"""


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


SOCKETS = """  - {source: /var/cache/libvirt, target: /var/cache/libvirt, create: true}
sockets:
  - {path: /run/libvirt/libvirt-sock, name: libvirtd.socket, mode: "0600"}
  - {path: /run/libvirt/libvirt-sock-ro, name: libvirtd-ro.socket, mode: "0666"}
  - {path: /run/libvirt/libvirt-admin-sock, name: libvirtd-admin.socket, mode: "0600"}
"""
SOCKET_UNITS = [
    "nova-libvirt-libvirtd.socket",
    "nova-libvirt-libvirtd-ro.socket",
    "nova-libvirt-libvirtd-admin.socket",
]


def held_spec(reference: str) -> str:
    """The libvirt spec of test_upgrade_vm (libvirt_spec) with the cache kept and the three sockets held."""
    text = libvirt_spec(reference)
    anchor = "devices: [/dev/kvm]\n"
    return text.replace(anchor, SOCKETS + anchor)


def virtlogd_spec(reference: str) -> str:
    """examples/compute-node/modular/nova-virtlogd.yaml's shape, on a test image."""
    return f"""
description: libvirt log daemon (guest console logs)
image: {reference}
command: [/usr/sbin/virtlogd]
host_namespaces: [network]
privileged: true
mounts:
  - {{source: /run/libvirt, target: /run/libvirt, create: true}}
  - {{source: /var/log/libvirt, target: /var/log/libvirt, create: true}}
  - {{source: /var/lib/libvirt, target: /var/lib/libvirt, create: true}}
  - {{source: /var/cache/libvirt, target: /var/cache/libvirt, create: true}}
disruptive: "running guests' console logs stop until each guest restarts (virtlogd holds their pipes)"
sockets:
  - {{path: /run/libvirt/virtlogd-sock, name: virtlogd.socket, mode: "0600"}}
  - {{path: /run/libvirt/virtlogd-admin-sock, name: virtlogd-admin.socket, mode: "0600"}}
health: {{command: [virt-admin, -c, "virtlogd:///system", version], interval: 30s, timeout: 5s, start_period: 10s}}
stop_timeout: 10s
preflight:
  host_units_inactive: [virtlogd.service, virtlogd.socket, virtlogd-admin.socket]
"""


VIRTQEMUD_SOCKET_UNITS = [
    "nova-virtqemud-virtqemud.socket",
    "nova-virtqemud-virtqemud-ro.socket",
    "nova-virtqemud-virtqemud-admin.socket",
]


def virtqemud_spec(reference: str) -> str:
    """examples/compute-node/modular/nova-virtqemud.yaml's shape, on a test image (virtqemud-sandbox:
    see the libvirt-modular image)."""
    return f"""
description: libvirt QEMU daemon, modular (virtqemud + qemu)
image: {reference}
command: [/usr/local/sbin/virtqemud-sandbox]  # /usr/sbin/virtqemud; see the libvirt-modular image
host_namespaces: [pid, network, cgroup]
privileged: true
mounts:
  - /sys:/sys
  - /sys/fs/cgroup:/sys/fs/cgroup
  - {{source: /var/lib/libvirt, target: /var/lib/libvirt, create: true}}
  - {{source: /var/lib/nova, target: /var/lib/nova, create: true}}
  - {{source: /etc/libvirt/qemu, target: /etc/libvirt/qemu, create: true}}
  - {{source: /run/libvirt, target: /run/libvirt, create: true}}
  - {{source: /var/cache/libvirt, target: /var/cache/libvirt, create: true}}
  - {{source: /var/log/libvirt, target: /var/log/libvirt, create: true}}
  - /run/dbus/system_bus_socket:/run/dbus/system_bus_socket
devices: [/dev/kvm]
requires: [nova-virtlogd]
sockets:
  - {{path: /run/libvirt/virtqemud-sock, name: virtqemud.socket, mode: "0600"}}
  - {{path: /run/libvirt/virtqemud-sock-ro, name: virtqemud-ro.socket, mode: "0666"}}
  - {{path: /run/libvirt/virtqemud-admin-sock, name: virtqemud-admin.socket, mode: "0600"}}
health: {{command: [virsh, -c, "qemu:///system", version], interval: 30s, timeout: 5s, start_period: 20s}}
stop_timeout: 10s
keeps_vms: true
preflight:
  host_units_inactive: [libvirtd.service, libvirtd.socket, virtqemud.service, virtqemud.socket]
  paths: [/dev/kvm]
"""
