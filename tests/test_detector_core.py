"""DetectorCore: crossed tradable books give opportunities; stale or invalid ones never do."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from hft_ray.clock import TestClock
from hft_ray.config import HftConfig
from hft_ray.detect.core import DetectorCore
from hft_ray.feed.core import FeedCore
from hft_ray.journal import Decision as DecisionRecord
from hft_ray.markets import leg_limit_prices, simulated_markets
from hft_ray.risk.core import RiskCore
from hft_ray.types import (
    Approval,
    BookSnapshot,
    ExecutionReport,
    Opportunity,
    OrderResult,
    Universe,
    book_update_dtype,
)


def rows_for(
    config: HftConfig,
    universe: Universe,
    venue: str,
    bid: float,
    ask: float,
    clock: TestClock,
    symbol: str = "BTC/USDT",
    ts: int | None = None,
) -> np.ndarray:
    """One feed row, received now; stamped by the venue now unless `ts` says otherwise."""
    mono = clock.monotonic_ns()
    feed = FeedCore(universe, venue, config.feed, 1)
    bids = np.array([[bid - i, 0.05] for i in range(20)])
    asks = np.array([[ask + i, 0.05] for i in range(20)])
    stamp = clock.time_ns() if ts is None else ts
    feed.on_event(BookSnapshot(symbol, 1, stamp, bids, asks), clock.time_ns(), mono)
    return feed.take(0)


@pytest.fixture
def setup(
    make_config: Callable[..., HftConfig],
) -> tuple[HftConfig, Universe, TestClock, DetectorCore]:
    config = make_config(detector={"cooldown_ms": 100}, feed={"max_book_age_ms": 500})
    universe = Universe(tuple(config.venues), tuple(config.symbols))
    clock = TestClock()
    return (
        config,
        universe,
        clock,
        DetectorCore(config, universe, simulated_markets(config), clock, "tst"),
    )


def test_a_fee_beating_cross_is_found_both_ways_round(setup) -> None:  # type: ignore[no-untyped-def]
    config, universe, clock, core = setup
    assert core.on_batch(rows_for(config, universe, "binance", 90_000.0, 90_000.5, clock)) == []
    found = core.on_batch(rows_for(config, universe, "okx", 90_400.0, 90_400.5, clock))
    assert len(found) == 1
    opp = found[0]
    assert (universe.venues[opp.buy_venue], universe.venues[opp.sell_venue]) == ("binance", "okx")
    assert opp.buy_worst == 90_000.5 and opp.sell_worst == 90_400.0
    assert opp.profit_quote > 0 and opp.edge_bps > 0
    assert opp.opp_id.startswith("tst") and opp.opp_id.isalnum()


def test_a_cross_smaller_than_fees_is_not_an_opportunity(setup) -> None:  # type: ignore[no-untyped-def]
    config, universe, clock, core = setup
    core.on_batch(rows_for(config, universe, "binance", 90_000.0, 90_000.5, clock))
    assert core.on_batch(rows_for(config, universe, "okx", 90_100.0, 90_100.5, clock)) == []


def test_a_stale_book_is_never_traded(setup) -> None:  # type: ignore[no-untyped-def]
    config, universe, clock, core = setup
    core.on_batch(rows_for(config, universe, "binance", 90_000.0, 90_000.5, clock))
    clock.advance(600_000_000)  # binance's book is now 600 ms old, over max_book_age_ms
    found = core.on_batch(rows_for(config, universe, "okx", 90_400.0, 90_400.5, clock))
    assert found == []


def test_an_invalid_book_is_never_traded(setup) -> None:  # type: ignore[no-untyped-def]
    config, universe, clock, core = setup
    core.on_batch(rows_for(config, universe, "binance", 90_001.0, 90_000.5, clock))  # crossed
    assert core.on_batch(rows_for(config, universe, "okx", 90_400.0, 90_400.5, clock)) == []


def test_the_same_pair_is_held_back_during_cooldown(setup) -> None:  # type: ignore[no-untyped-def]
    config, universe, clock, core = setup
    core.on_batch(rows_for(config, universe, "binance", 90_000.0, 90_000.5, clock))
    assert len(core.on_batch(rows_for(config, universe, "okx", 90_400.0, 90_400.5, clock))) == 1
    clock.advance(50_000_000)
    assert core.on_batch(rows_for(config, universe, "okx", 90_400.0, 90_400.5, clock)) == []
    assert core.suppressed == 1
    clock.advance(60_000_000)  # the cooldown is over: the next update of either book re-finds it
    assert len(core.on_batch(rows_for(config, universe, "binance", 90_000.0, 90_000.5, clock))) == 1


def test_in_a_replay_books_age_in_recorded_time(make_config: Callable[..., HftConfig]) -> None:
    from hft_ray.config import ReplayConfig

    config = make_config(feed={"max_book_age_ms": 500})
    config = config.model_copy(update={"replay": ReplayConfig(files=["x.jsonl"], fast=True)})
    universe = Universe(tuple(config.venues), tuple(config.symbols))
    clock = TestClock()
    core = DetectorCore(config, universe, simulated_markets(config), clock, "rp")
    # The host's clock stands still: only recorded time moves.
    core.on_batch(
        rows_for(config, universe, "binance", 90_000.0, 90_000.5, clock, ts=1_000_000_000)
    )
    late = rows_for(config, universe, "okx", 90_400.0, 90_400.5, clock, ts=1_600_000_000)
    assert core.on_batch(late) == []  # binance's book is 600 ms old in the recording
    fresh = rows_for(config, universe, "binance", 90_000.0, 90_000.5, clock, ts=1_700_000_000)
    assert len(core.on_batch(fresh)) == 1


def test_a_book_the_venue_stamped_long_ago_is_stale_though_just_received(
    setup,  # type: ignore[no-untyped-def]
) -> None:
    config, universe, clock, core = setup
    old = clock.time_ns() - 700_000_000  # a feed catching up from a backlog
    core.on_batch(rows_for(config, universe, "binance", 90_000.0, 90_000.5, clock, ts=old))
    assert core.on_batch(rows_for(config, universe, "okx", 90_400.0, 90_400.5, clock)) == []


def test_every_update_of_a_batch_is_scanned_in_order(setup) -> None:  # type: ignore[no-untyped-def]
    config, universe, clock, core = setup
    core.on_batch(rows_for(config, universe, "binance", 90_000.0, 90_000.5, clock))
    # okx jumps for one update and is back by the next, both in one batch: the jump is found,
    # priced from the update that made it.
    jump = rows_for(config, universe, "okx", 90_400.0, 90_400.5, clock)
    back = rows_for(config, universe, "okx", 90_000.0, 90_000.5, clock)
    found = core.on_batch(np.concatenate([jump, back]))
    assert [(universe.venues[o.buy_venue], universe.venues[o.sell_venue]) for o in found] == [
        ("binance", "okx")
    ]
    assert found[0].sell_worst == 90_400.0 and found[0].buy_worst == 90_000.5
    assert core.ask_px[0, universe.venue_id("okx"), 0] == 90_000.5  # the last update stays
    assert (core.updates, core.rows_scanned, core.opportunities) == (3, 3, 1)


def test_repeated_crosses_in_one_batch_count_against_the_cooldown(setup) -> None:  # type: ignore[no-untyped-def]
    config, universe, clock, core = setup
    core.on_batch(rows_for(config, universe, "binance", 90_000.0, 90_000.5, clock))
    jump = rows_for(config, universe, "okx", 90_400.0, 90_400.5, clock)
    assert len(core.on_batch(np.concatenate([jump, jump, jump]))) == 1
    # One tick-to-detect sample a receipt: the first batch's, and the three rows received at once.
    assert core.suppressed == 2 and len(core.tick_to_detect_ns) == 2


def test_rows_scanned_counts_only_tradable_rows(setup) -> None:  # type: ignore[no-untyped-def]
    config, universe, clock, core = setup
    crossed = rows_for(config, universe, "binance", 90_001.0, 90_000.5, clock)  # invalid
    stale = rows_for(config, universe, "okx", 90_000.0, 90_000.5, clock, ts=1)
    good = rows_for(config, universe, "okx", 90_000.0, 90_000.5, clock)
    core.on_batch(np.concatenate([crossed, stale, good]))
    assert (core.updates, core.rows_scanned) == (3, 1)


def test_in_a_replay_recorded_time_advances_row_by_row(
    make_config: Callable[..., HftConfig],
) -> None:
    from hft_ray.config import ReplayConfig

    config = make_config(feed={"max_book_age_ms": 500})
    config = config.model_copy(update={"replay": ReplayConfig(files=["x.jsonl"], fast=True)})
    universe = Universe(tuple(config.venues), tuple(config.symbols))
    clock = TestClock()
    core = DetectorCore(config, universe, simulated_markets(config), clock, "rp")
    batch = np.concatenate(
        [
            rows_for(config, universe, "binance", 90_000.0, 90_000.5, clock, ts=1_000_000_000),
            rows_for(config, universe, "okx", 90_400.0, 90_400.5, clock, ts=1_200_000_000),
            rows_for(config, universe, "okx", 90_000.0, 90_000.5, clock, ts=1_700_000_000),
        ]
    )
    # When the okx jump was recorded, binance's book was 200 ms old: tradable. By the batch's
    # last row it is 700 ms old, which does not undo what was seen at 1.2 s.
    found = core.on_batch(batch)
    assert len(found) == 1 and found[0].sell_ts_ns == 1_200_000_000
    assert found[0].buy_ts_ns == 1_000_000_000


def test_rows_of_another_shape_or_universe_are_refused(setup) -> None:  # type: ignore[no-untyped-def]
    config, universe, clock, core = setup
    row = rows_for(config, universe, "binance", 90_000.0, 90_000.5, clock)
    with pytest.raises(ValueError, match="not BookUpdate rows of depth 20"):
        core.on_batch(np.zeros(1, book_update_dtype(5)))
    foreign = np.concatenate([row, row])
    foreign[1]["symbol"] = len(universe.symbols)
    with pytest.raises(ValueError, match=r"row 1 names symbol 3 on venue 0, outside .* 3 symbols"):
        core.on_batch(foreign)


def test_a_batch_longer_than_the_output_buffer_loses_nothing(
    make_config: Callable[..., HftConfig],
) -> None:
    config = make_config(detector={"cooldown_ms": 0}, feed={"max_book_age_ms": 500})
    universe = Universe(tuple(config.venues), tuple(config.symbols))
    clock = TestClock()
    core = DetectorCore(config, universe, simulated_markets(config), clock, "big")
    core.on_batch(rows_for(config, universe, "binance", 90_000.0, 90_000.5, clock))
    jump = rows_for(config, universe, "okx", 90_400.0, 90_400.5, clock)
    back = rows_for(config, universe, "okx", 90_000.0, 90_000.5, clock)
    found = core.on_batch(np.concatenate([jump, back] * 3_000))  # 6,000 rows, several chunks
    assert len(found) == 3_000 and core.rows_scanned == 6_001
    assert len({o.opp_id for o in found}) == 3_000


def bought(venue: str, amount: float, price: float = 90_000.0) -> ExecutionReport:
    """A trade that bought `amount` BTC on `venue` (sold, if negative), as an executor reports
    it to risk."""
    side = "buy" if amount > 0 else "sell"
    q = abs(amount)
    leg = OrderResult(f"c-{venue}", venue, "BTC/USDT", side, "filled", q, q, price, 0.0, "", 0)
    return ExecutionReport(f"booked-{venue}", "BTC/USDT", (leg,), 0, False, 0)


def decided_by_risk(
    config: HftConfig,
    booked: tuple[ExecutionReport, ...] = (),
    told: bool = False,
) -> tuple[Opportunity, RiskCore, tuple[Approval | None, DecisionRecord]]:
    """The detector's opportunity of a cross deeper than the order notional limit, and what
    risk (the same config, markets and clock) makes of it, after booking `booked`; `told`:
    the detector has been given the positions risk booked (else it has not heard yet)."""
    universe = Universe(tuple(config.venues), tuple(config.symbols))
    clock = TestClock()
    markets = simulated_markets(config)
    detector = DetectorCore(config, universe, markets, clock, "d")
    risk = RiskCore(config, universe, markets, clock)
    risk.store_ok = risk.restored = True
    for report in booked:
        risk.on_execution(report)
    if told:
        detector.set_positions(risk.ledger.snapshot()["positions"])
    detector.on_batch(rows_for(config, universe, "binance", 90_000.0, 90_000.5, clock))
    (found,) = detector.on_batch(rows_for(config, universe, "okx", 90_400.0, 90_400.5, clock))
    return found, risk, risk.evaluate(found)


def test_an_opportunity_within_every_limit_is_approved_at_its_size_unclipped(
    make_config: Callable[..., HftConfig],
) -> None:
    """The detector caps the notional at the legs' limit prices, slippage and ticks as risk
    prices them (it once capped at the worst ask, and risk trimmed nearly every approval)."""
    config = make_config(risk={"max_order_notional": 2_000})
    assert config.execution.slippage_bps > 0
    opp, risk, (approval, record) = decided_by_risk(config)
    markets = simulated_markets(config)
    buy, sell = markets.spec("binance", "BTC/USDT"), markets.spec("okx", "BTC/USDT")
    slippage = config.execution.slippage_bps
    _, sell_px = leg_limit_prices(buy, sell, opp.buy_worst, opp.sell_worst, slippage)
    # The largest size in both lots whose sell leg, the larger, is within 2,000 at its limit.
    lot = max(buy.lot, sell.lot)
    assert opp.size * sell_px <= 2_000 < (opp.size + lot) * sell_px
    assert approval is not None and approval.size == opp.size
    assert (record.verdict, record.reason, record.clip) == ("approved", "", "")
    assert risk.clipped == 0 and risk.snapshot()["clipped_by"] == {}


def test_a_limit_the_detector_does_not_see_clips_and_is_named(
    make_config: Callable[..., HftConfig],
) -> None:
    """A fill risk booked that the detector has not been told of yet: binance may take only
    0.01 BTC more, the detector still sees room for 0.02."""
    config = make_config(risk={"max_order_notional": 2_000, "max_position": {"BTC": 0.02}})
    opp, risk, (approval, record) = decided_by_risk(config, (bought("binance", 0.01),))
    assert approval is not None and approval.size == 0.01 < opp.size
    assert (record.verdict, record.reason, record.clip) == ("clipped",) + ("max_position",) * 2
    assert risk.clipped == 1 and risk.snapshot()["clipped_by"] == {"max_position": 1}


def test_the_detector_clips_to_the_position_room_and_risk_approves_it_unclipped(
    make_config: Callable[..., HftConfig],
) -> None:
    config = make_config(risk={"max_order_notional": 2_000, "max_position": {"BTC": 0.02}})
    opp, _, (approval, record) = decided_by_risk(config, (bought("binance", 0.01),), told=True)
    assert opp.size == pytest.approx(0.01)  # the room left, not a rejection
    assert approval is not None and approval.size == opp.size
    assert (record.verdict, record.reason, record.clip) == ("approved", "", "")


def test_at_the_position_limit_the_detector_finds_nothing_that_direction(
    make_config: Callable[..., HftConfig],
) -> None:
    config = make_config(risk={"max_position": {"BTC": 0.01}})
    universe = Universe(tuple(config.venues), tuple(config.symbols))
    clock = TestClock()
    core = DetectorCore(config, universe, simulated_markets(config), clock, "d")
    core.set_positions({"binance": {"BTC": 0.01}})
    core.on_batch(rows_for(config, universe, "binance", 90_000.0, 90_000.5, clock))
    assert core.on_batch(rows_for(config, universe, "okx", 90_400.0, 90_400.5, clock)) == []


def skewed(make_config: Callable[..., HftConfig], skew_bps: float) -> HftConfig:
    return make_config(
        detector={"inventory_skew_bps": skew_bps},
        risk={"max_order_notional": 2_000, "max_position": {"BTC": 0.05, "ETH": 1, "SOL": 10}},
    )


def test_skew_makes_moving_away_from_target_need_more_edge(
    make_config: Callable[..., HftConfig],
) -> None:
    """The cross pays about 19 bps after fees at 0.022 BTC; buying on binance and selling on
    okx from flat moves 2 x 0.022 / 0.05 = 0.88 units away: a skew of 10 bps needs 9 more
    (found), one of 40 bps 35 more (not found)."""
    plain, _, _ = decided_by_risk(skewed(make_config, 0.0))
    assert 15 < plain.edge_bps < 25
    for skew, found in ((10.0, 1), (40.0, 0)):
        config = skewed(make_config, skew)
        universe = Universe(tuple(config.venues), tuple(config.symbols))
        clock = TestClock()
        core = DetectorCore(config, universe, simulated_markets(config), clock, "d")
        core.on_batch(rows_for(config, universe, "binance", 90_000.0, 90_000.5, clock))
        opps = core.on_batch(rows_for(config, universe, "okx", 90_400.0, 90_400.5, clock))
        assert len(opps) == found


def test_skew_lets_a_trade_back_to_target_through_detector_and_risk(
    make_config: Callable[..., HftConfig],
) -> None:
    """binance short and okx long: the same cross moves both back, needs less, and risk, with
    the positions the detector was told, approves what the detector found at its size."""
    config = make_config(
        detector={"inventory_skew_bps": 40.0},
        risk={
            "max_order_notional": 2_000,
            "max_position": {"BTC": 0.05, "ETH": 1, "SOL": 10},
            "min_edge_bps": 30,  # above the cross's own edge: only the skew lets it through
        },
    )
    booked = (bought("binance", -0.03), bought("okx", 0.03))
    opp, _, (approval, record) = decided_by_risk(config, booked, told=True)
    assert opp.edge_bps < 30
    assert approval is not None and approval.size == opp.size
    assert (record.verdict, record.reason) == ("approved", "")
