"""Builder.build(save=True): the first node builds and saves the archive, the next one loads it."""

from __future__ import annotations

import subprocess
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import cast

import pytest

from compute_units_dev import images
from compute_units_dev.images import Builder
from compute_units_dev.node import Node, NodeError, wait_until


class FakeNode:
    """A node whose build store is a set of references; save and load run real pipes."""

    def __init__(self, tmp: Path, save_fails: bool = False) -> None:
        self.images: set[str] = set()
        self.builds: list[str] = []
        self.received = tmp / f"received-{id(self)}"
        self.save_fails = save_fails

    def argv(self, argv: Sequence[str]) -> list[str]:
        if "save" in argv:
            if self.save_fails:
                return ["sh", "-c", "printf partial; echo 'no space left' >&2; exit 125"]
            return ["printf", f"archive of {argv[-1]}"]
        assert "load" in argv
        return ["sh", "-c", f"cat > {self.received}"]

    def run(self, argv: Sequence[str], **_: object) -> subprocess.CompletedProcess[str]:
        if "exists" in argv:
            if self.received.exists():
                self.images.add(self.received.read_text().removeprefix("archive of "))
            return subprocess.CompletedProcess(argv, 0 if argv[-1] in self.images else 1)
        if "build" in argv:
            ref = argv[argv.index("-t") + 1]
            self.builds.append(ref)
            self.images.add(ref)
        return subprocess.CompletedProcess(argv, 0)

    def copy_tree_in(self, source: Path, destination: str) -> None:
        pass


@pytest.fixture(autouse=True)
def saved(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setattr(images, "SAVED", tmp_path / "images")
    return tmp_path / "images"


def builder(node: FakeNode) -> Builder:
    return Builder(cast(Node, node))


def test_the_first_node_builds_and_saves_the_next_one_loads(tmp_path: Path, saved: Path) -> None:
    first, second = FakeNode(tmp_path), FakeNode(tmp_path)
    built = builder(first)
    ref = built.build("libvirt-modular", "localhost/cu-test/trixie:1", {"VERSION": "1"}, save=True)
    key = ref.rsplit(":", 1)[1]
    assert first.builds == [ref] and built.built == [ref] and built.loaded == []
    assert sorted(p.name for p in saved.iterdir()) == [
        f"libvirt-modular-{key}.lock",
        f"libvirt-modular-{key}.tar",
    ]
    assert (saved / f"libvirt-modular-{key}.tar").read_text() == f"archive of {ref}"

    loaded = builder(second)
    assert loaded.build("libvirt-modular", "localhost/cu-test/trixie:1", {"VERSION": "1"}, save=True) == ref
    assert second.builds == [] and loaded.built == [] and loaded.loaded == [ref]
    assert [(what, r) for what, r, _ in built.timings] == [("built", ref), ("saved", ref)]
    assert [(what, r) for what, r, _ in loaded.timings] == [("loaded", ref)]
    # the node that has it now: a plain cache hit
    assert loaded.build("libvirt-modular", "localhost/cu-test/trixie:1", {"VERSION": "1"}, save=True) == ref
    assert loaded.hits == [ref]


def test_the_key_is_the_content_other_args_build_again(tmp_path: Path, saved: Path) -> None:
    node = FakeNode(tmp_path)
    one = builder(node).build("libvirt-modular", "base:1", {"VERSION": "1"}, save=True)
    two = builder(FakeNode(tmp_path)).build("libvirt-modular", "base:1", {"VERSION": "2"}, save=True)
    other_base = builder(FakeNode(tmp_path)).build("libvirt-modular", "base:2", {"VERSION": "1"}, save=True)
    assert len({one, two, other_base}) == 3
    assert len(list(saved.glob("*.tar"))) == 3


def test_cheap_images_are_not_saved(tmp_path: Path, saved: Path) -> None:
    node = FakeNode(tmp_path)
    ref = builder(node).build("svc", "localhost/cu-test/busybox:1", {"VERSION": "1"})
    assert node.builds == [ref]
    assert not saved.exists()


def test_a_failed_save_leaves_no_archive_and_the_next_node_builds(tmp_path: Path, saved: Path) -> None:
    failing = FakeNode(tmp_path, save_fails=True)
    with pytest.raises(
        NodeError,
        match=r"^podman save localhost/cu-test/libvirt-modular:[0-9a-f]{16} failed: no space left\n$",
    ):
        builder(failing).build("libvirt-modular", "base:1", save=True)
    assert [p.suffix for p in saved.iterdir()] == [".lock"]
    again = FakeNode(tmp_path)
    ref = builder(again).build("libvirt-modular", "base:1", save=True)
    assert again.builds == [ref]


class SlowNode(FakeNode):
    """Its build blocks until `release` is set, and says when it started."""

    def __init__(self, tmp: Path) -> None:
        super().__init__(tmp)
        self.building = threading.Event()
        self.release = threading.Event()

    def run(self, argv: Sequence[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
        if "build" in argv:
            self.building.set()
            assert self.release.wait(10)
        return super().run(argv, **kwargs)


def waiting_on(path: Path) -> bool:
    """/proc/locks has a blocked request (`N: -> FLOCK ...`) on path's inode."""
    inode = f":{path.stat().st_ino} "
    return any("->" in line and inode in line for line in Path("/proc/locks").read_text().splitlines())


def test_a_node_that_needs_the_image_during_a_build_waits_and_loads(tmp_path: Path) -> None:
    first, second = SlowNode(tmp_path), FakeNode(tmp_path)
    results: dict[str, str] = {}

    def build(label: str, node: FakeNode) -> None:
        results[label] = builder(node).build("libvirt-modular", "base:1", save=True)

    one = threading.Thread(target=build, args=("first", first))
    one.start()
    assert first.building.wait(10)
    two = threading.Thread(target=build, args=("second", second))
    two.start()
    # the second node waits on the archive's lock file: the kernel lists it as a blocked flock
    lock = next((tmp_path / "images").glob("*.lock"))
    wait_until(lambda: waiting_on(lock), 10, f"a blocked flock on {lock}")
    assert "second" not in results
    first.release.set()
    one.join(10)
    two.join(10)
    assert results["first"] == results["second"]
    assert len(first.builds) == 1 and second.builds == []
    assert results["second"] in second.images
