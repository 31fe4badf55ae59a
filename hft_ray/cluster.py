"""Joining Ray, the run's placement group, and wiring the actors of either topology.

Two topologies of the same stages (see `docs/architecture.md`):
- distributed: one bundle per feed, detector, executor and risk; simulated venues stand for
  exchanges outside the cluster and take no bundle;
- fused: one bundle per trading node (its venues, its symbols' detector, a risk gate and the
  executor in one process) and one for risk.
`cluster.topology: auto` picks distributed only when the cluster has a CPU for every
distributed actor: on fewer cores the hops cost more than the work they carry.

Each actor is handed its cores at creation: the wiring reads every node's allowed CPU set with a
zero-CPU probe task on that node and deals one core per bundle, distinct per node while cores
last, the most latency-critical roles first (see `pinning.assign_cores`). A venue's
`node_resource` makes its feed's bundle (fused: the node bundles) ask for that custom
resource, so the feed lands on the node started with it (the one nearest the exchange).
"""

from __future__ import annotations

import math
import os
import socket
import time
from dataclasses import dataclass, field
from typing import Any, Literal

import ray
from ray.util.placement_group import PlacementGroup, placement_group, placement_group_table
from ray.util.scheduling_strategies import (
    NodeAffinitySchedulingStrategy,
    PlacementGroupSchedulingStrategy,
)

from hft_ray import names, startup
from hft_ray.config import HftConfig
from hft_ray.markets import Markets
from hft_ray.pinning import allowed_cores, assign_cores
from hft_ray.types import Universe

#: Units of a venue's `node_resource` a bundle asks for: a token, so that every run's feed
#: for that venue fits on the node however many units the node was started with.
NODE_RESOURCE_UNITS = 0.001

Topology = Literal["fused", "distributed"]
Role = tuple[str, int]


class ClusterError(RuntimeError):
    """The cluster cannot host the run (unreachable, too small, actors failed to start)."""


def connect(config: HftConfig, address: str | None) -> bool:
    """Join the Ray cluster at `address` (or RAY_ADDRESS), or start a local one.

    Returns True when this call started a local instance, which the caller then shuts down.
    """
    if ray.is_initialized():
        return False
    address = address or config.cluster.address or os.environ.get("RAY_ADDRESS")
    common: dict[str, Any] = {
        "namespace": config.cluster.namespace,
        "log_to_driver": True,
        "logging_level": "WARNING",
    }
    try:
        startup.check_ports(config, starting_ray=not address)
    except startup.PortTaken as err:
        raise ClusterError(str(err)) from None
    if address:
        check_reachable(address)
        startup.use_token_if_held()
        try:
            ray.init(address=address, **common)
        except ray.exceptions.AuthenticationError:
            raise ClusterError(startup.refused(address)) from None
        except (ConnectionError, RuntimeError, ValueError) as err:
            raise ClusterError(f"cannot join the Ray cluster at {address}: {err}") from None
        return False
    startup.ensure_local_token()
    system: dict[str, Any] = {}
    if config.metrics.enabled:
        system["_metrics_export_port"] = config.metrics.export_port
    ray.init(num_cpus=config.cluster.local_num_cpus, **common, **system)
    return True


def check_reachable(address: str, timeout_s: float = 3.0) -> None:
    """Fail fast on a `host:port` GCS address nothing answers at: Ray itself would retry for
    minutes before saying so. Other forms (`auto`, `ray://...`) are left to Ray."""
    host, sep, port = address.rpartition(":")
    if not sep or "://" in address or not port.isdigit():
        return
    try:
        socket.create_connection((host, int(port)), timeout=timeout_s).close()
    except OSError as err:
        reason = err.strerror or err.__class__.__name__
        raise ClusterError(f"no Ray cluster answers at {address}: {reason}") from None


@ray.remote(num_cpus=0)
def _node_cores() -> list[int]:
    return allowed_cores()


# -- topology -------------------------------------------------------------------------------------


def distributed_roles(config: HftConfig) -> list[Role]:
    roles = [("feed", i) for i in range(len(config.venues))]
    roles += [("detector", i) for i in range(config.detector.pool_size)]
    roles.append(("risk", 0))
    roles += [("executor", i) for i in range(config.execution.pool_size)]
    return roles


