"""The numba kernels equal their pure-Python references, on random books, markets and batches."""

from __future__ import annotations

import math

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from hft_ray.detect import kernels, reference
from hft_ray.detect.reference import BookRow, PairLimits, cross_venue_quote, floor_to_lots
from hft_ray.markets import leg_limit_prices
from hft_ray.types import BOOK_VALID, book_update_dtype
from hft_ray.venues.base import MarketSpec, step_decimals

LOTS = st.sampled_from([0.0, 1e-8, 1e-5, 0.001, 0.01, 0.25, 1.0, 10.0, 0.3])
#: Ticks of real markets (and 0: unrounded), with the scale `DetectorCore` gives each.
TICKS = st.sampled_from([0.0, 1e-8, 1e-5, 0.0001, 0.001, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 10.0])
SLIPPAGE_BPS = st.sampled_from([0.0, 0.0, 1.0, 5.0, 30.0])


def tick_scale(tick: float) -> float:
    return 10.0 ** step_decimals(tick)


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
    tick_buy, tick_sell = draw(TICKS), draw(TICKS)
    limits = limits._replace(
        tick_buy=tick_buy,
        tick_sell=tick_sell,
        tick_scale_buy=tick_scale(tick_buy),
        tick_scale_sell=tick_scale(tick_sell),
        slippage_bps=draw(SLIPPAGE_BPS),
    )
    return asks, bids, limits, draw(st.sampled_from([0.0, 0.0, 1.0, 10.0]))


@st.composite
def skewed_pair(draw: st.DrawFn) -> tuple[list, list, PairLimits, float]:
    """`pair()` with inventory: each leg's imbalance against target, its room under
    `max_position` (sizes clip to it) and a skew (0 as often as not: today's rule)."""
    asks, bids, limits, min_bps = draw(pair())
    imbalances = st.sampled_from([0.0, -3.0, -0.5, 0.2, 0.5, 3.0])
    limits = limits._replace(
        imb_buy=draw(imbalances),
        imb_sell=draw(imbalances),
        room_buy=draw(st.sampled_from([math.inf, math.inf, 0.0, 0.3, 2.0])),
        room_sell=draw(st.sampled_from([math.inf, math.inf, 0.0, 0.3, 2.0])),
        skew_per_unit=draw(st.sampled_from([0.0, 0.0, 2.0, 20.0, 500.0])),
    )
    return asks, bids, limits, min_bps


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


@settings(max_examples=800, deadline=None)
@given(skewed_pair())
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


@settings(max_examples=200, deadline=None)
@given(st.floats(1e-3, 1e6), st.floats(1e-3, 1e6), TICKS, TICKS, SLIPPAGE_BPS)
def test_leg_limit_prices_kernel_equals_reference_equals_the_markets(
    buy_worst: float, sell_worst: float, tick_buy: float, tick_sell: float, slippage: float
) -> None:
    """One definition of the legs' limit prices: the kernel's and the reference's rounding
    give exactly what risk and the executor get from the market specs."""
    limits = PairLimits(*[0.0] * 11)._replace(
        tick_buy=tick_buy,
        tick_sell=tick_sell,
        tick_scale_buy=tick_scale(tick_buy),
        tick_scale_sell=tick_scale(tick_sell),
        slippage_bps=slippage,
    )
    ref = reference.leg_limit_prices(buy_worst, sell_worst, limits)
    got = kernels.leg_limit_prices(buy_worst, sell_worst, np.array(limits, dtype=np.float64))
    assert got == ref
    if tick_buy > 0 and tick_sell > 0:
        buy, sell = (
            MarketSpec("X/Y", "X", "Y", t, 0.1, 0.0, 0.0, 0.0) for t in (tick_buy, tick_sell)
        )
        assert ref == leg_limit_prices(buy, sell, buy_worst, sell_worst, slippage)


