"""The soak: one long run at a high update rate, watched for what only time shows: memory
that creeps up, a queue that grows, latency that drifts.

The load is the bench's (`bench.runs.bench_config`: the default tradable market plus
untradable background symbols, every update checked and scanned) in the fused topology, on
a local Ray this process starts, so that every Ray process is below it: each sample reads
every process's RSS and PSS (`bench.memory.sample_tree`, summed per kind), each trading
node's feed queues and the recent tick-to-trade percentiles. The bounds, evaluated at the
end:

- memory: the PSS of each process kind at the end within `MEMORY_GROWTH` (plus
  `MEMORY_SLACK_MIB`, for kinds of a few MiB) of what it was once warm (`warmup_s`);
- queues: the deepest queue of the last third of the run no deeper than `QUEUE_FLOOR` or
  twice the deepest of the first third;
- latency: tick_to_trade p99 of the last minute within `LATENCY_DRIFT` times the first's.
"""

from __future__ import annotations

import io
import os
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

MAX_MINUTES = 24 * 60
DEFAULT_RATE = 10_000
MEMORY_GROWTH = 0.10
MEMORY_SLACK_MIB = 8.0
QUEUE_FLOOR = 15
LATENCY_DRIFT = 2.0
_TICK_S = 0.025
_VENUES = 3
_MIB = 1024 * 1024


MAX_RATE = 1_000_000


def background_for(rate: int) -> int:
    """Untradable symbols beside the default three for `rate` updates/s on 3 venues."""
    return max(0, round(rate * _TICK_S / _VENUES) - 3)


def soak(
    minutes: float, rate: int = DEFAULT_RATE, sample_s: float = 5.0, runs_dir: Path | None = None
) -> dict[str, Any]:
    """Run for `minutes` at `rate` updates/s, sampling every `sample_s`; the figures and
    the bounds' verdicts."""
    import ray

    from hft_ray import names
    from hft_ray.bench.memory import sample_tree
    from hft_ray.bench.runs import bench_config, local_ray, scratch_dir
    from hft_ray.runner import run

    if not 0 < minutes <= MAX_MINUTES:
        raise ValueError(f"soak: --minutes {minutes:g} is outside (0, {MAX_MINUTES}]")
    seconds = minutes * 60
    warmup_s = min(30.0, seconds / 4)
    samples: list[dict[str, Any]] = []
    with scratch_dir() as tmp, local_ray():
        config = bench_config(
            topology="fused",
            background=background_for(rate),
            runs_dir=runs_dir or Path(tmp),
            warmup_s=warmup_s,
        )
        namespace = str(ray.get_runtime_context().namespace)
        config = config.model_copy(
            update={"cluster": config.cluster.model_copy(update={"namespace": namespace})}
        )
        started: list[float] = []

        def sample() -> bool:
            now = time.monotonic()
            started[:] = started or [now]
            if samples and now - started[0] - samples[-1]["t_s"] < sample_s:
                return False
            samples.append(_sample(now - started[0], sample_tree(os.getpid()), names, namespace))
            return False

        report = run(config, duration_s=seconds, out=io.StringIO(), stop_when=sample)
    return evaluate(samples, warmup_s, rate, minutes, report)


def _sample(t_s: float, processes: list[Any], names: Any, namespace: str) -> dict[str, Any]:
    import ray

    pss: dict[str, int] = defaultdict(int)
    rss: dict[str, int] = defaultdict(int)
    for p in processes:
        pss[p.kind] += p.pss
        rss[p.kind] += p.rss
    queue, p99 = 0, None
    for i in range(64):
        try:
            node = ray.get_actor(names.node(i), namespace=namespace)
        except ValueError:
            break
        try:
            ref: Any = node.stats.remote()
            stats: dict[str, Any] = ray.get(ref, timeout=5)
        except ray.exceptions.RayError:
            continue
        queue += sum(int(v["queue_depth"]) for v in stats["venues"].values())
        tick = stats["executor"].get("latency_us", {}).get("tick_to_trade", {})
        if tick.get("count"):
            p99 = max(p99 or 0.0, float(tick["p99"]))
    return {
        "t_s": round(t_s, 1),
        "pss_mib": {k: round(v / _MIB, 2) for k, v in sorted(pss.items())},
        "rss_mib": {k: round(v / _MIB, 2) for k, v in sorted(rss.items())},
        "queue_depth": queue,
        "tick_to_trade_p99_us": p99,
    }


