"""What a Ray hop costs on this machine: the floor (an in-process call), a one-way call between
two async actors and the caller's CPU per `.remote()`, an actor round trip, a chain of three
one-way calls, and a Ray Compiled Graph through 1 and 3 stages with the CPU its actors burn
while idle (their channels busy-poll).

Every latency is `time.monotonic_ns()` at the sender against the same clock at the receiver,
one host. Messages leave one at a time, `_GAP_S` apart, so each figure is a hop on an idle
pipeline, not a queue. The first `_WARM` samples of each measurement (handles being resolved,
workers warming) are dropped.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import ray
from ray.dag import InputNode

from hft_ray.bench.common import Scale
from hft_ray.latency import summarize_us

_GAP_S = 0.003
_WARM = 20
_MAX_SAMPLES = 2_000
_IDLE_S = 1.0
_SINK_TIMEOUT_S = 30.0
_CLK_TCK = os.sysconf("SC_CLK_TCK")
#: What the design page claims, p50 ms, and the idle cores of a 3-stage graph on 2 cores.
DESIGN_CLAIMS = {
    "actor_one_way_p50_ms": [1.1, 1.5],
    "compiled_graph_3_stages_p50_ms": [0.27, 0.37],
    "compiled_graph_3_stages_idle_cores": 1.2,
}


class _Hop:
    """An async actor that records the latency of what reaches it, or passes it on one way."""

    def __init__(self, forward_to: Any = None) -> None:
        self._next = forward_to
        self._latency: list[int] = []

    async def pid(self) -> int:
        return os.getpid()

    async def hit(self, stamp: int) -> None:
        if self._next is None:
            self._latency.append(time.monotonic_ns() - stamp)
        else:
            self._next.hit.remote(stamp)

    async def echo(self, stamp: int) -> int:
        return stamp

    async def count(self) -> int:
        return len(self._latency)

    async def latency(self) -> list[int]:
        return self._latency

    async def clear(self) -> None:
        self._latency.clear()


class _Caller:
    """Sends to a hop from its own event loop, as a trading actor would."""

    async def pid(self) -> int:
        return os.getpid()

    async def one_way(self, target: Any, n: int, gap_s: float) -> list[int]:
        """Send `n` stamps without awaiting any; the CPU this thread spent in each call."""
        cpu = []
        for _ in range(n):
            t = time.thread_time_ns()
            target.hit.remote(time.monotonic_ns())
            cpu.append(time.thread_time_ns() - t)
            await asyncio.sleep(gap_s)
        return cpu

    async def round_trip(self, target: Any, n: int, gap_s: float) -> list[int]:
        out = []
        for _ in range(n):
            stamp = time.monotonic_ns()
            await target.echo.remote(stamp)
            out.append(time.monotonic_ns() - stamp)
            await asyncio.sleep(gap_s)
        return out


class _Stage:
    """A compiled graph stage: synchronous methods only."""

    def pid(self) -> int:
        return os.getpid()

    def step(self, stamp: int) -> int:
        return stamp

    def last(self, stamp: int) -> int:
        return time.monotonic_ns() - stamp


_HopActor = ray.remote(_Hop)
_CallerActor = ray.remote(_Caller)
_StageActor = ray.remote(_Stage)


def _cpu_ticks(pid: int) -> int:
    """User plus system CPU of a process so far, in clock ticks (`/proc/<pid>/stat`)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime, stime: fields 14 and 15 of stat


def idle_cores(pids: list[int], seconds: float = _IDLE_S) -> float:
    """Cores the processes keep busy over `seconds` while nothing is sent to them."""
    before = [_cpu_ticks(p) for p in pids]
    t = time.monotonic()
    time.sleep(seconds)
    after = [_cpu_ticks(p) for p in pids]
    wall = time.monotonic() - t
    return round(sum(a - b for a, b in zip(after, before, strict=True)) / _CLK_TCK / wall, 3)


@contextmanager
def _local_ray() -> Iterator[None]:
    """The caller's Ray if initialised, else a fresh local one, shut down on the way out."""
    if ray.is_initialized():
        yield
        return
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")  # a local, loopback-only instance
    ray.init(
        num_cpus=2,
        include_dashboard=False,
        namespace=f"hft_ray_bench_hops_{uuid.uuid4().hex[:8]}",
        logging_level=logging.WARNING,
        log_to_driver=False,
    )
    try:
        yield
    finally:
        ray.shutdown()


@contextmanager
def _actors(*handles: Any) -> Iterator[list[int]]:
    """The actors' pids once they are up; every one killed on the way out."""
    try:
        yield ray.get([h.pid.remote() for h in handles])
    finally:
        for h in handles:
            ray.kill(h)


def _summary(samples_ns: list[int]) -> dict[str, float | int]:
    return summarize_us(samples_ns[_WARM:])


def _floor(n: int) -> dict[str, Any]:
    def hit(stamp: int) -> int:
        return time.monotonic_ns() - stamp

    return {"latency_us": _summary([hit(time.monotonic_ns()) for _ in range(n + _WARM)])}


def _sink_latency(sink: Any, n: int) -> list[int]:
    """What reached the sink, once all `n` stamps have (or the timeout passed)."""
    deadline = time.monotonic() + _SINK_TIMEOUT_S
    while ray.get(sink.count.remote()) < n and time.monotonic() < deadline:
        time.sleep(0.05)
    got: list[int] = ray.get(sink.latency.remote())
    if len(got) < n:
        raise RuntimeError(f"bench hops: {n - len(got)} of {n} one-way calls never arrived")
    return got


