"""RiskCore: each limit approves, clips or rejects, with a reason; positions follow fills."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import pytest

from hft_ray.clock import TestClock
from hft_ray.config import HftConfig
from hft_ray.journal import Execution, Intent, JournalRecord, Leg, Order, RiskEvent, read_records
from hft_ray.markets import simulated_markets
from hft_ray.risk.core import RiskCore, TradingState
from hft_ray.risk.keeper import RiskKeeper
from hft_ray.store import LocalStore
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
    assert record.verdict == "approved" and record.reason == ""
    assert record.TYPE == "decision" and record.opp_id == "o1"


def test_order_notional_clips_the_size(risk) -> None:  # type: ignore[no-untyped-def]
    core, clock = risk
    approval, record = core.evaluate(opp(clock, 0.5))
    # The larger leg is the sell: its limit is the worst bid less 5 bps of slippage.
    limit = 90_000 * 1.003 * (1 - 5e-4)
    assert approval is not None and approval.size == pytest.approx(0.02216)
    assert approval.size * limit <= 2_000
    assert (record.verdict, record.reason) == ("clipped", "max_order_notional")
    assert record.clip == "max_order_notional"
    assert core.snapshot()["clipped_by"] == {"max_order_notional": 1}


def test_clips_are_counted_by_limit_across_a_restart(
    make_config: Callable[..., HftConfig],
) -> None:
    core, clock = core_with(make_config, max_order_notional=2_000)
    core.evaluate(opp(clock, 0.5, opp_id="a"))
    saved = core.state_record()
    restarted, _ = core_with(make_config, max_order_notional=2_000)
    restarted.restore(saved, [])
    assert (restarted.clipped, restarted.clipped_by) == (1, {"max_order_notional": 1})
    del saved["counters"]["clipped_by"]  # a state saved before clips were counted by limit
    restarted.restore(saved, [])
    assert (restarted.clipped, restarted.clipped_by) == (1, {})


def test_a_size_off_the_lots_is_rounded_not_clipped(risk) -> None:  # type: ignore[no-untyped-def]
    core, clock = risk
    # Off the 1e-5 lots (a reversion close is sized by book depth): rounding is no limit's.
    approval, record = core.evaluate(opp(clock, 0.0100004))
    assert approval is not None and approval.size == 0.01
    assert (record.verdict, record.clip) == ("approved", "") and core.clipped == 0


def test_edge_state_and_in_flight_reject(risk) -> None:  # type: ignore[no-untyped-def]
    core, clock = risk
    assert core.evaluate(opp(clock, edge=2.0))[1].reason == "edge_below_min"
    assert core.evaluate(opp(clock, opp_id="a"))[0] is not None
    assert core.evaluate(opp(clock, opp_id="b"))[1].reason == "in_flight"
    core.on_execution(ExecutionReport("a", "BTC/USDT", (), 0, False, 0))
    core.halt("operator")
    assert core.state is TradingState.HALTED
    assert core.evaluate(opp(clock, opp_id="c"))[1].reason == "state_halted"
    core.resume()
    assert core.evaluate(opp(clock, opp_id="d"))[0] is not None
    assert core.rejected == {"edge_below_min": 1, "in_flight": 1, "state_halted": 1}


def test_stale_opportunity_is_rejected(risk) -> None:  # type: ignore[no-untyped-def]
    core, clock = risk
    o = opp(clock)
    clock.advance(600_000_000)
    assert core.evaluate(o)[1].reason == "stale_opportunity"


def test_position_limit_counts_fills_and_in_flight(risk) -> None:  # type: ignore[no-untyped-def]
    core, clock = risk
    core.on_execution(
        ExecutionReport("x", "BTC/USDT", (fill("binance", "buy", 0.045, 90_000.0),), 1, False, 0)
    )
    assert core.ledger.position("binance", "BTC") == pytest.approx(0.045)
    approval, record = core.evaluate(opp(clock, 0.02))  # binance may only take 0.005 more BTC
    assert approval is not None and approval.size == pytest.approx(0.005)
    assert record.reason == "max_position"
    core.on_execution(ExecutionReport("o1", "BTC/USDT", (), 0, False, 0))
    core.on_execution(
        ExecutionReport("y", "BTC/USDT", (fill("binance", "buy", 0.005, 90_000.0),), 1, False, 0)
    )
    assert core.evaluate(opp(clock, 0.02, "o2"))[1].reason == "max_position"


def test_inventory_on_each_venue_bounds_the_size(
    make_config: Callable[..., HftConfig],
) -> None:
    config = make_config(venues={"okx": {"balances": {"BTC": 0.004}}})
    clock = TestClock()
    core = RiskCore(config, universe_of(config), simulated_markets(config), clock)
    core.store_ok = core.restored = True
    approval, record = core.evaluate(opp(clock, 0.01))  # sells on okx, which holds 0.004 BTC
    assert approval is not None and approval.size == pytest.approx(0.004)
    assert record.reason == "insufficient_inventory"
    core.on_execution(
        ExecutionReport("o1", "BTC/USDT", (fill("okx", "sell", 0.004, 90_300.0),), 1, False, 0)
    )
    assert core.evaluate(opp(clock, 0.01, "o2"))[1].reason == "insufficient_inventory"


def test_order_rate_is_a_token_bucket(risk) -> None:  # type: ignore[no-untyped-def]
    core, clock = risk
    reasons = []
    for i in range(3):  # burst 4 orders = 2 arbitrages
        approval, record = core.evaluate(opp(clock, opp_id=f"r{i}"))
        reasons.append(record.reason)
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
    assert approval is None and record.reason == "max_order_notional"


def test_nothing_is_approved_until_the_store_answers(risk) -> None:  # type: ignore[no-untyped-def]
    core, clock = risk
    core.store_ok = False
    approval, record = core.evaluate(opp(clock))
    assert approval is None and record.reason == "store_unavailable"
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
    assert core.evaluate(opp(clock, opp_id="o2"))[1].reason == "state_halted"


def test_inventory_is_reserved_at_the_leg_limit_price(
    make_config: Callable[..., HftConfig],
) -> None:
    # 1000 USDT on binance at 90,000 + 5 bps slippage + 0.1 % fee: 0.01109 BTC (lot 0.00001).
    config = make_config(venues={"binance": {"balances": {"USDT": 1000.0}}})
    clock = TestClock()
    core = RiskCore(config, universe_of(config), simulated_markets(config), clock)
    core.store_ok = core.restored = True
    approval, record = core.evaluate(opp(clock, 0.5))
    assert approval is not None and record.reason == "insufficient_inventory"
    assert approval.size * 90_000 * (1 + 5e-4) * 1.001 <= 1000.0
    assert approval.size == pytest.approx(0.01109)


def core_with(make_config: Callable[..., HftConfig], **risk: object) -> tuple[RiskCore, TestClock]:
    config = make_config(risk=risk)
    clock = TestClock()
    core = RiskCore(config, universe_of(config), simulated_markets(config), clock)
    core.store_ok = core.restored = True
    return core, clock


def trade(opp_id: str, buy_px: float, sell_px: float, size: float = 0.01) -> ExecutionReport:
    """Both legs of an arbitrage filled: bought on binance, sold on okx."""
    return ExecutionReport(
        opp_id,
        "BTC/USDT",
        (
            fill("binance", "buy", size, buy_px)._replace(client_id=f"{opp_id}B"),
            fill("okx", "sell", size, sell_px)._replace(client_id=f"{opp_id}S"),
        ),
        0,
        False,
        0,
    )


def failed(opp_id: str, status: str = "rejected") -> ExecutionReport:
    """The buy leg filled, the sell leg did not."""
    leg = fill("okx", "sell", 0.0, 0.0)._replace(client_id=f"{opp_id}S", status=status)
    return ExecutionReport(
        opp_id,
        "BTC/USDT",
        (fill("binance", "buy", 0.01, 90_000.0)._replace(client_id=f"{opp_id}B"), leg),
        1,
        False,
        0,
    )


def journaled(opp_id: str, buy_px: float, sell_px: float, ts_ns: int = 0) -> list[JournalRecord]:
    """What an executor journals for a trade whose two legs filled 0.01 BTC each."""
    orders: list[JournalRecord] = [
        Order(
            ts_ns=ts_ns,
            opp_id=opp_id,
            client_id=f"{opp_id}{leg}",
            venue=venue,
            symbol="BTC/USDT",
            side=side,
            status="filled",
            amount=0.01,
            filled=0.01,
            avg_price=px,
            fee_quote=0.9,
            reason="",
            ts_exchange_ns=0,
        )
        for leg, venue, side, px in (("B", "binance", "buy", buy_px), ("S", "okx", "sell", sell_px))
    ]
    execution = Execution(
        ts_ns=ts_ns,
        opp_id=opp_id,
        symbol="BTC/USDT",
        executor="executor0",
        legs_failed=0,
        legs_unknown=0,
        unwound=False,
        residual_base=0.0,
    )
    return [*orders, execution]


def test_a_book_older_than_the_limit_is_rejected(
    make_config: Callable[..., HftConfig],
) -> None:
    core, clock = core_with(make_config, max_opportunity_age_ms=1_000, max_book_age_ms=200)
    o = opp(clock)._replace(tick_mono_ns=clock.monotonic_ns() - 300_000_000)
    assert core.evaluate(o)[1].reason == "stale_book"


def test_each_venue_has_its_own_order_rate(make_config: Callable[..., HftConfig]) -> None:
    core, clock = core_with(make_config, max_venue_orders_per_s=1, venue_order_burst=1)
    assert core.evaluate(opp(clock, opp_id="a"))[0] is not None  # binance -> okx
    core.on_execution(ExecutionReport("a", "BTC/USDT", (), 0, False, 0))
    # okx -> gateio: okx has used its one order, gateio has not.
    record = core.evaluate(opp(clock, opp_id="b", buy=OKX, sell=2))[1]
    assert record.reason == "venue_rate_limited"
    clock.advance(1_000_000_000)
    assert core.evaluate(opp(clock, opp_id="c", buy=OKX, sell=2))[0] is not None


def test_gross_exposure_clips_new_exposure_but_not_rebalancing(
    make_config: Callable[..., HftConfig],
) -> None:
    core, clock = core_with(make_config, max_gross_exposure_quote=3_000.0)
    core.on_execution(trade("t0", 90_000.0, 90_100.0, size=0.01))  # 0.01 BTC each way: 1,800
    assert core.gross_exposure() == pytest.approx(0.02 * 90_100.0)
    approval, record = core.evaluate(opp(clock, 0.02, "o1"))  # same direction: adds exposure
    assert record.reason == "max_gross_exposure"
    assert approval is not None and approval.size == pytest.approx(0.00666)  # 1,200 / 2 / 90,000
    core.on_execution(ExecutionReport("o1", "BTC/USDT", (), 0, False, 0))
    # The other way round undoes the inventory moved: not limited by gross exposure.
    approval, record = core.evaluate(opp(clock, 0.01, "o2", buy=OKX, sell=BINANCE))
    assert approval is not None and approval.size == pytest.approx(0.01)
    assert record.reason == ""


def test_reducing_admits_only_trades_that_shrink_exposure(
    make_config: Callable[..., HftConfig],
) -> None:
    core, clock = core_with(make_config)
    core.on_execution(trade("t0", 90_000.0, 90_100.0, size=0.004))
    core.reduce_only("operator")
    assert core.state is TradingState.REDUCING
    assert core.evaluate(opp(clock, 0.01, "o1"))[1].reason == "state_reducing"
    approval, record = core.evaluate(opp(clock, 0.01, "o2", buy=OKX, sell=BINANCE))
    assert approval is not None and approval.size == pytest.approx(0.004)
    assert record.reason == "state_reducing"


def test_daily_loss_halts_and_stays_halted_until_resumed(
    make_config: Callable[..., HftConfig],
) -> None:
    core, clock = core_with(make_config, max_daily_loss_quote=5.0, max_drawdown_quote=1_000.0)
    core.on_execution(trade("t1", 90_000.0, 89_800.0))  # -2 USDT and about -1.8 in fees
    assert core.state is TradingState.ACTIVE
    core.on_execution(trade("t2", 90_000.0, 89_800.0))
    assert core.state is TradingState.HALTED
    assert core.state_reason.startswith("max_daily_loss: lost 7.")
    core.on_execution(trade("t3", 89_000.0, 90_000.0))  # a winner does not clear it
    assert core.state is TradingState.HALTED
    assert core.evaluate(opp(clock))[1].reason == "state_halted"
    core.resume()
    assert core.state is TradingState.ACTIVE and core.evaluate(opp(clock))[0] is not None


def test_the_day_starts_again_at_midnight_utc(make_config: Callable[..., HftConfig]) -> None:
    core, clock = core_with(make_config, max_daily_loss_quote=5.0)
    core.on_execution(trade("t1", 90_000.0, 89_800.0))
    clock.advance(86_400 * 10**9)
    core.on_execution(trade("t2", 90_000.0, 89_800.0))
    assert core.state is TradingState.ACTIVE  # 3.8 lost today, 7.6 over two days


def test_drawdown_from_the_peak_turns_reducing(make_config: Callable[..., HftConfig]) -> None:
    core, _clock = core_with(make_config, max_drawdown_quote=10.0)
    core.on_execution(trade("t1", 89_000.0, 90_000.0))  # +10 less fees: a new peak
    peak = core.ledger.realized_pnl_quote
    core.on_execution(trade("t2", 90_000.0, 89_500.0))
    assert core.state is TradingState.ACTIVE and core.ledger.realized_pnl_quote < peak
    core.on_execution(trade("t3", 90_000.0, 89_500.0))
    assert core.state is TradingState.REDUCING
    assert core.snapshot()["breakers"]["max_drawdown"]["forces"] == TradingState.REDUCING


def test_consecutive_leg_failures_halt_and_a_clean_trade_resets_the_streak(
    make_config: Callable[..., HftConfig],
) -> None:
    core, _clock = core_with(make_config, max_consecutive_leg_failures=3, max_reject_rate=1.0)
    core.on_execution(failed("f1"))
    core.on_execution(failed("f2"))
    core.on_execution(trade("t1", 90_000.0, 90_100.0))
    core.on_execution(failed("f3"))
    core.on_execution(failed("f4"))
    assert core.state is TradingState.ACTIVE
    core.on_execution(failed("f5"))
    assert core.state is TradingState.HALTED
    assert core.state_reason == "consecutive_leg_failures: 3 trades in a row"


def test_a_high_venue_reject_rate_turns_reducing(make_config: Callable[..., HftConfig]) -> None:
    core, _clock = core_with(
        make_config, reject_rate_window=10, max_reject_rate=0.3, max_consecutive_leg_failures=99
    )
    for i in range(4):  # 8 orders, 4 rejected: the window is not full yet
        core.on_execution(failed(f"f{i}"))
    assert core.state is TradingState.ACTIVE
    core.on_execution(failed("f9"))  # 10 orders, 5 rejected
    assert core.state is TradingState.REDUCING
    assert core.state_reason == "reject_rate: 50% of the last orders"


def test_net_position_across_venues_turns_reducing(make_config: Callable[..., HftConfig]) -> None:
    core, _clock = core_with(make_config, max_net_position={"BTC": 0.015})
    core.on_execution(failed("f1", status="expired"))
    assert core.state is TradingState.ACTIVE  # 0.01 BTC net long
    core.on_execution(failed("f2", status="expired"))
    assert core.state is TradingState.REDUCING
    assert core.state_reason == "max_net_position: BTC +0.02"


def test_a_report_booked_twice_counts_once(risk) -> None:  # type: ignore[no-untyped-def]
    core, _clock = risk
    core.on_execution(trade("t1", 90_000.0, 90_100.0))
    once = core.snapshot()
    core.on_execution(trade("t1", 90_000.0, 90_100.0))
    assert core.snapshot() == once and once["trades"] == 1


def test_state_round_trips_and_the_journal_fills_the_gap(
    make_config: Callable[..., HftConfig],
) -> None:
    core, clock = core_with(make_config, max_drawdown_quote=1.0)
    core.on_execution(trade("t1", 90_000.0, 90_100.0))
    assert core.evaluate(opp(clock, opp_id="o1"))[0] is not None  # in flight at the "crash"
    core.on_execution(trade("t2", 90_000.0, 89_900.0))  # trips the drawdown breaker
    saved = core.state_record()
    before = core.snapshot()

    # The executor journaled o1's outcome after the state was saved.
    journal = journaled("o1", 90_000.0, 90_200.0, clock.time_ns())
    config = make_config(risk={"max_drawdown_quote": 1.0})
    restarted = RiskCore(config, universe_of(config), simulated_markets(config), clock)
    restarted.store_ok = True
    assert restarted.evaluate(opp(clock, opp_id="o2"))[1].reason == "restoring"
    restarted.restore(saved, journal)
    after = restarted.snapshot()
    assert after["state"] == before["state"] == "REDUCING"
    assert after["breakers"] == before["breakers"]
    assert after["in_flight"] == 0 and before["in_flight"] == 1
    assert after["trades"] == before["trades"] + 1
    assert after["positions"]["binance"]["BTC"] == pytest.approx(0.03)
    assert after["positions"]["okx"]["BTC"] == pytest.approx(-0.03)
    restarted.on_execution(trade("o1", 90_000.0, 90_200.0))  # the executor's own late report
    assert restarted.snapshot()["trades"] == after["trades"]


def test_a_restore_holds_journaled_intents_in_flight_and_books_their_outcome_by_kind(
    make_config: Callable[..., HftConfig],
) -> None:
    """Risk crashed after approving r1 and r2, before saving: the journal still knows them."""
    config = make_config()
    clock = TestClock()

    def intent(opp_id: str, kind: str) -> Intent:
        return Intent(
            ts_ns=0,
            opp_id=opp_id,
            kind=kind,
            symbol="BTC/USDT",
            size=0.01,
            edge_bps=10.0,
            expected_profit_quote=0.1,
            legs=(
                Leg("binance", f"{opp_id}B", "buy", 0.01, 90_000.0),
                Leg("okx", f"{opp_id}S", "sell", 0.01, 90_100.0),
            ),
        )

    journal: list[JournalRecord] = [intent("r1", "arb"), intent("r2", "revert_open")]
    journal += journaled("r2", 90_000.0, 90_000.0)
    core = RiskCore(config, universe_of(config), simulated_markets(config), clock)
    core.store_ok = True
    core.restore(None, journal)
    snap = core.snapshot()
    assert snap["in_flight"] == 1  # r1: its legs may be live
    assert core.evaluate(opp(clock, opp_id="o1"))[1].reason == "in_flight"
    assert snap["reversion_positions"] == 1 and snap["trades"] == 1


def test_a_restore_that_fails_leaves_the_core_as_it_was(
    make_config: Callable[..., HftConfig],
) -> None:
    core, clock = core_with(make_config)
    core.on_execution(trade("t1", 90_000.0, 90_100.0))
    saved = core.state_record()
    core.evaluate(opp(clock, edge=0.0))  # one rejection, counted
    before = core.snapshot()
    for _ in range(3):
        with pytest.raises(ValueError, match="client id 'x'"):
            core.restore(
                saved,
                [Order(0, "z", "x", "okx", "BTC/USDT", "buy", 0, "filled", 1.0, 1.0, 1.0, 0.0, "")],
            )
    assert core.snapshot() == before


def test_the_saved_state_forgets_trades_older_than_the_replay_window(
    make_config: Callable[..., HftConfig],
) -> None:
    core, clock = core_with(make_config)
    core.on_execution(trade("old", 90_000.0, 90_100.0))
    journal = journaled("old", 90_000.0, 90_100.0, clock.time_ns())  # at that time
    clock.advance(601 * 10**9)
    core.on_execution(trade("new", 90_000.0, 90_100.0))
    saved = core.state_record()
    assert [k for k, _ in saved["reported"]] == ["new"]
    assert saved["ledger"]["booked"] == ["newB", "newS"]
    config = make_config()
    restarted = RiskCore(config, universe_of(config), simulated_markets(config), clock)
    restarted.restore(saved, journal)  # the old trade is before the window: not booked again
    assert restarted.snapshot()["positions"] == core.snapshot()["positions"]
    assert restarted.trades == 2


def test_breakers_tripped_and_resumes_are_journaled_as_risk_events(
    make_config: Callable[..., HftConfig], tmp_path: Path
) -> None:
    """The keeper appends what the core tripped and cleared, once each, in order."""
    core, clock = core_with(make_config)
    keeper = RiskKeeper(core, LocalStore(tmp_path, "risk"))
    core.trip("max_drawdown", TradingState.REDUCING, "1.5 below the peak")
    core.trip("max_drawdown", TradingState.REDUCING, "2.0 below the peak")  # keeps the first
    clock.advance(10**9)
    core.halt("by hand")
    assert asyncio.run(keeper.watch_round())
    core.resume()
    asyncio.run(keeper.close())
    records, skipped = read_records(asyncio.run(LocalStore(tmp_path, "risk").read_journal()))
    assert skipped == [] and not core.events
    assert [(r.kind, r.breaker, r.state, r.detail) for r in records] == [
        ("trip", "max_drawdown", "REDUCING", "1.5 below the peak"),
        ("trip", "operator", "HALTED", "by hand"),
        ("resume", "", "ACTIVE", "max_drawdown, operator"),
    ]
    assert all(isinstance(r, RiskEvent) for r in records)


def skewed_core(
    make_config: Callable[..., HftConfig], skew_bps: float
) -> tuple[RiskCore, TestClock]:
    config = make_config(
        detector={"inventory_skew_bps": skew_bps},
        risk={"max_position": {"BTC": 0.05, "ETH": 1, "SOL": 10}, "min_edge_bps": 5},
    )
    clock = TestClock()
    core = RiskCore(config, universe_of(config), simulated_markets(config), clock)
    core.store_ok = core.restored = True
    core.on_execution(  # binance long 0.02 BTC, okx short 0.02: away from target
        ExecutionReport(
            "t0",
            "BTC/USDT",
            (
                fill("binance", "buy", 0.02, 90_000.0)._replace(client_id="t0-buy"),
                fill("okx", "sell", 0.02, 90_100.0)._replace(client_id="t0-sell"),
            ),
            0,
            False,
            0,
        )
    )
    return core, clock


@pytest.mark.parametrize("skew", [0.0, 20.0])
def test_skew_prices_inventory_in_risk_and_zero_is_todays_rule(
    make_config: Callable[..., HftConfig], skew: float
) -> None:
    """0.01 BTC more the same way moves 2 x 0.01 / 0.05 = 0.4 units away: 8 bps more at a skew
    of 20; the other way round 8 bps less. Without a skew only min_edge_bps (5) counts."""
    core, clock = skewed_core(make_config, skew)
    away = core.evaluate(opp(clock, 0.01, "a", edge=10.0))[1]
    assert away.reason == ("inventory_skew" if skew else "")
    core.on_execution(ExecutionReport("a", "BTC/USDT", (), 0, False, 0))
    back = core.evaluate(opp(clock, 0.01, "b", edge=2.0, buy=OKX, sell=BINANCE))[1]
    assert back.reason == ("" if skew else "edge_below_min")
    core.on_execution(ExecutionReport("b", "BTC/USDT", (), 0, False, 0))
    below = core.evaluate(opp(clock, 0.01, "c", edge=4.0))[1]
    assert below.reason == "edge_below_min"  # below the minimum itself: named so
