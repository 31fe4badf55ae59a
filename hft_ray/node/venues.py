"""The venues of a trading node, in its own process: books in, orders out, no Ray hop.

A simulated venue's books are computed on the node's own loop at its phase of the tick, while
its account (balances, orders) stays with its venue actor, as a real exchange's stays outside
the trading process and survives its crash; a live venue is a ccxt.pro stream and ccxt's order
API in this process; a replayed venue is the node's in-process `ReplayMarket`. Each yields
checked BookUpdate rows to the node and takes its orders.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import numpy as np

from hft_ray.config import CcxtVenueConfig, HftConfig
from hft_ray.feed.core import FeedCore
from hft_ray.feed.source import NO_OUTAGES, CheckedRows, EventSource
from hft_ray.types import BookEvent, Universe
from hft_ray.venues.base import OrderVenue
from hft_ray.venues.replay import ReplayMarket
from hft_ray.venues.sim import SimExchange, TickGrid, sim_exchange_from_config

OnRows = Callable[[np.ndarray], Awaitable[None]]
_log = logging.getLogger(__name__)

_POLL_S = 0.05  # longest wait of a stream poll


class NodeVenue(Protocol):
    name: str
    core: FeedCore
    orders: OrderVenue

    async def run(self, on_rows: OnRows) -> None:
        """Hand every checked batch of rows to `on_rows` until cancelled."""
        ...

    @property
    def conflated(self) -> int: ...

    @property
    def resyncs(self) -> int: ...

    @property
    def outages(self) -> dict[str, float]: ...

    def balances(self) -> dict[str, float] | None:
        """The venue's own balances, where it has some to tell (simulated, replayed)."""
        ...

    async def start(self) -> None: ...

    async def close(self) -> None: ...


class SimNodeVenue:
    """A simulated venue's books computed on the node's loop, tick by tick on the run's grid
    (the venue actor that holds the account computes the same books from the same seed and
    grid, and matches the node's orders against them)."""

    def __init__(
        self, exchange: SimExchange, core: FeedCore, grid: TickGrid, orders: OrderVenue
    ) -> None:
        self.name = exchange.name
        self.core = core
        self.exchange = exchange
        self.orders = orders
        self._grid = grid
        self._symbols = len(exchange.symbols)

    async def start(self) -> None:
        return None

    async def run(self, on_rows: OnRows) -> None:
        grid, ex = self._grid, self.exchange
        grid.resume(time.time_ns())
        while True:
            await asyncio.sleep(grid.wait_s(time.time_ns()))
            wall = time.time_ns()
            ex.advance_to(grid.next_seq(wall))
            rows = ex.rows(wall)
            rows = self.core.check_rows(rows, time.time_ns(), time.monotonic_ns(), trusted=True)
            await on_rows(rows)

    @property
    def conflated(self) -> int:
        """Books of ticks the loop was too late for: a venue moving on while we look away."""
        return self._grid.skipped * self._symbols

    @property
    def resyncs(self) -> int:
        return 0

    @property
    def outages(self) -> dict[str, float]:
        return dict(NO_OUTAGES)

    def balances(self) -> dict[str, float] | None:
        return None  # the venue actor holds the account

    async def close(self) -> None:
        return None


