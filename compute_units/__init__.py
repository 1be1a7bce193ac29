"""compute-units: OpenStack compute-node services as podman containers under systemd."""

__version__ = "0.1.0"
