"""Simulated venues: a real exchange's fees and precision over a synthetic, seeded market.

Every symbol follows one common log-price random walk. Each venue sees it late (`lag_ms`), adds
its own mean-reverting noise, and now and then a venue-specific jump that decays with a
half-life: short-lived dislocations large enough to beat both taker fees. A step draws its
random numbers for every symbol of the run at once, in the run's symbol order, from generators
seeded by (seed, purpose) for the common walk and events and by (seed, purpose, venue) for a
venue's noise and sizes; so a venue's book sequence depends only on the seed and the tick count,
and a venue that builds only a shard of the symbols (`only`) yields exactly those symbols' books.
The fate of an order (rejected, timed out, its latency) depends only on the seed and its client
order id.

`SimExchange` is the plain venue: books, balances, an IOC matching engine; a step builds every
book with a few numpy operations over (symbol, side, level) arrays and hands them out as
BookUpdate rows. `SimVenueActor` runs one on a timer and answers feeds (long-poll of rows) and
executors (orders) like a remote venue.
"""

from __future__ import annotations

import asyncio
import math
import random
import time
from collections import deque
from collections.abc import Callable, Collection, Sized
from typing import Any, Generic, TypeVar

import numpy as np
import ray

from hft_ray.config import HftConfig, SimMarketConfig, SimVenueConfig
from hft_ray.types import BookEvent, BookSnapshot, OrderResult, OrderStatus, Side, book_update_dtype
from hft_ray.venues.base import MarketSpec, order_not_found, order_refusal, step_decimals

_NOISE_PERSISTENCE = 0.9  # AR(1) coefficient of a venue's own noise, per tick
_SIZE_GROWTH = 0.15  # resting size grows this much per level away from the touch
_SIZE_DISPERSION = 0.4  # log-normal sigma of resting sizes
_MAX_SYMBOLS = np.iinfo(np.int16).max  # a row's symbol id is an int16
#: Rows a `SimVenueActor` keeps for feeds that fall behind (about 65 steps of 1,000 symbols).
BACKLOG_ROWS = 65_536


def _raw(rows: np.ndarray) -> np.ndarray:
    """Rows as raw bytes: numpy copies a structured array field by field, several times
    slower than the memcpy of the same bytes."""
    return rows.view(np.dtype((np.void, rows.dtype.itemsize)))


