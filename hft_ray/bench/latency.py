"""Tick to trade: from the feed receiving a book to both legs really sent (the request handed
to the venue connection) and to both acknowledged, per stage and hop, for each topology, idle
and under 10,000 background book updates/s, beside the single-process floor: the same stages
(`TradingNode`) in one process with no Ray, measured in the same bench run.

Each case is a real run (`runner.run`) on one local Ray shared by the section; the figures are
the run report's `latency_us`. What a Ray hop costs on its own is in `hops`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hft_ray.bench.common import Scale, pinned_to_one_core
from hft_ray.bench.hops import bench_hops
from hft_ray.bench.runs import (
    BACKGROUND_PER_10K,
    BUSY,
    bench_config,
    floor_run,
    local_ray,
    run_pipeline,
    scratch_dir,
)
from hft_ray.latency import STAGES, summarize_us

TARGET_P50_MS = 1.0
TARGET_P99_MS = 5.0
LOADS = {"idle": 0, "loaded_10k_updates_per_s": BACKGROUND_PER_10K}
#: Seconds of each run before latency is sampled: workers import, kernels load, caches warm.
WARMUP_S = 2.0
_TOTALS = ("tick_to_trade", "tick_to_ack", "tick_to_detect")


def _figures(latency_us: dict[str, Any], report: dict[str, Any] | None = None) -> dict[str, Any]:
    """The totals and every stage present, in pipeline order, from a report's `latency_us`."""
    stages = {name: latency_us[name] for _, name in STAGES if name in latency_us}
    out: dict[str, Any] = {name: latency_us.get(name) for name in _TOTALS}
    out["stages"] = stages
    if report is not None:
        out["book_updates_per_s"] = round(report["book_updates"] / report["duration_s"])
        out["trades"] = report["trades"]
    return out


def bench_latency(scale: Scale) -> dict[str, Any]:
    seconds = scale.run_seconds
    out: dict[str, Any] = {
        "what": "feed receipt to both legs sent (tick_to_trade) and to both acknowledged "
        "(tick_to_ack), us, with the stages between; idle and at 10,000 background book "
        "updates/s",
        "seconds_per_case": seconds,
        "warmup_s_per_case": WARMUP_S,
        "market": "the default (3 venues x BTC, ETH, SOL), dislocations twice as often, limits "
        "that do not stop trading; loaded: 84 more symbols, untradable, 10,080 updates/s",
        "baseline": "floor: the fused node's stages in one process, no Ray (same run)",
        "targets": {"fused_loaded_p50_ms": TARGET_P50_MS, "fused_loaded_p99_ms": TARGET_P99_MS},
    }
    with scratch_dir() as tmp:
        runs = Path(tmp)

        def config(topology: str, background: int) -> Any:
            return bench_config(
                topology=topology,
                background=background,
                runs_dir=runs,
                warmup_s=WARMUP_S,
                extra=BUSY,
            )

        with pinned_to_one_core():
            out["floor"] = {
                load: _floor(config("fused", bg), seconds + WARMUP_S) for load, bg in LOADS.items()
            }
        with local_ray():
            for topology in ("fused", "distributed"):
                out[topology] = {}
                for load, bg in LOADS.items():
                    report, _ = run_pipeline(config(topology, bg), seconds + WARMUP_S)
                    out[topology][load] = _figures(report["latency_us"], report)
                    out[topology][load]["placement"] = report["placement"]["pinning"]
            out["hops"] = bench_hops(scale)
    loaded = out["fused"]["loaded_10k_updates_per_s"]["tick_to_trade"]
    out["meets_target"] = bool(
        loaded
        and loaded["count"]
        and loaded["p50"] <= TARGET_P50_MS * 1e3
        and loaded["p99"] <= TARGET_P99_MS * 1e3
    )
    return out


def _floor(config: Any, seconds: float) -> dict[str, Any]:
    result = floor_run(config, seconds)
    latency = {name: summarize_us(v) for name, v in result["latency_ns"].items()}
    figures = _figures(latency)
    venues = result["stats"]["venues"]
    figures["book_updates_per_s"] = round(sum(v["updates"] for v in venues.values()) / seconds)
    figures["trades"] = result["stats"]["executor"]["executions"]
    return figures
