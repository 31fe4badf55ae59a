"""Feed path: exchange messages (JSON text) to a book and its top 20 as arrays, on one pinned
core, on real captures and on streams built from them.

- `binance`: the captured Binance spot `depthUpdate` diffs (tests/data/binance) from the
  captured REST snapshots, and a stream of 36-level diffs on the real NKNUSDT snapshot's price
  grid (`binance_levels_stream`): per diff, JSON decode, apply through `OrderBook` with
  Binance's update-id rule, top 20 as arrays.
- `okx`: the captured OKX `books` messages (snapshots and updates, CRC32 verified on every
  one), and the synthetic 400-level OKX stream (`okx_stream`) beside its naive baseline; the
  top-level `ours` / `baseline_same_run` figures are that stream's.
- `live_path`: what a live venue runs today: ccxt.pro's own message handling (the websocket
  client's text handler and the exchange's `handle_message`, called with the frame text, no
  socket), then `CcxtBookStream`'s extraction, with `OkxRawChecksum` on OKX, on the same frames.
- `peers`: cryptofeed's and nautilus_trader's books, each fed by its own exchange handler, on
  the same frames, when the `bench` extra installs them.

Every path must end with the same top 20 on every book as hft_ray's (Binance's tops must also
equal the capture's `bookTicker` at the same update id): the section raises if one does not.
Baselines are measured in the same run; cryptofeed documents 10-100 us per update for its
checksum alone, reported beside ours, not measured here.
"""

from __future__ import annotations

import asyncio
import heapq
import importlib.metadata
import json
import random
import time
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from hft_ray.bench.common import Scale, best_of, pinned_to_one_core
from hft_ray.book import (
    VENUE_BOOK_RULES,
    OrderBook,
    check_levels,
    check_levels_reference,
    okx_checksum,
)
from hft_ray.types import BookSnapshot

CRYPTOFEED_CHECKSUM_US = (10.0, 100.0)
TARGET_DIFFS_PER_S = 50_000
TOP = 20
LEVELS_PER_DIFF = 36
#: Where the captured traffic lives: a source checkout's tests/data.
CAPTURES = Path(__file__).resolve().parents[2] / "tests" / "data"
#: Diffs of the 36-level stream; its first `SLOW_PATH_DIFFS` are given to the live path and
#: the peers (ccxt, cryptofeed and nautilus_trader take 5-100 times longer a diff).
MAX_LEVELS_DIFFS = 2_000
SLOW_PATH_DIFFS = 500
#: Every path is measured in this many rounds spread over the section (`Scale.repeats` runs
#: each), its figure the minimum of them all: on a shared machine a busy neighbour can hold the
#: pinned core for seconds, and a path measured only then would look slower than it is.
ROUNDS = 3

Tops = dict[str, tuple[np.ndarray, np.ndarray]]


# -- streams ----------------------------------------------------------------------------------


def okx_stream(levels: int, updates: int, seed: int = 7) -> tuple[str, list[str]]:
    """A synthetic OKX `books` snapshot and updates (JSON text) with correct checksums."""
    rng = random.Random(seed)
    tick = 0.1
    bids = {round(50_000 - tick * (i + 1), 1): rng.randint(1, 5_000) / 1e4 for i in range(levels)}
    asks = {round(50_000 + tick * i, 1): rng.randint(1, 5_000) / 1e4 for i in range(levels)}

    def fmt(book: dict[float, float], reverse: bool) -> list[list[str]]:
        return [
            [f"{p:.1f}", f"{q:.4f}", "0", "1"] for p, q in sorted(book.items(), reverse=reverse)
        ]

    def checksum() -> int:
        b = [(f"{p:.1f}", f"{bids[p]:.4f}") for p in heapq.nlargest(25, bids)]
        a = [(f"{p:.1f}", f"{asks[p]:.4f}") for p in heapq.nsmallest(25, asks)]
        return okx_checksum(b, a)

    def message(action: str, b: list[list[str]], a: list[list[str]]) -> str:
        data = {"asks": a, "bids": b, "ts": "1700000000000", "checksum": checksum()}
        return json.dumps(
            {"arg": {"channel": "books", "instId": "BTC-USDT"}, "action": action, "data": [data]}
        )

    snapshot = message("snapshot", fmt(bids, True), fmt(asks, False))
    out = []
    for _ in range(updates):
        changes: dict[str, list[list[str]]] = {"b": [], "a": []}
        for _ in range(rng.randint(1, 8)):
            side, book, sign = rng.choice((("b", bids, -1), ("a", asks, 1)))
            best = max(bids) if side == "b" else min(asks)
            price = round(best + sign * tick * rng.randint(0, 40), 1)
            if (side == "b" and price >= min(asks)) or (side == "a" and price <= max(bids)):
                continue
            qty = 0.0 if price in book and rng.random() < 0.3 else rng.randint(1, 5_000) / 1e4
            if qty == 0.0:
                book.pop(price, None)
            else:
                book[price] = qty
            changes[side].append([f"{price:.1f}", f"{qty:.4f}", "0", "1"])
        out.append(message("update", changes["b"], changes["a"]))
    return snapshot, out


@dataclass(frozen=True)
class BinanceCapture:
    """Captured Binance spot traffic: REST snapshots by market id (body text), the
    `depthUpdate` frames (text, market id) in order, and each `bookTicker`'s
    (update id, bid, bid size, ask, ask size) by market id."""

    snapshots: dict[str, str]
    diffs: list[tuple[str, str]]
    tickers: dict[str, list[tuple[int, float, float, float, float]]]