def _decimal_steps(steps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each step as a whole number of units of its last decimal place, and that unit's inverse,
    shaped (n, 1, 1) for (symbol, side, level) arrays: `k * units / scale` is then `k` steps
    rounded as `round(k * step, decimals)` rounds them, to the nearest float of the decimal."""
    scale = np.array([10.0 ** step_decimals(float(s)) for s in steps])[:, None, None]
    return np.rint(steps[:, None, None] * scale), scale


class SimExchange:
    """One simulated venue: its books, balances and matching engine. No I/O, no clock.

    `specs` are keyed by symbol in the run's symbol order: a symbol's id is its position.
    `depth` is the levels per side a row carries (matching uses all `market.book_depth`);
    `only` names the symbols this instance builds books and matches orders for (default all).
    """

    def __init__(
        self,
        name: str,
        venue_index: int,
        venue_count: int,
        specs: dict[str, MarketSpec],
        venue: SimVenueConfig,
        market: SimMarketConfig,
        seed: int,
        depth: int,
        only: Collection[str] | None = None,
    ) -> None:
        if not 0 <= venue_index < venue_count:
            raise ValueError(f"venue_index {venue_index} is not below venue_count {venue_count}")
        if not 1 <= depth <= market.book_depth:
            raise ValueError(f"depth {depth} must be from 1 to sim.book_depth {market.book_depth}")
        symbols = list(specs)
        if len(symbols) > _MAX_SYMBOLS:
            raise ValueError(f"{len(symbols)} symbols: a row holds at most {_MAX_SYMBOLS}")
        missing = [s for s in symbols if s not in market.initial_prices]
        if missing:
            raise ValueError(f"sim.initial_prices: no price for {', '.join(missing)}")
        chosen = set(symbols if only is None else only)
        unknown = sorted(chosen.difference(symbols))
        if unknown:
            raise ValueError(f"only: {', '.join(unknown)} not among the venue's symbols")
        self.name = name
        self.depth = depth
        self.seq = 0
        self._index = venue_index
        self._venue_count = venue_count
        self._cfg = venue
        self._market = market
        self._seed = seed
        tick_s = market.tick_ms / 1000.0
        self.phase_s = venue_index / venue_count * tick_s
        self.balances: dict[str, float] = dict(venue.balances)
        for spec in specs.values():
            self.balances.setdefault(spec.base, 0.0)
            self.balances.setdefault(spec.quote, 0.0)
        self._sigma_tick = market.volatility_bps * 1e-4 * math.sqrt(tick_s)
        self._event_p = market.dislocations_per_min / 60.0 * tick_s
        self._decay = 0.5 ** (market.tick_ms / market.dislocation_half_life_ms)

        ids = [i for i, s in enumerate(symbols) if s in chosen]
        self._specs = {symbols[i]: specs[symbols[i]] for i in ids}
        self._slot = {s: k for k, s in enumerate(self._specs)}
        self._ids = np.array(ids, dtype=np.int16)
        # Draws cover every symbol of the run; a shard keeps its own columns.
        self._sel: slice | np.ndarray = slice(None) if len(ids) == len(symbols) else self._ids
        n_all, n, levels = len(symbols), len(ids), market.book_depth
        self._walk_rng = np.random.default_rng([seed, 0])
        self._event_rng = np.random.default_rng([seed, 1])
        self._noise_rng = np.random.default_rng([seed, 2, venue_index])
        self._walk_z = np.empty(n_all)
        self._event_u = np.empty((n_all, 4))
        self._noise_z = np.empty(n_all)
        self._size_z = np.empty((n_all, 2, levels))

        built = list(self._specs.values())
        self._tick = np.array([s.tick for s in built])
        self._tick_units, self._tick_scale = _decimal_steps(self._tick)
        lot = np.array([s.lot for s in built])
        self._per_lot = (1.0 / lot)[:, None, None]
        self._lot_units, self._lot_scale = _decimal_steps(lot)
        level = np.arange(levels, dtype=np.float64)
        self._signed_level = np.stack([-level, level])[None]  # bids go down, asks up
        self._growth = 1.0 + _SIZE_GROWTH * level
        self._ticks = np.empty((n, 2, levels))  # work arrays of a step
        self._work = np.empty((n, 2, levels))

        lag_ticks = round(venue.lag_ms / market.tick_ms)
        log_p0 = np.log([market.initial_prices[s] for s in self._specs])
        self._walk = np.tile(log_p0, (lag_ticks + 1, 1))  # ring of the last lag + 1 log prices
        self._newest = 0
        self._noise_bps = np.zeros(n)
        self._offset_bps = np.zeros(n)
        # Every book: [slot, side (0 bids, 1 asks), level, (price, qty)], best first, NaN past n.
        self._levels = np.full((n, 2, levels, 2), np.nan)
        self._n = np.zeros((n, 2), dtype=np.int64)
        self._seen = self._walk[0].copy()
        self._built = False  # whether the current tick's books are built
        self._orders: dict[str, OrderResult] = {}

    @property
    def symbols(self) -> list[str]:
        """The symbols this instance builds, in id order."""
        return list(self._specs)

    # -- market -------------------------------------------------------------------------------

    def step_rows(self, ts_ns: int) -> np.ndarray:
        """Advance one tick; every built symbol's new book as a `book_update_dtype(depth)` row,
        in id order, not yet stamped or checked by a feed (`flags` and receipt times 0)."""
        self._advance()
        return self.rows(ts_ns)

    def advance_to(self, seq: int, build: bool = True) -> int:
        """Step on to tick `seq` (no step if it is there already) and, with `build`, make
        sure its books are built; return the ticks passed on the way without building their
        books. The random draws of a passed tick are made all the same, so every copy of a
        venue that reaches tick `seq` holds the same books, however it got there: a trading
        node's, and the venue actor that matches its orders."""
        passed = max(0, seq - self.seq - 1)
        for _ in range(passed):
            self._advance(build=False)
        if seq > self.seq:
            self._advance(build=build)
        elif build and not self._built:
            self._build()
        return passed

    def rows(self, ts_ns: int) -> np.ndarray:
        """The current books as rows (see `step_rows`)."""
        depth = self.depth
        rows = np.zeros(len(self._ids), book_update_dtype(depth))
        rows["venue"] = self._index
        rows["symbol"] = self._ids
        rows["seq"] = self.seq
        rows["ts_exchange_ns"] = ts_ns
        rows["n_bids"] = np.minimum(self._n[:, 0], depth)
        rows["n_asks"] = np.minimum(self._n[:, 1], depth)
        top = self._levels[:, :, :depth]
        rows["bid_px"], rows["bid_qty"] = top[:, 0, :, 0], top[:, 0, :, 1]
        rows["ask_px"], rows["ask_qty"] = top[:, 1, :, 0], top[:, 1, :, 1]
        return rows

    def step(self, ts_ns: int) -> list[BookSnapshot]:
        """Advance one tick; every built symbol's new book (all `book_depth` levels)."""
        self._advance()
        books = []
        for symbol in self._specs:
            bids, asks = self.book(symbol)
            books.append(BookSnapshot(symbol, self.seq, ts_ns, bids.copy(), asks.copy()))
        return books

    def _advance(self, build: bool = True) -> None:
        self.seq += 1
        self._built = build
        sel = self._sel
        walk_z = self._walk_rng.standard_normal(out=self._walk_z)[sel]
        event_u = self._event_rng.random(out=self._event_u)[sel]
        noise_z = self._noise_rng.standard_normal(out=self._noise_z)[sel]
        self._noise_rng.standard_normal(out=self._size_z)  # sizes, drawn whether built or not

        lag = len(self._walk)
        prev, self._newest = self._newest, (self._newest + 1) % lag
        self._walk[self._newest] = self._walk[prev] + self._sigma_tick * walk_z
        seen = self._walk[(self._newest + 1) % lag]  # lag ticks old

        self._offset_bps *= self._decay
        hit = (event_u[:, 0] < self._event_p) & (
            np.floor(event_u[:, 1] * self._venue_count) == self._index
        )
        if hit.any():
            lo, hi = self._market.dislocation_bps
            jump = (lo + (hi - lo) * event_u[:, 2]) * np.where(event_u[:, 3] < 0.5, 1.0, -1.0)
            self._offset_bps += np.where(hit, jump, 0.0)
        phi = _NOISE_PERSISTENCE
        self._noise_bps *= phi
        self._noise_bps += math.sqrt(1 - phi * phi) * self._cfg.noise_bps * noise_z
        self._seen = seen
        if build:
            self._build()

    def _build(self) -> None:
        """The books of the current tick, from its state and its size draws (kept in
        `_size_z`: a tick passed without building can still be built later)."""
        mid = np.exp(self._seen) * (1.0 + (self._noise_bps + self._offset_bps) * 1e-4)
        self._make_books(mid, self._size_z[self._sel])
        self._built = True

    def _make_books(self, mid: np.ndarray, size_z: np.ndarray) -> None:
        """Every built book around its `mid`, on its market's tick and lot: prices in whole
        ticks until the last division, so each is the exact decimal multiple of its tick.
        In place over preallocated arrays: a step's temporaries would cost page faults."""
        tick = self._tick
        half = mid * self._cfg.spread_bps * 0.5e-4
        best = np.empty((len(mid), 2, 1))
        best[:, 0, 0] = np.floor((mid - half) / tick + 1e-9)
        best[:, 1, 0] = np.maximum(np.ceil((mid + half) / tick - 1e-9), best[:, 0, 0] + 1.0)
        step = np.maximum(1.0, np.floor(mid * self._cfg.level_spacing_bps * 1e-4 / tick + 1e-9))
        ticks, work, levels = self._ticks, self._work, self._levels
        np.multiply(step[:, None, None], self._signed_level, out=ticks)
        ticks += best
        np.multiply(ticks, self._tick_units, out=work)
        np.divide(work, self._tick_scale, out=levels[..., 0])
        np.multiply(size_z, _SIZE_DISPERSION, out=work)
        np.exp(work, out=work)
        work *= self._growth
        work *= (self._market.level_notional / mid)[:, None, None]
        work *= self._per_lot
        np.floor(work, out=work)
        np.maximum(work, 1.0, out=work)
        work *= self._lot_units
        np.divide(work, self._lot_scale, out=levels[..., 1])
        self._n[:] = ticks.shape[2]
        if (ticks[:, 0, -1] <= 0.0).any():  # a price this low runs out of bids
            keep = ticks > 0.0
            self._n[:] = keep.sum(axis=2)
            levels[~keep] = np.nan

    def install(self, book: BookSnapshot) -> None:
        """Make `book` the venue's current book of its symbol (a replayed market); matching sees
        at most `book_depth` levels of it."""
        k = self._slot_of(book.symbol)
        for side, levels in enumerate((book.bids, book.asks)):
            n = min(len(levels), self._levels.shape[2])
            self._levels[k, side, :n] = levels[:n]
            self._levels[k, side, n:] = np.nan
            self._n[k, side] = n
        self.seq += 1

    def book(self, symbol: str) -> tuple[np.ndarray, np.ndarray]:
        """The current (bids, asks) of `symbol`, best first, as views the matching engine
        consumes; empty before the first step."""
        k = self._slot_of(symbol)
        nb, na = self._n[k]
        return self._levels[k, 0, :nb], self._levels[k, 1, :na]

    def _slot_of(self, symbol: str) -> int:
        try:
            return self._slot[symbol]
        except KeyError:
            raise KeyError(f"{symbol} is not built by venue {self.name}") from None

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
        spec = self._specs.get(symbol)
        if spec is None:
            return "unknown_symbol"
        return order_refusal(spec, self.balances, side, amount, price)

    def _match(
        self, client_id: str, symbol: str, side: Side, amount: float, price: float, ts_ns: int
    ) -> OrderResult:
        spec = self._specs[symbol]
        bids, asks = self.book(symbol)
        levels = asks if side == "buy" else bids
        filled = cost = 0.0
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


def sim_exchange_from_config(
    config: HftConfig, venue: str, only: Collection[str] | None = None
) -> SimExchange:
    """The `SimExchange` a config describes for `venue`, its rows `feed.depth` deep."""
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
        depth=config.feed.depth,
        only=only,
    )


