"""Recorded books: the JSON Lines format, reading (with errors that name file and line), and
writing.

One ccxt-unified order book per line, time-ordered within a file, optionally gzipped (`.gz`):
`{"exchange": "binance", "symbol": "BTC/USDT", "timestamp": <ms>, "nonce": <int|null>,
"bids": [[price, amount], ...], "asks": [[price, amount], ...]}`. Each line is a full top-N
snapshot of that venue's book at that time. A line with an empty side records a moment when
the venue's book was not tradable (a gap, a stall, a disconnect).
"""

from __future__ import annotations

import gzip
import heapq
import json
import math
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import IO, Any, NamedTuple

import numpy as np

from hft_ray.types import BookSnapshot


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
