"""Config validation: every wrong config names its key path, in one line."""

from __future__ import annotations

import math
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import UnionType
from typing import Annotated, Any, Union, get_args, get_origin

import pytest
import yaml
from annotated_types import Le, Lt
from pydantic import BaseModel
from pydantic.fields import FieldInfo

from hft_ray.config import (
    MAX_CONFIG_BYTES,
    MAX_CONFIG_DEPTH,
    MAX_CONFIG_NODES,
    ConfigError,
    HftConfig,
    load_config,
    masked_config_text,
    parse_config,
    read_secret,
)
from tests.conftest import default_config_dict, merge


def broken(override: dict) -> str:
    with pytest.raises(ConfigError) as err:
        parse_config(merge(default_config_dict(), override), "cfg.yaml")
    message = str(err.value)
    assert "\n" not in message
    return message


def test_packaged_default_loads_without_a_path() -> None:
    config = load_config()
    assert list(config.venues) == ["binance", "okx", "gateio"]
    assert config.symbols == ["BTC/USDT", "ETH/USDT", "SOL/USDT"]
    assert config.store.url is None
    assert config.mode == "sim"


def test_repository_configs_all_validate() -> None:
    paths = sorted(Path("configs").glob("*.yaml"))
    assert paths, "no configs found: run from the repository root"
    for path in paths:
        config = load_config(path)  # raises ConfigError naming the key if it does not
        assert len(config.venues) >= 2 and config.symbols, path


def test_unknown_key_is_named_with_its_path() -> None:
    message = broken({"risk": {"max_order_notionl": 5}})
    assert "risk.max_order_notionl: unknown key" in message


def test_wrong_type_is_named() -> None:
    message = broken({"detector": {"pool_size": "two"}})
    assert "detector.pool_size" in message and "'two'" in message


def test_negative_limit_is_named() -> None:
    message = broken({"risk": {"max_order_notional": -5}})
    assert "risk.max_order_notional" in message and "greater than 0" in message


def test_unknown_venue_is_named() -> None:
    message = broken({"venues": {"bitnowhere": {"kind": "sim"}}})
    assert "venues.bitnowhere: unknown venue 'bitnowhere'" in message


def test_malformed_symbol_is_named() -> None:
    message = broken({"symbols": ["BTCUSDT"]})
    assert "symbols" in message and "BTCUSDT" in message


def test_symbol_without_initial_price_is_named() -> None:
    data = default_config_dict()
    data["sim"]["initial_prices"].pop("SOL/USDT")
    with pytest.raises(ConfigError, match=r"sim.initial_prices: missing a price for SOL/USDT"):
        parse_config(data)


def test_redis_url_may_not_carry_a_password() -> None:
    message = broken({"store": {"url": "redis://:hunter2@127.0.0.1:6379/0"}})
    assert "store.url" in message and "password_env" in message
    assert "hunter2" not in message


def test_metrics_port_inside_worker_range_is_refused() -> None:
    assert "metrics.export_port" in broken({"metrics": {"export_port": 10050}})


def test_overrides_reach_market_specs() -> None:
    config = parse_config(
        merge(
            default_config_dict(),
            {"venues": {"okx": {"taker_fee": 0.0008, "markets": {"BTC/USDT": {"tick": 0.5}}}}},
        )
    )
    spec = config.market_spec("okx", "BTC/USDT")
    assert (spec.taker_fee, spec.tick) == (0.0008, 0.5)
    assert config.market_spec("binance", "BTC/USDT").taker_fee == 0.001
    assert config.market_spec("gateio", "ETH/USDT").taker_fee == 0.002