#: How a simulated venue words the refusals `order_fate` decides on (as the ccxt path does).
FATE_REJECTIONS = {"reject": "venue_reject", "rate_limit": "rate_limited"}


class InProcessSimVenue:
    """The order interface of a `SimExchange` in this process, with its latency and faults.

    An accepted order is matched after half its latency and acknowledged after the other
    half; a rejected one is refused by the venue; a timed-out one is matched but its
    acknowledgement arrives `late_ack_s` later, past any sane client timeout.
    """

    def __init__(
        self,
        exchange: SimExchange,
        late_ack_s: float,
        catch_up: Callable[[], object] | None = None,
    ) -> None:
        self.name = exchange.name
        self._exchange = exchange
        self._late_ack_s = late_ack_s
        self._catch_up = catch_up  # brings the market to the current tick before a match

    async def create_order(
        self, client_id: str, symbol: str, side: Side, amount: float, price: float
    ) -> OrderResult:
        fate, latency_s = self._exchange.order_fate(client_id)
        await asyncio.sleep(latency_s / 2)
        if self._catch_up is not None:
            self._catch_up()
        result = self._exchange.submit(
            client_id,
            symbol,
            side,
            amount,
            price,
            time.time_ns(),
            reject_reason=FATE_REJECTIONS.get(fate, ""),
        )
        await asyncio.sleep(latency_s / 2 + (self._late_ack_s if fate == "timeout" else 0.0))
        return result

    async def fetch_order(self, client_id: str, symbol: str) -> OrderResult:
        found = self._exchange.fetch(client_id)
        return (
            found
            if found is not None
            else order_not_found(client_id, self.name, symbol, time.time_ns())
        )

    async def cancel_order(self, client_id: str, symbol: str) -> OrderResult:
        """An IOC order never rests on a simulated venue: nothing to cancel, its final state."""
        return await self.fetch_order(client_id, symbol)


