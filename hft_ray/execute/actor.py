"""ExecutorActor: runs approvals through an ExecutorCore and reports every outcome to risk.

Created with `max_task_retries=0`: an order submission is never retried blindly by Ray.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import ray

from hft_ray import names
from hft_ray.clock import LiveClock
from hft_ray.config import HftConfig
from hft_ray.execute.core import ExecutorCore
from hft_ray.latency import LatencySamples
from hft_ray.markets import Markets
from hft_ray.pinning import pin_actor
from hft_ray.store import StoreUnavailable, open_store
from hft_ray.types import Approval, ExecutionReport, Universe
from hft_ray.venues.sim import SimVenueClient


@ray.remote(max_restarts=0, max_task_retries=0)
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
        self.placement = pin_actor(cores, config.cluster.pin_cores)
        self._clock = LiveClock()
        self._store = open_store(config.store, run_id, Path(run_dir), f"executor{index}")
        if config.replay is not None:
            market = ray.get_actor(names.REPLAY)
            venues = {name: SimVenueClient(name, market, name) for name in config.venues}
        else:
            venues = {
                name: SimVenueClient(name, ray.get_actor(names.venue(name)))
                for name in config.venues
            }
        self._core = ExecutorCore(config, universe, markets, venues, self._store, self._clock)
        self._risk = ray.get_actor(names.RISK)
        self._running = 0
        self._tick_to_trade = LatencySamples()
        self._approve_to_ack = LatencySamples()
        self._aborted = 0
        self._executions = 0

    def ready(self) -> dict[str, object]:
        return self.placement

    async def execute(self, approval: Approval) -> None:
        self._running += 1
        try:
            try:
                report = await self._core.execute(approval)
            except StoreUnavailable:
                self._aborted += 1
                report = ExecutionReport(approval.opp.opp_id, "", (), 0, False, 0)
            else:
                self._executions += 1
                self._tick_to_trade.add(report.tick_to_trade_ns)
                self._approve_to_ack.add(self._clock.monotonic_ns() - approval.approve_mono_ns)
            self._risk.on_execution.remote(report)
        finally:
            self._running -= 1

    async def stats(self) -> dict[str, Any]:
        return {
            "executions": self._executions,
            "aborted_store_unavailable": self._aborted,
            "running": self._running,
        }

    async def latency_samples(self) -> dict[str, list[int]]:
        return {
            "tick_to_trade": self._tick_to_trade.values(),
            "approve_to_ack": self._approve_to_ack.values(),
        }

    async def close(self) -> None:
        await self._store.close()
