"""Raw-message integrity checks for venues whose ccxt.pro class applies book messages without a
rule the venue publishes.

Each check sees every raw message the exchange method named in `RAW_BOOK_CHECKS` receives,
before ccxt's handler does (`CcxtBookStream._install_raw_check`), and says when a book breaks.
Most keep an `hft_ray.book.OrderBook` per symbol beside ccxt's, under the venue's rules in
`VENUE_BOOK_RULES`, so a gap, a checksum mismatch or a level that cannot be read is found
whatever ccxt made of it. Where ccxt does check a venue's rule (Binance spot and futures
update ids, OKX sequence ids) its exceptions are the invalidations and nothing is registered.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator
from typing import Any, ClassVar, NamedTuple, Protocol, TypeGuard

from hft_ray.book import VENUE_BOOK_RULES, ConsecutiveId, Level, OrderBook, RangeOverlap
from hft_ray.types import MALFORMED_BOOK, SEQUENCE_GAP


class RawBookCheck(Protocol):
    """What `CcxtBookStream` asks of a raw-message check."""

    def observe(self, message: Any) -> tuple[str, str] | None:
        """(symbol, reason) when this message breaks, or finds broken, a book; else None."""

    def valid(self, symbol: str) -> bool:
        """False while the check holds the book of `symbol` broken (until its next snapshot)."""

    def behind(self, symbol: str, nonce: Any) -> bool:
        """True when a book of `symbol` at `nonce` is older than what the stream has already
        delivered: a REST snapshot older than the stream that no buffered update bridged."""

    def restart(self) -> None:
        """The connection is new (resubscribed or reconnected): ccxt starts every book again
        from a fresh snapshot, so nothing broken on the old one holds."""


class _Update(NamedTuple):
    """One snapshot or delta of one book, as `OrderBook` takes it."""

    snapshot: bool
    bids: list[Level]
    asks: list[Level]
    ts_ns: int
    first: int | None = None
    last: int | None = None
    prev: int | None = None
    checksum: int | None = None


def _levels(raw: Any) -> list[Level]:
    """[price, size, ...] rows (strings or numbers, as the venue sends them) as (price, size)."""
    if not isinstance(raw, list) or not all(isinstance(x, list) and len(x) >= 2 for x in raw):
        raise ValueError("levels must be lists of [price, size, ...]")
    return [(x[0], x[1]) for x in raw]


def _ms_to_ns(ms: Any) -> int:
    try:
        return int(ms) * 1_000_000
    except (TypeError, OverflowError):
        raise ValueError(f"timestamp {ms!r:.40}") from None


def _is_int(value: Any) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def _dict(value: Any, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ValueError(f"{what} must be an object")
    return value


class _BookCheck:
    """Keeps an `OrderBook` per symbol from the raw messages; subclasses read their venue's."""

    #: The key of the venue's rules in `VENUE_BOOK_RULES`.
    rules: ClassVar[str]
    #: ccxt merges a new snapshot into the levels it already holds: drop its book first, so the
    #: book ccxt builds from the snapshot holds nothing from before it.
    fresh_ccxt_book: ClassVar[bool] = False

    def __init__(self, exchange: Any) -> None:
        self._exchange = exchange
        self._books: dict[str, OrderBook] = {}

    def _symbol(self, message: dict[str, Any]) -> str | None:
        """The book this message is for; None if it is no book message of this check."""
        raise NotImplementedError

    def _updates(self, message: dict[str, Any]) -> Iterable[_Update]:
        """The message's updates, in order; ValueError if it cannot be read."""
        raise NotImplementedError

    def observe(self, message: Any) -> tuple[str, str] | None:
        """Check one raw message; (symbol, reason) when it breaks the book, finds it broken,
        or cannot be read (`MALFORMED_BOOK`: the book waits for a new snapshot). A message
        that names no book is left to ccxt's own handler."""
        if not isinstance(message, dict):
            return None
        symbol = self._symbol(message)
        if symbol is None:
            return None
        book = self._books.get(symbol)
        if book is None:
            book = self._books[symbol] = OrderBook(VENUE_BOOK_RULES[self.rules])
        reason = ""
        try:
            for u in self._updates(message):
                reason = self._apply(symbol, book, u)
        except (ValueError, TypeError, KeyError):  # the book's error for a level, and ours
            book.invalidate(MALFORMED_BOOK)
            reason = MALFORMED_BOOK
        return (symbol, reason) if reason else None

    def _apply(self, symbol: str, book: OrderBook, u: _Update) -> str:
        if u.snapshot:
            if self.fresh_ccxt_book:
                self._exchange.orderbooks.pop(symbol, None)
            return book.apply_snapshot(u.bids, u.asks, u.last, u.ts_ns, u.checksum)
        return book.apply_delta(
            u.bids, u.asks, u.ts_ns, first=u.first, last=u.last, prev=u.prev, checksum=u.checksum
        )

    def valid(self, symbol: str) -> bool:
        book = self._books.get(symbol)
        return book is None or book.valid

    def behind(self, symbol: str, nonce: Any) -> bool:
        return False  # its snapshots come on the stream itself

    def restart(self) -> None:
        self._books.clear()  # each book starts again at its snapshot on the new connection


