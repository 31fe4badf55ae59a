"""A local Binance-spot / OKX-v5 public order book server for tests against real ccxt clients.

`ExchangeServer` speaks each venue's wire format over HTTP and websocket on 127.0.0.1, so
`ccxt.pro.binance` / `ccxt.pro.okx` themselves (not mocks) can be pointed at it through
`ccxt_urls()` / `ccxt_options()` and run their own market loading, snapshot + delta sync and
error handling. Book content is real: the captures in tests/data (Binance NKNUSDT depth deltas
bridged by a REST snapshot; OKX BTC-USDT 'books' snapshot + updates). When a capture runs out
the stream continues with synthetic deltas that keep each venue's rules (Binance: U = last u + 1;
OKX: a fresh snapshot, then updates with a correct CRC32 checksum), so it never ends.

One book per server is "the exchange's truth". It moves one delta per `interval_s` while some
websocket is subscribed and the server is not stalled; every subscriber gets the same deltas
(except where a fault is injected), and every snapshot - Binance REST depth, OKX snapshot frame
- is the truth at that moment, so a client that resubscribes can always resync.

Timestamps (Binance `E`, OKX `ts`) are restamped to the server's clock, strictly increasing, so
a client's book can be matched to the server state by nonce or timestamp (`book_at`).

ccxt calls served (ccxt 4.5.90):
  binance: GET /api/v3/exchangeInfo (load_markets with fetchMarkets.types=['spot']),
           GET /api/v3/depth?symbol=NKNUSDT&limit=1000 (watchOrderBook's snapshot),
           ws /ws/<n> with {"method":"SUBSCRIBE","params":["nknusdt@depth@100ms"],"id":N};
           depthUpdate frames are sent bare (raw-stream format); /stream?streams=... gets the
           combined {"stream","data"} wrapping, as captured.
  okx:     GET /api/v5/public/instruments?instType=SPOT, ws /ws/v5/public with
           {"op":"subscribe","args":[{"channel":"books","instId":"BTC-USDT"}]}, text 'ping'.

Private order endpoints (signed: any signature is accepted, but the API key header must carry
`API_KEY`, and OKX also wants a passphrase), in each venue's wire format:
  binance: POST /api/v3/order (LIMIT + timeInForce=IOC, newClientOrderId, newOrderRespType=FULL),
           GET /api/v3/order (origClientOrderId), DELETE /api/v3/order (origClientOrderId).
  okx:     POST /api/v5/trade/order and /api/v5/trade/batch-orders (ordType=ioc, clOrdId),
           GET /api/v5/trade/order (clOrdId), POST /api/v5/trade/cancel-order (clOrdId),
           GET /api/v5/asset/currencies (what ccxt's load_markets asks once it has keys).
An IOC limit order is matched against the served book at that moment (full fill, partial fill,
or expired with nothing filled) without taking liquidity from it, since the book is the feed's
truth; the taker fee is charged in the asset received. Orders are remembered by client order
id. `fail_next_order` makes the next order meet a fault: a rejection for insufficient balance,
a rate-limit answer, a response held past the client's timeout (the order is still recorded as
matched), or an IOC order the venue reports open until it is cancelled.

Book-frame faults, for tests of what a client makes of bad market data (both venues):
  `corrupt_next_frame(kind)` queues a fault for the next delta frame (one fault per frame):
    negative_ask     the frame also carries an ask at minus the best ask's price (it sorts first)
    negative_bid     ... the best bid's price with its size negated ("-<size>")
    nan_bid          ... a bid at price "NaN"
    non_numeric_qty  ... the best bid's price with size "abc" (ccxt reads it as a delete)
    truncated        the frame's JSON text cut in half
    duplicate        the last delta sent is sent again (the book does not move that tick)
    reorder          the next two deltas are sent in swapped order
  `stale_next_snapshot()` makes the next snapshot served (Binance REST depth, OKX snapshot frame
  or REST books) the book as it was `STALE_STATES` states ago: its lastUpdateId / seqId is below
  that of every delta a client subscribed since then has received, so no buffered delta bridges
  it. Binance leaves it to the client to find that out; OKX's next update links to the current
  book (`prevSeqId`, checksum), not to the stale one.
The truth (`sent_books`, `book_at`) stays what a correct client shows: a bad value rides on a
real delta whose own levels move the truth as usual, the bad level never does; a truncated or
reordered frame carries real deltas, so the truth moves as they say; a duplicate moves nothing;
a stale snapshot is an earlier truth. `faults_sent` lists each fault as sent, with the truth the
frame belongs to (for a stale snapshot, the earlier book it served).
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import functools
import json
import secrets
import socket
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Literal, cast, get_args
from urllib.parse import urlsplit

import ccxt.pro
from aiohttp import WSMsgType, web

from hft_ray.book import okx_checksum
from tests.captures import DATA, http_bodies, ws_frames

Venue = Literal["binance", "okx"]
OrderFault = Literal["insufficient_funds", "rate_limit", "timeout", "rest"]
FrameFault = Literal[
    "negative_ask",
    "negative_bid",
    "nan_bid",
    "non_numeric_qty",
    "truncated",
    "duplicate",
    "reorder",
]
FRAME_FAULTS: tuple[FrameFault, ...] = get_args(FrameFault)
Level = list[str]  # as on the wire: binance [px, sz]; okx [px, sz, liquidated, orders]

BINANCE_ID, BINANCE_SYMBOL, BINANCE_STREAM = "NKNUSDT", "NKN/USDT", "nknusdt@depth"
OKX_ID, OKX_SYMBOL, OKX_CHANNEL = "BTC-USDT", "BTC/USDT", "books"
OKX_BOOK_DEPTH = 400  # levels per side the 'books' channel snapshot carries
TOP = 20  # levels per side kept in each `ServedBook`: the feed's default depth
STALE_STATES = 16  # how many book states a stale snapshot lags behind
API_KEY = "local-test-key"  # the only API key the server accepts
TAKER_FEE = Decimal("0.001")
BINANCE_BTC_ID = "BTCUSDT"
HISTORY = 20_000  # `sent_books` entries kept


# -- captures ---------------------------------------------------------------------------------


@functools.cache
def _binance_capture() -> tuple[dict[str, Any], tuple[dict[str, Any], ...]]:
    """(REST snapshot, depthUpdate objects) for NKNUSDT; the snapshot bridges the deltas."""
    url = f"https://api.binance.com/api/v3/depth?symbol={BINANCE_ID}&limit=1000"
    snapshot = http_bodies(DATA / "binance" / "BINANCE.http.0.0")[url]
    stream = BINANCE_STREAM + "@100ms"
    deltas = tuple(
        f.body["data"]
        for f in ws_frames(DATA / "binance" / "BINANCE.ws.1.0")
        if not f.sent and isinstance(f.body, dict) and f.body.get("stream") == stream
    )
    return snapshot, deltas


@functools.cache
def _okx_capture() -> tuple[dict[str, Any], tuple[dict[str, Any], ...]]:
    """(snapshot data, update data) of the captured 'books' channel for BTC-USDT."""
    snapshot: dict[str, Any] | None = None
    updates = []
    for f in ws_frames(DATA / "okx" / "OKX.ws.1.0"):
        body = f.body
        if f.sent or not isinstance(body, dict) or "data" not in body:
            continue
        if body.get("arg") != {"channel": OKX_CHANNEL, "instId": OKX_ID}:
            continue
        if body.get("action") == "snapshot":
            snapshot = body["data"][0]
        elif snapshot is not None:
            updates.append(body["data"][0])
    assert snapshot is not None, "OKX capture has no BTC-USDT books snapshot"
    return snapshot, tuple(updates)


def _okx_snapshot_sides() -> tuple[_Side, _Side]:
    """The OKX capture's BTC-USDT snapshot as (bids, asks), each level as [px, sz]."""
    snapshot, _ = _okx_capture()
    bids, asks = _Side(descending=True), _Side(descending=False)
    for level in snapshot["bids"]:
        bids.set(level[:2])
    for level in snapshot["asks"]:
        asks.set(level[:2])
    return bids, asks


