"""`compute-units export --quadlet`: Quadlet .container files.

Files are read back the way podman's Quadlet reads them: the unit-file parser, the key list and
the word splitting of pkg/systemd/{parser,quadlet} at v4.4.0 and v4.5.0, ported below. From that,
the `podman run` argv Quadlet would put into ExecStart= is rebuilt, re-escaped as Quadlet does, and
read as systemd would (tests/unit/execparse.py); it must start the same container as our own unit.
This machine's podman (4.3) has no Quadlet; where /usr/libexec/podman/quadlet exists, it is run too.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import pytest
from typer.testing import CliRunner

from compute_units import quadlet, render, secretplan, spec
from compute_units.cli import app
from compute_units.model import Service
from tests.unit.conftest import KOLLA
from tests.unit.execparse import split_words, unescape_dollars

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "examples/services"

# [Container] keys Quadlet accepts (anything else: "unsupported key", the whole file is refused)
SUPPORTED_44 = {
    "ContainerName", "Image", "Environment", "EnvironmentFile", "EnvironmentHost", "Exec",
    "NoNewPrivileges", "DropCapability", "AddCapability", "ReadOnly", "RemapUsers", "RemapUid",
    "RemapGid", "RemapUidSize", "Notify", "ExposeHostPort", "PublishPort", "User", "Group", "Volume",
    "PodmanArgs", "Label", "Annotation", "RunInit", "VolatileTmp", "Timezone", "SeccompProfile",
    "AddDevice", "Network",
}  # fmt: skip
SUPPORTED_45 = SUPPORTED_44 | {
    "HealthCmd", "HealthInterval", "HealthOnFailure", "HealthRetries", "HealthStartPeriod",
    "HealthStartupCmd", "HealthStartupInterval", "HealthStartupRetries", "HealthStartupSuccess",
    "HealthStartupTimeout", "HealthTimeout", "IP", "IP6", "LogDriver", "Mount", "Rootfs",
    "SecurityLabelDisable", "SecurityLabelFileType", "SecurityLabelLevel", "SecurityLabelType",
    "Secret", "Tmpfs", "UserNS",
}  # fmt: skip

Groups = dict[str, list[tuple[str, str]]]


# --------------------------------------------------------------------------- Quadlet, ported


def parse_unit(text: str) -> tuple[list[str], Groups]:
    """podman's unit-file parser: '#' comments, [Group], Key=Value with repeated keys in order."""
    comments: list[str] = []
    groups: Groups = {}
    current: list[tuple[str, str]] | None = None
    for line in text.split("\n"):
        assert line == "" or not line[0].isspace(), f"leading blank: {line!r}"
        if line == "" or line[0] in "#:":
            if current is None:
                comments.append(line)
            continue
        if line.startswith("["):
            assert line.endswith("]"), line
            current = groups.setdefault(line[1:-1], [])
            continue
        assert "=" in line and current is not None, f"not a key-value pair, group, or comment: {line!r}"
        assert not line.endswith("\\"), f"would continue on the next line: {line!r}"
        key, _, value = line.partition("=")
        current.append((key.rstrip(), value.lstrip()))
    return comments, groups


def values(groups: Groups, group: str, key: str) -> list[str]:
    return [v for k, v in groups[group] if k == key]


