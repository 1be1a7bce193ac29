"""The one registry of podman `run` options compute-units knows about.

For each option: its podman spelling and aliases (short forms, docker spellings the importer
accepts), whether it takes a value, the spec key that owns it (or that compute-units sets it for
systemd), its Quadlet key, and whether a spec's `podman_args:` may carry it (and if not, why).
The spec checker, the importer, the unit renderer and the Quadlet export all read this table.

`podman_args:` is an allow-list: an option is accepted there only when it is in this table with
no owner, not set for systemd, and no refusal reason (`PodmanOption.passes`).
"""

from __future__ import annotations

from dataclasses import dataclass

# Quadlet key values that are not Quadlet keys
QUADLET_SETS = "(Quadlet sets it)"  # Quadlet passes this option itself, with its own value
NO_QUADLET_KEY = "PodmanArgs"  # a typed option with no Quadlet key: the export says so

TERMINAL_REASON = "meaningless under systemd: the container runs detached, without a terminal"
USERS_REASON = (
    "users and user namespaces are part of the privilege model, which compute-units fixes "
    "(root in the host user namespace); set the user in the image"
)
CAPS_REASON = "capabilities are part of the privilege model; use privileged: true"
SECURITY_REASON = "security options change the privilege model; use privileged: true"
CGROUP_REASON = "the container's cgroup is the unit's: resource settings go through the limit options"
PODS_REASON = "compute-units runs one container per unit, without pods"
IMAGE_REASON = "image selection is the image reference's job"
CREDENTIALS_REASON = "registry credentials are podman's configuration, not the spec's"
NETWORK_REASON = "compute-units services use the host network or the default one"
WINDOWS_REASON = "a Windows-only option"
STARTUP_HEALTH_REASON = "startup health checks cannot be expressed in a spec"


@dataclass(frozen=True)
class PodmanOption:
    flag: str  # podman's canonical spelling
    takes_value: bool
    aliases: tuple[str, ...] = ()
    owner: str | None = None  # the spec key that sets it
    systemd: bool = False  # set by compute-units for systemd
    terminal: bool = False  # a foreground/terminal option (the importer notes and ignores it)
    reason: str | None = None  # why podman_args may not carry it (owner/systemd speak for themselves)
    import_error: bool = False  # the importer refuses a line with it (`reason` says why)
    namespace: str | None = None  # the host_namespaces entry it stands for
    quadlet: str | None = None  # Quadlet key; QUADLET_SETS; NO_QUADLET_KEY; None: PodmanArgs=
    quadlet_since: tuple[int, int] | None = None  # the podman version that has that Quadlet key

    @property
    def passes(self) -> bool:
        """May a spec's podman_args carry it (and the importer copy it there)?"""
        return self.owner is None and not self.systemd and self.reason is None and not self.import_error

    def refusal(self, written: str) -> tuple[str, str | None] | None:
        """Why podman_args may not carry it (spelt `written`): (message, hint), or None when it may."""
        if self.owner is not None:
            return (
                f"{written} conflicts with the typed option '{self.owner}'",
                f"use the spec key '{self.owner}' instead",
            )
        if self.systemd:
            return f"{written} is set by compute-units and cannot be changed", None
        if self.reason is not None:
            return f"{written} cannot be given in podman_args: {self.reason}", None
        return None


def _o(flag: str, takes_value: bool = True, *aliases: str, **kw: object) -> PodmanOption:
    return PodmanOption(flag, takes_value, aliases, **kw)  # type: ignore[arg-type]


def _typed() -> list[PodmanOption]:
    h45 = (4, 5)
    ns = "host_namespaces"
    return [
        _o("--name", owner="name", quadlet="ContainerName"),
        _o("--pid", owner=ns, namespace="pid", quadlet=NO_QUADLET_KEY),
        _o("--network", True, "--net", owner=ns, namespace="network", quadlet="Network"),
        _o("--ipc", owner=ns, namespace="ipc", quadlet=NO_QUADLET_KEY),
        _o("--uts", owner=ns, namespace="uts", quadlet=NO_QUADLET_KEY),
        _o("--cgroupns", owner=ns, namespace="cgroup", quadlet=NO_QUADLET_KEY),
        _o("--privileged", False, owner="privileged", quadlet=NO_QUADLET_KEY),
        _o("--volume", True, "-v", owner="mounts", quadlet="Volume"),
        _o("--mount", owner="mounts"),
        _o("--device", owner="devices", quadlet="AddDevice"),
        _o("--env", True, "-e", owner="environment", quadlet="Environment"),
        _o("--env-file", owner="environment"),
        _o("--secret", owner="secrets", quadlet="Secret", quadlet_since=h45),
        _o("--health-cmd", owner="health", quadlet="HealthCmd", quadlet_since=h45),
        _o("--health-interval", owner="health", quadlet="HealthInterval", quadlet_since=h45),
        _o("--health-timeout", owner="health", quadlet="HealthTimeout", quadlet_since=h45),
        _o("--health-start-period", owner="health", quadlet="HealthStartPeriod", quadlet_since=h45),
        _o("--health-retries", owner="health", quadlet="HealthRetries", quadlet_since=h45),
        _o("--stop-timeout", owner="stop_timeout"),
        _o("--restart", owner="restart"),
        # mapped by the importer to typed keys or checked against them, but free in podman_args
        _o("--entrypoint"),
        _o("--init", False),
        _o("--label", True, "-l", quadlet="Label"),
        _o("--publish", True, "-p"),
        _o("--publish-all", False, "-P"),
        _o("--no-healthcheck", False),
    ]