def choose_topology(config: HftConfig, cluster_cpus: float) -> Topology:
    """The configured topology; `auto`: distributed when every distributed actor can have a
    whole CPU of the cluster's, else fused."""
    setting = config.cluster.topology
    if setting != "auto":
        return setting
    return "distributed" if cluster_cpus >= len(distributed_roles(config)) else "fused"


def trading_node_count(config: HftConfig, cpu_nodes: int) -> int:
    """Fused topology: how many trading nodes (never more than symbols to shard)."""
    setting = config.cluster.trading_nodes
    wanted = max(1, cpu_nodes) if setting == "auto" else setting
    return min(wanted, len(config.symbols))


def shard_symbols(universe: Universe, nodes: int) -> list[list[str]]:
    """Each trading node's symbols, dealt as the detector pool's are (`Universe.shard_of`);
    with fewer symbols than nodes, the nodes left without one are dropped."""
    shards: list[list[str]] = [[] for _ in range(nodes)]
    for s, symbol in enumerate(universe.symbols):
        shards[universe.shard_of(s, nodes)].append(symbol)
    return [s for s in shards if s]


def fused_roles(nodes: int) -> list[Role]:
    return [("node", i) for i in range(nodes)] + [("risk", 0)]


def _bundle_cpus(config: HftConfig, bundles: int) -> float:
    setting = config.cluster.cpus_per_bundle
    if setting != "auto":
        return float(setting)
    total = float(ray.cluster_resources().get("CPU", 0.0))
    if total <= 0:
        raise ClusterError("the Ray cluster reports no CPUs")
    return min(1.0, math.floor(total / bundles * 100) / 100)


def _bundles(config: HftConfig, roles: list[Role], cpus: float) -> list[dict[str, float]]:
    wanted_by_venue = [
        [] if v.node_resource is None else [v.node_resource] for v in config.venues.values()
    ]
    everywhere = sorted({r for w in wanted_by_venue for r in w})
    out: list[dict[str, float]] = []
    for role, n in roles:
        bundle = {"CPU": cpus}
        wanted: list[str]
        if role == "feed":
            wanted = wanted_by_venue[n]
        elif role == "node":
            wanted = everywhere  # a node connects to every venue itself
        else:
            wanted = []
        for resource in wanted:
            bundle[resource] = NODE_RESOURCE_UNITS
        out.append(bundle)
    return out


# -- the pipeline ---------------------------------------------------------------------------------


@dataclass
class Pipeline:
    """Handles to every actor of a run, of either topology."""

    topology: Topology
    placement_group: PlacementGroup
    risk: Any
    venues: dict[str, Any] = field(default_factory=dict)  # distributed: sim venues, replay
    feeds: list[Any] = field(default_factory=list)
    detectors: list[Any] = field(default_factory=list)
    executors: list[Any] = field(default_factory=list)
    nodes: list[Any] = field(default_factory=list)  # fused
    node_symbols: list[list[str]] = field(default_factory=list)
    placement: list[dict[str, Any]] = field(default_factory=list)
    cpus_per_bundle: float = 0.0

    def all_actors(self) -> list[Any]:
        return [
            *self.feeds,
            *self.detectors,
            self.risk,
            *self.executors,
            *self.nodes,
            *self.venues.values(),
        ]

    def traders(self) -> list[Any]:
        """The actors that start reading books: feeds, or trading nodes."""
        return self.nodes if self.topology == "fused" else self.feeds


