"""The cross-venue opportunity as numba kernels over flat arrays.

Each function mirrors its namesake in `reference.py` operation for operation, so that the
property tests can demand equal results, not merely close ones. `scan_rows` takes a batch of
BookUpdate rows one at a time, in order: it writes the row's book into the book tensors and
quotes it against every other venue's current tradable book of its symbol, both directions,
so that every update is evaluated, not only the last one of each book in a batch. Results go
into preallocated output arrays; the kernel returns counts.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
from numba import njit

# The limits columns are `PairLimits`' fields. Numba's cache keys on this file only: a change
# to that layout must come with a change here (or a cleared cache), or stale code runs.
from hft_ray.detect.reference import (
    BASE_BALANCE_SELL,
    FEE_BUY,
    FEE_SELL,
    IMB_BUY,
    IMB_SELL,
    LOT_BUY,
    LOT_SELL,
    MAX_NOTIONAL,
    MIN_AMOUNT_BUY,
    MIN_AMOUNT_SELL,
    MIN_NOTIONAL_BUY,
    MIN_NOTIONAL_SELL,
    QUOTE_BALANCE_BUY,
    ROOM_BUY,
    ROOM_SELL,
    SKEW_PER_UNIT,
    SLIPPAGE_BPS,
    TICK_BUY,
    TICK_SCALE_BUY,
    TICK_SCALE_SELL,
    TICK_SELL,
)
from hft_ray.types import BOOK_VALID

_EPS = 1e-12

#: Columns of a quote row (`quote_pair`'s, `scan_rows`' float output).
SIZE, BUY_WORST, SELL_WORST, BUY_AVG, SELL_AVG, PROFIT, EDGE_BPS = range(7)
QUOTE_COLS = 7


@njit(cache=True)
def floor_to(amount: float, lot: float) -> float:  # pragma: no cover - compiled
    if lot <= 0:
        return amount
    inv = round(1.0 / lot)
    if inv >= 1 and abs(inv * lot - 1.0) < 1e-9:
        return math.floor(amount * inv + 1e-9) / inv
    return math.floor(amount / lot + 1e-9) * lot


@njit(cache=True)
def floor_to_lots(amount: float, lot_a: float, lot_b: float) -> float:  # pragma: no cover
    if lot_a >= lot_b:
        return floor_to(floor_to(amount, lot_a), lot_b)
    return floor_to(floor_to(amount, lot_b), lot_a)


@njit(cache=True)
def walk(
    px: np.ndarray, qty: np.ndarray, n: int, size: float
) -> tuple[float, float]:  # pragma: no cover
    left, cost, worst = size, 0.0, 0.0
    for k in range(n):
        if left <= _EPS:
            break
        take = min(qty[k], left)
        cost += take * px[k]
        worst = px[k]
        left -= take
    return worst, cost


@njit(cache=True)
def required_edge_bps(
    min_bps: float, skew_per_unit: float, imb_buy: float, imb_sell: float, size: float
) -> float:  # pragma: no cover - compiled
    if skew_per_unit == 0.0:
        return min_bps
    moved = abs(imb_buy + size) - abs(imb_buy) + abs(imb_sell - size) - abs(imb_sell)
    return max(0.0, min_bps + skew_per_unit * moved)


@njit(cache=True)
def required_of(
    limits: np.ndarray, min_bps: float, size: float
) -> float:  # pragma: no cover - compiled
    """`required_edge_bps` of one pair's limits row."""
    return required_edge_bps(
        min_bps, limits[SKEW_PER_UNIT], limits[IMB_BUY], limits[IMB_SELL], size
    )


@njit(cache=True)
def floor_to_tick(price: float, tick: float, scale: float) -> float:  # pragma: no cover
    if tick <= 0:
        return price
    return float(math.floor(price / tick + 1e-9)) * float(round(tick * scale)) / scale


@njit(cache=True)
def ceil_to_tick(price: float, tick: float, scale: float) -> float:  # pragma: no cover
    if tick <= 0:
        return price
    return float(math.ceil(price / tick - 1e-9)) * float(round(tick * scale)) / scale


@njit(cache=True)
def leg_limit_prices(
    buy_worst: float, sell_worst: float, limits: np.ndarray
) -> tuple[float, float]:  # pragma: no cover - compiled
    slip = limits[SLIPPAGE_BPS] * 1e-4
    return (
        ceil_to_tick(buy_worst * (1.0 + slip), limits[TICK_BUY], limits[TICK_SCALE_BUY]),
        floor_to_tick(sell_worst * (1.0 - slip), limits[TICK_SELL], limits[TICK_SCALE_SELL]),
    )


