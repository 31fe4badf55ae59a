"""The driver of a run: start the pipeline, print a status line a second, stop it cleanly, report.

Either topology is driven through a `View` of it. Stopping is ordered so nothing in flight is
lost: books stop; what was found reaches risk (distributed: each detector waits until risk has
taken what it sent; fused: each node lets its trades finish and syncs until risk booked every
report); the driver waits for every approved trade to be reported back; only then are the
journals flushed and closed, and the report is built from what they hold.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import signal
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol, TextIO

import ray

from hft_ray.cluster import Pipeline, build_pipeline, connect, teardown
from hft_ray.config import HftConfig
from hft_ray.ledger import positions_equal
from hft_ray.markets import resolve_markets
from hft_ray.report import build_report, human_summary, write_report
from hft_ray.status import StatusPublisher
from hft_ray.store import open_store
from hft_ray.types import Universe

_STATS_TIMEOUT_S = 10.0


def new_run_id(name: str) -> str:
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    return f"{name}-{stamp}-{secrets.token_hex(2)}"


def _opportunity_prefix() -> str:
    """Short, alphanumeric, random per run: client order ids stay unique across runs."""
    alphabet = "abcdefghijklmnopqrstuvwxyz0123456789"
    return "h" + "".join(secrets.choice(alphabet) for _ in range(6))


class _Stopper:
    """Turns SIGINT/SIGTERM into a flag the run loop checks, so Ctrl-C stops cleanly."""

    def __init__(self) -> None:
        self.requested = False
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> _Stopper:
        for sig in (signal.SIGINT, signal.SIGTERM):
            # Outside the main thread signals cannot be caught: the run stops by duration only.
            with contextlib.suppress(ValueError):
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum: int, frame: object) -> None:
        self.requested = True

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


def status_line(
    elapsed: float,
    rate: float,
    feeds: list[dict[str, Any]],
    detectors: list[dict[str, Any]],
    risk: dict[str, Any],
    quote: str,
) -> str:
    rejected = sum(risk["rejected"].values())
    queue = sum(f["queue_depth"] for f in feeds)
    opps = sum(d["opportunities"] for d in detectors)
    return (
        f"[{elapsed:6.1f}s] books {rate:7.1f}/s | opps {opps:5d}"
        f" | approved {risk['approved']:4d} rejected {rejected:5d} | trades {risk['trades']:4d}"
        f" legs_failed {risk['legs_failed']:3d} | pnl {risk['realized_pnl_quote']:+10.4f} {quote}"
        f" | risk {risk['state']} in_flight {risk['in_flight']} | queue {queue}"
    )


def run(
    config: HftConfig,
    *,
    duration_s: float | None,
    address: str | None = None,
    report_path: Path | None = None,
    out: TextIO = sys.stdout,
    stop_when: Callable[[], bool] | None = None,
) -> dict[str, Any]:
    """Run the pipeline for `duration_s` seconds (None: until Ctrl-C); return the report."""
    run_id = new_run_id(config.run.name)
    run_dir = Path(config.run.runs_dir) / run_id
    run_dir.mkdir(parents=True, exist_ok=True)
    report_path = report_path or run_dir / "report.json"
    universe = Universe(tuple(config.venues), tuple(config.symbols))
    quote = "/".join(sorted({s.split("/")[1] for s in config.symbols}))
    markets = resolve_markets(config)
    started_ray = connect(config, address)
    pipeline: Pipeline | None = None
    status: StatusPublisher | None = None
    try:
        pipeline = build_pipeline(
            config, universe, markets, run_id, str(run_dir.resolve()), _opportunity_prefix()
        )
        view = view_of(config, pipeline)
        print(
            f"run {run_id}: {pipeline.topology} topology, {len(pipeline.placement)} actors ready "
            f"({config.cluster.placement_strategy}, {pipeline.cpus_per_bundle} CPU/bundle)",
            file=out,
            flush=True,
        )
        if config.status.enabled:
            status = StatusPublisher(config, run_id, quote, pipeline.executors)
            status.start(out)
        ray.get([a.start.remote() for a in pipeline.traders()])
        t0 = time.monotonic()
        if config.replay is not None and stop_when is None:
            stop_when = view.replay_finished
        with _Stopper() as stopper:
            failure = _run_loop(
                config, view, t0, duration_s, quote, out, stopper, stop_when, status
            )
        elapsed = time.monotonic() - t0
        print("stopping: draining feeds, detectors, risk and executors ...", file=out, flush=True)
        report = _report(config, view, run_id, run_dir, elapsed, view.stop())
        report["failure"] = failure
        report["status_url"] = status.status_url if status is not None else None
        report["status_error"] = status.error if status is not None else ""
        write_report(report, report_path)
        print(human_summary(report), file=out)
        print(f"report: {report_path}", file=out, flush=True)
        return report
    finally:
        if status is not None:
            status.close()
        if pipeline is not None:
            teardown(pipeline)
        if started_ray:
            ray.shutdown()


@dataclass
class Stats:
    """What the driver reads of a running pipeline each status interval."""

    feeds: list[dict[str, Any]]  # per venue, in config order
    detectors: list[dict[str, Any]]
    risk: dict[str, Any]
    executors: list[dict[str, Any]] | None  # None: the status publisher asks them itself


@dataclass
class Stopped:
    """Everything a stopped pipeline hands the report."""

    feeds: list[dict[str, Any]]
    detectors: list[dict[str, Any]]
    risk_state: dict[str, Any]
    latency_ns: dict[str, list[int]]
    venue_balances: dict[str, dict[str, float]]
    in_flight: int
    replay: dict[str, Any] | None


class View(Protocol):
    """A running pipeline, as the driver drives it, whatever its topology."""

    pipeline: Pipeline

    def stats(self) -> Stats: ...

    def restart_idle(self, stats: Stats) -> None: ...

    def replay_finished(self) -> bool: ...

    def stop(self) -> Stopped: ...


def view_of(config: HftConfig, pipeline: Pipeline) -> View:
    if pipeline.topology == "fused":
        return _FusedView(config, pipeline)
    return _DistributedView(config, pipeline)


def _run_loop(
    config: HftConfig,
    view: View,
    t0: float,
    duration_s: float | None,
    quote: str,
    out: TextIO,
    stopper: _Stopper,
    stop_when: Callable[[], bool] | None,
    status: StatusPublisher | None,
) -> str:
    """Run until the duration ends, Ctrl-C, `stop_when`, or a feed fails; return why a feed
    failed, or ''."""
    interval = config.run.status_interval_s
    last_updates, last_t = 0, t0
    next_status = t0 + interval
    while True:
        now = time.monotonic()
        if stopper.requested or (duration_s is not None and now - t0 >= duration_s):
            return ""
        if stop_when is not None and stop_when():
            return ""
        time.sleep(min(0.2, max(0.0, min(next_status, t0 + (duration_s or 1e18)) - now)))
        if time.monotonic() < next_status:
            continue
        stats = view.stats()
        if status is not None:
            status.push(stats.feeds, stats.detectors, stats.risk, stats.executors)
        failed = [
            f"{v}: {s['error']}"
            for v, s in zip(config.venues, stats.feeds, strict=True)
            if s["error"]
        ]
        if failed:
            print(f"feed failed, stopping: {'; '.join(failed)}", file=out, flush=True)
            return "; ".join(failed)
        view.restart_idle(stats)
        now = time.monotonic()
        updates = sum(f["updates"] for f in stats.feeds)
        rate = max(0, updates - last_updates) / max(1e-9, now - last_t)
        last_updates, last_t = updates, now
        print(
            status_line(now - t0, rate, stats.feeds, stats.detectors, stats.risk, quote),
            file=out,
            flush=True,
        )
        next_status += interval


class _DistributedView:
    """Feeds, detectors, risk and executors as actors of their own."""

    def __init__(self, config: HftConfig, pipeline: Pipeline) -> None:
        self._config = config
        self.pipeline = pipeline

    def stats(self) -> Stats:
        p = self.pipeline
        feeds = ray.get([f.stats.remote() for f in p.feeds], timeout=_STATS_TIMEOUT_S)
        detectors = ray.get([d.stats.remote() for d in p.detectors], timeout=_STATS_TIMEOUT_S)
        risk = ray.get(p.risk.stats.remote(), timeout=_STATS_TIMEOUT_S)
        return Stats(feeds, detectors, risk, None)

    def restart_idle(self, stats: Stats) -> None:
        """A feed restarted by Ray comes back idle: start it again (start is idempotent)."""
        idle = [
            f for f, s in zip(self.pipeline.feeds, stats.feeds, strict=True) if not s["running"]
        ]
        ray.get([f.start.remote() for f in idle])

    def replay_finished(self) -> bool:
        market = self.pipeline.venues["replay"]
        return bool(ray.get(market.progress.remote(), timeout=_STATS_TIMEOUT_S)["done"])

    def stop(self) -> Stopped:
        """Feeds stop and hand their last batches to the detectors; each detector waits until
        risk has taken what it sent; the driver waits until every approved trade is reported
        back; only then are the journals flushed and closed."""
        config, p = self._config, self.pipeline
        timeout = config.cluster.ready_timeout_s
        ray.get([f.stop.remote() for f in p.feeds], timeout=timeout)
        ray.get([d.barrier.remote() for d in p.detectors], timeout=timeout)
        in_flight = _drain(config, p)
        replay = (
            ray.get(p.venues["replay"].progress.remote(), timeout=timeout)
            if config.replay is not None
            else None
        )
        ray.get([v.stop.remote() for v in p.venues.values()], timeout=timeout)
        if config.replay is not None:
            market = p.venues["replay"]
            refs = {v: market.balances.remote(v) for v in config.venues}
        else:
            refs = {v: h.balances.remote() for v, h in p.venues.items()}
        balances = {v: ray.get(ref, timeout=timeout) for v, ref in refs.items()}
        stats = self.stats()
        ray.get([e.close.remote() for e in p.executors], timeout=timeout)
        risk_state = ray.get(p.risk.close.remote(), timeout=timeout)
        latency = _latency([*p.detectors, p.risk, *p.executors], timeout)
        return Stopped(
            stats.feeds, stats.detectors, risk_state, latency, balances, in_flight, replay
        )


class _FusedView:
    """Trading nodes (each its venues' feeds, a detector, a risk gate and an executor) and
    the risk actor that leases them their room."""

    def __init__(self, config: HftConfig, pipeline: Pipeline) -> None:
        self._config = config
        self.pipeline = pipeline

    def _node_stats(self) -> list[dict[str, Any]]:
        refs = [n.stats.remote() for n in self.pipeline.nodes]
        return list(ray.get(refs, timeout=_STATS_TIMEOUT_S))

    def stats(self) -> Stats:
        nodes = self._node_stats()
        risk = ray.get(self.pipeline.risk.stats.remote(), timeout=_STATS_TIMEOUT_S)
        return Stats(
            [merge_venue_stats([n["venues"][v] for n in nodes]) for v in self._config.venues],
            [n["detector"] for n in nodes],
            risk,
            [n["executor"] for n in nodes],
        )

    def restart_idle(self, stats: Stats) -> None:
        """A node restarted by Ray comes back idle: start it again (start is idempotent)."""
        nodes = self._node_stats()
        idle = [
            actor
            for actor, n in zip(self.pipeline.nodes, nodes, strict=True)
            if not all(v["running"] for v in n["venues"].values())
        ]
        ray.get([a.start.remote() for a in idle])

    def replay_finished(self) -> bool:
        return all(n["replay"]["done"] for n in self._node_stats())

    def stop(self) -> Stopped:
        """Each node stops reading books, lets its trades finish and syncs until risk booked
        every report; then the journals are flushed and closed."""
        config, p = self._config, self.pipeline
        timeout = config.cluster.ready_timeout_s + 4 * config.execution.order_timeout_ms / 1000
        before = self._node_stats()
        ray.get([n.stop.remote() for n in p.nodes], timeout=timeout)
        in_flight = _drain(config, p)
        if config.replay is None:  # the simulated venues' actors hold the accounts
            refs = {v: h.balances.remote() for v, h in p.venues.items()}
            balances = {v: ray.get(ref, timeout=timeout) for v, ref in refs.items()}
        else:
            balances = self._replayed_balances(timeout)
        stats = self.stats()
        risk_state = ray.get(p.risk.close.remote(), timeout=timeout)
        latency = _latency([*p.nodes, p.risk], timeout)
        replay = _merge_replay([n["replay"] for n in before]) if config.replay else None
        return Stopped(
            stats.feeds, stats.detectors, risk_state, latency, balances, in_flight, replay
        )

    def _replayed_balances(self, timeout: float) -> dict[str, dict[str, float]]:
        """Each node replays its own sub-account of every venue, holding the venue's
        configured balances: the venue's truth is the sum of the sub-accounts' changes."""
        start = {v: dict(c.balances) for v, c in self._config.venues.items()}
        balances: dict[str, dict[str, float]] = {}
        for per_node in ray.get(
            [n.balances.remote() for n in self.pipeline.nodes], timeout=timeout
        ):
            for venue, assets in per_node.items():
                mine = balances.setdefault(venue, dict(start.get(venue, {})))
                for asset, amount in assets.items():
                    mine[asset] = mine.get(asset, 0.0) + amount - start[venue].get(asset, 0.0)
        return balances


def merge_venue_stats(parts: list[dict[str, Any]]) -> dict[str, Any]:
    """One venue's feed figures over the trading nodes that each read its books of their
    own symbols."""
    invalid: Counter[str] = Counter()
    for part in parts:
        invalid.update(part["invalid"])
    ages = [p["last_book_age_ms"] for p in parts if p["last_book_age_ms"] is not None]
    return {
        "updates": sum(p["updates"] for p in parts),
        "invalid": dict(invalid),
        "conflated": sum(p["conflated"] for p in parts),
        "resyncs": sum(p["resyncs"] for p in parts),
        "queue_depth": sum(p["queue_depth"] for p in parts),
        "backpressure_waits": sum(p["backpressure_waits"] for p in parts),
        "running": all(p["running"] for p in parts),
        "error": next((p["error"] for p in parts if p["error"]), ""),
        "last_book_age_ms": min(ages) if ages else None,
    }


def _merge_replay(parts: list[dict[str, Any]]) -> dict[str, Any]:
    """Each node reads every line of the files and keeps its own symbols' books: the lines
    released add up, and the lines no node kept are of symbols outside the run."""
    first = parts[0]
    read = int(first["lines"]) + int(first["other_symbols"])
    released = sum(int(p["lines"]) for p in parts)
    return {**first, "lines": released, "other_symbols": read - released}


def _drain(config: HftConfig, p: Pipeline) -> int:
    """Wait until risk has every approved trade reported back (bounded); return how many are
    still unreported, whose legs may be live on a venue."""
    timeout = config.cluster.ready_timeout_s
    deadline = time.monotonic() + 4 * config.execution.order_timeout_ms / 1000.0 + 10.0
    in_flight = int(ray.get(p.risk.stats.remote(), timeout=timeout)["in_flight"])
    while in_flight and time.monotonic() < deadline:
        time.sleep(0.05)
        in_flight = int(ray.get(p.risk.stats.remote(), timeout=timeout)["in_flight"])
    return in_flight


def _latency(actors: list[Any], timeout: float) -> dict[str, list[int]]:
    latency: dict[str, list[int]] = {}
    for actor in actors:
        for name, values in ray.get(actor.latency_samples.remote(), timeout=timeout).items():
            latency.setdefault(name, []).extend(values)
    return latency


def _report(
    config: HftConfig, view: View, run_id: str, run_dir: Path, elapsed: float, s: Stopped
) -> dict[str, Any]:
    p = view.pipeline
    journal = asyncio.run(_read_journal(config, run_id, run_dir))
    report = build_report(
        config=config,
        run_id=run_id,
        run_dir=run_dir,
        duration_s=elapsed,
        feed_stats=s.feeds,
        detector_stats=s.detectors,
        risk_state=s.risk_state,
        journal=journal,
        latency_ns=s.latency_ns,
        placement=p.placement,
        cpus_per_bundle=p.cpus_per_bundle,
    )
    report["topology"] = p.topology
    if p.topology == "fused":
        report["trading_nodes"] = {n: syms for n, syms in enumerate(p.node_symbols)}
    # Trades still unreported when the drain gave up: their legs may be live on a venue.
    report["in_flight_at_stop"] = s.in_flight
    # The simulated venues' own balances are the independent truth the journal must agree
    # with; a live venue's balances move with everything else on the account.
    start = {v: dict(c.balances) for v, c in config.venues.items()}
    moved = {
        v: {
            a: b - start[v].get(a, 0.0) for a, b in bal.items() if abs(b - start[v].get(a, 0.0)) > 0
        }
        for v, bal in s.venue_balances.items()
    }
    report["venue_positions"] = moved
    report["positions_match_venues"] = positions_equal(
        {v: a for v, a in report["positions"].items() if v in moved}, moved
    )
    if s.replay is not None and config.replay is not None:
        report["replay"] = {
            "files": [str(f) for f in config.replay.files],
            "speed": None if config.replay.fast else config.replay.speed,
            "fast": config.replay.fast,
            **{k: v for k, v in s.replay.items() if k != "done"},
        }
    return report


async def _read_journal(config: HftConfig, run_id: str, run_dir: Path) -> list[dict[str, Any]]:
    store = open_store(config.store, run_id, run_dir, "driver")
    try:
        return await store.read_journal()
    finally:
        await store.close()
