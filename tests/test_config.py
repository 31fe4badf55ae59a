"""Config validation: every wrong config names its key path, in one line."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from hft_ray.config import ConfigError, load_config, parse_config
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
