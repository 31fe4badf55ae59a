"""Simulated venues: a real exchange's fees and precision over a synthetic, seeded market.

Every symbol follows one common log-price random walk. Each venue sees it late (`lag_ms`), adds
its own mean-reverting noise, and now and then a venue-specific jump that decays with a
half-life: short-lived dislocations large enough to beat both taker fees. All randomness comes
from generators seeded by (seed, symbol, purpose, venue), drawn the same way every tick, so a
venue's book sequence depends only on the seed and the tick count; the fate of an order
(rejected, timed out, its latency) depends only on the seed and its client order id.

`SimExchange` is the plain venue: books, balances, an IOC matching engine. `SimVenueActor`
runs one on a timer and answers feeds (long-poll) and executors (orders) like a remote venue.
"""

from __future__ import annotations

import asyncio
import math
import random
import time
from collections import deque
from dataclasses import dataclass
from typing import Any

import numpy as np
import ray

from hft_ray.config import HftConfig, SimMarketConfig, SimVenueConfig
from hft_ray.types import BookEvent, BookSnapshot, OrderResult, OrderStatus, Side
from hft_ray.venues.base import ORDER_NOT_FOUND, MarketSpec, step_decimals

_NOISE_PERSISTENCE = 0.9  # AR(1) coefficient of a venue's own noise, per tick
_SIZE_GROWTH = 0.15  # resting size grows this much per level away from the touch
_SIZE_DISPERSION = 0.4  # log-normal sigma of resting sizes


@dataclass
class _SymbolState:
    spec: MarketSpec
    walk_rng: np.random.Generator  # the common walk: identical in every venue
    event_rng: np.random.Generator  # the common dislocation events: identical in every venue
    noise_rng: np.random.Generator  # this venue's own noise and sizes
    log_prices: deque[float]  # recent common log prices, newest last, lag + 1 long
    noise_bps: float = 0.0
    offset_bps: float = 0.0
    bids: np.ndarray | None = None  # (depth, 2) price, qty, best first
    asks: np.ndarray | None = None


