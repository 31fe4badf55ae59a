"""RiskCore: each limit approves, clips or rejects, with a reason; positions follow fills."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from hft_ray.clock import TestClock
from hft_ray.config import HftConfig
from hft_ray.markets import simulated_markets
from hft_ray.risk.core import RiskCore, TradingState
from hft_ray.types import ExecutionReport, Opportunity, OrderResult, Universe

BTC, BINANCE, OKX = 0, 0, 1


def universe_of(config: HftConfig) -> Universe:
    return Universe(tuple(config.venues), tuple(config.symbols))


def opp(
    clock: TestClock,
    size: float = 0.01,
    opp_id: str = "o1",
    edge: float = 20.0,
    buy: int = BINANCE,
    sell: int = OKX,
    price: float = 90_000.0,
) -> Opportunity:
    return Opportunity(
        opp_id,
        BTC,
        buy,
        sell,
        size,
        price,
        price * 1.003,
        price,
        price * 1.003,
        size * price * 0.001,
        edge,
        0,
        0,
        clock.monotonic_ns(),
        clock.monotonic_ns(),
    )


def fill(venue: str, side: str, filled: float, price: float) -> OrderResult:
    return OrderResult(
        "c",
        venue,
        "BTC/USDT",
        side,
        "filled",
        filled,
        filled,
        price,  # type: ignore[arg-type]
        filled * price * 0.001,
        "",
        0,
    )


@pytest.fixture
def risk(make_config: Callable[..., HftConfig]) -> tuple[RiskCore, TestClock]:
    config = make_config(
        risk={
            "max_order_notional": 2_000,
            "max_position": {"BTC": 0.05},
            "max_orders_per_s": 4,
            "order_burst": 4,
            "min_edge_bps": 5,
            "max_in_flight_per_symbol": 1,
        },
    )
    clock = TestClock()
    core = RiskCore(config, universe_of(config), simulated_markets(config), clock)
    core.store_ok = core.restored = True  # the actor sets these once the store answers
    return core, clock


def test_within_limits_is_approved_and_journaled(risk) -> None:  # type: ignore[no-untyped-def]
    core, clock = risk
    approval, record = core.evaluate(opp(clock, 0.01))
    assert approval is not None and approval.size == 0.01
    assert record["verdict"] == "approved" and record["reason"] == ""
    assert record["type"] == "decision" and record["opp_id"] == "o1"


def test_order_notional_clips_the_size(risk) -> None:  # type: ignore[no-untyped-def]
    core, clock = risk
    approval, record = core.evaluate(opp(clock, 0.5))
    limit = 90_000 * (1 + 5e-4)  # the buy leg's limit: worst price plus 5 bps slippage
    assert approval is not None and approval.size == pytest.approx(0.02221)
    assert approval.size * limit <= 2_000
    assert (record["verdict"], record["reason"]) == ("clipped", "max_order_notional")


def test_edge_state_and_in_flight_reject(risk) -> None:  # type: ignore[no-untyped-def]
    core, clock = risk
    assert core.evaluate(opp(clock, edge=2.0))[1]["reason"] == "edge_below_min"
    assert core.evaluate(opp(clock, opp_id="a"))[0] is not None
    assert core.evaluate(opp(clock, opp_id="b"))[1]["reason"] == "in_flight"
    core.on_execution(ExecutionReport("a", "BTC/USDT", (), 0, False, 0))
    core.halt("operator")
    assert core.state is TradingState.HALTED
    assert core.evaluate(opp(clock, opp_id="c"))[1]["reason"] == "state_halted"
    core.resume()
    assert core.evaluate(opp(clock, opp_id="d"))[0] is not None
    assert core.rejected == {"edge_below_min": 1, "in_flight": 1, "state_halted": 1}


def test_stale_opportunity_is_rejected(risk) -> None:  # type: ignore[no-untyped-def]
    core, clock = risk
    o = opp(clock)
    clock.advance(600_000_000)
    assert core.evaluate(o)[1]["reason"] == "stale_opportunity"


def test_position_limit_counts_fills_and_in_flight(risk) -> None:  # type: ignore[no-untyped-def]
    core, clock = risk
    core.on_execution(
        ExecutionReport("x", "BTC/USDT", (fill("binance", "buy", 0.045, 90_000.0),), 1, False, 0)
    )
    assert core.ledger.position("binance", "BTC") == pytest.approx(0.045)
    approval, record = core.evaluate(opp(clock, 0.02))  # binance may only take 0.005 more BTC
    assert approval is not None and approval.size == pytest.approx(0.005)
    assert record["reason"] == "max_position"
    core.on_execution(ExecutionReport("o1", "BTC/USDT", (), 0, False, 0))
    core.on_execution(
        ExecutionReport("y", "BTC/USDT", (fill("binance", "buy", 0.005, 90_000.0),), 1, False, 0)
    )
    assert core.evaluate(opp(clock, 0.02, "o2"))[1]["reason"] == "max_position"


def test_inventory_on_each_venue_bounds_the_size(
    make_config: Callable[..., HftConfig],
) -> None:
    config = make_config(venues={"okx": {"balances": {"BTC": 0.004}}})
    clock = TestClock()
    core = RiskCore(config, universe_of(config), simulated_markets(config), clock)
    core.store_ok = core.restored = True
    approval, record = core.evaluate(opp(clock, 0.01))  # sells on okx, which holds 0.004 BTC
    assert approval is not None and approval.size == pytest.approx(0.004)
    assert record["reason"] == "insufficient_inventory"
    core.on_execution(
        ExecutionReport("o1", "BTC/USDT", (fill("okx", "sell", 0.004, 90_300.0),), 1, False, 0)
    )
    assert core.evaluate(opp(clock, 0.01, "o2"))[1]["reason"] == "insufficient_inventory"


def test_order_rate_is_a_token_bucket(risk) -> None:  # type: ignore[no-untyped-def]
    core, clock = risk
    reasons = []
    for i in range(3):  # burst 4 orders = 2 arbitrages
        approval, record = core.evaluate(opp(clock, opp_id=f"r{i}"))
        reasons.append(record["reason"])
        if approval:
            core.on_execution(ExecutionReport(f"r{i}", "BTC/USDT", (), 0, False, 0))
    assert reasons == ["", "", "rate_limited"]
    clock.advance(500_000_000)  # 4 orders/s refill 2 orders in 0.5 s
    assert core.evaluate(opp(clock, opp_id="r9"))[0] is not None


def test_below_minimum_after_clipping_names_the_binding_limit(
    make_config: Callable[..., HftConfig],
) -> None:
    config = make_config(risk={"max_order_notional": 4.0})
    clock = TestClock()
    core = RiskCore(config, universe_of(config), simulated_markets(config), clock)
    core.store_ok = core.restored = True
    approval, record = core.evaluate(opp(clock, 0.01))
    assert approval is None and record["reason"] == "max_order_notional"


def test_nothing_is_approved_until_the_store_answers(risk) -> None:  # type: ignore[no-untyped-def]
    core, clock = risk
    core.store_ok = False
    approval, record = core.evaluate(opp(clock))
    assert approval is None and record["reason"] == "store_unavailable"
    core.store_ok = True
    assert core.evaluate(opp(clock, opp_id="o2"))[0] is not None


@pytest.mark.parametrize(
    ("report", "reason"),
    [
        (ExecutionReport("o1", "BTC/USDT", (), 1, False, 0, legs_unknown=1), "leg_unknown: o1"),
        (
            ExecutionReport("o1", "BTC/USDT", (), 0, False, 0, journal_failed=True),
            "journal_write_failed: o1",
        ),
    ],
)
def test_an_unknown_leg_or_a_lost_journal_write_halts_trading(
    risk,
    report: ExecutionReport,
    reason: str,  # type: ignore[no-untyped-def]
) -> None:
    core, clock = risk
    assert core.evaluate(opp(clock))[0] is not None
    core.on_execution(report)
    assert core.state is TradingState.HALTED and core.state_reason == reason
    assert core.evaluate(opp(clock, opp_id="o2"))[1]["reason"] == "state_halted"


def test_inventory_is_reserved_at_the_leg_limit_price(
    make_config: Callable[..., HftConfig],
) -> None:
    # 1000 USDT on binance at 90,000 + 5 bps slippage + 0.1 % fee: 0.01109 BTC (lot 0.00001).
    config = make_config(venues={"binance": {"balances": {"USDT": 1000.0}}})
    clock = TestClock()
    core = RiskCore(config, universe_of(config), simulated_markets(config), clock)
    core.store_ok = core.restored = True
    approval, record = core.evaluate(opp(clock, 0.5))
    assert approval is not None and record["reason"] == "insufficient_inventory"
    assert approval.size * 90_000 * (1 + 5e-4) * 1.001 <= 1000.0
    assert approval.size == pytest.approx(0.01109)
