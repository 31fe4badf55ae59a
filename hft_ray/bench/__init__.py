"""`hft-ray bench`: measured speed, every figure beside the baseline it is compared with in
the same run, with the machine it ran on.

Sections (each a module here): `kernel` (detection kernel against its pure-Python reference),
`feed` (the feed path on exchange messages), `ingest` (sustained book updates/s through the
fused topology), `tick_to_trade` (both topologies, idle and loaded, per stage and hop, beside
the single-process floor), `memory` (RSS and PSS of a whole run, beside a bare Ray). Each
returns a JSON-able dict; `run_bench` writes them together. Sections are imported when they
run: the command line lists them without loading numba or Ray.
"""

from __future__ import annotations

import importlib
import json
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from hft_ray.bench.common import SCALES, cpu_jiffies, machine, steal_share

#: Section name -> the function that measures it (module, function).
SECTIONS: dict[str, tuple[str, str]] = {
    "kernel": ("hft_ray.bench.kernel", "bench_kernel"),
    "feed": ("hft_ray.bench.feed", "bench_feed"),
    # Latency before ingest: the ingest runs load both cores, and their workers linger.
    "tick_to_trade": ("hft_ray.bench.latency", "bench_latency"),
    "ingest": ("hft_ray.bench.ingest", "bench_ingest"),
    "memory": ("hft_ray.bench.memory", "bench_memory"),
}


def run_bench(out: Path, scale: str = "full", only: list[str] | None = None) -> dict[str, Any]:
    """Run the sections (all, or `only`) at `scale` and write the JSON to `out`."""
    size = SCALES[scale]
    jiffies = cpu_jiffies()
    report: dict[str, Any] = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "scale": scale,
        "machine": machine(),
    }
    seconds: dict[str, float] = {}
    for name, (module, function) in SECTIONS.items():
        if only is None or name in only:
            started = time.monotonic()
            report[name] = getattr(importlib.import_module(module), function)(size)
            seconds[name] = round(time.monotonic() - started, 1)
    report["seconds"] = seconds
    report["machine_after"] = machine()
    report["cpu_stolen_share"] = steal_share(jiffies, cpu_jiffies())
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    return report
