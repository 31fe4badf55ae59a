"""What every venue kind provides: market specs, and an async order interface for executors."""

from __future__ import annotations

import dataclasses
import functools
import math
from dataclasses import dataclass
from decimal import Decimal
from typing import Protocol

from hft_ray.types import BookEvent, OrderResult, Side


class VenueUnavailable(Exception):
    """A live venue could not be reached at start (markets not loaded): the message names the
    venue and the error's class, never a URL or a body."""


@functools.lru_cache(maxsize=4096)
def step_decimals(step: float) -> int:
    """Decimal places of a step size: 0.001 -> 3, 0.25 -> 2, 1e-05 -> 5, 10 -> 0 (kept per
    step: every order's price and size is rounded with it)."""
    exponent = Decimal(repr(step)).normalize().as_tuple().exponent
    return max(0, -int(exponent))


@dataclass(frozen=True)
class MarketSpec:
    """Fees, precision and limits of one market on one venue (ccxt's `markets[symbol]`)."""

    symbol: str
    base: str
    quote: str
    tick: float
    lot: float
    min_amount: float
    min_notional: float
    taker_fee: float

    def replace(self, **fields: float) -> MarketSpec:
        return dataclasses.replace(self, **fields)  # type: ignore[arg-type]

    def floor_amount(self, amount: float) -> float:
        """Round an amount down to a whole number of lots."""
        lots = math.floor(amount / self.lot + 1e-9)
        return round(lots * self.lot, step_decimals(self.lot))

    def floor_price(self, price: float) -> float:
        return round(math.floor(price / self.tick + 1e-9) * self.tick, step_decimals(self.tick))

    def ceil_price(self, price: float) -> float:
        return round(math.ceil(price / self.tick - 1e-9) * self.tick, step_decimals(self.tick))

    def is_lot_multiple(self, amount: float) -> bool:
        return abs(amount / self.lot - round(amount / self.lot)) < 1e-6

    def is_tick_multiple(self, price: float) -> bool:
        return abs(price / self.tick - round(price / self.tick)) < 1e-6


class BookSource(Protocol):
    """Where a feed gets one venue's books: a simulated venue, a live stream, a replay."""

    async def start(self) -> None: ...

    async def next(self, timeout_s: float) -> list[BookEvent]:
        """Every book event since the last call, waiting up to `timeout_s` for one."""
        ...

    async def close(self) -> None: ...


#: The reason a venue gives for a client order id it has no order under.
ORDER_NOT_FOUND = "order_not_found"


def order_not_found(client_id: str, venue: str, symbol: str, ts_ns: int) -> OrderResult:
    """A venue's answer for a client order id it never received."""
    return OrderResult(
        client_id, venue, symbol, "buy", "unknown", 0.0, 0.0, 0.0, 0.0, ORDER_NOT_FOUND, ts_ns
    )


def order_refusal(
    spec: MarketSpec, balances: dict[str, float], side: Side, amount: float, price: float
) -> str:
    """Why a venue would refuse this IOC limit order before matching it ('' if it would not):
    off its lot or tick, below its minimum size, or beyond the account's funds (a buy paying
    its taker fee in quote)."""
    if not (amount > 0 and math.isfinite(amount)) or not spec.is_lot_multiple(amount):
        return "invalid_amount"
    if not (price > 0 and math.isfinite(price)) or not spec.is_tick_multiple(price):
        return "invalid_price"
    if amount < spec.min_amount or amount * price < spec.min_notional:
        return "below_min_size"
    if side == "buy":
        if balances.get(spec.quote, 0.0) < amount * price * (1.0 + spec.taker_fee):
            return "insufficient_funds"
    elif balances.get(spec.base, 0.0) < amount:
        return "insufficient_funds"
    return ""


class OrderVenue(Protocol):
    """How an executor talks to a venue: IOC limit orders with client order ids.

    `create_order` never raises for a venue-side problem: a rejection, a timeout or a network
    error comes back as an `OrderResult` whose `status` and `reason` say what happened.
    """

    name: str

    async def create_order(
        self, client_id: str, symbol: str, side: Side, amount: float, price: float
    ) -> OrderResult: ...

    async def fetch_order(self, client_id: str, symbol: str) -> OrderResult: ...

    async def cancel_order(self, client_id: str, symbol: str) -> OrderResult:
        """Cancel what is left of an order and return its final state, as `fetch_order`
        reports it (an IOC order that never rested is simply looked up)."""
        ...