class OkxRawChecksum(_BookCheck):
    """OKX's CRC32 over the top 25 levels and `prevSeqId` links, checked on the raw `books`
    messages, since ccxt 4.5.90 applies them without the checksum."""

    rules = "okx"

    def _symbol(self, message: dict[str, Any]) -> str | None:
        if message.get("action") not in ("snapshot", "update"):
            return None
        arg = message.get("arg")
        inst = arg.get("instId") if isinstance(arg, dict) else None
        return self._exchange.safe_symbol(inst) if isinstance(inst, str) else None

    def _updates(self, message: dict[str, Any]) -> Iterator[_Update]:
        data = message.get("data")
        if not isinstance(data, list):
            raise ValueError("data must be a list")
        for entry in data:
            d = _dict(entry, "a book entry")
            yield _Update(
                message["action"] == "snapshot",
                _levels(d.get("bids", [])),
                _levels(d.get("asks", [])),
                _ms_to_ns(d.get("ts", 0)),
                last=d.get("seqId"),
                prev=d.get("prevSeqId"),
                checksum=d.get("checksum"),
            )


class BybitRawSequence(_BookCheck):
    """Bybit v5 `orderbook.{depth}.{symbol}`: each delta's `u` is the previous `u` + 1; a
    `snapshot`, or any message with `u` = 1 (Bybit restarted its service), replaces the book.
    ccxt 4.5.90 checks neither and merges a `u` = 1 delta into the levels it holds.

    Books are those of the exchange's `defaultType` (`options.defaultType: spot` for spot
    books): a raw message names the market id only, which Bybit's spot and linear markets share.
    """

    rules = "bybit"
    fresh_ccxt_book = True

    def _symbol(self, message: dict[str, Any]) -> str | None:
        topic, data = message.get("topic"), message.get("data")
        if not (isinstance(topic, str) and topic.startswith("orderbook.")):
            return None
        market_id = data.get("s") if isinstance(data, dict) else None
        if not isinstance(market_id, str):
            return None
        spot = self._exchange.options.get("defaultType") == "spot"
        return self._exchange.safe_symbol(market_id, None, None, "spot" if spot else "contract")

    def _updates(self, message: dict[str, Any]) -> Iterator[_Update]:
        d = _dict(message["data"], "data")
        u = d.get("u")
        yield _Update(
            message.get("type") == "snapshot" or u == 1,
            _levels(d.get("b", [])),
            _levels(d.get("a", [])),
            _ms_to_ns(message.get("ts", 0)),
            last=u,
        )


