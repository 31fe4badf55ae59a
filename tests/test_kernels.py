"""The numba kernels equal their pure-Python references, on random books and markets."""

from __future__ import annotations

import math

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from hft_ray.detect import kernels
from hft_ray.detect.reference import PairLimits, cross_venue_quote, floor_to_lots

LOTS = st.sampled_from([0.0, 1e-8, 1e-5, 0.001, 0.01, 0.25, 1.0, 10.0, 0.3])


@st.composite
def book_side(draw: st.DrawFn, start: float, step_sign: float) -> list[tuple[float, float]]:
    n = draw(st.integers(0, 8))
    prices, price = [], start
    for _ in range(n):
        prices.append(round(price, 2))
        price += step_sign * draw(st.floats(0.01, 2.0))
    qty = draw(st.lists(st.floats(0.001, 5.0), min_size=n, max_size=n))
    return list(zip(sorted(set(prices), reverse=step_sign < 0)[:n], qty, strict=False))


@st.composite
def pair(draw: st.DrawFn) -> tuple[list, list, PairLimits, float]:
    mid = draw(st.floats(50.0, 150.0))
    spread = draw(st.floats(-3.0, 0.3))  # mostly negative: crossed books
    asks = draw(book_side(mid + spread / 2, 1.0))
    bids = draw(book_side(mid - spread / 2 + 0.0, -1.0))
    limits = PairLimits(
        fee_buy=draw(st.sampled_from([0.0, 0.0005, 0.001, 0.002])),
        fee_sell=draw(st.sampled_from([0.0, 0.0005, 0.001, 0.002])),
        lot_buy=draw(st.one_of(st.just(0.0), st.just(1e-5), LOTS)),
        lot_sell=draw(st.one_of(st.just(0.0), st.just(1e-5), LOTS)),
        # Permissive values are drawn more often, so most cases do produce an opportunity.
        min_amount_buy=draw(st.sampled_from([0.0, 0.0, 0.001, 0.5])),
        min_amount_sell=draw(st.sampled_from([0.0, 0.0, 0.001, 0.5])),
        min_notional_buy=draw(st.sampled_from([0.0, 0.0, 5.0, 100.0])),
        min_notional_sell=draw(st.sampled_from([0.0, 0.0, 5.0, 100.0])),
        max_notional=draw(st.sampled_from([math.inf, math.inf, 50.0, 500.0])),
        quote_balance_buy=draw(st.sampled_from([math.inf, math.inf, 0.0, 80.0, 1_000.0])),
        base_balance_sell=draw(st.sampled_from([math.inf, math.inf, 0.0, 0.7, 3.0])),
    )
    return asks, bids, limits, draw(st.sampled_from([0.0, 0.0, 1.0, 10.0]))


def kernel_quote(asks: list, bids: list, limits: PairLimits, min_bps: float) -> tuple | None:
    depth = 10
    ap, aq, bp, bq = (np.full(depth, np.nan) for _ in range(4))
    for k, (p, q) in enumerate(asks):
        ap[k], aq[k] = p, q
    for k, (p, q) in enumerate(bids):
        bp[k], bq[k] = p, q
    out = np.zeros(kernels.QUOTE_COLS)
    found = kernels.quote_pair(
        ap, aq, len(asks), bp, bq, len(bids), np.array(limits, dtype=np.float64), min_bps, out
    )
    return tuple(out) if found else None


@settings(max_examples=1_500, deadline=None)
@given(pair())
def test_quote_kernel_equals_reference(case: tuple) -> None:
    asks, bids, limits, min_bps = case
    ref = cross_venue_quote(asks, bids, limits, min_bps)
    got = kernel_quote(asks, bids, limits, min_bps)
    assert (got is None) == (ref is None)
    if ref is not None:
        assert got == tuple(ref)  # equal, not close: same operations in the same order


@settings(max_examples=500, deadline=None)
@given(st.floats(0.0, 1e6), LOTS, LOTS)
def test_lot_rounding_kernel_equals_reference(amount: float, a: float, b: float) -> None:
    assert kernels.floor_to_lots(amount, a, b) == floor_to_lots(amount, a, b)


@settings(max_examples=300, deadline=None)
@given(pair())
def test_fees_never_raise_the_edge(case: tuple) -> None:
    asks, bids, limits, min_bps = case
    free = limits._replace(fee_buy=0.0, fee_sell=0.0)
    with_fees = cross_venue_quote(asks, bids, limits, min_bps)
    without = cross_venue_quote(asks, bids, free, min_bps)
    if with_fees is not None:
        assert without is not None and without.profit_quote >= with_fees.profit_quote - 1e-9


@settings(max_examples=300, deadline=None)
@given(pair())
def test_uncrossed_books_have_no_opportunity(case: tuple) -> None:
    asks, bids, limits, min_bps = case
    if asks and bids and bids[0][0] < asks[0][0]:
        assert cross_venue_quote(asks, bids, limits, min_bps) is None
        assert kernel_quote(asks, bids, limits, min_bps) is None


@settings(max_examples=150, deadline=None)
@given(st.lists(pair(), min_size=6, max_size=6), st.integers(0, 2**31))
def test_scan_kernel_equals_reference(cases: list, seed: int) -> None:
    """Two symbols x three venues, random books, random tradability, every book updated."""
    from hft_ray.detect import reference

    rng = np.random.default_rng(seed)
    n_sym, n_ven, depth = 2, 3, 10
    books, tradable, limits = {}, set(), {}
    tensors = {k: np.full((n_sym, n_ven, depth), np.nan) for k in ("bp", "bq", "ap", "aq")}
    n_bids, n_asks = np.zeros((n_sym, n_ven), np.int64), np.zeros((n_sym, n_ven), np.int64)
    lim_arr = np.zeros((n_sym, n_ven, n_ven, 11))
    for i, (asks, bids, lim, _) in enumerate(cases):
        s, v = divmod(i, n_ven)
        books[(s, v)] = (bids, asks)
        for k, (p, q) in enumerate(bids):
            tensors["bp"][s, v, k], tensors["bq"][s, v, k] = p, q
        for k, (p, q) in enumerate(asks):
            tensors["ap"][s, v, k], tensors["aq"][s, v, k] = p, q
        n_bids[s, v], n_asks[s, v] = len(bids), len(asks)
        if rng.random() < 0.8:
            tradable.add((s, v))
        for w in range(n_ven):
            limits[(s, v, w)] = lim
            lim_arr[s, v, w] = lim
    mask = np.zeros((n_sym, n_ven), np.bool_)
    for s, v in tradable:
        mask[s, v] = True
    updated = [(s, v) for s in range(n_sym) for v in range(n_ven)]
    pairs, quotes = np.zeros((64, 3), np.int64), np.zeros((64, kernels.QUOTE_COLS))
    found = kernels.scan(
        np.array(updated),
        tensors["bp"],
        tensors["bq"],
        tensors["ap"],
        tensors["aq"],
        n_bids,
        n_asks,
        mask,
        lim_arr,
        0.0,
        pairs,
        quotes,
    )
    ref = reference.scan(updated, books, tradable, limits, n_ven, 0.0)
    assert found == len(ref)
    for k, (s, a, b, q) in enumerate(ref):
        assert tuple(pairs[k]) == (s, a, b)
        assert tuple(quotes[k]) == tuple(q)
