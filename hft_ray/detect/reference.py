"""The cross-venue opportunity, in plain Python: the definition the fast kernel must match.

Buy on venue A (walk A's asks upward), sell on venue B (walk B's bids downward), level by
level, adding size while the marginal net edge of the next unit,
`bid * (1 - fee_B) - ask * (1 + fee_A)`, is at least `min_profit_bps` of the ask. The size is
then capped (order notional, A's quote balance including its fee, B's base balance), rounded
down to both markets' lots, and dropped if below either market's minimum amount or notional.
The caps are priced as risk prices them (`hft_ray.risk.checks.decide`): at the legs' limit
prices, the worst prices of walking the size widened by the slippage and rounded outward to
each market's tick (`leg_limit_prices`), so that an opportunity within every limit reaches
risk at a size risk approves unclipped. Prices and profit are those of walking that size.

Inventory: the size is also capped by each leg's room under `max_position` (how far the buy
venue's position may still rise, the sell venue's fall), so a venue near its limit gets the
size that still fits, not a rejection. With an inventory skew, the edge an opportunity needs
depends on what it does to inventory (`required_edge_bps`): each level is taken only while
its marginal edge meets the edge required of the size reached with it, and the quote is
dropped if its own edge is below the edge required of its final size.
Risk re-checks its own minimum edge with the same function (`hft_ray.risk.checks.decide`).

`scan_rows` defines which pairs are quoted: every row of a batch, in order, against the books
current when it arrives.
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
    """Fees, precision and caps for one (buy venue, sell venue) pair of one symbol.

    The kernels take them as the last axis of a float array, a column per field in this order
    (the column constants below). A tick of 0 leaves prices unrounded; `tick_scale` is
    10 ** (the tick's decimal places), which makes the tick a whole number."""

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
    tick_buy: float = 0.0
    tick_sell: float = 0.0
    tick_scale_buy: float = 1.0
    tick_scale_sell: float = 1.0
    slippage_bps: float = 0.0
    # Inventory, in base units: each leg's position minus its target (`imb_*`), how far the
    # buy venue's position may still rise and the sell venue's fall under `max_position`
    # (`room_*`), and the skew in bps of required edge per base unit of imbalance moved away
    # from target (`detector.inventory_skew_bps / risk.max_position`; 0: no skew).
    imb_buy: float = 0.0
    imb_sell: float = 0.0
    room_buy: float = math.inf
    room_sell: float = math.inf
    skew_per_unit: float = 0.0


#: The column of each `PairLimits` field in the kernels' limits arrays (S, V, V, LIMIT_COLS).
(
    FEE_BUY,
    FEE_SELL,
    LOT_BUY,
    LOT_SELL,
    MIN_AMOUNT_BUY,
    MIN_AMOUNT_SELL,
    MIN_NOTIONAL_BUY,
    MIN_NOTIONAL_SELL,
    MAX_NOTIONAL,
    QUOTE_BALANCE_BUY,
    BASE_BALANCE_SELL,
    TICK_BUY,
    TICK_SELL,
    TICK_SCALE_BUY,
    TICK_SCALE_SELL,
    SLIPPAGE_BPS,
    IMB_BUY,
    IMB_SELL,
    ROOM_BUY,
    ROOM_SELL,
    SKEW_PER_UNIT,
) = range(21)
LIMIT_COLS = len(PairLimits._fields)


def required_edge_bps(
    min_bps: float, skew_per_unit: float, imb_buy: float, imb_sell: float, size: float
) -> float:
    """The edge, in bps, an arbitrage of `size` needs: `min_bps` plus the skew times the change
    of |imbalance| summed over both legs (the buy venue's position rises by `size`, the sell
    venue's falls). Away from target that is more, back towards it less, but never below 0:
    an arbitrage never pays to rebalance (moving funds at a cost is a transfer's job).
    The change is at most 2 x size. A skew of 0 gives exactly `min_bps`: today's rule."""
    if skew_per_unit == 0.0:
        return min_bps
    moved = abs(imb_buy + size) - abs(imb_buy) + abs(imb_sell - size) - abs(imb_sell)
    return max(0.0, min_bps + skew_per_unit * moved)


def profitable_size(
    asks: list[tuple[float, float]],
    bids: list[tuple[float, float]],
    fee_buy: float,
    fee_sell: float,
    min_profit_bps: float,
    limits: PairLimits | None = None,
) -> tuple[float, float, float]:
    """Size whose every unit keeps the marginal edge, with the worst ask and bid it reaches:
    the edge required (`required_edge_bps`, with `limits`' inventory) of the size reached
    with that unit, or of the caps at its ask (`first_cut`) if smaller: no size beyond them
    can come out of the quote."""
    skew = limits is not None and limits.skew_per_unit != 0.0
    size = worst_ask = worst_bid = 0.0
    i = j = 0
    left_a = asks[0][1] if asks else 0.0
    left_b = bids[0][1] if bids else 0.0
    while i < len(asks) and j < len(bids):
        ask, bid = asks[i][0], bids[j][0]
        take = min(left_a, left_b)
        need = min_profit_bps
        if skew and limits is not None:
            reach = min(size + take, first_cut(ask, limits))
            need = required_edge_bps(
                min_profit_bps, limits.skew_per_unit, limits.imb_buy, limits.imb_sell, reach
            )
        if bid * (1.0 - fee_sell) - ask * (1.0 + fee_buy) < need * 1e-4 * ask - _EPS:
            break
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


def floor_to_tick(price: float, tick: float, scale: float) -> float:
    """`MarketSpec.floor_price` without Decimal: the tick count times the tick as a quotient
    of whole numbers (ticks x tick x scale over scale), which is the double nearest the
    decimal price, as `round(..., decimals)` gives, in Python and numba alike."""
    if tick <= 0:
        return price
    return float(math.floor(price / tick + 1e-9)) * float(round(tick * scale)) / scale


def ceil_to_tick(price: float, tick: float, scale: float) -> float:
    """`MarketSpec.ceil_price`, the same way as `floor_to_tick`."""
    if tick <= 0:
        return price
    return float(math.ceil(price / tick - 1e-9)) * float(round(tick * scale)) / scale


def leg_limit_prices(
    buy_worst: float, sell_worst: float, limits: PairLimits
) -> tuple[float, float]:
    """The legs' IOC limit prices, as `hft_ray.markets.leg_limit_prices` sets them: the worst
    prices widened by the slippage, rounded outward to each market's tick."""
    slip = limits.slippage_bps * 1e-4
    return (
        ceil_to_tick(buy_worst * (1.0 + slip), limits.tick_buy, limits.tick_scale_buy),
        floor_to_tick(sell_worst * (1.0 - slip), limits.tick_sell, limits.tick_scale_sell),
    )


def first_cut(price: float, limits: PairLimits) -> float:
    """The caps of `size_cap` at one price, before limit prices and lots: the sizes that can
    still come out of a quote whose worst ask is at least `price`."""
    return min(
        limits.max_notional / price,
        limits.quote_balance_buy / (price * (1.0 + limits.fee_buy)),
        limits.base_balance_sell,
        limits.room_buy,
        limits.room_sell,
    )


def size_cap(buy_px: float, sell_px: float, limits: PairLimits) -> float:
    """The largest size the notional and inventory limits admit at these limit prices: each
    leg's notional at its limit price (the sell leg's is the larger on a crossing), the buy
    venue's quote balance including its fee, the sell venue's base balance, each leg's room
    under `max_position`."""
    return min(
        limits.max_notional / max(buy_px, sell_px),
        limits.quote_balance_buy / (buy_px * (1.0 + limits.fee_buy)),
        limits.base_balance_sell,
        limits.room_buy,
        limits.room_sell,
    )


def fit_size(
    asks: list[tuple[float, float]],
    bids: list[tuple[float, float]],
    size: float,
    limits: PairLimits,
) -> tuple[float, float, float, float, float]:
    """`size`, in both lots and both minimum amounts, cut until `size_cap` admits it at the
    limit prices of walking that very size, as risk will price it; with the walks' (worst
    ask, cost, worst bid, proceeds). Size 0: none.

    Limit prices move with the size, so each cut is walked again: every cut is strictly
    smaller and the prices change only where a walk crosses a level, so a few rounds at most.
    A cut past a level where the buy price steps up may stop below the largest size that
    would fit; what it returns always fits."""
    while True:
        size = floor_to_lots(size, limits.lot_buy, limits.lot_sell)
        if size <= _EPS or size < limits.min_amount_buy or size < limits.min_amount_sell:
            return 0.0, 0.0, 0.0, 0.0, 0.0
        buy_worst, cost = walk(asks, size)
        sell_worst, proceeds = walk(bids, size)
        cap = size_cap(*leg_limit_prices(buy_worst, sell_worst, limits), limits)
        if size <= cap:
            return size, buy_worst, cost, sell_worst, proceeds
        # Lot rounding forgives 1e-9 of a lot: a cap that far below a lot boundary (a room
        # of 0.1 - 0.09000000000001) rounds back up to this size; step a lot down instead.
        if floor_to_lots(cap, limits.lot_buy, limits.lot_sell) < size:
            size = cap
        else:
            size -= max(limits.lot_buy, limits.lot_sell)


def cross_venue_quote(
    asks: list[tuple[float, float]],
    bids: list[tuple[float, float]],
    limits: PairLimits,
    min_profit_bps: float,
) -> PairQuote | None:
    """The opportunity of buying at `asks` and selling at `bids`, or None if there is none."""
    size, worst_ask, _ = profitable_size(
        asks, bids, limits.fee_buy, limits.fee_sell, min_profit_bps, limits
    )
    if size <= _EPS:
        return None
    # A first cut at the worst ask (no walk), then priced at the legs' limit prices.
    size = min(size, first_cut(worst_ask, limits))
    size, buy_worst, cost, sell_worst, proceeds = fit_size(asks, bids, size, limits)
    if size <= 0:
        return None
    if cost < limits.min_notional_buy or proceeds < limits.min_notional_sell:
        return None
    profit = proceeds * (1.0 - limits.fee_sell) - cost * (1.0 + limits.fee_buy)
    edge_bps = profit / cost * 1e4
    # Checked only with a skew: without one, the walk's marginal rule is the whole rule.
    if limits.skew_per_unit != 0.0 and edge_bps < required_edge_bps(
        min_profit_bps, limits.skew_per_unit, limits.imb_buy, limits.imb_sell, size
    ):
        return None
    return PairQuote(
        size=size,
        buy_worst=buy_worst,
        sell_worst=sell_worst,
        buy_avg=cost / size,
        sell_avg=proceeds / size,
        profit_quote=profit,
        edge_bps=edge_bps,
    )


class BookRow(NamedTuple):
    """One BookUpdate row, the reference's way: levels as (price, qty) lists, best first."""

    symbol: int
    venue: int
    valid: bool
    ts_exchange_ns: int
    recv_mono_ns: int
    bids: list[tuple[float, float]]
    asks: list[tuple[float, float]]


class Found(NamedTuple):
    """A quote of one (symbol, buy venue, sell venue) and the books it was computed from."""

    symbol: int
    buy: int
    sell: int
    buy_ts_ns: int
    sell_ts_ns: int
    tick_mono_ns: int
    quote: PairQuote


class Now(NamedTuple):
    """When books are judged: the host's clocks, or (`recorded`) the recording's own time,
    which starts at `file_ns` and advances to the newest stamp of each row as it is read."""

    mono_ns: int
    wall_ns: int
    recorded: bool
    file_ns: int


def fresh(book: BookRow | None, max_age_ns: int, now: Now, file_now: int) -> bool:
    """Tradable: valid and young enough. Live, the age is the older of since receipt and since
    the venue stamped it (a feed catching up hands over books old though just received)."""
    if book is None or not book.valid:
        return False
    if now.recorded:
        return file_now - book.ts_exchange_ns <= max_age_ns
    age = max(now.mono_ns - book.recv_mono_ns, now.wall_ns - book.ts_exchange_ns)
    return age <= max_age_ns


def scan_rows(
    rows: list[BookRow],
    books: dict[tuple[int, int], BookRow],
    limits: dict[tuple[int, int, int], PairLimits],
    n_venues: int,
    min_profit_bps: float,
    max_age_ns: int,
    now: Now,
) -> tuple[list[Found], int]:
    """Every row in order: it becomes its (symbol, venue)'s book in `books`; if tradable, it
    is quoted against every other venue's current tradable book of its symbol, buy on the row's
    venue first, then sell on it. Returns the quotes in that order and how many rows were
    tradable."""
    out = []
    scanned = 0
    file_now = now.file_ns
    for row in rows:
        s, v = row.symbol, row.venue
        books[(s, v)] = row
        file_now = max(file_now, row.ts_exchange_ns)
        if not fresh(row, max_age_ns, now, file_now):
            continue
        scanned += 1
        for w in range(n_venues):
            if w == v or not fresh(books.get((s, w)), max_age_ns, now, file_now):
                continue
            for a, b in ((v, w), (w, v)):
                buy, sell = books[(s, a)], books[(s, b)]
                q = cross_venue_quote(buy.asks, sell.bids, limits[(s, a, b)], min_profit_bps)
                if q is not None:
                    tick = max(buy.recv_mono_ns, sell.recv_mono_ns)
                    out.append(Found(s, a, b, buy.ts_exchange_ns, sell.ts_exchange_ns, tick, q))
    return out, scanned
