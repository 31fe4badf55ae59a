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
import os
import secrets
import shutil
import signal
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol, TextIO

import ray

from hft_ray import credentials, run_registry
from hft_ray.cluster import Pipeline, build_pipeline, connect, teardown
from hft_ray.config import HftConfig, masked_config_text
from hft_ray.journal import Execution, Intent, JournalRecord, read_records, skipped_summary
from hft_ray.ledger import positions_equal
from hft_ray.markets import resolve_markets
from hft_ray.report import build_report, human_summary, journal_summary, write_report
from hft_ray.status import StatusPublisher
from hft_ray.store import StoreUnavailable, open_store
from hft_ray.store import check as check_store
from hft_ray.types import Universe

_STATS_TIMEOUT_S = 10.0
#: Seconds the driver waits for an actor's stats before it counts the actor down: health
#: turns within about a status interval plus this of an actor stopping to answer.
POLL_TIMEOUT_S = 0.5
#: Seconds each call of the stop sequence waits when an actor it needs is down at the stop
#: (the call's actor, or risk, which every drain waits on).
_DOWN_CALL_TIMEOUT_S = 10.0


def new_run_id(name: str) -> str:
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    return f"{name}-{stamp}-{secrets.token_hex(2)}"


def _opportunity_prefix() -> str:
    """Short, alphanumeric, random per run: client order ids stay unique across runs."""
    alphabet = "abcdefghijklmnopqrstuvwxyz0123456789"
    return "h" + "".join(secrets.choice(alphabet) for _ in range(6))


class _Stopper:
    """Turns SIGINT/SIGTERM into a flag the run loop checks, so Ctrl-C stops cleanly; once
    the stop has begun, another Ctrl-C is answered, not obeyed: abandoning the drain would
    leave trades in flight unreported."""

    def __init__(self) -> None:
        self.requested = False
        self.stopping = False
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> _Stopper:
        for sig in (signal.SIGINT, signal.SIGTERM):
            # Outside the main thread signals cannot be caught: the run stops by duration only.
            with contextlib.suppress(ValueError):
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum: int, frame: object) -> None:
        if self.stopping:
            print(
                "already stopping: waiting for trades in flight, then the report",
                file=sys.stderr,
                flush=True,
            )
        self.requested = True

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


def status_line(
    elapsed: float,
    rate: float,
    feeds: list[dict[str, Any]],
    detectors: list[dict[str, Any]],
    risk: dict[str, Any] | None,
    quote: str,
    down: dict[str, float] | None = None,
) -> str:
    """One status line; `risk` None when risk did not answer, `down` the actors that did not
    answer and for how long (s)."""
    queue = sum(f["queue_depth"] for f in feeds)
    opps = sum(d["opportunities"] for d in detectors)
    line = f"[{elapsed:6.1f}s] books {rate:7.1f}/s | opps {opps:5d}"
    if risk is None:
        line += " | risk NOT ANSWERING, approving nothing"
    else:
        rejected = sum(risk["rejected"].values())
        line += (
            f" | approved {risk['approved']:4d} rejected {rejected:5d} | trades {risk['trades']:4d}"
            f" legs_failed {risk['legs_failed']:3d} | pnl {risk['realized_pnl_quote']:+10.4f}"
            f" {quote} | risk {risk['state']} in_flight {risk['in_flight']}"
        )
    line += f" | queue {queue}"
    if down:
        line += " | DOWN " + ", ".join(f"{a} {s:.1f}s" for a, s in sorted(down.items()))
    return line


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
    with credentials.staged(config, run_id) as staged:
        return _run(staged, run_id, duration_s, address, report_path, out, stop_when)