@njit(cache=True)
def first_cut(price: float, limits: np.ndarray) -> float:  # pragma: no cover - compiled
    return min(
        limits[MAX_NOTIONAL] / price,
        limits[QUOTE_BALANCE_BUY] / (price * (1.0 + limits[FEE_BUY])),
        limits[BASE_BALANCE_SELL],
        limits[ROOM_BUY],
        limits[ROOM_SELL],
    )


@njit(cache=True)
def size_cap(buy_px: float, sell_px: float, limits: np.ndarray) -> float:  # pragma: no cover
    return min(
        limits[MAX_NOTIONAL] / max(buy_px, sell_px),
        limits[QUOTE_BALANCE_BUY] / (buy_px * (1.0 + limits[FEE_BUY])),
        limits[BASE_BALANCE_SELL],
        limits[ROOM_BUY],
        limits[ROOM_SELL],
    )


@njit(cache=True)
def fit_size(
    ask_px: np.ndarray,
    ask_qty: np.ndarray,
    n_asks: int,
    bid_px: np.ndarray,
    bid_qty: np.ndarray,
    n_bids: int,
    size: float,
    limits: np.ndarray,
) -> tuple[float, float, float, float, float]:  # pragma: no cover - compiled
    """`reference.fit_size`: (size, worst ask, cost, worst bid, proceeds), size 0 if none."""
    while True:
        size = floor_to_lots(size, limits[LOT_BUY], limits[LOT_SELL])
        if size <= _EPS or size < limits[MIN_AMOUNT_BUY] or size < limits[MIN_AMOUNT_SELL]:
            return 0.0, 0.0, 0.0, 0.0, 0.0
        buy_worst, cost = walk(ask_px, ask_qty, n_asks, size)
        sell_worst, proceeds = walk(bid_px, bid_qty, n_bids, size)
        buy_px, sell_px = leg_limit_prices(buy_worst, sell_worst, limits)
        cap = size_cap(buy_px, sell_px, limits)
        if size <= cap:
            return size, buy_worst, cost, sell_worst, proceeds
        if floor_to_lots(cap, limits[LOT_BUY], limits[LOT_SELL]) < size:
            size = cap
        else:
            size -= max(limits[LOT_BUY], limits[LOT_SELL])


@njit(cache=True)
def quote_pair(
    ask_px: np.ndarray,
    ask_qty: np.ndarray,
    n_asks: int,
    bid_px: np.ndarray,
    bid_qty: np.ndarray,
    n_bids: int,
    limits: np.ndarray,
    min_profit_bps: float,
    out: np.ndarray,
) -> bool:  # pragma: no cover - compiled
    """Buy at the asks, sell at the bids; write a quote row into `out`, True if there is one.

    `limits` is one pair's `PairLimits`, a column each (`FEE_BUY`, ...).
    """
    fee_buy, fee_sell = limits[FEE_BUY], limits[FEE_SELL]
    size = worst_ask = 0.0
    i = j = 0
    left_a = ask_qty[0] if n_asks > 0 else 0.0
    left_b = bid_qty[0] if n_bids > 0 else 0.0
    while i < n_asks and j < n_bids:
        ask, bid = ask_px[i], bid_px[j]
        take = min(left_a, left_b)
        need = min_profit_bps
        if limits[SKEW_PER_UNIT] != 0.0:
            need = required_of(limits, min_profit_bps, min(size + take, first_cut(ask, limits)))
        if bid * (1.0 - fee_sell) - ask * (1.0 + fee_buy) < need * 1e-4 * ask - _EPS:
            break
        size += take
        worst_ask = ask
        left_a -= take
        left_b -= take
        if left_a <= _EPS:
            i += 1
            left_a = ask_qty[i] if i < n_asks else 0.0
        if left_b <= _EPS:
            j += 1
            left_b = bid_qty[j] if j < n_bids else 0.0
    if size <= _EPS:
        return False
    size = min(size, first_cut(worst_ask, limits))
    size, buy_worst, cost, sell_worst, proceeds = fit_size(
        ask_px, ask_qty, n_asks, bid_px, bid_qty, n_bids, size, limits
    )
    if size <= 0:
        return False
    if cost < limits[MIN_NOTIONAL_BUY] or proceeds < limits[MIN_NOTIONAL_SELL]:
        return False
    profit = proceeds * (1.0 - fee_sell) - cost * (1.0 + fee_buy)
    edge_bps = profit / cost * 1e4
    if limits[SKEW_PER_UNIT] != 0.0 and edge_bps < required_of(limits, min_profit_bps, size):
        return False
    out[SIZE] = size
    out[BUY_WORST] = buy_worst
    out[SELL_WORST] = sell_worst
    out[BUY_AVG] = cost / size
    out[SELL_AVG] = proceeds / size
    out[PROFIT] = profit
    out[EDGE_BPS] = edge_bps
    return True


