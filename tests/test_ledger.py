"""Positions and PnL from fills."""

from __future__ import annotations

import pytest

from hft_ray.journal import Decision, Fill, JournalRecord, Order
from hft_ray.ledger import Ledger, positions_equal


def test_an_arbitrage_realizes_its_spread_less_fees() -> None:
    ledger = Ledger()
    ledger.apply_fill("okx", "BTC/USDT", "buy", 0.5, 100.0, 0.05)
    ledger.apply_fill("binance", "BTC/USDT", "sell", 0.5, 101.0, 0.0505)
    assert ledger.realized_pnl_quote == pytest.approx(0.5 - 0.1005)
    assert ledger.net_position("BTC/USDT") == 0.0
    assert ledger.positions["okx"] == {"BTC": 0.5, "USDT": -50.05}
    assert ledger.positions["binance"] == {"BTC": -0.5, "USDT": 50.4495}


def test_average_cost_and_position_flip() -> None:
    ledger = Ledger()
    ledger.apply_fill("a", "ETH/USDT", "buy", 1.0, 10.0, 0.0)
    ledger.apply_fill("a", "ETH/USDT", "buy", 1.0, 12.0, 0.0)  # avg 11
    ledger.apply_fill("b", "ETH/USDT", "sell", 3.0, 13.0, 0.0)  # closes 2 at +2, opens -1 at 13
    assert ledger.trading_pnl_quote == pytest.approx(4.0)
    assert ledger.net_position("ETH/USDT") == pytest.approx(-1.0)
    ledger.apply_fill("b", "ETH/USDT", "buy", 1.0, 12.5, 0.0)
    assert ledger.trading_pnl_quote == pytest.approx(4.5)
    assert ledger.net_position("ETH/USDT") == 0.0


def test_rebuilt_from_journal_fills_only() -> None:
    journal: list[JournalRecord] = [
        Decision(1, "a", "arb", "SOL/USDT", "okx", "binance", 2.0, 2.0, 9.0, "approved", "", "A"),
        Fill(2, "a", "aB", "okx", "SOL/USDT", "buy", 0, filled=2.0, price=150.0, fee_quote=0.3),
        Order(3, "a", "aB", "okx", "SOL/USDT", "buy", 0, "filled", 2.0, 2.0, 150.0, 0.3, ""),
    ]
    ledger = Ledger.from_journal(journal)
    assert ledger.fills == 1 and ledger.fees_quote == pytest.approx(0.3)
    assert positions_equal(ledger.snapshot()["positions"], {"okx": {"SOL": 2.0, "USDT": -300.3}})
    assert not positions_equal(ledger.snapshot()["positions"], {"okx": {"SOL": 2.1}})


def test_a_fee_taken_in_base_leaves_the_base_balance_and_is_charged_once() -> None:
    ledger = Ledger()
    # Bought 1 BTC at 100, the venue kept 0.001 BTC as its fee (worth 0.1).
    ledger.apply_fill("binance", "BTC/USDT", "buy", 1.0, 100.0, 0.1, "aB", fee_base=0.001)
    assert ledger.position("binance", "BTC") == pytest.approx(0.999)
    assert ledger.position("binance", "USDT") == pytest.approx(-100.0)
    ledger.apply_fill("okx", "BTC/USDT", "sell", 0.999, 100.0, 0.0999, "aS")
    assert ledger.net_position("BTC/USDT") == pytest.approx(0.0)
    assert ledger.realized_pnl_quote == pytest.approx(-0.1999)  # both fees, nothing else