def _run(
    config: HftConfig,
    run_id: str,
    duration_s: float | None,
    address: str | None,
    report_path: Path | None,
    out: TextIO,
    stop_when: Callable[[], bool] | None,
) -> dict[str, Any]:
    run_dir = Path(config.run.runs_dir) / run_id
    report_path = report_path or run_dir / "report.json"
    universe = Universe(tuple(config.venues), tuple(config.symbols))
    quote = "/".join(sorted({s.split("/")[1] for s in config.symbols}))
    markets = resolve_markets(config)
    started_ray = False
    pipeline: Pipeline | None = None
    status: StatusPublisher | None = None
    started = False
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        asyncio.run(_check_store(config, run_id, run_dir))
        started_ray = connect(config, address)
        config_text = masked_config_text(config)
        (run_dir / "config.yaml").write_text(config_text)
        print(f"run {run_id}: config (secrets masked)\n{config_text.rstrip()}", file=out)
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
        _record_address(config, run_id, run_dir, started_ray)
        ray.get([a.start.remote() for a in pipeline.traders()])
        started = True
        t0 = time.monotonic()
        if config.replay is not None and stop_when is None:
            stop_when = view.replay_finished
        with _Stopper() as stopper:
            failure = _run_loop(
                config, view, t0, duration_s, quote, out, stopper, stop_when, status
            )
            elapsed = time.monotonic() - t0
            stopper.stopping = True
            print(
                "stopping: draining feeds, detectors, risk and executors ...", file=out, flush=True
            )
            stopped = view.stop()
        report = _report(config, view, run_id, run_dir, elapsed, stopped)
        report["failure"] = failure
        report["status_url"] = status.status_url if status is not None else None
        report["status_error"] = status.error if status is not None else ""
        write_report(report, report_path)
        print(human_summary(report), file=out)
        print(f"report: {report_path}", file=out, flush=True)
        return report
    finally:
        run_registry.forget(run_id)
        if status is not None:
            status.close()
        if pipeline is not None:
            teardown(pipeline)
        if started_ray:
            ray.shutdown()
        if not started:
            _discard_unstarted(run_dir)


async def _check_store(config: HftConfig, run_id: str, run_dir: Path) -> None:
    """Before anything starts: the store answers (a refused password is one line within
    seconds, not a minute of retries) and holds this run's epoch, by which every writer
    later notices a store that lost its data."""
    store = open_store(config.store, run_id, run_dir, "driver")
    try:
        await check_store(store)
    finally:
        with contextlib.suppress(StoreUnavailable):
            await store.close()


def _record_address(config: HftConfig, run_id: str, run_dir: Path, started_ray: bool) -> None:
    """Record where control commands reach this run (`run_registry`); a Ray instance this
    driver started is recorded with its processes, which the next run ends should this
    driver die without stopping them."""
    node: Any = ray._private.worker._global_node  # this driver's node, started or joined
    procs: tuple[tuple[int, int], ...] = ()
    if started_ray:
        found = ((p.pid, run_registry.start_time(p.pid)) for _, p in node.live_processes())
        procs = tuple((pid, started) for pid, started in found if started is not None)
    run_registry.record(
        run_registry.RunAddress(
            run_id=run_id,
            run_dir=str(run_dir.resolve()),
            address=ray.get_runtime_context().gcs_address,
            namespace=config.cluster.namespace,
            driver_pid=os.getpid(),
            driver_host=os.uname().nodename,
            started_ray=started_ray,
            started_unix=time.time(),
            session_dir=node.get_session_dir_path(),
            ray_procs=procs,
        )
    )


def _discard_unstarted(run_dir: Path) -> None:
    """A run that failed before it started trading leaves no directory behind, unless
    something was journaled in it (then it is evidence, and stays)."""
    journal = run_dir / "journal"
    if journal.exists() and any(f.stat().st_size for f in journal.iterdir()):
        return
    shutil.rmtree(run_dir, ignore_errors=True)


@dataclass
class Stats:
    """What the driver reads of a running pipeline each status interval. Counters are the
    run's totals across restarts; an actor that did not answer shows what it last said."""

    feeds: list[dict[str, Any]]  # per venue, in config order
    detectors: list[dict[str, Any]]
    risk: dict[str, Any] | None  # None: risk did not answer
    executors: list[dict[str, Any]] | None  # None: the status publisher asks them itself
    down: dict[str, float] = field(default_factory=dict)  # actor -> seconds not answering


