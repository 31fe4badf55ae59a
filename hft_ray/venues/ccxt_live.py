"""Live venues through ccxt / ccxt.pro: markets, and order books you can trust.

ccxt.pro keeps each book (REST snapshot plus websocket deltas) and already enforces some
integrity rules itself: Binance's `U`/`u` bridge (a gap raises `ChecksumError`), OKX's
`seqId`/`prevSeqId` link (`InvalidNonce`). Those errors are surfaced as book invalidations, and
ccxt resubscribes on the next watch. Where ccxt does not check what the venue publishes
(ccxt 4.5.90 no longer verifies OKX's CRC32, nor Bybit's, KuCoin's, Coinbase's or Deribit's
sequence links), a raw-message check registered per exchange in
`hft_ray.venues.integrity.RAW_BOOK_CHECKS` invalidates the book it finds broken. Everything
else (reconnect with exponential backoff, the stall watchdog that resubscribes a silent
stream) lives once, in `CcxtBookStream`, for every exchange.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

import ccxt.pro
import numpy as np
from ccxt.base.errors import BaseError, ChecksumError, InvalidNonce, NetworkError

from hft_ray.clock import Clock
from hft_ray.config import CcxtVenueConfig, ConfigError, StoreConfig, deep_merge, read_secret
from hft_ray.types import MALFORMED_BOOK, BookEvent, BookInvalid, BookSnapshot
from hft_ray.venues import rate_budget
from hft_ray.venues.base import MarketSpec, VenueUnavailable
from hft_ray.venues.depth import watch_depth
from hft_ray.venues.integrity import RAW_BOOK_CHECKS, RawBookCheck

#: Why a live book stopped being tradable.
OUT_OF_SYNC = "out_of_sync"
_MAX_STALL_PATIENCE_S = 120.0
STALLED = "stalled"
DISCONNECTED = "disconnected"
VENUE_ERROR = "venue_error"
#: A snapshot older than updates the stream already delivered: refused, and fetched again.
STALE_SNAPSHOT = "stale_snapshot"
#: The feed's checks refused the book too many times in a row: it is fetched again.
RESYNC = "resync_after_failed_checks"

#: ccxt logs every request's headers, API key included, at DEBUG level; its exchanges log here
#: instead, where nothing below INFO passes, whatever the root logger lets through.
_CCXT_LOG = logging.getLogger("hft_ray.ccxt")
_CCXT_LOG.setLevel(logging.INFO)


def make_exchange(venue: str, cfg: CcxtVenueConfig, store: StoreConfig | None = None) -> Any:
    """A ccxt.pro exchange as the config describes it; credentials read here, at use, from
    the environment or a mounted file (never carried in the config or a message). Its REST
    requests draw from the budget of its exchange and key, in `store` (Redis) when given one
    with a url, else in this process (`hft_ray.venues.rate_budget`)."""
    exchange_id = cfg.exchange or venue
    klass = getattr(ccxt.pro, exchange_id)
    params: dict[str, Any] = {"enableRateLimit": True}
    for field, env, file, what in (
        ("apiKey", cfg.api_key_env, cfg.api_key_file, "api_key"),
        ("secret", cfg.secret_env, cfg.secret_file, "secret"),
        ("password", cfg.password_env, cfg.password_file, "password"),
    ):
        value = read_secret(env, file, f"venues.{venue}.{what}")
        if value is not None:
            params[field] = value
    exchange = klass(params)
    exchange.logger = _CCXT_LOG
    if cfg.sandbox:
        exchange.set_sandbox_mode(True)
    if cfg.urls:
        exchange.urls = deep_merge(exchange.urls, cfg.urls)
    if cfg.options:
        exchange.options = deep_merge(exchange.options, cfg.options)
    rate_budget.attach(exchange, rate_budget.budget_for(venue, exchange, cfg, store))
    return exchange


def market_spec_from_ccxt(exchange: Any, symbol: str) -> MarketSpec:
    """Our MarketSpec from ccxt's unified market structure."""
    m = exchange.market(symbol)
    precision, limits = m["precision"], m["limits"]

    def step(value: Any) -> float:
        if value is None:
            raise ConfigError(f"{exchange.id} {symbol}: ccxt reports no precision")
        if exchange.precisionMode == ccxt.DECIMAL_PLACES:
            return float(10.0 ** -int(value))
        return float(value)

    return MarketSpec(
        symbol=symbol,
        base=m["base"],
        quote=m["quote"],
        tick=step(precision.get("price")),
        lot=step(precision.get("amount")),
        min_amount=float((limits.get("amount") or {}).get("min") or 0.0),
        min_notional=float((limits.get("cost") or {}).get("min") or 0.0),
        taker_fee=float(m.get("taker") or exchange.fees.get("trading", {}).get("taker") or 0.0),
    )


