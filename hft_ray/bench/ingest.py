"""Ingest: sustained book updates per second through the fused topology on this machine's
cores, every update checked and scanned, at rising nominal rates; the highest rate held
without loss, and what happens past it (the simulated venues skip the ticks a late node
cannot take: those books are counted as conflated, never silently lost).

Each rate is a real run: one trading node per core, symbols sharded between them, untradable
symbols only (no order competes with the books). The baseline, measured in the same run in
one pinned process, is what each update costs the stages on their own (the simulator making
it, the feed's checks, the detector's scan): the rate the cores could bear if nothing else
ran, which is the bound that stops ingest.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from hft_ray.bench.common import Scale, pinned_to_one_core
from hft_ray.bench.runs import Snapshot, bench_config, local_ray, run_pipeline, scratch_dir

TARGET_PER_S = 100_000
_TICK_S = 0.025
_VENUES = 3
#: Nominal rates tried, updates/s, by scale.
RATES = {"full": (25_000, 50_000, 100_000, 150_000), "quick": (25_000, 100_000), "smoke": (3_000,)}
#: Conflated share below which a rate counts as held.
HELD_BELOW = 0.001
#: Seconds of each run before the steady state is measured.
WARMUP_S = 2.0


def _symbols_for(rate: int) -> int:
    return max(1, round(rate * _TICK_S / _VENUES))


def bench_ingest(scale: Scale) -> dict[str, Any]:
    cores = len(os.sched_getaffinity(0))
    out: dict[str, Any] = {
        "what": "book updates/s through the fused topology, every update checked and "
        f"scanned, {cores} trading nodes (one per core), untradable symbols",
        "target_per_s": TARGET_PER_S,
        "seconds_per_rate": scale.run_seconds,
        "warmup_s_per_rate": WARMUP_S,
        "rates": [],
    }
    with scratch_dir() as tmp:
        runs = Path(tmp)
        with pinned_to_one_core():
            out["baseline_same_run"] = _per_update_cost(runs, _symbols_for(100_000), cores)
        with local_ray():
            for rate in RATES[scale.name]:
                config = bench_config(
                    topology="fused",
                    background=_symbols_for(rate) - 3,
                    tradable=False,
                    runs_dir=runs,
                    trading_nodes=cores,
                    warmup_s=WARMUP_S,
                )
                report, snap = run_pipeline(config, scale.run_seconds + WARMUP_S, WARMUP_S)
                out["rates"].append(_measured(rate, report, snap))
    held = [r["nominal_per_s"] for r in out["rates"] if r["conflated_share"] < HELD_BELOW]
    out["highest_held_per_s"] = max(held, default=0)
    out["meets_target"] = out["highest_held_per_s"] >= TARGET_PER_S
    return out


def _measured(rate: int, report: dict[str, Any], snap: Snapshot) -> dict[str, Any]:
    """The steady state: from the snapshot after the warm-up to the end of the run."""
    seconds = report["duration_s"] - snap.at_s
    venues = [v for node in snap.nodes for v in node["venues"].values()]
    updates = report["book_updates"] - sum(v["updates"] for v in venues)
    conflated = report["books_conflated"] - sum(v["conflated"] for v in venues)
    scanned = report["rows_scanned"] - sum(n["detector"]["rows_scanned"] for n in snap.nodes)
    return {
        "nominal_per_s": rate,
        "symbols": len(report["symbols"]),
        "ingested_per_s": round(updates / seconds),
        "scanned_per_s": round(scanned / seconds),
        "conflated_per_s": round(conflated / seconds),
        "conflated_share": round(conflated / max(1, updates + conflated), 5),
        "tick_to_detect_us": report["latency_us"].get("tick_to_detect"),
        "pinning": report["placement"]["pinning"],
    }


def _per_update_cost(runs: Path, symbols: int, cores: int) -> dict[str, Any]:
    """What one update costs each stage in one process, over `symbols` x 3 venues."""
    from hft_ray.clock import LiveClock
    from hft_ray.detect.core import DetectorCore
    from hft_ray.feed.core import FeedCore
    from hft_ray.markets import simulated_markets
    from hft_ray.types import Universe
    from hft_ray.venues.sim import sim_exchange_from_config

    config = bench_config(topology="fused", background=symbols - 3, tradable=False, runs_dir=runs)
    universe = Universe(tuple(config.venues), tuple(config.symbols))
    exchanges = [sim_exchange_from_config(config, v) for v in config.venues]
    feeds = [FeedCore(universe, v, config.feed, 1) for v in config.venues]
    detector = DetectorCore(config, universe, simulated_markets(config), LiveClock(), "hb")
    detector.warm_up()
    steps = 40
    make = check = scan = 0.0
    for step in range(steps):
        for ex, feed in zip(exchanges, feeds, strict=True):
            t0 = time.perf_counter()
            rows = ex.step_rows(time.time_ns())
            t1 = time.perf_counter()
            feed.check_rows(rows, time.time_ns(), time.monotonic_ns())
            t2 = time.perf_counter()
            detector.on_batch(rows)
            t3 = time.perf_counter()
            if step >= 5:  # the first steps fill the books and warm the caches
                make, check, scan = make + t1 - t0, check + t2 - t1, scan + t3 - t2
    n = (steps - 5) * len(exchanges) * symbols
    per = {k: v / n * 1e6 for k, v in (("simulate", make), ("check", check), ("scan", scan))}
    total = float(np.sum(list(per.values())))
    return {
        "what": f"us per update of each stage alone, one pinned core, {symbols} symbols x "
        f"{len(exchanges)} venues",
        "us_per_update": {k: round(v, 3) for k, v in per.items()},
        "total_us_per_update": round(total, 3),
        "bound_per_s_on_these_cores": round(cores / (total * 1e-6)),
    }