def _received(path: Path) -> Iterator[str]:
    """The text of each frame received in a capture (format: tests/data/README.md)."""
    if not path.exists():
        raise FileNotFoundError(f"feed bench: no capture at {path} (it runs from a checkout)")
    for line in path.read_text().splitlines()[1:]:
        if line and " <- " not in line:
            yield line.split(": ", 1)[1]


def binance_capture(data: Path = CAPTURES) -> BinanceCapture:
    snapshots = {}
    for line in filter(None, (data / "binance" / "BINANCE.http.0.0").read_text().splitlines()):
        url, rest = line.split(" -> ", 1)
        snapshots[url.split("symbol=")[1].split("&")[0]] = rest.split(": ", 1)[1]
    diffs: list[tuple[str, str]] = []
    tickers: dict[str, list[tuple[int, float, float, float, float]]] = {}
    for text in _received(data / "binance" / "BINANCE.ws.1.0"):
        d = json.loads(text)["data"]
        if d.get("e") == "depthUpdate":
            diffs.append((text, d["s"]))
        elif "A" in d:
            tick = (d["u"], float(d["b"]), float(d["B"]), float(d["a"]), float(d["A"]))
            tickers.setdefault(d["s"], []).append(tick)
    return BinanceCapture(snapshots, diffs, tickers)


def okx_capture(data: Path = CAPTURES) -> list[tuple[str, str]]:
    """The captured OKX `books` messages (text, instrument id) in order."""
    out = []
    for text in _received(data / "okx" / "OKX.ws.1.0"):
        m = json.loads(text)
        if m.get("arg", {}).get("channel") == "books" and "action" in m:
            out.append((text, m["arg"]["instId"]))
    return out


def binance_levels_stream(
    snapshot: dict[str, Any], diffs: int, levels: int = LEVELS_PER_DIFF, seed: int = 36
) -> tuple[list[str], tuple[np.ndarray, np.ndarray]]:
    """`diffs` Binance `depthUpdate` frames of `levels` levels each (half bids, half asks) on a
    real snapshot's price grid, and the top 20 they leave.

    Each level takes the price at a rank of the snapshot's own side (the grid stays fixed, so
    a price removed comes back later), the rank drawn from a geometric law of mean 8 (in the
    capture 86 % of changes fall in the top 20), distinct within a diff. A price in the book is
    removed (size 0) with probability 1/4, else set to a size drawn from the snapshot's sizes
    of that side. The first diff has U = lastUpdateId + 1, each next U the previous u + 1,
    and u = U + levels - 1, so `UpdateIdBridge` accepts every one. Deterministic in `seed`.
    """
    rng = random.Random(seed)
    grids = {"b": snapshot["bids"], "a": snapshot["asks"]}
    held = {side: dict(enumerate(q for _, q in grid)) for side, grid in grids.items()}
    sizes = {side: [q for _, q in grid] for side, grid in grids.items()}
    first, frames = snapshot["lastUpdateId"] + 1, []
    for i in range(diffs):
        body: dict[str, Any] = {"e": "depthUpdate", "E": 1_633_998_600_000 + 100 * i}
        body.update(s="NKNUSDT", U=first, u=first + levels - 1)
        for side, grid in grids.items():
            ranks: set[int] = set()
            while len(ranks) < levels // 2:
                ranks.add(min(int(rng.expovariate(1 / 8)), len(grid) - 1))
            changes = []
            for rank in sorted(ranks):
                book = held[side]
                if rank in book and len(book) > 2 * levels and rng.random() < 0.25:
                    del book[rank]
                    changes.append([grid[rank][0], "0.00000000"])
                else:
                    book[rank] = rng.choice(sizes[side])
                    changes.append([grid[rank][0], book[rank]])
            body[side] = changes
        frames.append(
            json.dumps({"stream": "nknusdt@depth@100ms", "data": body}, separators=(",", ":"))
        )
        first += levels

    def top(side: str) -> np.ndarray:
        best = sorted(held[side])[:TOP]
        return np.array([(float(grids[side][r][0]), float(held[side][r])) for r in best])

    return frames, (top("b"), top("a"))


# -- the paths --------------------------------------------------------------------------------

Frames = list[tuple[str, str]]  # (frame text, market id of the book it changes)


@dataclass(frozen=True)
class BookPath:
    """One way of turning frames into books and their tops: `make` builds its state before
    the clock starts (books holding the snapshot), `run` feeds it every frame and returns how
    many failed the path's own checks, `tops` reads every book's top 20 afterwards."""

    make: Callable[[], Any]
    run: Callable[[Any], int]
    tops: Callable[[Any], Tops]


def _measure(path: BookPath, messages: int, passes: int, runs: int) -> tuple[float, Tops]:
    """Microseconds a message (best of `runs` runs of `passes` passes), and the tops."""
    states = [[path.make() for _ in range(passes)] for _ in range(runs)]
    each = iter(states)
    seconds, bad = best_of(lambda: sum(path.run(s) for s in next(each)), runs)
    if bad:
        raise RuntimeError(f"feed bench: {bad} messages failed the path's own checks")
    return seconds / (passes * messages) * 1e6, path.tops(states[-1][-1])


