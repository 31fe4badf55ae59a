"""`hft-ray replay --detect-only` and `hft-ray record`: books from files, books to files.

Detect-only replay feeds every recorded line through the same FeedCore checks and
DetectorCore as a live run, in file time (staleness is judged by the recorded timestamps), and
evaluates after every line with no cooldown, no risk and no execution. A recording passes every
book through the same checks as a run's feed, so it never holds a book a run would refuse.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from hft_ray.clock import LiveClock, TestClock
from hft_ray.config import CcxtVenueConfig, ConfigError, HftConfig, RecordConfig
from hft_ray.detect.core import DetectorCore
from hft_ray.feed.checks import STATUS
from hft_ray.feed.core import FeedCore
from hft_ray.feed.source import CheckedRows
from hft_ray.markets import resolve_markets
from hft_ray.types import BookInvalid, Universe
from hft_ray.venues.ccxt_live import CcxtBookStream
from hft_ray.venues.replay import (
    ReplayFileError,
    ReplayFormatError,
    UnknownLines,
    format_line,
    open_text,
    read_files,
)


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
        ts = rec.at_ns
        clock.advance(max(0, ts - clock.time_ns()))
        feed.on_event(rec.event, ts, clock.monotonic_ns())
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
    config: RecordConfig,
    exchange: str,
    symbols: list[str],
    out: Path,
    duration_s: float | None,
    depth: int,
    status: TextIO = sys.stdout,
    stream: CcxtBookStream | None = None,
    status_every_s: float = 5.0,
) -> RecordCounts:
    """Write every book of a live venue to `out` as the feed of a run would pass it on: each
    book through the same checks (`CheckedRows`, which also resyncs a book that keeps failing
    them), a book that fails them written as its invalidation, never as levels; every
    `status_every_s` a status line, at the end a summary, both on `status`.

    `stream` replaces the stream the config describes (for callers that drive it themselves).
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
    core = FeedCore(
        Universe((exchange,), tuple(symbols)),
        exchange,
        config.feed.model_copy(update={"depth": depth}),
        1,
        stale_at_receipt=True,
    )
    feed = CheckedRows(stream, core)
    counts = RecordCounts()
    last_ns = 0  # our receipt stamps never go back within a file, whatever the wall clock does
    deadline = None if duration_s is None else time.monotonic() + duration_s
    next_status = time.monotonic() + status_every_s
    out.parent.mkdir(parents=True, exist_ok=True)
    try:
        await feed.start()
        with open_text(out, "wt") as f:
            while deadline is None or time.monotonic() < deadline:
                wait = 1.0 if deadline is None else max(0.0, min(1.0, deadline - time.monotonic()))
                events, rows = await feed.next_with_events(wait)
                for event, received, code in zip(
                    events, rows["ts_recv_ns"].tolist(), core.last_status.tolist(), strict=True
                ):
                    last_ns = max(last_ns, received)
                    if code:
                        reason = event.reason if isinstance(event, BookInvalid) else STATUS[code]
                        counts.invalid[reason] += 1
                        event = BookInvalid(event.symbol, reason)
                    else:
                        counts.books += 1
                    f.write(format_line(exchange, event, last_ns) + "\n")
                f.flush()
                counts.resyncs, counts.outages = feed.resyncs, feed.outages
                if time.monotonic() >= next_status:
                    next_status += status_every_s
                    print(f"record {exchange}: {counts.line()}", file=status, flush=True)
    finally:
        await feed.close()
    print(f"recorded to {out}: {counts.line()}", file=status, flush=True)
    return counts


@dataclass
class RecordCounts:
    """What a recording holds: books, invalidations by reason; the stream's resyncs and
    outages (how many, longest)."""

    books: int = 0
    invalid: Counter[str] = field(default_factory=Counter)
    resyncs: int = 0
    outages: dict[str, float] = field(default_factory=dict)

    def line(self) -> str:
        reasons = ", ".join(f"{r} {n}" for r, n in self.invalid.most_common())
        longest = self.outages.get("longest_s", 0.0)
        return (
            f"{self.books} books, {sum(self.invalid.values())} invalid"
            + (f" ({reasons})" if reasons else "")
            + f", {self.resyncs} resyncs, {int(self.outages.get('count', 0))} outages"
            + (f" (longest {longest:.1f}s)" if longest else "")
        )


def run_record(
    config: RecordConfig,
    exchange: str,
    symbols: list[str],
    out: Path,
    duration_s: float | None,
    depth: int,
) -> RecordCounts | None:
    """`record` until its duration or Ctrl-C (None then: the file holds what came)."""
    try:
        return asyncio.run(record(config, exchange, symbols, out, duration_s, depth))
    except KeyboardInterrupt:
        return None