async def load_ccxt_markets(
    venue: str, cfg: CcxtVenueConfig, symbols: list[str]
) -> dict[str, MarketSpec]:
    """Fees and precision of `symbols` on a live venue, from `load_markets`."""
    exchange = make_exchange(venue, cfg)
    try:
        await exchange.load_markets()
        missing = [s for s in symbols if s not in exchange.markets]
        if missing:
            raise ConfigError(f"venues.{venue}: {exchange.id} has no market {', '.join(missing)}")
        return {s: market_spec_from_ccxt(exchange, s) for s in symbols}
    except BaseError as err:
        raise _unavailable(venue, exchange, err) from None
    finally:
        await exchange.close()


def _unavailable(venue: str, exchange: Any, err: BaseException) -> VenueUnavailable:
    return VenueUnavailable(
        f"venues.{venue}: cannot load markets from {exchange.id} ({type(err).__name__})"
    )


def _ccxt_levels(side: Any, depth: int) -> np.ndarray:
    """The best `depth` levels of a ccxt book side as an (n, 2) array: each level's first two
    values (some venues add a count or an id)."""
    top = [level[:2] for level in side[:depth]]
    if not top:
        return np.empty((0, 2))
    arr = np.array(top, dtype=np.float64)  # ragged levels, or values that are no numbers, raise
    if arr.shape != (len(top), 2):
        raise ValueError("levels must be [price, amount, ...]")
    return arr


def book_event(symbol: str, book: Any, depth: int) -> BookEvent:
    """The event of a book as ccxt.pro's `watch_order_book` gives it (a dict of `bids` and
    `asks` lists of [price, amount, ...], `nonce`, `timestamp` in ms): a snapshot of its best
    `depth` levels, or, if any of that cannot be read, an invalidation (`MALFORMED_BOOK`).

    The values are not judged here: the feed's checks do that for every venue alike. A book
    without the venue's timestamp has `ts_exchange_ns` 0 (the feed stamps it with its receipt;
    a recording writes null), never our own clock passed off as the venue's.
    """
    try:
        bids = _ccxt_levels(book["bids"], depth)
        asks = _ccxt_levels(book["asks"], depth)
        nonce, ts_ms = book.get("nonce"), book.get("timestamp")
        for value in (nonce, ts_ms):
            if isinstance(value, bool) or not (value is None or isinstance(value, int | float)):
                raise ValueError(f"not a number: {value!r:.40}")
        if isinstance(nonce, float):
            raise ValueError(f"nonce {nonce!r} is no integer")
        # inf and NaN raise here; a nonce or timestamp too large for a row the feed refuses
        ts_ns = int(ts_ms) * 1_000_000 if ts_ms else 0
    except (TypeError, ValueError, KeyError, AttributeError, OverflowError):
        return BookInvalid(symbol, MALFORMED_BOOK)
    return BookSnapshot(symbol, nonce or 0, ts_ns, bids, asks)