class DeribitRawSequence(_BookCheck):
    """Deribit `book.{instrument}.{interval}`: each change's `prev_change_id` is the previous
    notification's `change_id`. ccxt 4.5.90 checks no link and merges a new snapshot into the
    levels it holds."""

    rules = "deribit"
    fresh_ccxt_book = True

    def _symbol(self, message: dict[str, Any]) -> str | None:
        params = message.get("params")
        if not isinstance(params, dict):
            return None
        channel, data = params.get("channel"), params.get("data")
        if not (isinstance(channel, str) and channel.startswith("book.")):
            return None
        name = data.get("instrument_name") if isinstance(data, dict) else None
        return self._exchange.safe_symbol(name) if isinstance(name, str) else None

    @staticmethod
    def _side(raw: Any) -> list[Level]:
        """`[action, price, amount]` rows as (price, amount), a `delete` as amount 0."""
        if not isinstance(raw, list) or not all(isinstance(x, list) and len(x) == 3 for x in raw):
            raise ValueError("levels must be lists of [action, price, amount]")
        rows: list[Any] = [(p, 0 if action == "delete" else q) for action, p, q in raw]
        return rows

    def _updates(self, message: dict[str, Any]) -> Iterator[_Update]:
        d = _dict(message["params"]["data"], "data")
        yield _Update(
            d.get("type") == "snapshot",
            self._side(d.get("bids", [])),
            self._side(d.get("asks", [])),
            _ms_to_ns(d.get("timestamp", 0)),
            last=d.get("change_id"),
            prev=d.get("prev_change_id"),
        )


class CoinbaseRawSequence(_BookCheck):
    """Coinbase Advanced Trade: `sequence_num` counts every message of a connection, whatever
    its channel, by one; ccxt 4.5.90 checks none. A gap breaks every book of the connection
    (the message lost may have been any of theirs) until each book's next `snapshot` event;
    the count starts again at 0 on a new connection and at every snapshot after a gap.

    Registered on `handle_message`: every message of the connection, not only `l2_data`.
    """

    rules = "coinbase"

    def __init__(self, exchange: Any) -> None:
        super().__init__(exchange)
        self._connection: ConsecutiveId | None = None

    def restart(self) -> None:
        super().restart()
        self._connection = None

    def observe(self, message: Any) -> tuple[str, str] | None:
        if not isinstance(message, dict):
            return None
        seq = message.get("sequence_num")
        counted = _is_int(seq)
        gap = False
        if counted and self._connection is not None and seq != 0:
            gap = self._connection.check(None, seq, None) == "gap"
            if gap:
                self._connection = None
                for book in self._books.values():
                    book.invalidate(SEQUENCE_GAP)
            else:
                self._connection.accept(None, seq, None)
        broken = self._l2_data(message) if message.get("channel") == "l2_data" else None
        if counted and self._connection is None and (seq == 0 or any(self._snapshots(message))):
            self._connection = ConsecutiveId()
            self._connection.on_snapshot(seq)
        if broken is None and (gap or self._connection is None):  # books this gap broke
            broken = next(
                ((s, b.invalid_reason) for s, b in self._books.items() if not b.valid), None
            )
        return broken

    @staticmethod
    def _snapshots(message: dict[str, Any]) -> Iterator[bool]:
        events = message.get("events") if message.get("channel") == "l2_data" else None
        for event in events if isinstance(events, list) else ():
            yield isinstance(event, dict) and event.get("type") == "snapshot"

    def _l2_data(self, message: dict[str, Any]) -> tuple[str, str] | None:
        """Apply each event to its product's book; the first (symbol, reason) broken."""
        events = message.get("events")
        if not isinstance(events, list):
            return None
        ts = self._exchange.parse8601(message.get("timestamp"))
        broken = None
        for event in events:
            product = event.get("product_id") if isinstance(event, dict) else None
            if not isinstance(product, str):
                continue
            symbol = self._exchange.safe_symbol(product)
            book = self._books.get(symbol)
            if book is None:
                book = self._books[symbol] = OrderBook(VENUE_BOOK_RULES[self.rules])
            try:
                update = self._update(event, _ms_to_ns(ts or 0))
                reason = self._apply(symbol, book, update)
            except (ValueError, TypeError, KeyError):
                book.invalidate(MALFORMED_BOOK)
                reason = MALFORMED_BOOK
            broken = broken or ((symbol, reason) if reason else None)
        return broken

    @staticmethod
    def _update(event: dict[str, Any], ts_ns: int) -> _Update:
        sides: dict[str, list[Level]] = {"bid": [], "offer": []}
        updates = event.get("updates", [])
        if not isinstance(updates, list):
            raise ValueError("updates must be a list")
        for row in updates:
            r = _dict(row, "an update")
            sides[r["side"]].append((r["price_level"], r["new_quantity"]))
        return _Update(event.get("type") == "snapshot", sides["bid"], sides["offer"], ts_ns)


