"""The cross-venue opportunity as numba kernels over flat arrays.

Each function mirrors its namesake in `reference.py` operation for operation, so that the
property tests can demand equal results, not merely close ones. `scan` runs the pair quote for
every updated (symbol, venue) of a batch against every other tradable venue, both directions,
writing results into preallocated output arrays and returning how many it wrote.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

_EPS = 1e-12

#: Columns of a quote row and of `scan`'s output.
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

    `limits` holds fee_buy, fee_sell, lot_buy, lot_sell, min_amount_buy, min_amount_sell,
    min_notional_buy, min_notional_sell, max_notional, quote_balance_buy, base_balance_sell.
    """
    fee_buy, fee_sell = limits[0], limits[1]
    size = worst_ask = 0.0
    i = j = 0
    left_a = ask_qty[0] if n_asks > 0 else 0.0
    left_b = bid_qty[0] if n_bids > 0 else 0.0
    while i < n_asks and j < n_bids:
        ask, bid = ask_px[i], bid_px[j]
        if bid * (1.0 - fee_sell) - ask * (1.0 + fee_buy) < min_profit_bps * 1e-4 * ask - _EPS:
            break
        take = min(left_a, left_b)
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
    size = min(
        size,
        limits[8] / worst_ask,
        limits[9] / (worst_ask * (1.0 + fee_buy)),
        limits[10],
    )
    size = floor_to_lots(size, limits[2], limits[3])
    if size <= _EPS or size < limits[4] or size < limits[5]:
        return False
    buy_worst, cost = walk(ask_px, ask_qty, n_asks, size)
    sell_worst, proceeds = walk(bid_px, bid_qty, n_bids, size)
    if cost < limits[6] or proceeds < limits[7]:
        return False
    profit = proceeds * (1.0 - fee_sell) - cost * (1.0 + fee_buy)
    out[SIZE] = size
    out[BUY_WORST] = buy_worst
    out[SELL_WORST] = sell_worst
    out[BUY_AVG] = cost / size
    out[SELL_AVG] = proceeds / size
    out[PROFIT] = profit
    out[EDGE_BPS] = profit / cost * 1e4
    return True


@njit(cache=True)
def scan(
    updated: np.ndarray,
    bid_px: np.ndarray,
    bid_qty: np.ndarray,
    ask_px: np.ndarray,
    ask_qty: np.ndarray,
    n_bids: np.ndarray,
    n_asks: np.ndarray,
    tradable: np.ndarray,
    limits: np.ndarray,
    min_profit_bps: float,
    out_pairs: np.ndarray,
    out_quotes: np.ndarray,
) -> int:  # pragma: no cover - compiled
    """Quote every updated (symbol, venue) against every other tradable venue, both ways.

    `updated` is (k, 2) of distinct (symbol, venue); books are (S, V, D) and (S, V); a pair
    whose two books both updated is quoted once, from the lower venue. `limits` is
    (S, V, V, 11) for (symbol, buy venue, sell venue). Writes (symbol, buy, sell) rows to
    `out_pairs` and quote rows to `out_quotes`; returns the count. A pair whose top of book
    does not cross net of both fees is skipped before any depth is walked.
    """
    found = 0
    n_venues = tradable.shape[1]
    marked = np.zeros(tradable.shape, np.bool_)
    for k in range(updated.shape[0]):
        marked[updated[k, 0], updated[k, 1]] = True
    for k in range(updated.shape[0]):
        s, v = updated[k, 0], updated[k, 1]
        if not tradable[s, v]:
            continue
        for w in range(n_venues):
            if w == v or not tradable[s, w]:
                continue
            if marked[s, w] and w < v:
                continue  # both books updated: the pair was quoted from (s, w) already
            for direction in range(2):
                a, b = (v, w) if direction == 0 else (w, v)
                if n_asks[s, a] == 0 or n_bids[s, b] == 0:
                    continue
                ask, bid = ask_px[s, a, 0], bid_px[s, b, 0]
                fee_buy, fee_sell = limits[s, a, b, 0], limits[s, a, b, 1]
                if (
                    bid * (1.0 - fee_sell) - ask * (1.0 + fee_buy)
                    < min_profit_bps * 1e-4 * ask - _EPS
                ):
                    continue  # the first unit does not pay: quote_pair would find nothing
                if found >= out_pairs.shape[0]:
                    return found
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
                    out_pairs[found, 0] = s
                    out_pairs[found, 1] = a
                    out_pairs[found, 2] = b
                    found += 1
    return found