def _agree(name: str, got: Tops, want: Tops) -> None:
    """Raise unless `got` holds the same books with the same top 20 as `want`."""
    if sorted(got) != sorted(want):
        raise RuntimeError(f"feed bench: {name} holds books {sorted(got)}, not {sorted(want)}")
    for market, (bids, asks) in want.items():
        if not (np.array_equal(got[market][0], bids) and np.array_equal(got[market][1], asks)):
            raise RuntimeError(f"feed bench: {name}'s top {TOP} of {market} is not hft_ray's")


def _binance_book(snapshot: str) -> OrderBook:
    s = json.loads(snapshot)
    book = OrderBook(VENUE_BOOK_RULES["binance"])
    book.apply_snapshot(s["bids"], s["asks"], s["lastUpdateId"], 0)
    return book


def ours_binance(
    snapshots: dict[str, str], frames: Frames, loads: Callable[[str], Any]
) -> BookPath:
    """hft_ray's book: decode, apply under Binance's update-id rule, top 20 as arrays."""
    texts = [text for text, _ in frames]

    def run(books: dict[str, OrderBook]) -> int:
        bad = 0
        for text in texts:
            d = loads(text)["data"]
            book = books[d["s"]]
            bad += bool(
                book.apply_delta(d["b"], d["a"], d["E"] * 1_000_000, first=d["U"], last=d["u"])
            )
            book.top(TOP)
        return bad

    return BookPath(
        lambda: {s: _binance_book(text) for s, text in snapshots.items()},
        run,
        lambda books: {s: b.top(TOP) for s, b in books.items()},
    )


def ours_okx(frames: Frames, loads: Callable[[str], Any]) -> BookPath:
    """hft_ray's book on OKX `books` messages, the CRC32 of the top 25 checked on each."""
    texts = [text for text, _ in frames]
    books: dict[str, OrderBook] = {}  # each instrument's first message is its snapshot

    def run(_: object) -> int:
        bad = 0
        for text in texts:
            m = loads(text)
            book = books.get(m["arg"]["instId"])
            if book is None:
                book = books[m["arg"]["instId"]] = OrderBook(VENUE_BOOK_RULES["okx"])
            for d in m["data"]:
                bids = [(p, q) for p, q, *_ in d["bids"]]
                asks = [(p, q) for p, q, *_ in d["asks"]]
                ts, seq, crc = int(d["ts"]) * 1_000_000, d.get("seqId"), d["checksum"]
                if m["action"] == "snapshot":
                    reason = book.apply_snapshot(bids, asks, seq, ts, crc)
                else:
                    reason = book.apply_delta(
                        bids, asks, ts, last=seq, prev=d.get("prevSeqId"), checksum=crc
                    )
                bad += bool(reason)
                book.top(TOP)
        return bad

    return BookPath(lambda: None, run, lambda _: {s: b.top(TOP) for s, b in books.items()})