#: Columns of `scan_rows`' integer output: the pair and the books it was quoted from.
SYMBOL, BUY, SELL, BUY_TS, SELL_TS, TICK_MONO = range(6)
ID_COLS = 6

#: Status codes `scan_rows` returns instead of a count (nothing is written then).
OUT_TOO_SMALL = -1  # the output holds fewer than 2 * (V - 1) rows per input row
ROW_OUTSIDE = -2  # a row's symbol or venue is outside the book tensors


class RowColumns(NamedTuple):
    """The columns of a BookUpdate array that `scan_rows` reads, in its argument order."""

    symbol: np.ndarray
    venue: np.ndarray
    flags: np.ndarray
    n_bids: np.ndarray
    n_asks: np.ndarray
    ts_exchange_ns: np.ndarray
    ts_recv_mono_ns: np.ndarray
    bid_px: np.ndarray
    bid_qty: np.ndarray
    ask_px: np.ndarray
    ask_qty: np.ndarray


class Books(NamedTuple):
    """A detector's books, in `scan_rows`' argument order: (S, V, D) levels, (S, V) the rest."""

    bid_px: np.ndarray
    bid_qty: np.ndarray
    ask_px: np.ndarray
    ask_qty: np.ndarray
    n_bids: np.ndarray
    n_asks: np.ndarray
    valid: np.ndarray
    ts_exchange: np.ndarray
    recv_mono: np.ndarray


def row_columns(rows: np.ndarray) -> RowColumns:
    """The columns of a BookUpdate array as read-only views (no copy).

    Read-only always, because batches that came through Ray's object store are: numba
    compiles one specialisation per array type, and a new one on a live batch stalls it for
    seconds. (A one-row batch's columns are contiguous, another type: `warm_up` covers both.)
    """
    view = rows.view()
    view.flags.writeable = False  # once, not per column: its columns inherit it
    return RowColumns(*(view[name] for name in RowColumns._fields))


@njit(cache=True)
def fresh(
    valid: np.ndarray,
    ts_exchange: np.ndarray,
    recv_mono: np.ndarray,
    s: int,
    v: int,
    max_age_ns: int,
    now_mono: int,
    now_wall: int,
    recorded: bool,
    file_now: int,
) -> bool:  # pragma: no cover - compiled
    """Whether the (s, v) book is tradable: `reference.fresh`, on the book tensors."""
    if not valid[s, v]:
        return False
    if recorded:
        return file_now - ts_exchange[s, v] <= max_age_ns
    age = max(now_mono - recv_mono[s, v], now_wall - ts_exchange[s, v])
    return age <= max_age_ns


