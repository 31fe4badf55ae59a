"""FeedActor: one venue's books, checked, to the detectors (the distributed topology).

Batches leave fire-and-forget, never awaited by the feed: each is counted in flight until its
detector took it, and a feed with `max_in_flight` batches outstanding at one detector stops
taking books from its venue (backpressure: the venue then conflates to the latest book per
symbol, counted) instead of letting a queue grow without bound. A batch deadline is a timer of
the feed's own loop; with `batch_max_us: 0` every poll's rows leave at once, in one message per
detector, however many they are.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import TYPE_CHECKING, Any

import numpy as np
import ray

from hft_ray import heap, metrics, names
from hft_ray.config import HftConfig
from hft_ray.feed.source import EventSource, RowSource
from hft_ray.pinning import pin_actor
from hft_ray.types import Universe

if TYPE_CHECKING:
    from hft_ray.feed.source import CheckedRows

_POLL_S = 0.05  # longest wait for a venue step

_log = logging.getLogger(__name__)


def open_source(config: HftConfig, venue: str) -> EventSource | RowSource:
    """Where a feed actor gets a venue's books, by its kind (ccxt is imported only here, and
    only for a live venue)."""
    from hft_ray.venues.sim import SimBookSource, SimRowSource

    if config.replay is not None:
        return SimBookSource(ray.get_actor(names.REPLAY), venue)
    cfg = config.venues[venue]
    if cfg.kind == "ccxt":
        from hft_ray.clock import LiveClock
        from hft_ray.venues.ccxt_live import CcxtBookStream

        return CcxtBookStream(
            venue, cfg, config.symbols, config.feed.depth, LiveClock(), store=config.store
        )
    return SimRowSource(ray.get_actor(names.venue(venue)))


@ray.remote(max_restarts=-1, max_task_retries=-1)
class FeedActor:
    def __init__(self, config: HftConfig, universe: Universe, venue: str, cores: list[int]) -> None:
        # Imported here, in the feed's own process: the driver creates this actor without
        # loading numba for it.
        from hft_ray.feed.core import FeedCore
        from hft_ray.feed.source import CheckedRows

        self.placement = pin_actor(cores, config.cluster)
        pool = config.detector.pool_size
        self._core = FeedCore(universe, venue, config.feed, pool)
        self._feed: CheckedRows = CheckedRows(open_source(config, venue), self._core)
        # By name, not by handle: a restarted feed finds its peers the same way.
        self._detectors = [ray.get_actor(names.detector(i)) for i in range(pool)]
        self._max_in_flight = config.feed.max_in_flight
        self._max_age_ns = int(config.feed.batch_max_us * 1_000)
        self._in_flight = [0] * pool
        self._room = asyncio.Event()
        self._timer: asyncio.TimerHandle | None = None
        self._task: asyncio.Task[None] | None = None
        self._batches = 0
        self._rows_sent = 0
        self._lost_batches = 0
        self._backpressure_waits = 0
        self._error = ""
        self._venue = venue
        self._last_book_mono: int | None = None
        self._metrics = metrics.MetricsFlusher(config.metrics.enabled)
        self._metrics_task: asyncio.Task[None] | None = None

    async def ready(self) -> dict[str, object]:
        return self.placement

    async def warm(self) -> None:
        """Reach every detector once, so the first batch does not pay for the connection."""
        await asyncio.gather(*(d.ping.remote() for d in self._detectors))

    async def start(self) -> None:
        """Start polling; idempotent, so the driver may call it again after a restart."""
        if self._task is None:
            await self._feed.start()
            heap.freeze()
            self._task = asyncio.get_running_loop().create_task(self._run())
            self._task.add_done_callback(self._on_done)
        if self._metrics_task is None and self._metrics.enabled:
            loop = asyncio.get_running_loop()
            self._metrics_task = loop.create_task(self._metrics.run(self._metrics_reading))

    def _on_done(self, task: asyncio.Task[None]) -> None:
        err = None if task.cancelled() else task.exception()
        if err is not None:
            # The class travels (stats, status page, report); the message, which for a venue
            # error may quote a URL or a body, stays in this actor's log.
            _log.error("feed %s failed", self._venue, exc_info=err)
            self._error = type(err).__name__

    async def _run(self) -> None:
        while True:
            await self._wait_for_room()
            rows = await self._feed.next(_POLL_S)
            if not len(rows):
                continue
            self._last_book_mono = int(rows["ts_recv_mono_ns"][-1])
            full = self._core.add(rows)
            for shard in full:
                self._send(shard, self._core.take(shard))
            if self._max_age_ns == 0:
                self._flush(self._core.pending())
            elif self._timer is None:
                self._arm_timer()

    def _arm_timer(self) -> None:
        wait_ns = self._core.next_deadline_ns(time.monotonic_ns())
        if wait_ns is not None:
            self._timer = asyncio.get_running_loop().call_later(wait_ns / 1e9, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        self._flush(self._core.due(time.monotonic_ns()))
        self._arm_timer()

    def _flush(self, shards: list[int]) -> None:
        for shard in shards:
            self._send(shard, self._core.take(shard))

    def _send(self, shard: int, rows: np.ndarray) -> None:
        """Hand a batch to its detector and go on; its completion is counted when it comes."""
        ref: Any = self._detectors[shard].on_batch.remote(rows, time.monotonic_ns())
        self._in_flight[shard] += 1
        self._batches += 1
        self._rows_sent += len(rows)
        self._metrics.sample(metrics.FEED_BATCH_ROWS, len(rows), venue=self._venue)
        asyncio.wrap_future(ref.future()).add_done_callback(
            lambda done, s=shard: self._taken(s, done)
        )

    def _taken(self, shard: int, done: asyncio.Future[Any]) -> None:
        self._in_flight[shard] -= 1
        if not done.cancelled() and done.exception() is not None:
            # The detector died with it; Ray restarts it, and the next book of each symbol
            # is a full snapshot again. Counted, not retried: a stale batch is worth nothing.
            self._lost_batches += 1
        self._room.set()

    async def _wait_for_room(self) -> None:
        while any(n >= self._max_in_flight for n in self._in_flight):
            self._backpressure_waits += 1
            self._room.clear()
            await self._room.wait()

    async def stop(self) -> None:
        """Stop polling, send what is pending, and wait until the detectors took it."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
            self._task = None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        await self._feed.close()
        self._flush(self._core.pending())
        while any(self._in_flight):
            self._room.clear()
            await self._room.wait()
        if self._metrics_task is not None:
            self._metrics_task.cancel()
            self._metrics_task = None
        self._metrics.maybe_push(self._metrics_reading, force=True)

    def _book_age_s(self) -> float | None:
        """Seconds since this feed last received a book, or None before the first."""
        last = self._last_book_mono
        return None if last is None else (time.monotonic_ns() - last) / 1e9

    def _metrics_reading(self) -> metrics.Reading:
        return metrics.feed_reading(
            self._venue,
            updates=self._core.updates,
            invalid=self._core.invalid,
            batches=self._batches,
            in_flight=sum(self._in_flight),
            backpressure_waits=self._backpressure_waits,
            resyncs=self._feed.resyncs,
            outages=self._feed.outages,
            book_age_s=self._book_age_s(),
            conflated=self._feed.conflated,
        )

    async def stats(self) -> dict[str, Any]:
        return {
            "updates": self._core.updates,
            "invalid": dict(self._core.invalid),
            "conflated": self._feed.conflated,
            "batches": self._batches,
            "batches_lost": self._lost_batches,
            "rows_sent": self._rows_sent,
            "queue_depth": sum(self._in_flight),
            "backpressure_waits": self._backpressure_waits,
            "resyncs": self._feed.resyncs,
            "outages": self._feed.outages,
            "running": self._task is not None and not self._task.done(),
            "error": self._error,
            "last_book_age_ms": None if (age := self._book_age_s()) is None else age * 1e3,
        }
