"""The option registry: one entry per spelling, and the docs list what podman_args allows."""

from __future__ import annotations

from pathlib import Path

from compute_units import options


def test_every_spelling_names_one_option() -> None:
    spellings = [name for o in options.OPTIONS for name in (o.flag, *o.aliases)]
    assert len(spellings) == len(set(spellings))
    assert options.lookup("-v") == options.lookup("--volume")
    assert options.canonical("--net") == "--network"
    assert [options.namespace_flag(n) for n in ("pid", "cgroup")] == ["--pid=host", "--cgroupns=host"]


def test_an_option_podman_args_refuses_says_why() -> None:
    refused = [o for o in options.OPTIONS if not o.passes and not o.import_error]
    assert [o.flag for o in refused if o.refusal(o.flag) is None] == []
    assert options.lookup("--cap-add").refusal("--cap-add") == (  # type: ignore[union-attr]
        "--cap-add cannot be given in podman_args: capabilities are part of the privilege model; "
        "use privileged: true",
        None,
    )


def test_the_spec_limits_page_lists_every_option_podman_args_allows() -> None:
    page = (Path(__file__).parents[2] / "docs/spec-limits.md").read_text()
    missing = [o.flag for o in options.OPTIONS if o.passes and f"`{o.flag}" not in page]
    assert missing == []