class KucoinRawSequence:
    """KuCoin spot `/market/level2:{symbol}`: each delta must start at or before the previous
    `sequenceEnd` + 1 and end after it. ccxt 4.5.90 bridges its REST snapshot (`sequence`) into
    the deltas it buffered (`get_cache_index`) but applies every later one without the link.

    The snapshot reaches ccxt by REST, never this method, so the check follows the stream's
    links rather than a book of its own: while ccxt has no book (its `nonce` is None) it is
    buffering a new subscription, whose first delta starts a new chain. With ccxt's bridge, an
    unbroken chain is the whole rule. A delta's levels must also read (`MALFORMED_BOOK`); a
    price of "0" only advances the sequence, as KuCoin documents.
    """

    def __init__(self, exchange: Any) -> None:
        self._exchange = exchange
        self._chains: dict[str, RangeOverlap] = {}
        self._broken: dict[str, str] = {}
        self._buffering: set[str] = set()

    def observe(self, message: Any) -> tuple[str, str] | None:
        if not isinstance(message, dict):
            return None
        topic, data = message.get("topic"), message.get("data")
        if not (isinstance(topic, str) and topic.startswith("/market/level2:")):
            return None  # the Depth5/Depth50 channels send whole books: nothing to link
        if not isinstance(data, dict) or not isinstance(data.get("symbol"), str):
            return None
        symbol = self._exchange.safe_symbol(data["symbol"], None, "-")
        ccxt_book = self._exchange.orderbooks.get(symbol)
        if ccxt_book is None or ccxt_book.get("nonce") is None:
            if symbol not in self._buffering:  # a new subscription: its first delta
                self._buffering.add(symbol)
                self._chains.pop(symbol, None)
                self._broken.pop(symbol, None)
        else:
            self._buffering.discard(symbol)
        if symbol in self._broken:
            return symbol, self._broken[symbol]
        reason = self._link(symbol, data)
        if reason:
            self._broken[symbol] = reason
            return symbol, reason
        return None

    def _link(self, symbol: str, data: dict[str, Any]) -> str:
        first, last = data.get("sequenceStart"), data.get("sequenceEnd")
        try:
            if not (_is_int(first) and _is_int(last)):
                raise ValueError(f"sequence {first!r:.40}..{last!r:.40}")
            sides = _dict(data.get("changes"), "changes")
            for side in (sides.get("bids", []), sides.get("asks", [])):
                for price, size in _levels(side):
                    if (price != "0" and not float(price) > 0) or not float(size) >= 0:
                        raise ValueError(f"level {price!r:.40}, {size!r:.40}")
        except (ValueError, TypeError):
            return MALFORMED_BOOK
        chain = self._chains.get(symbol)
        if chain is None:
            chain = self._chains[symbol] = RangeOverlap()
            chain.on_snapshot(first - 1)
        if chain.check(first, last, None) != "apply":
            return SEQUENCE_GAP
        chain.accept(first, last, None)
        return ""

    def valid(self, symbol: str) -> bool:
        return symbol not in self._broken

    def behind(self, symbol: str, nonce: Any) -> bool:
        return False  # ccxt bridges its snapshot into the buffered deltas, or fails the watch

    def restart(self) -> None:
        self._chains.clear()
        self._broken.clear()
        self._buffering.clear()