class _DictBook:
    """The straightforward design, the baseline: a dict per side of price -> (price, size)
    strings, sorted afresh for every top of book and every checksum."""

    def __init__(self, bids: Sequence[Sequence[str]], asks: Sequence[Sequence[str]]) -> None:
        self.bids = {float(p): (p, q) for p, q, *_ in bids}
        self.asks = {float(p): (p, q) for p, q, *_ in asks}

    def apply(self, bids: Sequence[Sequence[str]], asks: Sequence[Sequence[str]]) -> None:
        for side, levels in ((self.bids, bids), (self.asks, asks)):
            for p, q, *_ in levels:
                if float(q) == 0.0:
                    side.pop(float(p), None)
                else:
                    side[float(p)] = (p, q)

    def levels(self, n: int) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
        bids, asks = self.bids, self.asks
        return (
            [bids[k] for k in sorted(bids, reverse=True)[:n]],
            [asks[k] for k in sorted(asks)[:n]],
        )

    def top(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        b, a = self.levels(n)
        return (
            np.array([(float(p), float(q)) for p, q in b]).reshape(-1, 2),
            np.array([(float(p), float(q)) for p, q in a]).reshape(-1, 2),
        )


def naive_binance(snapshots: dict[str, str], frames: Frames) -> BookPath:
    """The baseline book on the same diffs (it skips the diffs inside the snapshot but checks
    no update ids: that only makes it faster)."""
    texts = [text for text, _ in frames]

    def make() -> dict[str, tuple[_DictBook, int]]:
        out = {}
        for market, text in snapshots.items():
            s = json.loads(text)
            out[market] = (_DictBook(s["bids"], s["asks"]), s["lastUpdateId"])
        return out

    def run(books: dict[str, tuple[_DictBook, int]]) -> int:
        for text in texts:
            d = json.loads(text)["data"]
            book, last = books[d["s"]]
            if d["u"] > last:
                book.apply(d["b"], d["a"])
            book.top(TOP)
        return 0

    return BookPath(make, run, lambda books: {s: b.top(TOP) for s, (b, _) in books.items()})


def _ours(snapshot: str, updates: list[str]) -> Callable[[], int]:
    """hft_ray's book on the synthetic OKX stream, with the level checks of the feed."""

    def run() -> int:
        book = OrderBook(VENUE_BOOK_RULES["okx"])
        d = json.loads(snapshot)["data"][0]
        book.apply_snapshot(
            [(p, q) for p, q, *_ in d["bids"]],
            [(p, q) for p, q, *_ in d["asks"]],
            None,
            0,
            d["checksum"],
        )
        bad = 0
        for text in updates:
            d = json.loads(text)["data"][0]
            reason = book.apply_delta(
                [(p, q) for p, q, *_ in d["bids"]],
                [(p, q) for p, q, *_ in d["asks"]],
                0,
                checksum=d["checksum"],
            )
            bids, asks = book.top(TOP)
            bad += bool(reason or check_levels(bids, asks))
        return bad

    return run


def _naive(snapshot: str, updates: list[str]) -> Callable[[], int]:
    """The same work done the straightforward way (`_DictBook`): the checksum over the sorted
    top 25, the top 20 as arrays, the level checks in plain numpy."""

    def run() -> int:
        d = json.loads(snapshot)["data"][0]
        book = _DictBook(d["bids"], d["asks"])
        bad = 0
        for text in updates:
            d = json.loads(text)["data"][0]
            book.apply(d["bids"], d["asks"])
            top_b, top_a = book.levels(25)
            parts: list[str] = []
            for i in range(25):
                if i < len(top_b):
                    parts += top_b[i]
                if i < len(top_a):
                    parts += top_a[i]
            crc = zlib.crc32(":".join(parts).encode())
            crc = crc - (1 << 32) if crc >= 1 << 31 else crc
            b20 = np.array([(float(p), float(q)) for p, q in top_b[:TOP]])
            a20 = np.array([(float(p), float(q)) for p, q in top_a[:TOP]])
            bad += crc != d["checksum"] or bool(check_levels_reference(b20, a20))
        return bad

    return run


# -- the live path: ccxt.pro ------------------------------------------------------------------

#: The captures' markets: (id, base, quote, ccxt type, settle currency, expiry, cryptofeed name).
_MARKETS = {
    "binance": [
        ("NKNUSDT", "NKN", "USDT", "spot", "", "", "NKN-USDT"),
        ("BLZETH", "BLZ", "ETH", "spot", "", "", "BLZ-ETH"),
        ("LRCBTC", "LRC", "BTC", "spot", "", "", "LRC-BTC"),
        ("RUNEEUR", "RUNE", "EUR", "spot", "", "", "RUNE-EUR"),
    ],
    "okx": [
        ("BTC-USDT", "BTC", "USDT", "spot", "", "", "BTC-USDT"),
        ("BTC-USD-220527", "BTC", "USD", "future", "BTC", "220527", "BTC-USD-22M27"),
        ("UNI-USD-SWAP", "UNI", "USD", "swap", "UNI", "", "UNI-USD-PERP"),
    ],
}
_WS_URL = {
    "binance": "wss://stream.binance.com:9443/stream",
    "okx": "wss://ws.okx.com/ws/v5/public",
}


def _ccxt_market(
    market_id: str, base: str, quote: str, kind: str, settle: str, expiry: str
) -> dict[str, Any]:
    """A market in ccxt's unified structure, as `load_markets` would have left it."""
    symbol = f"{base}/{quote}" + (f":{settle}" if settle else "") + (f"-{expiry}" if expiry else "")
    return {
        "id": market_id,
        "lowercaseId": market_id.lower(),
        "symbol": symbol,
        "base": base,
        "quote": quote,
        "settle": settle or None,
        "baseId": base,
        "quoteId": quote,
        "type": kind,
        "spot": kind == "spot",
        "swap": kind == "swap",
        "future": kind == "future",
        "option": False,
        "margin": False,
        "contract": kind != "spot",
        "inverse": True if settle else None,
        "linear": False if settle else None,
        "active": True,
        "precision": {"price": 1e-8, "amount": 1e-8},
        "limits": {},
        "info": {},
    }


class CcxtLive:
    """ccxt.pro's exchange class and websocket client for one venue, with the captures'
    markets and no socket, inside a `CcxtBookStream` with its raw-message check installed as
    a live stream installs it. The client's text handler is what ccxt runs on every frame."""

    def __init__(self, venue: str, loop: asyncio.AbstractEventLoop) -> None:
        from hft_ray.clock import LiveClock
        from hft_ray.config import CcxtVenueConfig
        from hft_ray.venues.ccxt_live import CcxtBookStream, book_event, make_exchange

        cfg = CcxtVenueConfig(kind="ccxt")

        async def build() -> tuple[Any, Any]:
            exchange = make_exchange(venue, cfg)
            exchange.set_markets([_ccxt_market(*m[:6]) for m in _MARKETS[venue]])
            return exchange, exchange.client(_WS_URL[venue])

        self._loop = loop
        self.exchange, self.client = loop.run_until_complete(build())
        self.symbols = {m[0]: self.exchange.safe_symbol(m[0]) for m in _MARKETS[venue]}
        for symbol in self.symbols.values():
            self.client.subscriptions["books:" + symbol] = {}  # what watch_order_book leaves
        self.stream = CcxtBookStream(venue, cfg, [], TOP, LiveClock(), exchange=self.exchange)
        self.stream._install_raw_check()
        self._event = book_event

    def _books(self, snapshots: dict[str, str]) -> dict[str, Any]:
        """ccxt's books after the REST snapshots, as `fetch_order_book_snapshot` leaves them."""
        books = {}
        for market, text in snapshots.items():
            s = json.loads(text)
            book = self.exchange.order_book({}, 1000)
            book.reset(self.exchange.parse_order_book(s, self.symbols[market]))
            book["nonce"] = s["lastUpdateId"]
            books[self.symbols[market]] = book
        return books

    def path(self, frames: Frames, snapshots: dict[str, str] | None = None) -> BookPath:
        """Each frame through ccxt, then the book its watcher is handed, extracted as
        `CcxtBookStream` extracts it (unless our raw check holds the book broken)."""
        exchange, raw = self.exchange, self.stream._raw
        handle = self.client.handle_text_or_binary_message
        work = [(text, self.symbols[market]) for text, market in frames]
        markets = {symbol: market for market, symbol in self.symbols.items()}

        def make() -> dict[str, Any]:
            return exchange.orderbooks if snapshots is None else self._books(snapshots)

        async def run(books: dict[str, Any]) -> int:  # in the loop, as ccxt's handlers run
            exchange.orderbooks = books
            bad = 0
            for text, symbol in work:
                handle(text)
                if raw is not None and not raw.valid(symbol):
                    bad += 1
                    continue
                self._event(symbol, books[symbol], TOP)
            return bad

        def tops(books: dict[str, Any]) -> Tops:
            out = {}
            for symbol, book in books.items():
                snap = self._event(symbol, book, TOP)
                if not isinstance(snap, BookSnapshot):
                    raise RuntimeError(f"bench: {symbol}: the book could not be read")
                out[markets[symbol]] = (snap.bids, snap.asks)
            return out

        return BookPath(make, lambda books: self._loop.run_until_complete(run(books)), tops)

    def close(self) -> None:
        self._loop.run_until_complete(self.exchange.close())


# -- peers ------------------------------------------------------------------------------------


def _decimal_top(side: Any) -> np.ndarray:
    """A cryptofeed side (Decimal prices and sizes, sorted): its top 20 as an array."""
    return np.array([side.index(i) for i in range(min(TOP, len(side)))], np.float64).reshape(-1, 2)


class Cryptofeed:
    """cryptofeed's own exchange handlers, `message_handler` with the frame text (its JSON
    decode to Decimal, its update-id rule, its book update, OKX's checksum check), on books as
    its REST snapshot leaves them; its symbol table given up front instead of fetched."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        from cryptofeed.defines import L2_BOOK
        from cryptofeed.exchanges import OKX, Binance
        from cryptofeed.symbols import Symbols
        from cryptofeed.types import OrderBook as CryptofeedBook

        self._loop = loop
        self._book = CryptofeedBook
        self.feeds: dict[str, Any] = {}
        self.names: dict[str, dict[str, str]] = {}
        for venue, klass in (("binance", Binance), ("okx", OKX)):
            names = {m[6]: m[0] for m in _MARKETS[venue]}
            Symbols.set(klass.id, names, {"tick_size": {}, "instrument_type": {}})
            self.feeds[venue] = klass(
                symbols=list(names), channels=[L2_BOOK], checksum_validation=True
            )
            self.names[venue] = {m: n for n, m in names.items()}

    def binance_path(self, snapshots: dict[str, str], frames: Frames) -> BookPath:
        feed, names = self.feeds["binance"], self.names["binance"]

        def make() -> tuple[dict[str, Any], dict[str, int]]:
            books, last = {}, {}
            for market, text in snapshots.items():
                s = json.loads(text)
                books[names[market]] = self._book(
                    feed.id,
                    names[market],
                    max_depth=feed.max_depth,
                    bids={Decimal(p): Decimal(q) for p, q in s["bids"]},
                    asks={Decimal(p): Decimal(q) for p, q in s["asks"]},
                )
                last[names[market]] = s["lastUpdateId"]
            return books, last

        return self._path("binance", make, frames)

    def okx_path(self, frames: Frames) -> BookPath:
        state: tuple[dict[str, Any], dict[str, int]] = ({}, {})  # snapshots are in the stream
        return self._path("okx", lambda: state, frames)

    def _path(self, venue: str, make: Callable[[], Any], frames: Frames) -> BookPath:
        feed, names = self.feeds[venue], self.names[venue]
        work = [(text, names[market]) for text, market in frames]
        markets = {n: m for m, n in names.items()}

        async def run(state: tuple[dict[str, Any], dict[str, int]]) -> int:
            feed._l2_book, feed.last_update_id = state
            for text, name in work:
                await feed.message_handler(text, None, 0.0)
                book = state[0][name].book
                _decimal_top(book.bids), _decimal_top(book.asks)
            return 0

        def tops(state: tuple[dict[str, Any], dict[str, int]]) -> Tops:
            return {
                markets[n]: (_decimal_top(b.book.bids), _decimal_top(b.book.asks))
                for n, b in state[0].items()
            }

        return BookPath(make, lambda s: self._loop.run_until_complete(run(s)), tops)


class Nautilus:
    """nautilus_trader's Binance adapter code on the frame bytes (its msgspec decoder, its
    `parse_to_order_book_deltas`) into the book its data engine keeps (`OrderBook`, L2), the
    top 20 read through `bids()` / `asks()`, the only level access that book offers (every
    level, as Python objects). It drops diffs inside the snapshot and checks no update ids."""

    def __init__(self) -> None:
        import msgspec
        from nautilus_trader.adapters.binance.common.schemas.market import (
            BinanceDepth,
            BinanceOrderBookMsg,
        )
        from nautilus_trader.model.book import OrderBook as NautilusBook
        from nautilus_trader.model.enums import BookType
        from nautilus_trader.model.identifiers import InstrumentId

        self._depth = msgspec.json.Decoder(BinanceDepth)
        self._diff = msgspec.json.Decoder(BinanceOrderBookMsg)
        self._new = lambda iid: NautilusBook(iid, BookType.L2_MBP)
        self._id = lambda market: InstrumentId.from_str(f"{market}.BINANCE")

    def binance_path(self, snapshots: dict[str, str], frames: Frames) -> BookPath:
        ids = {market: self._id(market) for market in snapshots}
        raws = [text.encode() for text, _ in frames]  # the adapter is handed bytes
        decode = self._diff.decode

        def make() -> dict[str, tuple[Any, int]]:
            books = {}
            for market, text in snapshots.items():
                depth = self._depth.decode(text.encode())
                book = self._new(ids[market])
                book.apply_deltas(depth.parse_to_order_book_snapshot(ids[market], 0))
                books[market] = (book, depth.lastUpdateId)
            return books

        def run(books: dict[str, tuple[Any, int]]) -> int:
            for raw in raws:
                d = decode(raw).data
                book, last = books[d.s]
                if d.u > last:
                    book.apply_deltas(d.parse_to_order_book_deltas(ids[d.s], 0))
                _levels_top(book.bids()), _levels_top(book.asks())
            return 0

        def tops(books: dict[str, tuple[Any, int]]) -> Tops:
            return {
                m: (_levels_top(b.bids()), _levels_top(b.asks())) for m, (b, _) in books.items()
            }

        return BookPath(make, run, tops)


def _levels_top(levels: list[Any]) -> np.ndarray:
    return np.array([(lv.price.as_double(), lv.size()) for lv in levels[:TOP]]).reshape(-1, 2)


def _peer(build: Callable[[], Any]) -> Any:
    """The peer, or why it is unavailable (not installed, or its API moved)."""
    try:
        return build()
    except ImportError as err:
        return f"not installed ({err.name}): pip install -e .[bench]"
    except Exception as err:  # a peer's own setup failing must not stop the bench
        return f"{type(err).__name__}: {err}"


# -- the section ------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Streams:
    """Every stream the section measures, with what each must leave in the books."""

    capture: BinanceCapture
    okx: Frames
    nkn: dict[str, str]  # the NKNUSDT snapshot the 36-level streams are built on
    levels36: Frames
    want36: Tops
    slow36: Frames
    want_slow36: Tops
    okx_synthetic: tuple[str, list[str]]
    passes: int  # passes over a capture: hft_ray's book
    slow_passes: int  # the live path and the peers

    @classmethod
    def build(cls, scale: Scale, levels: int) -> _Streams:
        capture = binance_capture()
        nkn = {"NKNUSDT": capture.snapshots["NKNUSDT"]}
        n36 = min(scale.feed_updates, MAX_LEVELS_DIFFS)
        full, want = binance_levels_stream(json.loads(nkn["NKNUSDT"]), n36)
        slow, want_slow = binance_levels_stream(
            json.loads(nkn["NKNUSDT"]), min(n36, SLOW_PATH_DIFFS)
        )
        passes = max(1, scale.feed_updates // 1_000)
        return cls(
            capture,
            okx_capture(),
            nkn,
            [(text, "NKNUSDT") for text in full],
            {"NKNUSDT": want},
            [(text, "NKNUSDT") for text in slow],
            {"NKNUSDT": want_slow},
            okx_stream(levels, scale.feed_updates),
            passes,
            min(passes, max(1, SLOW_PATH_DIFFS // len(capture.diffs))),
        )


def _ticker_checked(capture: BinanceCapture) -> int:
    """Replay the capture through hft_ray's book; every `bookTicker` whose update id ends a
    diff must equal the book's top then. Returns how many were compared."""
    books = {market: _binance_book(text) for market, text in capture.snapshots.items()}
    tops: dict[tuple[str, int], tuple[float, ...]] = {}
    for text, market in capture.diffs:
        d = json.loads(text)["data"]
        if books[market].apply_delta(d["b"], d["a"], 0, first=d["U"], last=d["u"]):
            raise RuntimeError(f"feed bench: the capture broke {market}'s book at u={d['u']}")
        bids, asks = books[market].top(1)
        tops[market, d["u"]] = (bids[0, 0], bids[0, 1], asks[0, 0], asks[0, 1])
    compared = 0
    for market, ticks in capture.tickers.items():
        for u, *top in ticks:
            if (market, u) in tops:
                if tops[market, u] != tuple(top):
                    raise RuntimeError(f"feed bench: {market}'s top at u={u} is not its bookTicker")
                compared += 1
    if not compared:
        raise RuntimeError("feed bench: no bookTicker of the capture could be compared")
    return compared