@dataclass
class Stopped:
    """Everything a stopped pipeline hands the report."""

    feeds: list[dict[str, Any]]
    detectors: list[dict[str, Any]]
    risk_state: dict[str, Any] | None  # None: risk did not answer at the end
    latency_ns: dict[str, list[int]]
    venue_balances: dict[str, dict[str, float]]
    in_flight: int | None  # None: risk did not answer
    replay: dict[str, Any] | None
    errors: list[str] = field(default_factory=list)  # calls of the stop sequence that failed


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
    """Run until the duration ends, Ctrl-C, `stop_when`, a feed fails or an actor stays down
    longer than the recovery budget; return why it stopped early, or ''."""
    interval = config.run.status_interval_s
    last_updates, last_t = 0, t0
    next_status = t0 + interval
    was_down: set[str] = set()
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
            status.push(stats.feeds, stats.detectors, stats.risk, stats.executors, stats.down)
        failed = [
            f"{v}: {s['error']}"
            for v, s in zip(config.venues, stats.feeds, strict=True)
            if s["error"]
        ]
        if failed:
            print(f"feed failed, stopping: {'; '.join(failed)}", file=out, flush=True)
            return "; ".join(failed)
        for actor in sorted(set(stats.down) - was_down):
            print(
                f"{actor}: not answering; the run goes on and waits up to "
                f"{config.run.recovery_budget_s:g} s for it (risk fails closed meanwhile)",
                file=out,
                flush=True,
            )
        for actor in sorted(was_down - set(stats.down)):
            print(f"{actor}: answering again", file=out, flush=True)
        was_down = set(stats.down)
        lost = {a: s for a, s in stats.down.items() if s > config.run.recovery_budget_s}
        if lost:
            why = ", ".join(f"{a} ({s:.0f} s)" for a, s in sorted(lost.items()))
            budget = config.run.recovery_budget_s
            failure = f"not answering past the recovery budget of {budget:g} s: {why}"
            print(f"stopping: {failure}", file=out, flush=True)
            return failure
        view.restart_idle(stats)
        now = time.monotonic()
        updates = sum(f["updates"] for f in stats.feeds)
        rate = max(0, updates - last_updates) / max(1e-9, now - last_t)
        last_updates, last_t = updates, now
        print(
            status_line(
                now - t0, rate, stats.feeds, stats.detectors, stats.risk, quote, stats.down
            ),
            file=out,
            flush=True,
        )
        next_status += interval


class Poller:
    """Asks actors for their stats, at most one call outstanding per actor, and waits at
    most `timeout_s` for the answers. An actor that did not answer (stopped, stuck, dead and
    restarting) is down from the first poll it missed until it answers again; the driver
    goes on without it instead of failing on a timeout."""

    def __init__(self, timeout_s: float) -> None:
        self._timeout_s = timeout_s
        self._pending: dict[str, Any] = {}
        self._down_since: dict[str, float] = {}

    def poll(self, actors: dict[str, Any]) -> dict[str, dict[str, Any] | None]:
        """Each actor's stats, None for one that did not answer in time."""
        for key, actor in actors.items():
            if key not in self._pending:
                self._pending[key] = actor.stats.remote()
        refs = [self._pending[k] for k in actors]
        ready = set(ray.wait(refs, num_returns=len(refs), timeout=self._timeout_s)[0])
        now = time.monotonic()
        out: dict[str, dict[str, Any] | None] = {}
        for key in actors:
            answer = None
            if self._pending[key] in ready:
                ref = self._pending.pop(key)
                with contextlib.suppress(ray.exceptions.RayError):
                    answer = ray.get(ref)
            if answer is None:
                self._down_since.setdefault(key, now)
            else:
                self._down_since.pop(key, None)
            out[key] = answer
        return out

    def down(self) -> dict[str, float]:
        """The actors down now and for how many seconds."""
        now = time.monotonic()
        return {k: round(now - t, 3) for k, t in self._down_since.items()}


