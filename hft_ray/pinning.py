"""CPU pinning: Ray reserves logical CPUs but pins nothing, so each actor pins itself.

The wiring code decides which cores an actor gets (from its node's allowed CPU set) and hands
them over at creation; the actor then pins every thread of its process, because Ray's own
threads (gRPC, the core worker) share the process with the actor's hot loop.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from hft_ray.config import ClusterConfig


def allowed_cores() -> list[int]:
    """The cores this process may run on (the container's or cgroup's CPU set)."""
    return sorted(os.sched_getaffinity(0))


def pin_process_threads(cores: Sequence[int]) -> list[int]:
    """Pin every thread of this process to `cores`; return the affinity now in force."""
    wanted = set(cores)
    for tid in os.listdir("/proc/self/task"):
        try:
            os.sched_setaffinity(int(tid), wanted)
        except (ProcessLookupError, PermissionError):
            continue  # a thread that ended, or one we may not touch, is no reason to stop
    return sorted(os.sched_getaffinity(0))


#: Pipeline roles, most latency-critical first. A trading node is the whole hot path of the
#: fused topology; feeds take every update of their venue and a stalled feed makes its books
#: stale; risk is the singleton every approval (distributed) or lease (fused) passes through;
#: detectors scan every batch; executors spend a trade mostly waiting on the venue's ack, so
#: scheduler noise costs them least.
CORE_PRIORITY = ("node", "feed", "risk", "detector", "executor")


def assign_cores(
    bundle_nodes: Sequence[str],
    node_cores: dict[str, list[int]],
    roles: Sequence[str] | None = None,
) -> list[tuple[list[int], bool]]:
    """Deal each bundle one of its node's allowed cores, never one core twice while cores last.

    `roles` names each bundle's role (`CORE_PRIORITY`; default: bundle order is priority order).
    Returns, per bundle, its cores and whether another bundle on its node has the same core.

    Where a node has fewer cores than bundles, sharing is unavoidable. The bundles are then
    spread as evenly as the cores allow (no core carries more than one bundle above any other),
    and dealt in priority order, round-robin, over the cores that carry the fewest bundles first.
    So the most critical roles keep a core of their own for as long as one can be spared, the
    least critical (executors, then detectors) are the ones that share, and roles of one kind
    (three feeds on two cores) land on different cores. Piling every loser onto one core would
    isolate one more bundle but overload that core when bundles outnumber cores by far.
    With fewer bundles than cores, the bundles take the last cores of the set and the first
    stay free (core 0 is where interrupts and unpinned processes tend to run).
    """
    rank = {role: i for i, role in enumerate(CORE_PRIORITY)}
    out: list[tuple[list[int], bool]] = [([], False)] * len(bundle_nodes)
    for node in dict.fromkeys(bundle_nodes):
        cores = node_cores[node]
        if not cores:
            raise ValueError(f"node {node} reports no allowed cores")
        mine = [i for i, n in enumerate(bundle_nodes) if n == node]
        if roles is not None:
            mine.sort(key=lambda i: rank.get(roles[i], len(rank)))  # stable: ties keep order
        light, heavy = divmod(len(mine), len(cores))
        # The first len(cores) - heavy cores carry `light` bundles, the rest one more.
        capacity = [light] * (len(cores) - heavy) + [light + 1] * heavy
        dealt: list[list[int]] = [[] for _ in cores]
        slot = 0
        for bundle in mine:
            while len(dealt[slot]) >= capacity[slot]:
                slot = (slot + 1) % len(cores)
            dealt[slot].append(bundle)
            slot = (slot + 1) % len(cores)
        for core, bundles in zip(cores, dealt, strict=True):
            for bundle in bundles:
                out[bundle] = ([core], len(bundles) > 1)
    return out


def raise_priority() -> int:
    """Run this process at the default scheduling priority, if allowed, and return its nice
    value. Ray starts workers at nice 15, below its own daemons, the driver and anything else
    on the node: a pipeline actor there is preempted by each of them (its loop stalled past a
    whole 25 ms tick at 100,000 updates/s on two shared cores). Raising a priority needs
    CAP_SYS_NICE (root, or a container granted it); without it the nice value stays. Threads
    Ray starts later keep its nice value (Linux sets it per thread)."""
    for tid in os.listdir("/proc/self/task"):  # Linux keeps a nice value per thread
        try:
            if os.getpriority(os.PRIO_PROCESS, int(tid)) > 0:
                os.setpriority(os.PRIO_PROCESS, int(tid), 0)
        except (ProcessLookupError, PermissionError):
            continue
    return os.getpriority(os.PRIO_PROCESS, 0)


def realtime() -> bool:
    """Schedule every thread of this process round-robin at real-time priority 1: it then
    runs before every ordinary process on its core the moment it wakes (measured at 100,000
    updates/s on two cores shared with Ray's daemons and a noisy neighbour: 2 % of the ticks
    missed instead of 15 %). A thread that never slept would starve its core's other tasks
    but for the kernel's real-time throttling (5 % kept for them by default): for pinned
    pipeline actors only. Needs CAP_SYS_NICE; returns whether every thread got it."""
    ok = True
    for tid in os.listdir("/proc/self/task"):
        try:
            os.sched_setscheduler(int(tid), os.SCHED_RR, os.sched_param(1))
        except ProcessLookupError:
            continue
        except PermissionError:
            ok = False
    return ok


def pin_actor(cores: Sequence[int], cluster: ClusterConfig) -> dict[str, object]:
    """Pin the calling actor's process to `cores` (`cluster.pin_cores`), raise its priority
    (to real time with `cluster.realtime_priority`); describe where it runs, for the
    report."""
    import ray  # imported here so the pure functions above stay usable without Ray

    enabled, rt = cluster.pin_cores, cluster.realtime_priority
    pinned = pin_process_threads(cores) if enabled and cores else allowed_cores()
    return {
        "node_id": ray.get_runtime_context().get_node_id(),
        "pid": os.getpid(),
        "cores": list(cores),
        "affinity": pinned,
        "pinned": bool(enabled and cores),
        "nice": raise_priority(),
        "realtime": bool(rt and enabled and cores and realtime()),
    }