def build_pipeline(
    config: HftConfig,
    universe: Universe,
    markets: Markets,
    run_id: str,
    run_dir: str,
    id_prefix: str,
) -> Pipeline:
    """Create the placement group and every actor, wired, pinned, warmed and ready (books not
    yet read)."""
    try:
        ray.get_actor(names.RISK)
    except ValueError:
        pass  # no run is active in this namespace: the names are ours to take
    else:
        raise ClusterError(
            f"another run is active in Ray namespace {config.cluster.namespace!r} "
            f"(its {names.RISK} actor exists); stop it or set cluster.namespace"
        )
    resources = ray.cluster_resources()
    topology = choose_topology(config, float(resources.get("CPU", 0.0)))
    shards: list[list[str]] = []
    if topology == "fused":
        cpu_nodes = sum(1 for n in ray.nodes() if n["Alive"] and n["Resources"].get("CPU", 0) >= 1)
        shards = shard_symbols(universe, trading_node_count(config, cpu_nodes))
        roles = fused_roles(len(shards))
    else:
        roles = distributed_roles(config)
    cpus = _bundle_cpus(config, len(roles))
    bundles = _bundles(config, roles, cpus)
    pg = placement_group(bundles, strategy=config.cluster.placement_strategy)
    try:
        ray.get(pg.ready(), timeout=config.cluster.ready_timeout_s)
    except ray.exceptions.GetTimeoutError:
        ray.util.remove_placement_group(pg)
        extra = sorted({k for b in bundles for k in b} - {"CPU"})
        raise ClusterError(
            f"placement group of {len(roles)} bundles x {cpus} CPU "
            + (f"(also asking for {', '.join(extra)}) " if extra else "")
            + f"({config.cluster.placement_strategy}, {topology} topology) was not scheduled "
            f"within {config.cluster.ready_timeout_s:.0f}s; cluster resources: {resources}"
        ) from None
    bundle_nodes = [placement_group_table(pg)["bundles_to_node_id"][i] for i in range(len(roles))]
    node_cores = {
        node: ray.get(
            _node_cores.options(
                scheduling_strategy=NodeAffinitySchedulingStrategy(node, soft=False)
            ).remote()
        )
        for node in set(bundle_nodes)
    }
    cores = assign_cores(bundle_nodes, node_cores, [role for role, _ in roles])
    # Tick 1 a little after the actors are up, on every copy of a simulated venue alike.
    epoch_ns = time.time_ns()
    wiring = _Wiring(
        config, universe, markets, run_id, run_dir, id_prefix, pg, cpus, roles, cores, epoch_ns
    )
    pipeline = wiring.fused(shards) if topology == "fused" else wiring.distributed()
    handles = pipeline_handles(pipeline)
    infos = ray.get(
        [handles[role].ready.remote() for role in roles], timeout=config.cluster.ready_timeout_s
    )
    for i, ((role, n), info) in enumerate(zip(roles, infos, strict=True)):
        pipeline.placement.append(
            {
                "bundle": i,
                "role": "risk" if role == "risk" else f"{role}{n}",
                "node_id": bundle_nodes[i],
                "actor_node_id": info["node_id"],
                "pid": info["pid"],
                "cores": cores[i][0],
                "shared_cores": cores[i][1],
                "pinned": info["pinned"],
                "affinity": info["affinity"],
                "nice": info["nice"],
                "realtime": info["realtime"],
            }
        )
    # Every handle a stage sends on is used once now, not with the first book of the run.
    timeout = config.cluster.ready_timeout_s
    warm = [a.warm.remote() for a in (*pipeline.feeds, *pipeline.detectors)]
    if pipeline.executors:
        warm.append(pipeline.risk.warm.remote())
    ray.get(warm, timeout=timeout)
    ray.get([v.start.remote() for v in pipeline.venues.values()], timeout=timeout)
    return pipeline


def pipeline_handles(p: Pipeline) -> dict[Role, Any]:
    return {
        **{("feed", i): a for i, a in enumerate(p.feeds)},
        **{("detector", i): a for i, a in enumerate(p.detectors)},
        **{("node", i): a for i, a in enumerate(p.nodes)},
        ("risk", 0): p.risk,
        **{("executor", i): a for i, a in enumerate(p.executors)},
    }


