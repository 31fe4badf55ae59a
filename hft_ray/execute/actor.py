"""ExecutorActor: runs approvals through an ExecutorCore and reports every outcome to risk.

Created with `max_task_retries=0`: an order submission is never retried blindly by Ray. Ray
restarts a crashed executor; before the new incarnation takes any approval it reconciles
every trade its journal left unfinished with the venues, by client order id, and reports it.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

import ray

from hft_ray import heap, metrics, names
from hft_ray.clock import LiveClock
from hft_ray.config import CcxtVenueConfig, HftConfig
from hft_ray.execute.core import ExecutorCore
from hft_ray.latency import StageSamples, Warmup
from hft_ray.markets import Markets
from hft_ray.pinning import pin_actor
from hft_ray.remote import hot_path, idempotent
from hft_ray.store import open_store
from hft_ray.types import Approval, Universe
from hft_ray.venues.base import OrderVenue
from hft_ray.venues.sim import SimVenueClient

if TYPE_CHECKING:
    from hft_ray.venues.ccxt_orders import CcxtOrderVenue

_log = logging.getLogger(__name__)


@ray.remote(max_restarts=-1, max_task_retries=0)
class ExecutorActor:
    def __init__(
        self,
        config: HftConfig,
        universe: Universe,
        markets: Markets,
        index: int,
        run_id: str,
        run_dir: str,
        cores: list[int],
    ) -> None:
        self.placement = pin_actor(cores, config.cluster)
        self._clock = LiveClock()
        self._store = open_store(config.store, run_id, Path(run_dir), f"executor{index}")
        venues: dict[str, OrderVenue] = {}
        self._live: list[CcxtOrderVenue] = []
        for name, venue in config.venues.items():
            if config.replay is not None:
                venues[name] = SimVenueClient(name, ray.get_actor(names.REPLAY), name)
            elif venue.kind == "sim" or (
                isinstance(venue, CcxtVenueConfig) and venue.mode == "paper"
            ):
                # the venue actor holds the account: a simulated or a paper one
                venues[name] = SimVenueClient(name, ray.get_actor(names.venue(name)))
            else:
                from hft_ray.venues.ccxt_orders import order_venue_for  # only for a live venue

                live = order_venue_for(config, name)
                self._live.append(live)
                venues[name] = live
        self._core = ExecutorCore(
            config, universe, markets, venues, self._store, self._clock, name=f"executor{index}"
        )
        self._risk = ray.get_actor(names.RISK)
        self._reconciled: asyncio.Task[int] | None = None
        self._running = 0
        self._stages = StageSamples()
        self._warmup = Warmup(config.run.warmup_s)
        self._warmup.start(self._clock.monotonic_ns())
        self._executions = 0
        self._counts = metrics.ExecutionCounts()
        self._metrics = metrics.MetricsFlusher(config.metrics.enabled)
        self._metrics_task: asyncio.Task[None] | None = None

    @idempotent
    async def ping(self) -> bool:
        return True

    @idempotent
    async def ready(self) -> dict[str, object]:
        self._ensure_metrics()
        await self._reconcile_once()
        heap.freeze()
        return self.placement

    async def _reconcile_once(self) -> int:
        """Reconcile the journal's unfinished trades once per incarnation; every call waits."""
        if self._reconciled is None:
            self._reconciled = asyncio.get_running_loop().create_task(self._reconcile())
        return await self._reconciled

    async def _reconcile(self) -> int:
        # Markets load before the first order, not in its latency; a venue that cannot load
        # them answers its orders with a rejection naming why.
        await asyncio.gather(*(v.start() for v in self._live), return_exceptions=True)
        # No new work either until the journal can be read.
        reports = await self._core.reconcile(await self._core.read_journal())
        for report in reports:
            self._counts.add(report)
            self._risk.on_execution.remote(report)
        return len(reports)

    @idempotent
    async def settle(self, opp_id: str) -> bool:
        """Risk lost track of an approval sent here (the call failed in transit, or risk
        restarted): return True if it never started here and now never will, so risk may
        release it; False if it started (its report comes, after a restart by
        reconciliation)."""
        await self._reconcile_once()
        return self._core.settle(opp_id)

    @hot_path
    async def execute(self, approval: Approval) -> None:
        received = self._clock.monotonic_ns()
        self._running += 1
        self._ensure_metrics()
        try:
            await self._reconcile_once()
            report = await self._core.run(approval, received)
            if report is None:
                return  # released by risk, or delivered again: traded once at most
            if report.trace is not None:
                self._executions += 1
                if self._warmup.over(report.trace.recv):
                    self._metrics.sample_stages(self._stages.add(report.trace))
            self._counts.add(report)
            self._risk.on_execution.remote(report)
        finally:
            self._running -= 1

    def _ensure_metrics(self) -> None:
        """Start pushing metrics; a restarted incarnation starts on its first call."""
        if self._metrics_task is None and self._metrics.enabled:
            loop = asyncio.get_running_loop()
            self._metrics_task = loop.create_task(self._metrics.run(self._counts.reading))

    @idempotent
    async def stats(self) -> dict[str, Any]:
        return {
            "reconciled": await self._reconcile_once(),
            "executions": self._executions,
            "aborted_store_unavailable": self._core.aborted,
            "running": self._running,
            "orders": self._counts.by_venue(),
            "latency_us": self._stages.recent_us(),
        }

    @idempotent
    async def latency_samples(self) -> dict[str, list[int]]:
        return self._stages.values()

    @idempotent
    async def close(self) -> None:
        if self._metrics_task is not None:
            self._metrics_task.cancel()
        self._metrics.maybe_push(self._counts.reading, force=True)
        await asyncio.gather(*(v.close() for v in self._live), return_exceptions=True)
        await self._store.close()
