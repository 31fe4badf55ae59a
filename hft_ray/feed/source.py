"""One venue's books as checked BookUpdate rows, whatever kind of venue gives them.

A simulated venue hands over rows ready-made (`next_rows`); a live or replayed venue hands
over book events (`next`), which the feed core turns into rows. Either way every row leaves
here stamped with its receipt and checked (`FeedCore`), so the feed actor, the trading node
and `hft-ray record` read venues the same way. A venue that can fetch a fresh snapshot
(`Resyncable`, a live stream) is asked to when one of its books fails the checks
`feed.resync_after_failures` times in a row: refusing a broken book is not enough, since
nothing else would ever repair it while the connection holds.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np

from hft_ray.types import BookEvent

if TYPE_CHECKING:
    from hft_ray.feed.core import FeedCore


class EventSource(Protocol):
    """A venue that yields book events: a live ccxt.pro stream, a replay."""

    async def start(self) -> None: ...

    async def next(self, timeout_s: float) -> list[BookEvent]: ...

    async def close(self) -> None: ...


@runtime_checkable
class Resyncable(Protocol):
    """A venue that can start a symbol's book again from a fresh snapshot."""

    def resync(self, symbol: str) -> None: ...


@runtime_checkable
class RowSource(Protocol):
    """A venue that yields rows ready-made: a simulated venue."""

    conflated: int

    async def start(self) -> None: ...

    async def next_rows(self, timeout_s: float) -> np.ndarray: ...

    async def close(self) -> None: ...


class CheckedRows:
    """Rows of one venue, stamped and checked by `core` on arrival."""

    def __init__(self, source: EventSource | RowSource, core: FeedCore) -> None:
        self.source = source
        self.core = core
        self._failing = np.zeros(len(core.symbols), dtype=np.int64)  # failed checks in a row
        self._resyncable = isinstance(source, Resyncable)

    async def start(self) -> None:
        await self.source.start()

    async def next(self, timeout_s: float) -> np.ndarray:
        """Everything the venue published since the last call, waiting up to `timeout_s`."""
        source = self.source
        if isinstance(source, RowSource):
            rows = await source.next_rows(timeout_s)
            return self.core.check_rows(rows, time.time_ns(), time.monotonic_ns())
        return (await self.next_with_events(timeout_s))[1]

    async def next_with_events(self, timeout_s: float) -> tuple[list[BookEvent], np.ndarray]:
        """An event venue's events and their checked rows, one row per event of a symbol of
        the feed (the core's `last_status` says why each row is not tradable)."""
        source = self.source
        if isinstance(source, RowSource):
            raise TypeError("a venue of ready-made rows has no events")
        events = await source.next(timeout_s)
        rows = self.core.rows_from_events(events, time.time_ns(), time.monotonic_ns())
        if self._resyncable and len(rows):
            self._resync_failing(rows["symbol"], self.core.last_status)
        return events, rows

    def _resync_failing(self, symbols: np.ndarray, status: np.ndarray) -> None:
        """Count each symbol's failed checks in a row (a good book resets it; the venue's own
        invalidations are its resync under way and do not count); resync at the limit."""
        failing, core = self._failing, self.core
        for symbol, code in zip(symbols.tolist(), status.tolist(), strict=True):
            if code == 0:
                failing[symbol] = 0
            elif code > 0:
                failing[symbol] += 1
                if failing[symbol] >= core.resync_after:
                    failing[symbol] = 0
                    name = core.symbols[symbol]
                    core.restart_sequence(name)
                    self.source.resync(name)  # type: ignore[union-attr]

    async def close(self) -> None:
        await self.source.close()

    @property
    def conflated(self) -> int:
        """Books the venue published that this feed never saw (it fell behind)."""
        return int(getattr(self.source, "conflated", 0))

    @property
    def resyncs(self) -> int:
        return int(getattr(self.source, "resubscribes", 0))

    @property
    def outages(self) -> dict[str, float]:
        """Episodes in which a book was untradable for the venue's own reasons (gap, stall,
        disconnect): how many, their total and longest length in seconds."""
        return dict(getattr(self.source, "outages", NO_OUTAGES))

    def stats(self) -> dict[str, Any]:
        return {"conflated": self.conflated, "resyncs": self.resyncs, "outages": self.outages}


NO_OUTAGES = {"count": 0, "seconds": 0.0, "longest_s": 0.0}