@settings(max_examples=200, deadline=None)
@given(skewed_pair())
def test_a_quote_fits_its_caps_at_its_own_limit_prices(case: tuple) -> None:
    """What risk checks: the size within the notional and inventory caps priced at the legs'
    limit prices of walking that size, within both legs' position room, and paying the edge
    its inventory change requires."""
    asks, bids, limits, min_bps = case
    q = cross_venue_quote(asks, bids, limits, min_bps)
    if q is not None:
        prices = reference.leg_limit_prices(q.buy_worst, q.sell_worst, limits)
        assert q.size <= reference.size_cap(*prices, limits)
        assert q.size <= min(limits.room_buy, limits.room_sell)
        need = reference.required_edge_bps(
            min_bps, limits.skew_per_unit, limits.imb_buy, limits.imb_sell, q.size
        )
        assert limits.skew_per_unit == 0.0 or q.edge_bps >= need


@settings(max_examples=150, deadline=None)
@given(skewed_pair())
def test_skew_zero_is_todays_quote_and_room_clips_rather_than_rejects(case: tuple) -> None:
    """Without a skew, imbalances change nothing; a room below the size found clips the size
    to what fits (a quote at the room or below, in lots) instead of losing the opportunity."""
    asks, bids, limits, min_bps = case
    today = limits._replace(imb_buy=0.0, imb_sell=0.0, room_buy=math.inf, room_sell=math.inf)
    unskewed = limits._replace(skew_per_unit=0.0, room_buy=math.inf, room_sell=math.inf)
    base = cross_venue_quote(asks, bids, today._replace(skew_per_unit=0.0), min_bps)
    assert cross_venue_quote(asks, bids, unskewed, min_bps) == base
    room = 0.3
    clipped = cross_venue_quote(asks, bids, unskewed._replace(room_buy=room), min_bps)
    lots_ok = max(limits.min_amount_buy, limits.min_amount_sell, limits.lot_buy, limits.lot_sell)
    if base is not None and base.size > room and lots_ok <= 0.001:
        min_notional = max(limits.min_notional_buy, limits.min_notional_sell)
        if min_notional == 0.0:
            assert clipped is not None and room - 0.001 - 1e-9 <= clipped.size <= room


def test_limit_columns_follow_the_pair_limits_fields() -> None:
    columns = [getattr(reference, name.upper()) for name in PairLimits._fields]
    assert columns == list(range(reference.LIMIT_COLS))


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


DEPTH = 8
MAX_AGE_NS = 500_000_000
WALL0, MONO0 = 1_700_000_000_000_000_000, 5_000_000_000
#: Ages and clock offsets, in ms: sums and differences land on both sides of the 500 ms limit.
AGES_MS = st.sampled_from([0, 0, 1, 100, 200, 300, 499, 500, 501, 800])


@st.composite
def book_row(draw: st.DrawFn, n_sym: int, n_ven: int) -> BookRow:
    """A row of a small market: mids a few ticks apart (crosses are common), sometimes
    invalid, received and stamped up to 0.8 s before the batch's time."""
    mid = draw(st.sampled_from([99.0, 99.6, 100.0, 100.2, 101.0]))
    spread = draw(st.floats(-0.6, 0.4))
    return BookRow(
        symbol=draw(st.integers(0, n_sym - 1)),
        venue=draw(st.integers(0, n_ven - 1)),
        valid=draw(st.sampled_from([True, True, True, False])),
        ts_exchange_ns=WALL0 - draw(AGES_MS) * 1_000_000,
        recv_mono_ns=MONO0 - draw(AGES_MS) * 1_000_000,
        bids=draw(book_side(mid - spread / 2, -1.0)),
        asks=draw(book_side(mid + spread / 2, 1.0)),
    )


