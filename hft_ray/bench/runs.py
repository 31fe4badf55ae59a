"""Whole pipeline runs for the bench: configs with a chosen load, one local Ray for all of a
section's runs, and the same stages in one process without Ray (the floor).

The load is the packaged default market (3 venues x BTC, ETH, SOL with dislocations to trade)
plus `background` symbols whose books move like the others' but can never be traded (their
minimum notional is out of reach): every update of theirs is checked and scanned, none becomes
an order. 84 background symbols on 3 venues at the default 25 ms tick are 10,080 updates/s.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import itertools
import logging
import os
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hft_ray.config import HftConfig, deep_merge, load_config, parse_config

#: Background symbols per 10,000 updates/s on 3 venues at the default 25 ms tick.
BACKGROUND_PER_10K = 84
_UNREACHABLE_NOTIONAL = 1e15


def default_data() -> dict[str, Any]:
    return load_config().model_dump(mode="json")


#: A market that trades often (twice the default's dislocations, limits that do not stop it),
#: so that a few seconds hold enough trades for percentiles.
BUSY: dict[str, Any] = {
    "sim": {"dislocations_per_min": 60},
    "risk": {
        "max_position": {"BTC": 2, "ETH": 40, "SOL": 800},
        "max_net_position": {"BTC": 1, "ETH": 20, "SOL": 400},
        "max_gross_exposure_quote": 1_000_000,
        "max_daily_loss_quote": None,
        "max_drawdown_quote": None,
        "max_consecutive_leg_failures": 100_000,
    },
}


def bench_config(
    *,
    topology: str,
    background: int = 0,
    tradable: bool = True,
    runs_dir: Path,
    trading_nodes: int | str = "auto",
    warmup_s: float = 0.0,
    extra: dict[str, Any] | None = None,
) -> HftConfig:
    """The default run in `topology`, with `background` untradable symbols beside the
    default three (none of them tradable either when not `tradable`), latency sampled after
    `warmup_s`, metrics and the status server off (they measure nothing here), and its run
    directory under `runs_dir`."""
    data = default_data()
    names = [f"BG{i:04d}/USDT" for i in range(background)]
    markets = {
        n: {"tick": 0.01, "lot": 0.01, "min_amount": 0.01, "min_notional": _UNREACHABLE_NOTIONAL}
        for n in names
    }
    if not tradable:
        markets |= {
            s: {"min_notional": _UNREACHABLE_NOTIONAL} for s in data["symbols"]
        }  # the default markets keep their presets' tick and lot
    override: dict[str, Any] = {
        "run": {"runs_dir": str(runs_dir), "name": "bench", "warmup_s": warmup_s},
        "cluster": {"topology": topology, "trading_nodes": trading_nodes},
        "symbols": data["symbols"] + names,
        "venues": {v: {"markets": markets} for v in data["venues"]},
        "sim": {"initial_prices": {**data["sim"]["initial_prices"], **dict.fromkeys(names, 100.0)}},
        "metrics": {"enabled": False},
        "status": {"enabled": False},
    }
    merged = deep_merge(data, override)
    if extra:
        merged = deep_merge(merged, extra)
    return parse_config(merged)


@contextlib.contextmanager
def local_ray(num_cpus: int | None = None) -> Iterator[None]:
    """One local Ray for a section's runs (each run joins it instead of starting its own);
    shut down only if this started it."""
    import ray

    if ray.is_initialized():
        yield
        return
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    ray.init(
        num_cpus=num_cpus,
        include_dashboard=False,
        namespace=f"hft_ray_bench_{os.getpid()}",
        logging_level=logging.ERROR,
        log_to_driver=False,
        # Between runs Ray would boot idle workers to refill its pool, each importing for
        # seconds while the next run is measured: runs start the workers they need.
        _system_config={"enable_worker_prestart": False, "prestart_worker_first_driver": False},
    )
    try:
        yield
    finally:
        ray.shutdown()


@dataclass
class Snapshot:
    """Every trading node's stats `at_s` seconds into a run (empty if never taken)."""

    at_s: float = 0.0
    nodes: list[dict[str, Any]] = field(default_factory=list)


def settle(idle_share: float = 0.6, timeout_s: float = 20.0) -> float:
    """Wait until the machine is mostly idle (what the last run left, exiting workers, is
    done), at most `timeout_s`; return the seconds waited."""
    started = time.monotonic()
    while time.monotonic() - started < timeout_s:
        if _idle_share(0.5) >= idle_share:
            break
    return round(time.monotonic() - started, 1)


