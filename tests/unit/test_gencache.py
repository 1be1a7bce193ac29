"""The generator's cache (compute_units/gencache.py): same bytes as the full path, and any change
of an input (spec, secret file, state, templates) means the full path again."""

from __future__ import annotations

import json
import marshal
import os
import subprocess
from pathlib import Path

import pytest

from tests.unit.test_generator import run_generator

SPEC = """image: 127.0.0.1:5000/x:1
command: [/usr/bin/x]
secrets: {PASSWORD: {file: /etc/compute-units/secrets/password}}
host_namespaces: [pid]
sockets: [{path: /run/x.sock}]
"""
OLD = 1_600_000_000  # an mtime far from "racy"


def age(*paths: Path) -> None:
    for path in paths:
        os.utime(path, (OLD, OLD), follow_symlinks=False)


@pytest.fixture
def root(tmp_path: Path) -> Path:
    root = tmp_path / "root"
    specs = root / "usr/share/compute-units/services"
    specs.mkdir(parents=True)
    (specs / "svc.yaml").write_text(SPEC)
    (specs / "other.yaml").write_text("image: 127.0.0.1:5000/y:1\nrequires: [svc]\n")
    secrets = root / "etc/compute-units/secrets"
    secrets.mkdir(parents=True)
    (secrets / "password").write_text("s3cret\n")
    (secrets / "password").chmod(0o600)
    # the tree's podman 4.3.1 and the config of svc's image, as `compute-units pull` records them
    podman = root / "usr/bin/podman"
    podman.parent.mkdir(parents=True)
    podman.write_text("")
    record = root / "var/lib/compute-units/facts.json"
    record.parent.mkdir(parents=True)
    age(podman)
    facts_data = {
        "podman": {"binary": [(st := podman.stat()).st_ino, st.st_size, st.st_mtime_ns], "version": "4.3.1"},
        "images": {"127.0.0.1:5000/x:1": {"entrypoint": [], "cmd": ["/usr/bin/x"]}},
    }
    record.write_text(json.dumps(facts_data))
    age(specs / "svc.yaml", specs / "other.yaml", specs, secrets / "password", record)
    return root


def generate(root: Path, out: Path) -> tuple[dict[str, object], str]:
    result = run_generator(root, out)
    assert result.returncode == 0, result.stderr
    normal = out / "normal"
    tree: dict[str, object] = {}
    for path in sorted(normal.rglob("*")):
        rel = str(path.relative_to(normal))
        if path.is_symlink():
            tree[rel] = ("link", os.readlink(path))
        elif path.is_dir():
            tree[rel] = ("dir", path.stat().st_mode)
        else:
            tree[rel] = ("file", path.read_bytes(), path.stat().st_mode)
    return tree, result.stderr


def cache_file(root: Path) -> Path:
    return root / "var/cache/compute-units/generator.cache"


def tamper(root: Path) -> None:
    """Change the cached unit's text: a run that shows the change read the cache."""
    entry = marshal.loads(cache_file(root).read_bytes())
    entry["tree"] = [
        (p, k, c.replace(b"Description=", b"Description=CACHED ") if k == "file" else c, m)
        for p, k, c, m in entry["tree"]
    ]
    cache_file(root).write_bytes(marshal.dumps(entry))


def described(tree: dict[str, object]) -> bytes:
    unit = tree["svc.service"]
    assert isinstance(unit, tuple)
    line: bytes = next(x for x in unit[1].splitlines() if x.startswith(b"Description="))
    return line


def test_a_cached_run_writes_the_same_bytes_and_logs_the_same_lines(root: Path, tmp_path: Path) -> None:
    first = generate(root, tmp_path / "a")
    assert cache_file(root).stat().st_mode & 0o777 == 0o600
    second = generate(root, tmp_path / "b")
    assert second == first
    assert "svc.service" in first[0] and "compute-node.target" in first[0]
    # the socket units are part of the tree, and the loader (podman 4.3) sets LISTEN_PID
    assert first[0]["svc-x.sock.socket"] == second[0]["svc-x.sock.socket"]
    assert b"Requires=svc-x.sock.socket" in first[0]["svc.service"][1]  # type: ignore[index]
    assert b"LISTEN_PID=$$$$ && export LISTEN_PID" in first[0]["svc.service"][1]  # type: ignore[index]
    assert first[1] == "compute-units-generator: generated 2 service(s): svc, other\n"
    tamper(root)
    assert described(generate(root, tmp_path / "c")[0]) == b"Description=CACHED compute-units: svc"