def _systemd() -> list[PodmanOption]:
    return [
        _o("--detach", False, "-d", systemd=True, terminal=True, quadlet=QUADLET_SETS),
        _o("--rm", False, systemd=True, terminal=True, quadlet=QUADLET_SETS),
        _o("--cidfile", systemd=True, quadlet=QUADLET_SETS),
        _o("--replace", False, systemd=True, quadlet=QUADLET_SETS),
        _o("--sdnotify", systemd=True, quadlet=QUADLET_SETS),
        _o("--cgroups", systemd=True, quadlet=QUADLET_SETS),
        _o("--log-driver", systemd=True, quadlet="LogDriver", quadlet_since=(4, 5)),
        _o("--conmon-pidfile", systemd=True),
        _o("--cgroup-parent", systemd=True),
    ]


def _terminal() -> list[PodmanOption]:
    t = TERMINAL_REASON
    return [
        _o("--interactive", False, "-i", terminal=True, reason=t),
        _o("--tty", False, "-t", terminal=True, reason=t),
        _o("--attach", True, "-a", terminal=True, reason=t),
        _o("--detach-keys", terminal=True, reason=t),
        _o("--sig-proxy", False, terminal=True, reason=t),
        _o("--quiet", False, "-q", terminal=True, reason=t),
        _o("--disable-content-trust", False, terminal=True, reason=t),
    ]


_PASS_VALUED = [
    "--add-host",
    "--annotation",
    "--blkio-weight",
    "--blkio-weight-device",
    "--cap-add",
    "--cap-drop",
    "--cgroup-conf",
    "--chrootdirs",
    "--cpu-period",
    "--cpu-quota",
    "--cpu-rt-period",
    "--cpu-rt-runtime",
    "--cpu-shares:-c",
    "--cpus",
    "--cpuset-cpus",
    "--cpuset-mems",
    "--device-cgroup-rule",
    "--device-read-bps",
    "--device-read-iops",
    "--device-write-bps",
    "--device-write-iops",
    "--dns",
    "--dns-option:--dns-opt",
    "--dns-search",
    "--expose",
    "--gidmap",
    "--group-add",
    "--health-on-failure",
    "--hostname:-h",
    "--hostuser",
    "--image-volume",
    "--init-path",
    "--ip",
    "--ip6",
    "--log-opt",
    "--mac-address",
    "--memory:-m",
    "--memory-reservation",
    "--memory-swap",
    "--memory-swappiness",
    "--oom-score-adj",
    "--passwd-entry",
    "--personality",
    "--pids-limit",
    "--runtime",
    "--seccomp-policy",
    "--security-opt",
    "--shm-size",
    "--stop-signal",
    "--storage-opt",
    "--subgidname",
    "--subuidname",
    "--sysctl",
    "--systemd",
    "--timeout",
    "--tmpfs",
    "--tz",
    "--uidmap",
    "--ulimit",
    "--umask",
    "--unsetenv",
    "--user:-u",
    "--userns",
    "--workdir:-w",
]
_PASS_BOOLEAN = ("--oom-kill-disable", "--read-only", "--read-only-tmpfs", "--no-hosts", "--http-proxy")


_REFUSED_PASS = {
    "--cap-add": CAPS_REASON,
    "--security-opt": SECURITY_REASON,
    "--cgroup-conf": CGROUP_REASON,
    **dict.fromkeys(
        (
            "--user",
            "--userns",
            "--group-add",
            "--uidmap",
            "--gidmap",
            "--subuidname",
            "--subgidname",
            "--hostuser",
            "--passwd-entry",
        ),
        USERS_REASON,
    ),
}
_OWNED_PASS = {"--device-cgroup-rule": "devices"}


