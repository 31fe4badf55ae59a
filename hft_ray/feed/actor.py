"""FeedActor: polls one venue, runs the FeedCore, and ships batches to the detectors.

Batches leave fire-and-forget; at most `max_in_flight` unacknowledged batches per detector,
beyond which the feed waits (backpressure) instead of letting the queue grow without bound.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from typing import Any

import numpy as np
import ray

from hft_ray import metrics, names
from hft_ray.book import check_levels
from hft_ray.clock import LiveClock
from hft_ray.config import CcxtVenueConfig, HftConfig
from hft_ray.feed.core import FeedCore
from hft_ray.pinning import pin_actor
from hft_ray.types import Universe
from hft_ray.venues.base import BookSource
from hft_ray.venues.ccxt_live import CcxtBookStream
from hft_ray.venues.sim import SimBookSource

_POLL_S = 0.05  # longest wait for a venue step when no batch is pending


def open_book_source(config: HftConfig, venue: str) -> BookSource:
    """The book source of a venue, by its kind."""
    cfg = config.venues[venue]
    if config.replay is not None:
        return SimBookSource(ray.get_actor(names.REPLAY), venue)
    if isinstance(cfg, CcxtVenueConfig):
        return CcxtBookStream(venue, cfg, config.symbols, config.feed.depth, LiveClock())
    return SimBookSource(ray.get_actor(names.venue(venue)), from_now=True)


_log = logging.getLogger(__name__)


@ray.remote(max_restarts=-1, max_task_retries=-1)
class FeedActor:
    def __init__(
        self,
        config: HftConfig,
        universe: Universe,
        venue: str,
        cores: list[int],
    ) -> None:
        self.placement = pin_actor(cores, config.cluster.pin_cores)
        pool = config.detector.pool_size
        self._core = FeedCore(universe, venue, config.feed, pool)
        self._source = open_book_source(config, venue)
        check_levels(np.ones((1, 2)), np.full((1, 2), 2.0))  # compile the level checks now
        # By name, not by handle: a restarted feed finds its peers the same way.
        self._detectors = [ray.get_actor(names.detector(i)) for i in range(pool)]
        self._max_in_flight = config.feed.max_in_flight
        self._in_flight: list[deque[Any]] = [deque() for _ in range(pool)]
        self._task: asyncio.Task[None] | None = None
        self._batches = 0
        self._rows_sent = 0
        self._backpressure_waits = 0
        self._error = ""
        self._venue = venue
        self._last_book_mono: int | None = None
        self._metrics = metrics.MetricsFlusher(config.metrics.enabled)
        self._metrics_task: asyncio.Task[None] | None = None

    async def ready(self) -> dict[str, object]:
        return self.placement

    async def start(self) -> None:
        """Start polling; idempotent, so the driver may call it again after a restart."""
        if self._task is None:
            await self._source.start()
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
            wait_ns = self._core.next_deadline_ns(time.monotonic_ns())
            timeout = _POLL_S if wait_ns is None else wait_ns / 1e9
            events = await self._source.next(timeout)
            recv_ns, recv_mono = time.time_ns(), time.monotonic_ns()
            if events:
                self._last_book_mono = recv_mono
            for shard, rows in self._core.ingest(events, recv_ns, recv_mono):
                await self._send(shard, rows)
            for shard in self._core.due(time.monotonic_ns()):
                await self._send(shard, self._core.take(shard))

    async def _send(self, shard: int, rows: np.ndarray) -> None:
        queue = self._in_flight[shard]
        queue.append(self._detectors[shard].on_batch.remote(rows))
        self._batches += 1
        self._rows_sent += len(rows)
        self._metrics.sample(metrics.FEED_BATCH_ROWS, len(rows), venue=self._venue)
        while queue:
            ready, _ = ray.wait([queue[0]], timeout=0)
            if not ready and len(queue) <= self._max_in_flight:
                break
            if not ready:
                self._backpressure_waits += 1
            await queue.popleft()

    async def stop(self) -> None:
        """Stop polling, send what is pending, and wait until the detectors took it."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
            self._task = None
        await self._source.close()
        for shard in self._core.pending():
            await self._send(shard, self._core.take(shard))
        for queue in self._in_flight:
            while queue:
                await queue.popleft()
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
            in_flight=sum(len(q) for q in self._in_flight),
            backpressure_waits=self._backpressure_waits,
            resyncs=getattr(self._source, "resubscribes", 0),
            book_age_s=self._book_age_s(),
        )

    async def stats(self) -> dict[str, Any]:
        return {
            "updates": self._core.updates,
            "invalid": dict(self._core.invalid),
            "batches": self._batches,
            "rows_sent": self._rows_sent,
            "queue_depth": sum(len(q) for q in self._in_flight),
            "backpressure_waits": self._backpressure_waits,
            "running": self._task is not None and not self._task.done(),
            "error": self._error,
            "last_book_age_ms": None if (age := self._book_age_s()) is None else age * 1e3,
        }
