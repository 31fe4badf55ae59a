"""Journal analytics on a hand-built journal whose answers are worked out by hand."""

from __future__ import annotations

import json
from typing import Any

import pytest

from hft_ray.analytics import analytics, bucket_ns, pair_table
from hft_ray.journal import (
    Decision,
    Execution,
    Fill,
    Intent,
    JournalRecord,
    Leg,
    RiskEvent,
    Unwind,
    Verdict,
)

S = 10**9
BTC, ETH = "BTC/USDT", "ETH/USDT"


def decision(
    ts: int, opp: str, symbol: str, buy: str, sell: str, verdict: Verdict, reason: str = ""
) -> Decision:
    return Decision(ts, opp, "arb", symbol, buy, sell, 1.0, 1.0, 10.0, verdict, reason, "ACTIVE")


def intent(ts: int, opp: str, symbol: str, buy: str, sell: str, expected: float) -> Intent:
    legs = (Leg(buy, f"{opp}B", "buy", 1.0, 100.0), Leg(sell, f"{opp}S", "sell", 1.0, 100.0))
    return Intent(ts, opp, symbol, 1.0, 10.0, expected, legs, executor="executor0")


def fill(ts: int, cid: str, venue: str, side: str, qty: float, px: float, fee: float) -> Fill:
    return Fill(ts, cid[:-1], cid, venue, BTC, side, 0, qty, px, fee)


def execution(ts: int, opp: str, legs_failed: int = 0, unwound: bool = False) -> Execution:
    return Execution(ts, opp, BTC, "executor0", legs_failed, 0, unwound, 0.0)


