"""The cross-venue opportunity, in plain Python: the definition the fast kernel must match.

Buy on venue A (walk A's asks upward), sell on venue B (walk B's bids downward), level by
level, adding size while the marginal net edge of the next unit,
`bid * (1 - fee_B) - ask * (1 + fee_A)`, is at least `min_profit_bps` of the ask. The size is
then capped (order notional at the worst ask, A's quote balance including its fee, B's base
balance), rounded down to both markets' lots, and dropped if below either market's minimum
amount or notional. Prices and profit are then those of walking exactly that size.
"""

from __future__ import annotations

import math
from typing import NamedTuple

_EPS = 1e-12


class PairQuote(NamedTuple):
    size: float
    buy_worst: float
    sell_worst: float
    buy_avg: float
    sell_avg: float
    profit_quote: float
    edge_bps: float


class PairLimits(NamedTuple):
    """Fees, precision and caps for one (buy venue, sell venue) pair of one symbol."""

    fee_buy: float
    fee_sell: float
    lot_buy: float
    lot_sell: float
    min_amount_buy: float
    min_amount_sell: float
    min_notional_buy: float
    min_notional_sell: float
    max_notional: float
    quote_balance_buy: float
    base_balance_sell: float


def profitable_size(
    asks: list[tuple[float, float]],
    bids: list[tuple[float, float]],
    fee_buy: float,
    fee_sell: float,
    min_profit_bps: float,
) -> tuple[float, float, float]:
    """Size whose every unit keeps the marginal edge, with the worst ask and bid it reaches."""
    size = worst_ask = worst_bid = 0.0
    i = j = 0
    left_a = asks[0][1] if asks else 0.0
    left_b = bids[0][1] if bids else 0.0
    while i < len(asks) and j < len(bids):
        ask, bid = asks[i][0], bids[j][0]
        if bid * (1.0 - fee_sell) - ask * (1.0 + fee_buy) < min_profit_bps * 1e-4 * ask - _EPS:
            break
        take = min(left_a, left_b)
        size += take
        worst_ask, worst_bid = ask, bid
        left_a -= take
        left_b -= take
        if left_a <= _EPS:
            i += 1
            left_a = asks[i][1] if i < len(asks) else 0.0
        if left_b <= _EPS:
            j += 1
            left_b = bids[j][1] if j < len(bids) else 0.0
    return size, worst_ask, worst_bid


def walk(levels: list[tuple[float, float]], size: float) -> tuple[float, float]:
    """(worst price, total cost) of taking `size` from levels, best first."""
    left, cost, worst = size, 0.0, 0.0
    for price, qty in levels:
        if left <= _EPS:
            break
        take = min(qty, left)
        cost += take * price
        worst = price
        left -= take
    return worst, cost


def floor_to(amount: float, lot: float) -> float:
    """Round down to a whole number of lots, without binary noise (0.6627, not 0.66270000001).

    A lot that is 1/n (0.01, 0.00001, 0.25) divides by the integer n: one correctly rounded
    operation gives the double nearest to the decimal size, identically in Python and numba.
    """
    if lot <= 0:
        return amount
    inv = round(1.0 / lot)
    if inv >= 1 and abs(inv * lot - 1.0) < 1e-9:
        return math.floor(amount * inv + 1e-9) / inv
    return math.floor(amount / lot + 1e-9) * lot


def floor_to_lots(amount: float, lot_a: float, lot_b: float) -> float:
    """Round down to a size both markets accept: the coarser lot, then the finer."""
    coarse, fine = (lot_a, lot_b) if lot_a >= lot_b else (lot_b, lot_a)
    return floor_to(floor_to(amount, coarse), fine)


def cross_venue_quote(
    asks: list[tuple[float, float]],
    bids: list[tuple[float, float]],
    limits: PairLimits,
    min_profit_bps: float,
) -> PairQuote | None:
    """The opportunity of buying at `asks` and selling at `bids`, or None if there is none."""
    size, worst_ask, _ = profitable_size(
        asks, bids, limits.fee_buy, limits.fee_sell, min_profit_bps
    )
    if size <= _EPS:
        return None
    size = min(
        size,
        limits.max_notional / worst_ask,
        limits.quote_balance_buy / (worst_ask * (1.0 + limits.fee_buy)),
        limits.base_balance_sell,
    )
    size = floor_to_lots(size, limits.lot_buy, limits.lot_sell)
    if size <= _EPS or size < limits.min_amount_buy or size < limits.min_amount_sell:
        return None
    buy_worst, cost = walk(asks, size)
    sell_worst, proceeds = walk(bids, size)
    if cost < limits.min_notional_buy or proceeds < limits.min_notional_sell:
        return None
    profit = proceeds * (1.0 - limits.fee_sell) - cost * (1.0 + limits.fee_buy)
    return PairQuote(
        size=size,
        buy_worst=buy_worst,
        sell_worst=sell_worst,
        buy_avg=cost / size,
        sell_avg=proceeds / size,
        profit_quote=profit,
        edge_bps=profit / cost * 1e4,
    )


def scan(
    updated: list[tuple[int, int]],
    books: dict[tuple[int, int], tuple[list[tuple[float, float]], list[tuple[float, float]]]],
    tradable: set[tuple[int, int]],
    limits: dict[tuple[int, int, int], PairLimits],
    n_venues: int,
    min_profit_bps: float,
) -> list[tuple[int, int, int, PairQuote]]:
    """Every opportunity between each updated (symbol, venue) and the other tradable venues of
    its symbol, both directions, each pair once, in the kernel's order: (symbol, buy, sell,
    quote)."""
    out = []
    marked = set(updated)
    for s, v in updated:
        if (s, v) not in tradable:
            continue
        for w in range(n_venues):
            if w == v or (s, w) not in tradable:
                continue
            if (s, w) in marked and w < v:
                continue  # both books updated: the pair was quoted from (s, w) already
            for a, b in ((v, w), (w, v)):
                asks, bids = books[(s, a)][1], books[(s, b)][0]
                q = cross_venue_quote(asks, bids, limits[(s, a, b)], min_profit_bps)
                if q is not None:
                    out.append((s, a, b, q))
    return out
