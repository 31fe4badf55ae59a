"""What every bench section shares: the machine it ran on, sizes, timing, pinning."""

from __future__ import annotations

import contextlib
import os
import platform
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass


@dataclass(frozen=True)
class Scale:
    """How much work each section does. `full` is the default, `quick` finishes in under three
    minutes on a 2-core machine, `smoke` only proves that every section runs (its figures mean
    nothing)."""

    name: str
    repeats: int  # runs of each timed function; the minimum is reported
    feed_updates: int  # synthetic OKX updates through the feed path
    kernel_symbols: int  # symbols of the kernel's market (x 5 venues)
    run_seconds: float  # seconds of each measured pipeline run


SCALES = {
    "full": Scale("full", repeats=5, feed_updates=20_000, kernel_symbols=1_000, run_seconds=20.0),
    "quick": Scale("quick", repeats=3, feed_updates=5_000, kernel_symbols=1_000, run_seconds=5.0),
    "smoke": Scale("smoke", repeats=1, feed_updates=200, kernel_symbols=50, run_seconds=3.0),
}


def best_of(fn: Callable[[], int], repeats: int) -> tuple[float, int]:
    """The shortest of `repeats` runs of `fn` in seconds, and what its last run returned: the
    minimum is the figure least disturbed by whatever else the machine does."""
    best = float("inf")
    result = 0
    for _ in range(repeats):
        t = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - t)
    return best, result


@contextlib.contextmanager
def pinned_to_one_core() -> Iterator[int]:
    """Run the block on the last allowed core (figures are per core); restore the affinity."""
    allowed = os.sched_getaffinity(0)
    core = max(allowed)
    os.sched_setaffinity(0, {core})
    try:
        yield core
    finally:
        os.sched_setaffinity(0, allowed)


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cpu_jiffies() -> dict[str, int]:
    """The machine's CPU time so far: all of it, and what a hypervisor stole from this VM
    for others (a noisy neighbour shows here, not in the load average)."""
    try:
        with open("/proc/stat") as f:
            fields = [int(x) for x in f.readline().split()[1:]]
    except (OSError, ValueError):
        return {"total": 0, "steal": 0}
    return {"total": sum(fields), "steal": fields[7] if len(fields) > 7 else 0}


def steal_share(before: dict[str, int], after: dict[str, int]) -> float:
    total = after["total"] - before["total"]
    return round((after["steal"] - before["steal"]) / total, 4) if total > 0 else 0.0


def machine() -> dict[str, object]:
    """What the figures were measured on: they mean little without it."""
    load1, load5, load15 = os.getloadavg()
    return {
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpu_model": cpu_model(),
        "cpus": os.cpu_count(),
        "allowed_cores": sorted(os.sched_getaffinity(0)),
        "load_average": [round(load1, 2), round(load5, 2), round(load15, 2)],
    }