def _idle_share(window_s: float) -> float:
    def sample() -> tuple[int, int]:
        with open("/proc/stat") as f:
            fields = [int(x) for x in f.readline().split()[1:]]
        return fields[3] + fields[4], sum(fields)  # idle + iowait, all

    idle0, total0 = sample()
    time.sleep(window_s)
    idle1, total1 = sample()
    return (idle1 - idle0) / max(1, total1 - total0)


def run_pipeline(
    config: HftConfig, seconds: float, snapshot_after_s: float | None = None
) -> tuple[dict[str, Any], Snapshot]:
    """A whole run on the section's Ray; its report, and (fused) a snapshot of the trading
    nodes' stats `snapshot_after_s` into it, to measure the steady state from there on."""
    import ray

    from hft_ray import names
    from hft_ray.runner import run

    namespace = _namespace()
    config = config.model_copy(
        update={"cluster": config.cluster.model_copy(update={"namespace": namespace})}
    )
    snapshot = Snapshot()
    started: list[float] = []

    def take_snapshot() -> bool:
        now = time.monotonic()
        started[:] = started or [now]  # the run loop's first call: the books start
        if snapshot_after_s is None or snapshot.nodes or now - started[0] < snapshot_after_s:
            return False
        snapshot.at_s = now - started[0]
        for i in itertools.count():
            try:
                node = ray.get_actor(names.node(i), namespace=namespace)
            except ValueError:
                break
            ref: Any = node.stats.remote()
            snapshot.nodes.append(ray.get(ref))
        return False

    settle()
    report = run(config, duration_s=seconds, out=io.StringIO(), stop_when=take_snapshot)
    return report, snapshot


def _namespace() -> str:
    import ray

    return str(ray.get_runtime_context().namespace)


def scratch_dir() -> tempfile.TemporaryDirectory[str]:
    return tempfile.TemporaryDirectory(prefix="hft-ray-bench-")


class LocalAuthority:
    """The risk actor's core in this process: a node's sync is a plain call (the floor)."""

    def __init__(self, core: Any) -> None:
        self._core = core

    async def sync(self, msg: Any) -> Any:
        return self._core.sync(msg, [])


async def _floor(config: HftConfig, seconds: float, run_dir: Path) -> dict[str, Any]:
    """The fused node's stages in this process, no Ray: simulated venues stepped here, the
    gate's lease from a risk core called directly, orders to an in-process account."""
    from hft_ray.clock import LiveClock
    from hft_ray.markets import simulated_markets
    from hft_ray.node.core import TradingNode
    from hft_ray.risk.core import RiskCore
    from hft_ray.store import LocalStore
    from hft_ray.types import Universe
    from hft_ray.venues.sim import InProcessSimVenue, TickGrid, sim_exchange_from_config

    universe = Universe(tuple(config.venues), tuple(config.symbols))
    markets = simulated_markets(config)
    clock = LiveClock()
    risk = RiskCore(config, universe, markets, clock, nodes=("node0",))
    risk.store_ok = True
    risk.restore(None, [])
    epoch = time.time_ns()
    late_ack_s = config.sim.order_timeout_ack_ms / 1000.0

    def account(venue: str) -> InProcessSimVenue:
        ex = sim_exchange_from_config(config, venue)
        grid = TickGrid(config.sim.tick_ms / 1000.0, ex.phase_s, epoch)
        return InProcessSimVenue(
            ex, late_ack_s, catch_up=lambda: ex.advance_to(grid.seq_at(time.time_ns()))
        )

    store = LocalStore(run_dir, "node0")
    node = TradingNode(
        config,
        universe,
        markets,
        "node0",
        list(config.symbols),
        store,
        LocalAuthority(risk),
        clock,
        "hfloor",
        epoch,
        account,
    )
    await node.prepare()
    await node.start()
    await asyncio.sleep(seconds)
    await node.stop(drain_s=5.0)
    await store.close()
    return {"latency_ns": node.latency_samples(), "stats": node.stats()}


def floor_run(config: HftConfig, seconds: float) -> dict[str, Any]:
    """`_floor` in a fresh event loop, its journal in a scratch directory."""
    with scratch_dir() as tmp:
        return asyncio.run(_floor(config, seconds, Path(tmp)))