class SimExchange:
    """One simulated venue: its books, balances and matching engine. No I/O, no clock."""

    def __init__(
        self,
        name: str,
        venue_index: int,
        venue_count: int,
        specs: dict[str, MarketSpec],
        venue: SimVenueConfig,
        market: SimMarketConfig,
        seed: int,
    ) -> None:
        self.name = name
        self._index = venue_index
        self._venue_count = venue_count
        self._cfg = venue
        self._market = market
        self._seed = seed
        self.balances: dict[str, float] = dict(venue.balances)
        for spec in specs.values():
            self.balances.setdefault(spec.base, 0.0)
            self.balances.setdefault(spec.quote, 0.0)
        tick_s = market.tick_ms / 1000.0
        self._sigma_tick = market.volatility_bps * 1e-4 * math.sqrt(tick_s)
        self._event_p = market.dislocations_per_min / 60.0 * tick_s
        self._decay = 0.5 ** (market.tick_ms / market.dislocation_half_life_ms)
        lag_ticks = round(venue.lag_ms / market.tick_ms)
        self._symbols: dict[str, _SymbolState] = {}
        for sym_index, (symbol, spec) in enumerate(sorted(specs.items())):
            log_p0 = math.log(market.initial_prices[symbol])
            self._symbols[symbol] = _SymbolState(
                spec=spec,
                walk_rng=np.random.default_rng([seed, sym_index, 0]),
                event_rng=np.random.default_rng([seed, sym_index, 1]),
                noise_rng=np.random.default_rng([seed, sym_index, 2, venue_index]),
                log_prices=deque([log_p0] * (lag_ticks + 1), maxlen=lag_ticks + 1),
            )
        self.seq = 0
        self._orders: dict[str, OrderResult] = {}

    # -- market -------------------------------------------------------------------------------

    def step(self, ts_ns: int) -> list[BookSnapshot]:
        """Advance one tick and return every symbol's new top-N book."""
        self.seq += 1
        return [self._step_symbol(symbol, st, ts_ns) for symbol, st in self._symbols.items()]

    def _step_symbol(self, symbol: str, st: _SymbolState, ts_ns: int) -> BookSnapshot:
        st.log_prices.append(st.log_prices[-1] + self._sigma_tick * st.walk_rng.standard_normal())
        u, target, size, sign = st.event_rng.random(4)
        st.offset_bps *= self._decay
        if u < self._event_p and int(target * self._venue_count) == self._index:
            lo, hi = self._market.dislocation_bps
            st.offset_bps += (lo + (hi - lo) * size) * (1.0 if sign < 0.5 else -1.0)
        phi = _NOISE_PERSISTENCE
        st.noise_bps = phi * st.noise_bps + math.sqrt(1 - phi * phi) * self._cfg.noise_bps * float(
            st.noise_rng.standard_normal()
        )
        mid = math.exp(st.log_prices[0]) * (1.0 + (st.noise_bps + st.offset_bps) * 1e-4)
        st.bids, st.asks = self._make_book(st, mid)
        return BookSnapshot(symbol, self.seq, ts_ns, st.bids.copy(), st.asks.copy())

    def _make_book(self, st: _SymbolState, mid: float) -> tuple[np.ndarray, np.ndarray]:
        spec, depth = st.spec, self._market.book_depth
        half = mid * self._cfg.spread_bps * 0.5e-4
        best_bid = spec.floor_price(mid - half)
        best_ask = max(spec.ceil_price(mid + half), spec.floor_price(best_bid + spec.tick * 1.5))
        step = max(spec.tick, spec.floor_price(mid * self._cfg.level_spacing_bps * 1e-4))
        offsets = np.arange(depth) * step
        decimals = step_decimals(spec.tick)
        bid_px = np.round(best_bid - offsets, decimals)
        ask_px = np.round(best_ask + offsets, decimals)
        scale = self._market.level_notional / mid * (1.0 + _SIZE_GROWTH * np.arange(depth))
        sizes = scale * st.noise_rng.lognormal(0.0, _SIZE_DISPERSION, size=(2, depth))
        sizes = np.maximum(np.floor(sizes / spec.lot) * spec.lot, spec.lot)
        keep = bid_px > 0
        return (
            np.column_stack([bid_px[keep], sizes[0][keep]]),
            np.column_stack([ask_px, sizes[1]]),
        )

    def install(self, book: BookSnapshot) -> None:
        """Make `book` the venue's current book of its symbol (a replayed market)."""
        st = self._symbols[book.symbol]
        st.bids, st.asks = book.bids.copy(), book.asks.copy()
        self.seq += 1

    def book(self, symbol: str) -> tuple[np.ndarray, np.ndarray]:
        """The current (bids, asks) of `symbol`, best first; empty before the first step."""
        st = self._symbols[symbol]
        if st.bids is None or st.asks is None:
            empty = np.empty((0, 2))
            return empty, empty
        return st.bids, st.asks

    # -- orders -------------------------------------------------------------------------------

    def order_fate(self, client_id: str) -> tuple[str, float]:
        """Whether the venue accepts, rejects or loses the ack of this order, and its latency.

        Decided by the seed and the client order id alone, so a replayed run meets the same fate.
        """
        rng = random.Random(f"{self._seed}/{self.name}/{client_id}")
        u = rng.random()
        latency_s = self._cfg.ack_latency_ms * (0.5 + rng.random()) / 1000.0
        for fate, rate in (
            ("reject", self._cfg.reject_rate),
            ("timeout", self._cfg.timeout_rate),
            ("rate_limit", self._cfg.rate_limit_rate),
        ):
            if u < rate:
                return fate, latency_s
            u -= rate
        return "accept", latency_s

    def submit(
        self,
        client_id: str,
        symbol: str,
        side: Side,
        amount: float,
        price: float,
        ts_ns: int,
        *,
        reject_reason: str = "",
    ) -> OrderResult:
        """Match an IOC limit order against the current book; the result is kept by client id.
        A `reject_reason` refuses it as the venue would (`venue_reject`, `rate_limited`)."""
        if client_id in self._orders:
            return self._result(client_id, symbol, side, amount, "duplicate_client_id", ts_ns)
        reason = reject_reason or self._validate(symbol, side, amount, price)
        if reason:
            result = self._result(client_id, symbol, side, amount, reason, ts_ns)
        else:
            result = self._match(client_id, symbol, side, amount, price, ts_ns)
        self._orders[client_id] = result
        return result

    def fetch(self, client_id: str) -> OrderResult | None:
        return self._orders.get(client_id)

    def _validate(self, symbol: str, side: Side, amount: float, price: float) -> str:
        st = self._symbols.get(symbol)
        if st is None:
            return "unknown_symbol"
        spec = st.spec
        if not (amount > 0 and math.isfinite(amount)) or not spec.is_lot_multiple(amount):
            return "invalid_amount"
        if not (price > 0 and math.isfinite(price)) or not spec.is_tick_multiple(price):
            return "invalid_price"
        if amount < spec.min_amount or amount * price < spec.min_notional:
            return "below_min_size"
        if side == "buy":
            need = amount * price * (1.0 + spec.taker_fee)
            if self.balances[spec.quote] < need:
                return "insufficient_funds"
        elif self.balances[spec.base] < amount:
            return "insufficient_funds"
        return ""

    def _match(
        self, client_id: str, symbol: str, side: Side, amount: float, price: float, ts_ns: int
    ) -> OrderResult:
        st = self._symbols[symbol]
        spec = st.spec
        levels = st.asks if side == "buy" else st.bids
        filled = cost = 0.0
        if levels is not None:
            for i in range(len(levels)):
                px, qty = levels[i]
                crosses = px <= price if side == "buy" else px >= price
                if not crosses or filled >= amount:
                    break
                take = spec.floor_amount(min(qty, amount - filled))
                if take <= 0:
                    break
                levels[i, 1] = qty - take  # resting size is consumed until the next tick
                filled += take
                cost += take * px
        filled = spec.floor_amount(filled) if filled < amount else amount
        fee = cost * spec.taker_fee
        if side == "buy":
            self.balances[spec.base] += filled
            self.balances[spec.quote] -= cost + fee
        else:
            self.balances[spec.base] -= filled
            self.balances[spec.quote] += cost - fee
        status: OrderStatus = (
            "filled" if filled >= amount else ("partial" if filled > 0 else "expired")
        )
        return OrderResult(
            client_id=client_id,
            venue=self.name,
            symbol=symbol,
            side=side,
            status=status,
            amount=amount,
            filled=filled,
            avg_price=cost / filled if filled > 0 else 0.0,
            fee_quote=fee,
            reason="" if status == "filled" else "ioc_remainder_expired",
            ts_ns=ts_ns,
        )

    def _result(
        self, client_id: str, symbol: str, side: Side, amount: float, reason: str, ts_ns: int
    ) -> OrderResult:
        return OrderResult(
            client_id, self.name, symbol, side, "rejected", amount, 0.0, 0.0, 0.0, reason, ts_ns
        )


