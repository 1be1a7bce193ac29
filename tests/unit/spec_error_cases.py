"""Rows of tests/unit/test_spec_errors.py: what podman_args refuses, and the size limits
(docs/spec-limits.md). Same shape: (case, {file name: text}, expected stderr lines)."""

from __future__ import annotations

IMG = "image: 127.0.0.1:5000/nova/compute:1\n"

PODMAN_ARGS_AND_LIMIT_CASES: list[tuple[str, dict[str, str], list[str]]] = [
    (
        "podman-args-pid",
        {"svc.yaml": IMG + "podman_args: [--pid=host]\n"},
        [
            "{dir}/svc.yaml:2:15: podman_args[0]: --pid conflicts with the typed option 'host_namespaces'",
            "    hint: use the spec key 'host_namespaces' instead",
            "compute-units: 1 error(s); nothing was written.",
        ],
    ),
    (
        "podman-args-volume",
        {"svc.yaml": IMG + "podman_args: [-v]\n"},
        [
            "{dir}/svc.yaml:2:15: podman_args[0]: -v conflicts with the typed option 'mounts'",
            "    hint: use the spec key 'mounts' instead",
            "compute-units: 1 error(s); nothing was written.",
        ],
    ),
    (
        "podman-args-reserved",
        {"svc.yaml": IMG + "podman_args: [--rm]\n"},
        [
            "{dir}/svc.yaml:2:15: podman_args[0]: --rm is set by compute-units and cannot be changed",
            "compute-units: 1 error(s); nothing was written.",
        ],
    ),
    (
        "podman-args-positional",
        {"svc.yaml": IMG + "podman_args: [--ulimit, nofile=1024]\n"},
        [
            "{dir}/svc.yaml:2:15: podman_args[0]: --ulimit needs a value",
            "    hint: write --ulimit=VALUE in one item",
            "{dir}/svc.yaml:2:25: podman_args[1]: 'nofile=1024' is not an option",
            "    hint: give each option with its value in one item (--ulimit=nofile=4096); the container's argv goes in command:",
            "compute-units: 2 error(s); nothing was written.",
        ],
    ),
    (
        "podman-args-cap-add",
        {"svc.yaml": IMG + 'podman_args: ["--cap-add=SYS_ADMIN"]\n'},
        [
            "{dir}/svc.yaml:2:15: podman_args[0]: --cap-add cannot be given in podman_args: capabilities are part of the privilege model; use privileged: true",
            "compute-units: 1 error(s); nothing was written.",
        ],
    ),
    (
        "podman-args-security-opt",
        {"svc.yaml": IMG + 'podman_args: ["--security-opt=label=disable"]\n'},
        [
            "{dir}/svc.yaml:2:15: podman_args[0]: --security-opt cannot be given in podman_args: security options change the privilege model; use privileged: true",
            "compute-units: 1 error(s); nothing was written.",
        ],
    ),
    (
        "podman-args-user",
        {"svc.yaml": IMG + 'podman_args: ["-u=nova"]\n'},
        [
            "{dir}/svc.yaml:2:15: podman_args[0]: -u cannot be given in podman_args: users and user namespaces are part of the privilege model, which compute-units fixes (root in the host user namespace); set the user in the image",
            "compute-units: 1 error(s); nothing was written.",
        ],
    ),
    (
        "podman-args-userns",
        {"svc.yaml": IMG + 'podman_args: ["--userns=auto"]\n'},
        [
            "{dir}/svc.yaml:2:15: podman_args[0]: --userns cannot be given in podman_args: users and user namespaces are part of the privilege model, which compute-units fixes (root in the host user namespace); set the user in the image",
            "compute-units: 1 error(s); nothing was written.",
        ],
    ),
    (
        "podman-args-volumes-from",
        {"svc.yaml": IMG + 'podman_args: ["--volumes-from=other"]\n'},
        [
            "{dir}/svc.yaml:2:15: podman_args[0]: --volumes-from conflicts with the typed option 'mounts'",
            "    hint: use the spec key 'mounts' instead",
            "compute-units: 1 error(s); nothing was written.",
        ],
    ),
    (
        "podman-args-env-host",
        {"svc.yaml": IMG + 'podman_args: ["--env-host"]\n'},
        [
            "{dir}/svc.yaml:2:15: podman_args[0]: --env-host conflicts with the typed option 'environment'",
            "    hint: use the spec key 'environment' instead",
            "compute-units: 1 error(s); nothing was written.",
        ],
    ),
    (
        "podman-args-device-cgroup-rule",
        {"svc.yaml": IMG + 'podman_args: ["--device-cgroup-rule=c 10:* rwm"]\n'},
        [
            "{dir}/svc.yaml:2:15: podman_args[0]: --device-cgroup-rule conflicts with the typed option 'devices'",
            "    hint: use the spec key 'devices' instead",
            "compute-units: 1 error(s); nothing was written.",
        ],
    ),
    (
        "podman-args-network-alias",
        {"svc.yaml": IMG + 'podman_args: ["--net=bridge"]\n'},
        [
            "{dir}/svc.yaml:2:15: podman_args[0]: --net conflicts with the typed option 'host_namespaces'",
            "    hint: use the spec key 'host_namespaces' instead",
            "compute-units: 1 error(s); nothing was written.",
        ],
    ),
    (
        "podman-args-pod",
        {"svc.yaml": IMG + 'podman_args: ["--pod=p"]\n'},
        [
            "{dir}/svc.yaml:2:15: podman_args[0]: --pod cannot be given in podman_args: compute-units runs one container per unit, without pods",
            "compute-units: 1 error(s); nothing was written.",
        ],
    ),
    (
        "podman-args-pidfile",
        {"svc.yaml": IMG + 'podman_args: ["--pidfile=/run/x.pid"]\n'},
        [
            "{dir}/svc.yaml:2:15: podman_args[0]: --pidfile cannot be given in podman_args: compute-units tracks the container with its own cidfile",
            "compute-units: 1 error(s); nothing was written.",
        ],
    ),
    (
        "podman-args-conmon-pidfile",
        {"svc.yaml": IMG + 'podman_args: ["--conmon-pidfile=/run/c.pid"]\n'},
        [
            "{dir}/svc.yaml:2:15: podman_args[0]: --conmon-pidfile is set by compute-units and cannot be changed",
            "compute-units: 1 error(s); nothing was written.",
        ],
    ),
    (
        "podman-args-cgroup-parent",
        {"svc.yaml": IMG + 'podman_args: ["--cgroup-parent=/x"]\n'},
        [
            "{dir}/svc.yaml:2:15: podman_args[0]: --cgroup-parent is set by compute-units and cannot be changed",
            "compute-units: 1 error(s); nothing was written.",
        ],
    ),
    (
        "podman-args-cgroup-conf",
        {"svc.yaml": IMG + 'podman_args: ["--cgroup-conf=memory.high=1G"]\n'},
        [
            "{dir}/svc.yaml:2:15: podman_args[0]: --cgroup-conf cannot be given in podman_args: the container's cgroup is the unit's: resource settings go through the limit options",
            "compute-units: 1 error(s); nothing was written.",
        ],
    ),
    (
        "podman-args-tty",
        {"svc.yaml": IMG + 'podman_args: ["-t"]\n'},
        [
            "{dir}/svc.yaml:2:15: podman_args[0]: -t cannot be given in podman_args: meaningless under systemd: the container runs detached, without a terminal",
            "compute-units: 1 error(s); nothing was written.",
        ],
    ),
    (
        "podman-args-pull",
        {"svc.yaml": IMG + 'podman_args: ["--pull=always"]\n'},
        [
            "{dir}/svc.yaml:2:15: podman_args[0]: --pull cannot be given in podman_args: compute-units pulls images itself (compute-units upgrade)",
            "compute-units: 1 error(s); nothing was written.",
        ],
    ),
    (
        "podman-args-unknown",
        {"svc.yaml": IMG + 'podman_args: ["--frobnicate=1"]\n'},
        [
            "{dir}/svc.yaml:2:15: podman_args[0]: unknown podman option '--frobnicate'",
            "    hint: podman_args takes only the options listed in docs/spec-limits.md, each in one item (--opt=value)",
            "compute-units: 1 error(s); nothing was written.",
        ],
    ),
    (
        "podman-args-env-short",
        {"svc.yaml": IMG + 'podman_args: ["-eFOO=bar"]\n'},
        [
            "{dir}/svc.yaml:2:15: podman_args[0]: unknown podman option '-eFOO'",
            "    hint: podman_args takes only the options listed in docs/spec-limits.md, each in one item (--opt=value)",
            "compute-units: 1 error(s); nothing was written.",
        ],
    ),
    (
        "description-too-long",
        {"svc.yaml": IMG + "description: " + "d" * 1025 + "\n"},
        [
            "{dir}/svc.yaml:2:14: description: value is 1025 characters long; the limit is 1024",
            "compute-units: 1 error(s); nothing was written.",
        ],
    ),
    (
        "string-too-long",
        {"svc.yaml": IMG + "command: [/bin/x, " + "a" * 4097 + "]\n"},
        [
            "{dir}/svc.yaml:2:19: command[1]: value is 4097 characters long; the limit is 4096",
            "compute-units: 1 error(s); nothing was written.",
        ],
    ),
    (
        "environment-value-too-long",
        {"svc.yaml": IMG + "environment:\n  A: " + "v" * 16385 + "\n"},
        [
            "{dir}/svc.yaml:3:6: environment.A: value is 16385 characters long; the limit is 16384",
            "compute-units: 1 error(s); nothing was written.",
        ],
    ),
    (
        "too-many-mounts",
        {"svc.yaml": IMG + "mounts: [" + ", ".join(f"/m{i}:/m{i}" for i in range(257)) + "]\n"},
        [
            "{dir}/svc.yaml:2:9: mounts: has 257 entries; the limit is 256",
            "compute-units: 1 error(s); nothing was written.",
        ],
    ),
    (
        "too-many-command-args",
        {"svc.yaml": IMG + "command: [" + ", ".join(["a"] * 257) + "]\n"},
        [
            "{dir}/svc.yaml:2:10: command: has 257 entries; the limit is 256",
            "compute-units: 1 error(s); nothing was written.",
        ],
    ),
    (
        "too-many-environment-variables",
        {"svc.yaml": IMG + "environment: {" + ", ".join(f"V{i}: x" for i in range(257)) + "}\n"},
        [
            "{dir}/svc.yaml:2:14: environment: has 257 entries; the limit is 256",
            "compute-units: 1 error(s); nothing was written.",
        ],
    ),
    (
        "too-many-podman-args",
        {"svc.yaml": IMG + "podman_args: [" + ", ".join(["--read-only"] * 257) + "]\n"},
        [
            "{dir}/svc.yaml:2:14: podman_args: has 257 entries; the limit is 256",
            "compute-units: 1 error(s); nothing was written.",
        ],
    ),
    (
        "exec-start-too-long",
        {"svc.yaml": IMG + "environment:\n" + "".join(f"  V{i}: {'x' * 16000}\n" for i in range(5))},
        [
            "{dir}/svc.yaml:1:1: the unit's podman run command line would be about 161496 characters long; "
            "the limit is 131072",
            "    hint: put large values in files mounted into the container",
            "compute-units: 1 error(s); nothing was written.",
        ],
    ),
    (
        "podman-args-index-after-a-bad-item",  # the items after an invalid one keep their own index
        {"svc.yaml": IMG + 'podman_args: ["--ulimit=a\\nExecStartPre=/bin/true", "; touch /x"]\n'},
        [
            "{dir}/svc.yaml:2:15: podman_args[0]: value contains a newline",
            "    hint: unit files cannot carry it; remove it",
            "{dir}/svc.yaml:2:53: podman_args[1]: '; touch /x' is not an option",
            "    hint: give each option with its value in one item (--ulimit=nofile=4096); the container's argv goes in command:",
            "compute-units: 2 error(s); nothing was written.",
        ],
    ),
]
