"""`compute-units import` of malformed lines and scripts: exact messages, nothing written."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.unit.test_import import load, run

# --------------------------------------------------------------------------- malformed lines

# (case, line given as one shell string, expected stderr)
MALFORMED: list[tuple[str, str, list[str]]] = [
    (
        "not-run",
        "docker ps",
        ["'docker ps' is not supported: only 'docker run' and 'podman run' lines can be imported"],
    ),
    (
        "not-docker",
        "ls -l",
        ["'ls' is not supported: only 'docker run' and 'podman run' lines can be imported"],
    ),
    (
        "global-option",
        "docker -H tcp://x run img",
        ["'docker -H': global options before 'run' are not supported"],
    ),
    (
        "no-image",
        "sudo docker run -d --privileged",
        ["'docker run' has no image", "    hint: give the image after the options"],
    ),
    ("missing-long-value", "docker run --name", ["option '--name' needs a value"]),
    ("missing-short-value", "podman run -v", ["option '-v' needs a value"]),
    ("unknown-option", "docker run --frobnicate img", ["unknown option '--frobnicate'"]),
    ("unknown-short", "docker run -itx img", ["unknown option '-x' in '-itx'"]),
    (
        "unbalanced-double",
        'docker run -e "FOO=bar img',
        ['unbalanced quotes: the " opened here is never closed'],
    ),
    (
        "unbalanced-single",
        "docker run -e 'FOO=bar img",
        ["unbalanced quotes: the ' opened here is never closed"],
    ),
    (
        "bad-boolean",
        "docker run --privileged=maybe img",
        ["option '--privileged' takes true or false, got 'maybe'"],
    ),
    (
        "pipe",
        "docker run img | tee log",
        [
            "unsupported shell syntax '|': only simple commands can be imported",
            "    hint: remove redirections, pipes and subshells from the line",
        ],
    ),
    (
        "redirect",
        "docker run img >/dev/null",
        [
            "unsupported shell syntax '>': only simple commands can be imported",
            "    hint: remove redirections, pipes and subshells from the line",
        ],
    ),
    (
        "rootfs",
        "podman run --rootfs /srv/root",
        ["--rootfs runs a directory, not an image; only images can be imported"],
    ),
    (
        "restart",
        "docker run --restart=sometimes img",
        ["--restart 'sometimes': expected no, always, unless-stopped or on-failure[:N]"],
    ),
    (
        "restart-count",
        "docker run --restart always:3 img",
        ["--restart 'always:3': expected no, always, unless-stopped or on-failure[:N]"],
    ),
    (
        "stop-timeout",
        "docker run --stop-timeout 0 img",
        ["--stop-timeout '0': expected whole seconds from 1 to 3600"],
    ),
    (
        "bad-name",
        "docker run --name Nova img",
        [
            "--name 'Nova' is not a valid service name",
            "    hint: use lowercase letters, digits, '_', '.' and '-', starting with a letter or digit",
        ],
    ),
    (
        "bad-image",
        "docker run Sdake/Nova",
        ["invalid image 'Sdake/Nova': repository 'Sdake/Nova' must be lowercase"],
    ),
    (
        "image-variable",
        "docker run registry/nova:$TAG",
        [
            "invalid image 'registry/nova:$TAG': bad tag '$TAG'",
            "    hint: the image refers to a shell variable; write the real reference",
        ],
    ),
    (
        "relative-target",
        "docker run -v /a:relative img",
        ["-v /a:relative: container path 'relative' must be absolute"],
    ),
    (
        "duplicate-target",
        "docker run -v /a:/x --volume /b:/x img",
        ["--volume=/b:/x: duplicate mount target '/x'"],
    ),
    (
        "mount-target",
        "docker run --mount type=bind,source=/a img",
        ["--mount 'type=bind,source=/a': needs source= and target="],
    ),
    ("relative-device", "docker run --device kvm img", ["--device=kvm: 'kvm' must be an absolute path"]),
    ("env-name", "docker run -e 1X=y img", ["-e 1X=y: '1X' is not a valid variable name"]),
    (
        "health-duration",
        "docker run --health-cmd=true --health-interval=5 img",
        ["--health-interval '5': expected a duration such as 30s or 1m30s"],
    ),
    (
        "health-short",
        "docker run --health-cmd=true --health-timeout=500ms img",
        ["--health-timeout '500ms': compute-units needs at least 1s"],
    ),
    (
        "health-json",
        "docker run --health-cmd='[\"virsh\"' img",
        ["--health-cmd '[\"virsh\"': not a JSON array of strings"],
    ),
    (
        "secret-target",
        "podman run --secret db,type=env,target=1A img",
        ["--secret=db,type=env,target=1A: '1A' is not a valid variable name"],
    ),
    (
        "reserved-name",
        "docker run --name compute-node img:1",
        ["the imported spec is invalid: name: the name 'compute-node' is reserved for the target"],
    ),
    (
        "control-character",
        "docker run -e 'A=x\ny' img:1",
        [
            "the imported spec is invalid: environment.A: value contains a newline",
            "    hint: unit files cannot carry it; remove it",
        ],
    ),
]


@pytest.mark.parametrize(("case", "line", "expected"), MALFORMED, ids=[c[0] for c in MALFORMED])
def test_malformed_lines(tmp_path: Path, case: str, line: str, expected: list[str]) -> None:
    out = tmp_path / "out"
    code, stdout, stderr = run("--root", str(tmp_path), "--output-dir", str(out), "--", line)
    assert code == 2
    assert stdout == ""
    errors = [e for e in stderr if not e.startswith(("<command line>: note:", "<command line>: warning:"))]
    assert errors[0] == "<command line>: " + expected[0]
    assert errors[1:] == [*expected[1:], "compute-units: 1 error(s); nothing was written."]
    assert list(tmp_path.iterdir()) == []  # no spec, no secrets directory


def test_every_error_of_a_script_is_reported_with_its_line(tmp_path: Path) -> None:
    script = tmp_path / "run.sh"
    script.write_text(
        "docker run --name a img:1\n"
        "docker stop a\n"
        "docker run --name a other:1\n"
        'docker run -e "X=1 \\\n  img:1\n'
    )
    code, _, stderr = run("--script", str(script))
    assert code == 2
    assert stderr == [
        f'{script}:4: unbalanced quotes: the " opened here is never closed',
        "compute-units: 1 error(s); nothing was written.",
    ]
    script.write_text("docker run --name a img:1\ndocker stop a\ndocker run --name a other:1\n")
    code, _, stderr = run("--script", str(script))
    assert [e for e in stderr if "error" in e] == [
        f"{script}:2: 'docker stop' is not supported: only 'docker run' and 'podman run' "
        "lines can be imported",
        f"{script}:3: service name 'a' is already used by {script}:1",
        "compute-units: 2 error(s); nothing was written.",
    ]


def test_command_line_usage_errors(tmp_path: Path) -> None:
    assert run()[2] == [
        "compute-units: error: give either a command line after -- or --script FILE",
        "  hint: compute-units import -- docker run --name x IMAGE",
    ]
    code, _, stderr = run("--command", "nocommand", "--", "docker", "run", "img")
    assert (code, stderr) == (
        2,
        [
            "<command line>: --command 'nocommand': expected NAME=ARGV",
            "compute-units: 1 error(s); nothing was written.",
        ],
    )
    code, _, stderr = run("--command", "other=/bin/x", "--", "docker", "run", "img:1")
    assert code == 2
    assert stderr[-2:] == [
        "<command line>: --command other=…: no imported service is named 'other'",
        "compute-units: 1 error(s); nothing was written.",
    ]
    code, _, stderr = run("--script", str(tmp_path / "missing"))
    assert (code, stderr[0]) == (
        2,
        f"compute-units: error: --script {tmp_path}/missing: No such file or directory",
    )
    code, _, stderr = run("--", "docker run --env-file ./none.env img:1")
    assert code == 2
    assert stderr[0].startswith("<command line>: --env-file ./none.env: cannot read ")
    assert stderr[0].endswith("/none.env: No such file or directory")


def test_refuses_to_overwrite_a_spec(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "nginx.yaml").write_text("keep")
    code, _, stderr = run("--output-dir", str(out), "--", "docker", "run", "nginx:1")
    assert code == 2
    assert stderr[-3:] == [
        f"<command line>: {out}/nginx.yaml exists",
        "    hint: pass --force to overwrite it",
        "compute-units: 1 error(s); nothing was written.",
    ]
    assert (out / "nginx.yaml").read_text() == "keep"
    assert run("--output-dir", str(out), "--force", "--", "docker", "run", "nginx:1")[0] == 0
    assert load((out / "nginx.yaml").read_text()).image.repository == "library/nginx"