def sim_exchange_from_config(config: HftConfig, venue: str) -> SimExchange:
    """The `SimExchange` a config describes for `venue`."""
    names = list(config.venues)
    cfg = config.venues[venue]
    if not isinstance(cfg, SimVenueConfig):
        raise TypeError(f"venue {venue} is not simulated")
    specs = {symbol: config.market_spec(venue, symbol) for symbol in config.symbols}
    return SimExchange(
        name=venue,
        venue_index=names.index(venue),
        venue_count=len(names),
        specs=specs,
        venue=cfg,
        market=config.sim,
        seed=config.run.seed,
    )


#: How a simulated venue words the refusals `order_fate` decides on (as the ccxt path does).
_REJECTIONS = {"reject": "venue_reject", "rate_limit": "rate_limited"}


class InProcessSimVenue:
    """The order interface of a `SimExchange` in this process, with its latency and faults.

    An accepted order is matched after half its latency and acknowledged after the other
    half; a rejected one is refused by the venue; a timed-out one is matched but its
    acknowledgement arrives `late_ack_s` later, past any sane client timeout.
    """

    def __init__(self, exchange: SimExchange, late_ack_s: float) -> None:
        self.name = exchange.name
        self._exchange = exchange
        self._late_ack_s = late_ack_s

    async def create_order(
        self, client_id: str, symbol: str, side: Side, amount: float, price: float
    ) -> OrderResult:
        fate, latency_s = self._exchange.order_fate(client_id)
        await asyncio.sleep(latency_s / 2)
        result = self._exchange.submit(
            client_id,
            symbol,
            side,
            amount,
            price,
            time.time_ns(),
            reject_reason=_REJECTIONS.get(fate, ""),
        )
        await asyncio.sleep(latency_s / 2 + (self._late_ack_s if fate == "timeout" else 0.0))
        return result

    async def fetch_order(self, client_id: str, symbol: str) -> OrderResult:
        found = self._exchange.fetch(client_id)
        return found if found is not None else _unknown(client_id, self.name, symbol)

    async def cancel_order(self, client_id: str, symbol: str) -> OrderResult:
        """An IOC order never rests on a simulated venue: nothing to cancel, its final state."""
        return await self.fetch_order(client_id, symbol)


