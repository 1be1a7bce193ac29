"""Upgrade's part of sockets (`sockets:`): the health step fails when a socket unit of the restarted
service (or of a dependent) is not active, as new clients would be refused. (The socket units are
written with the service's unit: `Upgrader.render_units`.)"""

from __future__ import annotations

from collections.abc import Callable

from .effects import SystemdApi
from .model import Service


def check_held(systemd: SystemdApi, service: Service, failed: Callable[[str, str], Exception]) -> None:
    """Raises failed("health", why) when a socket unit of `service` is not active."""
    for name in service.socket_units:  # clients wait in these while the service restarts
        if (st := systemd.state(name)).active_state != "active":
            raise failed(
                "health", f"{name} is {st.active_state}/{st.sub_state}: {service.name}'s socket is not held"
            )