Batch = TypeVar("Batch", bound=Sized)


class Backlog(Generic[Batch]):
    """What a venue published lately, for readers that long-poll by cursor.

    The cursor counts items (rows, books) published so far. At most `max_items` are kept (and
    always the newest batch): a reader who fell further behind gets what is left and is told
    how many items it will never see. Each item is a full top-N book, so dropping the oldest
    conflates to the latest book per (symbol, venue).
    """

    def __init__(self, max_items: int) -> None:
        if max_items < 1:
            raise ValueError(f"max_items must be at least 1, got {max_items}")
        self._max = max_items
        self._batches: deque[tuple[int, Batch]] = deque()  # (cursor after it, batch)
        self._kept = 0
        self._seq = 0
        self._dropped_to = 0  # every item up to this cursor is gone
        self._new = asyncio.Event()

    @property
    def last_seq(self) -> int:
        return self._seq

    def push(self, batch: Batch) -> int:
        self._seq += len(batch)
        self._batches.append((self._seq, batch))
        self._kept += len(batch)
        while self._kept > self._max and len(self._batches) > 1:
            self._dropped_to, old = self._batches.popleft()
            self._kept -= len(old)
        self._new.set()
        self._new = asyncio.Event()
        return self._seq

    async def since(self, after_seq: int, timeout_s: float) -> tuple[int, list[Batch], int]:
        """(cursor, every batch after `after_seq`, items lost to the bound), waiting up to
        `timeout_s` for one."""
        if not 0 <= after_seq <= self._seq:
            raise ValueError(f"cursor {after_seq} is outside the published 0..{self._seq}")
        if self._seq == after_seq:
            try:
                await asyncio.wait_for(self._new.wait(), timeout_s)
            except TimeoutError:
                return after_seq, [], 0
        batches = []
        for end, batch in reversed(self._batches):  # newest first: a current reader reads few
            if end <= after_seq:
                break
            batches.append(batch)
        batches.reverse()
        return self._seq, batches, max(0, self._dropped_to - after_seq)


