"""The driver of a run: start the pipeline, print a status line a second, stop it cleanly, report.

Stopping is ordered so nothing in flight is lost: feeds stop and hand their last batches to
the detectors; each detector waits until risk has taken what it sent; then the driver waits
for every approved trade to be reported back by the executors; only then are the journals
flushed and closed, and the report is built from what they hold.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import signal
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

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
        print(
            f"run {run_id}: {len(pipeline.placement)} actors ready "
            f"({config.cluster.placement_strategy}, {pipeline.cpus_per_bundle} CPU/bundle)",
            file=out,
            flush=True,
        )
        if config.status.enabled:
            status = StatusPublisher(config, run_id, quote, pipeline.executors)
            status.start(out)
        ray.get([f.start.remote() for f in pipeline.feeds])
        t0 = time.monotonic()
        if config.replay is not None and stop_when is None:
            stop_when = _replay_finished(pipeline)
        with _Stopper() as stopper:
            failure = _run_loop(
                config, pipeline, t0, duration_s, quote, out, stopper, stop_when, status
            )
        elapsed = time.monotonic() - t0
        print("stopping: draining feeds, detectors, risk and executors ...", file=out, flush=True)
        report = _stop_and_report(config, pipeline, run_id, run_dir, elapsed)
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


def _replay_finished(p: Pipeline) -> Callable[[], bool]:
    market = p.venues["replay"]

    def finished() -> bool:
        return bool(ray.get(market.progress.remote(), timeout=_STATS_TIMEOUT_S)["done"])

    return finished


def _run_loop(
    config: HftConfig,
    p: Pipeline,
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
        feeds, detectors, risk = _stats(p)
        if status is not None:
            status.push(feeds, detectors, risk)
        failed = [
            f"{v}: {s['error']}" for v, s in zip(config.venues, feeds, strict=True) if s["error"]
        ]
        if failed:
            print(f"feed failed, stopping: {'; '.join(failed)}", file=out, flush=True)
            return "; ".join(failed)
        # A feed restarted by Ray comes back idle: start it again (start is idempotent).
        ray.get([f.start.remote() for f, s in zip(p.feeds, feeds, strict=True) if not s["running"]])
        now = time.monotonic()
        updates = sum(f["updates"] for f in feeds)
        rate = (updates - last_updates) / max(1e-9, now - last_t)
        last_updates, last_t = updates, now
        print(status_line(now - t0, rate, feeds, detectors, risk, quote), file=out, flush=True)
        next_status += interval


def _stats(p: Pipeline) -> tuple[list[dict[str, Any]], list[dict[str, Any]], dict[str, Any]]:
    feeds = ray.get([f.stats.remote() for f in p.feeds], timeout=_STATS_TIMEOUT_S)
    detectors = ray.get([d.stats.remote() for d in p.detectors], timeout=_STATS_TIMEOUT_S)
    risk = ray.get(p.risk.stats.remote(), timeout=_STATS_TIMEOUT_S)
    return feeds, detectors, risk


def _stop_and_report(
    config: HftConfig, p: Pipeline, run_id: str, run_dir: Path, elapsed: float
) -> dict[str, Any]:
    timeout = config.cluster.ready_timeout_s
    ray.get([f.stop.remote() for f in p.feeds], timeout=timeout)
    ray.get([d.barrier.remote() for d in p.detectors], timeout=timeout)
    drain_deadline = time.monotonic() + 4 * config.execution.order_timeout_ms / 1000.0 + 10.0
    in_flight = ray.get(p.risk.stats.remote(), timeout=timeout)["in_flight"]
    while in_flight and time.monotonic() < drain_deadline:
        time.sleep(0.05)
        in_flight = ray.get(p.risk.stats.remote(), timeout=timeout)["in_flight"]
    replay = (
        ray.get(p.venues["replay"].progress.remote(), timeout=timeout)
        if config.replay is not None
        else None
    )
    ray.get([v.stop.remote() for v in p.venues.values()], timeout=timeout)
    venue_balances = _venue_balances(config, p, timeout)
    feeds, detectors, _ = _stats(p)
    ray.get([e.close.remote() for e in p.executors], timeout=timeout)
    risk_state = ray.get(p.risk.close.remote(), timeout=timeout)
    latency: dict[str, list[int]] = {}
    for actor in [*p.detectors, p.risk, *p.executors]:
        for name, values in ray.get(actor.latency_samples.remote(), timeout=timeout).items():
            latency.setdefault(name, []).extend(values)
    journal = asyncio.run(_read_journal(config, run_id, run_dir))
    report = build_report(
        config=config,
        run_id=run_id,
        run_dir=run_dir,
        duration_s=elapsed,
        feed_stats=feeds,
        detector_stats=detectors,
        risk_state=risk_state,
        journal=journal,
        latency_ns=latency,
        placement=p.placement,
        cpus_per_bundle=p.cpus_per_bundle,
    )
    # Trades still unreported when the drain gave up: their legs may be live on a venue.
    report["in_flight_at_stop"] = in_flight
    # The simulated venues' own balances are the independent truth the journal must agree
    # with; a live venue's balances move with everything else on the account.
    start = {v: dict(c.balances) for v, c in config.venues.items()}
    moved = {
        v: {
            a: b - start[v].get(a, 0.0) for a, b in bal.items() if abs(b - start[v].get(a, 0.0)) > 0
        }
        for v, bal in venue_balances.items()
    }
    report["venue_positions"] = moved
    report["positions_match_venues"] = positions_equal(
        {v: a for v, a in report["positions"].items() if v in moved}, moved
    )
    if replay is not None and config.replay is not None:
        report["replay"] = {
            "files": [str(f) for f in config.replay.files],
            "speed": None if config.replay.fast else config.replay.speed,
            "fast": config.replay.fast,
            **{k: v for k, v in replay.items() if k != "done"},
        }
    return report


def _venue_balances(config: HftConfig, p: Pipeline, timeout: float) -> dict[str, dict[str, float]]:
    """Each simulated or replayed venue's balances now (live venues are not asked)."""
    if config.replay is not None:
        market = p.venues["replay"]
        refs = {v: market.balances.remote(v) for v in config.venues}
    else:
        refs = {v: h.balances.remote() for v, h in p.venues.items()}
    return {v: ray.get(ref, timeout=timeout) for v, ref in refs.items()}


async def _read_journal(config: HftConfig, run_id: str, run_dir: Path) -> list[dict[str, Any]]:
    store = open_store(config.store, run_id, run_dir, "driver")
    try:
        return await store.read_journal()
    finally:
        await store.close()