class RunningTotals:
    """An actor's counters as the run's totals: a restarted actor counts from 0 again, so
    what its earlier incarnations counted is kept as an offset (a counter that went back
    was reset). `last` keeps each actor's latest totals, shown while it does not answer."""

    def __init__(self, counters: tuple[str, ...]) -> None:
        self._counters = counters
        self._raw: dict[str, dict[str, Any]] = {}
        self._offset: dict[str, Counter[str]] = {}
        self.last: dict[str, dict[str, Any]] = {}

    def __call__(self, key: str, stats: dict[str, Any]) -> dict[str, Any]:
        raw = self._raw.get(key, {})
        offset = self._offset.setdefault(key, Counter())
        out = dict(stats)
        for name in self._counters:
            if name not in stats:
                continue
            value = stats[name]
            if isinstance(value, dict):
                before = raw.get(name, {})
                for sub, n in value.items():
                    if n < before.get(sub, 0):
                        offset[f"{name}.{sub}"] += before[sub]
                subs = {*value, *(k.split(".", 1)[1] for k in offset if k.startswith(name + "."))}
                out[name] = {s: value.get(s, 0) + offset[f"{name}.{s}"] for s in subs}
            else:
                if value < raw.get(name, 0):
                    offset[name] += raw[name]
                out[name] = value + offset[name]
        self._raw[key] = stats
        self.last[key] = out
        return out


#: Counters of a feed's (or a node's venue's) and a detector's stats.
_FEED_COUNTERS = ("updates", "invalid", "conflated", "resyncs", "backpressure_waits")
_DETECTOR_COUNTERS = ("updates", "rows_scanned", "opportunities", "suppressed")


def _silent_feed(last: dict[str, Any] | None) -> dict[str, Any]:
    """What a feed that did not answer shows: its last totals, not running."""
    base: dict[str, Any] = {
        "updates": 0,
        "invalid": {},
        "conflated": 0,
        "resyncs": 0,
        "queue_depth": 0,
        "backpressure_waits": 0,
        "last_book_age_ms": None,
    }
    return {**base, **(last or {}), "running": False, "error": "", "answering": False}


def _silent_detector(last: dict[str, Any] | None) -> dict[str, Any]:
    base = {"updates": 0, "rows_scanned": 0, "opportunities": 0, "suppressed": 0}
    return {**base, **(last or {})}


class _Calls:
    """The stop sequence's calls: bounded, each failure noted instead of raised, and short
    for an actor that was down at the last poll, or for any while risk was."""

    def __init__(self, timeout_s: float, down: set[str]) -> None:
        self.timeout_s = timeout_s
        self.down = down
        self.errors: list[str] = []

    def get(self, what: str, refs: Any, actors: tuple[str, ...] = (), default: Any = None) -> Any:
        short = "risk" in self.down or self.down & set(actors)
        timeout = min(self.timeout_s, _DOWN_CALL_TIMEOUT_S) if short else self.timeout_s
        try:
            return ray.get(refs, timeout=timeout)
        except ray.exceptions.RayError as err:
            self.errors.append(f"{what}: {type(err).__name__}")
            return default


