"""Latency samples kept in a bounded reservoir, and the percentiles the report shows."""

from __future__ import annotations

import random
from collections.abc import Iterable

import numpy as np

_CAPACITY = 100_000


class LatencySamples:
    """A uniform sample of at most `capacity` latencies in nanoseconds (reservoir sampling)."""

    def __init__(self, capacity: int = _CAPACITY, seed: int = 0) -> None:
        self._capacity = capacity
        self._values: list[int] = []
        self._seen = 0
        self._rng = random.Random(seed)

    def add(self, ns: int) -> None:
        self._seen += 1
        if len(self._values) < self._capacity:
            self._values.append(ns)
        else:
            slot = self._rng.randrange(self._seen)
            if slot < self._capacity:
                self._values[slot] = ns

    def extend(self, values: Iterable[int]) -> None:
        for ns in values:
            self.add(ns)

    def values(self) -> list[int]:
        return list(self._values)


def summarize_us(samples_ns: list[int]) -> dict[str, float | int]:
    """p50, p90, p99 and max in microseconds, with the sample count."""
    if not samples_ns:
        return {"count": 0, "p50": 0.0, "p90": 0.0, "p99": 0.0, "max": 0.0}
    arr = np.asarray(samples_ns, dtype=np.float64) / 1e3
    p50, p90, p99 = np.percentile(arr, [50, 90, 99])
    return {
        "count": len(samples_ns),
        "p50": round(float(p50), 1),
        "p90": round(float(p90), 1),
        "p99": round(float(p99), 1),
        "max": round(float(arr.max()), 1),
    }
