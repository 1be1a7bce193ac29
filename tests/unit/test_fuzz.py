"""Fuzzing the pure core: the spec loader and the importer take any input and either succeed or
report diagnostics (SpecError, ImportFailed, UsageError), quickly and without unbounded memory.

`make test` runs a short round (the "default" profile); `make fuzz` a long campaign (profile
"fuzz": 20,000 examples per test).
"""

from __future__ import annotations

from pathlib import Path

import yaml
from hypothesis import given
from hypothesis import strategies as st

from compute_units import importer, options, spec
from compute_units.errors import ComputeUnitsError

# the profiles ("default", "fuzz") are set in conftest.py

SPEC_PATH = Path("fuzz.yaml")
KEYS = [*spec.TOP_KEYS, "source", "target", "file", "podman_secret", "command", "interval", "x"]
OPTION_NAMES = sorted(name for o in options.OPTIONS for name in (o.flag, *o.aliases))

scalars = st.one_of(
    st.text(max_size=40),
    st.sampled_from(["/", "/srv/a", "/sys/fs/cgroup", "pid", "host", "30s", "true", "127.0.0.1:5000/a:1"]),
    st.integers(),
    st.booleans(),
    st.none(),
)
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.sampled_from(KEYS), inner, max_size=5),
    max_leaves=30,
)
near_specs = st.dictionaries(st.sampled_from(KEYS), values, max_size=10)


def _check_spec(data: bytes | str) -> None:
    service, diagnostics = spec.parse_text(data, SPEC_PATH, check_files=False)
    for d in diagnostics:
        assert d.location.path == SPEC_PATH and d.location.line >= 1 and d.format()
    assert service is None or not [d for d in diagnostics if d.severity == "error"]


@given(st.binary(max_size=2000))
def test_spec_loader_takes_any_bytes(data: bytes) -> None:
    _check_spec(data)


@given(st.text(max_size=2000))
def test_spec_loader_takes_any_text(text: str) -> None:
    _check_spec(text)


@given(near_specs)
def test_spec_loader_takes_near_valid_specs(data: dict[str, object]) -> None:
    _check_spec(yaml.safe_dump(data, allow_unicode=True))


@given(st.text(max_size=2000))
def test_shell_splitter_takes_any_text(text: str) -> None:
    try:
        commands = importer.split_script(text, "fuzz.sh")
    except importer.ImportFailed as failed:
        assert failed.problems and all(p.location.path == Path("fuzz.sh") for p in failed.problems)
        return
    for command in commands:
        importer.parse_run(command)


words = st.one_of(
    st.sampled_from(OPTION_NAMES),
    st.builds(lambda o, v: f"{o}={v}", st.sampled_from(OPTION_NAMES), st.text(max_size=20)),
    st.text(max_size=20),
    st.sampled_from(["host", "/a:/b", "A=1", "DB_PASSWORD=$X", "127.0.0.1:5000/a:1", "--", "-it"]),
)


@given(st.lists(words, max_size=15), st.sampled_from(["docker", "podman", "sudo docker"]))
def test_importer_takes_near_valid_run_lines(options_: list[str], engine: str) -> None:
    line = [*engine.split(), "run", *options_, "127.0.0.1:5000/a:1"]
    try:
        importer.import_commands(importer.from_arguments(line), env_files={})
    except ComputeUnitsError as exc:  # ImportFailed (a SpecError) or UsageError
        assert exc.exit_code == 2


def test_huge_inputs_are_refused_before_parsing(tmp_path: Path) -> None:
    path = tmp_path / "big.yaml"
    path.write_bytes(b"image: " + b"a" * (2 * 1024 * 1024))
    _, problems = spec.parse_file(path)
    assert [p.message for p in problems] == ["spec file is larger than 1024 KiB (the limit); it was not read"]
    big = "docker run x:1\n" * 80_000
    try:
        importer.split_script(big, "big.sh")
    except importer.ImportFailed as failed:
        assert [p.format() for p in failed.problems] == [
            f"big.sh:1: the script is {len(big)} characters long; the limit is 1024 KiB"
        ]
    else:
        raise AssertionError("a 1 MiB+ script was split")


def test_deep_nesting_and_alias_bombs_stay_cheap() -> None:
    deep = "[" * 100_000 + "]" * 100_000
    assert [d.message for d in spec.parse_text(deep, SPEC_PATH)[1]] == [
        "YAML syntax error: exceeded maximum nesting depth"
    ]
    bomb = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{c}: &{c} [{', '.join(['*' + p] * 9)}]\n" for p, c in zip("abcdefgh", "bcdefghi", strict=True)
    )
    _, diagnostics = spec.parse_text(bomb + "image: r.example/a:1\ncommand: *i\n", SPEC_PATH)
    # nine unknown keys, command's nine items are lists (so command is empty): not 9**9 strings
    assert len(diagnostics) == 19
    assert diagnostics[-2].format() == "fuzz.yaml:8:4: command[8]: expected a string, got a list"
