"""Recorded books: the JSON Lines format, reading (with errors that name file and line), and
writing.

One ccxt-unified order book per line, time-ordered within a file, optionally gzipped (`.gz`):
`{"exchange": "binance", "symbol": "BTC/USDT", "timestamp": <ms|null>, "received_ns": <int>,
"nonce": <int|null>, "bids": [[price, amount], ...], "asks": [[price, amount], ...]}`. Each
line is a full top-N snapshot of that venue's book at that time. The two clocks are kept
apart: `timestamp` is the venue's own stamp (null when it gave none), `received_ns` ours (a
recording's lines are in its order; optional in hand-made files, which are then in
`timestamp` order). A moment when the venue's book was not tradable is a line with empty
sides and its reason, `"invalid": "sequence_gap"`; replay passes it on as that invalidation.
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import heapq
import json
import math
import time
import zlib
from collections.abc import Callable, Collection, Iterable, Iterator
from pathlib import Path
from typing import IO, Any, NamedTuple

import numpy as np
import orjson
import ray

from hft_ray.book import OUT_OF_RANGE, check_levels
from hft_ray.config import HftConfig
from hft_ray.types import BAD_LEVEL, BookEvent, BookInvalid, BookSnapshot, OrderResult, Side
from hft_ray.venues.sim import Backlog, InProcessSimVenue, SimExchange, sim_exchange_from_config

_RING_BOOKS = 256  # lines a venue holds for its feed before the replay waits for it
_START_PATIENCE_S = 60.0  # longest the replay's clock waits for every feed to read
#: Longest line read, in bytes: a top-N book of thousands of levels is a few hundred kB, and a
#: file with no line breaks (binary, corrupt) must not be read into memory whole.
_MAX_LINE = 4 << 20
_INT64_MAX = (1 << 63) - 1
_MAX_TS_MS = _INT64_MAX // 1_000_000  # a row holds the timestamp in int64 nanoseconds
_EMPTY = np.empty((0, 2))


class ReplayFormatError(ValueError):
    """A line that is not a recorded book; the message names file, line and problem."""


class ReplayFileError(ReplayFormatError):
    """A file that cannot be read (any further): not there, not gzip, corrupt, binary."""


class RecordedBook(NamedTuple):
    path: str
    line: int  # 1-based line number in its file
    exchange: str
    book: BookSnapshot  # empty sides for an invalidation
    at_ns: int  # where the line sits in recorded time: our receipt, else the venue's stamp
    invalid: str  # why the book was not tradable, '' for a book

    @property
    def event(self) -> BookEvent:
        return BookInvalid(self.book.symbol, self.invalid) if self.invalid else self.book


def open_text(path: Path, mode: str = "rt") -> IO[str]:
    if path.suffix == ".gz":
        return gzip.open(path, mode, encoding="utf-8")  # type: ignore[return-value]
    return open(path, mode, encoding="utf-8")


def _is_number(value: Any) -> bool:
    """A JSON number: int or float, not a boolean (which Python counts as an int)."""
    return type(value) is int or type(value) is float


def _levels(value: Any, side: str) -> np.ndarray:
    """`[[price, amount], ...]`, each a JSON number, price finite and above 0, amount finite
    and not negative."""
    if not isinstance(value, list):
        raise ValueError(f"{side} must be a list of [price, amount]")
    for i, level in enumerate(value):
        if not (
            isinstance(level, list)
            and len(level) == 2
            and _is_number(level[0])
            and _is_number(level[1])
        ):
            raise ValueError(f"{side}[{i}] must be [price, amount] numbers, got {level!r:.60}")
        price, amount = level
        if not (0 < price < math.inf and 0 <= amount < math.inf):
            raise ValueError(
                f"{side}[{i}] needs a finite price above 0 and amount from 0, got {level!r:.60}"
            )
    return np.array(value, dtype=np.float64).reshape(-1, 2)


def parse_line(text: str | bytes, path: str, line: int) -> RecordedBook:
    """Decode one line; raise ReplayFormatError naming `path:line` and what is wrong."""
    try:
        try:
            obj = orjson.loads(text)
        except orjson.JSONDecodeError as err:
            raise ValueError(f"not JSON ({err})") from None
        if not isinstance(obj, dict):
            raise ValueError("not a JSON object")
        missing = [k for k in ("exchange", "symbol", "timestamp", "bids", "asks") if k not in obj]
        if missing:
            raise ValueError(f"missing {', '.join(missing)}")
        ts, received = obj["timestamp"], obj.get("received_ns")
        if ts is not None and not (_is_number(ts) and 0 <= ts <= _MAX_TS_MS):
            raise ValueError(f"timestamp must be milliseconds from 0 to {_MAX_TS_MS}, got {ts!r}")
        if received is not None and not (type(received) is int and 0 <= received <= _INT64_MAX):
            raise ValueError(f"received_ns must be nanoseconds from 0 to 2**63-1, got {received!r}")
        invalid = obj.get("invalid", "")
        if not (isinstance(invalid, str) and len(invalid) <= 64):
            raise ValueError(f"invalid must be a reason (a short string), got {invalid!r:.60}")
        if invalid and (obj["bids"] or obj["asks"]):
            raise ValueError("a line with an invalid reason must have empty bids and asks")
        nonce = obj.get("nonce")
        if nonce is not None and type(nonce) is not int:
            raise ValueError(f"nonce must be an integer or null, got {nonce!r}")
        if nonce is not None and not 0 <= nonce <= _INT64_MAX:
            raise ValueError(f"nonce must be from 0 to 2**63-1, got {nonce}")
        exchange, symbol = obj["exchange"], obj["symbol"]
        if not isinstance(exchange, str) or not isinstance(symbol, str):
            raise ValueError("exchange and symbol must be strings")
        if ts is not None:
            stamp = int(ts * 1_000_000)
        elif received is not None:
            stamp = received
        else:
            raise ValueError("timestamp is null and there is no received_ns: the line has no time")
        book = BookSnapshot(
            symbol,
            nonce or 0,
            stamp,
            _levels(obj["bids"], "bids"),
            _levels(obj["asks"], "asks"),
        )
    except ValueError as err:
        raise ReplayFormatError(f"{path}:{line}: {err}") from None
    at_ns = stamp if received is None else received
    return RecordedBook(path, line, exchange, book, at_ns, invalid)


def _open_binary(path: Path) -> IO[bytes]:
    if path.suffix == ".gz":
        return gzip.open(path, "rb")  # type: ignore[return-value]
    return open(path, "rb")


def _raw_lines(f: IO[bytes]) -> Iterator[bytes | None]:
    """Each line's bytes; None for one longer than `_MAX_LINE`, which is skipped unread."""
    while raw := f.readline(_MAX_LINE + 1):
        if len(raw) > _MAX_LINE and not raw.endswith(b"\n"):
            while (rest := f.readline(_MAX_LINE)) and not rest.endswith(b"\n"):
                pass
            yield None
        else:
            yield raw


