"""Live venues through ccxt / ccxt.pro: markets, and order books you can trust.

ccxt.pro keeps each book (REST snapshot plus websocket deltas) and already enforces some
integrity rules itself: Binance's `U`/`u` bridge (a gap raises `ChecksumError`), OKX's
`seqId`/`prevSeqId` link (`InvalidNonce`). Those errors are surfaced as book invalidations, and
ccxt resubscribes on the next watch. Where ccxt does not check what the venue publishes
(ccxt 4.5.90 no longer verifies OKX's CRC32), a raw-message check registered per exchange in
`RAW_BOOK_CHECKS` keeps its own `hft_ray.book.OrderBook` beside ccxt's and invalidates on a
mismatch. Everything else (reconnect with exponential backoff, the stall watchdog that
resubscribes a silent stream) lives once, in `CcxtBookStream`, for every exchange.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any

import ccxt.pro
import numpy as np
from ccxt.base.errors import BaseError, ChecksumError, InvalidNonce, NetworkError

from hft_ray.book import VENUE_BOOK_RULES, OrderBook
from hft_ray.clock import Clock
from hft_ray.config import CcxtVenueConfig, ConfigError, deep_merge, read_secret
from hft_ray.feed.checks import MALFORMED_BOOK
from hft_ray.types import BookEvent, BookInvalid, BookSnapshot
from hft_ray.venues.base import MarketSpec

#: Why a live book stopped being tradable.
OUT_OF_SYNC = "out_of_sync"
_MAX_STALL_PATIENCE_S = 120.0
STALLED = "stalled"
DISCONNECTED = "disconnected"
VENUE_ERROR = "venue_error"

#: ccxt logs every request's headers, API key included, at DEBUG level; its exchanges log here
#: instead, where nothing below INFO passes, whatever the root logger lets through.
_CCXT_LOG = logging.getLogger("hft_ray.ccxt")
_CCXT_LOG.setLevel(logging.INFO)


def make_exchange(venue: str, cfg: CcxtVenueConfig) -> Any:
    """A ccxt.pro exchange as the config describes it; credentials read here, at use, from
    the environment or a mounted file (never carried in the config or a message)."""
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
        raise ConfigError(
            f"venues.{venue}: cannot load markets from {exchange.id} ({type(err).__name__})"
        ) from None
    finally:
        await exchange.close()


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


def book_event(symbol: str, book: Any, depth: int, now_ns: int) -> BookEvent:
    """The event of a book as ccxt.pro's `watch_order_book` gives it (a dict of `bids` and
    `asks` lists of [price, amount, ...], `nonce`, `timestamp` in ms): a snapshot of its best
    `depth` levels, or, if any of that cannot be read, an invalidation (`MALFORMED_BOOK`).

    The values are not judged here: the feed's checks do that for every venue alike. A book
    without a timestamp is stamped `now_ns`.
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
        ts_ns = int(ts_ms) * 1_000_000 if ts_ms else now_ns
    except (TypeError, ValueError, KeyError, AttributeError, OverflowError):
        return BookInvalid(symbol, MALFORMED_BOOK)
    return BookSnapshot(symbol, nonce or 0, ts_ns, bids, asks)


def _okx_levels(raw: Any) -> list[tuple[Any, Any]]:
    if not isinstance(raw, list) or not all(isinstance(x, list) and len(x) >= 2 for x in raw):
        raise ValueError("levels must be lists of [price, size, ...]")
    return [(x[0], x[1]) for x in raw]


def _okx_apply(book: OrderBook, snapshot: bool, d: Any) -> str:
    """Apply one entry of an OKX `books` message's `data`; raise ValueError if it cannot be
    read."""
    if not isinstance(d, dict):
        raise ValueError("a book entry must be an object")
    bids, asks = _okx_levels(d.get("bids", [])), _okx_levels(d.get("asks", []))
    try:
        ts = int(d.get("ts", 0)) * 1_000_000
    except (TypeError, OverflowError):
        raise ValueError(f"ts {d.get('ts')!r:.40}") from None
    seq, prev, checksum = d.get("seqId"), d.get("prevSeqId"), d.get("checksum")
    if snapshot:
        return book.apply_snapshot(bids, asks, seq, ts, checksum)
    return book.apply_delta(bids, asks, ts, last=seq, prev=prev, checksum=checksum)


