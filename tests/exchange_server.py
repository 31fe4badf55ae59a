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
from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Literal
from urllib.parse import urlsplit

import ccxt.pro
from aiohttp import WSMsgType, web

from hft_ray.book import okx_checksum
from tests.captures import DATA, http_bodies, ws_frames

Venue = Literal["binance", "okx"]
Level = list[str]  # as on the wire: binance [px, sz]; okx [px, sz, liquidated, orders]

BINANCE_ID, BINANCE_SYMBOL, BINANCE_STREAM = "NKNUSDT", "NKN/USDT", "nknusdt@depth"
OKX_ID, OKX_SYMBOL, OKX_CHANNEL = "BTC-USDT", "BTC/USDT", "books"
OKX_BOOK_DEPTH = 400  # levels per side the 'books' channel snapshot carries
TOP = 5  # levels per side kept in each `ServedBook`
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


# -- the served book ---------------------------------------------------------------------------


class _Side:
    """Levels of one side kept sorted best first, each as its wire strings."""

    def __init__(self, descending: bool) -> None:
        self._sign = -1.0 if descending else 1.0
        self._keys: list[float] = []
        self._levels: dict[float, Level] = {}

    def set(self, level: Level) -> None:
        key = self._sign * float(level[0])
        if float(level[1]) == 0.0:
            if self._levels.pop(key, None) is not None:
                del self._keys[bisect.bisect_left(self._keys, key)]
            return
        if key not in self._levels:
            bisect.insort(self._keys, key)
        self._levels[key] = list(level)

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
        self, venue: Venue, *, interval_s: float = 0.01, okx_seq_ids: bool = False
    ) -> None:
        """`okx_seq_ids` adds OKX's newer `prevSeqId`/`seqId` fields (absent in the 2022
        capture); with them ccxt detects a dropped update itself (InvalidNonce)."""
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
        self.synthetic_deltas = 0  # deltas made up after the capture ran out
        self._bids = _Side(descending=True)
        self._asks = _Side(descending=False)
        self._seq: int | None = None  # binance: last u applied; okx: last seqId
        self._last_ts = 0
        self._cursor = 0  # next captured delta
        self._resnapshotted = False  # okx: the snapshot after the capture ran out was sent
        self._drop_next = False
        self._corrupt_next = False
        self._stalled = False
        self._conns: set[_Conn] = set()
        self._runner: web.AppRunner | None = None
        self._pump: asyncio.Task[None] | None = None
        self._load_initial_book()

    # -- lifecycle -----------------------------------------------------------------------------

    async def start(self) -> None:
        """Bind 127.0.0.1 on a free port and start the market clock."""
        app = web.Application()
        if self.venue == "binance":
            app.router.add_get("/api/v3/exchangeInfo", self._binance_exchange_info)
            app.router.add_get("/api/v3/depth", self._binance_depth)
            app.router.add_get("/api/v3/time", self._binance_time)
            app.router.add_get("/api/v3/ping", self._binance_ping)
            app.router.add_get("/ws", self._ws_handler)
            app.router.add_get("/ws/{tail:.*}", self._ws_handler)
            app.router.add_get("/stream", self._ws_handler)
        else:
            app.router.add_get("/api/v5/public/instruments", self._okx_instruments)
            app.router.add_get("/api/v5/public/time", self._okx_time)
            app.router.add_get("/api/v5/market/books", self._okx_rest_books)
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
        """Close every socket, stop the clock and the HTTP server."""
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
        """Options so ccxt loads only spot markets and makes no private (signed) calls."""
        if self.venue == "binance":
            return {"fetchMarkets": {"types": ["spot"]}, "fetchMargins": False}
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
        for level in bids:
            self._bids.set(level)
        for level in asks:
            self._asks.set(level)

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
                self._broadcast_binance(delta)
                return
        else:
            delta = self._synthetic_binance()
        drop = self._take_drop()
        self._apply(delta["b"], delta["a"])
        self._seq = int(delta["u"])
        self._record(sent=not drop)
        delta["E"] = self._last_ts
        if not drop:
            self._broadcast_binance(delta)

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

    def _broadcast_binance(self, delta: dict[str, Any]) -> None:
        stream = BINANCE_STREAM + "@100ms"
        bare = json.dumps(delta, separators=(",", ":"))
        wrapped = json.dumps({"stream": stream, "data": delta}, separators=(",", ":"))
        for conn in self._conns:
            if conn.live:
                conn.send(wrapped if conn.combined else bare)

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
        text = self._okx_frame("update", data)
        for conn in self._conns:
            if conn.live:
                conn.send(text)

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

    def _checksum(self) -> int:
        """OKX's CRC32 over the top 25 levels of the book now, as the project computes it."""
        bids = [(lv[0], lv[1]) for lv in self._bids.levels(25)]
        asks = [(lv[0], lv[1]) for lv in self._asks.levels(25)]
        return okx_checksum(bids, asks)

    def _okx_frame(self, action: str, data: dict[str, Any]) -> str:
        arg = {"channel": OKX_CHANNEL, "instId": OKX_ID}
        return json.dumps({"arg": arg, "action": action, "data": [data]}, separators=(",", ":"))

    def _send_okx_snapshot(self, conn: _Conn) -> None:
        """The book now, as the 'books' channel's snapshot frame; the socket then gets updates."""
        data: dict[str, Any] = {
            "asks": self._asks.levels(OKX_BOOK_DEPTH),
            "bids": self._bids.levels(OKX_BOOK_DEPTH),
            "ts": str(self.book.ts),
            "checksum": self._checksum(),
        }
        if self._seq is not None:
            data["prevSeqId"], data["seqId"] = -1, self._seq
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
        if request.headers.get("Upgrade", "").lower() != "websocket":
            self.rest_requests.append(request.path_qs)
        response: web.StreamResponse = await handler(request)
        return response

    async def _binance_exchange_info(self, request: web.Request) -> web.Response:
        """GET /api/v3/exchangeInfo: one symbol, with the fields ccxt's parse_market reads."""
        symbol = {
            "symbol": BINANCE_ID,
            "status": "TRADING",
            "baseAsset": "NKN",
            "baseAssetPrecision": 8,
            "quoteAsset": "USDT",
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
                    "minPrice": "0.00010000",
                    "maxPrice": "1000.00000000",
                    "tickSize": "0.00010000",
                },
                {
                    "filterType": "LOT_SIZE",
                    "minQty": "1.00000000",
                    "maxQty": "9000000.00000000",
                    "stepSize": "1.00000000",
                },
                {
                    "filterType": "NOTIONAL",
                    "minNotional": "5.00000000",
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
                "symbols": [symbol],
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
        body = {
            "lastUpdateId": self._seq,
            "bids": self._bids.levels(limit),
            "asks": self._asks.levels(limit),
        }
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
        data = {
            "asks": self._asks.levels(depth),
            "bids": self._bids.levels(depth),
            "ts": str(self.book.ts),
        }
        return web.json_response({"code": "0", "data": [data], "msg": ""})

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
        served = {"public": "/api/v3", "spot": "/ws", "margin": "/ws"}
        if served.get(key) == parts.path:
            return self._base(scheme) + parts.path
        return f"{self._base(scheme)}/unserved/{parts.hostname}{parts.path}"
