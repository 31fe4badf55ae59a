"""Paper trading on live books: a `kind: ccxt` venue with `mode: paper`.

Books are the venue's own, from ccxt.pro through `CcxtBookStream` exactly as a live feed gets
them; orders never leave this process. Each IOC limit order is held for the configured
latency (the time it would take to reach the venue), then matched against the book the stream
holds at that moment, with the venue's real taker fee and precision (the run's `Markets`,
resolved from ccxt's `load_markets`), against an account kept here and starting from the
venue's configured `balances`. No private endpoint is ever called and no API key is read: the
exchange object is built without credentials, and the config refuses them in paper mode.

What a venue would do, the paper venue does: an order off the market's tick or lot, below its
minimum size, or beyond the account's funds is refused (`insufficient_funds` as ccxt words
it); liquidity an order took is gone from the book until the stream's next book of that
symbol. Fees are charged in quote, as the simulated venue charges them (a buy must afford
`amount * price * (1 + taker_fee)`), so the run's ledger and the paper account agree.

A book the stream has invalidated (gap, stall, disconnect) cannot be traded on: an order that
arrives then is refused as `no_book`, where a real venue would have filled it at a price
nobody here can know.

`PaperVenueActor` holds one venue's paper account for a whole run, as `SimVenueActor` holds a
simulated one: every executor and trading node sends it orders through `SimVenueClient`, so
the account is one, whatever the topology, and the report reads its balances.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Mapping

import numpy as np
import ray

from hft_ray.clock import Clock, LiveClock
from hft_ray.config import CcxtVenueConfig, HftConfig
from hft_ray.markets import Markets
from hft_ray.types import BookEvent, BookSnapshot, OrderResult, OrderStatus, Side
from hft_ray.venues.base import (
    ORDER_NOT_FOUND,
    BookSource,
    MarketSpec,
    order_not_found,
    order_refusal,
    step_decimals,
)

#: The reason of an order that arrived while its book was invalid (or not yet received).
NO_BOOK = "no_book"
#: Levels of each side the paper venue keeps to match against (at least the feed's depth).
PAPER_DEPTH = 20
_POLL_S = 0.5


class PaperVenue:
    """The `OrderVenue` of one venue in paper mode: books from `source`, orders matched here.

    `sleep` holds an order for its latency (a test may hold it until it says so).
    """

    def __init__(
        self,
        name: str,
        source: BookSource,
        specs: Mapping[str, MarketSpec],
        balances: Mapping[str, float],
        latency_s: float,
        clock: Clock,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.name = name
        self._source = source
        self._specs = dict(specs)
        self.balances: dict[str, float] = dict(balances)
        self._latency_s = latency_s
        self._clock = clock
        self._sleep = sleep
        self._books: dict[str, BookSnapshot] = {}
        # per symbol: the book liquidity was taken from and what was taken, per (side, price)
        self._taken: dict[str, tuple[BookSnapshot, dict[tuple[str, float], float]]] = {}
        self._orders: dict[str, OrderResult] = {}
        self._pending: dict[str, asyncio.Future[OrderResult]] = {}
        self._pump: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Start the venue's book stream and keep the newest book of each symbol."""
        if self._pump is None:
            await self._source.start()
            self._pump = asyncio.get_running_loop().create_task(self._follow())

    async def close(self) -> None:
        if self._pump is not None:
            self._pump.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._pump
            self._pump = None
        await self._source.close()

    async def _follow(self) -> None:
        while True:
            self.apply(await self._source.next(_POLL_S))

    def apply(self, events: list[BookEvent]) -> None:
        """Take the stream's events: a book replaces the last, an invalidation removes it."""
        for event in events:
            if isinstance(event, BookSnapshot):
                self._books[event.symbol] = event
            else:
                self._books.pop(event.symbol, None)

    def book(self, symbol: str) -> BookSnapshot | None:
        """The book an order on `symbol` arriving now is matched against."""
        return self._books.get(symbol)

    async def create_order(
        self, client_id: str, symbol: str, side: Side, amount: float, price: float
    ) -> OrderResult:
        """Hold the order for the venue's latency, then match it as an IOC limit order."""
        sent = self._clock.monotonic_ns()
        if client_id in self._orders or client_id in self._pending:
            return self._refused(client_id, symbol, side, amount, "duplicate_client_id")
        done: asyncio.Future[OrderResult] = asyncio.get_running_loop().create_future()
        self._pending[client_id] = done
        try:
            await self._sleep(self._latency_s)
            reason = self._validate(symbol, side, amount, price)
            if reason:
                result = self._refused(client_id, symbol, side, amount, reason)
            else:
                result = self._match(client_id, symbol, side, amount, price)
            result = result._replace(sent_mono_ns=sent)
            self._orders[client_id] = result
            done.set_result(result)
            return result
        finally:
            del self._pending[client_id]
            if not done.done():  # cancelled while in flight: it never arrived
                done.set_result(self._refused(client_id, symbol, side, amount, "cancelled"))

    async def fetch_order(self, client_id: str, symbol: str) -> OrderResult:
        """An order's final state; one still on its way is waited for, as a venue that has
        received it would answer once it is matched."""
        pending = self._pending.get(client_id)
        if pending is not None:
            return await asyncio.shield(pending)
        found = self._orders.get(client_id)
        if found is not None:
            return found
        return order_not_found(client_id, self.name, symbol, self._clock.time_ns())

    async def cancel_order(self, client_id: str, symbol: str) -> OrderResult:
        """An IOC order never rests here: nothing to cancel, its final state."""
        return await self.fetch_order(client_id, symbol)

    def _validate(self, symbol: str, side: Side, amount: float, price: float) -> str:
        spec = self._specs.get(symbol)
        if spec is None:
            return "unknown_symbol"
        refusal = order_refusal(spec, self.balances, side, amount, price)
        if refusal:
            return refusal
        return "" if symbol in self._books else NO_BOOK

    def _match(
        self, client_id: str, symbol: str, side: Side, amount: float, price: float
    ) -> OrderResult:
        spec = self._specs[symbol]
        book = self._books[symbol]
        taken_book, taken = self._taken.get(symbol, (None, {}))
        if taken_book is not book:  # a new book: nothing of it taken yet
            taken = {}
            self._taken[symbol] = (book, taken)
        levels: np.ndarray = book.asks if side == "buy" else book.bids
        # Amounts stay on the lot's decimal grid: a float sum or difference of lot multiples
        # can fall a hair below one, which flooring would turn into a lot short (a partial).
        dec = step_decimals(spec.lot)
        filled = cost = 0.0
        for px, qty in levels.tolist():
            crosses = px <= price if side == "buy" else px >= price
            if not crosses or filled >= amount:
                break
            left = qty - taken.get((side, px), 0.0)
            take = spec.floor_amount(min(left, round(amount - filled, dec)))
            if take <= 0:
                continue
            taken[(side, px)] = taken.get((side, px), 0.0) + take
            filled = round(filled + take, dec)
            cost += take * px
        filled = spec.floor_amount(filled) if filled < amount else amount
        fee = cost * spec.taker_fee
        sign = 1.0 if side == "buy" else -1.0
        bal = self.balances
        bal[spec.base] = bal.get(spec.base, 0.0) + sign * filled
        bal[spec.quote] = bal.get(spec.quote, 0.0) - sign * cost - fee
        status: OrderStatus = (
            "filled" if filled >= amount else ("partial" if filled > 0 else "expired")
        )
        return OrderResult(
            client_id,
            self.name,
            symbol,
            side,
            status,
            amount,
            filled,
            cost / filled if filled > 0 else 0.0,
            fee,
            "" if status == "filled" else "ioc_remainder_expired",
            self._clock.time_ns(),
        )

    def _refused(
        self, client_id: str, symbol: str, side: Side, amount: float, reason: str
    ) -> OrderResult:
        return OrderResult(
            client_id,
            self.name,
            symbol,
            side,
            "rejected",
            amount,
            0.0,
            0.0,
            0.0,
            reason,
            self._clock.time_ns(),
        )


