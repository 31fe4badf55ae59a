"""Joining Ray, the run's placement group, and wiring the actors together.

One placement group per run with one bundle per pipeline actor (feeds, detectors, risk,
executors). Simulated venues stand for exchanges outside the cluster and take no bundle.
Each actor is handed its cores at creation: the wiring reads every node's allowed CPU set
with a zero-CPU probe task on that node and deals one core per bundle, distinct per node while
cores last, the most latency-critical roles first (see `pinning.assign_cores`). A venue's
`node_resource` makes its feed's bundle ask for that custom resource, so the feed lands on the
node started with it (the one nearest the exchange).
"""

from __future__ import annotations

import math
import os
import socket
from dataclasses import dataclass, field
from typing import Any

import ray
from ray.util.placement_group import PlacementGroup, placement_group, placement_group_table
from ray.util.scheduling_strategies import (
    NodeAffinitySchedulingStrategy,
    PlacementGroupSchedulingStrategy,
)

from hft_ray import names
from hft_ray.config import HftConfig
from hft_ray.detect.actor import DetectorActor
from hft_ray.execute.actor import ExecutorActor
from hft_ray.feed.actor import FeedActor
from hft_ray.markets import Markets
from hft_ray.pinning import allowed_cores, assign_cores
from hft_ray.risk.actor import RiskActor
from hft_ray.types import Universe
from hft_ray.venues.replay import ReplayMarketActor
from hft_ray.venues.sim import SimVenueActor

#: Units of a venue's `node_resource` a feed bundle asks for: a token, so that every run's
#: feed for that venue fits on the node however many units the node was started with.
NODE_RESOURCE_UNITS = 0.001

#: Ray >= 2.59 turns token auth on for new local clusters; a local run says what it wants.
DEFAULT_LOCAL_AUTH_MODE = "disabled"


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
    if address:
        check_reachable(address)
        try:
            ray.init(address=address, **common)
        except (ConnectionError, RuntimeError, ValueError) as err:
            raise ClusterError(f"cannot join the Ray cluster at {address}: {err}") from None
        return False
    os.environ.setdefault("RAY_AUTH_MODE", DEFAULT_LOCAL_AUTH_MODE)
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


@dataclass
class Pipeline:
    """Handles to every actor of a run."""

    placement_group: PlacementGroup
    venues: dict[str, Any]
    feeds: list[Any]
    detectors: list[Any]
    risk: Any
    executors: list[Any]
    placement: list[dict[str, Any]] = field(default_factory=list)
    cpus_per_bundle: float = 0.0

    def all_actors(self) -> list[Any]:
        return [*self.feeds, *self.detectors, self.risk, *self.executors, *self.venues.values()]


def _bundle_cpus(config: HftConfig, bundles: int) -> float:
    setting = config.cluster.cpus_per_bundle
    if setting != "auto":
        return float(setting)
    total = float(ray.cluster_resources().get("CPU", 0.0))
    if total <= 0:
        raise ClusterError("the Ray cluster reports no CPUs")
    return min(1.0, math.floor(total / bundles * 100) / 100)


def _roles(config: HftConfig) -> list[tuple[str, int]]:
    roles = [("feed", i) for i in range(len(config.venues))]
    roles += [("detector", i) for i in range(config.detector.pool_size)]
    roles.append(("risk", 0))
    roles += [("executor", i) for i in range(config.execution.pool_size)]
    return roles


def _bundles(
    config: HftConfig, roles: list[tuple[str, int]], cpus: float
) -> list[dict[str, float]]:
    venues = list(config.venues.values())
    out: list[dict[str, float]] = []
    for role, n in roles:
        bundle = {"CPU": cpus}
        resource = venues[n].node_resource if role == "feed" else None
        if resource is not None:
            bundle[resource] = NODE_RESOURCE_UNITS
        out.append(bundle)
    return out


def build_pipeline(
    config: HftConfig,
    universe: Universe,
    markets: Markets,
    run_id: str,
    run_dir: str,
    id_prefix: str,
) -> Pipeline:
    """Create the placement group and every actor, wired, pinned and ready (not started)."""
    try:
        ray.get_actor(names.RISK)
    except ValueError:
        pass  # no run is active in this namespace: the names are ours to take
    else:
        raise ClusterError(
            f"another run is active in Ray namespace {config.cluster.namespace!r} "
            f"(its {names.RISK} actor exists); stop it or set cluster.namespace"
        )
    roles = _roles(config)
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
            + (f"(feeds also asking for {', '.join(extra)}) " if extra else "")
            + f"({config.cluster.placement_strategy}) was not scheduled within "
            f"{config.cluster.ready_timeout_s:.0f}s; cluster resources: {ray.cluster_resources()}"
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

    def on_bundle(index: int) -> dict[str, Any]:
        return {
            "num_cpus": cpus,
            "scheduling_strategy": PlacementGroupSchedulingStrategy(
                pg, placement_group_bundle_index=index
            ),
        }

    index = {role: i for i, role in enumerate(roles)}
    if config.replay is not None:
        venues = {
            "replay": ReplayMarketActor.options(name=names.REPLAY).remote(config)  # type: ignore[attr-defined]
        }
    else:
        venues = {
            name: SimVenueActor.options(name=names.venue(name)).remote(config, name)  # type: ignore[attr-defined]
            for name, venue in config.venues.items()
            if venue.kind == "sim"
        }
    risk_at = index[("risk", 0)]
    risk = RiskActor.options(  # type: ignore[attr-defined]
        name=names.RISK,
        namespace=config.cluster.namespace,
        get_if_exists=True,
        **on_bundle(risk_at),
    ).remote(config, universe, markets, run_id, run_dir, cores[risk_at][0])
    executors = []
    for i in range(config.execution.pool_size):
        at = index[("executor", i)]
        executors.append(
            ExecutorActor.options(name=names.executor(i), **on_bundle(at)).remote(  # type: ignore[attr-defined]
                config, universe, markets, i, run_id, run_dir, cores[at][0]
            )
        )
    detectors = []
    for i in range(config.detector.pool_size):
        at = index[("detector", i)]
        detectors.append(
            DetectorActor.options(name=names.detector(i), **on_bundle(at)).remote(  # type: ignore[attr-defined]
                config, universe, markets, i, id_prefix, cores[at][0]
            )
        )
    feeds = []
    for i, name in enumerate(config.venues):
        at = index[("feed", i)]
        feeds.append(
            FeedActor.options(**on_bundle(at)).remote(  # type: ignore[attr-defined]
                config, universe, name, cores[at][0]
            )
        )
    pipeline = Pipeline(pg, venues, feeds, detectors, risk, executors, cpus_per_bundle=cpus)
    handles = {
        **{("feed", i): a for i, a in enumerate(feeds)},
        **{("detector", i): a for i, a in enumerate(detectors)},
        ("risk", 0): risk,
        **{("executor", i): a for i, a in enumerate(executors)},
    }
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
            }
        )
    ray.get([v.start.remote() for v in venues.values()])
    return pipeline


def teardown(pipeline: Pipeline) -> None:
    """Kill every actor and release the placement group."""
    for actor in pipeline.all_actors():
        ray.kill(actor, no_restart=True)
    ray.util.remove_placement_group(pipeline.placement_group)
