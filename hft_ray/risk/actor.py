"""RiskActor: the named singleton around RiskCore.

It never awaits I/O on the decision path: decisions are appended to the journal (which
batches) and approvals leave fire-and-forget to the executors, round-robin.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import ray

from hft_ray import names
from hft_ray.clock import LiveClock
from hft_ray.config import HftConfig
from hft_ray.latency import LatencySamples
from hft_ray.markets import Markets
from hft_ray.pinning import pin_actor
from hft_ray.risk.core import RiskCore
from hft_ray.store import StoreUnavailable, open_store
from hft_ray.types import ExecutionReport, Opportunity, Universe

_STORE_CHECK_S = 0.05


@ray.remote(max_restarts=0)
class RiskActor:
    def __init__(
        self,
        config: HftConfig,
        universe: Universe,
        markets: Markets,
        run_id: str,
        run_dir: str,
        cores: list[int],
    ) -> None:
        self.placement = pin_actor(cores, config.cluster.pin_cores)
        self._clock = LiveClock()
        self._core = RiskCore(config, universe, markets, self._clock)
        self._store = open_store(config.store, run_id, Path(run_dir), "risk")
        self._executors: list[Any] = []
        self._next = 0
        self._detect_to_approve = LatencySamples()
        self._journal_errors = 0
        self._store_watch: asyncio.Task[None] | None = None
        self._pool = config.detector.pool_size
        self._detectors: list[Any] = []

    def ready(self) -> dict[str, object]:
        return self.placement

    async def set_executors(self, executors: list[Any]) -> int:
        self._executors = executors
        if self._store_watch is None:
            self._store_watch = asyncio.get_running_loop().create_task(self._watch_store())
        return len(executors)

    async def _watch_store(self) -> None:
        """Every 50 ms: is the store answering, and has every decision left? Until it is,
        and while it is not, risk approves nothing."""
        while True:
            try:
                ok = await self._store.ping()
                if ok:
                    await self._store.flush()
            except StoreUnavailable:
                ok = False
            self._core.store_ok = ok
            await asyncio.sleep(_STORE_CHECK_S)

    async def submit(self, opps: list[Opportunity]) -> None:
        if not self._executors:
            raise RuntimeError("risk has no executors: wire them before starting the feeds")
        for opp in opps:
            approval, record = self._core.evaluate(opp)
            try:
                await self._store.append(record)
            except StoreUnavailable:
                self._journal_errors += 1
                self._core.store_ok = False
            if approval is None:
                continue
            self._detect_to_approve.add(approval.approve_mono_ns - opp.detect_mono_ns)
            executor = self._executors[self._next % len(self._executors)]
            self._next += 1
            executor.execute.remote(approval)

    async def ping(self) -> bool:
        return True

    async def on_execution(self, report: ExecutionReport) -> None:
        self._core.on_execution(report)
        if any(r.filled > 0 for r in report.fills):
            # Detectors cap sizes by inventory: tell them what the venues now hold.
            positions = {v: dict(a) for v, a in self._core.ledger.positions.items()}
            if not self._detectors:  # created after risk: looked up on first use
                self._detectors = [ray.get_actor(names.detector(i)) for i in range(self._pool)]
            for detector in self._detectors:
                detector.set_positions.remote(positions)

    async def halt(self, reason: str = "operator") -> str:
        self._core.halt(reason)
        return self._core.state.value

    async def resume(self) -> str:
        self._core.resume()
        return self._core.state.value

    async def stats(self) -> dict[str, Any]:
        return self._core.snapshot()

    async def latency_samples(self) -> dict[str, list[int]]:
        return {"detect_to_approve": self._detect_to_approve.values()}

    async def close(self) -> dict[str, Any]:
        """Flush the journal; return the final state."""
        if self._store_watch is not None:
            self._store_watch.cancel()
        await self._store.close()
        return {**self._core.snapshot(), "journal_errors": self._journal_errors}