def _synthetic(run: Callable[[], int]) -> BookPath:
    """A run over the synthetic OKX stream (its checks inside) as a path without books."""
    return BookPath(lambda: None, lambda _: run(), lambda _: {})


def _measure_all(s: _Streams, repeats: int, loop: asyncio.AbstractEventLoop) -> dict[str, Any]:
    """Microseconds a message of every path on every stream, `{path: {stream: us}}` (for a
    peer not available, the reason), each path's books checked against hft_ray's."""
    snaps, cap, okx, nkn = s.capture.snapshots, s.capture.diffs, s.okx, s.nkn
    snapshot, msgs = s.okx_synthetic
    messages = {
        "okx_synthetic": len(msgs),
        "binance_capture": len(cap),
        "levels_36": len(s.levels36),
        "levels_36_slow": len(s.slow36),
        "okx_capture": len(okx),
    }
    # What every path must leave: on the captures, what hft_ray's book (first measured) does.
    want: dict[str, Tops | None] = dict.fromkeys(messages)
    want.update(okx_synthetic={}, levels_36=s.want36, levels_36_slow=s.want_slow36)
    out: dict[str, Any] = {"messages": messages}
    jobs: list[tuple[str, str, BookPath, int]] = [
        ("ours", "okx_synthetic", _synthetic(_ours(snapshot, msgs)), 1),
        ("baseline", "okx_synthetic", _synthetic(_naive(snapshot, msgs)), 1),
    ]
    for name, loads in (("ours", json.loads), ("ours_orjson", orjson.loads)):
        jobs += [
            (name, "binance_capture", ours_binance(snaps, cap, loads), s.passes),
            (name, "levels_36", ours_binance(nkn, s.levels36, loads), 1),
            (name, "levels_36_slow", ours_binance(nkn, s.slow36, loads), 1),
            (name, "okx_capture", ours_okx(okx, loads), s.passes),
        ]
    jobs += [
        ("baseline", "binance_capture", naive_binance(snaps, cap), s.passes),
        ("baseline", "levels_36", naive_binance(nkn, s.levels36), 1),
    ]
    ccxt = {venue: CcxtLive(venue, loop) for venue in ("binance", "okx")}
    jobs += [
        ("ccxt", "binance_capture", ccxt["binance"].path(cap, snaps), s.slow_passes),
        ("ccxt", "levels_36_slow", ccxt["binance"].path(s.slow36, nkn), 1),
        ("ccxt", "okx_capture", ccxt["okx"].path(okx), s.slow_passes),
    ]
    cryptofeed = _peer(lambda: Cryptofeed(loop))
    if isinstance(cryptofeed, Cryptofeed):
        jobs += [
            ("cryptofeed", "binance_capture", cryptofeed.binance_path(snaps, cap), s.slow_passes),
            ("cryptofeed", "levels_36_slow", cryptofeed.binance_path(nkn, s.slow36), 1),
            ("cryptofeed", "okx_capture", cryptofeed.okx_path(okx), s.slow_passes),
        ]
    else:
        out["cryptofeed"] = cryptofeed
    nautilus = _peer(Nautilus)
    if isinstance(nautilus, Nautilus):
        jobs += [
            (
                "nautilus_trader",
                "binance_capture",
                nautilus.binance_path(snaps, cap),
                s.slow_passes,
            ),
            ("nautilus_trader", "levels_36_slow", nautilus.binance_path(nkn, s.slow36), 1),
        ]
    else:
        out["nautilus_trader"] = nautilus
    try:
        for _ in range(ROUNDS):
            for name, stream, path, passes in jobs:
                us, tops = _measure(path, messages[stream], passes, repeats)
                expected = want[stream]
                if expected is None:
                    want[stream] = tops
                else:
                    _agree(name, tops, expected)
                figures = out.setdefault(name, {})
                figures[stream] = min(us, figures.get(stream, us))
    finally:
        for live in ccxt.values():
            live.close()
    return out