def _text(raw: bytes | None) -> str:
    """A line's text, or ValueError naming why it has none."""
    if raw is None:
        raise ValueError(f"line longer than {_MAX_LINE} bytes")
    if b"\0" in raw:
        raise ValueError("binary data (a NUL byte)")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as err:
        byte = f"{raw[err.start]:#04x}"
        raise ValueError(f"not UTF-8 text (byte {byte} at column {err.start + 1})") from None


def read_file(path: Path, on_error: Callable[[ReplayFormatError], None]) -> Iterator[RecordedBook]:
    """The books of one file, in order; malformed lines go to `on_error` and are skipped.

    A file that cannot be read (missing, not gzip, corrupt compressed data, or binary: its
    first line is no UTF-8 text) goes to `on_error` as one `ReplayFileError` naming where
    reading stopped, and ends there; the books before it are kept.
    """
    n, seen_text = 0, False
    try:
        with _open_binary(path) as f:
            last_ts = -1
            for n, raw in enumerate(_raw_lines(f), start=1):
                try:
                    text = _text(raw)
                except ValueError as err:
                    if not seen_text:
                        why = f"not a JSON Lines file ({err})"
                        raise ReplayFileError(f"{path}:{n}: {why}") from None
                    on_error(ReplayFormatError(f"{path}:{n}: {err}"))
                    continue
                if not text.strip():
                    continue
                seen_text = True
                try:
                    rec = parse_line(text, str(path), n)
                    if rec.at_ns < last_ts:
                        raise ReplayFormatError(
                            f"{path}:{n}: goes back in time (earlier than a line before)"
                        )
                except ReplayFormatError as err:
                    on_error(err)
                    continue
                last_ts = rec.at_ns
                yield rec
    except ReplayFileError as err:
        on_error(err)
    except (OSError, EOFError, zlib.error) as err:  # gzip.BadGzipFile is an OSError
        why = err.strerror if isinstance(err, OSError) and err.strerror else str(err)
        past = f" past line {n}" if n else ""
        on_error(ReplayFileError(f"{path}:{n + 1}: cannot read{past} ({why})"))


