"""Render services into systemd unit texts. Pure: `ServiceSet` in, `{file name: text}` out.

Each unit is first built as a `unitfile.Unit` (`service_unit`, `target_unit`), which decides every
line; templates only print it. Only reads template files. The podman command line is built here
as an argv (a list) and escaped once, for systemd's ExecStart= rules, by `exec_line`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import jinja2

from . import __version__, options, secretplan
from .disruptive import UNIT_KEY as DISRUPTIVE_KEY
from .errors import UsageError
from .model import NAMESPACES, Service, ServiceSet
from .names import MARKER, TARGET_NAME
from .secretplan import ImageConfig, podman_secret_name
from .unitfile import Line, Unit, comment, comments, section

SERVICE_TEMPLATE = "service.j2"
TARGET_TEMPLATE = "target.j2"
STOP_TIMEOUT_MARGIN_S = 30

_NEEDS_QUOTES = re.compile(r"[\s\"'\\]")


class Specified(str):
    """A word of ours that contains intended systemd specifiers (%t, %n): % is not escaped."""


CIDFILE = Specified("--cidfile=%t/%n.ctr-id")
QUADLET_CIDFILE = Specified("--cidfile=%t/%N.cid")  # where Quadlet keeps the container id


@dataclass(frozen=True)
class RenderOptions:
    podman: str = "/usr/bin/podman"
    template_dirs: tuple[Path, ...] = ()
    # pinned references (repository[:tag]@sha256:...) by service name, from the upgrade state
    pins: Mapping[str, str] = field(default_factory=dict)
    start_limit_interval: str = "10min"
    start_limit_burst: int = 20
    # facts about the host that secrets depend on (facts.py detects them): podman's version, and
    # for podman < 5.3 the ENTRYPOINT and CMD of the images that services with secrets run
    podman_version: tuple[int, ...] | None = None
    images: Mapping[str, ImageConfig] = field(default_factory=dict)


def builtin_template_dirs() -> list[Path]:
    """Templates shipped with the package, then the source tree's (for running from a checkout)."""
    here = Path(__file__).resolve().parent
    candidates = [here / "templates", here.parent / "templates", Path("/usr/share/compute-units/templates")]
    return [c for c in candidates if (c / SERVICE_TEMPLATE).is_file()]


def make_environment(template_dirs: Sequence[Path]) -> jinja2.Environment:
    """User directories first, so a file of the same name overrides the built-in template."""
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader([str(d) for d in [*template_dirs, *builtin_template_dirs()]]),
        undefined=jinja2.StrictUndefined,
        autoescape=False,
        keep_trailing_newline=True,
        trim_blocks=False,
    )
    env.filters["unit_value"] = unit_value
    return env


def render_all(services: ServiceSet, options: RenderOptions | None = None) -> dict[str, str]:
    """Every unit file of the node: one `.service` per service plus the target.

    The units are built as `unitfile.Unit`s (`service_unit`, `target_unit`), then printed by the
    template of their kind (service.j2, target.j2), which a site may override by file name. A
    broken template (syntax, undefined variable) raises TemplateError naming file and line.
    """
    options = options or RenderOptions()
    env = make_environment(options.template_dirs)
    try:
        service_template = env.get_template(SERVICE_TEMPLATE)
        rendered: dict[str, str] = {}
        for service in services:
            image = image_for(service, options)
            unit = service_unit(service, options, image=image)
            rendered[unit.name] = service_template.render(service_context(service, unit, options, image))
        target = target_unit(services)
        rendered[target.name] = env.get_template(TARGET_TEMPLATE).render(
            unit=target, marker=MARKER, services=list(services), version=__version__
        )
    except jinja2.TemplateSyntaxError as exc:
        raise TemplateError(f"template {exc.filename}:{exc.lineno}: {exc.message}") from exc
    except jinja2.TemplateError as exc:
        raise TemplateError(f"template {_template_position(exc)}: {exc.message}") from exc
    return rendered


class TemplateError(UsageError):
    def __init__(self, message: str) -> None:
        super().__init__(message, hint="fix the template or remove it to use the built-in one")


def _template_position(exc: BaseException) -> str:
    """file:line of the innermost template frame (jinja2 maps its frames back to templates)."""
    position = "?"
    tb = exc.__traceback__
    while tb is not None:
        filename = tb.tb_frame.f_code.co_filename
        if filename.endswith(".j2"):
            position = f"{filename}:{tb.tb_lineno}"
        tb = tb.tb_next
    return position


def render_service(service: Service, options: RenderOptions, env: jinja2.Environment | None = None) -> str:
    env = env or make_environment(options.template_dirs)
    image = image_for(service, options)
    unit = service_unit(service, options, image=image)
    return env.get_template(SERVICE_TEMPLATE).render(service_context(service, unit, options, image))


