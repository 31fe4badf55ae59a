"""Latency samples kept in a bounded reservoir, and the percentiles the report shows."""

from __future__ import annotations

import random
from collections import deque
from collections.abc import Iterable
from typing import Any

import numpy as np

from hft_ray.types import Trace

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


class Warmup:
    """Latency is sampled only once `seconds` have passed since `start`: the first seconds of
    a run time imports, compiles and cold caches rather than the pipeline (`run.warmup_s`)."""

    def __init__(self, seconds: float) -> None:
        self._ns = int(seconds * 1e9)
        self._from: int | None = None

    def start(self, now_mono_ns: int) -> None:
        if self._from is None:
            self._from = now_mono_ns + self._ns

    def over(self, now_mono_ns: int) -> bool:
        return self._from is not None and now_mono_ns >= self._from


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


#: Each stage of a trade, named by the hand-over that ends it (`Trace` fields in order).
STAGES = (
    ("batch_sent", "batch_wait"),
    ("detector_in", "hop_feed_detector"),
    ("detected", "scan"),
    ("risk_in", "hop_detector_risk"),
    ("approved", "decide"),
    ("executor_in", "hop_risk_executor"),
    ("intent", "journal_intent"),
    ("sent", "send"),
    ("acked", "venue_ack"),
)


def stage_samples(trace: Trace) -> dict[str, int]:
    """Nanoseconds spent in each stage of one trade, and the totals `tick_to_trade` (book
    received to both legs sent) and `tick_to_ack`. A hand-over the topology does not have
    (stamp 0) is no stage of its own: its time counts in the next stage."""
    out: dict[str, int] = {}
    last = trace.recv
    for field_name, stage in STAGES:
        stamp = getattr(trace, field_name)
        if stamp:
            out[stage] = stamp - last
            last = stamp
    if trace.sent:
        out["tick_to_trade"] = trace.sent - trace.recv
    if trace.acked:
        out["tick_to_ack"] = trace.acked - trace.recv
        out["approve_to_ack"] = trace.acked - trace.approved
    return out


class StageSamples:
    """Samples of every stage of the trades one actor finished (`stage_samples`): a uniform
    sample of the whole run, and the last `recent` trades for a live view."""

    def __init__(self, recent: int = 1_000) -> None:
        self._stages: dict[str, LatencySamples] = {}
        self._recent: dict[str, deque[int]] = {}
        self._size = recent

    def add(self, trace: Trace) -> dict[str, int]:
        stages = stage_samples(trace)
        for name, ns in stages.items():
            self._stages.setdefault(name, LatencySamples()).add(ns)
            self._recent.setdefault(name, deque(maxlen=self._size)).append(ns)
        return stages

    def values(self) -> dict[str, list[int]]:
        return {name: s.values() for name, s in self._stages.items()}

    def recent_us(self) -> dict[str, dict[str, float | int]]:
        """Percentiles of each stage over the last trades, us."""
        return {name: summarize_us(list(d)) for name, d in self._recent.items()}


def merge_recent(parts: list[dict[str, dict[str, Any]]]) -> dict[str, dict[str, Any]]:
    """Several actors' `recent_us` as one: counts add up, each percentile is the slowest
    actor's (percentiles of different actors cannot be merged exactly)."""
    out: dict[str, dict[str, Any]] = {}
    for part in parts:
        for stage, s in part.items():
            have = out.setdefault(
                stage, {"count": 0, "p50": 0.0, "p90": 0.0, "p99": 0.0, "max": 0.0}
            )
            have["count"] += s["count"]
            for q in ("p50", "p90", "p99", "max"):
                have[q] = max(have[q], s[q])
    return {stage: out[stage] for _, stage in STAGES if stage in out} | {
        k: v for k, v in out.items() if k not in {name for _, name in STAGES}
    }