def _one_way(caller: Any, sink: Any, pids: list[int], n: int) -> dict[str, Any]:
    """`pids`: the sink's and the caller's."""
    before = [_cpu_ticks(p) for p in pids]
    cpu = ray.get(caller.one_way.remote(sink, n + _WARM, _GAP_S))
    latency = _sink_latency(sink, n + _WARM)
    spent = [(_cpu_ticks(p) - b) / _CLK_TCK for p, b in zip(pids, before, strict=True)]
    return {
        "latency_us": _summary(latency),
        "caller_thread_cpu_us_per_remote": _summary(cpu),
        # Whole processes over the run (Ray's own threads included), per message.
        "process_cpu_us_per_message": {
            "callee": round(spent[0] / (n + _WARM) * 1e6, 1),
            "caller": round(spent[1] / (n + _WARM) * 1e6, 1),
        },
        "idle_cores_of_both": idle_cores(pids),
    }


def _round_trip(caller: Any, target: Any, n: int) -> dict[str, Any]:
    return {"latency_us": _summary(ray.get(caller.round_trip.remote(target, n + _WARM, _GAP_S)))}


def _chain(caller: Any, chain: list[Any], pids: list[int], n: int) -> dict[str, Any]:
    """`chain` ends in its sink, whose latency samples are cleared first; `pids` its own."""
    ray.get(chain[-1].clear.remote())
    ray.get(caller.one_way.remote(chain[0], n + _WARM, _GAP_S))
    return {
        "hops": len(chain),
        "latency_us": _summary(_sink_latency(chain[-1], n + _WARM)),
        "idle_cores_of_chain": idle_cores(pids),
    }


def _compiled_graph(stages: list[Any], pids: list[int], n: int) -> dict[str, Any]:
    """Through `stages` in order, one way; torn down after, so its actors may join another."""
    with InputNode() as source:
        node = source
        for stage in stages[:-1]:
            node = stage.step.bind(node)
        node = stages[-1].last.bind(node)
    dag = node.experimental_compile()
    try:
        latency = []
        for _ in range(n + _WARM):
            latency.append(int(ray.get(dag.execute(time.monotonic_ns()))))
            time.sleep(_GAP_S)
        idle = idle_cores(pids)
    finally:
        dag.teardown()
    return {"stages": len(stages), "latency_us": _summary(latency), "idle_cores": idle}


def verdict(
    chain_p50_us: float,
    graph_p50_us: float,
    graph_idle_cores: float,
    cores: int,
    load: float,
    stages: int = 3,
) -> str:
    """Whether channels pay here: faster than calls, and what the idle graph leaves of the
    machine is still a core for each stage's own work (busy-polling is right when each stage
    owns a core)."""
    faster = graph_p50_us < chain_p50_us
    room = cores - graph_idle_cores >= stages
    figures = (
        f"{stages} stages one way p50 {graph_p50_us / 1e3:.2f} ms against "
        f"{chain_p50_us / 1e3:.2f} ms through {stages} actor calls; idle, the graph holds "
        f"{graph_idle_cores:.2f} of {cores} cores (load average {load:.1f})"
    )
    if faster and room:
        return f"channels pay here: {figures}"
    why = "they are no faster" if not faster else "no core is left for each stage's work"
    return f"channels do not pay here ({why}): {figures}; fuse the stages instead"


def bench_hops(scale: Scale) -> dict[str, Any]:
    """Each hop's latency percentiles with its sample count, the CPU a call and an idle graph
    cost, and the verdict; on a local Ray of its own unless one is running."""
    n = min(_MAX_SAMPLES, int(scale.run_seconds * 100))
    cores = os.cpu_count() or 1
    out: dict[str, Any] = {"gap_between_messages_ms": _GAP_S * 1e3, "cores": cores}
    load_before = os.getloadavg()[0]
    out["in_process_call"] = _floor(n)
    with _local_ray():
        sink = _HopActor.remote()
        middle = _HopActor.remote(sink)
        first = _HopActor.remote(middle)
        caller = _CallerActor.remote()
        stages = [_StageActor.remote() for _ in range(3)]
        with _actors(sink, middle, first, caller, *stages) as pids:
            out["actor_one_way"] = _one_way(caller, sink, [pids[0], pids[3]], n)
            out["actor_round_trip"] = _round_trip(caller, sink, n)
            out["actor_chain_one_way"] = _chain(caller, [first, middle, sink], pids[:3], n)
            out["compiled_graph_1_stage"] = _compiled_graph(stages[:1], pids[4:5], n)
            out["compiled_graph_3_stages"] = _compiled_graph(stages, pids[4:], n)
    graph = out["compiled_graph_3_stages"]
    # Busy-polling threads get less CPU on a loaded machine: idle cores read low there.
    load = max(load_before, os.getloadavg()[0])
    out["load_average_1m"] = round(load, 2)
    out["design_claims"] = DESIGN_CLAIMS
    out["verdict"] = verdict(
        out["actor_chain_one_way"]["latency_us"]["p50"],
        graph["latency_us"]["p50"],
        graph["idle_cores"],
        cores,
        load,
    )
    return out