@st.composite
def batches(draw: st.DrawFn) -> tuple:
    """Two batches of rows over 1-2 symbols x 2-4 venues (repeated books are common), the
    limits of every (symbol, buy, sell), and when each batch is judged."""
    n_sym, n_ven = draw(st.integers(1, 2)), draw(st.integers(2, 4))
    rows = st.lists(book_row(n_sym, n_ven), min_size=1, max_size=14)
    kinds = draw(st.lists(skewed_pair(), min_size=3, max_size=3))
    limits = {
        (s, a, b): kinds[(s + a + 2 * b) % 3][2]
        for s in range(n_sym)
        for a in range(n_ven)
        for b in range(n_ven)
    }
    recorded = draw(st.booleans())
    nows = [
        reference.Now(
            mono_ns=MONO0 + draw(AGES_MS) * 1_000_000,
            wall_ns=WALL0 + draw(AGES_MS) * 1_000_000,
            recorded=recorded,
            file_ns=0,
        )
        for _ in range(2)
    ]
    min_bps = draw(st.sampled_from([0.0, 0.0, 1.0, 10.0]))
    return n_sym, n_ven, [draw(rows), draw(rows)], limits, nows, min_bps


def as_update_rows(rows: list[BookRow]) -> np.ndarray:
    """The rows as a feed hands them over: a BookUpdate array, unused levels NaN."""
    out = np.zeros(len(rows), book_update_dtype(DEPTH))
    for field in ("bid_px", "bid_qty", "ask_px", "ask_qty"):
        out[field] = np.nan
    for i, r in enumerate(rows):
        out[i]["symbol"], out[i]["venue"] = r.symbol, r.venue
        out[i]["flags"] = BOOK_VALID if r.valid else 0
        out[i]["n_bids"], out[i]["n_asks"] = len(r.bids), len(r.asks)
        out[i]["ts_exchange_ns"], out[i]["ts_recv_mono_ns"] = r.ts_exchange_ns, r.recv_mono_ns
        for k, (p, q) in enumerate(r.bids):
            out[i]["bid_px"][k], out[i]["bid_qty"][k] = p, q
        for k, (p, q) in enumerate(r.asks):
            out[i]["ask_px"][k], out[i]["ask_qty"][k] = p, q
    return out


def empty_books(n_sym: int, n_ven: int) -> kernels.Books:
    """The detector's book tensors before any update."""
    return kernels.Books(
        *(np.full((n_sym, n_ven, DEPTH), np.nan) for _ in range(4)),
        n_bids=np.zeros((n_sym, n_ven), np.int64),
        n_asks=np.zeros((n_sym, n_ven), np.int64),
        valid=np.zeros((n_sym, n_ven), np.bool_),
        ts_exchange=np.zeros((n_sym, n_ven), np.int64),
        recv_mono=np.zeros((n_sym, n_ven), np.int64),
    )


def kernel_scan(
    rows: np.ndarray,
    books: kernels.Books,
    limits: np.ndarray,
    min_bps: float,
    now: reference.Now,
    capacity: int = 256,
) -> tuple[int, int, np.ndarray, np.ndarray]:
    ids, quotes = np.zeros((capacity, kernels.ID_COLS), np.int64), np.zeros((capacity, 7))
    found, scanned = kernels.scan_rows(
        *kernels.row_columns(rows),
        *books,
        limits,
        min_bps,
        MAX_AGE_NS,
        now.mono_ns,
        now.wall_ns,
        now.recorded,
        now.file_ns,
        ids,
        quotes,
    )
    return found, scanned, ids, quotes


def assert_books_equal(books: kernels.Books, ref: dict) -> None:
    bid_px, bid_qty, ask_px, ask_qty, n_bids, n_asks, valid, ts_exchange, recv_mono = books
    for s, v in np.ndindex(valid.shape):
        row = ref.get((s, v))
        if row is None:
            assert not valid[s, v] and n_bids[s, v] == n_asks[s, v] == 0
            continue
        assert valid[s, v] == row.valid
        assert (ts_exchange[s, v], recv_mono[s, v]) == (row.ts_exchange_ns, row.recv_mono_ns)
        assert (n_bids[s, v], n_asks[s, v]) == (len(row.bids), len(row.asks))
        got_bids = list(zip(bid_px[s, v].tolist(), bid_qty[s, v].tolist(), strict=True))
        got_asks = list(zip(ask_px[s, v].tolist(), ask_qty[s, v].tolist(), strict=True))
        assert got_bids[: len(row.bids)] == row.bids and got_asks[: len(row.asks)] == row.asks
        assert np.isnan(bid_px[s, v, len(row.bids) :]).all()