@dataclass
class _Wiring:
    """Creates a run's actors on their bundles."""

    config: HftConfig
    universe: Universe
    markets: Markets
    run_id: str
    run_dir: str
    id_prefix: str
    pg: PlacementGroup
    cpus: float
    roles: list[Role]
    cores: list[tuple[list[int], bool]]
    epoch_ns: int  # when tick 1 of every simulated venue falls (its phase aside)

    def on_bundle(self, role: Role) -> dict[str, Any]:
        return {
            "num_cpus": self.cpus,
            "scheduling_strategy": PlacementGroupSchedulingStrategy(
                self.pg, placement_group_bundle_index=self.roles.index(role)
            ),
        }

    def cores_of(self, role: Role) -> list[int]:
        return self.cores[self.roles.index(role)][0]

    def risk(
        self, nodes: tuple[str, ...], executors: tuple[str, ...], detectors: tuple[str, ...]
    ) -> Any:
        from hft_ray.risk.actor import RiskActor

        c = self.config
        return RiskActor.options(  # type: ignore[attr-defined]
            name=names.RISK,
            namespace=c.cluster.namespace,
            get_if_exists=True,
            **self.on_bundle(("risk", 0)),
        ).remote(
            c,
            self.universe,
            self.markets,
            self.run_id,
            self.run_dir,
            self.cores_of(("risk", 0)),
            nodes=nodes,
            executors=executors,
            detectors=detectors,
        )

    def sim_venues(self, publish: bool) -> dict[str, Any]:
        """One venue actor per simulated venue: the exchange outside the trading processes
        (it holds the account), serving rows too when `publish`; and one per paper venue."""
        from hft_ray.venues.sim import SimVenueActor

        c = self.config
        venues = {
            name: SimVenueActor.options(name=names.venue(name)).remote(  # type: ignore[attr-defined]
                c, name, self.epoch_ns, publish
            )
            for name, venue in c.venues.items()
            if venue.kind == "sim"
        }
        # A paper venue's account is one actor too, whatever the topology (its books are live).
        from hft_ray.venues.paper import PaperVenueActor

        for name in c.paper_venues:
            venues[name] = PaperVenueActor.options(name=names.venue(name)).remote(  # type: ignore[attr-defined]
                c, self.markets, name
            )
        return venues

    def fused(self, shards: list[list[str]]) -> Pipeline:
        from hft_ray.node.actor import TradingNodeActor

        node_names = tuple(names.node(i) for i in range(len(shards)))
        venues = self.sim_venues(publish=False) if self.config.replay is None else {}
        risk = self.risk(node_names, (), ())
        nodes = [
            TradingNodeActor.options(name=names.node(i), **self.on_bundle(("node", i))).remote(  # type: ignore[attr-defined]
                self.config,
                self.universe,
                self.markets,
                i,
                symbols,
                self.run_id,
                self.run_dir,
                self.id_prefix,
                self.epoch_ns,
                self.cores_of(("node", i)),
            )
            for i, symbols in enumerate(shards)
        ]
        return Pipeline(
            "fused",
            self.pg,
            risk,
            venues=venues,
            nodes=nodes,
            node_symbols=shards,
            cpus_per_bundle=self.cpus,
        )

    def distributed(self) -> Pipeline:
        from hft_ray.detect.actor import DetectorActor
        from hft_ray.execute.actor import ExecutorActor
        from hft_ray.feed.actor import FeedActor
        from hft_ray.venues.replay import ReplayMarketActor

        c = self.config
        if c.replay is not None:
            venues = {"replay": ReplayMarketActor.options(name=names.REPLAY).remote(c)}  # type: ignore[attr-defined]
        else:
            venues = self.sim_venues(publish=True)
        executor_names = tuple(names.executor(i) for i in range(c.execution.pool_size))
        detector_names = tuple(names.detector(i) for i in range(c.detector.pool_size))
        risk = self.risk((), executor_names, detector_names)
        executors = [
            ExecutorActor.options(name=names.executor(i), **self.on_bundle(("executor", i))).remote(  # type: ignore[attr-defined]
                c,
                self.universe,
                self.markets,
                i,
                self.run_id,
                self.run_dir,
                self.cores_of(("executor", i)),
            )
            for i in range(c.execution.pool_size)
        ]
        detectors = [
            DetectorActor.options(name=names.detector(i), **self.on_bundle(("detector", i))).remote(  # type: ignore[attr-defined]
                c,
                self.universe,
                self.markets,
                i,
                self.id_prefix,
                self.cores_of(("detector", i)),
            )
            for i in range(c.detector.pool_size)
        ]
        feeds = [
            FeedActor.options(**self.on_bundle(("feed", i))).remote(  # type: ignore[attr-defined]
                c, self.universe, name, self.cores_of(("feed", i))
            )
            for i, name in enumerate(c.venues)
        ]
        return Pipeline(
            "distributed",
            self.pg,
            risk,
            venues=venues,
            feeds=feeds,
            detectors=detectors,
            executors=executors,
            cpus_per_bundle=self.cpus,
        )


def teardown(pipeline: Pipeline) -> None:
    """Kill every actor and release the placement group."""
    for actor in pipeline.all_actors():
        ray.kill(actor, no_restart=True)
    ray.util.remove_placement_group(pipeline.placement_group)
