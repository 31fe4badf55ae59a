"""Recorded books: the JSON Lines format, reading (with errors that name file and line), and
writing.

One ccxt-unified order book per line, time-ordered within a file, optionally gzipped (`.gz`):
`{"exchange": "binance", "symbol": "BTC/USDT", "timestamp": <ms>, "nonce": <int|null>,
"bids": [[price, amount], ...], "asks": [[price, amount], ...]}`. Each line is a full top-N
snapshot of that venue's book at that time. A line with an empty side records a moment when
the venue's book was not tradable (a gap, a stall, a disconnect).
"""

from __future__ import annotations

import asyncio
import gzip
import heapq
import json
import math
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import IO, Any, NamedTuple

import numpy as np
import ray

from hft_ray.config import HftConfig
from hft_ray.types import BookSnapshot, OrderResult, Side
from hft_ray.venues.sim import Backlog, InProcessSimVenue, SimExchange, sim_exchange_from_config

_RING_BOOKS = 256  # lines a venue keeps for its feed


class ReplayFormatError(ValueError):
    """A line that is not a recorded book; the message names file, line and problem."""


class RecordedBook(NamedTuple):
    path: str
    line: int  # 1-based line number in its file
    exchange: str
    book: BookSnapshot


def open_text(path: Path, mode: str = "rt") -> IO[str]:
    if path.suffix == ".gz":
        return gzip.open(path, mode, encoding="utf-8")  # type: ignore[return-value]
    return open(path, mode, encoding="utf-8")


def _levels(value: Any, side: str) -> np.ndarray:
    if not isinstance(value, list):
        raise ValueError(f"{side} must be a list of [price, amount]")
    try:
        arr = np.array(value, dtype=np.float64).reshape(-1, 2)
    except (TypeError, ValueError):
        raise ValueError(f"{side} must be a list of [price, amount] numbers") from None
    if len(arr) and not np.all(np.isfinite(arr)):
        raise ValueError(f"{side} has a non-finite number")
    return arr


def parse_line(text: str, path: str, line: int) -> RecordedBook:
    """Decode one line; raise ReplayFormatError naming `path:line` and what is wrong."""
    try:
        obj = json.loads(text)
        if not isinstance(obj, dict):
            raise ValueError("not a JSON object")
        missing = [k for k in ("exchange", "symbol", "timestamp", "bids", "asks") if k not in obj]
        if missing:
            raise ValueError(f"missing {', '.join(missing)}")
        ts = obj["timestamp"]
        if not isinstance(ts, int | float) or isinstance(ts, bool) or not math.isfinite(ts):
            raise ValueError(f"timestamp must be milliseconds, got {ts!r}")
        nonce = obj.get("nonce")
        if nonce is not None and not isinstance(nonce, int):
            raise ValueError(f"nonce must be an integer or null, got {nonce!r}")
        exchange, symbol = obj["exchange"], obj["symbol"]
        if not isinstance(exchange, str) or not isinstance(symbol, str):
            raise ValueError("exchange and symbol must be strings")
        book = BookSnapshot(
            symbol,
            int(nonce or 0),
            int(ts * 1_000_000),
            _levels(obj["bids"], "bids"),
            _levels(obj["asks"], "asks"),
        )
    except ValueError as err:  # json.JSONDecodeError is a ValueError
        raise ReplayFormatError(f"{path}:{line}: {err}") from None
    return RecordedBook(path, line, exchange, book)


def read_file(path: Path, on_error: Callable[[ReplayFormatError], None]) -> Iterator[RecordedBook]:
    """The books of one file, in order; malformed lines go to `on_error` and are skipped."""
    with open_text(path) as f:
        last_ts = -1
        for n, text in enumerate(f, start=1):
            if not text.strip():
                continue
            try:
                rec = parse_line(text, str(path), n)
                if rec.book.ts_exchange_ns < last_ts:
                    raise ReplayFormatError(f"{path}:{n}: timestamp goes back in time")
            except ReplayFormatError as err:
                on_error(err)
                continue
            last_ts = rec.book.ts_exchange_ns
            yield rec


def read_files(
    paths: Iterable[Path], on_error: Callable[[ReplayFormatError], None]
) -> Iterator[RecordedBook]:
    """Every book of every file, merged by timestamp (ties keep file order)."""
    streams = [read_file(Path(p), on_error) for p in paths]
    return heapq.merge(*streams, key=lambda r: r.book.ts_exchange_ns)