@settings(max_examples=250, deadline=None)
@given(batches())
def test_row_scan_kernel_equals_reference(case: tuple) -> None:
    """Two batches in a row: every row written and quoted in order, against the books of the
    moment, stale and invalid books skipped, live or in recorded time."""
    n_sym, n_ven, row_batches, limits, nows, min_bps = case
    lim_arr = np.zeros((n_sym, n_ven, n_ven, reference.LIMIT_COLS))
    for key, lim in limits.items():
        lim_arr[key] = lim
    books = empty_books(n_sym, n_ven)
    ref_books: dict[tuple[int, int], BookRow] = {}
    file_now = 0
    for rows, now in zip(row_batches, nows, strict=True):
        now = now._replace(file_ns=file_now)
        ref, ref_scanned = reference.scan_rows(
            rows, ref_books, limits, n_ven, min_bps, MAX_AGE_NS, now
        )
        found, scanned, ids, quotes = kernel_scan(
            as_update_rows(rows), books, lim_arr, min_bps, now
        )
        assert (found, scanned) == (len(ref), ref_scanned)
        for k, f in enumerate(ref):
            assert tuple(ids[k]) == (
                f.symbol,
                f.buy,
                f.sell,
                f.buy_ts_ns,
                f.sell_ts_ns,
                f.tick_mono_ns,
            )
            assert tuple(quotes[k]) == tuple(f.quote)  # equal, not close
        assert_books_equal(books, ref_books)
        file_now = max([file_now] + [r.ts_exchange_ns for r in rows])


@settings(max_examples=200, deadline=None)
@given(batches())
def test_uncrossed_market_has_no_opportunity(case: tuple) -> None:
    """Every venue of a symbol quoting around one mid with a non-negative spread: whatever
    the batch, nothing is found, while every tradable row is still scanned."""
    n_sym, n_ven, row_batches, limits, nows, _ = case
    rows = [
        r._replace(
            bids=[(100.0 - 0.01 * (k + 1), q) for k, (_, q) in enumerate(r.bids)],
            asks=[(100.0 + 0.01 * k, q) for k, (_, q) in enumerate(r.asks)],
        )
        for r in row_batches[0] + row_batches[1]
    ]
    lim_arr = np.zeros((n_sym, n_ven, n_ven, reference.LIMIT_COLS))
    for key, lim in limits.items():
        lim_arr[key] = lim._replace(fee_buy=0.0, fee_sell=0.0)
    ref, ref_scanned = reference.scan_rows(
        rows,
        {},
        {k: v._replace(fee_buy=0.0, fee_sell=0.0) for k, v in limits.items()},
        n_ven,
        0.0,
        MAX_AGE_NS,
        nows[0],
    )
    found, scanned, _, _ = kernel_scan(
        as_update_rows(rows), empty_books(n_sym, n_ven), lim_arr, 0.0, nows[0]
    )
    assert found == len(ref) == 0 and scanned == ref_scanned


def test_every_update_of_one_book_in_a_batch_is_quoted() -> None:
    """A book that crosses for one update and recovers in the next, in the same batch, still
    yields its opportunity, priced from the update that crossed."""
    fresh = dict(valid=True, ts_exchange_ns=WALL0, recv_mono_ns=MONO0)
    calm = BookRow(0, 0, bids=[(99.9, 1.0)], asks=[(100.0, 1.0)], **fresh)
    other = BookRow(0, 1, bids=[(99.9, 1.0)], asks=[(100.0, 1.0)], **fresh)
    jumped = calm._replace(bids=[(101.0, 0.4)], asks=[(101.1, 1.0)], ts_exchange_ns=WALL0 + 7)
    now = reference.Now(MONO0, WALL0, recorded=False, file_ns=0)
    free = PairLimits(0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, math.inf, math.inf, math.inf)
    lim_arr = np.zeros((1, 2, 2, reference.LIMIT_COLS))
    lim_arr[:] = free
    books = empty_books(1, 2)
    found, scanned, ids, quotes = kernel_scan(
        as_update_rows([calm, other, jumped, calm]), books, lim_arr, 0.0, now
    )
    assert (found, scanned) == (1, 4)
    assert tuple(ids[0]) == (0, 1, 0, WALL0, WALL0 + 7, MONO0)  # buy on 1, sell on 0
    assert quotes[0, kernels.SIZE] == 0.4 and quotes[0, kernels.SELL_WORST] == 101.0
    assert books.bid_px[0, 0, 0] == 99.9  # the last update stays