class TickGrid:
    """A venue's publication times: tick `seq` (1, 2, ...) falls at `epoch_ns + (seq - 1) *
    tick_s + phase_s` on the wall clock, so ticks never drift, venues with different phases
    never tick in step, and every process of a run that holds a copy of a venue (a trading
    node reading its books, the venue actor matching its orders) agrees which tick is current.
    A loop that ran late goes on from the current tick (the ones it missed are counted in
    `skipped`) instead of publishing them in a burst."""

    def __init__(self, tick_s: float, phase_s: float, epoch_ns: int) -> None:
        if tick_s <= 0:
            raise ValueError(f"tick_s must be positive, got {tick_s}")
        self._tick_ns = round(tick_s * 1e9)
        self._start_ns = epoch_ns + round(phase_s * 1e9)
        self._last = 0
        self.skipped = 0  # ticks a late loop never published

    def resume(self, wall_ns: int) -> None:
        """Go on from the tick current at `wall_ns`: a reader that starts late has missed
        nothing it could have seen."""
        self._last = max(self._last, self.seq_at(wall_ns) - 1)

    def seq_at(self, wall_ns: int) -> int:
        """The tick current at `wall_ns` (0 before the first)."""
        if wall_ns < self._start_ns:
            return 0
        return (wall_ns - self._start_ns) // self._tick_ns + 1

    def next_seq(self, wall_ns: int) -> int:
        """The tick to publish now: the current one, never the same twice, counting those a
        late loop passed over."""
        seq = max(self.seq_at(wall_ns), self._last + 1)
        self.skipped += max(0, seq - self._last - 1)
        self._last = seq
        return seq

    def wait_s(self, wall_ns: int) -> float:
        """Seconds from `wall_ns` until the tick after the last one published."""
        due = self._start_ns + self._last * self._tick_ns
        return max(0.0, (due - wall_ns) / 1e9)


class SimBookSource:
    """The books of one venue of a `ReplayMarketActor`, by long-poll: every line since the
    last one seen (a replay must deliver every line, so it starts from the first)."""

    def __init__(self, handle: Any, venue: str) -> None:
        self._handle = handle
        self._venue = venue
        self._after = 0

    async def start(self) -> None:
        return None

    async def next(self, timeout_s: float) -> list[BookEvent]:
        self._after, books = await self._handle.poll.remote(self._venue, self._after, timeout_s)
        return list(books)

    async def close(self) -> None:
        return None


