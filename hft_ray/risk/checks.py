"""The checks every order passes, once, for both deciders: the risk actor's `RiskCore` and a
trading node's `RiskGate`. Each decider holds its own view of the room left under the limits
(the core: the whole book of positions, reservations and leases; the gate: what its lease lets
it spend) and answers the questions of `Room`; `decide` asks them in one fixed order, so an
opportunity meets the same rules, with the same reasons, wherever it is decided.

In order: the decider is open (store and restore, or a live lease); the trading state; how old
the opportunity and its newest book are; minimum edge, raised for an arbitrage that moves
inventory away from target and lowered for one that moves it back, by the detector's rule
(`hft_ray.detect.reference.required_edge_bps`, on the positions booked); trades in flight on
the symbol; then the size is clipped to the order notional limit, an open reversion position (a
close), the inventory each venue holds net of reservations, the position limit per asset and
venue, and the gross exposure limit (in REDUCING, instead, to what moves positions towards
flat); last, the order rate per venue and overall. A clip that leaves less than a tradable size
is a rejection naming the limit that bound. The detector sizes opportunities under the same
caps at the same limit prices (`hft_ray.detect.reference.fit_size`), so a clip here is a limit
that really binds: one the detector cannot see (reservations, leases, positions) or that moved.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import NamedTuple, Protocol

from hft_ray.config import RiskConfig
from hft_ray.detect.reference import floor_to_lots, required_edge_bps
from hft_ray.markets import Markets, leg_limit_prices
from hft_ray.risk.state import TradingState
from hft_ray.types import ARB, REVERT_CLOSE, REVERT_OPEN, Opportunity, Universe


class Room(Protocol):
    """What a decider knows of the room left under the limits."""

    def closed(self) -> str:
        """Why nothing may be approved now ('' when open)."""
        ...

    def trading_state(self) -> TradingState: ...

    def busy(self, symbol: int) -> int:
        """Trades in flight on the symbol."""
        ...

    def open_reversion(self, opp: Opportunity) -> float:
        """How much of an open reversion position a close may undo."""
        ...

    def available(self, venue: str, asset: str) -> float:
        """What the venue holds of the asset that no trade has reserved."""
        ...

    def position_room(self, venue: str, base: str, direction: float) -> float | None:
        """How far the base position may still move in `direction` (+1 buy, -1 sell) under
        `max_position`; None when the asset has no such limit."""
        ...

    def flat_room(self, venue: str, base: str, direction: float) -> float:
        """How far the position may move in `direction` before it passes flat (REDUCING)."""
        ...

    def gross_cap(self, buy: str, sell: str, base: str, size: float) -> float | None:
        """The largest size up to `size` the gross exposure limit admits; None: no limit."""
        ...

    def mark(self, base: str, price: float) -> None:
        """The last price seen for a base asset (exposure is valued at it)."""
        ...

    def imbalance(self, venue: str, base: str) -> float:
        """The venue's booked base position minus its `risk.inventory_target`, base units:
        what the detector was told (`set_positions`), so both price inventory alike."""
        ...

    def take_orders(self, buy: str, sell: str) -> str:
        """Take one order token per leg from the rate limits; '' or why not."""
        ...


class Decision(NamedTuple):
    size: float  # 0: rejected
    reason: str  # the rejection, or the limit a clip met, or ''
    buy_px: float  # the legs' limit prices (0 when rejected before pricing)
    sell_px: float
    clip: str = ""  # an approval's binding cap, when one was below the size asked ('' if not)


def decide(
    opp: Opportunity,
    room: Room,
    *,
    limits: RiskConfig,
    universe: Universe,
    markets: Markets,
    now_mono_ns: int,
    max_age_ns: int,
    max_book_age_ns: int,
    slippage_bps: float,
    statarb_notional: float,
    skew_per_unit: Mapping[str, float],
) -> Decision:
    """Approve, clip or reject `opp` against `room`; a size above 0 is approved.
    `skew_per_unit`: per base asset, `HftConfig.skew_per_unit` (bps per base unit moved)."""
    reason = room.closed()
    if reason:
        return Decision(0.0, reason, 0.0, 0.0)
    state = room.trading_state()
    closing = opp.kind == REVERT_CLOSE
    if state == TradingState.HALTED or (state == TradingState.REDUCING and opp.kind == REVERT_OPEN):
        return Decision(0.0, f"state_{state.value.lower()}", 0.0, 0.0)
    if now_mono_ns - opp.detect_mono_ns > max_age_ns:
        return Decision(0.0, "stale_opportunity", 0.0, 0.0)
    if now_mono_ns - opp.tick_mono_ns > max_book_age_ns:
        return Decision(0.0, "stale_book", 0.0, 0.0)
    symbol = universe.symbols[opp.symbol]
    buy, sell = universe.venues[opp.buy_venue], universe.venues[opp.sell_venue]
    base, quote = symbol.split("/")
    # A crossed book must pay after fees, and pay for the inventory it moves away from target;
    # a reversion trade is a bet on the spread instead.
    if opp.kind == ARB:
        need = required_edge_bps(
            limits.min_edge_bps,
            skew_per_unit.get(base, 0.0),
            room.imbalance(buy, base),
            room.imbalance(sell, base),
            opp.size,
        )
        if opp.edge_bps < need:
            why = "inventory_skew" if opp.edge_bps >= limits.min_edge_bps else "edge_below_min"
            return Decision(0.0, why, 0.0, 0.0)
    open_size = room.open_reversion(opp) if closing else float("inf")
    if open_size <= 0:
        return Decision(0.0, "no_open_position", 0.0, 0.0)
    if room.busy(opp.symbol) >= limits.max_in_flight_per_symbol:
        return Decision(0.0, "in_flight", 0.0, 0.0)
    buy_spec, sell_spec = markets.spec(buy, symbol), markets.spec(sell, symbol)
    room.mark(base, opp.buy_avg)
    buy_px, sell_px = leg_limit_prices(
        buy_spec, sell_spec, opp.buy_worst, opp.sell_worst, slippage_bps
    )
    notional = limits.max_order_notional
    if opp.kind != ARB:
        notional = min(notional, statarb_notional)
    caps = {
        # Each leg's notional at its limit price; the sell leg's is the larger on a crossing.
        "max_order_notional": notional / max(buy_px, sell_px),
        "open_position": open_size,
        "insufficient_inventory": min(
            room.available(buy, quote) / (buy_px * (1.0 + buy_spec.taker_fee)),
            room.available(sell, base),
        ),
    }
    long_room = room.position_room(buy, base, +1.0)
    short_room = room.position_room(sell, base, -1.0)
    if long_room is not None and short_room is not None:
        caps["max_position"] = min(long_room, short_room)
    if state == TradingState.REDUCING and not closing:
        # Only towards flat: buy where short, sell where long, never past zero.
        caps["state_reducing"] = max(
            0.0, min(room.flat_room(buy, base, +1.0), room.flat_room(sell, base, -1.0))
        )
    elif not closing:
        gross = room.gross_cap(buy, sell, base, opp.size)
        if gross is not None:
            caps["max_gross_exposure"] = gross
    binding, cap = min(caps.items(), key=lambda kv: kv[1])
    size = floor_to_lots(min(opp.size, cap), buy_spec.lot, sell_spec.lot)
    too_small = (
        size <= 0
        or size < max(buy_spec.min_amount, sell_spec.min_amount)
        or size * opp.buy_avg < buy_spec.min_notional
        or size * opp.sell_avg < sell_spec.min_notional
    )
    if too_small:
        return Decision(0.0, binding if cap < opp.size else "below_min_size", buy_px, sell_px)
    reason = room.take_orders(buy, sell)
    if reason:
        return Decision(0.0, reason, buy_px, sell_px)
    # Only a cap below the size asked clips; rounding a size off the lots is no limit's doing.
    clip = binding if cap < opp.size else ""
    return Decision(size, clip, buy_px, sell_px, clip)