def format_line(exchange: str, book: BookSnapshot) -> str:
    """One recorded book as a line (no newline)."""
    return json.dumps(
        {
            "exchange": exchange,
            "symbol": book.symbol,
            "timestamp": book.ts_exchange_ns // 1_000_000,
            "nonce": book.seq or None,
            "bids": book.bids.tolist(),
            "asks": book.asks.tolist(),
        },
        separators=(",", ":"),
    )


Polled = tuple[int, list[BookSnapshot]]


class ReplayMarket:
    """Recorded books released in timestamp order, one venue each, with each venue's matching
    engine trading against its replayed book.

    Paced at `speed` times recorded time; with `fast`, in lockstep instead: the next line is
    released once every feed has taken all earlier ones, so venues never drift apart in file
    time however fast the pipeline runs.
    """

    def __init__(
        self,
        exchanges: dict[str, SimExchange],
        late_ack_s: float,
        paths: list[Path],
        speed: float,
        fast: bool,
    ) -> None:
        self._exchanges = exchanges
        self.orders = {v: InProcessSimVenue(ex, late_ack_s) for v, ex in exchanges.items()}
        self._rings: dict[str, Backlog[list[BookSnapshot]]] = {
            v: Backlog(_RING_BOOKS) for v in exchanges
        }
        self._taken = dict.fromkeys(exchanges, 0)
        self._progress = asyncio.Event()
        self._paths = paths
        self._speed = speed
        self._fast = fast
        # A fused node's market holds only its own symbols: it skips the others' lines.
        self._symbols = {s for ex in exchanges.values() for s in ex.symbols}
        self.lines = 0
        self.other_exchanges = 0
        self.other_symbols = 0
        self.malformed: list[str] = []
        self.done = False

    async def play(self) -> None:
        t0_wall = time.monotonic()
        t0_file: int | None = None
        for rec in read_files(self._paths, lambda e: self.malformed.append(str(e))):
            ring = self._rings.get(rec.exchange)
            if ring is None:
                self.other_exchanges += 1
                continue
            if rec.book.symbol not in self._symbols:
                self.other_symbols += 1
                continue
            ts = rec.book.ts_exchange_ns
            t0_file = ts if t0_file is None else t0_file
            if self._fast:
                await self._all_taken()
            else:
                await asyncio.sleep(
                    max(0.0, t0_wall + (ts - t0_file) / 1e9 / self._speed - time.monotonic())
                )
            self._exchanges[rec.exchange].install(rec.book)
            ring.push([rec.book])
            self.lines += 1
        if self._fast:
            await self._all_taken()
        self.done = True

    async def _all_taken(self) -> None:
        while any(self._taken[v] < r.last_seq for v, r in self._rings.items()):
            self._progress.clear()
            await self._progress.wait()

    def balances(self, venue: str) -> dict[str, float]:
        return dict(self._exchanges[venue].balances)

    def fetch(self, venue: str, client_id: str) -> OrderResult | None:
        return self._exchanges[venue].fetch(client_id)

    async def poll(
        self, venue: str, after: int, timeout_s: float
    ) -> tuple[int, list[BookSnapshot]]:
        self._taken[venue] = max(self._taken[venue], after)
        self._progress.set()
        seq, steps, _ = await self._rings[venue].since(after, timeout_s)
        return seq, [book for step in steps for book in step]


@ray.remote(num_cpus=0, max_restarts=0)
class ReplayMarketActor:
    """A `ReplayMarket` answering feeds and executors like the venues it replays."""

    def __init__(self, config: HftConfig) -> None:
        if config.replay is None:
            raise ValueError("ReplayMarketActor needs config.replay")
        exchanges = {v: sim_exchange_from_config(config, v) for v in config.venues}
        self._market = ReplayMarket(
            exchanges,
            config.sim.order_timeout_ack_ms / 1000.0,
            list(config.replay.files),
            config.replay.speed,
            config.replay.fast,
        )
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._market.play())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self._task = None

    async def poll(
        self, venue: str, after: int, timeout_s: float
    ) -> tuple[int, list[BookSnapshot]]:
        return await self._market.poll(venue, after, timeout_s)

    async def create_order(
        self, venue: str, client_id: str, symbol: str, side: Side, amount: float, price: float
    ) -> OrderResult:
        return await self._market.orders[venue].create_order(client_id, symbol, side, amount, price)

    async def fetch_order(self, venue: str, client_id: str) -> OrderResult | None:
        return self._market.fetch(venue, client_id)

    async def balances(self, venue: str) -> dict[str, float]:
        return self._market.balances(venue)

    async def progress(self) -> dict[str, Any]:
        m = self._market
        return {
            "lines": m.lines,
            "other_exchanges": m.other_exchanges,
            "other_symbols": m.other_symbols,
            "malformed_lines": list(m.malformed),
            "done": m.done,
        }