class _DistributedView:
    """Feeds, detectors, risk and executors as actors of their own."""

    def __init__(self, config: HftConfig, pipeline: Pipeline) -> None:
        self._config = config
        self.pipeline = pipeline
        self._poller = Poller(POLL_TIMEOUT_S)
        self._feed_totals = RunningTotals(_FEED_COUNTERS)
        self._detector_totals = RunningTotals(_DETECTOR_COUNTERS)
        self._starting: dict[int, Any] = {}

    def _actors(self) -> dict[str, Any]:
        p = self.pipeline
        actors = {f"feed {v}": f for v, f in zip(self._config.venues, p.feeds, strict=True)}
        actors.update({f"detector {i}": d for i, d in enumerate(p.detectors)})
        actors["risk"] = p.risk
        return actors

    def stats(self) -> Stats:
        answers = self._poller.poll(self._actors())
        feeds = []
        for venue in self._config.venues:
            key = f"feed {venue}"
            got = answers[key]
            feeds.append(
                self._feed_totals(key, got)
                if got is not None
                else _silent_feed(self._feed_totals.last.get(key))
            )
        detectors = []
        for i in range(len(self.pipeline.detectors)):
            key = f"detector {i}"
            got = answers[key]
            detectors.append(
                self._detector_totals(key, got)
                if got is not None
                else _silent_detector(self._detector_totals.last.get(key))
            )
        return Stats(feeds, detectors, answers["risk"], None, self._poller.down())

    def restart_idle(self, stats: Stats) -> None:
        """A feed restarted by Ray comes back idle: start it again (start is idempotent),
        without waiting on it."""
        for i, (feed, s) in enumerate(zip(self.pipeline.feeds, stats.feeds, strict=True)):
            pending = self._starting.get(i)
            if pending is not None and not ray.wait([pending], timeout=0)[0]:
                continue
            self._starting.pop(i, None)
            if not s["running"] and s.get("answering", True):
                self._starting[i] = feed.start.remote()

    def replay_finished(self) -> bool:
        market = self.pipeline.venues["replay"]
        try:
            return bool(ray.get(market.progress.remote(), timeout=_STATS_TIMEOUT_S)["done"])
        except ray.exceptions.RayError:
            return False

    def stop(self) -> Stopped:
        """Feeds stop and hand their last batches to the detectors; each detector waits until
        risk has taken what it sent; the driver waits until every approved trade is reported
        back; only then are the journals flushed and closed. Every call is bounded: an actor
        that does not answer is noted in `errors` and the report is made from the journal."""
        config, p = self._config, self.pipeline
        calls = _Calls(config.cluster.ready_timeout_s, set(self._poller.down()))
        feeds = tuple(f"feed {v}" for v in config.venues)
        detectors = tuple(f"detector {i}" for i in range(len(p.detectors)))
        calls.get("stop feeds", [f.stop.remote() for f in p.feeds], feeds)
        calls.get("detectors' barrier", [d.barrier.remote() for d in p.detectors], detectors)
        in_flight = _drain(config, p, calls)
        replay = (
            calls.get("replay progress", p.venues["replay"].progress.remote())
            if config.replay is not None
            else None
        )
        calls.get("stop venues", [v.stop.remote() for v in p.venues.values()])
        if config.replay is not None:
            market = p.venues["replay"]
            refs = {v: market.balances.remote(v) for v in config.venues}
        else:
            refs = {v: h.balances.remote() for v, h in p.venues.items()}
        balances = {v: calls.get(f"{v} balances", ref, default={}) for v, ref in refs.items()}
        stats = self.stats()
        calls.get("close executors", [e.close.remote() for e in p.executors])
        risk_state = calls.get("close risk", p.risk.close.remote(), ("risk",))
        latency = _latency([*p.detectors, p.risk, *p.executors], calls)
        return Stopped(
            stats.feeds,
            stats.detectors,
            risk_state,
            latency,
            balances,
            in_flight,
            replay,
            calls.errors,
        )