def read_files(
    paths: Iterable[Path], on_error: Callable[[ReplayFormatError], None]
) -> Iterator[RecordedBook]:
    """Every book of every file, merged by timestamp (ties keep file order)."""
    streams = [read_file(Path(p), on_error) for p in paths]
    return heapq.merge(*streams, key=lambda r: r.at_ns)


def matching_book(book: BookSnapshot) -> BookSnapshot:
    """The book a matching engine holds for a recorded one: levels no venue can mean (zero
    sizes, prices out of range) match nothing, while the feeds see, and refuse, the book."""
    if check_levels(book.bids, book.asks) in (BAD_LEVEL, OUT_OF_RANGE):
        return book._replace(bids=_EMPTY, asks=_EMPTY)
    return book


class UnknownLines:
    """Lines of an exchange or a symbol the run does not know, counted and reported once per
    (file, exchange) or (file, symbol) through `report`, naming the first such line."""

    def __init__(self, report: Callable[[str], None] | None = None) -> None:
        self._report = report
        self._seen: set[tuple[str, str, str]] = set()
        self.notices: list[str] = []
        self.exchanges = 0
        self.symbols = 0

    def exchange(self, rec: RecordedBook) -> None:
        self.exchanges += 1
        self._notice(rec, "exchange", rec.exchange, "is not a venue of the run")

    def symbol(self, rec: RecordedBook) -> None:
        self.symbols += 1
        self._notice(rec, "symbol", rec.book.symbol, "is not a symbol of the run")

    def _notice(self, rec: RecordedBook, kind: str, name: str, why: str) -> None:
        if (rec.path, kind, name) in self._seen:
            return
        self._seen.add((rec.path, kind, name))
        notice = f"{rec.path}:{rec.line}: {kind} {name} {why}: its lines are skipped"
        self.notices.append(notice)
        if self._report is not None:
            self._report(notice)


def format_line(exchange: str, event: BookEvent, received_ns: int | None = None) -> str:
    """One recorded book or invalidation as a line (no newline). A book's `ts_exchange_ns` 0
    (the venue gave no stamp) is written as a null `timestamp`."""
    line: dict[str, Any] = {"exchange": exchange, "symbol": event.symbol}
    if isinstance(event, BookInvalid):
        line |= {"timestamp": None, "nonce": None, "bids": [], "asks": []}
        line["invalid"] = event.reason
    else:
        line["timestamp"] = event.ts_exchange_ns // 1_000_000 if event.ts_exchange_ns else None
        line |= {"nonce": event.seq or None, "bids": event.bids.tolist()}
        line["asks"] = event.asks.tolist()
    if received_ns is not None:
        line["received_ns"] = received_ns
    return json.dumps(line, separators=(",", ":"))


Polled = tuple[int, list[BookEvent]]