def _numbers(side: Any) -> bool:
    """Every level of a side is [price, size, ...] with a price above 0 and a size from 0,
    finite (on the live path of every diff: one `float` per value, nothing more)."""
    if not isinstance(side, list):
        return False
    inf = math.inf
    try:
        for level in side:
            if not (0 < float(level[0]) < inf and 0 <= float(level[1]) < inf):
                return False
    except (ValueError, TypeError, IndexError, KeyError):
        return False
    return True


class BinanceDepthCheck:
    """Binance spot and futures `depthUpdate`: ccxt checks the update-id links itself, but it
    reads a level it cannot parse as a delete (a size of "abc" removes the real level) and
    keeps a NaN or negative one; and when its REST snapshot is older than every diff it
    buffered (Binance warns this can happen), it applies none of them and hands out the old
    snapshot as the book once, before the next diff fails.

    So each diff's levels must read as numbers (price above 0, size from 0), else the book is
    broken (`MALFORMED_BOOK`) until ccxt starts it again on a new connection (`restart`); and
    a book whose nonce is below the highest final update id `u` the stream
    delivered is `behind`: an in-sync book has applied every diff that reached ccxt.
    """

    def __init__(self, exchange: Any) -> None:
        self._exchange = exchange
        self._last_u: dict[str, int] = {}  # symbol -> highest `u` seen
        self._broken: set[str] = set()

    def _symbol(self, market_id: str) -> str | None:
        """The watched book of a market id (spot and swap share ids: ccxt's watched books
        say which is meant)."""
        symbols = [m["symbol"] for m in self._exchange.markets_by_id.get(market_id) or []]
        watched = [s for s in symbols if s in self._exchange.orderbooks]
        return (watched or symbols or [None])[0]

    def observe(self, message: Any) -> tuple[str, str] | None:
        if not (isinstance(message, dict) and message.get("e") == "depthUpdate"):
            return None
        market_id, u = message.get("s"), message.get("u")
        symbol = self._symbol(market_id) if isinstance(market_id, str) else None
        if symbol is None:
            return None
        if _is_int(u):
            self._last_u[symbol] = max(u, self._last_u.get(symbol, 0))
        if not (_numbers(message.get("b", [])) and _numbers(message.get("a", []))):
            self._broken.add(symbol)
        return (symbol, MALFORMED_BOOK) if symbol in self._broken else None

    def valid(self, symbol: str) -> bool:
        return symbol not in self._broken

    def behind(self, symbol: str, nonce: Any) -> bool:
        last = self._last_u.get(symbol)
        return last is not None and _is_int(nonce) and nonce < last

    def restart(self) -> None:
        self._broken.clear()  # the update ids are the venue's, across connections: kept


#: Raw-message checks for exchanges whose ccxt class leaves a published integrity rule unchecked:
#: exchange id -> (the exchange method that receives the raw book messages, the check).
RAW_BOOK_CHECKS: dict[str, tuple[str, Callable[[Any], RawBookCheck]]] = {
    "binance": ("handle_order_book", BinanceDepthCheck),
    "binanceusdm": ("handle_order_book", BinanceDepthCheck),
    "binancecoinm": ("handle_order_book", BinanceDepthCheck),
    "okx": ("handle_order_book", OkxRawChecksum),
    "bybit": ("handle_order_book", BybitRawSequence),
    "deribit": ("handle_order_book", DeribitRawSequence),
    "coinbase": ("handle_message", CoinbaseRawSequence),
    "kucoin": ("handle_order_book", KucoinRawSequence),
}
