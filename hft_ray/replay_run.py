"""`hft-ray replay --detect-only` and `hft-ray record`: books from files, books to files.

Detect-only replay feeds every recorded line through the same FeedCore checks and
DetectorCore as a live run, in file time (staleness is judged by the recorded timestamps), and
evaluates after every line with no cooldown, no risk and no execution.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO

import numpy as np

from hft_ray.clock import LiveClock, TestClock
from hft_ray.config import CcxtVenueConfig, ConfigError, HftConfig
from hft_ray.detect.core import DetectorCore
from hft_ray.feed.core import FeedCore
from hft_ray.markets import resolve_markets
from hft_ray.types import BookEvent, BookInvalid, BookSnapshot, Universe
from hft_ray.venues.ccxt_live import CcxtBookStream
from hft_ray.venues.replay import (
    ReplayFileError,
    ReplayFormatError,
    UnknownLines,
    format_line,
    open_text,
    read_files,
)

_EMPTY = np.empty((0, 2))


def detect_replay(config: HftConfig, paths: list[Path], err: TextIO = sys.stderr) -> dict[str, Any]:
    """Every opportunity in the recorded books, line by line.

    A malformed line is printed to `err` (one line naming file:line and why) and skipped, as
    is, once per file, an exchange or a symbol the config does not know. A file that cannot
    be read to its end is printed the same way, naming where reading stopped, and listed in
    `unreadable_files`: the lines before the damage count, the other files are read.
    """
    for p in paths:
        if not p.exists():
            raise ConfigError(f"replay: no such file {p}")
    config = config.model_copy(
        update={"detector": config.detector.model_copy(update={"cooldown_ms": 0.0})}
    )
    markets = resolve_markets(config)
    universe = Universe(tuple(config.venues), tuple(config.symbols))
    feeds = {v: FeedCore(universe, v, config.feed, 1) for v in config.venues}
    symbols = set(config.symbols)
    clock = TestClock(start_ns=0)
    detector = DetectorCore(config, universe, markets, clock, "r")
    malformed: list[str] = []
    unreadable: list[str] = []
    unknown = UnknownLines(lambda notice: print(f"hft-ray replay: {notice}", file=err))

    def on_error(e: ReplayFormatError) -> None:
        if isinstance(e, ReplayFileError):
            unreadable.append(str(e))
            print(f"hft-ray replay: {e}", file=err)
        else:
            malformed.append(str(e))
            print(f"hft-ray replay: skipped {e}", file=err)

    found: list[dict[str, Any]] = []
    lines = 0
    for index, rec in enumerate(read_files(paths, on_error)):
        lines += 1
        feed = feeds.get(rec.exchange)
        if feed is None:
            unknown.exchange(rec)
            continue
        if rec.book.symbol not in symbols:
            unknown.symbol(rec)
            continue
        ts = rec.book.ts_exchange_ns
        clock.advance(max(0, ts - clock.time_ns()))
        feed.on_event(rec.book, ts, clock.monotonic_ns())
        for opp in detector.on_batch(feed.take(0)):
            found.append(
                {
                    "line": index,
                    "kind": opp.kind,
                    "timestamp": ts // 1_000_000,
                    "symbol": universe.symbols[opp.symbol],
                    "buy_exchange": universe.venues[opp.buy_venue],
                    "sell_exchange": universe.venues[opp.sell_venue],
                    "size": opp.size,
                    "buy_avg_price": opp.buy_avg,
                    "sell_avg_price": opp.sell_avg,
                    "profit_quote": opp.profit_quote,
                    "edge_bps": opp.edge_bps,
                }
            )
    return {
        "mode": "replay-detect-only",
        "files": [str(p) for p in paths],
        "venues": list(config.venues),
        "symbols": list(config.symbols),
        "lines": lines,
        "lines_of_other_exchanges": unknown.exchanges,
        "lines_of_other_symbols": unknown.symbols,
        "unknown": unknown.notices,
        "malformed_lines": malformed,
        "unreadable_files": unreadable,
        "book_updates": sum(f.updates for f in feeds.values()),
        "invalid_books": {v: dict(f.invalid) for v, f in feeds.items() if f.invalid},
        "opportunities": len(found),
        "opportunities_list": found,
    }


async def record(
    config: HftConfig,
    exchange: str,
    symbols: list[str],
    out: Path,
    duration_s: float | None,
    depth: int,
    status: TextIO = sys.stdout,
    observe: Callable[[BookEvent], None] | None = None,
    stream: CcxtBookStream | None = None,
) -> dict[str, int]:
    """Write every book (and every invalidation, as an empty book) of a live venue to `out`.

    `observe` also receives each event as the feed saw it; `stream` replaces the stream the
    config describes (both for callers that compare a recording with its live run).
    """
    venue_cfg = next(
        (
            v
            for name, v in config.venues.items()
            if isinstance(v, CcxtVenueConfig) and (v.exchange or name) == exchange
        ),
        CcxtVenueConfig(kind="ccxt", exchange=exchange),
    )
    if stream is None:
        stream = CcxtBookStream(exchange, venue_cfg, symbols, depth, LiveClock())
    counts = {"books": 0, "invalidations": 0}
    last_ns = 0  # lines stay time-ordered even where a venue's clock steps back across symbols
    deadline = None if duration_s is None else time.monotonic() + duration_s
    out.parent.mkdir(parents=True, exist_ok=True)
    try:
        await stream.start()
        with open_text(out, "wt") as f:
            while deadline is None or time.monotonic() < deadline:
                wait = 1.0 if deadline is None else max(0.0, min(1.0, deadline - time.monotonic()))
                for event in await stream.next(wait):
                    if observe is not None:
                        observe(event)
                    if isinstance(event, BookInvalid):
                        counts["invalidations"] += 1
                        book = BookSnapshot(event.symbol, 0, last_ns, _EMPTY, _EMPTY)
                    else:
                        counts["books"] += 1
                        book = event._replace(ts_exchange_ns=max(event.ts_exchange_ns, last_ns))
                    last_ns = book.ts_exchange_ns
                    f.write(format_line(exchange, book) + "\n")
                f.flush()
    finally:
        await stream.close()
    print(
        f"recorded {counts['books']} books, {counts['invalidations']} invalidations to {out}",
        file=status,
    )
    return counts


def run_record(
    config: HftConfig,
    exchange: str,
    symbols: list[str],
    out: Path,
    duration_s: float | None,
    depth: int,
) -> dict[str, int]:
    try:
        return asyncio.run(record(config, exchange, symbols, out, duration_s, depth))
    except KeyboardInterrupt:
        return {}