class SimRowSource:
    """The rows of a `SimVenueActor`, by long-poll: every row since the last call, in one
    array; rows the venue dropped before this reader took them are counted in `conflated`."""

    def __init__(self, handle: Any, *, from_now: bool = True) -> None:
        self._handle = handle
        self._from_now = from_now
        self._after = 0
        self.conflated = 0

    async def start(self) -> None:
        """With `from_now`, skip what the venue published before the feed started: old books
        are of no use to a live feed."""
        if self._from_now:
            self._after = await self._handle.last_seq.remote()

    async def next_rows(self, timeout_s: float) -> np.ndarray:
        """Every row since the last call, waiting up to `timeout_s` for one."""
        self._after, rows, lost = await self._handle.poll.remote(self._after, timeout_s)
        self.conflated += lost
        # Ray hands large arrays out read-only from its object store; the feed checks in place.
        return rows if rows.flags.writeable else _raw(rows).copy().view(rows.dtype)

    async def close(self) -> None:
        return None


class SimVenueClient:
    """The order interface of a venue actor, for executors in other processes. `route` is
    passed first to the actor's methods: () for a `SimVenueActor`, (venue,) for a
    `ReplayMarketActor`, which serves every venue."""

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
        return (
            found
            if found is not None
            else order_not_found(client_id, self.name, symbol, time.time_ns())
        )

    async def cancel_order(self, client_id: str, symbol: str) -> OrderResult:
        """An IOC order never rests on a simulated venue: nothing to cancel, its final state."""
        return await self.fetch_order(client_id, symbol)


@ray.remote(num_cpus=0, max_restarts=0)
class SimVenueActor:
    """A simulated exchange as a remote venue: it holds the account (balances, orders) and
    matches orders after a simulated acknowledgement latency, against its books at the tick
    current when the order arrives. With `publish`, it also serves each tick's rows by
    long-poll (the distributed topology's feeds); a trading node computes the same books
    itself, from the same seed and tick grid, and only sends its orders here."""

    def __init__(self, config: HftConfig, venue: str, epoch_ns: int, publish: bool = True) -> None:
        self._exchange = ex = sim_exchange_from_config(config, venue)
        self._grid = TickGrid(config.sim.tick_ms / 1000.0, ex.phase_s, epoch_ns)
        self._orders = InProcessSimVenue(
            ex,
            config.sim.order_timeout_ack_ms / 1000.0,
            catch_up=lambda: ex.advance_to(self._grid.seq_at(time.time_ns())),
        )
        self._publish = publish
        self._backlog: Backlog[np.ndarray] = Backlog(BACKLOG_ROWS)
        self._empty = np.zeros(0, book_update_dtype(ex.depth))
        self._ticker: asyncio.Task[None] | None = None

    async def start(self) -> str:
        if self._ticker is None:
            tick = self._tick_forever() if self._publish else self._keep_up()
            self._ticker = asyncio.get_running_loop().create_task(tick)
        return self._exchange.name

    async def _keep_up(self) -> None:
        """Not publishing: step the market along every tick without building books, so an
        order finds it current instead of paying for every tick since the last order."""
        grid, ex = self._grid, self._exchange
        grid.resume(time.time_ns())
        while True:
            await asyncio.sleep(grid.wait_s(time.time_ns()))
            ex.advance_to(grid.next_seq(time.time_ns()), build=False)

    async def stop(self) -> None:
        if self._ticker is not None:
            self._ticker.cancel()
            self._ticker = None

    async def _tick_forever(self) -> None:
        grid, ex = self._grid, self._exchange
        grid.resume(time.time_ns())
        while True:
            await asyncio.sleep(grid.wait_s(time.time_ns()))
            now = time.time_ns()
            ex.advance_to(grid.next_seq(now))
            self._backlog.push(ex.rows(now))

    async def poll(self, after_seq: int, timeout_s: float) -> tuple[int, np.ndarray, int]:
        """(cursor, every row after row `after_seq` in one array, rows lost to the backlog's
        bound), waiting up to `timeout_s` for the first."""
        seq, steps, lost = await self._backlog.since(after_seq, timeout_s)
        if len(steps) < 2:
            return seq, steps[0] if steps else self._empty, lost
        return seq, np.concatenate([_raw(s) for s in steps]).view(self._empty.dtype), lost

    async def last_seq(self) -> int:
        return self._backlog.last_seq

    async def create_order(
        self, client_id: str, symbol: str, side: Side, amount: float, price: float
    ) -> OrderResult:
        return await self._orders.create_order(client_id, symbol, side, amount, price)

    async def fetch_order(self, client_id: str) -> OrderResult | None:
        return self._exchange.fetch(client_id)

    async def balances(self) -> dict[str, float]:
        return dict(self._exchange.balances)
