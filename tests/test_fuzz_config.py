"""Fuzzing the config loader and the CLI's argument types: whatever the input, the answer is a
valid `HftConfig` (or parsed arguments) or one line naming what was wrong; never another
exception, a traceback or a hang."""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from hft_ray.cli import MAX_DURATION_S, build_parser, main
from hft_ray.config import (
    MAX_BOOK_DEPTH,
    MAX_CONFIG_NODES,
    MAX_REPLAY_SPEED,
    ConfigError,
    HftConfig,
    load_config,
    parse_config,
    parse_config_text,
)
from tests.conftest import default_config_dict

FUZZ = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
DEFAULT_TEXT = (Path(__file__).resolve().parent.parent / "configs" / "local.yaml").read_text()


def outcome(load: Any, *args: Any) -> HftConfig | str:
    """The config, or the error's one line; any other exception fails the test."""
    try:
        config = load(*args)
    except ConfigError as err:
        message = str(err)
        assert message and "\n" not in message, repr(message)
        assert "Traceback" not in message
        return message
    assert isinstance(config, HftConfig)
    return config


# YAML's own punctuation and a few words of the config: random text that often parses.
YAMLISH = st.text(
    alphabet=st.sampled_from(list("{}[]:,-&*!<>|'\"\n\t #?%@`=~.+eE0123456789abxyz"))
    | st.characters(),
    max_size=300,
)


@FUZZ
@given(YAMLISH)
def test_random_text_is_a_config_or_one_line(text: str) -> None:
    outcome(parse_config_text, text, "fuzz.yaml")


@settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.binary(max_size=300))
def test_random_bytes_in_a_file_are_a_config_or_one_line(tmp_path: Path, data: bytes) -> None:
    path = tmp_path / "fuzz.yaml"
    path.write_bytes(data)
    message = outcome(load_config, path)
    assert isinstance(message, str) and message.startswith(f"{path}: ")


def json_values() -> st.SearchStrategy[Any]:
    leaves = (
        st.none()
        | st.booleans()
        | st.integers()
        | st.integers(min_value=-(10**400), max_value=10**400)
        | st.floats()  # inf, -inf, nan, subnormals, 1e308
        | st.text(max_size=20)
        | st.sampled_from(["auto", "sim", "ccxt", "BTC/USDT", "1e400", "inf", "nan", "-0"])
    )
    return st.recursive(
        leaves,
        lambda inner: (
            st.lists(inner, max_size=4)
            | st.dictionaries(st.text(max_size=8) | st.integers(), inner, max_size=4)
        ),
        max_leaves=12,
    )