def service_context(service: Service, unit: Unit, options: RenderOptions, image: str) -> dict[str, object]:
    """What service.j2 sees: the unit, and every variable templates had before the unit model,
    so that site overrides written for them keep working."""
    commands = unit.section("Service")
    return {
        "unit": unit,
        "service": service,
        "marker": MARKER,
        "source": str(service.source),
        "image": image,
        "target": TARGET_NAME,
        "version": __version__,
        "timeout_stop_s": service.stop_timeout_s + STOP_TIMEOUT_MARGIN_S,
        "start_limit_interval": options.start_limit_interval,
        "start_limit_burst": options.start_limit_burst,
        "exec_start_pre": commands.values("ExecStartPre"),
        "exec_start": commands.values("ExecStart")[0],
        "exec_stop": commands.values("ExecStop")[0],
    }


# ----------------------------------------------------------------------------- the units


def service_unit(
    service: Service, options: RenderOptions, *, image: str | None = None, quadlet: bool = False
) -> Unit:
    """The `.service` unit that runs one service's container: every line is decided here.

    `image` defaults to `image_for`. With `quadlet`, the [Unit], [Service] and [Install] sections
    of the service's Quadlet file (which Quadlet copies into the unit it generates): [Service]
    then leaves out what Quadlet writes itself (Type=, NotifyAccess=, Delegate=,
    PODMAN_SYSTEMD_UNIT, the cidfile's removal, ExecStart=), stops the container through
    Quadlet's cidfile and sets KillMode= (Quadlet's default differs from systemd's).
    """
    image = image or image_for(service, options)
    secrets = secret_plan(service, image, options)
    header = (
        MARKER,
        f"# Source: {service.source}",
        f"# Edit the spec and run `compute-units generate`, or add a drop-in (systemctl edit {service.unit}).",
        *([secretplan.marker_line(secrets.mode)] if secrets else []),
    )
    sections = (
        section("Unit", _unit_entries(service, image, options)),
        section("Service", _service_entries(service, image, options, quadlet, secrets)),
        section("Install", [("WantedBy", TARGET_NAME)]),
    )
    return Unit(service.unit, header, sections)


def target_unit(services: ServiceSet) -> Unit:
    """compute-node.target: wants every service; `compute-units start/stop` act on it."""
    entries = [
        ("Description", "OpenStack compute node services (compute-units)"),
        ("Documentation", "man:compute-units(1)"),
        *(("Wants", service.unit) for service in services),
    ]
    header = (MARKER, "# All services generated by compute-units on this node.")
    return Unit(
        TARGET_NAME,
        header,
        (section("Unit", entries), section("Install", [("WantedBy", "multi-user.target")])),
    )


def _unit_entries(service: Service, image: str, options: RenderOptions) -> list[Line]:
    entries = [
        ("Description", unit_value(service.description or f"compute-units: {service.name}")),
        ("Documentation", "man:compute-units(1)"),
        ("Wants", "network-online.target"),
        ("After", "network-online.target"),
    ]
    if service.keeps_vms:
        entries += [("Wants", "systemd-machined.service"), ("After", "systemd-machined.service")]
    for dep in service.requires:
        entries += [("Requires", f"{dep}.service"), ("After", f"{dep}.service")]
    entries += [
        ("PartOf", TARGET_NAME),
        ("Before", TARGET_NAME),
        ("StartLimitIntervalSec", options.start_limit_interval),
        ("StartLimitBurst", str(options.start_limit_burst)),
        ("X-ComputeUnits-Spec-Hash", service.spec_hash),
        ("X-ComputeUnits-Image", unit_value(image)),
    ]
    if service.disruptive is not None:
        entries.append((DISRUPTIVE_KEY, unit_value(service.disruptive)))
    return entries


KEEPS_VMS_COMMENT = (
    "keeps_vms: conmon adopts qemu (subreaper) and would wait for it; SIGKILL ends conmon at once and",
    "leaves qemu, which sits in its own machine scope, running.",
)
QUADLET_KILL_MODE_COMMENT = (
    "as in compute-units units (Quadlet's default is mixed; it accepts mixed or control-group)"
)


def _service_entries(
    service: Service, image: str, options: RenderOptions, quadlet: bool, secrets: secretplan.Plan | None
) -> list[Line]:
    podman = options.podman
    entries: list[Line] = []
    if not quadlet:
        entries += [
            ("Type", "notify"),
            ("NotifyAccess", "all"),
            ("Delegate", "yes"),
            ("Environment", "PODMAN_SYSTEMD_UNIT=%n"),
        ]
    entries += [
        ("Restart", service.restart),
        ("RestartSec", "5s"),
        ("TimeoutStartSec", "5min"),
        ("TimeoutStopSec", str(service.stop_timeout_s + STOP_TIMEOUT_MARGIN_S)),
    ]
    if quadlet:
        entries += [comment(QUADLET_KILL_MODE_COMMENT), ("KillMode", "control-group")]
    if service.keeps_vms:
        entries += [
            *comments(KEEPS_VMS_COMMENT),
            ("KillSignal", "SIGKILL"),
            ("SuccessExitStatus", "143 SIGKILL"),
        ]
    else:
        entries.append(("SuccessExitStatus", "143"))
    if not quadlet:
        entries.append(("ExecStartPre", exec_line(["/bin/rm", "-f", Specified("%t/%n.ctr-id")])))
    directories = [str(m.source) for m in service.mounts if m.create]
    if directories:
        entries.append(("ExecStartPre", exec_line(["/bin/mkdir", "-p", *directories])))
    for secret in service.secrets:
        if secret.file is not None:
            name = podman_secret_name(service, secret.variable)
            if secrets is not None and secrets.mode == "native":  # podman >= 4.7 has --replace
                entries.append(
                    (
                        "ExecStartPre",
                        exec_line([podman, "secret", "create", "--replace", name, str(secret.file)]),
                    )
                )
                continue
            entries.append(("ExecStartPre", "-" + exec_line([podman, "secret", "rm", name])))
            entries.append(("ExecStartPre", exec_line([podman, "secret", "create", name, str(secret.file)])))
    timeout = str(service.stop_timeout_s)
    if quadlet:
        entries.append(("ExecStop", exec_line([podman, "stop", "--ignore", "-t", timeout, QUADLET_CIDFILE])))
    else:
        entries.append(("ExecStart", exec_line(podman_run_argv(service, image, podman, secrets), wrap=True)))
        # one podman call stops (SIGTERM, then SIGKILL after -t) and removes the container: stop
        # returns only when it is gone, and the restart downtime pays for one podman start-up, not two
        entries.append(("ExecStop", exec_line([podman, "rm", "-f", "--ignore", "-t", timeout, CIDFILE])))
    return entries