class _FusedView:
    """Trading nodes (each its venues' feeds, a detector, a risk gate and an executor) and
    the risk actor that leases them their room."""

    def __init__(self, config: HftConfig, pipeline: Pipeline) -> None:
        self._config = config
        self.pipeline = pipeline
        self._poller = Poller(POLL_TIMEOUT_S)
        self._feed_totals = RunningTotals(_FEED_COUNTERS)
        self._detector_totals = RunningTotals(_DETECTOR_COUNTERS)
        self._nodes: list[dict[str, Any] | None] = [None] * len(pipeline.nodes)
        self._starting: dict[int, Any] = {}

    def stats(self) -> Stats:
        p = self.pipeline
        actors = {f"node {i}": n for i, n in enumerate(p.nodes)}
        answers = self._poller.poll({**actors, "risk": p.risk})
        self._nodes = [answers[f"node {i}"] for i in range(len(p.nodes))]
        per_venue: dict[str, list[dict[str, Any]]] = {v: [] for v in self._config.venues}
        detectors, executors = [], []
        for i, node in enumerate(self._nodes):
            for venue in self._config.venues:
                key = f"node {i} {venue}"
                per_venue[venue].append(
                    self._feed_totals(key, node["venues"][venue])
                    if node is not None
                    else _silent_feed(self._feed_totals.last.get(key))
                )
            key = f"node {i}"
            detectors.append(
                self._detector_totals(key, node["detector"])
                if node is not None
                else _silent_detector(self._detector_totals.last.get(key))
            )
            executors.append(node["executor"] if node is not None else {})
        return Stats(
            [merge_venue_stats(per_venue[v]) for v in self._config.venues],
            detectors,
            answers["risk"],
            executors,
            self._poller.down(),
        )

    def restart_idle(self, stats: Stats) -> None:
        """A node restarted by Ray comes back idle: start it again (start is idempotent),
        without waiting on it."""
        for i, (actor, node) in enumerate(zip(self.pipeline.nodes, self._nodes, strict=True)):
            pending = self._starting.get(i)
            if pending is not None and not ray.wait([pending], timeout=0)[0]:
                continue
            self._starting.pop(i, None)
            if node is not None and not all(v["running"] for v in node["venues"].values()):
                self._starting[i] = actor.start.remote()

    def replay_finished(self) -> bool:
        refs = [n.stats.remote() for n in self.pipeline.nodes]
        try:
            return all(n["replay"]["done"] for n in ray.get(refs, timeout=_STATS_TIMEOUT_S))
        except ray.exceptions.RayError:
            return False

    def stop(self) -> Stopped:
        """Each node stops reading books, lets its trades finish and syncs until risk booked
        every report; then the journals are flushed and closed. Every call is bounded, as in
        the distributed view."""
        config, p = self._config, self.pipeline
        timeout = config.cluster.ready_timeout_s + 4 * config.execution.order_timeout_ms / 1000
        calls = _Calls(timeout, set(self._poller.down()))
        nodes = tuple(f"node {i}" for i in range(len(p.nodes)))
        before = calls.get("node stats", [n.stats.remote() for n in p.nodes], nodes)
        calls.get("stop nodes", [n.stop.remote() for n in p.nodes], nodes)
        in_flight = _drain(config, p, calls)
        if config.replay is None:  # the simulated venues' actors hold the accounts
            refs = {v: h.balances.remote() for v, h in p.venues.items()}
            balances = {v: calls.get(f"{v} balances", r, default={}) for v, r in refs.items()}
        else:
            balances = self._replayed_balances(calls)
        stats = self.stats()
        risk_state = calls.get("close risk", p.risk.close.remote(), ("risk",))
        latency = _latency([*p.nodes, p.risk], calls)
        replay = _merge_replay([n["replay"] for n in before]) if config.replay and before else None
        return Stopped(
            stats.feeds,
            stats.detectors,
            risk_state,
            latency,
            balances,
            in_flight,
            replay,
            calls.errors,
        )

    def _replayed_balances(self, calls: _Calls) -> dict[str, dict[str, float]]:
        """Each node replays its own sub-account of every venue, holding the venue's
        configured balances: the venue's truth is the sum of the sub-accounts' changes."""
        start = {v: dict(c.balances) for v, c in self._config.venues.items()}
        balances: dict[str, dict[str, float]] = {}
        nodes = tuple(f"node {i}" for i in range(len(self.pipeline.nodes)))
        refs = [n.balances.remote() for n in self.pipeline.nodes]
        for per_node in calls.get("node balances", refs, nodes, default=[]):
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
    by_venue: Counter[str] = Counter()
    for p in parts:
        by_venue.update(p.get("released", {}))
    return {
        **first,
        "lines": released,
        "other_symbols": read - released,
        "released": dict(by_venue),
        "held_s": max(float(p.get("held_s", 0.0)) for p in parts),  # the slowest node
    }


