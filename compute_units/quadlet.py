"""Services → Quadlet `.container` files (podman ≥ 4.4). Pure: a Service in, file text out.

The file is a `unitfile.Unit`: its [Unit], [Service] and [Install] sections are those of our own
unit (`render.service_unit(..., quadlet=True)`), its [Container] section is built here.

The container is described by the very argv our own units run (`render.podman_run_argv`), split
into the Quadlet keys that exist for it; everything else goes to `PodmanArgs=`. So a Quadlet unit
and a compute-units unit of one spec start the same container.

What was checked in podman's source (pkg/systemd/quadlet/quadlet.go and pkg/systemd/parser/ at
the tags v4.4.0, v4.5.0, v5.0.0):

* [Unit], [Service] and [Install] are copied into the generated unit (`service := container.Dup()`;
  only [Container] is renamed X-Container). Quadlet then adds Environment=PODMAN_SYSTEMD_UNIT=%n,
  Delegate=yes, ExecStopPost=, RequiresMountsFor=, ExecStart=, sets Type=notify and
  NotifyAccess=all, SyslogIdentifier=%N when absent, and KillMode=mixed when absent (any KillMode
  other than mixed or control-group is an error). KillSignal=, SuccessExitStatus=, TimeoutStopSec=,
  Restart=, ExecStartPre= and ExecStop= pass through untouched, so keeps_vms' KillSignal=SIGKILL
  works. 4.4 adds no ExecStop=; 4.5 adds `ExecStop=podman rm -f -i --cidfile=%t/%N.cid` after ours.
* An unknown key in [Container] makes Quadlet reject the whole file, and 4.4 knows only:
  ContainerName Image Environment EnvironmentFile EnvironmentHost Exec NoNewPrivileges
  DropCapability AddCapability ReadOnly RemapUsers RemapUid RemapGid RemapUidSize Notify
  ExposeHostPort PublishPort User Group Volume PodmanArgs Label Annotation RunInit VolatileTmp
  Timezone SeccompProfile AddDevice Network. Secret= and Health*= (and LogDriver=, Mount=) come
  with 4.5, StopTimeout= and Entrypoint= with 5.0; none exists for --pid, --ipc, --uts,
  --cgroupns or --privileged. So `version` (4.4 by default) decides which keys are used.
* Escaping. Exec=, Environment=, Label=, PodmanArgs= (and Secret= in 4.5) are split like
  ExecStart= (quotes removed, C escapes \\\\ \\" \\n ... decoded); an unknown escape such as \\;
  makes the split fail and the key is silently ignored, and an empty word ("") ends the split,
  dropping it and every later word. Volume=, Network=, Image=, HealthCmd= are taken raw (no
  unquoting); AddDevice= is unquoted with backslashes kept. Quadlet re-quotes every word when it
  writes ExecStart= but escapes neither % nor $, so systemd then expands specifiers and
  variables in them: a literal % must be written %% and $ as $$. The parser joins a line ending
  in a backslash with the next one, and only '#' starts a comment.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Sequence
from dataclasses import dataclass

from . import options, render, secretplan
from .errors import UsageError
from .model import Service
from .names import TARGET_NAME
from .unitfile import Unit, section

MIN_VERSION = (4, 4)
NATIVE_KEYS_VERSION = (4, 5)  # Secret=, HealthCmd=..., LogDriver=

# podman run options Quadlet itself passes (with its own values): left out
_QUADLET_SETS = {
    n for o in options.OPTIONS if o.quadlet == options.QUADLET_SETS for n in (o.flag, *o.aliases)
}
_HEALTH_KEYS = {o.flag: o.quadlet for o in options.OPTIONS if o.owner == "health" and o.quadlet}
_NO_KEY = tuple(o.flag for o in options.OPTIONS if o.quadlet == options.NO_QUADLET_KEY)
_PLAIN = re.compile(r"[A-Za-z0-9/_.:,+=@-]+\Z")  # safe raw in Volume=/AddDevice= and RequiresMountsFor=
_NEEDS_QUOTES = re.compile(r"[\s\"'\\]")


class QuadletError(UsageError):
    """A service that a Quadlet file cannot carry."""


@dataclass(frozen=True)
class QuadletFile:
    name: str  # <service>.container
    text: str
    limits: tuple[str, ...]  # what Quadlet cannot express for this service (also in the header)


def parse_version(text: str) -> tuple[int, int]:
    match = re.fullmatch(r"(\d+)\.(\d+)(?:\.\d+)?", text.strip())
    if not match:
        raise UsageError(f"--podman-version '{text}': expected a version such as 4.4 or 4.9.3")
    version = (int(match.group(1)), int(match.group(2)))
    if version < MIN_VERSION:
        raise UsageError(
            f"--podman-version {text}: Quadlet needs podman 4.4 or later",
            hint="on older podman, use the units of `compute-units generate`",
        )
    return version


def word(arg: str) -> str:
    """One argument for an exec-like Quadlet key (Exec=, PodmanArgs=, Environment=, Label=)."""
    if arg == "":
        raise QuadletError("an empty argument cannot pass through Quadlet (its parser ends the line there)")
    if arg == ";":
        raise QuadletError(
            "the argument ';' cannot pass through Quadlet (it cannot be escaped there, and systemd "
            "reads a lone ';' as a command separator)"
        )
    arg = arg.replace("%", "%%").replace("$", "$$")
    if _NEEDS_QUOTES.search(arg):
        return '"' + arg.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return arg


def words(argv: Sequence[str]) -> str:
    return " ".join(word(a) for a in argv)


def raw(value: str) -> str:
    """A value for a raw key (Volume=, HealthCmd=): only specifiers and variables are escaped."""
    return value.replace("%", "%%").replace("$", "$$")


def container_file(
    service: Service,
    *,
    image: str,
    options: render.RenderOptions | None = None,
    version: tuple[int, int] = MIN_VERSION,
) -> QuadletFile:
    """The `.container` file of one service; QuadletError when something cannot be carried."""
    try:
        return _container_file(service, image, options or render.RenderOptions(), version)
    except QuadletError as exc:
        raise QuadletError(f"{service.name}: {exc.message}", hint=exc.hint) from None


def _container_file(
    service: Service, image: str, options: render.RenderOptions, version: tuple[int, int]
) -> QuadletFile:
    native = version >= NATIVE_KEYS_VERSION
    # the secrets follow the podman the file is for, as the units follow the host's podman
    options = dataclasses.replace(options, podman_version=version)
    secrets = render.secret_plan(service, image, options)
    argv = render.podman_run_argv(service, image, options.podman, secrets)[2:]
    at = next(i for i, a in enumerate(argv) if not a.startswith("-"))
    run_options, command = argv[:at], argv[at + 1 :]

    container: list[tuple[str, str]] = [("Image", image)]
    podman_args: list[str] = []
    for option in run_options:
        name, _, value = option.partition("=")
        if name in _QUADLET_SETS:
            continue
        if name == "--name":
            container.append(("ContainerName", value))
        elif name == "--label":
            container.append(("Label", word(value)))
        elif name == "--network" and value == "host":
            container.append(("Network", "host"))
        elif name == "--volume" and _PLAIN.match(value):
            container.append(("Volume", value))
        elif name == "--device" and _PLAIN.match(value):
            container.append(("AddDevice", value))
        elif name == "--env":
            container.append(("Environment", word(value)))
        elif name == "--secret" and native:
            container.append(("Secret", word(value)))
        elif name in _HEALTH_KEYS and native:
            container.append((_HEALTH_KEYS[name], raw(value)))
        elif name == "--log-driver" and native:
            container.append(("LogDriver", value))
        else:
            podman_args.append(option)
    # podman's own stop timeout: used by `podman stop` without -t and by Quadlet 4.5's `podman rm -f`
    podman_args.append(f"--stop-timeout={service.stop_timeout_s}")
    container += [("PodmanArgs", word(a)) for a in podman_args]
    if command:
        container.append(("Exec", words(command)))

    limits = _limits(service, podman_args, native, secrets.mode if secrets else None)
    header = [
        f"{service.name}.container: generated by `compute-units export --quadlet` from {service.source}",
        f"Quadlet file for podman >= {version[0]}.{version[1]}: copy it to /etc/containers/systemd/ and run",
        f"`systemctl daemon-reload`; Quadlet's generator turns it into {service.unit}.",
        "What Quadlet cannot express for this service, and what this file does instead:",
        *(f"  - {line}" for line in limits),
    ]
    # [Unit], [Service] and [Install] are our unit's, which Quadlet copies into the unit it makes
    systemd = render.service_unit(service, options, image=image, quadlet=True)
    unit = Unit(
        f"{service.name}.container",
        tuple(f"# {h}" for h in header),
        (
            systemd.section("Unit"),
            section("Container", container),
            systemd.section("Service"),
            systemd.section("Install"),
        ),
    )
    return QuadletFile(unit.name, unit.text, tuple(limits))


def _limits(service: Service, podman_args: Sequence[str], native: bool, secrets: str | None) -> list[str]:
    """The comment lines: what has no Quadlet key, and how this file carries it anyway."""
    names = [a.partition("=")[0] for a in podman_args]
    limits: list[str] = []
    no_key = [a for a in podman_args if a.partition("=")[0] in _NO_KEY]
    if no_key:
        limits.append(f"{', '.join(no_key)}: no Quadlet keys exist for these; passed with PodmanArgs=")
    if service.secrets:
        if not native:
            limits.append("secrets: Quadlet 4.4 has no Secret= (4.5 has); passed with PodmanArgs=--secret=")
        if secrets == "loader":
            limits.append(
                "secrets are mounted files turned into variables by a /bin/sh entrypoint that runs the "
                "image's ENTRYPOINT and CMD, as in compute-units units (before podman 5.3, type=env "
                "secrets show their values in `podman inspect`); there is no Entrypoint= before "
                "podman 5.0: passed with PodmanArgs=--entrypoint="
            )
        files = [s for s in service.secrets if s.file is not None]
        if files:
            pairs = ", ".join(
                f"{secretplan.podman_secret_name(service, s.variable)} <- {s.file}" for s in files
            )
            limits.append(
                f"file secrets are podman secrets named as in compute-units units ({pairs}); ExecStartPre= "
                "recreates them from the files at each start (or create them once with "
                "`podman secret create NAME FILE` and drop those lines)"
            )
    if service.health is not None and not native:
        limits.append("health check: Quadlet 4.4 has no Health*= keys (4.5 has); passed with PodmanArgs=")
    limits.append(
        f"stop timeout {service.stop_timeout_s}s: no StopTimeout= before podman 5.0; PodmanArgs=--stop-timeout=, "
        f"ExecStop=podman stop -t {service.stop_timeout_s} and TimeoutStopSec= in [Service]"
    )
    if service.keeps_vms:
        limits.append(
            "keeps_vms: KillSignal=SIGKILL and SuccessExitStatus=143 SIGKILL are [Service] settings, "
            "which Quadlet copies into the unit unchanged; the VM-survival checks before and after a "
            "restart exist only in `compute-units upgrade`"
        )
    if any(m.create for m in service.mounts):
        limits.append("mounts with create: true: ExecStartPre=/bin/mkdir -p in [Service]")
    if any(n in ("--volume", "--device") for n in names):
        limits.append(
            "paths with blanks, quotes, backslashes, % or $ are passed with PodmanArgs=--volume=/--device= "
            "(raw Volume=/AddDevice= values cannot carry them); Quadlet adds no RequiresMountsFor= for them"
        )
    if service.podman_args:
        limits.append(f"podman_args: passed with PodmanArgs= ({' '.join(service.podman_args)})")
    if not native:
        limits.append(
            "log driver journald: Quadlet 4.4 passes --log-driver passthrough; PodmanArgs=--log-driver= "
            "comes later on the command line and wins"
        )
        limits.append(
            "Quadlet 4.4 always runs podman with --runtime /usr/bin/crun (4.5 dropped this): crun must be "
            "installed there"
        )
    if service.preflight.kernel_modules or service.preflight.host_units_inactive or service.preflight.paths:
        limits.append(
            "preflight checks (kernel modules, inactive host units, paths) run only in compute-units"
        )
    if service.requires:
        deps = ", ".join(f"{d}.service" for d in service.requires)
        limits.append(
            f"requires: Requires=/After= {deps} must exist (a Quadlet file or a compute-units unit)"
        )
    limits.append(
        f"WantedBy={TARGET_NAME}: the target comes from `compute-units generate`; without it, enable the "
        "unit another way"
    )
    limits.append(
        "compute-units upgrade/rollback/status work on the units of `compute-units generate` only, and "
        f"/etc/systemd/system/{service.unit} from it would hide this unit: install one or the other"
    )
    return limits