def test_cli_rejects_broken_config_in_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(merge(default_config_dict(), {"risk": {"max_orders_per_s": -1}})))
    proc = subprocess.run(
        [sys.executable, "-m", "hft_ray.cli", "run", "--config", str(bad), "--duration", "5"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert "risk.max_orders_per_s" in lines[0]
    assert "Traceback" not in proc.stderr


def test_cli_reports_unreadable_and_invalid_yaml(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("risk: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)


# Config that cannot lie: a key given twice, an alias bomb, an infinite or absurd limit.

LOCAL_YAML = Path("configs/local.yaml")


def load_text(tmp_path: Path, text: str) -> str:
    path = tmp_path / "x.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as err:
        load_config(path)
    message = str(err.value)
    assert "\n" not in message and message.startswith(f"{path}: ")
    return message.removeprefix(f"{path}: ")


def test_a_second_risk_section_is_an_error_naming_both_lines(tmp_path: Path) -> None:
    """The reported defect: a second `risk:` replaced the first and lifted every limit."""
    text = LOCAL_YAML.read_text()
    first = text.splitlines().index("risk:") + 1
    text += "\nrisk:\n  max_order_notional: 1000000\n"
    second = len(text.splitlines()) - 1
    assert load_text(tmp_path, text) == (
        f"duplicate key 'risk' at line {second} (first at line {first})"
    )


def test_a_key_given_twice_deep_down_is_named_with_its_path(tmp_path: Path) -> None:
    text = LOCAL_YAML.read_text().replace(
        "max_position: {BTC: 0.1, ETH: 2, SOL: 40}", "max_position: {BTC: 0.1, ETH: 2, BTC: 40}"
    )
    line = next(i for i, t in enumerate(text.splitlines(), 1) if "BTC: 40" in t)
    assert load_text(tmp_path, text) == (
        f"duplicate key 'risk.max_position.BTC' at line {line} (first at line {line})"
    )


def test_merge_keys_still_work_and_own_keys_override_merged_ones(tmp_path: Path) -> None:
    path = tmp_path / "merge.yaml"
    path.write_text(
        "symbols: [BTC/USDT]\n"
        "venues:\n"
        "  binance: &sim {kind: sim, noise_bps: 1.5, lag_ms: 10}\n"
        "  okx:\n"
        "    <<: *sim\n"
        "    lag_ms: 60\n"
        "sim: {initial_prices: {BTC/USDT: 90000}}\n"
    )
    config = load_config(path)
    okx = config.venues["okx"]
    assert okx.kind == "sim" and (okx.noise_bps, okx.lag_ms) == (1.5, 60.0)


def test_a_billion_laughs_is_refused_in_one_line(tmp_path: Path) -> None:
    lines = ["a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 10)]
    message = load_text(tmp_path, "\n".join(lines) + "\n")
    assert message.endswith(
        f"expands to more than {MAX_CONFIG_NODES} nodes once aliases are expanded"
    )


def test_an_alias_inside_itself_is_refused(tmp_path: Path) -> None:
    assert load_text(tmp_path, "symbols: &s [*s]\n") == (
        "line 1: 'symbols' contains itself through an alias"
    )


def test_deep_nesting_is_refused(tmp_path: Path) -> None:
    assert (
        load_text(tmp_path, "[" * 5000) == f"line 1: nested deeper than {MAX_CONFIG_DEPTH} levels"
    )


def test_an_oversized_file_is_refused_before_parsing(tmp_path: Path) -> None:
    message = load_text(tmp_path, "#" * (MAX_CONFIG_BYTES + 1))
    assert message == f"larger than {MAX_CONFIG_BYTES} bytes; not a config"


def test_a_file_that_is_not_utf8_is_named(tmp_path: Path) -> None:
    path = tmp_path / "x.yaml"
    path.write_bytes(b"run: {name: \xff}\n")
    with pytest.raises(ConfigError, match=r"x.yaml: not UTF-8 text \(byte 12\)$"):
        load_config(path)


def test_a_value_its_tag_cannot_build_is_named_with_its_line(tmp_path: Path) -> None:
    assert (
        load_text(tmp_path, "run:\n  seed: !!int seven\n") == "line 2: 'seven' is not a valid !!int"
    )
    assert (
        load_text(tmp_path, "a: 2024-13-01\n") == "line 1: '2024-13-01' is not a valid !!timestamp"
    )


@pytest.mark.parametrize(
    ("override", "path"),
    [
        ({"risk": {"max_order_notional": math.inf}}, "risk.max_order_notional"),
        ({"risk": {"max_position": {"BTC": math.inf}}}, "risk.max_position.BTC"),
        ({"risk": {"max_daily_loss_quote": math.nan}}, "risk.max_daily_loss_quote"),
        ({"sim": {"dislocation_bps": [30, math.inf]}}, "sim.dislocation_bps.1"),
        ({"cluster": {"cpus_per_bundle": math.inf}}, "cluster.cpus_per_bundle"),
        ({"venues": {"okx": {"balances": {"USDT": -math.inf}}}}, "venues.okx.balances.USDT"),
    ],
)
def test_infinite_and_nan_numbers_are_refused_with_their_key_path(
    override: dict, path: str
) -> None:
    assert f"{path}: must be a finite number (got " in broken(override)


def test_infinite_numbers_are_refused_in_free_form_options_too() -> None:
    data = default_config_dict()
    data["venues"]["okx"] = {"kind": "ccxt", "options": {"ws": {"timeout": math.nan}}}
    with pytest.raises(ConfigError, match=r"venues.okx.options.ws.timeout: must be a finite"):
        parse_config(data)


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ({"risk": {"max_order_notional": 1e15}}, "risk.max_order_notional: Input should be less"),
        ({"risk": {"max_orders_per_s": 1e6}}, "risk.max_orders_per_s: Input should be less"),
        ({"risk": {"lease_ttl_ms": 1e9, "lease_sync_ms": 50}}, "risk.lease_ttl_ms: Input should"),
        ({"feed": {"depth": 10_000}}, "feed.depth: Input should be less than or equal to 400"),
        ({"execution": {"pool_size": 100_000}}, "execution.pool_size: Input should be less"),
        ({"cluster": {"ready_timeout_s": 1e7}}, "cluster.ready_timeout_s: Input should be less"),
        ({"status": {"port": 70_000}}, "status.port: Input should be less than or equal to 65535"),
        ({"run": {"name": "../../etc"}}, "run.name: String should match pattern"),
        (
            {"venues": {"okx": {"lag_ms": 3_000_000}}, "sim": {"tick_ms": 0.1}},
            "more than 100000 ticks",
        ),
    ],
)
def test_absurd_numbers_are_refused_with_their_key_path_and_value(
    override: dict, expected: str
) -> None:
    assert expected in broken(override)


def numeric_fields_without_an_upper_bound(
    annotation: Any, metadata: list[Any], path: str
) -> Iterator[str]:
    """Key paths of numeric settings that pydantic would let grow without limit."""
    origin = get_origin(annotation)
    if origin is Annotated:
        base, *extra = get_args(annotation)
        more = [m for e in extra for m in (e.metadata if isinstance(e, FieldInfo) else [e])]
        yield from numeric_fields_without_an_upper_bound(base, [*metadata, *more], path)
    elif isinstance(annotation, type) and issubclass(annotation, BaseModel):
        assert annotation.model_config.get("allow_inf_nan") is False, annotation
        for name, field in annotation.model_fields.items():
            yield from numeric_fields_without_an_upper_bound(
                field.annotation, list(field.metadata), f"{path}{name}."
            )
    elif origin in (Union, UnionType):
        for arg in get_args(annotation):
            yield from numeric_fields_without_an_upper_bound(arg, metadata, path)
    elif origin in (dict, list, tuple):
        for arg in get_args(annotation)[-1 if origin is dict else 0 :]:
            yield from numeric_fields_without_an_upper_bound(arg, [], f"{path}*.")
    elif annotation in (int, float) and not any(isinstance(m, Le | Lt) for m in metadata):
        yield path.rstrip(".")


def test_every_numeric_setting_is_finite_and_bounded() -> None:
    """Every model refuses inf and NaN, and every number of every model has an upper bound:
    a new field without one fails here."""
    assert list(numeric_fields_without_an_upper_bound(HftConfig, [], "")) == []


# What a run prints and keeps of its config: everything but the secrets.


def test_masked_config_text_hides_every_secret_and_names_where_they_come_from() -> None:
    data = default_config_dict()
    data["venues"]["okx"] = {
        "kind": "ccxt",
        "api_key_env": "OKX_API_KEY",
        "secret_file": "/run/secrets/okx-secret",
        "urls": {
            "api": {"rest": "https://trader:S3NTINEL-URLPW@okx.test/api?apiKey=S3NTINEL-Q&x=1"}
        },
        "options": {"apiKey": "S3NTINEL-OPT", "ws": {"auth_token": "S3NTINEL-TOK", "rate": 5}},
    }
    data["store"] = {"url": "redis://trader@127.0.0.1:6379/0", "password_env": "REDIS_PW"}
    text = masked_config_text(parse_config(data))
    assert "S3NTINEL" not in text and "trader" not in text
    shown = yaml.safe_load(text)
    okx = shown["venues"]["okx"]
    assert (okx["api_key_env"], okx["secret_file"]) == ("OKX_API_KEY", "/run/secrets/okx-secret")
    assert okx["urls"]["api"]["rest"] == "https://***@okx.test/api?apiKey=***&x=1"
    assert okx["options"] == {"apiKey": "***", "ws": {"auth_token": "***", "rate": 5}}
    assert shown["store"]["url"] == "redis://***@127.0.0.1:6379/0"
    assert shown["store"]["password_env"] == "REDIS_PW"


def test_masked_config_text_of_a_config_without_secrets_loads_back_the_same() -> None:
    config = load_config()
    assert parse_config(yaml.safe_load(masked_config_text(config))) == config


# Secrets from the environment or a mounted file, read at use.


def test_a_secret_from_a_file_or_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = tmp_path / "pw"
    secret.write_text("S3NTINEL\n")
    assert read_secret(None, secret, "store.password") == "S3NTINEL"
    secret.write_text("S3NTINEL\r\n")
    assert read_secret(None, str(secret), "store.password") == "S3NTINEL"
    secret.write_text("S3NTINEL\n\n")
    assert read_secret(None, secret, "store.password") == "S3NTINEL\n"
    monkeypatch.setenv("HFT_TEST_SECRET", "S3NTINEL")
    assert read_secret("HFT_TEST_SECRET", None, "venues.okx.secret") == "S3NTINEL"
    assert read_secret(None, None, "venues.okx.secret") is None


def test_a_secret_that_cannot_be_read_is_one_line_without_its_value(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("HFT_TEST_UNSET", raising=False)
    monkeypatch.setenv("HFT_TEST_EMPTY", "")
    empty = tmp_path / "empty"
    empty.write_text("\n")
    big = tmp_path / "big"
    big.write_bytes(b"S3NTINEL" * 10_000)
    cases = [
        (
            ("HFT_TEST_UNSET", None),
            "venues.okx.api_key_env: environment variable HFT_TEST_UNSET is not set",
        ),
        (
            ("HFT_TEST_EMPTY", None),
            "venues.okx.api_key_env: environment variable HFT_TEST_EMPTY is empty",
        ),
        (
            (None, tmp_path / "nope"),
            f"venues.okx.api_key_file: {tmp_path / 'nope'}: cannot read "
            "(No such file or directory)",
        ),
        ((None, tmp_path), f"venues.okx.api_key_file: {tmp_path}: cannot read (Is a directory)"),
        ((None, empty), f"venues.okx.api_key_file: {empty} is empty"),
        ((None, big), f"venues.okx.api_key_file: {big}: larger than 65536 bytes; not a secret"),
        (
            ("HFT_TEST_EMPTY", empty),
            "venues.okx.api_key_env and venues.okx.api_key_file are both set; name one",
        ),
    ]
    for (env, file), expected in cases:
        with pytest.raises(ConfigError) as err:
            read_secret(env, file, "venues.okx.api_key")
        assert str(err.value) == expected
        assert "S3NTINEL" not in str(err.value)


def test_a_secret_named_both_by_variable_and_by_file_is_refused() -> None:
    message = broken({"store": {"password_env": "REDIS_PW", "password_file": "/run/secrets/pw"}})
    assert "store: password_env and password_file are both set; name one" in message
    data = default_config_dict()
    data["venues"]["okx"] = {"kind": "ccxt", "secret_env": "S", "secret_file": "/s"}
    with pytest.raises(ConfigError, match=r"venues\.okx: secret_env and secret_file are both set"):
        parse_config(data)


def test_a_secret_pasted_where_its_variable_name_goes_is_refused_unshown() -> None:
    data = default_config_dict()
    data["venues"]["okx"] = {"kind": "ccxt", "api_key_env": "S3NTINEL+KEY/VALUE=="}
    with pytest.raises(ConfigError, match=r"venues\.okx\.api_key_env: String should match") as err:
        parse_config(data)
    assert "S3NTINEL" not in str(err.value)
