"""The cross-venue quote and the row scan, by hand: each edge case has a defined answer."""

from __future__ import annotations

import math

import pytest

from hft_ray.detect.reference import (
    BookRow,
    Now,
    PairLimits,
    cross_venue_quote,
    floor_to_lots,
    fresh,
    leg_limit_prices,
    profitable_size,
    scan_rows,
    size_cap,
)

INF = math.inf


def limits(**kw: float) -> PairLimits:
    base = dict(
        fee_buy=0.001,
        fee_sell=0.001,
        lot_buy=0.0,
        lot_sell=0.0,
        min_amount_buy=0.0,
        min_amount_sell=0.0,
        min_notional_buy=0.0,
        min_notional_sell=0.0,
        max_notional=INF,
        quote_balance_buy=INF,
        base_balance_sell=INF,
    )
    base.update(kw)
    return PairLimits(**base)


def test_walks_both_books_while_the_marginal_unit_pays() -> None:
    asks = [(100.0, 1.0), (100.5, 2.0), (103.0, 5.0)]
    bids = [(102.0, 1.5), (101.0, 1.0), (100.0, 9.0)]
    # unit 1 at 100/102 pays, 0.5 at 100.5/102 pays, 1.0 at 100.5/101 pays (101*.999 > 100.5*1.001)
    # next: 100.5 vs 100 does not.
    q = cross_venue_quote(asks, bids, limits(), 0.0)
    assert q is not None
    assert q.size == pytest.approx(2.5)
    assert (q.buy_worst, q.sell_worst) == (100.5, 101.0)
    cost = 100 + 1.5 * 100.5
    proceeds = 1.5 * 102 + 101
    assert q.buy_avg == pytest.approx(cost / 2.5)
    assert q.profit_quote == pytest.approx(proceeds * 0.999 - cost * 1.001)
    assert q.edge_bps == pytest.approx(q.profit_quote / cost * 1e4)


def test_min_profit_bps_stops_the_walk_earlier() -> None:
    asks = [(100.0, 1.0), (100.5, 2.0)]
    bids = [(102.0, 1.5), (101.0, 1.0)]
    q = cross_venue_quote(asks, bids, limits(), 50.0)  # 101*.999-100.5*1.001 < 0.5% of 100.5
    assert q is not None and q.size == pytest.approx(1.5)


def test_fees_that_eat_the_spread_leave_nothing() -> None:
    assert cross_venue_quote([(100.0, 1.0)], [(100.1, 1.0)], limits(), 0.0) is None
    q = cross_venue_quote([(100.0, 1.0)], [(100.1, 1.0)], limits(fee_buy=0, fee_sell=0), 0.0)
    assert q is not None and q.profit_quote == pytest.approx(0.1)


def test_empty_side_or_uncrossed_books_give_none() -> None:
    assert cross_venue_quote([], [(100.0, 1.0)], limits(), 0.0) is None
    assert cross_venue_quote([(100.0, 1.0)], [], limits(), 0.0) is None
    assert cross_venue_quote([(100.0, 1.0)], [(99.0, 1.0)], limits(), 0.0) is None


def test_one_level_each_takes_the_smaller_size() -> None:
    q = cross_venue_quote([(100.0, 0.3)], [(101.0, 2.0)], limits(), 0.0)
    assert q is not None and q.size == pytest.approx(0.3)


def test_zero_marginal_edge_is_included_at_zero_min_profit() -> None:
    # bid*(1-f) == ask*(1+f) exactly with zero fees: the tie is taken (>=), profit 0.
    q = cross_venue_quote([(100.0, 1.0)], [(100.0, 1.0)], limits(fee_buy=0, fee_sell=0), 0.0)
    assert q is not None and q.profit_quote == 0.0


def test_caps_by_notional_and_inventory_then_lots() -> None:
    asks = [(100.0, 10.0)]
    bids = [(110.0, 10.0)]
    # The sell leg's notional is the larger: 250 at its limit price 110, as risk counts it.
    q = cross_venue_quote(asks, bids, limits(max_notional=250.0), 0)
    assert q is not None and q.size == 250.0 / 110.0
    q = cross_venue_quote(asks, bids, limits(quote_balance_buy=300.0, lot_buy=0.1), 0)
    assert q is not None and q.size == pytest.approx(2.9)  # 300 / 100.1 = 2.997 -> 2.9
    q = cross_venue_quote(
        asks, bids, limits(base_balance_sell=1.234, lot_buy=0.01, lot_sell=0.1), 0
    )
    assert q is not None and q.size == pytest.approx(1.2)


def test_caps_are_priced_at_the_legs_limit_prices_with_slippage_and_ticks() -> None:
    asks, bids = [(100.0, 10.0)], [(110.07, 10.0)]
    lim = limits(
        max_notional=1_000.0,
        quote_balance_buy=500.0,
        tick_buy=0.5,
        tick_sell=0.1,
        tick_scale_buy=10.0,
        tick_scale_sell=10.0,
        slippage_bps=10.0,
    )
    # buy 100 * 1.001 = 100.1 -> 100.5 (up to the tick); sell 110.07 * 0.999 -> 109.9 (down).
    assert leg_limit_prices(100.0, 110.07, lim) == (100.5, 109.9)
    q = cross_venue_quote(asks, bids, lim, 0)
    assert q is not None and q.size == min(1_000.0 / 109.9, 500.0 / (100.5 * 1.001))
    assert q.size == size_cap(100.5, 109.9, lim)