C_ESCAPES = {"a": "\a", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t", "v": "\v"}
C_ESCAPES |= {"\\": "\\", '"': '"', "'": "'", "s": " "}


def split(value: str, *, unescape: bool = True) -> list[str]:
    """extractFirstWord with SplitRelax|SplitUnquote|SplitCUnescape (or SplitRetainEscape)."""
    result: list[str] = []
    i, n = 0, len(value)
    while True:
        while i < n and value[i] in " \t\n\r":
            i += 1
        if i >= n:
            return result
        word: list[str] = []
        quote = ""
        while i < n:
            c = value[i]
            if c == "\\" and unescape:
                esc = value[i + 1]
                if esc == "x":
                    word.append(chr(int(value[i + 2 : i + 4], 16)))
                    i += 4
                    continue
                assert esc in C_ESCAPES, f"Quadlet fails on \\{esc} and drops the key: {value!r}"
                word.append(C_ESCAPES[esc])
                i += 2
                continue
            if quote:
                if c == quote:
                    quote = ""
                else:
                    word.append(c)
            elif c in "\"'":
                quote = c
            elif c in " \t\n\r":
                break
            else:
                word.append(c)
            i += 1
        if not word:
            return result  # Quadlet's quirk: an empty word ends the split
        result.append("".join(word))


def escape_words(argv: Sequence[str]) -> str:
    """escapeWords: how Quadlet writes ExecStart= (neither % nor $ is escaped)."""
    out = []
    for word in argv:
        if any(c.isspace() or c in "\"'\\" or ord(c) < 32 for c in word):
            body = word.replace("\\", "\\\\").replace('"', '\\"')
            out.append('"' + body.replace("\n", "\\n").replace("\t", "\\t") + '"')
        else:
            out.append(word)
    return " ".join(out)


def quadlet_exec_start(groups: Groups, version: tuple[int, int]) -> str:
    """The ExecStart= value Quadlet (ConvertContainer, 4.4 or 4.5) writes for our keys."""
    keys = {k for k, _ in groups["Container"]}
    supported = SUPPORTED_45 if version >= (4, 5) else SUPPORTED_44
    assert keys <= supported, f"Quadlet {version} refuses the file: {keys - supported}"

    def last(key: str) -> str | None:
        found = values(groups, "Container", key)
        return found[-1].rstrip() if found else None

    def all_args(key: str) -> list[str]:
        return [w for v in values(groups, "Container", key) for w in split(v)]

    def key_values(key: str) -> list[str]:
        pairs = dict(w.split("=", 1) for w in all_args(key) if "=" in w)
        return [f"{k}={pairs[k]}" for k in sorted(pairs)]

    argv = ["/usr/bin/podman", "run", f"--name={last('ContainerName') or 'systemd-%N'}"]
    argv += ["--cidfile=%t/%N.cid", "--replace", "--rm"]
    if version < (4, 5):
        argv += ["--log-driver", "passthrough", "--runtime", "/usr/bin/crun"]
    elif (driver := last("LogDriver")) is not None:
        argv += ["--log-driver", driver]
    argv.append("--cgroups=split")
    argv += [f"--network={v}" for v in values(groups, "Container", "Network") if v]
    argv += ["--sdnotify=conmon", "-d"]
    devices = [w for v in values(groups, "Container", "AddDevice") for w in split(v, unescape=False)]
    argv += [f"--device={d}" for d in devices]
    for volume in values(groups, "Container", "Volume"):
        argv += ["-v", volume]
    for pair in key_values("Environment"):
        argv += ["--env", pair]
    for pair in key_values("Label"):
        argv += ["--label", pair]
    if version >= (4, 5):
        for secret in all_args("Secret"):
            argv += ["--secret", secret]
        for key, arg in (
            ("HealthCmd", "cmd"),
            ("HealthInterval", "interval"),
            ("HealthRetries", "retries"),
            ("HealthStartPeriod", "start-period"),
            ("HealthTimeout", "timeout"),
        ):
            if found := last(key):
                argv += [f"--health-{arg}", found]
    argv += all_args("PodmanArgs")
    image = last("Image")
    assert image
    argv.append(image)
    if exec_values := values(groups, "Container", "Exec"):
        argv += split(exec_values[-1])
    return escape_words(argv)


def systemd_argv(exec_start: str, unit: str) -> list[str]:
    """ExecStart= as systemd runs it: specifiers (%% %t %n %N), quotes and escapes, $$."""
    expanded: list[str] = []
    i = 0
    while i < len(exec_start):
        if exec_start[i] == "%":
            spec_char = exec_start[i + 1]
            expanded.append({"%": "%", "t": "/run", "n": unit, "N": unit.removesuffix(".service")}[spec_char])
            i += 2
            continue
        expanded.append(exec_start[i])
        i += 1
    return [unescape_dollars(w) for w in split_words("".join(expanded))]


# --------------------------------------------------------------------------- helpers

TWO_WORD = {"--log-driver", "--runtime", "-v", "--env", "--label", "--secret"} | {
    f"--health-{k}" for k in ("cmd", "interval", "retries", "start-period", "timeout")
}


def options(argv: list[str]) -> tuple[list[tuple[str, str]], list[str]]:
    """(sorted (option, value) pairs, image + command) of a `podman run` argv; -v is --volume."""
    pairs: list[tuple[str, str]] = []
    words = argv[2:]
    while words[0].startswith("-"):
        word = words.pop(0)
        if word in TWO_WORD:
            pairs.append(("--volume" if word == "-v" else word, words.pop(0)))
        else:
            name, _, value = word.partition("=")
            pairs.append((name, value))
    return sorted(pairs), words


def same_container(service: Service, text: str, version: tuple[int, int] = (4, 4)) -> None:
    """The Quadlet unit runs our unit's container: same options (Quadlet's own aside), image, argv."""
    _, groups = parse_unit(text)
    theirs, their_rest = options(systemd_argv(quadlet_exec_start(groups, version), service.unit))
    image = str(service.image)
    plan = render.secret_plan(service, image, facts_for(service, version))
    ours, our_rest = options(
        systemd_argv(render.exec_line(render.podman_run_argv(service, image, secrets=plan)), service.unit)
    )
    assert their_rest == our_rest
    cid = ("--cidfile", f"/run/{service.name}.cid")
    quadlet_own = [cid, ("--log-driver", "passthrough"), ("--runtime", "/usr/bin/crun")]
    if version < (4, 5):  # ours comes later on the command line, and a later --log-driver wins
        argv = systemd_argv(quadlet_exec_start(groups, version), service.unit)
        assert argv.index("passthrough") < argv.index("--log-driver=journald")
    ours_cid = ("--cidfile", f"/run/{service.unit}.ctr-id")
    assert [p for p in theirs if p not in quadlet_own] == sorted(
        [p for p in ours if p != ours_cid] + [("--stop-timeout", str(service.stop_timeout_s))]
    )


def load_examples(root: Path = Path("/")) -> dict[str, Service]:
    services, _ = spec.load(spec.discover([EXAMPLES]), root=root, strict_files=False)
    return {s.name: s for s in services}


def load_text(text: str, name: str = "tricky") -> Service:
    service, diagnostics = spec.parse_text(text, Path(f"{name}.yaml"), check_files=False)
    assert service is not None, [d.format() for d in diagnostics]
    return service


def facts_for(service: Service, version: tuple[int, ...] = (4, 4)) -> render.RenderOptions:
    """Render options on a host with this podman whose images are all KOLLA."""
    return render.RenderOptions(podman_version=version, images={str(service.image): KOLLA})


def export(service: Service, version: tuple[int, int] = (4, 4)) -> str:
    return quadlet.container_file(
        service, image=str(service.image), options=facts_for(service), version=version
    ).text


# --------------------------------------------------------------------------- the seed's services


def test_nova_libvirt_keys() -> None:
    service = load_examples()["nova-libvirt"]
    text = export(service)
    comments, groups = parse_unit(text)
    assert sorted(groups) == ["Container", "Install", "Service", "Unit"]
    assert groups["Container"] == [
        ("Image", "127.0.0.1:5000/compute/nova-libvirt:2024.1"),
        ("ContainerName", "nova-libvirt"),
        ("Label", "compute-units.service=nova-libvirt"),
        ("Label", f"compute-units.spec-hash={service.spec_hash}"),
        ("Network", "host"),
        ("Volume", "/sys:/sys"),
        ("Volume", "/sys/fs/cgroup:/sys/fs/cgroup"),
        ("Volume", "/var/lib/libvirt:/var/lib/libvirt"),
        ("Volume", "/var/lib/nova:/var/lib/nova"),
        ("Volume", "/etc/libvirt/qemu:/etc/libvirt/qemu"),
        ("Volume", "/run/libvirt:/run/libvirt"),
        ("Volume", "/run/dbus/system_bus_socket:/run/dbus/system_bus_socket"),
        ("AddDevice", "/dev/kvm"),
        ("PodmanArgs", "--log-driver=journald"),
        ("PodmanArgs", "--pid=host"),
        ("PodmanArgs", "--cgroupns=host"),
        ("PodmanArgs", "--privileged"),
        ("PodmanArgs", '"--health-cmd=[\\"virsh\\",\\"-c\\",\\"qemu:///system\\",\\"list\\"]"'),
        ("PodmanArgs", "--health-interval=30s"),
        ("PodmanArgs", "--health-timeout=5s"),
        ("PodmanArgs", "--health-start-period=20s"),
        ("PodmanArgs", "--health-retries=3"),
        ("PodmanArgs", "--stop-timeout=10"),
        ("Exec", "/usr/sbin/libvirtd"),
    ]
    assert groups["Service"] == [
        ("Restart", "on-failure"),
        ("RestartSec", "5s"),
        ("TimeoutStartSec", "5min"),
        ("TimeoutStopSec", "40"),
        ("KillMode", "control-group"),
        ("KillSignal", "SIGKILL"),
        ("SuccessExitStatus", "143 SIGKILL"),
        ("ExecStartPre", "/bin/mkdir -p /var/lib/libvirt /var/lib/nova /etc/libvirt/qemu /run/libvirt"),
        ("ExecStop", "/usr/bin/podman stop --ignore -t 10 --cidfile=%t/%N.cid"),
    ]
    assert values(groups, "Unit", "Wants") == ["network-online.target", "systemd-machined.service"]
    assert values(groups, "Unit", "Requires") == []
    assert values(groups, "Unit", "PartOf") == ["compute-node.target"]
    assert groups["Install"] == [("WantedBy", "compute-node.target")]
    assert comments[:4] == [
        f"# nova-libvirt.container: generated by `compute-units export --quadlet` from {EXAMPLES}/nova-libvirt.yaml",
        "# Quadlet file for podman >= 4.4: copy it to /etc/containers/systemd/ and run",
        "# `systemctl daemon-reload`; Quadlet's generator turns it into nova-libvirt.service.",
        "# What Quadlet cannot express for this service, and what this file does instead:",
    ]
    assert comments[4:] == [f"#   - {line}" for line in quadlet.container_file(service, image="x").limits] + [
        ""
    ]
    limits = quadlet.container_file(service, image="x").limits
    assert limits[:4] == (
        "--pid=host, --cgroupns=host, --privileged: no Quadlet keys exist for these; passed with PodmanArgs=",
        "health check: Quadlet 4.4 has no Health*= keys (4.5 has); passed with PodmanArgs=",
        "stop timeout 10s: no StopTimeout= before podman 5.0; PodmanArgs=--stop-timeout=, "
        "ExecStop=podman stop -t 10 and TimeoutStopSec= in [Service]",
        "keeps_vms: KillSignal=SIGKILL and SuccessExitStatus=143 SIGKILL are [Service] settings, which Quadlet "
        "copies into the unit unchanged; the VM-survival checks before and after a restart exist only in "
        "`compute-units upgrade`",
    )
    assert "preflight checks (kernel modules, inactive host units, paths) run only in compute-units" in limits
    same_container(service, text)


def test_nova_compute_secrets_and_requires() -> None:
    service = load_examples()["nova-compute"]
    text = export(service)
    comments, groups = parse_unit(text)
    assert values(groups, "Unit", "Requires") == ["nova-libvirt.service"]
    assert values(groups, "Unit", "After") == ["network-online.target", "nova-libvirt.service"]
    assert values(groups, "Container", "Environment") == [
        "RABBIT_USERID=stackrabbit",
        "NETWORK_MANAGER=nova",
        "GLANCE_API_SERVICE_HOST=192.0.2.10",
        "KEYSTONE_PUBLIC_SERVICE_HOST=192.0.2.10",
        "RABBITMQ_SERVICE_HOST=192.0.2.10",
    ]
    args = values(groups, "Container", "PodmanArgs")
    names = [secretplan.podman_secret_name(service, s.variable) for s in service.secrets]
    assert [a for a in args if a.startswith("--secret=")] == [
        f"--secret={n},type=mount,mode=0400,target={s.variable}"
        for n, s in zip(names, service.secrets, strict=True)
    ]
    (entrypoint,) = (a for a in split(" ".join(args)) if a.startswith("--entrypoint="))
    assert entrypoint.replace("$$", "$") == "--entrypoint=" + json.dumps(
        secretplan.loader(service, KOLLA.entrypoint), separators=(",", ":")
    )
    pre = values(groups, "Service", "ExecStartPre")
    assert pre[1:3] == [
        f"-/usr/bin/podman secret rm {names[0]}",
        f"/usr/bin/podman secret create {names[0]} /etc/compute-units/secrets/keystone_admin_token",
    ]
    assert values(groups, "Service", "KillSignal") == []
    assert values(groups, "Service", "SuccessExitStatus") == ["143"]
    secret_comment = next(c for c in comments if "file secrets" in c)
    assert f"{names[1]} <- /etc/compute-units/secrets/nova_db_password" in secret_comment
    same_container(service, text)


def test_unit_and_service_sections_are_those_of_our_unit() -> None:
    """One model: Quadlet's [Unit] and [Install] are our unit's; [Service] lacks only what Quadlet
    writes itself and stops through Quadlet's cidfile."""
    for service in load_examples().values():
        ours = render.service_unit(service, facts_for(service))
        _, groups = parse_unit(export(service))
        assert groups["Unit"] == list(ours.section("Unit").entries)
        assert groups["Install"] == list(ours.section("Install").entries)
        own = {"Type", "NotifyAccess", "Delegate", "Environment", "ExecStart", "ExecStop"}
        kept = [e for e in ours.section("Service").entries if e[0] not in own and e[0] != "#"]
        kept.remove(("ExecStartPre", "/bin/rm -f %t/%n.ctr-id"))  # Quadlet's podman keeps its own cidfile
        assert (
            groups["Service"]
            == [
                *kept[:4],  # Restart=, RestartSec=, TimeoutStartSec=, TimeoutStopSec=
                ("KillMode", "control-group"),
                *kept[4:],
                (
                    "ExecStop",
                    f"/usr/bin/podman stop --ignore -t {service.stop_timeout_s} --cidfile=%t/%N.cid",
                ),
            ]
        )


def test_podman_45_uses_secret_and_health_keys() -> None:
    services = load_examples()
    text = export(services["nova-compute"], (4, 5))
    _, groups = parse_unit(text)
    assert values(groups, "Container", "Secret")[0] == (
        "compute-units.nova-compute.KEYSTONE_ADMIN_TOKEN,type=mount,mode=0400,target=KEYSTONE_ADMIN_TOKEN"
    )
    assert values(groups, "Container", "LogDriver") == ["journald"]
    assert not [
        a for a in values(groups, "Container", "PodmanArgs") if a.startswith(("--secret", "--log-driver"))
    ]
    same_container(services["nova-compute"], text, (4, 5))

    text = export(services["nova-libvirt"], (4, 5))
    comments, groups = parse_unit(text)
    assert [(k, v) for k, v in groups["Container"] if k.startswith("Health")] == [
        ("HealthCmd", '["virsh","-c","qemu:///system","list"]'),
        ("HealthInterval", "30s"),
        ("HealthTimeout", "5s"),
        ("HealthStartPeriod", "20s"),
        ("HealthRetries", "3"),
    ]
    assert not [c for c in comments if "health check" in c or "crun" in c]
    assert comments[0].endswith("nova-libvirt.yaml") and comments[1].startswith(
        "# Quadlet file for podman >= 4.5"
    )
    same_container(services["nova-libvirt"], text, (4, 5))


# --------------------------------------------------------------------------- escaping

TRICKY = r"""
name: tricky
image: registry.example/tricky:1
command: [/bin/app, "a b", 'q"uote', "it's", 'back\slash\', "100%", "%n", "$HOME", "${X}", "$$", "ünï", "--opt=x y", "x;y"]
mounts:
  - /srv/plain:/data
  - /srv/with space:/space:ro
  - /srv/100%:/percent
  - /srv/$dollar:/dollar
  - /srv/quo"te:/quote
devices: [/dev/kvm, "/dev/odd name"]
environment:
  SPACES: "a b  c"
  QUOTES: "say \"hi\" 'there'"
  PERCENT: "50% %n %%"
  DOLLAR: "$PATH ${X} $$"
  BACKSLASH: 'C:\dir\'
  EMPTY: ""
  UNICODE: ünïcødé
  EQUALS: "a=b=c"
health:
  command: [sh, -c, 'test -e "$F" && echo 100% \ done']
  interval: 1min
podman_args: [--ulimit=nofile=4096, "--annotation=note=a b", "--log-opt=tag=type:%t"]
"""


@pytest.mark.parametrize("version", [(4, 4), (4, 5)])
def test_values_reach_the_container_exactly(version: tuple[int, int]) -> None:
    service = load_text(TRICKY)
    text = export(service, version)
    _, groups = parse_unit(text)
    # raw keys only for values that need no escaping; the rest goes through PodmanArgs=
    assert values(groups, "Container", "Volume") == ["/srv/plain:/data"]
    assert values(groups, "Container", "AddDevice") == ["/dev/kvm"]
    args = split(" ".join(values(groups, "Container", "PodmanArgs")))
    assert "--volume=/srv/with space:/space:ro" in args
    assert "--volume=/srv/100%%:/percent" in args  # %% and $$: systemd expands ExecStart= later
    assert "--volume=/srv/$$dollar:/dollar" in args
    assert '--volume=/srv/quo"te:/quote' in args
    assert "--device=/dev/odd name" in args
    assert values(groups, "Container", "Environment")[:2] == [
        '"SPACES=a b  c"',
        '"QUOTES=say \\"hi\\" \'there\'"',
    ]
    same_container(service, text, version)
    # and the values themselves, as the container gets them
    argv = systemd_argv(quadlet_exec_start(groups, version), service.unit)
    assert argv[-13:] == [
        "/bin/app",
        "a b",
        'q"uote',
        "it's",
        "back\\slash\\",
        "100%",
        "%n",
        "$HOME",
        "${X}",
        "$$",
        "ünï",
        "--opt=x y",
        "x;y",
    ]
    env = [argv[i + 1] for i, a in enumerate(argv) if a == "--env"]
    assert env == [
        "BACKSLASH=C:\\dir\\",
        "DOLLAR=$PATH ${X} $$",
        "EMPTY=",
        "EQUALS=a=b=c",
        "PERCENT=50% %n %%",
        "QUOTES=say \"hi\" 'there'",
        "SPACES=a b  c",
        "UNICODE=ünïcødé",
    ]


@pytest.mark.parametrize(
    ("command", "message"),
    [
        (
            "[/bin/app, '', x]",
            "tricky: an empty argument cannot pass through Quadlet (its parser ends the line there)",
        ),
        (
            "[/bin/app, ';', x]",
            "tricky: the argument ';' cannot pass through Quadlet (it cannot be escaped there, and systemd reads "
            "a lone ';' as a command separator)",
        ),
    ],
)
def test_arguments_quadlet_cannot_carry(command: str, message: str) -> None:
    service = load_text(f"name: tricky\nimage: registry.example/tricky:1\ncommand: {command}\n")
    with pytest.raises(quadlet.QuadletError) as failed:
        export(service)
    assert failed.value.message == message
    # our own units carry both
    assert render.podman_run_argv(service, "x")[-3:] in (["/bin/app", "", "x"], ["/bin/app", ";", "x"])


# --------------------------------------------------------------------------- the command


@pytest.fixture
def root(tmp_path: Path) -> Path:
    secrets = tmp_path / "root/etc/compute-units/secrets"
    secrets.mkdir(parents=True)
    for name in ("keystone_admin_token", "nova_db_password", "rabbit_password", "nova_keystone_password"):
        (secrets / name).write_text("x")
        (secrets / name).chmod(0o600)
    return tmp_path / "root"


def export_cli(root: Path, *args: str) -> tuple[int, str, list[str]]:
    result = CliRunner().invoke(app, ["export", "--spec", str(EXAMPLES), "--root", str(root), *args])
    return result.exit_code, result.stdout, result.stderr.splitlines()


def test_export_writes_files_and_refuses_to_overwrite(tmp_path: Path, root: Path) -> None:
    out = tmp_path / "quadlet"
    code, stdout, stderr = export_cli(root, "--quadlet", "--output-dir", str(out))
    assert code == 0, stderr
    files = ["nova-compute.container", "nova-libvirt.container", "nova-network.container"]
    assert sorted(p.name for p in out.iterdir()) == files
    assert sorted(stdout.splitlines()) == [f"wrote {out}/{f}" for f in files]
    services = load_examples(root)
    for name, service in services.items():
        assert (out / f"{name}.container").read_text() == export(service)

    (out / "nova-libvirt.container").write_text("mine")
    code, _, stderr = export_cli(root, "--quadlet", "--output-dir", str(out), "nova-libvirt", "nova-network")
    assert code == 2
    assert stderr == [
        f"compute-units: error: {out}/nova-libvirt.container, {out}/nova-network.container exist(s) already; "
        "nothing was written",
        "  hint: pass --force to overwrite",
    ]
    assert (out / "nova-libvirt.container").read_text() == "mine"
    assert export_cli(root, "--quadlet", "--output-dir", str(out), "--force", "nova-libvirt")[0] == 0
    assert (out / "nova-libvirt.container").read_text() == export(services["nova-libvirt"])


def test_export_to_stdout_and_usage_errors(root: Path) -> None:
    code, stdout, _ = export_cli(root, "--quadlet", "nova-network")
    assert code == 0
    assert stdout == export(load_examples(root)["nova-network"])
    assert export_cli(root, "nova-network")[1:] == (
        "",
        ["compute-units: error: choose the format to export", "  hint: --quadlet is the only one so far"],
    )
    assert export_cli(root, "--quadlet", "--podman-version", "4.3")[2] == [
        "compute-units: error: --podman-version 4.3: Quadlet needs podman 4.4 or later",
        "  hint: on older podman, use the units of `compute-units generate`",
    ]
    assert export_cli(root, "--quadlet", "--podman-version", "four")[2] == [
        "compute-units: error: --podman-version 'four': expected a version such as 4.4 or 4.9.3"
    ]
    code, _, stderr = export_cli(root, "--quadlet", "nova-libvrt")
    assert code == 2
    assert stderr[0].startswith("compute-units: error: unknown service 'nova-libvrt'")
