"""`spec.check_image_reference`: an image given on a command line is checked like a spec's image,
and one that names no registry is refused (it would go to a public registry)."""

from __future__ import annotations

from pathlib import Path

import pytest

from compute_units import spec
from compute_units.errors import UsageError
from compute_units.model import ImageRef


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("127.0.0.1:5000/nova/compute:1", ImageRef("127.0.0.1:5000", "nova/compute", "1", None)),
        ("localhost/svc:2", ImageRef("localhost", "svc", "2", None)),
        (
            "registry.example:5000/nova@sha256:" + "a" * 64,
            ImageRef("registry.example:5000", "nova", None, "sha256:" + "a" * 64),
        ),
    ],
)
def test_accepts_references_with_a_registry(text: str, expected: ImageRef) -> None:
    assert spec.check_image_reference(text) == expected


@pytest.mark.parametrize(
    ("text", "message", "hint"),
    [
        (
            "busybox",
            "'busybox' names no registry",
            "podman under systemd cannot ask which registry to use: write e.g. REGISTRY:PORT/busybox",
        ),
        (
            "library/busybox:1",
            "'library/busybox:1' names no registry",
            "podman under systemd cannot ask which registry to use: write e.g. REGISTRY:PORT/library/busybox:1",
        ),
        ("-q", "'-q' is an option, not an image reference", "give --image REGISTRY/NAME:TAG"),
        ("", "invalid image reference '': repository name is empty", None),
        (
            "127.0.0.1:5000/Nova/compute:1",
            "invalid image reference '127.0.0.1:5000/Nova/compute:1': repository 'Nova/compute' must be lowercase",
            None,
        ),
        (
            "nova@sha256:abc",
            "invalid image reference 'nova@sha256:abc': bad digest 'sha256:abc' (expected sha256: and 64 hex digits)",
            None,
        ),
        ("r.example/a:b\nc", "invalid image reference: it contains a newline", None),
        ("r.example/a b", "invalid image reference 'r.example/a b': bad repository name 'a b'", None),
    ],
)
def test_refuses_what_a_spec_refuses_and_references_without_a_registry(
    text: str, message: str, hint: str | None
) -> None:
    with pytest.raises(UsageError) as refused:
        spec.check_image_reference(text)
    assert (refused.value.message, refused.value.hint) == (message, hint)
    assert refused.value.exit_code == 2


def test_the_message_is_the_one_a_spec_gets() -> None:
    text = "127.0.0.1:5000/Nova/compute:1"
    _, diagnostics = spec.parse_text(f"image: {text}\n", Path("x.yaml"))
    with pytest.raises(UsageError) as refused:
        spec.check_image_reference(text)
    assert [d.message for d in diagnostics] == [refused.value.message]
