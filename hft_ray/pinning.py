"""CPU pinning: Ray reserves logical CPUs but pins nothing, so each actor pins itself.

The wiring code decides which cores an actor gets (from its node's allowed CPU set) and hands
them over at creation; the actor then pins every thread of its process, because Ray's own
threads (gRPC, the core worker) share the process with the actor's hot loop.
"""

from __future__ import annotations

import os
from collections.abc import Sequence


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


def assign_cores(
    bundle_nodes: Sequence[str], node_cores: dict[str, list[int]]
) -> list[tuple[list[int], bool]]:
    """One core per bundle, distinct on each node while cores last.

    Returns, per bundle, its cores and whether it shares them with another bundle (a node
    with fewer cores than bundles: pinning degrades to sharing, round-robin).
    """
    counts = {node: bundle_nodes.count(node) for node in set(bundle_nodes)}
    taken: dict[str, int] = {}
    out: list[tuple[list[int], bool]] = []
    for node in bundle_nodes:
        cores = node_cores[node]
        rank = taken.get(node, 0)
        taken[node] = rank + 1
        out.append(([cores[rank % len(cores)]], counts[node] > len(cores)))
    return out


def pin_actor(cores: Sequence[int], enabled: bool) -> dict[str, object]:
    """Pin the calling actor's process if `enabled`; describe where it runs, for the report."""
    import ray  # imported here so the pure functions above stay usable without Ray

    pinned = pin_process_threads(cores) if enabled and cores else allowed_cores()
    return {
        "node_id": ray.get_runtime_context().get_node_id(),
        "pid": os.getpid(),
        "cores": list(cores),
        "affinity": pinned,
        "pinned": bool(enabled and cores),
    }