@njit(cache=True)
def scan_rows(
    r_symbol: np.ndarray,
    r_venue: np.ndarray,
    r_flags: np.ndarray,
    r_n_bids: np.ndarray,
    r_n_asks: np.ndarray,
    r_ts_exchange: np.ndarray,
    r_recv_mono: np.ndarray,
    r_bid_px: np.ndarray,
    r_bid_qty: np.ndarray,
    r_ask_px: np.ndarray,
    r_ask_qty: np.ndarray,
    bid_px: np.ndarray,
    bid_qty: np.ndarray,
    ask_px: np.ndarray,
    ask_qty: np.ndarray,
    n_bids: np.ndarray,
    n_asks: np.ndarray,
    valid: np.ndarray,
    ts_exchange: np.ndarray,
    recv_mono: np.ndarray,
    limits: np.ndarray,
    min_profit_bps: float,
    max_age_ns: int,
    now_mono: int,
    now_wall: int,
    recorded: bool,
    file_now: int,
    out_ids: np.ndarray,
    out_quotes: np.ndarray,
) -> tuple[int, int]:  # pragma: no cover - compiled
    """Write each row's book into the tensors and quote it, in row order; (found, scanned).

    Rows are `RowColumns`; books are `Books`, (S, V, D) and (S, V); `limits` is
    (S, V, V, LIMIT_COLS) for (symbol, buy venue, sell venue). For row i: its book replaces the
    (symbol, venue) book; if it is tradable, it is quoted against every other venue's current
    tradable book of the symbol, buy here / sell there, then the reverse, writing ID_COLS rows
    to `out_ids` and quote rows to `out_quotes`. Tradable: valid and at most `max_age_ns` old,
    age being the older of since receipt (`now_mono`) and since the venue's stamp
    (`now_wall`), or, if `recorded`, the newest recorded stamp so far (starting from
    `file_now`, advanced by each row before it is judged) minus the book's stamp. Returns
    the count of quotes and of rows that were tradable, or a status code (`OUT_TOO_SMALL`,
    `ROW_OUTSIDE`) and the offending row before touching anything.
    """
    n_rows = r_symbol.shape[0]
    n_sym, n_ven = valid.shape
    if out_ids.shape[0] < n_rows * 2 * (n_ven - 1) or out_quotes.shape[0] < out_ids.shape[0]:
        return OUT_TOO_SMALL, 0
    for i in range(n_rows):
        if not (0 <= r_symbol[i] < n_sym and 0 <= r_venue[i] < n_ven):
            return ROW_OUTSIDE, i
    depth = bid_px.shape[2]
    found = scanned = 0
    for i in range(n_rows):
        s, v = r_symbol[i], r_venue[i]
        for k in range(depth):
            bid_px[s, v, k] = r_bid_px[i, k]
            bid_qty[s, v, k] = r_bid_qty[i, k]
            ask_px[s, v, k] = r_ask_px[i, k]
            ask_qty[s, v, k] = r_ask_qty[i, k]
        n_bids[s, v], n_asks[s, v] = r_n_bids[i], r_n_asks[i]
        valid[s, v] = (r_flags[i] & BOOK_VALID) != 0
        ts_exchange[s, v], recv_mono[s, v] = r_ts_exchange[i], r_recv_mono[i]
        file_now = max(file_now, r_ts_exchange[i])
        when = (max_age_ns, now_mono, now_wall, recorded, file_now)
        if not fresh(valid, ts_exchange, recv_mono, s, v, *when):
            continue
        scanned += 1
        for w in range(n_ven):
            if w == v or not fresh(valid, ts_exchange, recv_mono, s, w, *when):
                continue
            for direction in range(2):
                a, b = (v, w) if direction == 0 else (w, v)
                if n_asks[s, a] == 0 or n_bids[s, b] == 0:
                    continue
                ask, bid = ask_px[s, a, 0], bid_px[s, b, 0]
                fee_buy, fee_sell = limits[s, a, b, FEE_BUY], limits[s, a, b, FEE_SELL]
                need = min_profit_bps
                if limits[s, a, b, SKEW_PER_UNIT] != 0.0:
                    first = min(ask_qty[s, a, 0], bid_qty[s, b, 0], first_cut(ask, limits[s, a, b]))
                    need = required_of(limits[s, a, b], min_profit_bps, first)
                if bid * (1.0 - fee_sell) - ask * (1.0 + fee_buy) < need * 1e-4 * ask - _EPS:
                    continue  # the first unit does not pay: quote_pair would find nothing
                if quote_pair(
                    ask_px[s, a],
                    ask_qty[s, a],
                    n_asks[s, a],
                    bid_px[s, b],
                    bid_qty[s, b],
                    n_bids[s, b],
                    limits[s, a, b],
                    min_profit_bps,
                    out_quotes[found],
                ):
                    out_ids[found, SYMBOL] = s
                    out_ids[found, BUY] = a
                    out_ids[found, SELL] = b
                    out_ids[found, BUY_TS] = ts_exchange[s, a]
                    out_ids[found, SELL_TS] = ts_exchange[s, b]
                    out_ids[found, TICK_MONO] = max(recv_mono[s, a], recv_mono[s, b])
                    found += 1
    return found, scanned


@njit(cache=True)
def tradable_mask(
    valid: np.ndarray,
    ts_exchange: np.ndarray,
    recv_mono: np.ndarray,
    max_age_ns: int,
    now_mono: int,
    now_wall: int,
    recorded: bool,
    file_now: int,
    out: np.ndarray,
) -> int:  # pragma: no cover - compiled
    """Write into `out` (S, V) which books are tradable, by `scan_rows`' rule; return how many."""
    when = (max_age_ns, now_mono, now_wall, recorded, file_now)
    count = 0
    for s in range(valid.shape[0]):
        for v in range(valid.shape[1]):
            out[s, v] = fresh(valid, ts_exchange, recv_mono, s, v, *when)
            count += out[s, v]
    return count
