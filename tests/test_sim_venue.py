"""The simulated venue: seeded books, and an IOC matching engine that keeps balances honest."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hft_ray.book import check_levels
from hft_ray.config import HftConfig
from hft_ray.venues.sim import SimExchange, sim_exchange_from_config

T0 = 1_700_000_000_000_000_000


def stepped(config: HftConfig, venue: str, steps: int = 3) -> SimExchange:
    ex = sim_exchange_from_config(config, venue)
    for i in range(steps):
        ex.step(T0 + i)
    return ex


def test_same_seed_same_books_other_seed_other_books(make_config: Callable[..., HftConfig]) -> None:
    a = sim_exchange_from_config(make_config(), "okx")
    b = sim_exchange_from_config(make_config(), "okx")
    c = sim_exchange_from_config(make_config(run={"seed": 8}), "okx")
    for i in range(200):
        ba, bb, bc = a.step(T0 + i), b.step(T0 + i), c.step(T0 + i)
    for x, y in zip(ba, bb, strict=True):
        assert np.array_equal(x.bids, y.bids) and np.array_equal(x.asks, y.asks)
    assert not np.array_equal(ba[0].bids, bc[0].bids)


def test_books_are_deep_sorted_and_on_the_venue_precision(
    make_config: Callable[..., HftConfig],
) -> None:
    config = make_config()
    for venue in config.venues:
        ex = sim_exchange_from_config(config, venue)
        for i in range(50):
            books = ex.step(T0 + i)
        for book in books:
            spec = config.market_spec(venue, book.symbol)
            assert len(book.bids) >= 20 and len(book.asks) >= 20
            assert check_levels(book.bids, book.asks) == ""
            for px, qty in np.vstack([book.bids, book.asks]):
                assert spec.is_tick_multiple(px), (venue, book.symbol, px)
                assert spec.is_lot_multiple(qty) and qty >= spec.lot


def test_common_walk_is_shared_and_dislocations_beat_fees(
    make_config: Callable[..., HftConfig],
) -> None:
    config = make_config()
    venues = {v: sim_exchange_from_config(config, v) for v in config.venues}
    fee = {v: config.market_spec(v, "BTC/USDT").taker_fee for v in venues}
    crossed_ticks = 0
    mids: dict[str, list[float]] = {v: [] for v in venues}
    for i in range(4_000):  # 100 s of market at 25 ms a tick
        tops = {}
        for v, ex in venues.items():
            book = next(b for b in ex.step(T0 + i) if b.symbol == "BTC/USDT")
            tops[v] = (book.bids[0, 0], book.asks[0, 0])
            mids[v].append((book.bids[0, 0] + book.asks[0, 0]) / 2)
        crossed_ticks += any(
            tops[b][0] * (1 - fee[b]) > tops[a][1] * (1 + fee[a])
            for a in venues
            for b in venues
            if a != b
        )
    # One common walk: venues never drift apart, though jumps of 30-70 bps come and go.
    ref = np.array(mids["binance"])
    spread = np.abs(ref - np.array(mids["gateio"])) / ref
    assert np.median(spread) < 2e-3 and spread.max() < 2e-2
    assert np.abs(ref[-1] / ref[0] - 1) > 0  # and the walk does move
    # Fee-beating dislocations do occur, and are short-lived (a small share of ticks).
    assert 0 < crossed_ticks < 0.2 * 4_000


def test_no_dislocations_no_fee_beating_crosses(make_config: Callable[..., HftConfig]) -> None:
    config = make_config(sim={"dislocations_per_min": 0})
    venues = {v: sim_exchange_from_config(config, v) for v in config.venues}
    for i in range(1_000):
        tops = {v: ex.step(T0 + i)[0] for v, ex in venues.items()}
        for a in venues:
            for b in venues:
                fees = config.market_spec(a, "BTC/USDT").taker_fee * 2
                assert tops[b].bids[0, 0] < tops[a].asks[0, 0] * (1 + fees)


def test_ioc_buy_fills_across_levels_and_charges_fee(make_config: Callable[..., HftConfig]) -> None:
    config = make_config()
    ex = stepped(config, "binance")
    spec = config.market_spec("binance", "ETH/USDT")
    asks = ex.book("ETH/USDT")[1].copy()
    want = spec.floor_amount(asks[0, 1] + asks[1, 1] / 2)
    limit = asks[1, 0]
    before = dict(ex.balances)
    r = ex.submit("c1", "ETH/USDT", "buy", want, limit, T0)
    expected_cost = asks[0, 0] * asks[0, 1] + asks[1, 0] * (want - asks[0, 1])
    assert r.status == "filled" and r.filled == pytest.approx(want)
    assert r.avg_price == pytest.approx(expected_cost / want)
    assert r.fee_quote == pytest.approx(expected_cost * spec.taker_fee)
    assert ex.balances["ETH"] == pytest.approx(before["ETH"] + want)
    assert ex.balances["USDT"] == pytest.approx(
        before["USDT"] - expected_cost * (1 + spec.taker_fee)
    )


def test_ioc_partial_fill_expires_the_rest(make_config: Callable[..., HftConfig]) -> None:
    config = make_config(venues={"okx": {"balances": {"SOL": 10_000.0}}})
    ex = stepped(config, "okx")
    bids = ex.book("SOL/USDT")[0].copy()
    available = bids[0, 1]
    r = ex.submit("c2", "SOL/USDT", "sell", available * 2, bids[0, 0], T0)
    assert r.status == "partial" and r.filled == pytest.approx(available)
    assert r.reason == "ioc_remainder_expired"
    # The taken level is consumed until the next tick: a second order finds nothing there.
    again = ex.submit("c3", "SOL/USDT", "sell", available, bids[0, 0], T0)
    assert again.status == "expired" and again.filled == 0


def test_orders_outside_precision_or_funds_are_rejected(
    make_config: Callable[..., HftConfig],
) -> None:
    config = make_config(venues={"gateio": {"balances": {"USDT": 100.0, "BTC": 0.0}}})
    ex = stepped(config, "gateio")
    _, asks = ex.book("BTC/USDT")
    cases = {
        "invalid_amount": ("BTC/USDT", "buy", 0.0000015, asks[0, 0]),
        "invalid_price": ("BTC/USDT", "buy", 0.001, asks[0, 0] + 0.05),
        "below_min_size": ("BTC/USDT", "buy", 0.000001, asks[0, 0]),
        "insufficient_funds": ("BTC/USDT", "buy", 0.01, asks[0, 0]),
        "unknown_symbol": ("DOGE/USDT", "buy", 1.0, 0.1),
    }
    for i, (reason, (symbol, side, amount, price)) in enumerate(cases.items()):
        r = ex.submit(f"r{i}", symbol, side, amount, price, T0)  # type: ignore[arg-type]
        assert (r.status, r.reason) == ("rejected", reason)
    r = ex.submit("s1", "BTC/USDT", "sell", 0.001, asks[0, 0], T0)
    assert (r.status, r.reason) == ("rejected", "insufficient_funds")
    assert (ex.balances["USDT"], ex.balances["BTC"]) == (100.0, 0.0)


def test_a_client_order_id_is_used_once(make_config: Callable[..., HftConfig]) -> None:
    ex = stepped(make_config(), "binance")
    _, asks = ex.book("BTC/USDT")
    first = ex.submit("dup", "BTC/USDT", "buy", 0.001, asks[0, 0], T0)
    second = ex.submit("dup", "BTC/USDT", "buy", 0.001, asks[0, 0], T0)
    assert first.status == "filled"
    assert (second.status, second.reason) == ("rejected", "duplicate_client_id")
    assert ex.fetch("dup") == first


def test_order_fate_depends_only_on_seed_and_client_id(
    make_config: Callable[..., HftConfig],
) -> None:
    config = make_config(venues={"okx": {"reject_rate": 0.3, "timeout_rate": 0.2}})
    a, b = (sim_exchange_from_config(config, "okx") for _ in range(2))
    fates = [a.order_fate(f"id{i}") for i in range(2_000)]
    assert fates == [b.order_fate(f"id{i}") for i in range(2_000)]
    share = {k: sum(f == k for f, _ in fates) / len(fates) for k in ("reject", "timeout")}
    assert 0.25 < share["reject"] < 0.35 and 0.15 < share["timeout"] < 0.25


@settings(max_examples=60, deadline=None)
@given(
    orders=st.lists(
        st.tuples(
            st.sampled_from(["BTC/USDT", "ETH/USDT", "SOL/USDT"]),
            st.sampled_from(["buy", "sell"]),
            st.floats(0.0001, 3.0),
            st.floats(-0.003, 0.003),
            st.booleans(),
        ),
        max_size=40,
    )
)
def test_balances_never_go_negative(orders: list, sim_config: HftConfig) -> None:
    ex = sim_exchange_from_config(sim_config, "binance")
    for i, (symbol, side, amount, offset, step) in enumerate(orders):
        if step or i == 0:
            ex.step(T0 + i)
        spec = sim_config.market_spec("binance", symbol)
        bids, asks = ex.book(symbol)
        touch = asks[0, 0] if side == "buy" else bids[0, 0]
        price = spec.floor_price(touch * (1 + offset))
        ex.submit(f"p{i}", symbol, side, spec.floor_amount(amount) or spec.lot, price, T0)
        assert all(v >= -1e-9 for v in ex.balances.values()), ex.balances


@pytest.fixture(scope="module")
def sim_config() -> HftConfig:
    from hft_ray.config import parse_config
    from tests.conftest import default_config_dict, merge

    return parse_config(
        merge(
            default_config_dict(),
            {
                "venues": {
                    "binance": {"balances": {"USDT": 3000.0, "BTC": 0.01, "ETH": 0.5, "SOL": 4.0}}
                }
            },
        )
    )
