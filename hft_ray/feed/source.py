"""One venue's books as checked BookUpdate rows, whatever kind of venue gives them.

A simulated venue hands over rows ready-made (`next_rows`); a live or replayed venue hands
over book events (`next`), which the feed core turns into rows. Either way every row leaves
here stamped with its receipt and checked (`FeedCore`), so the feed actor and the trading node
read venues the same way.
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

    async def start(self) -> None:
        await self.source.start()

    async def next(self, timeout_s: float) -> np.ndarray:
        """Everything the venue published since the last call, waiting up to `timeout_s`."""
        source = self.source
        if isinstance(source, RowSource):
            rows = await source.next_rows(timeout_s)
            return self.core.check_rows(rows, time.time_ns(), time.monotonic_ns())
        events = await source.next(timeout_s)
        return self.core.rows_from_events(events, time.time_ns(), time.monotonic_ns())

    async def close(self) -> None:
        await self.source.close()

    @property
    def conflated(self) -> int:
        """Books the venue published that this feed never saw (it fell behind)."""
        return int(getattr(self.source, "conflated", 0))

    @property
    def resyncs(self) -> int:
        return int(getattr(self.source, "resubscribes", 0))

    def stats(self) -> dict[str, Any]:
        return {"conflated": self.conflated, "resyncs": self.resyncs}
