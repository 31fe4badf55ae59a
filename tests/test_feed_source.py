"""`CheckedRows`: every venue's books through the feed's checks, and a live book that keeps
failing them resynced."""

from __future__ import annotations

import asyncio

import numpy as np

from hft_ray.config import FeedConfig
from hft_ray.feed.core import FeedCore
from hft_ray.feed.source import CheckedRows
from hft_ray.types import BOOK_VALID, BookEvent, BookInvalid, BookSnapshot, Universe

UNIVERSE = Universe(("binance", "okx"), ("BTC/USDT", "ETH/USDT"))


class Scripted:
    """An event venue that hands out scripted batches and notes each resync asked of it."""

    def __init__(self, batches: list[list[BookEvent]]) -> None:
        self._batches = batches
        self.resynced: list[str] = []

    async def start(self) -> None:
        return None

    async def next(self, timeout_s: float) -> list[BookEvent]:
        return self._batches.pop(0) if self._batches else []

    async def close(self) -> None:
        return None

    def resync(self, symbol: str) -> None:
        self.resynced.append(symbol)


def book(seq: int, symbol: str = "BTC/USDT", ask: float = 100.1) -> BookSnapshot:
    return BookSnapshot(symbol, seq, 0, np.array([[100.0, 1.0]]), np.array([[ask, 1.0]]))


def crossed(seq: int, symbol: str = "BTC/USDT") -> BookSnapshot:
    return book(seq, symbol, ask=99.0)


def test_a_book_failing_the_checks_n_times_in_a_row_is_resynced_once() -> None:
    batches: list[list[BookEvent]] = [
        [book(1), crossed(2), crossed(3)],  # two in a row, then...
        [book(4), crossed(5), crossed(6)],  # ...a good book starts the count again
        [BookInvalid("BTC/USDT", "out_of_sync")],  # the venue's own outage does not count
        [crossed(7, "ETH/USDT"), crossed(7)],  # each symbol counts for itself
        [book(1)],  # after the resync the venue may start its sequence again lower
    ]
    source = Scripted(batches)
    core = FeedCore(UNIVERSE, "okx", FeedConfig(max_jump_z=0, resync_after_failures=3), 1)
    feed = CheckedRows(source, core)

    async def drain() -> list[bool]:
        valid: list[bool] = []
        for _ in range(5):
            rows = await feed.next(0)
            valid += [bool(f & BOOK_VALID) for f in rows["flags"]]
        return valid

    valid = asyncio.run(drain())
    assert source.resynced == ["BTC/USDT"]
    assert valid == [True, False, False, True, False, False, False, False, False, True]
    assert core.invalid == {"crossed": 6, "out_of_sync": 1}


def test_a_venue_that_counts_no_outages_reports_none() -> None:
    core = FeedCore(UNIVERSE, "okx", FeedConfig(max_jump_z=0), 1)
    feed = CheckedRows(Scripted([]), core)
    assert feed.outages == {"count": 0, "seconds": 0.0, "longest_s": 0.0}
    assert feed.stats() == {"conflated": 0, "resyncs": 0, "outages": feed.outages}