def test_a_size_that_no_longer_fits_at_its_own_prices_is_cut_again() -> None:
    # The first cut, 1,000 at the worst ask 101, is 9.9 in lots: its sell walks to 108, and
    # 9.9 at 108 is over 1,000; cut to 1,000 / 108, 9.25 in lots, still selling at 108: fits.
    asks, bids = [(100.0, 5.0), (101.0, 10.0)], [(112.0, 5.0), (108.0, 10.0)]
    q = cross_venue_quote(asks, bids, limits(max_notional=1_000.0, lot_buy=0.01), 0)
    assert q is not None and q.size == 9.25 and q.sell_worst == 108.0
    # A size within the first levels is priced at the better bid, 112: 500 / 112.
    q = cross_venue_quote(asks, bids, limits(max_notional=500.0), 0)
    assert q is not None and q.size == 500.0 / 112.0 and q.sell_worst == 112.0


def test_below_minimum_amount_or_notional_is_dropped() -> None:
    asks, bids = [(100.0, 0.05)], [(110.0, 1.0)]
    assert cross_venue_quote(asks, bids, limits(min_amount_sell=0.1), 0) is None
    assert cross_venue_quote(asks, bids, limits(min_notional_buy=5.01), 0) is None
    assert cross_venue_quote(asks, bids, limits(min_notional_buy=5.0), 0) is not None


def test_floor_to_lots_has_no_binary_noise() -> None:
    assert floor_to_lots(0.66270000001, 0.0001, 0.00001) == 0.6627
    assert floor_to_lots(1.99999, 0.1, 0.01) == 1.9
    assert profitable_size([], [], 0, 0, 0) == (0.0, 0.0, 0.0)


def book(s: int, v: int, bid: float, ask: float, ts: int = 0, mono: int = 0) -> BookRow:
    return BookRow(s, v, True, ts, mono, [(bid, 1.0)], [(ask, 1.0)])


def test_age_is_the_older_of_receipt_and_venue_stamp_or_recorded_time() -> None:
    live = Now(mono_ns=1_000, wall_ns=5_000, recorded=False, file_ns=0)
    assert fresh(book(0, 0, 1, 2, ts=4_500, mono=500), 500, live, 0)  # both exactly 500 old
    assert not fresh(book(0, 0, 1, 2, ts=4_499, mono=500), 500, live, 0)  # stamped too early
    assert not fresh(book(0, 0, 1, 2, ts=4_500, mono=499), 500, live, 0)  # received too early
    assert not fresh(book(0, 0, 1, 2, ts=5_000, mono=1_000)._replace(valid=False), 500, live, 0)
    assert not fresh(None, 500, live, 0)
    replay = live._replace(recorded=True)  # the host's clocks no longer matter
    assert fresh(book(0, 0, 1, 2, ts=4_500), 500, replay, 5_000)
    assert not fresh(book(0, 0, 1, 2, ts=4_499), 500, replay, 5_000)


def test_each_row_is_quoted_against_every_other_venue_both_ways_as_it_arrives() -> None:
    free = limits(fee_buy=0.0, fee_sell=0.0)
    lim = {(0, a, b): free for a in range(3) for b in range(3)}
    now = Now(mono_ns=0, wall_ns=0, recorded=False, file_ns=0)
    books = {(0, 0): book(0, 0, 99.0, 100.0), (0, 2): book(0, 2, 101.0, 102.0)}
    rows = [book(0, 1, 103.0, 98.0)._replace(valid=False), book(0, 1, 100.5, 100.6)]
    found, scanned = scan_rows(rows, books, lim, 3, 0.0, 10, now)
    # the invalid row is skipped; the valid one buys on 0 (ask 100) to sell on 1 (100.5) and
    # buys on 1 (100.6) to sell on 2 (101): venue 0 against 2 is not this row's to quote.
    assert scanned == 1
    assert [(f.buy, f.sell) for f in found] == [(0, 1), (1, 2)]
    assert found[0].quote.profit_quote == pytest.approx(0.5)
    assert books[(0, 1)] == rows[1]


def test_in_recorded_time_each_row_is_judged_when_it_was_recorded() -> None:
    free = limits(fee_buy=0.0, fee_sell=0.0)
    lim = {(0, a, b): free for a in range(2) for b in range(2)}
    now = Now(mono_ns=0, wall_ns=0, recorded=True, file_ns=0)
    rows = [book(0, 0, 99.0, 100.0, ts=1_000), book(0, 1, 101.0, 102.0, ts=1_400)]
    rows.append(book(0, 1, 101.0, 102.0, ts=1_600))  # now 600 past venue 0's book: stale
    found, scanned = scan_rows(rows, {}, lim, 2, 0.0, 500, now)
    assert [f.sell_ts_ns for f in found] == [1_400] and scanned == 3