class OkxRawChecksum:
    """OKX's CRC32 over the top 25 levels, checked on the raw `books` messages, since ccxt
    4.5.90 applies them without checking. Keeps an `OrderBook` per instrument beside ccxt's."""

    def __init__(self, exchange: Any) -> None:
        self._exchange = exchange
        self._books: dict[str, OrderBook] = {}

    def observe(self, message: Any) -> tuple[str, str] | None:
        """Check one raw message; return (symbol, reason) when it breaks the book, or when its
        book data cannot be read (`MALFORMED_BOOK`: the book waits for a new snapshot). A
        message that names no instrument is left to ccxt's own handler."""
        if not isinstance(message, dict) or message.get("action") not in ("snapshot", "update"):
            return None
        arg = message.get("arg")
        inst = arg.get("instId") if isinstance(arg, dict) else None
        if not isinstance(inst, str):
            return None
        symbol = self._exchange.safe_symbol(inst)
        book = self._books.setdefault(symbol, OrderBook(VENUE_BOOK_RULES["okx"]))
        reason = ""
        try:
            data = message.get("data")
            if not isinstance(data, list):
                raise ValueError("data must be a list")
            for d in data:
                reason = _okx_apply(book, message["action"] == "snapshot", d)
        except ValueError:  # the book's error for a level it cannot read, and the message's
            book.invalidate(MALFORMED_BOOK)
            reason = MALFORMED_BOOK
        return (symbol, reason) if reason else None

    def valid(self, symbol: str) -> bool:
        book = self._books.get(symbol)
        return book is None or book.valid


#: Raw-message checks for exchanges whose ccxt class leaves a published integrity rule unchecked:
#: exchange id -> (the exchange method that receives the raw book messages, the check).
RAW_BOOK_CHECKS: dict[str, tuple[str, Callable[[Any], OkxRawChecksum]]] = {
    "okx": ("handle_order_book", OkxRawChecksum),
}


class CcxtBookStream:
    """Watch order books of `symbols` on one live venue; emit books and invalidations.

    Each symbol has a watcher. A watch that raises `ChecksumError` or `InvalidNonce` (ccxt's
    own sequence and checksum checks) invalidates the book; ccxt drops it and resubscribes on
    the next watch. A network error invalidates it and waits (exponential backoff) before the
    next watch. A stream silent for `stall_timeout_s` is invalidated and resubscribed by closing
    the connection, which makes ccxt reconnect and fetch a fresh snapshot.
    """

    def __init__(
        self,
        venue: str,
        cfg: CcxtVenueConfig,
        symbols: list[str],
        depth: int,
        clock: Clock,
        exchange: Any | None = None,
    ) -> None:
        self.venue = venue
        self._cfg = cfg
        self._symbols = symbols
        self._depth = depth
        self._clock = clock
        self._exchange = exchange if exchange is not None else make_exchange(venue, cfg)
        self._queue: asyncio.Queue[BookEvent] = asyncio.Queue()
        self._tasks: list[asyncio.Task[None]] = []
        self._raw: OkxRawChecksum | None = None
        self.resubscribes = 0
        self.reconnects = 0
        self.errors: dict[str, int] = {}

    async def start(self) -> None:
        await self._exchange.load_markets()
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
                asyncio.get_running_loop().create_task(self._resubscribe())
            return handler(client, message)

        setattr(self._exchange, method, observed)

    def _invalidate(self, symbol: str, reason: str) -> None:
        self.errors[reason] = self.errors.get(reason, 0) + 1
        self._queue.put_nowait(BookInvalid(symbol, reason))

    async def _resubscribe(self) -> None:
        """Close and forget the websocket connections: the next watch opens a new one,
        subscribes again and starts the book from a fresh snapshot. (A client that is only
        closed stays in `exchange.clients` and is never reopened.)"""
        self.resubscribes += 1
        with contextlib.suppress(Exception):
            await self._exchange.close_ws_clients()

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
                pending = asyncio.ensure_future(
                    self._exchange.watch_order_book(symbol, self._cfg.watch_depth)
                )
            done, _ = await asyncio.wait({pending}, timeout=patience)
            if not done:
                # Silent but connected: never trade on it, and make ccxt start over. The pending
                # watch is kept; closing the connection rejects or cancels it.
                self._invalidate(symbol, STALLED)
                await self._resubscribe()
                patience = min(patience * 2, _MAX_STALL_PATIENCE_S)
                continue
            task, pending = pending, None
            reason = self._failure(task)
            if reason:
                self._invalidate(symbol, reason)
                if reason == DISCONNECTED:
                    self.reconnects += 1
                if reason != OUT_OF_SYNC:  # ccxt resyncs a book out of sync at once
                    await asyncio.sleep(backoff)
                    backoff = min(longest, backoff * 2)
                continue
            backoff, patience = first, self._cfg.stall_timeout_s
            if self._raw is not None and not self._raw.valid(symbol):
                continue  # our own check says this book is broken until its next snapshot
            book = task.result()
            self._queue.put_nowait(book_event(symbol, book, self._depth, self._clock.time_ns()))

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