def evaluate(
    samples: list[dict[str, Any]],
    warmup_s: float,
    rate: int,
    minutes: float,
    report: dict[str, Any],
) -> dict[str, Any]:
    """The soak's figures and each bound's verdict (`ok` all of them)."""
    warm = [s for s in samples if s["t_s"] >= warmup_s] or samples[-1:]
    start, end = warm[0], warm[-1]
    memory = {}
    for kind, mib in end["pss_mib"].items():
        first = start["pss_mib"].get(kind)
        if first is None:
            continue
        bound = first * (1 + MEMORY_GROWTH) + MEMORY_SLACK_MIB
        memory[kind] = {
            "start_mib": first,
            "end_mib": mib,
            "growth": round(mib / first - 1, 4) if first else 0.0,
            "ok": mib <= bound,
        }
    third = max(1, len(samples) // 3)
    first_q = max(s["queue_depth"] for s in samples[:third])
    last_q = max(s["queue_depth"] for s in samples[-third:])
    queues = {
        "first_third_max": first_q,
        "last_third_max": last_q,
        "ok": last_q <= max(QUEUE_FLOOR, 2 * first_q),
    }
    end_t = samples[-1]["t_s"]
    first_min = [s["tick_to_trade_p99_us"] for s in warm if s["t_s"] < warmup_s + 60]
    last_min = [s["tick_to_trade_p99_us"] for s in warm if s["t_s"] > end_t - 60]
    p99_first = max((v for v in first_min if v is not None), default=None)
    p99_last = max((v for v in last_min if v is not None), default=None)
    latency = {
        "first_minute_p99_us": p99_first,
        "last_minute_p99_us": p99_last,
        "ok": p99_first is not None
        and p99_last is not None
        and p99_last <= LATENCY_DRIFT * p99_first,
    }
    bounds = {
        "memory_growth_max": MEMORY_GROWTH,
        "memory_slack_mib": MEMORY_SLACK_MIB,
        "queue_floor": QUEUE_FLOOR,
        "latency_drift_max": LATENCY_DRIFT,
    }
    ok = all(m["ok"] for m in memory.values()) and queues["ok"] and latency["ok"]
    return {
        "minutes": minutes,
        "rate_per_s": rate,
        "warmup_s": warmup_s,
        "samples": samples,
        "bounds": bounds,
        "memory": memory,
        "queues": queues,
        "latency": latency,
        "run": {
            k: report.get(k)
            for k in ("run_id", "book_updates", "books_conflated", "trades", "failure")
        },
        "ok": ok and memory != {},
    }


def summary(result: dict[str, Any]) -> str:
    """The soak's figures for a terminal."""
    lines = [
        f"soak {result['minutes']:g} min at {result['rate_per_s']} updates/s: "
        f"{'OK' if result['ok'] else 'FAILED'} ({result['run']['book_updates']} books, "
        f"{result['run']['trades']} trades, {result['run']['books_conflated']} conflated)"
    ]
    for kind, m in sorted(result["memory"].items()):
        flag = "ok" if m["ok"] else "GREW"
        lines.append(
            f"  pss {kind:<24} {m['start_mib']:8.1f} -> {m['end_mib']:8.1f} MiB "
            f"({m['growth']:+.1%}) {flag}"
        )
    q = result["queues"]
    lines.append(
        f"  queue max first third {q['first_third_max']}, last third {q['last_third_max']}"
        f" {'ok' if q['ok'] else 'GREW'}"
    )
    lat = result["latency"]
    lines.append(
        f"  tick_to_trade p99 first minute {lat['first_minute_p99_us']} us, last minute "
        f"{lat['last_minute_p99_us']} us {'ok' if lat['ok'] else 'DRIFTED'}"
    )
    return "\n".join(lines)