def bench_feed(scale: Scale, levels: int = 400) -> dict[str, Any]:
    """The feed path on real captures and on streams built from them, every path beside
    hft_ray's book, on one pinned core (see the module's docstring)."""
    s = _Streams.build(scale, levels)
    loop = asyncio.new_event_loop()
    try:
        with pinned_to_one_core() as core:
            tickers = _ticker_checked(s.capture)  # also compiles the book's kernels, unclocked
            checksum_us = _checksum_alone_us(s.okx_synthetic[0])
            us = _measure_all(s, scale.repeats, loop)
    finally:
        loop.close()
    us["book_tickers"] = tickers
    ours_us, naive_us = us["ours"]["okx_synthetic"], us["baseline"]["okx_synthetic"]
    synthetic = {
        "what": "decode JSON + apply delta + CRC32 top 25 + top 20 + sanity checks, OKX books",
        "updates": us["messages"]["okx_synthetic"],
        "book_levels_per_side": levels,
        "ours": {
            "us_per_update": round(ours_us, 2),
            "updates_per_s_per_core": round(1e6 / ours_us),
        },
        "baseline_same_run": {
            "design": "dict per side, sorted for each checksum and top of book; top 20 as "
            "arrays; level checks in plain numpy",
            "us_per_update": round(naive_us, 2),
            "updates_per_s_per_core": round(1e6 / naive_us),
        },
        "speedup_vs_baseline": round(naive_us / ours_us, 2),
    }
    return {
        "pinned_core": core,
        "rounds": ROUNDS,
        "runs_per_round": scale.repeats,
        **synthetic,  # the summary line's figures: the synthetic OKX stream's
        "checksum_alone_us": round(checksum_us, 2),
        "cryptofeed_documented_checksum_us": list(CRYPTOFEED_CHECKSUM_US),
        "checksum_beats_cryptofeed": checksum_us < CRYPTOFEED_CHECKSUM_US[0],
        "whole_path_within_cryptofeed_checksum_alone": ours_us < CRYPTOFEED_CHECKSUM_US[1],
        "decoders": {
            "ours": "json (the standard library)",
            "ours_orjson": "orjson, what ccxt.pro decodes frames with",
        },
        "binance": _binance_report(s, us),
        "okx": {
            "capture": {
                "what": "per message: JSON decode, OrderBook snapshot or delta, CRC32 of the "
                "top 25 checked (every one passed), top 20 as arrays",
                "messages": len(s.okx),
                "passes": s.passes,
                "instruments": sorted({m for _, m in s.okx}),
                **_beside(us, "okx_capture", "message"),
            },
            "synthetic_400": synthetic,
        },
        "live_path": {
            "what": "ccxt.pro's own handling of each frame text (its websocket client's text "
            "handler: orjson, then the exchange's handle_message), then CcxtBookStream's "
            "extraction of the watched book (top 20 as arrays); OkxRawChecksum on OKX; beside "
            "hft_ray's book with the same decoder on the same frames",
            **{report: _versus(us, "ccxt", stream) for report, stream in _SLOW_STREAMS.items()},
        },
        "peers": {
            "cryptofeed": _peer_report(us, "cryptofeed", Cryptofeed.__doc__),
            "nautilus_trader": _peer_report(us, "nautilus_trader", Nautilus.__doc__),
        },
    }