def paper_venue_for(config: HftConfig, markets: Markets, venue: str) -> PaperVenue:
    """The paper venue of `venue` in `config`: its own public book stream (no credentials)."""
    from hft_ray.venues.ccxt_live import CcxtBookStream

    cfg = config.venues[venue]
    if venue not in config.paper_venues or not isinstance(cfg, CcxtVenueConfig):
        raise ValueError(f"venues.{venue}: not a ccxt venue in paper mode")
    clock = LiveClock()
    depth = max(config.feed.depth, PAPER_DEPTH)
    stream = CcxtBookStream(venue, cfg, list(config.symbols), depth, clock)
    specs = {s: markets.spec(venue, s) for s in config.symbols}
    return PaperVenue(
        venue, stream, specs, dict(cfg.balances), cfg.paper_latency_ms / 1000.0, clock
    )


@ray.remote(num_cpus=0, max_restarts=0)
class PaperVenueActor:
    """One paper venue's account for the whole run; executors and trading nodes reach it
    through `SimVenueClient`, the report through `balances`."""

    def __init__(self, config: HftConfig, markets: Markets, venue: str) -> None:
        self._venue = paper_venue_for(config, markets, venue)

    async def start(self) -> str:
        await self._venue.start()
        return self._venue.name

    async def stop(self) -> None:
        await self._venue.close()

    async def create_order(
        self, client_id: str, symbol: str, side: Side, amount: float, price: float
    ) -> OrderResult:
        return await self._venue.create_order(client_id, symbol, side, amount, price)

    async def fetch_order(self, client_id: str) -> OrderResult | None:
        found = await self._venue.fetch_order(client_id, "")
        return None if found.reason == ORDER_NOT_FOUND else found

    async def balances(self) -> dict[str, float]:
        return dict(self._venue.balances)
