"""Normalise venue books into BookUpdate rows, check them, and cut them into batches.

Rows for each detector shard accumulate in a preallocated buffer and leave as one numpy array
when the shard holds `batch_max_rows` rows or its oldest row is `batch_max_us` old.
"""

from __future__ import annotations

from collections import Counter

import numpy as np

from hft_ray.book import PRICE_JUMP, JumpFilter, check_levels
from hft_ray.config import FeedConfig
from hft_ray.types import (
    BOOK_VALID,
    BookEvent,
    BookInvalid,
    BookSnapshot,
    Universe,
    book_update_dtype,
)


class FeedCore:
    def __init__(
        self, universe: Universe, venue: str, config: FeedConfig, detector_count: int
    ) -> None:
        self._universe = universe
        self._venue_id = universe.venue_id(venue)
        self._depth = config.depth
        self._max_rows = config.batch_max_rows
        self._max_age_ns = int(config.batch_max_us * 1_000)
        self._shard = [universe.shard_of(s, detector_count) for s in range(len(universe.symbols))]
        dtype = book_update_dtype(config.depth)
        self._buffers = [np.zeros(self._max_rows, dtype) for _ in range(detector_count)]
        self._fill = [0] * detector_count
        self._oldest_mono = [0] * detector_count
        self._jumps = (
            [JumpFilter(config.max_jump_z) for _ in universe.symbols] if config.max_jump_z else []
        )
        self.updates = 0
        self.invalid: Counter[str] = Counter()
        self.unknown_symbols = 0

    def on_event(self, event: BookEvent, recv_ns: int, recv_mono_ns: int) -> int | None:
        """Add one venue event; return the shard whose batch it filled, which must be taken
        before the next event.

        A book that fails a check, and an invalidation from the venue adapter, both travel as
        a row without the valid flag, so the detector stops trading that book at once rather
        than when it goes stale.
        """
        try:
            symbol_id = self._universe.symbol_id(event.symbol)
        except ValueError:
            self.unknown_symbols += 1
            return None
        if isinstance(event, BookInvalid):
            self.invalid[event.reason] += 1
            return self._add(symbol_id, None, event.reason, recv_ns, recv_mono_ns)
        reason = check_levels(event.bids, event.asks)
        if not reason and self._jumps:
            mid = (event.bids[0, 0] + event.asks[0, 0]) / 2
            reason = "" if self._jumps[symbol_id].check(mid) else PRICE_JUMP
        if reason:
            self.invalid[reason] += 1
        return self._add(symbol_id, event, reason, recv_ns, recv_mono_ns)

    def ingest(
        self, events: list[BookEvent], recv_ns: int, recv_mono_ns: int
    ) -> list[tuple[int, np.ndarray]]:
        """Add a burst of events (a long-poll may return hundreds); return the batches that
        filled up on the way, as (shard, rows), to be sent before anything else."""
        full = []
        for event in events:
            shard = self.on_event(event, recv_ns, recv_mono_ns)
            if shard is not None:
                full.append((shard, self.take(shard)))
        return full

    def _add(
        self,
        symbol_id: int,
        book: BookSnapshot | None,
        reason: str,
        recv_ns: int,
        recv_mono_ns: int,
    ) -> int | None:
        shard = self._shard[symbol_id]
        row = self._buffers[shard][self._fill[shard]]
        row["venue"], row["symbol"] = self._venue_id, symbol_id
        row["flags"] = 0 if reason else BOOK_VALID
        row["ts_recv_ns"], row["ts_recv_mono_ns"] = recv_ns, recv_mono_ns
        nb = na = 0
        if book is not None:
            nb, na = min(len(book.bids), self._depth), min(len(book.asks), self._depth)
            row["seq"], row["ts_exchange_ns"] = book.seq, book.ts_exchange_ns
            row["bid_px"][:nb], row["bid_qty"][:nb] = book.bids[:nb, 0], book.bids[:nb, 1]
            row["ask_px"][:na], row["ask_qty"][:na] = book.asks[:na, 0], book.asks[:na, 1]
        else:
            row["seq"], row["ts_exchange_ns"] = 0, recv_ns
        row["n_bids"], row["n_asks"] = nb, na
        row["bid_px"][nb:], row["bid_qty"][nb:] = np.nan, np.nan
        row["ask_px"][na:], row["ask_qty"][na:] = np.nan, np.nan
        if self._fill[shard] == 0:
            self._oldest_mono[shard] = recv_mono_ns
        self._fill[shard] += 1
        self.updates += book is not None
        return shard if self._fill[shard] >= self._max_rows else None

    def due(self, now_mono_ns: int) -> list[int]:
        """Shards whose batch is full or old enough to leave."""
        return [
            shard
            for shard, n in enumerate(self._fill)
            if n >= self._max_rows
            or (n and now_mono_ns - self._oldest_mono[shard] >= self._max_age_ns)
        ]

    def pending(self) -> list[int]:
        """Shards holding any rows (to flush everything at shutdown)."""
        return [shard for shard, n in enumerate(self._fill) if n]

    def take(self, shard: int) -> np.ndarray:
        """The shard's batch as an owned array; the buffer is reused."""
        n = self._fill[shard]
        self._fill[shard] = 0
        return self._buffers[shard][:n].copy()

    def next_deadline_ns(self, now_mono_ns: int) -> int | None:
        """Nanoseconds until the oldest pending batch is due, or None if none is pending."""
        waits = [
            self._oldest_mono[s] + self._max_age_ns - now_mono_ns
            for s, n in enumerate(self._fill)
            if n
        ]
        return max(0, min(waits)) if waits else None