def leaf_paths(node: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every key path of a decoded config, containers included."""
    paths = [path] if path else []
    if isinstance(node, dict):
        for key, value in node.items():
            paths += leaf_paths(value, (*path, key))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            paths += leaf_paths(value, (*path, i))
    return paths


DEFAULT_PATHS = leaf_paths(default_config_dict())


def replaced(data: Any, path: tuple[Any, ...], value: Any) -> Any:
    node = data
    for part in path[:-1]:
        node = node[part]
    node[path[-1]] = value
    return data


@FUZZ
@given(st.sampled_from(DEFAULT_PATHS), json_values(), st.booleans())
def test_any_value_anywhere_is_a_config_or_one_line(
    path: tuple[Any, ...], value: Any, through_yaml: bool
) -> None:
    data = replaced(default_config_dict(), path, value)
    if through_yaml:
        outcome(parse_config_text, yaml.safe_dump(data), "fuzz.yaml")
    else:
        outcome(parse_config, data, "fuzz.yaml")


SECTIONS = {
    name: field.annotation
    for name, field in HftConfig.model_fields.items()
    if isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel)
}


@FUZZ
@given(
    st.sampled_from(sorted(SECTIONS)),
    st.dictionaries(
        st.from_regex(r"[a-z_][a-z0-9_]{0,11}", fullmatch=True),
        # Printable values: a control character is refused for itself, before the key.
        st.integers()
        | st.text(st.characters(exclude_categories=("Cc", "Cs")), max_size=8)
        | st.none(),
        min_size=1,
        max_size=3,
    ),
)
def test_unknown_keys_are_named_with_their_path(section: str, extra: dict[str, Any]) -> None:
    assume(not set(extra) & set(SECTIONS[section].model_fields))
    data = default_config_dict()
    data.setdefault(section, {}).update(extra)
    message = outcome(parse_config, data, "fuzz.yaml")
    assert isinstance(message, str)
    for key in extra:
        assert f"{section}.{key}: unknown key" in message


@FUZZ
@given(st.sampled_from(DEFAULT_PATHS), st.sampled_from([math.inf, -math.inf, math.nan, 1e308]))
def test_no_number_is_infinite_or_absurd(path: tuple[Any, ...], value: float) -> None:
    original = default_config_dict()
    node: Any = original
    for part in path:
        node = node[part]
    assume(isinstance(node, int | float) and not isinstance(node, bool))
    message = outcome(parse_config_text, yaml.safe_dump(replaced(original, path, value)), "f.yaml")
    assert isinstance(message, str), f"{path} accepted {value}"
    assert ".".join(str(p) for p in path) in message


@settings(max_examples=60, deadline=None)
@given(st.integers(2, 40), st.integers(1, 12), st.sampled_from(["[{}]", "{{k0: {}}}"]))
def test_aliases_that_expand_without_bound_are_refused(width: int, depth: int, shape: str) -> None:
    """A billion laughs, as sequences or mappings of aliases, under an otherwise valid config:
    refused once what it expands to is too large, whatever its shape."""
    lines = [f"l0: &l0 {shape.format('x')}"]
    for i in range(1, depth + 1):
        items = ", ".join(f"*l{i - 1}" for _ in range(width))
        if shape.startswith("{"):
            items = ", ".join(f"k{j}: *l{i - 1}" for j in range(width))
            lines.append(f"l{i}: &l{i} {{{items}}}")
        else:
            lines.append(f"l{i}: &l{i} [{items}]")
    text = f"{DEFAULT_TEXT}\nvenues_extra:\n" + "".join(f"  {line}\n" for line in lines)
    message = outcome(parse_config_text, text, "laughs.yaml")
    assert isinstance(message, str)
    size = 2  # l0 and its x
    for _ in range(depth):
        size = 1 + width * (size + (1 if shape.startswith("{") else 0))  # keys count too
    if size > MAX_CONFIG_NODES:
        assert "expands to more than" in message
    elif size * 2 < MAX_CONFIG_NODES:
        assert "venues_extra: unknown key" in message


@settings(max_examples=40, deadline=None)
@given(st.integers(2, 400), st.integers(1, 8))
def test_merge_keys_that_expand_without_bound_are_refused(count: int, fan: int) -> None:
    """Merge keys copy a mapping's pairs: a chain of them grows quadratically, a fan of them
    exponentially; neither may stall the loader."""
    lines = ["m0: &m0 {a: 1}"]
    for i in range(1, count + 1):
        merged = ", ".join(f"*m{max(i - 1 - j, 0)}" for j in range(fan))
        lines.append(f"m{i}: &m{i} {{<<: [{merged}], k{i}: 1}}")
    refused = outcome(parse_config_text, "\n".join(lines) + "\n", "merge.yaml")
    assert isinstance(refused, str) and refused.startswith("merge.yaml")


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 20_000), st.sampled_from(["[", "{a: ", "- ", "? "]))
def test_deep_nesting_is_refused_not_a_recursion_error(depth: int, opener: str) -> None:
    refused = outcome(parse_config_text, opener * depth, "deep.yaml")
    assert isinstance(refused, str) and refused.startswith("deep.yaml")
    assert "RecursionError" not in refused


KEY_LINE = re.compile(r"^(\s*)([A-Za-z_]+):")
KEY_LINES = [i for i, line in enumerate(DEFAULT_TEXT.splitlines()) if KEY_LINE.match(line)]


@FUZZ
@given(st.sampled_from(KEY_LINES), st.integers(0, 3))
def test_a_key_given_twice_at_any_level_is_named_with_both_lines(index: int, gap: int) -> None:
    lines = DEFAULT_TEXT.splitlines()
    indent, key = KEY_LINE.match(lines[index]).groups()  # type: ignore[union-attr]
    # The copy goes `gap` lines further down, still inside the same mapping.
    at = index + 1
    while gap and at < len(lines) and lines[at].startswith(indent + " "):
        at, gap = at + 1, gap - 1
    while at < len(lines) and lines[at].startswith(indent + " "):
        at += 1  # past the first one's nested block
    lines.insert(at, lines[index])
    message = outcome(parse_config_text, "\n".join(lines) + "\n", "dup.yaml")
    assert isinstance(message, str)
    found = re.search(r"duplicate key '([^']+)' at line (\d+) \(first at line (\d+)\)", message)
    assert found, message
    assert found.group(1).split(".")[-1] == key
    assert (int(found.group(2)), int(found.group(3))) == (at + 1, index + 1)


# The CLI: bad numbers end in exit status 2 and one line; good ones parse to what was given.

NUMBER_TEXT = (
    st.floats().map(repr)
    | st.floats().map(lambda x: f"{x:e}")
    | st.integers(min_value=-(10**30), max_value=10**30).map(str)
    | st.sampled_from(["inf", "-inf", "nan", "NaN", "1e400", "-1e400", "0", "-0", "1e-400", "0x10"])
    | st.text(max_size=12)
)

#: (argv before the value, option, the bound of a good value)
FLOAT_ARGS = [
    (["run"], "--duration", MAX_DURATION_S),
    (
        ["record", "--exchange", "binance", "--symbols", "BTC/USDT", "--out", "x"],
        "--duration",
        MAX_DURATION_S,
    ),
    (["replay", "books.jsonl"], "--speed", MAX_REPLAY_SPEED),
]


def float_value(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def refused(argv: list[str], option: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        main(argv)
    assert done.value.code == 2
    err = capsys.readouterr().err
    assert err.endswith("\n") and err.count("\n") == 1, repr(err)
    assert f"argument {option}: " in err


@FUZZ
@given(st.sampled_from(FLOAT_ARGS), NUMBER_TEXT)
def test_cli_numbers_are_finite_positive_and_bounded(
    capsys: pytest.CaptureFixture[str], case: tuple[list[str], str, float], text: str
) -> None:
    before, option, most = case
    argv = [*before, f"{option}={text}"]
    value = float_value(text)
    if value is not None and 0 < value <= most:
        args = build_parser().parse_args(argv)  # parsed only: nothing is started
        assert getattr(args, option.removeprefix("--")) == value
    else:
        refused(argv, option, capsys)


@FUZZ
@given(st.integers(min_value=-(10**30), max_value=10**30).map(str) | NUMBER_TEXT)
def test_cli_depth_is_a_whole_number_within_a_book(
    capsys: pytest.CaptureFixture[str], text: str
) -> None:
    argv = ["record", "--exchange", "binance", "--symbols", "BTC/USDT", "--out", "x"]
    argv.append(f"--depth={text}")
    if re.fullmatch(r"[0-9]+", text.strip()) and 1 <= int(text) <= MAX_BOOK_DEPTH:
        assert build_parser().parse_args(argv).depth == int(text)
    else:
        refused(argv, "--depth", capsys)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.text(max_size=30))
def test_cli_bench_sections_are_known_ones_or_one_line(
    capsys: pytest.CaptureFixture[str], text: str
) -> None:
    from hft_ray.bench import SECTIONS

    wanted = [s.strip() for s in text.split(",") if s.strip()]
    argv = ["bench", f"--only={text}"]
    if wanted and all(s in SECTIONS for s in wanted):
        assert build_parser().parse_args(argv).only == wanted
    else:
        refused(argv, "--only", capsys)