def image_for(service: Service, options: RenderOptions) -> str:
    """The reference the unit runs: the pinned repository[:tag]@digest of an upgrade, else the spec's."""
    return options.pins.get(service.name) or str(service.image)


def secret_plan(service: Service, image: str, options: RenderOptions) -> secretplan.Plan | None:
    """How the service's secrets reach its container (None: it has none); see secretplan."""
    return secretplan.plan(service, image, options.podman_version, options.images)


def podman_run_argv(
    service: Service, image: str, podman: str = "/usr/bin/podman", secrets: secretplan.Plan | None = None
) -> list[str]:
    """The exact argv systemd will execute (before %-specifier expansion of the cidfile).

    `secrets` is the service's `secret_plan` (required when it has secrets).
    """
    if service.secrets and secrets is None:
        raise ValueError(f"{service.name}: podman_run_argv needs the secret plan")
    argv = [
        podman,
        "run",
        CIDFILE,
        "--cgroups=split",
        "--rm",
        "--sdnotify=conmon",
        "-d",
        "--replace",
        "--log-driver=journald",
        f"--name={service.name}",
        f"--label=compute-units.service={service.name}",
        f"--label=compute-units.spec-hash={service.spec_hash}",
    ]
    argv += [options.namespace_flag(ns) for ns in NAMESPACES if ns in service.host_namespaces]
    if service.privileged:
        argv.append("--privileged")
    argv += [f"--volume={m.volume_arg()}" for m in service.mounts]
    argv += [f"--device={d}" for d in service.devices]
    argv += [f"--env={k}={v}" for k, v in service.environment]
    loader = secrets is not None and secrets.mode == "loader"
    if secrets is not None:
        argv += secrets.options
    if service.health is not None:
        h = service.health
        argv += [
            # a JSON array is exec form; podman 4.3 mis-splits arrays that start with "CMD"
            f"--health-cmd={json.dumps(list(h.command), separators=(',', ':'))}",
            f"--health-interval={_seconds(h.interval_ms)}",
            f"--health-timeout={_seconds(h.timeout_ms)}",
            f"--health-start-period={_seconds(h.start_period_ms)}",
            f"--health-retries={h.retries}",
        ]
    # the loader's own --entrypoint runs the one podman_args gives
    argv += [a for a in service.podman_args if not (loader and a.startswith("--entrypoint="))]
    argv.append(image)
    command = secrets.command if secrets is not None and secrets.command is not None else service.command
    if command:
        argv += list(command)
    return argv


def _seconds(ms: int) -> str:
    return f"{ms // 1000}s" if ms % 1000 == 0 else f"{ms}ms"


def exec_word(arg: str) -> str:
    """Escape one argument for ExecStart=: the process receives exactly `arg`.

    `Specified` words are ours and contain intended specifiers (%t, %n): only quoting applies.
    """
    if not isinstance(arg, Specified):
        arg = arg.replace("%", "%%")
    arg = arg.replace("$", "$$")
    if arg == ";":
        return "\\;"
    # quoted too: a word starting with # or ; begins a continuation line, which systemd would
    # read as a comment line, silently swallowing the rest of the command
    if arg == "" or _NEEDS_QUOTES.search(arg) or arg[0] in "#;":
        return '"' + arg.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return arg


def exec_line(argv: Sequence[str], *, wrap: bool = False) -> str:
    """Join escaped words into one ExecStart=-style command line."""
    words = [exec_word(a) for a in argv]
    if not wrap:
        return " ".join(words)
    # one option per line, as `podman generate systemd` does: readable in `systemctl cat`
    lines = [" ".join(words[:2])]
    lines += words[2:]
    return " \\\n        ".join(lines)


def unit_value(value: object) -> str:
    """A plain value on a unit line (Description=...): specifiers escaped."""
    return str(value).replace("%", "%%")