class StreamNodeVenue:
    """A venue whose books arrive as events (a live ccxt.pro stream, a replay)."""

    def __init__(
        self,
        name: str,
        source: EventSource,
        core: FeedCore,
        orders: OrderVenue,
        balances: Callable[[], dict[str, float]] | None = None,
        on_start: Callable[[], Awaitable[None]] | None = None,
        on_close: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self.name = name
        self.core = core
        self.orders = orders
        self._feed = CheckedRows(source, core)
        self._balances = balances
        self._on_start = on_start
        self._on_close = on_close

    async def start(self) -> None:
        if self._on_start is not None:
            try:
                await self._on_start()  # markets loaded before the first order, not during it
            except Exception as err:  # its orders are then refused, naming why
                _log.warning("%s: orders cannot start (%s)", self.name, type(err).__name__)
        await self._feed.start()

    async def run(self, on_rows: OnRows) -> None:
        while True:
            rows = await self._feed.next(_POLL_S)
            if len(rows):
                await on_rows(rows)

    @property
    def conflated(self) -> int:
        return self._feed.conflated

    @property
    def resyncs(self) -> int:
        return self._feed.resyncs

    @property
    def outages(self) -> dict[str, float]:
        return self._feed.outages

    def balances(self) -> dict[str, float] | None:
        return None if self._balances is None else self._balances()

    async def close(self) -> None:
        await self._feed.close()
        if self._on_close is not None:
            await self._on_close()


class _ReplayedBooks:
    """One venue of an in-process `ReplayMarket`, read as an event source."""

    def __init__(self, market: ReplayMarket, venue: str) -> None:
        self._market = market
        self._venue = venue
        self._after = 0

    async def start(self) -> None:
        return None

    async def next(self, timeout_s: float) -> list[BookEvent]:
        self._after, books = await self._market.poll(self._venue, self._after, timeout_s)
        return list(books)

    async def close(self) -> None:
        return None


def open_node_venues(
    config: HftConfig,
    universe: Universe,
    symbols: list[str],
    epoch_ns: int,
    sim_orders: Callable[[str], OrderVenue],
) -> tuple[list[NodeVenue], ReplayMarket | None]:
    """Every venue of the run, for a node that trades `symbols`; and the replay market that
    stands in for them all when the run replays files. `sim_orders` gives a simulated
    or paper venue's order interface (its venue actor); `epoch_ns` is the run's tick grid."""
    late_ack_s = config.sim.order_timeout_ack_ms / 1000.0
    venues: list[NodeVenue] = []
    replay = config.replay
    if replay is not None:
        exchanges = {v: sim_exchange_from_config(config, v, only=symbols) for v in config.venues}
        market = ReplayMarket(
            exchanges,
            late_ack_s,
            list(replay.files),
            replay.speed,
            replay.fast,
            run_symbols=config.symbols,
        )
        for v in config.venues:
            core = FeedCore(universe, v, config.feed, 1)
            venues.append(
                StreamNodeVenue(
                    v, _ReplayedBooks(market, v), core, market.orders[v], _bound(market, v)
                )
            )
        return venues, market
    for v, cfg in config.venues.items():
        core = FeedCore(universe, v, config.feed, 1)
        if cfg.kind == "sim":
            exchange = sim_exchange_from_config(config, v, only=symbols)
            grid = TickGrid(config.sim.tick_ms / 1000.0, exchange.phase_s, epoch_ns)
            venues.append(SimNodeVenue(exchange, core, grid, sim_orders(v)))
            continue
        # Only a live venue needs ccxt: imported here, so a simulated run never loads it.
        from hft_ray.clock import LiveClock
        from hft_ray.venues.ccxt_live import CcxtBookStream
        from hft_ray.venues.ccxt_orders import order_venue_for

        stream = CcxtBookStream(v, cfg, symbols, config.feed.depth, LiveClock(), store=config.store)
        if isinstance(cfg, CcxtVenueConfig) and cfg.mode == "paper":  # its actor: the account
            venues.append(StreamNodeVenue(v, stream, core, sim_orders(v)))
            continue
        orders = order_venue_for(config, v)
        venues.append(
            StreamNodeVenue(v, stream, core, orders, on_start=orders.start, on_close=orders.close)
        )
    return venues, None


def _bound(market: ReplayMarket, venue: str) -> Callable[[], dict[str, float]]:
    return lambda: market.balances(venue)


def venue_stats(
    venue: NodeVenue, last_book_mono: int | None, running: bool, error: str
) -> dict[str, Any]:
    """A node venue's feed figures, shaped as a feed actor's `stats()`."""
    age = None if last_book_mono is None else (time.monotonic_ns() - last_book_mono) / 1e6
    return {
        "updates": venue.core.updates,
        "invalid": dict(venue.core.invalid),
        "conflated": venue.conflated,
        "resyncs": venue.resyncs,
        "outages": venue.outages,
        "queue_depth": 0,
        "backpressure_waits": 0,
        "running": running,
        "error": error,
        "last_book_age_ms": age,
    }
