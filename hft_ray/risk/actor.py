"""RiskActor: the named singleton around RiskCore and its RiskKeeper.

It never awaits I/O on the decision path: decisions are appended to the journal (which
batches) and approvals leave fire-and-forget to the executors, round-robin. Ray restarts it
after a crash; the new incarnation approves nothing until it has restored its state.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import ray

from hft_ray import heap, metrics
from hft_ray.clock import LiveClock
from hft_ray.config import HftConfig
from hft_ray.latency import LatencySamples, Warmup
from hft_ray.markets import Markets
from hft_ray.pinning import pin_actor
from hft_ray.remote import hot_path, idempotent, idempotent_hot_path
from hft_ray.risk.core import RiskCore
from hft_ray.risk.keeper import RiskKeeper
from hft_ray.risk.lease import Lease, NodeSync
from hft_ray.risk.state import SEVERITY, TradingState
from hft_ray.store import open_store
from hft_ray.types import ExecutionReport, Opportunity, Universe

_STORE_CHECK_S = 0.05


# Submissions are not retried by Ray: evaluating one twice could approve it twice. Executors
# are looked up by name, so a restarted risk finds the same ones.
@ray.remote(max_restarts=-1, max_task_retries=0)
class RiskActor:
    def __init__(
        self,
        config: HftConfig,
        universe: Universe,
        markets: Markets,
        run_id: str,
        run_dir: str,
        cores: list[int],
        *,
        nodes: tuple[str, ...] = (),
        executors: tuple[str, ...] = (),
        detectors: tuple[str, ...] = (),
    ) -> None:
        self.placement = pin_actor(cores, config.cluster)
        self._clock = LiveClock()
        core = RiskCore(config, universe, markets, self._clock, nodes=nodes)
        # A restarted risk must find the run's epoch: an emptied store is a lost one.
        restarted = ray.get_runtime_context().was_current_actor_reconstructed
        store = open_store(config.store, run_id, Path(run_dir), "risk")
        self._keeper = RiskKeeper(core, store, restarted=restarted)
        self._core = core
        self._run_id = run_id
        # Peers are found by name on first use: they are created after risk, and a restarted
        # risk finds the same ones.
        self._namespace = config.cluster.namespace
        # The run's peers by name (the fused topology has trading nodes instead of executors
        # and detectors).
        self._executor_names = list(executors)
        self._detector_names = list(detectors)
        self._node_names = list(nodes)
        self._executors: list[Any] = []
        self._detectors: list[Any] = []
        self._nodes: list[Any] = []
        self._next = 0
        self._detect_to_approve = LatencySamples()
        self._warmup = Warmup(config.run.warmup_s)
        self._warmup.start(self._clock.monotonic_ns())
        self._metrics = metrics.MetricsFlusher(config.metrics.enabled)
        self._store_watch: asyncio.Task[None] | None = None
        self._watches: set[asyncio.Task[None]] = set()
        self.executions_lost = 0

    @idempotent
    async def ready(self) -> dict[str, object]:
        self._ensure_watch()
        heap.freeze()
        return self.placement

    def _ensure_watch(self) -> None:
        """Start the store watch; a restarted incarnation starts it on its first call."""
        if self._store_watch is None:
            self._store_watch = asyncio.get_running_loop().create_task(self._watch_store())
            self._spawn(self._settle_restored())

    def _peers(self, wanted: list[str]) -> list[Any]:
        return [ray.get_actor(n, namespace=self._namespace) for n in wanted]

    async def _watch_store(self) -> None:
        """Every 50 ms: is the store answering (and still holding the run's data), has every
        decision left, is the state saved? A store found lost halts trading: every lease
        is revoked at once."""
        while True:
            before = self._core.state
            await self._keeper.watch_round()
            self._revoke_if_worse(before)
            self._metrics.maybe_push(self._metrics_reading)
            await asyncio.sleep(_STORE_CHECK_S)

    def _metrics_reading(self) -> metrics.Reading:
        return metrics.risk_reading(self._core.snapshot())

    @idempotent
    async def warm(self) -> None:
        """Find and reach every executor once, so the first approval does not pay for it."""
        self._ensure_watch()
        self._executors = self._peers(self._executor_names)
        await asyncio.gather(*(e.ping.remote() for e in self._executors))
        if self._detector_names:
            self._detectors = self._peers(self._detector_names)

    @hot_path
    async def submit(self, opps: list[Opportunity]) -> None:
        taken = self._clock.monotonic_ns()
        self._ensure_watch()
        if not self._executors:
            self._executors = self._peers(self._executor_names)
        for opp in opps:
            approval = await self._keeper.decide(opp)
            if approval is None:
                continue
            approval = approval._replace(risk_in_mono_ns=taken)
            if self._warmup.over(taken):
                decided = approval.approve_mono_ns - opp.detect_mono_ns
                self._detect_to_approve.add(decided)
                self._metrics.sample_ns(metrics.DETECT_TO_APPROVE, (decided,))
            executor = self._executors[self._next % len(self._executors)]
            self._next += 1
            self._watch_execution(executor, opp.opp_id, executor.execute.remote(approval))

    def _watch_execution(self, executor: Any, opp_id: str, ref: Any) -> None:
        """Learn when an approval's call fails (it is not retried): ask the executor to
        settle it, and release it if it never started there."""

        async def watch() -> None:
            try:
                await ref
            except ray.exceptions.RayError:
                self.executions_lost += 1
                await self._settle(opp_id, [executor])

        self._spawn(watch())

    async def _settle(self, opp_id: str, executors: list[Any]) -> None:
        refs = [e.settle.remote(opp_id) for e in executors]
        if all(await asyncio.gather(*refs)):
            self._keeper.release(opp_id)

    async def _settle_restored(self) -> None:
        """After a restart: trades the last incarnation approved but no executor journaled
        may never have reached one; each executor settles them."""
        await self._keeper.until_restored()
        # A node's trades in flight are settled by its own next sync (`RiskCore.sync`).
        pending = [k for k in self._keeper.restored_in_flight if self._core.owner(k) == ""]
        if pending and self._executor_names:
            executors = self._peers(self._executor_names)
            await asyncio.gather(*(self._settle(opp_id, executors) for opp_id in pending))

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._watches.add(task)
        task.add_done_callback(self._watches.discard)

    @idempotent
    async def ping(self) -> bool:
        return True

    @idempotent_hot_path
    async def sync(self, msg: NodeSync) -> Lease:
        """A trading node's decisions and fills since its last sync, and its next lease."""
        self._ensure_watch()
        before = self._core.state
        lease = await self._keeper.sync(msg)
        self._revoke_if_worse(before)
        return lease

    def _revoke_if_worse(self, before: TradingState) -> None:
        """A breaker or an operator made trading stricter: close every node's lease now,
        not when it expires (a node's next lease carries the new state)."""
        after = self._core.state
        if SEVERITY[after] <= SEVERITY[before] or not self._node_names:
            return
        if not self._nodes:
            self._nodes = self._peers(self._node_names)
        reason = f"state_{after.value.lower()}"
        for node in self._nodes:
            node.revoke.remote(reason)

    @idempotent_hot_path
    async def on_execution(self, report: ExecutionReport) -> None:
        self._ensure_watch()
        before = self._core.state
        self._keeper.on_execution(report)
        self._revoke_if_worse(before)
        if self._core.restored and any(r.filled > 0 for r in report.fills):
            self._tell_detectors()

    def _tell_detectors(self) -> None:
        """Detectors cap sizes by inventory: tell them what the venues now hold."""
        if not self._detectors:
            try:
                self._detectors = self._peers(self._detector_names)
            except ValueError:
                return  # not created yet (executors reconcile before them): the next fill
        positions = {v: dict(a) for v, a in self._core.ledger.positions.items()}
        for detector in self._detectors:
            detector.set_positions.remote(positions)

    def _snapshot(self) -> dict[str, Any]:
        """Risk's state, naming its run: control commands check they reached the run they
        were pointed at."""
        return {**self._core.snapshot(), "run_id": self._run_id}

    @idempotent
    async def halt(self, reason: str = "operator", reduce_only: bool = False) -> dict[str, Any]:
        """Stop trading (or admit only exposure-reducing orders) by hand; persisted at once."""
        self._ensure_watch()
        await self._keeper.until_restored()
        before = self._core.state
        if reduce_only:
            self._core.reduce_only(reason)
        else:
            self._core.halt(reason)
        self._revoke_if_worse(before)
        await self._keeper.persist()
        return self._snapshot()

    @idempotent
    async def resume(self) -> dict[str, Any]:
        """Clear every breaker by hand; persisted at once."""
        self._ensure_watch()
        await self._keeper.until_restored()
        self._core.resume()
        await self._keeper.persist()
        return self._snapshot()

    @idempotent
    async def stats(self) -> dict[str, Any]:
        self._ensure_watch()
        return self._snapshot()

    @idempotent
    async def latency_samples(self) -> dict[str, list[int]]:
        return {"detect_to_approve": self._detect_to_approve.values()}

    @idempotent
    async def close(self) -> dict[str, Any]:
        """Flush the journal, save the state; return the final state."""
        if self._store_watch is not None:
            self._store_watch.cancel()
        await self._keeper.watch_round()
        await self._keeper.close()
        self._metrics.maybe_push(self._metrics_reading, force=True)
        return {
            **self._snapshot(),
            "journal_errors": self._keeper.journal_errors,
            "store_error": self._keeper.error,
            "executions_lost": self.executions_lost,
        }
