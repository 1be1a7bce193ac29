"""Test images built locally, cached by their inputs, served from a registry on 127.0.0.1.

Nothing is pulled from a public registry. The podman store of a node lives in
build/nodes/NAME/storage and survives reboots, so a build whose input hash is already tagged
there is not repeated. Base images: a busybox tree (from busybox-static) and, for libvirt, a
debootstrap minbase tarball of the node's Debian release (bookworm: libvirt 9 / qemu 7.2; trixie:
libvirt 11 / qemu 10), cached in build/cache.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from .node import BUILD, Node, NodeError, free_port

CONTEXTS = Path(__file__).with_name("images")
BUSYBOX = Path("/bin/busybox")
CACHE = BUILD / "cache"
SAVED = CACHE / "images"  # expensive images, saved once for every node of the checkout


def tree_hash(*parts: Path | str) -> str:
    h = hashlib.sha256()
    for part in parts:
        if isinstance(part, Path):
            for path in sorted(p for p in part.rglob("*") if p.is_file()) if part.is_dir() else [part]:
                h.update(str(path.relative_to(part) if part.is_dir() else path.name).encode())
                h.update(path.read_bytes())
        else:
            h.update(part.encode())
    return h.hexdigest()[:16]


# Images are built in a store of their own and reach the node's runtime store only by a pull from
# the registry, as on a real hypervisor: an image built in the runtime store keeps its local
# manifest digest next to the registry's, which no production host would see.
BUILD_PODMAN = ["podman", "--root", "/var/lib/containers/cu-test-build", "--runroot", "/run/cu-test-build"]


def minbase_tarball(release: str) -> Path:
    """build/cache/RELEASE-minbase.tar: built once (in a private mount namespace, renamed when done)."""
    tarball = CACHE / f"{release}-minbase.tar"
    if not tarball.exists():
        CACHE.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=CACHE) as tmp:
            argv = ["unshare", "--mount", "--propagation", "private"]
            subprocess.run(
                [*argv, "debootstrap", "--variant=minbase", release, tmp], check=True, capture_output=True
            )
            partial = tarball.with_suffix(f".partial-{os.getpid()}")
            subprocess.run(["tar", "-C", tmp, "-cf", str(partial), "."], check=True)
            partial.rename(tarball)
    return tarball


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)  # another node building the same image: wait for it
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@dataclass
class Builder:
    """Builds images inside a node; records which builds were cache hits (tests assert on it),
    which were loaded from SAVED, and how long each build, save or load took (the last ones)."""

    node: Node
    hits: list[str] = field(default_factory=list)
    built: list[str] = field(default_factory=list)
    loaded: list[str] = field(default_factory=list)
    timings: list[tuple[str, str, float]] = field(default_factory=list)  # (built|saved|loaded, ref, s)

    def exists(self, ref: str) -> bool:
        return self.node.run([*BUILD_PODMAN, "image", "exists", ref], check=False).returncode == 0

    def busybox_base(self) -> str:
        key = tree_hash(BUSYBOX)
        ref = f"localhost/cu-test/busybox:{key}"
        if self.exists(ref):
            self.hits.append(ref)
            return ref
        with tempfile.TemporaryDirectory() as tmp:
            root = Path(tmp)
            (root / "bin").mkdir()
            shutil.copy2(BUSYBOX, root / "bin/busybox")
            applets = subprocess.run([str(BUSYBOX), "--list"], capture_output=True, text=True, check=True)
            for applet in applets.stdout.split():
                if applet != "busybox":
                    (root / "bin" / applet).symlink_to("busybox")
            for d in ("tmp", "run", "proc", "sys", "dev", "etc", "var/lib"):
                (root / d).mkdir(parents=True, exist_ok=True)
            (root / "etc/passwd").write_text("root:x:0:0:root:/root:/bin/sh\n")
            (root / "etc/group").write_text("root:x:0:\n")
            self._import(root, ref)
        self.built.append(ref)
        return ref

    def debootstrap_base(self, release: str | None = None) -> str:
        """localhost/cu-test/RELEASE:HASH from a cached `debootstrap --variant=minbase RELEASE` tarball
        (RELEASE: the node's by default)."""
        release = release or self.node.release
        tarball = minbase_tarball(release)
        ref = f"localhost/cu-test/{release}:{tree_hash(tarball)}"
        if self.exists(ref):
            self.hits.append(ref)
            return ref
        with tarball.open("rb") as handle:
            proc = subprocess.run(
                self.node.argv([*BUILD_PODMAN, "import", "-", ref]),
                stdin=handle,
                capture_output=True,
                check=False,
            )
        if proc.returncode != 0:
            raise NodeError(f"podman import failed: {proc.stderr.decode()}")
        self.built.append(ref)
        return ref

    def _import(self, root: Path, ref: str) -> None:
        tar = subprocess.Popen(["tar", "-C", str(root), "-c", "."], stdout=subprocess.PIPE)
        proc = subprocess.run(
            self.node.argv([*BUILD_PODMAN, "import", "-", ref]), stdin=tar.stdout, capture_output=True
        )
        tar.wait()
        if proc.returncode != 0:
            raise NodeError(f"podman import failed: {proc.stderr.decode()}")

    def build(
        self,
        context: str,
        base: str,
        args: Mapping[str, str] | None = None,
        name: str | None = None,
        save: bool = False,
    ) -> str:
        """Build CONTEXTS/context FROM base with build args; cached by every input.

        `save` (for images that take minutes, such as a compiled libvirt): the first node to build
        the image saves it to build/cache/images/NAME-KEY.tar (an OCI archive) under a file lock;
        any other node of the checkout loads that archive instead of building (and waits for a
        build in progress)."""
        directory = CONTEXTS / context
        arg_text = ",".join(f"{k}={v}" for k, v in sorted((args or {}).items()))
        key = tree_hash(directory, base, arg_text)
        ref = f"localhost/cu-test/{name or context}:{key}"
        if self.exists(ref):
            self.hits.append(ref)
            return ref
        if not save:
            self._build(directory, base, args or {}, key, ref)
            return ref
        archive = SAVED / f"{name or context}-{key}.tar"
        with _locked(archive.with_suffix(".lock")):
            if archive.exists():
                self._load(archive, ref)
            else:
                self._build(directory, base, args or {}, key, ref)
                self._save(ref, archive)
        return ref

    def _build(self, directory: Path, base: str, args: Mapping[str, str], key: str, ref: str) -> None:
        started = time.monotonic()
        staging = f"/run/cu-build/{key}"
        self.node.copy_tree_in(directory, staging)
        argv = [*BUILD_PODMAN, "build", "--network=host", "--build-arg", f"BASE={base}"]
        for k, v in sorted(args.items()):
            argv += ["--build-arg", f"{k}={v}"]
        self.node.run([*argv, "-t", ref, staging], timeout=1800)
        self.node.run(["rm", "-rf", staging])
        self.built.append(ref)
        self.timings.append(("built", ref, time.monotonic() - started))

    def _save(self, ref: str, archive: Path) -> None:
        """`podman save` streamed out of the node into a temporary name, renamed when complete."""
        started = time.monotonic()
        partial = archive.with_suffix(f".partial-{os.getpid()}")
        with partial.open("wb") as handle:
            proc = subprocess.run(
                self.node.argv([*BUILD_PODMAN, "save", "--format", "oci-archive", ref]),
                stdout=handle,
                stderr=subprocess.PIPE,
                check=False,
            )
        if proc.returncode != 0:
            partial.unlink()
            raise NodeError(f"podman save {ref} failed: {proc.stderr.decode()}")
        partial.rename(archive)
        self.timings.append(("saved", ref, time.monotonic() - started))

    def _load(self, archive: Path, ref: str) -> None:
        started = time.monotonic()
        with archive.open("rb") as handle:
            proc = subprocess.run(
                self.node.argv([*BUILD_PODMAN, "load"]), stdin=handle, capture_output=True, check=False
            )
        if proc.returncode != 0:
            raise NodeError(f"podman load {archive} failed: {proc.stderr.decode()}")
        if not self.exists(ref):
            raise NodeError(f"podman load {archive} did not give {ref}: {proc.stdout.decode()}")
        self.loaded.append(ref)
        self.timings.append(("loaded", ref, time.monotonic() - started))


@dataclass
class Registry:
    """Debian's docker-registry, as a transient unit in the node, on a free port of 127.0.0.1."""

    node: Node
    port: int

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @classmethod
    def start(cls, node: Node) -> Registry:
        port = free_port()
        node.write_file(
            "/etc/compute-units-test/registry.yml",
            f"version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: /var/lib/test-registry\n"
            f"http:\n  addr: 127.0.0.1:{port}\n",
        )
        node.write_file(
            "/etc/containers/registries.conf.d/50-sandbox.conf",
            f'[[registry]]\nlocation = "127.0.0.1:{port}"\ninsecure = true\n',
        )
        node.run(
            [
                "systemd-run",
                "--unit=test-registry",
                "-p",
                "Type=exec",
                "/usr/bin/docker-registry",
                "serve",
                "/etc/compute-units-test/registry.yml",
            ]
        )
        # the registry answers /v2/ once it listens; curl retries connection refusals by itself
        node.run(
            [
                "curl",
                "-sf",
                "--retry",
                "50",
                "--retry-connrefused",
                "--retry-delay",
                "0",
                "--retry-max-time",
                "20",
                f"http://127.0.0.1:{port}/v2/",
            ]
        )
        return cls(node, port)

    def push(self, local: str, repository: str, tag: str) -> str:
        """Push a local image as ADDRESS/repository:tag; return the registry's manifest digest."""
        remote = f"{self.address}/{repository}:{tag}"
        digest_file = f"/run/cu-push-{repository.replace('/', '_')}-{tag}"
        self.node.run(
            [*BUILD_PODMAN, "push", "--quiet", "--digestfile", digest_file, local, f"docker://{remote}"]
        )
        return self.node.read_file(digest_file).strip()

    def reference(self, repository: str, tag: str) -> str:
        return f"{self.address}/{repository}:{tag}"