def _drain(config: HftConfig, p: Pipeline, calls: _Calls) -> int | None:
    """Wait until risk has every approved trade reported back (bounded); return how many are
    still unreported, whose legs may be live on a venue (None: risk did not answer)."""
    deadline = time.monotonic() + 4 * config.execution.order_timeout_ms / 1000.0 + 10.0
    while True:
        stats = calls.get("risk stats", p.risk.stats.remote(), ("risk",))
        if stats is None:
            return None
        in_flight = int(stats["in_flight"])
        if not in_flight or time.monotonic() >= deadline:
            return in_flight
        time.sleep(0.05)


def _latency(actors: list[Any], calls: _Calls) -> dict[str, list[int]]:
    latency: dict[str, list[int]] = {}
    for actor in actors:
        samples = calls.get("latency samples", actor.latency_samples.remote(), default={})
        for name, values in samples.items():
            latency.setdefault(name, []).extend(values)
    return latency


def _risk_from_journal(summary: dict[str, Any]) -> dict[str, Any]:
    """Risk's part of the report when risk did not answer at the end: what the journal
    says, with no positions of risk's own (they cannot be said to match)."""
    return {
        "approved": summary["approved"],
        "clipped": 0,
        "clipped_by": {},
        "rejected": summary["rejected"],
        "trades": summary["trades"],
        "legs_failed": summary["legs_failed"],
        "unwinds": summary["unwinds"],
        "positions": {},
        "state": "NOT ANSWERING",
        "breakers": {},
        "gross_exposure_quote": 0.0,
    }


def _report(
    config: HftConfig, view: View, run_id: str, run_dir: Path, elapsed: float, s: Stopped
) -> dict[str, Any]:
    p = view.pipeline
    errors = list(s.errors)
    journal, read = _read_journal_patiently(config, run_id, run_dir, errors)
    summary = journal_summary(journal)
    report = build_report(
        config=config,
        run_id=run_id,
        run_dir=run_dir,
        duration_s=elapsed,
        feed_stats=s.feeds,
        detector_stats=s.detectors,
        risk_state=s.risk_state or _risk_from_journal(summary),
        journal=journal,
        latency_ns=s.latency_ns,
        placement=p.placement,
        cpus_per_bundle=p.cpus_per_bundle,
    )
    report["journal"]["read"] = read
    report["topology"] = p.topology
    if p.topology == "fused":
        report["trading_nodes"] = {n: syms for n, syms in enumerate(p.node_symbols)}
    # Counts from the journal, whatever actor restarts did to the counters risk holds
    # (risk's own are kept beside them).
    counted = ("approved", "trades", "legs_failed", "unwinds")
    report["risk_counts"] = {k: report[k] for k in counted}
    report.update({k: summary[k] for k in counted})
    unfinished = len(
        {r.opp_id for r in journal if isinstance(r, Intent)}
        - {r.opp_id for r in journal if isinstance(r, Execution)}
    )
    # Trades still unreported when the drain gave up: their legs may be live on a venue.
    # When risk did not answer, the journal's intents with no outcome.
    report["in_flight_at_stop"] = unfinished if s.in_flight is None else s.in_flight
    report["risk_answered_at_stop"] = s.risk_state is not None
    report["stop_errors"] = errors
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


def _read_journal_patiently(
    config: HftConfig, run_id: str, run_dir: Path, errors: list[str]
) -> tuple[list[JournalRecord], dict[str, Any]]:
    """The run's journal and what reading it found (duplicates dropped, corrupt records
    skipped with their offsets); a store that is down is asked again for up to the recovery
    budget, then the report is made without it (noted in `errors`)."""
    deadline = time.monotonic() + config.run.recovery_budget_s
    while True:
        try:
            return asyncio.run(_read_journal(config, run_id, run_dir))
        except StoreUnavailable as err:
            if time.monotonic() >= deadline:
                errors.append(f"journal not read: {err}")
                return [], {}
            time.sleep(0.5)


async def _read_journal(
    config: HftConfig, run_id: str, run_dir: Path
) -> tuple[list[JournalRecord], dict[str, Any]]:
    store = open_store(config.store, run_id, run_dir, "driver")
    try:
        journal, skipped = read_records(await store.read_journal())
        return journal, {**store.last_read.summary(), **skipped_summary(skipped)}
    finally:
        await store.close()
