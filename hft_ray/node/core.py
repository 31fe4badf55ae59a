"""TradingNode: one node's venues, its symbols' detector, a risk gate and the executor, in one
event loop, so that an order leaves from the process that saw the book.

The hot path has no hop: a venue's rows are checked (`FeedCore`) and scanned
(`DetectorCore`) as they arrive; each opportunity is decided by the `RiskGate` within the
node's lease, journaled, and executed by the `ExecutorCore` on the node's own venue
connections. Off the hot path, a sync every `risk.lease_sync_ms` tells the risk actor every
decision count and every outcome and renews the lease; the risk actor stays the authority
(`risk/lease.py`). Before it trades, a node reconciles every trade its journal left unfinished
(as an executor does after a restart) and takes its first lease.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import Callable
from typing import Any, Protocol

import numpy as np

from hft_ray import heap, metrics
from hft_ray.clock import Clock
from hft_ray.config import HftConfig
from hft_ray.detect.core import DetectorCore
from hft_ray.execute.core import ExecutorCore
from hft_ray.journal import encode
from hft_ray.latency import LatencySamples, StageSamples, Warmup
from hft_ray.markets import Markets
from hft_ray.node.venues import open_node_venues, venue_stats
from hft_ray.risk.lease import Lease, NodeSync, RiskGate
from hft_ray.store.base import Store, StoreUnavailable
from hft_ray.types import Approval, Universe
from hft_ray.venues.base import OrderVenue

_log = logging.getLogger(__name__)
_STOP_SYNC_ROUNDS = 40  # syncs a stopping node tries to get every report acknowledged


class Authority(Protocol):
    """The risk actor, as a node sees it."""

    async def sync(self, msg: NodeSync) -> Lease: ...


class TradingNode:
    def __init__(
        self,
        config: HftConfig,
        universe: Universe,
        markets: Markets,
        name: str,
        symbols: list[str],
        store: Store,
        authority: Authority,
        clock: Clock,
        id_prefix: str,
        epoch_ns: int,
        sim_orders: Callable[[str], OrderVenue],
    ) -> None:
        self.name = name
        self.symbols = symbols
        self._config = config
        self._clock = clock
        self._store = store
        self._authority = authority
        self._venues, self._replay = open_node_venues(
            config, universe, symbols, epoch_ns, sim_orders
        )
        self._venue_ids = {v.core.venue_id: v for v in self._venues}
        self.detector = DetectorCore(config, universe, markets, clock, id_prefix)
        self.gate = RiskGate(config, universe, markets, clock, name)
        self.executor = ExecutorCore(
            config,
            universe,
            markets,
            {v.name: v.orders for v in self._venues},
            store,
            clock,
            name=name,
        )
        self._sync_s = config.risk.lease_sync_ms / 1000.0
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._errors: dict[str, str] = {}
        self._last_book: dict[str, int] = {}
        self._executing: set[asyncio.Task[None]] = set()
        self._positions: dict[str, dict[str, float]] = {}
        self.counts = metrics.ExecutionCounts()
        self.stages = StageSamples()
        self.tick_to_detect = LatencySamples()
        self.detect_to_approve = LatencySamples()
        self.metrics = metrics.MetricsFlusher(config.metrics.enabled)
        self._warmup = Warmup(config.run.warmup_s)
        self.executions = 0
        self.reconciled = 0
        self.sync_errors = 0
        self.syncs = 0

    # -- lifecycle ----------------------------------------------------------------------------

    async def prepare(self) -> None:
        """Before anything trades: finish what an earlier process of this node left (reports
        kept for risk), and take the first lease."""
        self.detector.warm_up()
        reports = await self.executor.reconcile(await self.executor.read_journal())
        for report in reports:
            self.counts.add(report)
            self.gate.on_report(report)
        self.reconciled = len(reports)
        await self.sync_once()

    async def start(self) -> None:
        """Connect to the venues and trade; idempotent."""
        if self._tasks:
            return
        self._warmup.start(time.monotonic_ns())
        heap.freeze()
        loop = asyncio.get_running_loop()
        for venue in self._venues:
            await venue.start()
        for venue in self._venues:
            task = loop.create_task(venue.run(self._on_rows))
            task.add_done_callback(functools.partial(self._on_done, venue.name))
            self._tasks[venue.name] = task
        self._tasks["_sync"] = loop.create_task(self._sync_forever())
        if self.metrics.enabled:
            self._tasks["_metrics"] = loop.create_task(self.metrics.run(self._metrics_reading))
        if self._replay is not None:  # every venue now reads: the replay's clock may start
            self._tasks["_replay"] = loop.create_task(self._replay.play())

    def _on_done(self, venue: str, task: asyncio.Task[None]) -> None:
        err = None if task.cancelled() else task.exception()
        if err is not None:
            # The class travels (stats, status page, report); the message, which for a venue
            # error may quote a URL or a body, stays in this actor's log.
            _log.error("node %s: venue %s failed", self.name, venue, exc_info=err)
            self._errors[venue] = type(err).__name__

    async def stop(self, drain_s: float) -> None:
        """Stop reading books, let every trade in flight finish (at most `drain_s`), and sync
        until risk has acknowledged every report."""
        for name, task in list(self._tasks.items()):
            if name != "_sync":
                task.cancel()
        if self._executing:
            await asyncio.wait(set(self._executing), timeout=drain_s)
        sync = self._tasks.pop("_sync", None)
        if sync is not None:
            sync.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sync
        for _ in range(_STOP_SYNC_ROUNDS):
            await self.sync_once()
            if not self.gate.unacknowledged:
                break
            await asyncio.sleep(self._sync_s)
        for venue in self._venues:
            with contextlib.suppress(Exception):
                await venue.close()
        self.metrics.maybe_push(self._metrics_reading, force=True)
        self._tasks.clear()

    # -- the hot path -------------------------------------------------------------------------

    async def _on_rows(self, rows: np.ndarray) -> None:
        venue = self._venue_ids[int(rows["venue"][0])].name
        self._last_book[venue] = int(rows["ts_recv_mono_ns"][-1])
        self.metrics.sample(metrics.FEED_BATCH_ROWS, len(rows), venue=venue)
        found = self.detector.on_batch(rows)
        sampled = self._warmup.over(self._last_book[venue])
        if sampled:
            self.tick_to_detect.extend(self.detector.tick_to_detect_ns)
            self.metrics.sample_ns(metrics.TICK_TO_DETECT, self.detector.tick_to_detect_ns)
        self.detector.tick_to_detect_ns.clear()
        for opp in found:
            approval, record = self.gate.evaluate(opp)
            # If this fails, the intent's durable write fails too: nothing is sent without it.
            with contextlib.suppress(StoreUnavailable):
                await self._store.append(encode(record))
            if approval is None:
                continue
            if sampled:
                decided_ns = approval.approve_mono_ns - opp.detect_mono_ns
                self.detect_to_approve.add(decided_ns)
                self.metrics.sample_ns(metrics.DETECT_TO_APPROVE, (decided_ns,))
            task = asyncio.get_running_loop().create_task(self._execute(approval))
            self._executing.add(task)
            task.add_done_callback(self._executing.discard)

    async def _execute(self, approval: Approval) -> None:
        report = await self.executor.run(approval)
        if report is None:
            return
        self.gate.on_report(report)
        self.counts.add(report)
        if report.trace is not None:
            self.executions += 1
            if self._warmup.over(report.trace.recv):
                self.metrics.sample_stages(self.stages.add(report.trace))

    # -- the lease ----------------------------------------------------------------------------

    async def _sync_forever(self) -> None:
        while True:
            started = time.monotonic()
            await self.sync_once()
            await asyncio.sleep(max(0.0, self._sync_s - (time.monotonic() - started)))

    async def sync_once(self) -> None:
        """One round trip to risk (never two at once: see `risk/lease.py`)."""
        msg, sent = self.gate.sync_message()
        try:
            lease = await self._authority.sync(msg)
        except Exception as err:  # risk restarting or unreachable: the lease runs out
            self.sync_errors += 1
            if self.sync_errors == 1 or self.sync_errors % 100 == 0:
                _log.warning("node %s: sync failed (%s)", self.name, type(err).__name__)
            return
        self.syncs += 1
        self.gate.apply(lease, sent)
        if lease.positions and lease.positions != self._positions:
            self._positions = lease.positions
            self.detector.set_positions(lease.positions)

    def revoke(self, reason: str) -> None:
        self.gate.revoke(reason)

    # -- what it tells --------------------------------------------------------------------------

    def venue_stats(self) -> dict[str, dict[str, Any]]:
        """Each venue's feed figures, shaped as a feed actor's `stats()`."""
        return {
            v.name: venue_stats(
                v,
                self._last_book.get(v.name),
                v.name in self._tasks and not self._tasks[v.name].done(),
                self._errors.get(v.name, ""),
            )
            for v in self._venues
        }

    def balances(self) -> dict[str, dict[str, float]]:
        """The venues' own balances, where they tell them (simulated, replayed)."""
        return {v.name: b for v in self._venues if (b := v.balances()) is not None}

    def replay_progress(self) -> dict[str, Any] | None:
        return None if self._replay is None else self._replay.progress()

    def stats(self) -> dict[str, Any]:
        gate = self.gate
        return {
            "node": self.name,
            "symbols": self.symbols,
            "venues": self.venue_stats(),
            "detector": {
                "updates": self.detector.updates,
                "rows_scanned": self.detector.rows_scanned,
                "opportunities": self.detector.opportunities,
                "suppressed": self.detector.suppressed,
            },
            "gate": {
                "closed": gate.closed(),
                "state": gate.trading_state().value,
                "lease_expires_in_ms": gate.expires_in_ns / 1e6,
                "in_flight": len(gate.in_flight),
                "unacknowledged_reports": len(gate.unacknowledged),
                **gate.counts(),
            },
            "executor": {
                "reconciled": self.reconciled,
                "executions": self.executions,
                "aborted_store_unavailable": self.executor.aborted,
                "running": len(self._executing),
                "orders": self.counts.by_venue(),
                "latency_us": self.stages.recent_us(),
            },
            "syncs": self.syncs,
            "sync_errors": self.sync_errors,
            "replay": self.replay_progress(),
        }

    def latency_samples(self) -> dict[str, list[int]]:
        return {
            "tick_to_detect": self.tick_to_detect.values(),
            "detect_to_approve": self.detect_to_approve.values(),
            **self.stages.values(),
        }

    def _metrics_reading(self) -> metrics.Reading:
        reading = metrics.Reading()
        for v in self._venues:
            age = self._last_book.get(v.name)
            part = metrics.feed_reading(
                v.name,
                updates=v.core.updates,
                invalid=v.core.invalid,
                batches=0,
                in_flight=0,
                backpressure_waits=0,
                resyncs=v.resyncs,
                book_age_s=None if age is None else (time.monotonic_ns() - age) / 1e9,
                conflated=v.conflated,
            )
            reading.counts.update(part.counts)
            reading.levels.update(part.levels)
        det = metrics.detector_reading(
            opportunities=self.detector.opportunities, suppressed=self.detector.suppressed
        )
        reading.counts.update(det.counts)
        reading.counts.update(self.counts.reading().counts)
        return reading