class ReplayMarket:
    """Recorded books released in timestamp order, one venue each, with each venue's matching
    engine trading against its replayed book.

    Paced at `speed` times recorded time, from when every venue's feed reads; a feed with a
    whole ring of lines still to take holds the replay back (`held_s`) instead of losing a
    line. With `fast`, in lockstep instead: the lines of the next recorded instant are
    released once every feed has taken all earlier ones, so venues never drift apart in file
    time however fast the pipeline runs.

    Malformed lines are listed in `malformed` and skipped, files that could not be read to
    their end in `unreadable` (the books before the damage are kept); lines of an
    exchange not among `exchanges`, or of a symbol not among `run_symbols` (when given: a
    fused node's market holds only its own symbols), are noticed once per file in `unknown`.
    A book whose levels no venue can mean (zero sizes, prices out of range) reaches the feeds,
    which refuse it, while the matching engine sees an empty book in its place.
    """

    def __init__(
        self,
        exchanges: dict[str, SimExchange],
        late_ack_s: float,
        paths: list[Path],
        speed: float,
        fast: bool,
        run_symbols: Collection[str] | None = None,
    ) -> None:
        self._exchanges = exchanges
        self.orders = {v: InProcessSimVenue(ex, late_ack_s) for v, ex in exchanges.items()}
        self._rings: dict[str, Backlog[list[BookEvent]]] = {
            v: Backlog(_RING_BOOKS) for v in exchanges
        }
        self._taken = dict.fromkeys(exchanges, 0)
        self._polled: set[str] = set()  # venues whose feed has asked for books
        self._progress = asyncio.Event()
        self._paths = paths
        self._speed = speed
        self._fast = fast
        # A fused node's market holds only its own symbols: it skips the others' lines.
        self._symbols = {s for ex in exchanges.values() for s in ex.symbols}
        self._run_symbols = None if run_symbols is None else set(run_symbols)
        self.lines = 0
        self.other_exchanges = 0
        self.other_symbols = 0
        self.malformed: list[str] = []
        self.unreadable: list[str] = []
        self._unknown = UnknownLines()
        self.held_s = 0.0  # paced replay: seconds it waited for a feed to take its lines
        self.done = False

    @property
    def unknown(self) -> list[str]:
        """One notice per (file, exchange) and (file, symbol) the run does not know."""
        return self._unknown.notices

    def progress(self) -> dict[str, Any]:
        """How far the replay got and what it skipped, as the report shows it."""
        return {
            "lines": self.lines,
            "other_exchanges": self.other_exchanges,
            "other_symbols": self.other_symbols,
            "malformed_lines": list(self.malformed),
            "unreadable_files": list(self.unreadable),
            "unknown": list(self.unknown),
            "held_s": round(self.held_s, 3),
            "released": {v: r.last_seq for v, r in self._rings.items()},
            "done": self.done,
        }

    def _skipped(self, err: ReplayFormatError) -> None:
        (self.unreadable if isinstance(err, ReplayFileError) else self.malformed).append(str(err))

    async def play(self) -> None:
        """Release every line; done (`done`) even if reading fails, so a run never waits for
        lines that will not come."""
        try:
            await self._play()
        finally:
            self.done = True

    async def _play(self) -> None:
        await self._every_venue_polling()
        t0_wall = time.monotonic()
        t0_file: int | None = None
        instant: int | None = None  # the recorded time of the lines last released
        for rec in read_files(self._paths, self._skipped):
            ring = self._rings.get(rec.exchange)
            if ring is None:
                self.other_exchanges += 1
                self._unknown.exchange(rec)
                continue
            if rec.book.symbol not in self._symbols:
                self.other_symbols += 1
                if self._run_symbols is not None and rec.book.symbol not in self._run_symbols:
                    self._unknown.symbol(rec)
                continue
            ts = rec.at_ns
            t0_file = ts if t0_file is None else t0_file
            if self._fast:
                if ts != instant:  # lockstep between recorded instants, not between lines
                    await self._all_taken()
                    instant = ts
            else:
                await asyncio.sleep(
                    max(0.0, t0_wall + (ts - t0_file) / 1e9 / self._speed - time.monotonic())
                )
                t0_wall += await self._room_in(rec.exchange)  # the schedule slips, no line lost
            self._exchanges[rec.exchange].install(matching_book(rec.book))
            ring.push([rec.event])
            self.lines += 1
        if self._fast:
            await self._all_taken()

    async def _all_taken(self) -> None:
        while any(self._taken[v] < r.last_seq for v, r in self._rings.items()):
            self._progress.clear()
            await self._progress.wait()

    async def _every_venue_polling(self) -> None:
        """The replay's clock starts once every venue's feed reads (a pipeline still being
        built would otherwise find the first seconds already released), or after
        `_START_PATIENCE_S`: a feed that never comes is the run's to report, not a hang."""
        deadline = time.monotonic() + _START_PATIENCE_S
        while len(self._polled) < len(self._rings) and time.monotonic() < deadline:
            self._progress.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._progress.wait(), deadline - time.monotonic())

    async def _room_in(self, venue: str) -> float:
        """Wait while the venue's feed has a whole ring of lines still to take: backpressure
        on the replay, never a line dropped. Returns the seconds held (`held_s`)."""
        ring, began = self._rings[venue], time.monotonic()
        while ring.last_seq - self._taken[venue] >= _RING_BOOKS:
            self._progress.clear()
            await self._progress.wait()
        held = time.monotonic() - began
        self.held_s += held
        return held

    def balances(self, venue: str) -> dict[str, float]:
        return dict(self._exchanges[venue].balances)

    def fetch(self, venue: str, client_id: str) -> OrderResult | None:
        return self._exchanges[venue].fetch(client_id)

    async def poll(self, venue: str, after: int, timeout_s: float) -> tuple[int, list[BookEvent]]:
        self._taken[venue] = max(self._taken[venue], after)
        self._polled.add(venue)
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
            run_symbols=config.symbols,
        )
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._market.play())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self._task = None

    async def poll(self, venue: str, after: int, timeout_s: float) -> tuple[int, list[BookEvent]]:
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
        return self._market.progress()