def _passed() -> list[PodmanOption]:
    result = []
    for item in _PASS_VALUED:
        flag, *aliases = item.split(":")
        result.append(_o(flag, True, *aliases, reason=_REFUSED_PASS.get(flag), owner=_OWNED_PASS.get(flag)))
    return result + [_o(flag, False) for flag in _PASS_BOOLEAN]


def _dropped() -> list[PodmanOption]:
    r = {
        "--pull": "compute-units pulls images itself (compute-units upgrade)",
        "--pod": PODS_REASON,
        "--pod-id-file": PODS_REASON,
        "--requires": "podman container dependencies are not services; use requires: in the spec",
        "--volumes-from": "volumes of another container cannot be expressed; add them as mounts",
        "--link": "legacy container links cannot be expressed",
        "--network-alias": NETWORK_REASON,
        "--link-local-ip": NETWORK_REASON,
        "--label-file": "labels from a file are not read; add them to podman_args as --label=KEY=VALUE",
        "--env-merge": "cannot be expressed in a spec",
        "--preserve-fds": "systemd passes no extra file descriptors",
        "--pidfile": "compute-units tracks the container with its own cidfile",
        "--platform": IMAGE_REASON,
        "--arch": IMAGE_REASON,
        "--os": IMAGE_REASON,
        "--variant": IMAGE_REASON,
        "--authfile": CREDENTIALS_REASON,
        "--creds": CREDENTIALS_REASON,
        "--cert-dir": CREDENTIALS_REASON,
        "--decryption-key": "image decryption cannot be expressed in a spec",
        "--volume-driver": "only bind mounts of host paths can be expressed",
        "--isolation": WINDOWS_REASON,
        "--cpu-count": WINDOWS_REASON,
        "--cpu-percent": WINDOWS_REASON,
        "--io-maxbandwidth": WINDOWS_REASON,
        "--io-maxiops": WINDOWS_REASON,
        "--gpus": "not supported by podman; use devices: or podman_args with --device=nvidia.com/gpu=all",
        "--kernel-memory": "deprecated and ignored by current kernels",
        "--domainname": "not supported by podman",
        "--health-startup-cmd": STARTUP_HEALTH_REASON,
        "--health-startup-interval": STARTUP_HEALTH_REASON,
        "--health-startup-retries": STARTUP_HEALTH_REASON,
        "--health-startup-success": STARTUP_HEALTH_REASON,
        "--health-startup-timeout": STARTUP_HEALTH_REASON,
    }
    booleans = [
        _o("--env-host", False, reason="the environment of the systemd unit is not the shell's"),
        _o("--tls-verify", False, reason="registry settings are podman's configuration, not the spec's"),
    ]
    errors = [
        _o("--rootfs", False, reason="--rootfs runs a directory, not an image; only images can be imported"),
        _o("--help", False, reason="--help is not a container option"),
    ]
    errors = [PodmanOption(o.flag, o.takes_value, reason=o.reason, import_error=True) for o in errors]
    owners = {"--volumes-from": "mounts", "--env-merge": "environment", "--env-host": "environment"}
    dropped = [_o(flag, reason=why, owner=owners.get(flag)) for flag, why in r.items()]
    booleans = [PodmanOption(o.flag, False, reason=o.reason, owner=owners.get(o.flag)) for o in booleans]
    return dropped + booleans + errors


OPTIONS: tuple[PodmanOption, ...] = (*_typed(), *_systemd(), *_terminal(), *_passed(), *_dropped())
_BY_NAME: dict[str, PodmanOption] = {
    name: option for option in OPTIONS for name in (option.flag, *option.aliases)
}
SENSITIVE = frozenset({"--creds", "--decryption-key"})  # values never shown in messages


def lookup(name: str) -> PodmanOption | None:
    """The option spelt `name` (canonical or alias), or None when compute-units does not know it."""
    return _BY_NAME.get(name)


def canonical(name: str) -> str:
    option = _BY_NAME.get(name)
    return option.flag if option is not None else name


def namespace_flag(namespace: str) -> str:
    """The podman option that shares a host namespace: 'pid' -> '--pid=host'."""
    flag = next(o.flag for o in OPTIONS if o.namespace == namespace)
    return f"{flag}=host"


def namespace_of(flag: str) -> str | None:
    option = _BY_NAME.get(flag)
    return option.namespace if option is not None else None


def quadlet_key(name: str) -> str | None:
    option = _BY_NAME.get(name)
    return option.quadlet if option is not None else None