class BookRing:
    """The last steps of a venue's books, for feeds that long-poll: a slow feed that falls
    more than `size` steps behind gets only what the ring still holds (each book is a full
    top-N snapshot, so only intermediate states are lost)."""

    def __init__(self, size: int = 256) -> None:
        self._steps: deque[tuple[int, list[BookSnapshot]]] = deque(maxlen=size)
        self._seq = 0
        self._new = asyncio.Event()

    @property
    def last_seq(self) -> int:
        return self._seq

    def push(self, books: list[BookSnapshot]) -> int:
        self._seq += 1
        self._steps.append((self._seq, books))
        self._new.set()
        self._new = asyncio.Event()
        return self._seq

    async def since(self, after_seq: int, timeout_s: float) -> tuple[int, list[BookSnapshot]]:
        """Books of every step after `after_seq`, waiting up to `timeout_s` for one."""
        if self._seq <= after_seq:
            try:
                await asyncio.wait_for(self._new.wait(), timeout_s)
            except TimeoutError:
                return after_seq, []
        return self._seq, [b for seq, step in self._steps if seq > after_seq for b in step]


class SimBookSource:
    """The books of a venue actor, by long-poll: every step since the last one seen.

    `route` is passed first to the actor's methods: () for a `SimVenueActor`, (venue,) for
    a `ReplayMarketActor`, which serves every venue.
    """

    def __init__(self, handle: Any, *route: str, from_now: bool = False) -> None:
        self._handle = handle
        self._route = route
        self._from_now = from_now
        self._after = 0

    async def start(self) -> None:
        """With `from_now`, skip what the venue published before the feed started: a live
        venue's old books are of no use, while a replay must deliver every line."""
        if self._from_now:
            self._after = await self._handle.last_seq.remote(*self._route)

    async def next(self, timeout_s: float) -> list[BookEvent]:
        self._after, books = await self._handle.poll.remote(*self._route, self._after, timeout_s)
        return list(books)

    async def close(self) -> None:
        return None


class SimVenueClient:
    """The order interface of a venue actor, for executors in other processes (`route` as in
    `SimBookSource`)."""

    def __init__(self, name: str, handle: Any, *route: str) -> None:
        self.name = name
        self._handle = handle
        self._route = route

    async def create_order(
        self, client_id: str, symbol: str, side: Side, amount: float, price: float
    ) -> OrderResult:
        result: OrderResult = await self._handle.create_order.remote(
            *self._route, client_id, symbol, side, amount, price
        )
        return result

    async def fetch_order(self, client_id: str, symbol: str) -> OrderResult:
        found = await self._handle.fetch_order.remote(*self._route, client_id)
        return found if found is not None else _unknown(client_id, self.name, symbol)

    async def cancel_order(self, client_id: str, symbol: str) -> OrderResult:
        """An IOC order never rests on a simulated venue: nothing to cancel, its final state."""
        return await self.fetch_order(client_id, symbol)


def _unknown(client_id: str, venue: str, symbol: str) -> OrderResult:
    return OrderResult(
        client_id,
        venue,
        symbol,
        "buy",
        "unknown",
        0.0,
        0.0,
        0.0,
        0.0,
        ORDER_NOT_FOUND,
        time.time_ns(),
    )


@ray.remote(num_cpus=0, max_restarts=0)
class SimVenueActor:
    """A `SimExchange` on a timer, answering like a remote venue: books by long-poll, orders
    after a simulated acknowledgement latency."""

    def __init__(self, config: HftConfig, venue: str) -> None:
        self._exchange = sim_exchange_from_config(config, venue)
        self._orders = InProcessSimVenue(self._exchange, config.sim.order_timeout_ack_ms / 1000.0)
        self._tick_s = config.sim.tick_ms / 1000.0
        self._ring = BookRing()
        self._ticker: asyncio.Task[None] | None = None

    async def start(self) -> str:
        if self._ticker is None:
            self._ticker = asyncio.get_running_loop().create_task(self._tick_forever())
        return self._exchange.name

    async def stop(self) -> None:
        if self._ticker is not None:
            self._ticker.cancel()
            self._ticker = None

    async def _tick_forever(self) -> None:
        next_at = time.monotonic()
        while True:
            self._ring.push(self._exchange.step(time.time_ns()))
            next_at += self._tick_s
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))

    async def poll(self, after_seq: int, timeout_s: float) -> tuple[int, list[BookSnapshot]]:
        return await self._ring.since(after_seq, timeout_s)

    async def last_seq(self) -> int:
        return self._ring.last_seq

    async def create_order(
        self, client_id: str, symbol: str, side: Side, amount: float, price: float
    ) -> OrderResult:
        return await self._orders.create_order(client_id, symbol, side, amount, price)

    async def fetch_order(self, client_id: str) -> OrderResult | None:
        return self._exchange.fetch(client_id)

    async def balances(self) -> dict[str, float]:
        return dict(self._exchange.balances)