def _rate(us: float, unit: str) -> dict[str, float]:
    return {f"us_per_{unit}": round(us, 2), f"{unit}s_per_s_per_core": round(1e6 / us)}


def _beside(us: dict[str, Any], stream: str, unit: str) -> dict[str, Any]:
    """hft_ray's figures on a stream with both decoders, and the baseline's if measured."""
    out: dict[str, Any] = {
        "ours": _rate(us["ours"][stream], unit),
        "ours_orjson": _rate(us["ours_orjson"][stream], unit),
    }
    if stream in us.get("baseline", {}):
        out["baseline_same_run"] = {
            "design": "a dict per side of price -> strings, sorted afresh for every top 20",
            **_rate(us["baseline"][stream], unit),
        }
        out["speedup_vs_baseline"] = round(us["baseline"][stream] / us["ours"][stream], 2)
    return out


def _versus(us: dict[str, Any], path: str, stream: str) -> dict[str, Any]:
    """A path's figure on a stream beside hft_ray's book with the decoder ccxt.pro uses."""
    return {
        "messages": us["messages"][stream],
        path: _rate(us[path][stream], "message"),
        "hft_ray_book": _rate(us["ours_orjson"][stream], "message"),
        "hft_ray_faster_x": round(us[path][stream] / us["ours_orjson"][stream], 1),
    }