JOURNAL: list[JournalRecord] = [
    # o1: both legs of 1 BTC fill, 100 -> 101, fees 0.1 and 0.101: +0.799, expected 0.8.
    decision(1 * S, "o1", BTC, "binance", "okx", "approved"),
    intent(1 * S, "o1", BTC, "binance", "okx", 0.8),
    fill(1 * S, "o1B", "binance", "buy", 1.0, 100.0, 0.1),
    fill(1 * S, "o1S", "okx", "sell", 1.0, 101.0, 0.101),
    execution(2 * S, "o1"),
    # o2 (clipped): bought 1 at 100, sold 0.5 at 100.4 (+0.2), the rest repaired at 99 (-0.5).
    decision(3 * S, "o2", BTC, "okx", "binance", "clipped", "max_position"),
    intent(3 * S, "o2", BTC, "okx", "binance", 0.3),
    fill(3 * S, "o2B", "okx", "buy", 1.0, 100.0, 0.0),
    fill(3 * S, "o2S", "binance", "sell", 0.5, 100.4, 0.0),
    Unwind(3 * S, "o2", "reverse", 0.5, "sell", None, 1.0, "okx", "o2U", 0.5, 99.0),
    fill(3 * S, "o2U", "okx", "sell", 0.5, 99.0, 0.0),
    execution(4 * S, "o2", legs_failed=1, unwound=True),
    RiskEvent(4 * S + S // 2, "trip", "max_drawdown", "REDUCING", "0.3 below the peak"),
    # o3 (another strategy) and o4 rejected; o5 approved, its intent never made durable.
    Decision(5 * S, "o3", "revert_open", ETH, "binance", "okx", 1, 0, 3, "rejected", "edge", "A"),
    decision(5 * S + S // 2, "o4", BTC, "binance", "okx", "rejected", "in_flight"),
    decision(6 * S, "o5", ETH, "binance", "okx", "approved"),
    Execution(6 * S, "o5", ETH, "executor0", 0, 0, False, 0.0, reason="store_unavailable"),
    RiskEvent(7 * S, "resume", "", "ACTIVE", "max_drawdown"),
]


@pytest.fixture(scope="module")
def result() -> dict[str, Any]:
    return analytics(JOURNAL, {"tick_to_trade": [1_000, 2_000, 150_000], "scan": []})


def test_groups_per_pair_count_and_price_every_trade(result: dict[str, Any]) -> None:
    pairs = {g["key"]: g for g in result["groups"]["by_pair"]}
    assert list(pairs) == [
        "BTC/USDT binance->okx",
        "BTC/USDT okx->binance",
        "ETH/USDT binance->okx",
    ]
    won = pairs["BTC/USDT binance->okx"]
    assert (won["strategy"], won["symbol"], won["buy_venue"], won["sell_venue"]) == (
        "arb",
        BTC,
        "binance",
        "okx",
    )
    assert (won["opportunities"], won["approved"], won["clipped"], won["executed"]) == (2, 1, 0, 1)
    assert (won["wins"], won["win_rate"], won["legs_failed"], won["repairs"]) == (1, 1.0, 0, 0)
    assert won["expected_edge_quote"] == pytest.approx(0.8)
    assert won["captured_edge_quote"] == pytest.approx(0.799)
    assert won["slippage_bps"] == pytest.approx(0.1)  # 0.001 short of 0.8 on 100 traded
    assert won["realized_pnl_quote"] == pytest.approx(0.799)
    assert won["fees_quote"] == pytest.approx(0.201)
    assert won["repair_cost_quote"] == pytest.approx(0.0)
    lost = pairs["BTC/USDT okx->binance"]
    assert (lost["opportunities"], lost["approved"], lost["clipped"], lost["executed"]) == (
        1,
        1,
        1,
        1,
    )
    assert (lost["wins"], lost["win_rate"], lost["legs_failed"], lost["repairs"]) == (0, 0.0, 1, 1)
    assert lost["captured_edge_quote"] == pytest.approx(0.2)
    assert lost["slippage_bps"] == pytest.approx(10.0)
    assert lost["repair_cost_quote"] == pytest.approx(0.5)
    assert lost["realized_pnl_quote"] == pytest.approx(-0.3)  # captured less the repair
    eth = pairs["ETH/USDT binance->okx"]
    assert (eth["strategy"], eth["opportunities"], eth["approved"], eth["executed"]) == (
        "arb+revert_open",
        2,
        1,
        0,
    )
    assert eth["win_rate"] == 0.0 and eth["slippage_bps"] == 0.0


def test_groups_per_symbol_and_strategy_sum_the_pairs(result: dict[str, Any]) -> None:
    symbols = {g["key"]: g for g in result["groups"]["by_symbol"]}
    btc = symbols[BTC]
    assert (btc["buy_venue"], btc["sell_venue"], btc["opportunities"], btc["executed"]) == (
        None,
        None,
        3,
        2,
    )
    assert btc["win_rate"] == 0.5 and btc["realized_pnl_quote"] == pytest.approx(0.499)
    strategies = {g["key"]: g for g in result["groups"]["by_strategy"]}
    assert strategies["arb"]["opportunities"] == 4 and strategies["arb"]["symbol"] is None
    assert strategies["revert_open"]["opportunities"] == 1


def test_top_bottom_curves_and_inventory(result: dict[str, Any]) -> None:
    assert [g["key"] for g in result["top"]] == ["BTC/USDT binance->okx", "BTC/USDT okx->binance"]
    assert [g["key"] for g in result["bottom"]] == [
        "BTC/USDT okx->binance",
        "BTC/USDT binance->okx",
    ]
    curve = result["pnl_curve"]
    assert [t for t, _ in curve] == [2 * S, 4 * S, 6 * S]  # the aborted o5 adds nothing
    assert [p for _, p in curve] == pytest.approx([0.799, 0.499, 0.499])
    (t1, e1, c1), (t2, e2, c2) = result["edge"]
    assert (t1, t2) == (2 * S, 4 * S)
    assert (e1, c1, e2, c2) == pytest.approx((80.0, 79.9, 30.0, 20.0))
    okx_btc = result["inventory"]["okx"]["BTC"]
    assert okx_btc == [[1 * S, -1.0], [3 * S, 0.0], [3 * S, -0.5]]
    assert result["inventory"]["binance"]["USDT"] == [
        [1 * S, pytest.approx(-100.1)],
        [3 * S, pytest.approx(-49.9)],
    ]
    drift = result["inventory_drift"]
    assert drift["binance"]["BTC"] == pytest.approx(0.5)
    assert drift["okx"] == {"BTC": pytest.approx(-0.5), "USDT": pytest.approx(50.399)}


def test_rejections_risk_events_clips_and_latency(result: dict[str, Any]) -> None:
    rejections = result["rejections"]
    # Decisions span 5 s: 0.5 s buckets from the first, 11 of them.
    assert (rejections["bucket_ns"], rejections["start_ns"]) == (S // 2, S)
    assert rejections["by_reason"] == {
        "edge": [0] * 8 + [1, 0, 0],
        "in_flight": [0] * 9 + [1, 0],
    }
    assert result["risk_events"] == [
        {
            "ts_ns": 4 * S + S // 2,
            "kind": "trip",
            "detail": "max_drawdown -> REDUCING: 0.3 below the peak",
        },
        {"ts_ns": 7 * S, "kind": "resume", "detail": "cleared max_drawdown"},
    ]
    assert result["clips"] == {"max_position": 1}
    hist = result["latency_us"]["tick_to_trade"]
    assert hist["edges"][0] == 1.0 and hist["edges"][-1] == 158.0  # 10^(11/5)
    assert len(hist["edges"]) == len(hist["counts"]) + 1 == 12
    assert hist["counts"][0] == hist["counts"][1] == hist["counts"][10] == 1  # 1, 2, 150 us
    assert sum(hist["counts"]) == 3
    assert result["latency_us"]["scan"] == {"edges": [], "counts": []}
    json.dumps(result)  # plain data


def test_rejection_buckets_fit_the_span() -> None:
    assert 10 * S // bucket_ns(10 * S) == 20
    assert 70 <= 86_400 * S // bucket_ns(86_400 * S) <= 130
    assert bucket_ns(0) >= 1


def test_an_empty_journal_has_empty_analytics() -> None:
    empty = analytics([], {})
    assert empty["groups"] == {"by_pair": [], "by_symbol": [], "by_strategy": []}
    assert empty["pnl_curve"] == [] and empty["top"] == [] and empty["inventory"] == {}
    assert empty["rejections"]["by_reason"] == {}
    assert pair_table(empty) == []


def test_the_pair_table_has_a_line_per_pair(result: dict[str, Any]) -> None:
    header, *rows = pair_table(result)
    assert header.split() == ["pair", "opps", "executed", "win", "rate", "pnl"]
    assert len(rows) == 3
    assert rows[0].split() == ["BTC/USDT", "binance->okx", "2", "1", "100%", "+0.7990"]