def test_a_batch_that_would_not_fit_or_names_a_foreign_book_touches_nothing() -> None:
    row = BookRow(0, 1, True, WALL0, MONO0, [(99.9, 1.0)], [(100.0, 1.0)])
    now = reference.Now(MONO0, WALL0, recorded=False, file_ns=0)
    books, lim_arr = empty_books(1, 3), np.zeros((1, 3, 3, reference.LIMIT_COLS))
    rows = as_update_rows([row, row])
    # Two rows may yield 2 x 2 x (3 - 1) quotes: 7 rows of output are not enough.
    found, _, _, _ = kernel_scan(rows, books, lim_arr, 0.0, now, capacity=7)
    assert found == kernels.OUT_TOO_SMALL
    rows[1]["symbol"] = 1
    found, where, _, _ = kernel_scan(rows, books, lim_arr, 0.0, now)
    assert (found, where) == (kernels.ROW_OUTSIDE, 1)
    rows[1]["symbol"], rows[1]["venue"] = 0, -1
    assert kernel_scan(rows, books, lim_arr, 0.0, now)[:2] == (kernels.ROW_OUTSIDE, 1)
    assert_books_equal(books, {})


@settings(max_examples=200, deadline=None)
@given(st.lists(book_row(2, 3), min_size=1, max_size=8), st.booleans(), st.integers(0, 900))
def test_tradable_mask_equals_the_reference_rule(
    rows: list[BookRow], recorded: bool, late_ms: int
) -> None:
    books, ref = empty_books(2, 3), {}
    for r in rows:
        ref[(r.symbol, r.venue)] = r
    kernel_scan(
        as_update_rows(rows),
        books,
        np.zeros((2, 3, 3, reference.LIMIT_COLS)),
        0.0,
        reference.Now(MONO0, WALL0, recorded, 0),
    )
    now = reference.Now(MONO0 + late_ms * 1_000_000, WALL0 + late_ms * 1_000_000, recorded, 0)
    file_now = max(r.ts_exchange_ns for r in rows) + late_ms * 1_000_000
    mask = np.zeros((2, 3), np.bool_)
    count = kernels.tradable_mask(
        books.valid,
        books.ts_exchange,
        books.recv_mono,
        MAX_AGE_NS,
        now.mono_ns,
        now.wall_ns,
        recorded,
        file_now,
        mask,
    )
    want = {
        key for key in np.ndindex(2, 3) if reference.fresh(ref.get(key), MAX_AGE_NS, now, file_now)
    }
    assert {key for key in np.ndindex(2, 3) if mask[key]} == want and count == len(want)


def test_a_room_just_below_a_lot_boundary_ends_the_fit() -> None:
    """0.1 - 0.09000000000001 rounds up to 0.01 within lot rounding's tolerance: the fit once
    cut to that cap forever (a detector that stopped answering); it steps a lot down."""
    free = PairLimits(0.0, 0.0, 1e-5, 1e-5, 0.0, 0.0, 0.0, 0.0, math.inf, math.inf, math.inf)
    limits = free._replace(room_buy=0.1 - 0.09000000000001)
    ref = cross_venue_quote([(100.0, 1.0)], [(101.0, 1.0)], limits, 0.0)
    assert ref is not None and ref.size == 0.00999 <= limits.room_buy
    assert kernel_quote([(100.0, 1.0)], [(101.0, 1.0)], limits, 0.0) == tuple(ref)