# -- markets -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Market:
    """One served market's filters, as the venue's wire strings."""

    base: str
    quote: str
    tick: str
    step: str
    min_qty: str
    min_notional: str


_MARKETS: dict[Venue, dict[str, _Market]] = {
    "binance": {
        BINANCE_ID: _Market("NKN", "USDT", "0.00010000", "1.00000000", "1.00000000", "5.00000000")
    },
    "okx": {OKX_ID: _Market("BTC", "USDT", "0.1", "0.00000001", "0.00001", "0")},
}
_BINANCE_BTC = _Market("BTC", "USDT", "0.01000000", "0.00001000", "0.00001000", "5.00000000")


def _binance_symbol_info(market_id: str, m: _Market) -> dict[str, Any]:
    """One `symbols` entry of /api/v3/exchangeInfo."""
    return {
        "symbol": market_id,
        "status": "TRADING",
        "baseAsset": m.base,
        "baseAssetPrecision": 8,
        "quoteAsset": m.quote,
        "quotePrecision": 8,
        "quoteAssetPrecision": 8,
        "baseCommissionPrecision": 8,
        "quoteCommissionPrecision": 8,
        "orderTypes": ["LIMIT", "LIMIT_MAKER", "MARKET", "STOP_LOSS_LIMIT"],
        "icebergAllowed": True,
        "ocoAllowed": True,
        "isSpotTradingAllowed": True,
        "isMarginTradingAllowed": False,
        "filters": [
            {
                "filterType": "PRICE_FILTER",
                "minPrice": m.tick,
                "maxPrice": "1000000.00000000" if m.base == "BTC" else "1000.00000000",
                "tickSize": m.tick,
            },
            {
                "filterType": "LOT_SIZE",
                "minQty": m.min_qty,
                "maxQty": "9000.00000000" if m.base == "BTC" else "9000000.00000000",
                "stepSize": m.step,
            },
            {
                "filterType": "NOTIONAL",
                "minNotional": m.min_notional,
                "applyMinToMarket": True,
                "maxNotional": "9000000.00000000",
                "applyMaxToMarket": False,
                "avgPriceMins": 5,
            },
        ],
        "permissions": [],
        "permissionSets": [["SPOT"]],
        "defaultSelfTradePreventionMode": "EXPIRE_MAKER",
        "allowedSelfTradePreventionModes": ["EXPIRE_TAKER", "EXPIRE_MAKER", "EXPIRE_BOTH"],
    }


# -- orders ------------------------------------------------------------------------------------


@dataclass
class ServedOrder:
    """One order as the venue holds it, in exact decimals."""

    order_id: int
    client_id: str
    market_id: str
    side: Literal["buy", "sell"]
    price: Decimal
    amount: Decimal
    fills: list[tuple[Decimal, Decimal]]  # (price, qty) per level taken
    fee_asset: str  # the asset received: base for a buy, quote for a sell
    created_ms: int
    updated_ms: int
    open: bool = False  # a "rest" fault: the remainder waits until cancelled
    canceled: bool = False

    @property
    def filled(self) -> Decimal:
        return sum((q for _, q in self.fills), Decimal(0))

    @property
    def cost(self) -> Decimal:
        return sum((p * q for p, q in self.fills), Decimal(0))

    def fee_of(self, price: Decimal, qty: Decimal) -> Decimal:
        """The taker fee of one fill, in the asset received."""
        return (qty if self.side == "buy" else price * qty) * TAKER_FEE

    @property
    def fee(self) -> Decimal:
        return sum((self.fee_of(p, q) for p, q in self.fills), Decimal(0))


def _dec(value: Decimal) -> str:
    """A decimal as OKX writes it: plain notation, no trailing zeros."""
    text = format(value, "f")
    return text.rstrip("0").rstrip(".") if "." in text else text


def _fmt8(value: Decimal) -> str:
    """A decimal as Binance writes it: eight places."""
    return format(value, ".8f")


def _now_ms() -> int:
    return int(time.time() * 1000)


# -- the served book ---------------------------------------------------------------------------


class _Side:
    """Levels of one side kept sorted best first, each as its wire strings."""

    def __init__(self, descending: bool) -> None:
        self._sign = -1.0 if descending else 1.0
        self._keys: list[float] = []
        self._levels: dict[float, Level] = {}

    def set(self, level: Level) -> Level | None:
        """Set (size 0: remove) one level; return the level it replaced, for undoing it."""
        key = self._sign * float(level[0])
        old = self._levels.get(key)
        if float(level[1]) == 0.0:
            if self._levels.pop(key, None) is not None:
                del self._keys[bisect.bisect_left(self._keys, key)]
            return old
        if old is None:
            bisect.insort(self._keys, key)
        self._levels[key] = list(level)
        return old

    def copy(self) -> _Side:
        side = _Side(descending=self._sign < 0)
        side._keys, side._levels = list(self._keys), dict(self._levels)
        return side

    def levels(self, n: int | None = None) -> list[Level]:
        keys = self._keys if n is None else self._keys[:n]
        return [list(self._levels[k]) for k in keys]

    def top(self, n: int) -> tuple[tuple[float, float], ...]:
        return tuple((float(lv[0]), float(lv[1])) for lv in self.levels(n))


@dataclass(frozen=True)
class ServedBook:
    """The server's book after one state change, as a client applying it should see it.

    `seq` is what ccxt reports as the book's nonce: Binance `u`, OKX `seqId` (None unless
    `okx_seq_ids`). `ts` is the frame's exchange timestamp in ms (unique). `sent` is False for a
    delta swallowed by `drop_next_delta`.
    """

    seq: int | None
    ts: int
    bids: tuple[tuple[float, float], ...]
    asks: tuple[tuple[float, float], ...]
    sent: bool = True


@dataclass(eq=False)
class _Conn:
    """One websocket: frames are queued and written by one task, so their order is kept."""

    ws: web.WebSocketResponse
    combined: bool = False  # binance /stream: wrap frames as {"stream","data"}
    streams: set[str] = field(default_factory=set)  # binance: subscribed stream names
    live: bool = False  # receives book deltas (okx: after its snapshot was queued)
    needs_snapshot: bool = False  # okx: subscribed, snapshot held back by a stall
    conn_id: str = field(default_factory=lambda: secrets.token_hex(4))
    queue: asyncio.Queue[str] = field(default_factory=asyncio.Queue)
    closed: bool = False

    def send(self, text: str) -> None:
        if not self.closed:
            self.queue.put_nowait(text)


