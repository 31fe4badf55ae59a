"""TradingNodeActor: the Ray shell of a `TradingNode`, one per node of the fused topology.

Ray places it (its own bundle, pinned to its own core), restarts it after a crash and carries
its off-hot-path calls: the sync with the risk actor, the driver's stats, an operator's
revocation. Orders are never resent by Ray (`max_task_retries=0`): a restarted node
reconciles from its journal before it trades again.
"""

from __future__ import annotations

import asyncio
import secrets
from pathlib import Path
from typing import Any

import ray

from hft_ray import names
from hft_ray.clock import LiveClock
from hft_ray.config import HftConfig
from hft_ray.markets import Markets
from hft_ray.pinning import pin_actor
from hft_ray.remote import idempotent
from hft_ray.risk.lease import Lease, NodeSync
from hft_ray.store import open_store
from hft_ray.types import Universe
from hft_ray.venues.sim import SimVenueClient


class _RiskAuthority:
    """The risk actor, by name: a restarted risk is found the same way."""

    def __init__(self, namespace: str) -> None:
        self._namespace = namespace
        self._handle: Any = None

    async def sync(self, msg: NodeSync) -> Lease:
        if self._handle is None:
            self._handle = ray.get_actor(names.RISK, namespace=self._namespace)
        lease: Lease = await self._handle.sync.remote(msg)
        return lease


@ray.remote(max_restarts=-1, max_task_retries=0)
class TradingNodeActor:
    def __init__(
        self,
        config: HftConfig,
        universe: Universe,
        markets: Markets,
        index: int,
        symbols: list[str],
        run_id: str,
        run_dir: str,
        id_prefix: str,
        epoch_ns: int,
        cores: list[int],
    ) -> None:
        # Imported here, in the node's own process: the driver creates this actor without
        # loading numba (the detector's and the feed's kernels) for it.
        from hft_ray.node.core import TradingNode

        self.placement = pin_actor(cores, config.cluster)
        name = names.node(index)
        store = open_store(config.store, run_id, Path(run_dir), name)
        # A restarted node counts opportunities from zero again: a fresh incarnation tag
        # keeps its opportunity ids, and so client order ids, from repeating the last one's.
        prefix = f"{id_prefix}n{index}{secrets.token_hex(2)}x"
        self._node = TradingNode(
            config,
            universe,
            markets,
            name,
            symbols,
            store,
            _RiskAuthority(config.cluster.namespace),
            LiveClock(),
            prefix,
            epoch_ns,
            lambda venue: SimVenueClient(venue, ray.get_actor(names.venue(venue))),
        )
        self._store = store
        self._drain_s = 4 * config.execution.order_timeout_ms / 1000.0 + 5.0
        self._prepared: asyncio.Task[None] | None = None

    @idempotent
    async def ready(self) -> dict[str, object]:
        await self._prepare_once()
        return self.placement

    async def _prepare_once(self) -> None:
        """Reconcile what an earlier process left and take the first lease, once per
        process; every caller waits for it."""
        if self._prepared is None:
            self._prepared = asyncio.get_running_loop().create_task(self._node.prepare())
        await self._prepared

    @idempotent
    async def start(self) -> None:
        """Trade; a node Ray restarted starts again on the driver's next call."""
        await self._prepare_once()
        await self._node.start()

    @idempotent
    async def revoke(self, reason: str) -> None:
        self._node.revoke(reason)

    @idempotent
    async def stop(self) -> None:
        await self._node.stop(self._drain_s)
        await self._store.close()

    @idempotent
    async def stats(self) -> dict[str, Any]:
        return self._node.stats()

    @idempotent
    async def latency_samples(self) -> dict[str, list[int]]:
        return self._node.latency_samples()

    @idempotent
    async def balances(self) -> dict[str, dict[str, float]]:
        return self._node.balances()