#: The streams of the live path and the peers: report name -> measured stream.
_SLOW_STREAMS = {
    "binance_capture": "binance_capture",
    "binance_levels_36": "levels_36_slow",
    "okx_capture": "okx_capture",
}


def _peer_report(us: dict[str, Any], name: str, doc: str | None) -> dict[str, Any]:
    if isinstance(us[name], str):
        return {"unavailable": us[name]}
    out: dict[str, Any] = {
        "version": importlib.metadata.version(name),
        "what": " ".join((doc or "").split()),
    }
    for report, stream in _SLOW_STREAMS.items():
        measured = stream in us[name]
        out[report] = _versus(us, name, stream) if measured else {"unavailable": NO_OKX[name]}
    return out


#: Why a peer has no OKX figure.
NO_OKX = {
    "nautilus_trader": "its OKX adapter parses frames in Rust inside its websocket client "
    "(nautilus_pyo3.OKXWebSocketClient): no Python call takes a captured frame"
}


def _binance_report(s: _Streams, us: dict[str, Any]) -> dict[str, Any]:
    cap = s.capture.diffs
    best = min(us["ours"]["levels_36"], us["ours_orjson"]["levels_36"])
    return {
        "what": "per diff: JSON decode of the frame, OrderBook.apply_delta under Binance's "
        "update-id rule, top 20 as arrays",
        "capture": {
            "diffs": len(cap),
            "passes": s.passes,
            "markets": sorted(s.capture.snapshots),
            "levels_per_diff": round(_levels_per_diff(cap), 2),
            "book_tickers_equal_to_the_book": us["book_tickers"],
            **_beside(us, "binance_capture", "diff"),
        },
        "levels_36": {
            "how_built": " ".join((binance_levels_stream.__doc__ or "").split()),
            "diffs": len(s.levels36),
            "levels_per_diff": LEVELS_PER_DIFF,
            **_beside(us, "levels_36", "diff"),
            "target_diffs_per_s": TARGET_DIFFS_PER_S,
            "meets_target": 1e6 / best >= TARGET_DIFFS_PER_S,
            "meets_target_with_standard_json": 1e6 / us["ours"]["levels_36"] >= TARGET_DIFFS_PER_S,
        },
    }


def _levels_per_diff(frames: Frames) -> float:
    counts = [len(d["b"]) + len(d["a"]) for d in (json.loads(t)["data"] for t, _ in frames)]
    return sum(counts) / len(counts)


def _checksum_alone_us(snapshot: str, repeats: int = 20_000) -> float:
    """Our OKX checksum of the top 25 levels alone, the figure cryptofeed documents."""
    d = json.loads(snapshot)["data"][0]
    bids = [(p, q) for p, q, *_ in d["bids"]][:25]
    asks = [(p, q) for p, q, *_ in d["asks"]][:25]
    t = time.perf_counter()
    for _ in range(repeats):
        okx_checksum(bids, asks)
    return (time.perf_counter() - t) / repeats * 1e6