@pytest.mark.parametrize(
    "change",
    [
        "spec edited",
        "spec added",
        "secret removed",
        "secret mode",
        "state written",
        "site template",
        "facts recorded",
        "podman replaced",
    ],
)
def test_a_changed_input_means_the_full_path(root: Path, tmp_path: Path, change: str) -> None:
    generate(root, tmp_path / "a")
    tamper(root)
    specs = root / "usr/share/compute-units/services"
    secret = root / "etc/compute-units/secrets/password"
    if change == "spec edited":  # same size, same mtime: the inode or ctime tells
        text = SPEC.replace("/usr/bin/x", "/usr/bin/y")
        (specs / "svc.yaml").write_text(text)
        age(specs / "svc.yaml")
    elif change == "spec added":
        (specs / "third.yaml").write_text("image: 127.0.0.1:5000/z:1\n")
        age(specs / "third.yaml", specs)
    elif change == "secret removed":
        secret.unlink()
    elif change == "secret mode":
        secret.chmod(0o644)
    elif change == "state written":
        (root / "var/lib/compute-units").mkdir(parents=True, exist_ok=True)
        (root / "var/lib/compute-units/state.json").write_text("{}")
    elif change == "facts recorded":  # e.g. `compute-units pull` of another image
        record = root / "var/lib/compute-units/facts.json"
        record.write_text(record.read_text().replace("/usr/bin/x", "/usr/bin/z"))
    elif change == "podman replaced":  # a podman package upgrade: the record's version is stale
        (root / "usr/bin/podman").unlink()
        (root / "usr/bin/podman").write_text("")
    else:
        (root / "etc/compute-units/templates").mkdir(parents=True)
    tree, stderr = generate(root, tmp_path / "b")
    if change == "secret removed":
        assert "svc.service" not in tree and "secret file does not exist" in stderr
    elif change == "podman replaced":  # under a root podman is never run: left out, named
        assert "svc.service" not in tree and "secrets depend on podman's version" in stderr
    else:
        assert described(tree) == b"Description=compute-units: svc"


def test_a_cache_writable_by_others_or_a_used_output_directory_is_not_trusted(
    root: Path, tmp_path: Path
) -> None:
    generate(root, tmp_path / "a")
    tamper(root)
    cache_file(root).chmod(0o666)
    assert described(generate(root, tmp_path / "b")[0]) == b"Description=compute-units: svc"
    tamper(root)  # the full run above stored a fresh cache
    (tmp_path / "c/normal").mkdir(parents=True)
    (tmp_path / "c/normal/foreign.service").write_text("[Service]\n")
    assert described(generate(root, tmp_path / "c")[0]) == b"Description=compute-units: svc"


def test_a_broken_spec_is_never_cached(root: Path, tmp_path: Path) -> None:
    specs = root / "usr/share/compute-units/services"
    (specs / "broken.yaml").write_text("image: 127.0.0.1:5000/x:1\nrestart: sometimes\n")
    age(specs / "broken.yaml", specs)
    generate(root, tmp_path / "a")
    assert not cache_file(root).exists()


@pytest.mark.parametrize("recorded_in", ["this boot", "an earlier boot"])
def test_a_run_during_an_unfinished_upgrade_is_never_cached(
    root: Path, tmp_path: Path, recorded_in: str
) -> None:
    """Its units depend on the boot (generator.write_boot_pin), and state.json stays the same
    across a power cut: a run cached in the upgrade's boot would skip the boot pin after it."""
    old, new = f"127.0.0.1:5000/y:1@sha256:{'a' * 64}", f"127.0.0.1:5000/y:2@sha256:{'b' * 64}"
    this_boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    entry = {"current": old, "previous": old, "target": new, "phase": "pinned"}
    entry["boot_id"] = this_boot if recorded_in == "this boot" else "an-earlier-boot"
    state = root / "var/lib/compute-units/state.json"
    state.write_text(json.dumps({"services": {"other": entry}}))
    age(state)
    tree, stderr = generate(root, tmp_path / "a")
    assert not cache_file(root).exists()
    after_a_reboot = recorded_in == "an earlier boot"
    assert ("other.service.d/50-compute-units-boot-pin.conf" in tree) == after_a_reboot
    assert (f"other.service: booted during an unfinished upgrade: runs {old}" in stderr) == after_a_reboot
    # settled (idle, pinned): cached again
    state.write_text(json.dumps({"services": {"other": {"current": new}}}))
    age(state)
    generate(root, tmp_path / "b")
    assert cache_file(root).exists()


def test_a_read_only_cache_directory_changes_nothing(root: Path, tmp_path: Path) -> None:
    (root / "var").mkdir(exist_ok=True)
    (root / "var").chmod(0o555)
    if os.access(root / "var", os.W_OK):  # root ignores modes: a file where the directory should be
        (root / "var").chmod(0o755)
        (root / "var/cache").write_text("")
    tree, stderr = generate(root, tmp_path / "a")
    assert "svc.service" in tree and stderr == "compute-units-generator: generated 2 service(s): svc, other\n"
    subprocess.run(["chmod", "-R", "u+w", str(root)], check=True)
