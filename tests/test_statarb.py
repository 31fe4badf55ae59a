"""Spread reversion: the kernel's signals equal the plain definition; the detector opens on a
stretched spread and closes when it reverts; risk books and limits reversion positions."""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hft_ray.clock import TestClock
from hft_ray.config import HftConfig
from hft_ray.detect import indicators as ind
from hft_ray.detect import statarb
from hft_ray.detect.core import DetectorCore
from hft_ray.feed.core import FeedCore
from hft_ray.markets import simulated_markets
from hft_ray.risk.core import RiskCore
from hft_ray.types import (
    REVERT_CLOSE,
    REVERT_OPEN,
    BookSnapshot,
    ExecutionReport,
    OrderResult,
    Universe,
)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.floats(-0.003, 0.003), min_size=2, max_size=400),
    st.integers(10, 60),
    st.floats(1.0, 3.0),
)
def test_kernel_signals_equal_the_definition(
    moves: list[float], lookback: int, z_entry: float
) -> None:
    mids_a = 100.0 * np.exp(np.cumsum(moves))
    mid = np.ones((1, 2))
    tradable = np.ones((1, 2), np.bool_)
    bufs, accs = np.zeros((1, 2, 2, lookback)), np.zeros((1, 2, 2, ind.WINDOW_ACC))
    open_dir, out = np.zeros((1, 2, 2), np.int64), np.zeros((4, 5))
    got, spreads = [], []
    for i, m in enumerate(mids_a):
        mid[0, 0], mid[0, 1] = m, 100.0
        spreads.append(math.log(m) - math.log(100.0))
        n = statarb.statarb_scan(
            np.array([[0, 0]]), mid, tradable, bufs, accs, open_dir, z_entry, 0.3, 1e-6, out
        )
        got += [(i, int(out[k, 3])) for k in range(n)]
    assert got == statarb.statarb_reference(spreads, lookback, z_entry, 0.3, 1e-6)


@pytest.fixture
def detector(
    make_config: Callable[..., HftConfig],
) -> tuple[HftConfig, Universe, TestClock, DetectorCore]:
    config = make_config(
        detector={
            "statarb": {
                "enabled": True,
                "lookback": 50,
                "z_entry": 3.0,
                "z_exit": 0.5,
                "max_notional": 900,
            }
        },
        feed={"max_jump_z": 0},
    )
    universe = Universe(tuple(config.venues), tuple(config.symbols))
    clock = TestClock()
    return (
        config,
        universe,
        clock,
        DetectorCore(config, universe, simulated_markets(config), clock, "sa"),
    )


def push(
    config: HftConfig,
    universe: Universe,
    clock: TestClock,
    core: DetectorCore,
    venue: str,
    mid: float,
) -> list:
    feed = FeedCore(universe, venue, config.feed, 1)
    bids = np.array([[round(mid - 0.05 - i * 0.1, 2), 0.5] for i in range(10)])
    asks = np.array([[round(mid + 0.05 + i * 0.1, 2), 0.5] for i in range(10)])
    feed.on_event(
        BookSnapshot("ETH/USDT", 1, clock.time_ns(), bids, asks),
        clock.time_ns(),
        clock.monotonic_ns(),
    )
    return core.on_batch(feed.take(0))


def test_detector_opens_on_a_stretched_spread_and_closes_on_reversion(detector) -> None:  # type: ignore[no-untyped-def]
    config, universe, clock, core = detector
    rng = np.random.default_rng(3)
    for _ in range(60):  # a calm spread between binance and okx around zero
        clock.advance(10_000_000)
        push(config, universe, clock, core, "binance", 3000.0 + rng.normal(0, 0.02))
        push(config, universe, clock, core, "okx", 3000.0 + rng.normal(0, 0.02))
    clock.advance(10_000_000)
    opened = [
        o for o in push(config, universe, clock, core, "okx", 3003.0) if o.kind == REVERT_OPEN
    ]
    assert len(opened) == 1
    o = opened[0]
    # okx (venue 1) is rich: sell okx, buy binance, 900 USDT of ETH at the buy leg's limit
    # price (binance's ask and 5 bps of slippage, the larger leg here), in lots, as risk caps.
    assert (universe.venues[o.buy_venue], universe.venues[o.sell_venue]) == ("binance", "okx")
    assert o.size == pytest.approx(0.2998) and o.buy_worst == pytest.approx(3000.05, abs=0.05)
    clock.advance(10_000_000)
    closed = [
        c for c in push(config, universe, clock, core, "okx", 3000.0) if c.kind == REVERT_CLOSE
    ]
    assert len(closed) == 1
    c = closed[0]
    assert (c.buy_venue, c.sell_venue) == (o.sell_venue, o.buy_venue) and c.size == o.size


def leg(venue: str, side: str, filled: float) -> OrderResult:
    return OrderResult(
        "c",
        venue,
        "ETH/USDT",
        side,
        "filled",
        filled,
        filled,
        3000.0,  # type: ignore[arg-type]
        filled * 3.0,
        "",
        0,
    )


def test_risk_books_reversions_and_closes_only_what_is_open(detector) -> None:  # type: ignore[no-untyped-def]
    config, universe, clock, _ = detector
    risk = RiskCore(config, universe, simulated_markets(config), clock)
    risk.store_ok = risk.restored = True
    from tests.test_risk_core import opp as make_opp

    def reversion(kind: str, opp_id: str, buy: int, sell: int, size: float):  # type: ignore[no-untyped-def]
        return make_opp(clock, size, opp_id, edge=-15.0, buy=buy, sell=sell, price=3000.0)._replace(
            symbol=1, kind=kind
        )

    close = reversion(REVERT_CLOSE, "c0", 1, 0, 0.2)
    assert risk.evaluate(close)[1].reason == "no_open_position"
    approval, record = risk.evaluate(reversion(REVERT_OPEN, "o1", 0, 1, 1.0))
    assert approval is not None and record.kind == REVERT_OPEN
    assert approval.size * 3000.0 * (1 + 5e-4) <= 900.0  # the reversion notional limit
    risk.on_execution(
        ExecutionReport(
            "o1", "ETH/USDT", (leg("binance", "buy", 0.25), leg("okx", "sell", 0.25)), 0, False, 0
        )
    )
    assert risk.evaluate(reversion(REVERT_CLOSE, "c1", 0, 1, 0.25))[1].reason == "no_open_position"
    risk.reduce_only()  # closing shrinks exposure: still allowed
    assert risk.evaluate(reversion(REVERT_OPEN, "o2", 0, 1, 0.1))[1].reason == "state_reducing"
    approval, _ = risk.evaluate(reversion(REVERT_CLOSE, "c2", 1, 0, 0.4))
    assert approval is not None and approval.size == pytest.approx(0.25)
    risk.on_execution(
        ExecutionReport(
            "c2", "ETH/USDT", (leg("okx", "buy", 0.25), leg("binance", "sell", 0.25)), 0, False, 0
        )
    )
    assert risk.snapshot()["reversion_positions"] == 0