class CcxtBookStream:
    """Watch order books of `symbols` on one live venue; emit books and invalidations.

    Each symbol has a watcher. A watch that raises `ChecksumError` or `InvalidNonce` (ccxt's
    own sequence and checksum checks) invalidates the book; ccxt drops it and resubscribes on
    the next watch. After any failed watch the watcher waits (exponential backoff) before the
    next: after a gap ccxt fails every pending watch at once until its new snapshot arrives,
    and retrying at once would spin. A stream silent for `stall_timeout_s` is invalidated and
    resubscribed by closing the connection, which makes ccxt reconnect and fetch a fresh
    snapshot; so is a book the feed's checks keep refusing (`resync`).

    An outage (from the first failure to the next book) emits one invalidation, however many
    watches fail in it; `errors` counts every failure by reason, `outages` the episodes.
    """

    def __init__(
        self,
        venue: str,
        cfg: CcxtVenueConfig,
        symbols: list[str],
        depth: int,
        clock: Clock,
        exchange: Any | None = None,
        store: StoreConfig | None = None,
    ) -> None:
        """`store` holds the venue's shared REST budget (its snapshots draw from it)."""
        self.venue = venue
        self._cfg = cfg
        self._symbols = symbols
        self._depth = depth
        self._clock = clock
        self._exchange = exchange if exchange is not None else make_exchange(venue, cfg, store)
        self._queue: asyncio.Queue[BookEvent] = asyncio.Queue()
        self._tasks: list[asyncio.Task[None]] = []
        self._raw: RawBookCheck | None = None
        self.resubscribes = 0
        self.reconnects = 0
        self.errors: dict[str, int] = {}
        self._down_since: dict[str, float] = {}  # symbol -> when its outage began (monotonic)
        self.outages = {"count": 0, "seconds": 0.0, "longest_s": 0.0}
        # A resubscribe is asked for (by a check, by the feed) and done by the next watcher
        # about to watch, under the lock: a watch issued while the connection closes waits on
        # a client ccxt has forgotten, for good.
        self._resync_wanted = False
        self._resync_lock = asyncio.Lock()

    async def start(self) -> None:
        try:
            await self._exchange.load_markets()
        except BaseError as err:
            raise _unavailable(self.venue, self._exchange, err) from None
        missing = [s for s in self._symbols if s not in self._exchange.markets]
        if missing:
            raise ConfigError(f"{self._exchange.id} has no market {', '.join(missing)}")
        self._install_raw_check()
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self._watch(symbol)) for symbol in self._symbols]

    def _install_raw_check(self) -> None:
        entry = RAW_BOOK_CHECKS.get(self._exchange.id)
        if entry is None:
            return
        method, make = entry
        check = self._raw = make(self._exchange)
        handler = getattr(self._exchange, method)

        def observed(client: Any, message: dict[str, Any]) -> Any:
            broken = check.observe(message)
            if broken is not None:
                self._invalidate(*broken)
                self._resubscribe_soon()
            return handler(client, message)

        setattr(self._exchange, method, observed)

    def _invalidate(self, symbol: str, reason: str) -> None:
        self.errors[reason] = self.errors.get(reason, 0) + 1
        if symbol not in self._down_since:
            self._down_since[symbol] = time.monotonic()
            self._queue.put_nowait(BookInvalid(symbol, reason))

    def _recovered(self, symbol: str) -> None:
        began = self._down_since.pop(symbol, None)
        if began is not None:
            length = time.monotonic() - began
            o = self.outages
            o["count"] += 1
            o["seconds"] += length
            o["longest_s"] = max(o["longest_s"], length)

    def resync(self, symbol: str) -> None:
        """Start `symbol`'s book again from a fresh snapshot (the feed's checks keep refusing
        it). ccxt keeps one connection for all of a venue's books: they all resync."""
        self._invalidate(symbol, RESYNC)
        self._resubscribe_soon()

    def _resubscribe_soon(self) -> None:
        """`_resubscribe` once before the next watch, however many ask for it meanwhile."""
        self._resync_wanted = True

    async def _resubscribe_if_wanted(self) -> None:
        async with self._resync_lock:
            if self._resync_wanted:
                self._resync_wanted = False
                await self._resubscribe()

    async def _resubscribe(self) -> None:
        """Close and forget the websocket connections: the next watch opens a new one,
        subscribes again and starts the book from a fresh snapshot. (A client that is only
        closed stays in `exchange.clients` and is never reopened.)"""
        self.resubscribes += 1
        with contextlib.suppress(Exception):
            await self._exchange.close_ws_clients()
        self._new_connection()

    def _new_connection(self) -> None:
        if self._raw is not None:
            self._raw.restart()

    async def _watch(self, symbol: str) -> None:
        first, longest = self._cfg.backoff_s
        backoff = first
        # A resync (reconnect, subscribe, rate-limited REST snapshot) can outlast a short stall
        # timeout; each stall that follows a resubscribe waits twice as long, so the watchdog
        # never keeps tearing down a resync that is merely slow.
        patience = self._cfg.stall_timeout_s
        pending: asyncio.Future[Any] | None = None
        while True:
            if pending is None:
                await self._resubscribe_if_wanted()
                pending = asyncio.ensure_future(
                    self._exchange.watch_order_book(
                        symbol, watch_depth(self._exchange, symbol, self._cfg.watch_depth)
                    )
                )
            done, _ = await asyncio.wait({pending}, timeout=patience)
            if not done:
                # Silent but connected: never trade on it, and make ccxt start over. The pending
                # watch is kept; closing the connection rejects or cancels it.
                self._invalidate(symbol, STALLED)
                self._resubscribe_soon()
                await self._resubscribe_if_wanted()
                patience = min(patience * 2, _MAX_STALL_PATIENCE_S)
                continue
            task, pending = pending, None
            reason = self._failure(task)
            if reason:
                self._invalidate(symbol, reason)
                if reason == DISCONNECTED:
                    self.reconnects += 1
                    self._new_connection()
                await asyncio.sleep(backoff)
                backoff = min(longest, backoff * 2)
                continue
            backoff, patience = first, self._cfg.stall_timeout_s
            if self._resync_wanted:
                continue  # the connection starts again before the next watch: not this book
            book = task.result()
            if self._raw is not None:
                if not self._raw.valid(symbol):
                    continue  # our own check says this book is broken until its next snapshot
                if self._raw.behind(symbol, book.get("nonce")):
                    self._invalidate(symbol, STALE_SNAPSHOT)  # refused, and fetched again
                    self._resubscribe_soon()
                    continue
            self._recovered(symbol)
            self._queue.put_nowait(book_event(symbol, book, self._depth))

    @staticmethod
    def _failure(task: asyncio.Future[Any]) -> str:
        """Why a finished watch gave no book, or '' if it gave one."""
        if task.cancelled():
            return DISCONNECTED  # ccxt cancels pending watches when their connection closes
        err = task.exception()
        if err is None:
            return ""
        if isinstance(err, ChecksumError | InvalidNonce):
            # ccxt found the book out of sync (Binance reports a U/u gap as ChecksumError);
            # it has dropped the book and resubscribes on the next watch.
            return OUT_OF_SYNC
        if isinstance(err, NetworkError):
            return DISCONNECTED
        return VENUE_ERROR  # anything else, ccxt's or not: a watcher must never die quietly

    async def next(self, timeout_s: float) -> list[BookEvent]:
        """Every event so far, waiting up to `timeout_s` for the first."""
        try:
            first = await asyncio.wait_for(self._queue.get(), timeout_s)
        except TimeoutError:
            return []
        events = [first]
        while not self._queue.empty():
            events.append(self._queue.get_nowait())
        return events

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks = []
        await self._exchange.close()