class ExchangeServer:
    """Serves one venue's public order book for one symbol, from captures, with faults on demand.

    Use: `await start()`, create the ccxt exchange with `{'urls': ccxt_urls(), 'options':
    ccxt_options()}`, watch `symbol`; `await stop()` at the end.
    """

    def __init__(
        self,
        venue: Venue,
        *,
        interval_s: float = 0.01,
        okx_seq_ids: bool = False,
        binance_btc_usdt: bool = False,
        hold_s: float = 30.0,
    ) -> None:
        """`okx_seq_ids` adds OKX's newer `prevSeqId`/`seqId` fields (absent in the 2022
        capture); with them ccxt detects a dropped update itself (InvalidNonce).
        `binance_btc_usdt` lists BTC/USDT on Binance too (its book, which never moves, is the
        OKX capture's BTC-USDT snapshot), so both venues can trade one symbol. `hold_s` is how
        long a "timeout" fault holds its response (released early by `stop`)."""
        if venue not in ("binance", "okx"):
            raise ValueError(f"unsupported venue {venue!r}")
        self.venue: Venue = venue
        self.interval_s = interval_s
        self.okx_seq_ids = okx_seq_ids
        self.symbol = BINANCE_SYMBOL if venue == "binance" else OKX_SYMBOL
        self.port = 0
        self.subscriptions = 0
        self.snapshots_served = 0
        self.sent_books: list[ServedBook] = []  # the book after every change (capped), see book_at
        self.rest_requests: list[str] = []  # path?query of every REST request, in order
        # (time.monotonic() on arrival, method, path?query, User-Agent, status) per REST request
        self.rest_log: list[tuple[float, str, str, str, int]] = []
        self.synthetic_deltas = 0  # deltas made up after the capture ran out
        self._bids = _Side(descending=True)
        self._asks = _Side(descending=False)
        self._seq: int | None = None  # binance: last u applied; okx: last seqId
        self._last_ts = 0
        self._cursor = 0  # next captured delta
        self._resnapshotted = False  # okx: the snapshot after the capture ran out was sent
        self._drop_next = False
        self._corrupt_next = False
        self._frame_faults: list[FrameFault] = []
        self._stale_next = False
        self._held: tuple[dict[str, Any], ServedBook] | None = None  # a reorder's first delta
        self._last_delta: dict[str, Any] | None = None  # the last delta payload sent
        # per state change: the book before it and (is bid, price, level replaced) per level
        self._history: deque[tuple[ServedBook, list[tuple[bool, str, Level | None]]]] = deque(
            maxlen=4 * STALE_STATES
        )
        self.faults_sent: list[tuple[FrameFault | Literal["stale_snapshot"], ServedBook]] = []
        self._stalled = False
        self._conns: set[_Conn] = set()
        self._runner: web.AppRunner | None = None
        self._pump: asyncio.Task[None] | None = None
        self._load_initial_book()
        self.hold_s = hold_s
        self.orders: dict[str, ServedOrder] = {}  # by client order id
        self.order_requests = 0  # order placements received, faults included
        self._faults: list[OrderFault] = []
        self._next_order_id = 8_000_000_000
        self._stopping = asyncio.Event()
        self._markets = _MARKETS[venue].copy()
        self._static_books: dict[str, tuple[_Side, _Side]] = {}
        if binance_btc_usdt:
            if venue != "binance":
                raise ValueError("binance_btc_usdt is for a binance server")
            self._markets[BINANCE_BTC_ID] = _BINANCE_BTC
            self._static_books[BINANCE_BTC_ID] = _okx_snapshot_sides()

    # -- lifecycle -----------------------------------------------------------------------------

    async def start(self) -> None:
        """Bind 127.0.0.1 on a free port and start the market clock."""
        app = web.Application()
        if self.venue == "binance":
            app.router.add_get("/api/v3/exchangeInfo", self._binance_exchange_info)
            app.router.add_get("/api/v3/depth", self._binance_depth)
            app.router.add_get("/api/v3/time", self._binance_time)
            app.router.add_get("/api/v3/ping", self._binance_ping)
            app.router.add_post("/api/v3/order", self._binance_create)
            app.router.add_get("/api/v3/order", self._binance_fetch)
            app.router.add_delete("/api/v3/order", self._binance_cancel)
            app.router.add_get("/ws", self._ws_handler)
            app.router.add_get("/ws/{tail:.*}", self._ws_handler)
            app.router.add_get("/stream", self._ws_handler)
        else:
            app.router.add_get("/api/v5/public/instruments", self._okx_instruments)
            app.router.add_get("/api/v5/public/time", self._okx_time)
            app.router.add_get("/api/v5/market/books", self._okx_rest_books)
            app.router.add_post("/api/v5/trade/order", self._okx_create)
            app.router.add_post("/api/v5/trade/batch-orders", self._okx_create)
            app.router.add_get("/api/v5/trade/order", self._okx_fetch)
            app.router.add_post("/api/v5/trade/cancel-order", self._okx_cancel)
            app.router.add_get("/api/v5/asset/currencies", self._okx_currencies)
            app.router.add_get("/ws/v5/public", self._ws_handler)
        app.middlewares.append(self._log_requests)
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        self.port = int(sock.getsockname()[1])
        self._runner = web.AppRunner(app, handle_signals=False)
        await self._runner.setup()
        await web.SockSite(self._runner, sock).start()
        self._pump = asyncio.create_task(self._run_pump())

    async def stop(self) -> None:
        """Release held responses, close every socket, stop the clock and the HTTP server."""
        self._stopping.set()
        if self._pump is not None:
            self._pump.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._pump
            self._pump = None
        await self.disconnect()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    # -- what a ccxt client needs --------------------------------------------------------------

    def ccxt_urls(self) -> dict[str, Any]:
        """Deep-merge into `exchange.urls`: every REST and websocket base points at this server;
        endpoints not served here answer 404, so nothing reaches the real exchange."""
        if self.venue == "okx":
            return {"api": {"rest": self._base("http"), "ws": self._base("ws") + "/ws/v5"}}
        return {"api": self._rewrite(ccxt.pro.binance().describe()["urls"]["api"])}

    def ccxt_options(self) -> dict[str, Any]:
        """Options so ccxt loads only spot markets, and with API keys asks no private endpoint
        this server does not serve (Binance's currency list lives on an unserved host)."""
        if self.venue == "binance":
            return {
                "fetchMarkets": {"types": ["spot"]},
                "fetchMargins": False,
                "fetchCurrencies": False,
            }
        return {"fetchMarkets": {"types": ["spot"]}}

    def book_at(self, nonce: int | None = None, ts: int | None = None) -> ServedBook | None:
        """The server's book whose `seq` is `nonce` (or, if None, whose `ts` is `ts`)."""
        for book in reversed(self.sent_books):
            if (nonce is not None and book.seq == nonce) or (
                nonce is None and ts is not None and book.ts == ts
            ):
                return book
        return None

    @property
    def book(self) -> ServedBook:
        """The server's book now."""
        return self.sent_books[-1]

    # -- faults --------------------------------------------------------------------------------

    def drop_next_delta(self) -> None:
        """The next delta changes the book but reaches no client: a sequence gap (Binance), a
        missing update that only the checksum (or seqId, if enabled) reveals (OKX)."""
        self._drop_next = True

    def corrupt_next_checksum(self) -> None:
        """OKX: send the next update with a wrong checksum (its levels are correct)."""
        if self.venue != "okx":
            raise ValueError("binance depth frames carry no checksum")
        self._corrupt_next = True

    def corrupt_next_frame(self, kind: FrameFault) -> None:
        """Send the next delta frame with fault `kind` (see the module docstring); faults queue
        up, one per frame."""
        if kind not in FRAME_FAULTS:
            raise ValueError(f"unknown frame fault {kind!r}: one of {', '.join(FRAME_FAULTS)}")
        self._frame_faults.append(kind)

    def stale_next_snapshot(self) -> None:
        """Serve the next snapshot as the book was `STALE_STATES` states ago (or at the oldest
        state remembered, if the book has moved less often since the server started)."""
        if not self._history:
            raise ValueError("the book has not moved yet: there is no older book to serve")
        self._stale_next = True

    def stall(self) -> None:
        """Keep sockets open and answering (subscribe, ping) but send no data frames; the book
        does not move meanwhile."""
        self._stalled = True

    def resume(self) -> None:
        """Undo `stall`: data frames continue where they stopped."""
        self._stalled = False

    async def disconnect(self) -> None:
        """Close every open websocket from the server side (close code 1001, going away)."""
        conns = list(self._conns)
        for conn in conns:
            conn.closed = True
        await asyncio.gather(*(self._close(c) for c in conns), return_exceptions=True)

    async def _close(self, conn: _Conn) -> None:
        self._conns.discard(conn)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(conn.ws.close(code=1001, message=b"going away"), 2.0)

    # -- the book's evolution ------------------------------------------------------------------

    def _load_initial_book(self) -> None:
        if self.venue == "binance":
            snapshot, _ = _binance_capture()
            self._apply(snapshot["bids"], snapshot["asks"])
            self._seq = int(snapshot["lastUpdateId"])
        else:
            snapshot, _ = _okx_capture()
            self._apply(snapshot["bids"], snapshot["asks"])
            self._seq = 1_000_000 if self.okx_seq_ids else None
        self._record(sent=True)

    def _apply(self, bids: Iterable[Level], asks: Iterable[Level]) -> None:
        changes = [(True, lv[0], self._bids.set(lv)) for lv in bids]
        changes += [(False, lv[0], self._asks.set(lv)) for lv in asks]
        if self.sent_books:
            self._history.append((self.book, changes))

    def _snapshot_book(self) -> tuple[_Side, _Side, ServedBook]:
        """(bids, asks, state) a snapshot serves: the book now, or after `stale_next_snapshot`
        the book `STALE_STATES` states ago, rebuilt by undoing the changes since."""
        if not self._stale_next:
            return self._bids, self._asks, self.book
        self._stale_next = False
        bids, asks = self._bids.copy(), self._asks.copy()
        undone = list(self._history)[-STALE_STATES:]
        for _, changes in reversed(undone):
            for is_bid, price, old in reversed(changes):
                (bids if is_bid else asks).set(old if old is not None else [price, "0"])
        state = undone[0][0]
        self.faults_sent.append(("stale_snapshot", state))
        return bids, asks, state

    def _next_ts(self) -> int:
        self._last_ts = max(int(time.time() * 1000), self._last_ts + 1)
        return self._last_ts

    def _record(self, sent: bool) -> None:
        self.sent_books.append(
            ServedBook(self._seq, self._next_ts(), self._bids.top(TOP), self._asks.top(TOP), sent)
        )
        if len(self.sent_books) > 2 * HISTORY:
            del self.sent_books[:-HISTORY]

    async def _run_pump(self) -> None:
        """The market clock: one delta per interval while someone is subscribed."""
        while True:
            await asyncio.sleep(self.interval_s)
            if self._stalled:
                continue
            for conn in [c for c in self._conns if c.needs_snapshot]:
                self._send_okx_snapshot(conn)
            if any(c.live for c in self._conns):
                self._step()

    def _step(self) -> None:
        if self._frame_faults[:1] == ["duplicate"] and self._last_delta is not None:
            self._frame_faults.pop(0)
            self.faults_sent.append(("duplicate", self.book))
            self._broadcast(self._last_delta)
            return
        if self.venue == "binance":
            self._step_binance()
        else:
            self._step_okx()

    def _take_drop(self) -> bool:
        drop, self._drop_next = self._drop_next, False
        return drop

    def _step_binance(self) -> None:
        _, captured = _binance_capture()
        assert self._seq is not None
        if self._cursor < len(captured):
            delta = dict(captured[self._cursor])
            self._cursor += 1
            if delta["u"] <= self._seq:  # already in the snapshot: on the wire, changes nothing
                delta["E"] = self._last_ts
                self._broadcast(delta)
                return
        else:
            delta = self._synthetic_binance()
        drop = self._take_drop()
        self._apply(delta["b"], delta["a"])
        self._seq = int(delta["u"])
        self._record(sent=not drop)
        delta["E"] = self._last_ts
        if not drop:
            self._send_delta(delta)

    def _synthetic_binance(self) -> dict[str, Any]:
        """A depthUpdate continuing the ids (U = last u + 1) that moves one top-3 level's size."""
        assert self._seq is not None
        k = self.synthetic_deltas
        self.synthetic_deltas += 1
        side = self._bids if k % 2 == 0 else self._asks
        price, size = side.levels(3)[(k // 2) % 3][:2]
        step = (13, -7, 5, -3)[(k // 6) % 4]
        new_size = f"{max(1, int(float(size)) + step):.8f}"
        first = self._seq + 1
        return {
            "e": "depthUpdate",
            "E": 0,
            "s": BINANCE_ID,
            "U": first,
            "u": first + k % 3,
            "b": [[price, new_size]] if side is self._bids else [],
            "a": [[price, new_size]] if side is self._asks else [],
        }

    def _send_delta(self, payload: dict[str, Any]) -> None:
        """Send one delta that moved the book to `self.book`, meeting the next frame fault."""
        if self._held is not None:  # a reorder: this delta overtakes the one held back
            (held, state), self._held = self._held, None
            self.faults_sent.append(("reorder", state))
            self._broadcast(payload)
            self._broadcast(held)
            self._last_delta = held
            return
        fault = self._frame_faults.pop(0) if self._frame_faults else None
        if fault == "reorder":
            self._held = (payload, self.book)
            return
        self._last_delta = payload
        if fault is None:
            self._broadcast(payload)
            return
        self.faults_sent.append((fault, self.book))
        if fault == "truncated":
            self._broadcast(payload, truncated=True)
        elif fault == "duplicate":  # none sent since the last snapshot: this one, twice
            self._broadcast(payload)
            self._broadcast(payload)
        else:
            self._broadcast(self._with_bad_level(payload, fault))

    def _with_bad_level(self, payload: dict[str, Any], fault: FrameFault) -> dict[str, Any]:
        """`payload` with one bad level appended (after its own, so it is applied last)."""
        bids_key, asks_key = ("b", "a") if self.venue == "binance" else ("bids", "asks")
        tail = [] if self.venue == "binance" else ["0", "1"]  # okx: liquidated orders, orders
        bid_px, bid_sz = self._bids.levels(1)[0][:2]
        ask_px, ask_sz = self._asks.levels(1)[0][:2]
        key, level = {
            "negative_ask": (asks_key, ["-" + ask_px, ask_sz]),
            "negative_bid": (bids_key, [bid_px, "-" + bid_sz]),
            "nan_bid": (bids_key, ["NaN", bid_sz]),
            "non_numeric_qty": (bids_key, [bid_px, "abc"]),
        }[fault]
        return {**payload, key: [*payload[key], level + tail]}

    def _broadcast(self, payload: dict[str, Any], truncated: bool = False) -> None:
        """One delta to every live socket, in its venue's frame (Binance: bare, or wrapped as
        {"stream","data"} on /stream)."""
        if self.venue == "binance":
            bare = json.dumps(payload, separators=(",", ":"))
            stream = BINANCE_STREAM + "@100ms"
            wrapped = json.dumps({"stream": stream, "data": payload}, separators=(",", ":"))
        else:
            bare = wrapped = self._okx_frame("update", payload)
        for conn in self._conns:
            if conn.live:
                text = wrapped if conn.combined else bare
                conn.send(text[: len(text) // 2] if truncated else text)

    def _step_okx(self) -> None:
        _, captured = _okx_capture()
        if self._cursor < len(captured):
            update = captured[self._cursor]
            self._cursor += 1
            bids, asks = update["bids"], update["asks"]
        elif not self._resnapshotted:
            # the capture ran out: start the synthetic part from a fresh snapshot for everyone
            self._resnapshotted = True
            for conn in [c for c in self._conns if c.live]:
                self._send_okx_snapshot(conn)
            return
        else:
            bids, asks = self._synthetic_okx()
        drop = self._take_drop()
        self._apply(bids, asks)
        prev = self._seq
        if self._seq is not None:
            self._seq += 1 + len(self.sent_books) % 3  # OKX seqIds are not consecutive
        self._record(sent=not drop)
        if drop:
            return
        checksum = self._checksum()
        if self._corrupt_next:
            self._corrupt_next = False
            checksum = checksum + 1 if checksum < 2**31 - 1 else checksum - 1
        data: dict[str, Any] = {
            "asks": asks,
            "bids": bids,
            "ts": str(self._last_ts),
            "checksum": checksum,
        }
        if self._seq is not None:
            data["prevSeqId"], data["seqId"] = prev, self._seq
        self._send_delta(data)

    def _synthetic_okx(self) -> tuple[list[Level], list[Level]]:
        """An update moving one top-3 level's size by a few lots (prices and counts kept)."""
        k = self.synthetic_deltas
        self.synthetic_deltas += 1
        side = self._bids if k % 2 == 0 else self._asks
        level = side.levels(3)[(k // 2) % 3]
        step = Decimal((13, -7, 5, -3)[(k // 6) % 4]) * Decimal("0.0001")
        size = max(Decimal(level[1]) + step, Decimal("0.00001"))
        level[1] = format(size.normalize(), "f")
        return ([level], []) if side is self._bids else ([], [level])

    def _checksum(self, bids: _Side | None = None, asks: _Side | None = None) -> int:
        """OKX's CRC32 over the top 25 levels of a book (default: now), as the project
        computes it."""
        top_bids = [(lv[0], lv[1]) for lv in (bids or self._bids).levels(25)]
        top_asks = [(lv[0], lv[1]) for lv in (asks or self._asks).levels(25)]
        return okx_checksum(top_bids, top_asks)

    def _okx_frame(self, action: str, data: dict[str, Any]) -> str:
        arg = {"channel": OKX_CHANNEL, "instId": OKX_ID}
        return json.dumps({"arg": arg, "action": action, "data": [data]}, separators=(",", ":"))

    def _send_okx_snapshot(self, conn: _Conn) -> None:
        """The book now, as the 'books' channel's snapshot frame; the socket then gets updates."""
        bids, asks, state = self._snapshot_book()
        data: dict[str, Any] = {
            "asks": asks.levels(OKX_BOOK_DEPTH),
            "bids": bids.levels(OKX_BOOK_DEPTH),
            "ts": str(state.ts),
            "checksum": self._checksum(bids, asks),
        }
        if state.seq is not None:
            data["prevSeqId"], data["seqId"] = -1, state.seq
        conn.needs_snapshot = False
        conn.live = True
        conn.send(self._okx_frame("snapshot", data))
        self.snapshots_served += 1

    # -- websocket -----------------------------------------------------------------------------

    async def _ws_handler(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(compress=False)
        await ws.prepare(request)
        conn = _Conn(ws, combined=request.path.startswith("/stream"))
        if self.venue == "binance":  # streams named in the URL are subscribed on connect
            tail = request.match_info.get("tail", "")
            named = [*request.query.get("streams", "").split("/"), tail]
            conn.streams.update(s for s in named if s)
            conn.live = any(self._is_our_depth(s) for s in conn.streams)
        self._conns.add(conn)
        writer = asyncio.create_task(self._write(conn))
        try:
            async for msg in ws:
                if msg.type == WSMsgType.TEXT:
                    if self.venue == "binance":
                        self._on_binance_text(conn, msg.data)
                    else:
                        self._on_okx_text(conn, msg.data)
        finally:
            conn.closed = True
            self._conns.discard(conn)
            writer.cancel()
        return ws

    async def _write(self, conn: _Conn) -> None:
        while True:
            text = await conn.queue.get()
            if conn.closed:
                continue
            try:
                await conn.ws.send_str(text)
            except Exception:  # the peer went away; the handler cleans up
                conn.closed = True

    @staticmethod
    def _is_our_depth(stream: str) -> bool:
        return stream == BINANCE_STREAM or stream.startswith(BINANCE_STREAM + "@")

    def _on_binance_text(self, conn: _Conn, text: str) -> None:
        try:
            request = json.loads(text)
            method, params, req_id = request["method"], request.get("params", []), request["id"]
            if not isinstance(params, list):
                raise TypeError("params must be a list")
        except (ValueError, KeyError, TypeError):
            conn.send(json.dumps({"error": {"code": 3, "msg": "Invalid JSON"}, "id": None}))
            return
        if method == "SUBSCRIBE":
            conn.streams.update(params)
            self.subscriptions += 1
            conn.send(json.dumps({"result": None, "id": req_id}))
        elif method == "UNSUBSCRIBE":
            conn.streams.difference_update(params)
            conn.send(json.dumps({"result": None, "id": req_id}))
        elif method == "LIST_SUBSCRIPTIONS":
            conn.send(json.dumps({"result": sorted(conn.streams), "id": req_id}))
        else:
            error = {"code": 1, "msg": f"Unknown method {method}"}
            conn.send(json.dumps({"error": error, "id": req_id}))
        conn.live = any(self._is_our_depth(s) for s in conn.streams)

    def _on_okx_text(self, conn: _Conn, text: str) -> None:
        if text == "ping":
            conn.send("pong")
            return
        try:
            request = json.loads(text)
            op, args = request["op"], request["args"]
        except (ValueError, KeyError, TypeError):
            self._okx_error(conn, "60012", f"Illegal request: {text}")
            return
        if op not in ("subscribe", "unsubscribe"):
            self._okx_error(conn, "60012", f"Illegal request: {text}")
            return
        if op == "subscribe":
            self.subscriptions += 1
        for arg in args:
            if arg != {"channel": OKX_CHANNEL, "instId": OKX_ID}:
                channel, inst = arg.get("channel"), arg.get("instId")
                msg = f"Wrong URL or channel:{channel},instId:{inst} doesn't exist."
                self._okx_error(conn, "60018", msg)
                continue
            conn.send(json.dumps({"event": op, "arg": arg, "connId": conn.conn_id}))
            if op == "unsubscribe":
                conn.live = conn.needs_snapshot = False
            elif self._stalled:
                conn.needs_snapshot = True
            else:
                self._send_okx_snapshot(conn)

    def _okx_error(self, conn: _Conn, code: str, msg: str) -> None:
        conn.send(json.dumps({"event": "error", "code": code, "msg": msg, "connId": conn.conn_id}))

    # -- REST ----------------------------------------------------------------------------------

    @web.middleware
    async def _log_requests(self, request: web.Request, handler: Any) -> web.StreamResponse:
        arrived = time.monotonic()
        rest = request.headers.get("Upgrade", "").lower() != "websocket"
        if rest:
            self.rest_requests.append(request.path_qs)
        response: web.StreamResponse = await handler(request)
        if rest:
            agent = request.headers.get("User-Agent", "")
            self.rest_log.append((arrived, request.method, request.path_qs, agent, response.status))
        return response

    async def _binance_exchange_info(self, request: web.Request) -> web.Response:
        """GET /api/v3/exchangeInfo: the served symbols, with the fields ccxt's parse_market
        reads."""
        symbols = [_binance_symbol_info(i, m) for i, m in self._markets.items()]
        rate_limits = [
            {
                "rateLimitType": "REQUEST_WEIGHT",
                "interval": "MINUTE",
                "intervalNum": 1,
                "limit": 6000,
            },
            {"rateLimitType": "ORDERS", "interval": "SECOND", "intervalNum": 10, "limit": 100},
        ]
        return web.json_response(
            {
                "timezone": "UTC",
                "serverTime": int(time.time() * 1000),
                "rateLimits": rate_limits,
                "exchangeFilters": [],
                "symbols": symbols,
            }
        )

    async def _binance_depth(self, request: web.Request) -> web.Response:
        """GET /api/v3/depth: the book now, lastUpdateId = the last u applied."""
        if request.query.get("symbol") != BINANCE_ID:
            return web.json_response({"code": -1121, "msg": "Invalid symbol."}, status=400)
        try:
            limit = min(int(request.query.get("limit", "100")), 5000)
        except ValueError:
            return web.json_response({"code": -1100, "msg": "Illegal characters."}, status=400)
        self.snapshots_served += 1
        bids, asks, state = self._snapshot_book()
        body = {"lastUpdateId": state.seq, "bids": bids.levels(limit), "asks": asks.levels(limit)}
        return web.json_response(body)

    async def _binance_time(self, request: web.Request) -> web.Response:
        return web.json_response({"serverTime": int(time.time() * 1000)})

    async def _binance_ping(self, request: web.Request) -> web.Response:
        return web.json_response({})

    async def _okx_instruments(self, request: web.Request) -> web.Response:
        """GET /api/v5/public/instruments: BTC-USDT for SPOT, nothing for other types."""
        inst_type = request.query.get("instType")
        if inst_type not in ("SPOT", "MARGIN", "SWAP", "FUTURES", "OPTION"):
            return web.json_response({"code": "51000", "msg": "Parameter instType error"})
        data = []
        if inst_type == "SPOT":
            data.append(
                {
                    "alias": "",
                    "baseCcy": "BTC",
                    "category": "1",
                    "ctMult": "",
                    "ctType": "",
                    "ctVal": "",
                    "ctValCcy": "",
                    "expTime": "",
                    "instFamily": "",
                    "instId": OKX_ID,
                    "instType": "SPOT",
                    "lever": "10",
                    "listTime": "1548133413000",
                    "lotSz": "0.00000001",
                    "maxIcebergSz": "9999999999.0000000000000000",
                    "maxLmtAmt": "1000000",
                    "maxLmtSz": "9999999999",
                    "maxMktAmt": "1000000",
                    "maxMktSz": "1000000",
                    "maxStopSz": "1000000",
                    "maxTriggerSz": "9999999999.0000000000000000",
                    "maxTwapSz": "9999999999.0000000000000000",
                    "minSz": "0.00001",
                    "optType": "",
                    "quoteCcy": "USDT",
                    "settleCcy": "",
                    "state": "live",
                    "stk": "",
                    "tickSz": "0.1",
                    "uly": "",
                }
            )
        return web.json_response({"code": "0", "data": data, "msg": ""})

    async def _okx_time(self, request: web.Request) -> web.Response:
        return web.json_response({"code": "0", "data": [{"ts": str(int(time.time() * 1000))}]})

    async def _okx_rest_books(self, request: web.Request) -> web.Response:
        """GET /api/v5/market/books (ccxt fetch_order_book): the book now, `sz` levels."""
        if request.query.get("instId") != OKX_ID:
            return web.json_response({"code": "51001", "data": [], "msg": "Instrument ID error"})
        depth = min(int(request.query.get("sz", "1")), OKX_BOOK_DEPTH)
        bids, asks, state = self._snapshot_book()
        data = {"asks": asks.levels(depth), "bids": bids.levels(depth), "ts": str(state.ts)}
        return web.json_response({"code": "0", "data": [data], "msg": ""})

    # -- orders: shared ------------------------------------------------------------------------

    def trading_book(self, symbol: str) -> tuple[list[Level], list[Level]]:
        """(bids, asks) that an order on `symbol` (unified, e.g. BTC/USDT) is matched against."""
        for market_id, m in self._markets.items():
            if f"{m.base}/{m.quote}" == symbol:
                bids, asks = self._static_books.get(market_id, (self._bids, self._asks))
                return bids.levels(), asks.levels()
        raise KeyError(f"{self.venue} serves no market {symbol}")

    def fail_next_order(self, fault: OrderFault) -> None:
        """Make the next order placed meet `fault` (faults queue up, one per order):
        `insufficient_funds` rejects it with the venue's balance error; `rate_limit` answers
        429 without placing it; `timeout` places and matches it but holds the response for
        `hold_s`; `rest` leaves its unfilled remainder open until it is cancelled."""
        self._faults.append(fault)

    def _take_fault(self) -> OrderFault | None:
        return self._faults.pop(0) if self._faults else None

    async def _hold(self) -> None:
        """Sit on a response past any client timeout; `stop` lets it go."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), self.hold_s)

    def _lot_error(self, market: _Market, price: Decimal, amount: Decimal) -> str:
        """Which filter the order breaks ('' if none): 'price' or 'amount'."""
        if amount <= 0 or amount % Decimal(market.step) or amount < Decimal(market.min_qty):
            return "amount"
        if price <= 0 or price % Decimal(market.tick):
            return "price"
        return ""

    def _place(
        self,
        market_id: str,
        side: Literal["buy", "sell"],
        price: Decimal,
        amount: Decimal,
        client_id: str,
        rest: bool,
    ) -> ServedOrder:
        """Match an IOC limit order against the book served now and remember it."""
        market = self._markets[market_id]
        bids, asks = self.trading_book(f"{market.base}/{market.quote}")
        step = Decimal(market.step)
        fills: list[tuple[Decimal, Decimal]] = []
        left = amount
        for level in asks if side == "buy" else bids:
            px, qty = Decimal(level[0]), Decimal(level[1])
            if left <= 0 or (px > price if side == "buy" else px < price):
                break
            take = min(qty, left) // step * step
            if take <= 0:
                break
            fills.append((px, take))
            left -= take
        self._next_order_id += 1
        now = _now_ms()
        order = ServedOrder(
            order_id=self._next_order_id,
            client_id=client_id,
            market_id=market_id,
            side=side,
            price=price,
            amount=amount,
            fills=fills,
            fee_asset=market.base if side == "buy" else market.quote,
            created_ms=now,
            updated_ms=now,
            open=rest and left > 0,
        )
        self.orders[client_id] = order
        return order

    def _find(
        self, market_id: str | None, client_id: str | None, order_id: str | None
    ) -> ServedOrder | None:
        if client_id:
            order = self.orders.get(client_id)
        else:
            order = next((o for o in self.orders.values() if str(o.order_id) == order_id), None)
        return order if order is not None and order.market_id == market_id else None

    def _cancel(self, order: ServedOrder | None) -> bool:
        """Cancel an open order; False if there is none to cancel."""
        if order is None or not order.open:
            return False
        order.open, order.canceled, order.updated_ms = False, True, _now_ms()
        return True

    # -- orders: binance -----------------------------------------------------------------------

    @staticmethod
    def _binance_error(code: int, msg: str, status: int = 400) -> web.Response:
        return web.json_response({"code": code, "msg": msg}, status=status)

    def _binance_auth(self, request: web.Request, params: dict[str, str]) -> web.Response | None:
        """A SIGNED endpoint's checks: the key header, then timestamp and signature present."""
        key = request.headers.get("X-MBX-APIKEY")
        if not key:
            return self._binance_error(-2014, "API-key format invalid.", status=401)
        if key != API_KEY:
            return self._binance_error(
                -2015, "Invalid API-key, IP, or permissions for action.", status=401
            )
        for name in ("timestamp", "signature"):
            if not params.get(name):
                return self._binance_error(
                    -1102,
                    f"Mandatory parameter '{name}' was not sent, was empty/null, or malformed.",
                )
        return None

    def _binance_status(self, o: ServedOrder) -> str:
        if o.filled == o.amount:
            return "FILLED"
        if o.open:
            return "PARTIALLY_FILLED" if o.filled else "NEW"
        return "CANCELED" if o.canceled else "EXPIRED"  # an IOC remainder expires

    def _binance_order(self, o: ServedOrder) -> dict[str, Any]:
        return {
            "symbol": o.market_id,
            "orderId": o.order_id,
            "orderListId": -1,
            "clientOrderId": o.client_id,
            "price": _fmt8(o.price),
            "origQty": _fmt8(o.amount),
            "executedQty": _fmt8(o.filled),
            "cummulativeQuoteQty": _fmt8(o.cost),
            "status": self._binance_status(o),
            "timeInForce": "IOC",
            "type": "LIMIT",
            "side": o.side.upper(),
        }

    async def _binance_create(self, request: web.Request) -> web.Response:
        """POST /api/v3/order, answered as newOrderRespType=FULL (with its fills)."""
        params = {k: str(v) for k, v in (await request.post()).items()}
        denied = self._binance_auth(request, params)
        if denied is not None:
            return denied
        self.order_requests += 1
        fault = self._take_fault()
        if fault == "rate_limit":
            return web.json_response(
                {
                    "code": -1003,
                    "msg": "Too many requests; current limit of IP(127.0.0.1) is 6000 requests "
                    "per minute. Please use the websocket for live updates to avoid polling "
                    "the API.",
                },
                status=429,
                headers={"Retry-After": "1"},
            )
        market_id = params.get("symbol", "")
        market = self._markets.get(market_id)
        if market is None:
            return self._binance_error(-1121, "Invalid symbol.")
        if params.get("type") != "LIMIT" or params.get("timeInForce") != "IOC":
            return self._binance_error(-1115, "Invalid timeInForce.")  # only IOC limits here
        side = params.get("side", "").lower()
        if side not in ("buy", "sell"):
            return self._binance_error(-1117, "Invalid side.")
        try:
            price, amount = Decimal(params["price"]), Decimal(params["quantity"])
        except (KeyError, ArithmeticError):
            return self._binance_error(-1100, "Illegal characters found in a parameter.")
        client_id = params.get("newClientOrderId") or secrets.token_hex(11)
        if client_id in self.orders:
            return self._binance_error(-2010, "Duplicate order sent.")
        if fault == "insufficient_funds":
            return self._binance_error(
                -2010, "Account has insufficient balance for requested action."
            )
        broken = self._lot_error(market, price, amount)
        if broken:
            name = "LOT_SIZE" if broken == "amount" else "PRICE_FILTER"
            return self._binance_error(-1013, f"Filter failure: {name}")
        o = self._place(market_id, cast(Any, side), price, amount, client_id, fault == "rest")
        body = {
            **self._binance_order(o),
            "transactTime": o.created_ms,
            "origQuoteOrderQty": "0.00000000",
            "workingTime": o.created_ms,
            "selfTradePreventionMode": "EXPIRE_MAKER",
            "fills": [
                {
                    "price": _fmt8(px),
                    "qty": _fmt8(qty),
                    "commission": _fmt8(o.fee_of(px, qty)),
                    "commissionAsset": o.fee_asset,
                    "tradeId": o.order_id * 100 + i,
                }
                for i, (px, qty) in enumerate(o.fills)
            ],
        }
        if fault == "timeout":
            await self._hold()
        return web.json_response(body)

    async def _binance_fetch(self, request: web.Request) -> web.Response:
        """GET /api/v3/order by origClientOrderId (or orderId); no fills or commissions."""
        params = dict(request.query)
        denied = self._binance_auth(request, params)
        if denied is not None:
            return denied
        o = self._find(params.get("symbol"), params.get("origClientOrderId"), params.get("orderId"))
        if o is None:
            return self._binance_error(-2013, "Order does not exist.")
        body = {
            **self._binance_order(o),
            "stopPrice": "0.00000000",
            "icebergQty": "0.00000000",
            "time": o.created_ms,
            "updateTime": o.updated_ms,
            "isWorking": True,
            "workingTime": o.created_ms,
            "origQuoteOrderQty": "0.00000000",
            "selfTradePreventionMode": "EXPIRE_MAKER",
        }
        return web.json_response(body)

    async def _binance_cancel(self, request: web.Request) -> web.Response:
        """DELETE /api/v3/order: an open order is cancelled; anything else is unknown."""
        params = dict(request.query)
        denied = self._binance_auth(request, params)
        if denied is not None:
            return denied
        o = self._find(params.get("symbol"), params.get("origClientOrderId"), params.get("orderId"))
        if o is None or not self._cancel(o):
            return self._binance_error(-2011, "Unknown order sent.")
        body = {
            **self._binance_order(o),
            "origClientOrderId": o.client_id,
            "clientOrderId": secrets.token_hex(11),  # the cancel request's own id
            "transactTime": o.updated_ms,
            "origQuoteOrderQty": "0.00000000",
            "selfTradePreventionMode": "EXPIRE_MAKER",
        }
        return web.json_response(body)

    # -- orders: okx ---------------------------------------------------------------------------

    def _okx_auth(self, request: web.Request) -> web.Response | None:
        """A private endpoint's header checks, each with OKX's own code (HTTP 401)."""
        for header, code in (
            ("OK-ACCESS-KEY", "50103"),
            ("OK-ACCESS-SIGN", "50106"),
            ("OK-ACCESS-TIMESTAMP", "50107"),
            ("OK-ACCESS-PASSPHRASE", "50104"),
        ):
            if not request.headers.get(header):
                msg = f'Request header "{header}" can not be empty.'
                return web.json_response({"msg": msg, "code": code}, status=401)
        if request.headers["OK-ACCESS-KEY"] != API_KEY:
            return web.json_response({"msg": "Invalid OK-ACCESS-KEY", "code": "50111"}, status=401)
        return None

    @staticmethod
    def _okx_reply(data: list[dict[str, Any]]) -> web.Response:
        """A trade endpoint's answer: code 0 if every item succeeded, 1 if none did, else 2."""
        failed = sum(d["sCode"] != "0" for d in data)
        code = "0" if not failed else ("1" if failed == len(data) else "2")
        msg = {"0": "", "1": "All operations failed", "2": "Bulk operation partially succeeded"}
        now_us = str(time.time_ns() // 1000)
        body = {"code": code, "msg": msg[code], "data": data, "inTime": now_us, "outTime": now_us}
        return web.json_response(body)

    def _okx_ack(
        self, client_id: str, order_id: str, code: str = "0", msg: str = ""
    ) -> dict[str, Any]:
        return {
            "clOrdId": client_id,
            "ordId": order_id,
            "tag": "",
            "ts": str(_now_ms()),
            "sCode": code,
            "sMsg": msg,
        }

    def _okx_place_one(self, req: dict[str, Any], fault: OrderFault | None) -> dict[str, Any]:
        client_id = str(req.get("clOrdId") or "")
        market_id = str(req.get("instId", ""))
        market = self._markets.get(market_id)
        if market is None:
            return self._okx_ack(client_id, "", "51001", "Instrument ID does not exist.")
        for field_name, wanted in (("ordType", "ioc"), ("tdMode", "cash")):
            if req.get(field_name) != wanted:  # only IOC limits in a cash account here
                return self._okx_ack(client_id, "", "51000", f"Parameter {field_name} error")
        side = req.get("side")
        if side not in ("buy", "sell"):
            return self._okx_ack(client_id, "", "51000", "Parameter side error")
        if client_id and client_id in self.orders:
            return self._okx_ack(client_id, "", "51016", "Duplicated clOrdId")
        if fault == "insufficient_funds":
            ccy = market.quote if side == "buy" else market.base
            msg = f"Order failed. Insufficient {ccy} balance in account."
            return self._okx_ack(client_id, "", "51008", msg)
        try:
            price, amount = Decimal(str(req["px"])), Decimal(str(req["sz"]))
        except (KeyError, ArithmeticError):
            return self._okx_ack(client_id, "", "51000", "Parameter sz error")
        broken = self._lot_error(market, price, amount)
        if broken == "amount":
            msg = "Order quantity must be a multiple of the lot size."
            return self._okx_ack(client_id, "", "51121", msg)
        if broken == "price":
            return self._okx_ack(client_id, "", "51000", "Parameter px error")
        client_id = client_id or secrets.token_hex(8)
        o = self._place(market_id, side, price, amount, client_id, fault == "rest")
        return self._okx_ack(o.client_id, str(o.order_id), "0", "Order placed")

    async def _okx_create(self, request: web.Request) -> web.Response:
        """POST /api/v5/trade/order (one order) or /api/v5/trade/batch-orders (a list)."""
        denied = self._okx_auth(request)
        if denied is not None:
            return denied
        body = await request.json()
        self.order_requests += 1
        fault = self._take_fault()
        if fault == "rate_limit":
            return web.json_response({"msg": "Too Many Requests", "code": "50011"}, status=429)
        items = body if isinstance(body, list) else [body]
        reply = self._okx_reply([self._okx_place_one(item, fault) for item in items])
        if fault == "timeout":
            await self._hold()
        return reply

    def _okx_order(self, o: ServedOrder) -> dict[str, Any]:
        if o.filled == o.amount:
            state = "filled"
        elif o.open:
            state = "partially_filled" if o.filled else "live"
        else:
            state = "canceled"  # an IOC remainder, or cancelled by request
        last_px, last_sz = o.fills[-1] if o.fills else (None, Decimal(0))
        return {
            "instType": "SPOT",
            "instId": o.market_id,
            "tgtCcy": "",
            "ccy": "",
            "ordId": str(o.order_id),
            "clOrdId": o.client_id,
            "tag": "",
            "px": _dec(o.price),
            "pxUsd": "",
            "pxVol": "",
            "pxType": "",
            "sz": _dec(o.amount),
            "pnl": "0",
            "ordType": "ioc",
            "side": o.side,
            "posSide": "net",
            "tdMode": "cash",
            "accFillSz": _dec(o.filled),
            "fillPx": _dec(last_px) if last_px is not None else "",
            "tradeId": str(o.order_id * 100 + len(o.fills)) if o.fills else "",
            "fillSz": _dec(last_sz),
            "fillTime": str(o.updated_ms) if o.fills else "",
            "avgPx": _dec(o.cost / o.filled) if o.filled else "",
            "state": state,
            "stpId": "",
            "stpMode": "cancel_maker",
            "lever": "",
            "attachAlgoClOrdId": "",
            "tpTriggerPx": "",
            "tpTriggerPxType": "",
            "tpOrdPx": "",
            "slTriggerPx": "",
            "slTriggerPxType": "",
            "slOrdPx": "",
            "attachAlgoOrds": [],
            "feeCcy": o.fee_asset,
            "fee": _dec(-o.fee) if o.fee else "0",  # OKX: the fee charged is negative
            "rebateCcy": self._markets[o.market_id].quote,
            "rebate": "0",
            "source": "",
            "category": "normal",
            "reduceOnly": "false",
            "isTpLimit": "false",
            "cancelSource": "",
            "cancelSourceReason": "",
            "quickMgnType": "",
            "algoClOrdId": "",
            "algoId": "",
            "uTime": str(o.updated_ms),
            "cTime": str(o.created_ms),
        }

    async def _okx_fetch(self, request: web.Request) -> web.Response:
        """GET /api/v5/trade/order by clOrdId (or ordId)."""
        denied = self._okx_auth(request)
        if denied is not None:
            return denied
        q = request.query
        o = self._find(q.get("instId"), q.get("clOrdId"), q.get("ordId"))
        if o is None:
            return web.json_response({"code": "51603", "msg": "Order does not exist", "data": []})
        return web.json_response({"code": "0", "msg": "", "data": [self._okx_order(o)]})

    async def _okx_cancel(self, request: web.Request) -> web.Response:
        """POST /api/v5/trade/cancel-order: an open order is cancelled, else 51400."""
        denied = self._okx_auth(request)
        if denied is not None:
            return denied
        body = await request.json()
        client_id, order_id = body.get("clOrdId"), body.get("ordId")
        o = self._find(body.get("instId"), client_id, order_id)
        if not self._cancel(o):
            msg = (
                "Order cancellation failed as the order has been filled, canceled or does not "
                "exist."
            )
            return self._okx_reply([self._okx_ack(client_id or "", order_id or "", "51400", msg)])
        assert o is not None
        return self._okx_reply([self._okx_ack(o.client_id, str(o.order_id))])

    async def _okx_currencies(self, request: web.Request) -> web.Response:
        """GET /api/v5/asset/currencies: the two currencies of BTC-USDT, one chain each."""
        denied = self._okx_auth(request)
        if denied is not None:
            return denied
        data = [
            {
                "ccy": ccy,
                "chain": chain,
                "name": name,
                "canDep": True,
                "canWd": True,
                "canInternal": True,
                "minDep": min_dep,
                "minWd": min_wd,
                "maxWd": "10000000",
                "wdTickSz": tick,
                "minFee": fee,
                "maxFee": fee,
                "mainNet": True,
            }
            for ccy, chain, name, min_dep, min_wd, tick, fee in (
                ("BTC", "BTC-Bitcoin", "Bitcoin", "0.00005", "0.0005", "8", "0.0001"),
                ("USDT", "USDT-TRC20", "Tether", "0.1", "2", "6", "1"),
            )
        ]
        return web.json_response({"code": "0", "msg": "", "data": data})

    # -- urls ----------------------------------------------------------------------------------

    def _base(self, scheme: str) -> str:
        return f"{scheme}://127.0.0.1:{self.port}"

    def _rewrite(self, urls: Any) -> Any:
        """Binance's url tree with every host replaced by this server. Spot REST and spot/margin
        websocket keep their paths (served); every other base moves under /unserved/<host>."""
        if isinstance(urls, dict):
            return {k: self._rewrite_entry(k, v) for k, v in urls.items()}
        return urls

    def _rewrite_entry(self, key: str, value: Any) -> Any:
        if isinstance(value, dict):
            return self._rewrite(value)
        if not isinstance(value, str):
            return value
        parts = urlsplit(value)
        scheme = "ws" if parts.scheme.startswith("ws") else "http"
        served = {"public": "/api/v3", "private": "/api/v3", "spot": "/ws", "margin": "/ws"}
        if served.get(key) == parts.path:
            return self._base(scheme) + parts.path
        return f"{self._base(scheme)}/unserved/{parts.hostname}{parts.path}"
