"""Replay as a backtest: recorded books through a run's feed checks, detector, risk and
executor, in recorded time, in one process, with the same answer every time.

A paced or `--fast` replay through the actors is a rehearsal of the live system, and like it
runs on the host's clocks: cooldowns, lease expiries and order latencies are wall time, so two
replays of one file differ with the machine's load. A backtest instead has one clock, the
recording's: each recorded instant sets it, every stage reads it, and nothing waits on the
host. Its venues' matching engines replay the same books, each order matched against the book
as it stood when the order would arrive (the decision's instant plus half the venue's
simulated acknowledgement latency, decided like every order fate by the seed and the client
order id), with the venue's fees and precision. Within an instant the pipeline takes no
recorded time: an opportunity is decided and executed before the next is looked at.

So the same files, config and seed give the same journal and the same report on any machine.
Files recorded apart (days, no overlap in time) are independent backtests: `run_backtest` fans
them out as Ray tasks and merges their journals and counts into one report.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import itertools
import sys
import time
from collections import Counter, deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from hft_ray import journal
from hft_ray.clock import TestClock
from hft_ray.config import ConfigError, HftConfig, SimVenueConfig, masked_config_text
from hft_ray.detect.core import DetectorCore
from hft_ray.execute.core import ExecutorCore
from hft_ray.feed.core import FeedCore
from hft_ray.ledger import positions_equal
from hft_ray.markets import resolve_markets
from hft_ray.report import build_report, journal_summary, write_report
from hft_ray.risk.core import RiskCore
from hft_ray.risk.state import SEVERITY, TradingState
from hft_ray.store import LocalStore
from hft_ray.store.base import StoreUnavailable
from hft_ray.types import OrderResult, Side, Universe
from hft_ray.venues.replay import (
    RecordedBook,
    ReplayFileError,
    ReplayFormatError,
    UnknownLines,
    matching_book,
    read_files,
)
from hft_ray.venues.sim import (
    FATE_REJECTIONS,
    InProcessSimVenue,
    SimExchange,
    sim_exchange_from_config,
)

#: Keys of a backtest report that say how and where it ran, not what it found: the only ones
#: two backtests of the same files, config and seed may differ in.
RUN_KEYS = ("run_id", "run_dir", "timing")


@dataclass(frozen=True)
class Window:
    """A stretch of recorded time, [start_ns, end_ns): a walk-forward fold."""

    start_ns: int
    end_ns: int


@dataclass
class Instant:
    """The lines recorded at one moment."""

    at_ns: int
    books: list[RecordedBook]


@dataclass
class Part:
    """One backtest: the files replayed together, and the window of them it keeps."""

    index: int
    files: list[Path]
    window: Window | None = None

    @property
    def id_prefix(self) -> str:
        """Opportunity ids of the part, from what it replays: unique among a run's parts, and
        the same whichever others it runs beside (order fates follow the ids)."""
        digest = hashlib.sha256(repr(([str(p) for p in self.files], self.window)).encode())
        return "b" + digest.hexdigest()[:7]


@dataclass
class PartResult:
    """What one part learned besides its journal (which it left in the run directory)."""

    feed_stats: list[dict[str, Any]]
    detector: dict[str, int]
    risk: dict[str, Any]
    venue_ack_ns: list[int]
    replay: dict[str, Any]
    balances: dict[str, dict[str, float]]
    span_ns: tuple[int, int] | None
    malformed: list[str] = field(default_factory=list)  # lines skipped, file:line: why
    unreadable: list[str] = field(default_factory=list)  # files cut short, where and why


class Tape:
    """The recorded instants of a part, read once: the feeds take them in order, while the
    matching engines read ahead to where an order arrives."""

    def __init__(
        self,
        lines: Iterator[RecordedBook],
        exchanges: dict[str, SimExchange],
        symbols: set[str],
        window: Window | None,
        unknown: UnknownLines,
    ) -> None:
        self._lines = lines
        self._exchanges = exchanges
        self._symbols = symbols
        self._window = window
        self._unknown = unknown
        self._ahead: deque[Instant] = deque()
        self._pending: RecordedBook | None = None
        self._installed_ns = -1
        self.lines = 0

    def _read(self) -> Instant | None:
        """The next instant of kept lines from the files, or None at their end."""
        books: list[RecordedBook] = []
        while True:
            rec = self._pending if self._pending is not None else next(self._lines, None)
            self._pending = None
            if rec is None:
                break
            if not self._keeps(rec):
                continue
            if books and rec.at_ns != books[0].at_ns:
                self._pending = rec
                break
            books.append(rec)
        if not books:
            return None
        self.lines += len(books)
        return Instant(books[0].at_ns, books)

    def _keeps(self, rec: RecordedBook) -> bool:
        if rec.exchange not in self._exchanges:
            self._unknown.exchange(rec)
            return False
        if rec.book.symbol not in self._symbols:
            self._unknown.symbol(rec)
            return False
        w = self._window
        return w is None or w.start_ns <= rec.at_ns < w.end_ns

    def next(self) -> Instant | None:
        """The feeds' next instant; the matching engines hold its books from here on."""
        instant = self._ahead.popleft() if self._ahead else self._read()
        if instant is not None:
            self._install(instant)
        return instant

    def match_at(self, at_ns: int) -> None:
        """Bring every matching engine to the books recorded at or before `at_ns`. They never
        go back: an order arriving before one matched already sees the later book."""
        while not self._ahead or self._ahead[-1].at_ns <= at_ns:
            instant = self._read()
            if instant is None:
                break
            self._ahead.append(instant)
        for instant in self._ahead:
            if instant.at_ns > at_ns:
                break
            self._install(instant)

    def _install(self, instant: Instant) -> None:
        if instant.at_ns <= self._installed_ns:
            return
        for rec in instant.books:
            self._exchanges[rec.exchange].install(matching_book(rec.book))
        self._installed_ns = instant.at_ns


class RecordedTimeVenue(InProcessSimVenue):
    """A venue's orders in a backtest: matched when they would arrive, in recorded time.

    A fate of `timeout` (the acknowledgement lost) raises at once: the executor looks the
    order up, as it would after its own timeout, and finds it matched."""

    def __init__(self, exchange: SimExchange, tape: Tape, clock: TestClock) -> None:
        super().__init__(exchange, late_ack_s=0.0)
        self._tape = tape
        self._clock = clock
        self.ack_ns: list[int] = []

    async def create_order(
        self, client_id: str, symbol: str, side: Side, amount: float, price: float
    ) -> OrderResult:
        fate, latency_s = self._exchange.order_fate(client_id)
        latency_ns = int(latency_s * 1e9)
        arrive_ns = self._clock.time_ns() + latency_ns // 2
        self._tape.match_at(arrive_ns)
        result = self._exchange.submit(
            client_id,
            symbol,
            side,
            amount,
            price,
            arrive_ns,
            reject_reason=FATE_REJECTIONS.get(fate, ""),
        )
        if fate == "timeout":
            raise TimeoutError(f"{self.name}: no acknowledgement of {client_id}")
        self.ack_ns.append(latency_ns)
        return result


def check_inputs(config: HftConfig, paths: list[Path]) -> None:
    """Every file there, every venue one whose matching engine a backtest can run."""
    for p in paths:
        if not p.exists():
            raise ConfigError(f"no such file {p}")
    for name, venue in config.venues.items():
        if not isinstance(venue, SimVenueConfig):
            raise ConfigError(
                f"venues.{name} is a live venue (kind: {venue.kind}); a replay trades "
                f"on simulated venues that match against the recorded books: give it kind: sim "
                f"(fees and precision from its preset)"
            )


async def backtest_part(config: HftConfig, part: Part, run_dir: Path) -> PartResult:
    """Replay one part through detect, risk and execute; its journal goes to `run_dir`
    (segment `part<index>`)."""
    markets = resolve_markets(config)
    universe = Universe(tuple(config.venues), tuple(config.symbols))
    exchanges = {v: sim_exchange_from_config(config, v) for v in config.venues}
    malformed: list[str] = []
    unreadable: list[str] = []

    def on_error(err: ReplayFormatError) -> None:
        (unreadable if isinstance(err, ReplayFileError) else malformed).append(str(err))

    unknown = UnknownLines()
    tape = Tape(
        read_files(part.files, on_error), exchanges, set(config.symbols), part.window, unknown
    )
    first = tape.next()
    clock = TestClock(start_ns=first.at_ns if first is not None else 0)
    feeds = {v: FeedCore(universe, v, config.feed, 1) for v in config.venues}
    detector = DetectorCore(config, universe, markets, clock, part.id_prefix)
    risk = RiskCore(config, universe, markets, clock, nodes=())
    risk.store_ok = True
    risk.restore(None, [])
    venues = {v: RecordedTimeVenue(ex, tape, clock) for v, ex in exchanges.items()}
    store = LocalStore(run_dir, f"part{part.index:04d}")
    executor = ExecutorCore(config, universe, markets, venues, store, clock, name="backtest")
    detector.warm_up()
    span: tuple[int, int] | None = None
    instant = first
    try:
        while instant is not None:
            clock.advance(instant.at_ns - clock.time_ns())
            span = (span[0] if span else instant.at_ns, instant.at_ns)
            await _trade_instant(instant, feeds, detector, risk, executor, store, clock)
            instant = tape.next()
    finally:
        await store.close()
    return PartResult(
        feed_stats=[
            {"updates": f.updates, "invalid": dict(f.invalid), "conflated": 0}
            for f in feeds.values()
        ],
        detector={
            "opportunities": detector.opportunities,
            "suppressed": detector.suppressed,
            "rows_scanned": detector.rows_scanned,
        },
        risk={**risk.snapshot(), "journal_errors": 0},
        venue_ack_ns=[ns for v in venues.values() for ns in v.ack_ns],
        replay={
            "lines": tape.lines,
            "other_exchanges": unknown.exchanges,
            "other_symbols": unknown.symbols,
            "unknown": unknown.notices,
        },
        balances={v: dict(ex.balances) for v, ex in exchanges.items()},
        span_ns=span,
        malformed=malformed,
        unreadable=unreadable,
    )


async def _trade_instant(
    instant: Instant,
    feeds: dict[str, FeedCore],
    detector: DetectorCore,
    risk: RiskCore,
    executor: ExecutorCore,
    store: LocalStore,
    clock: TestClock,
) -> None:
    """The books of one instant, venue by venue in the config's order, each opportunity
    decided, journaled and traded before the next."""
    by_venue: dict[str, list[RecordedBook]] = {}
    for rec in instant.books:
        by_venue.setdefault(rec.exchange, []).append(rec)
    now = clock.time_ns()
    for venue, feed in feeds.items():
        recs = by_venue.get(venue)
        if not recs:
            continue
        rows = feed.rows_from_events([r.event for r in recs], now, clock.monotonic_ns())
        for opp in detector.on_batch(rows):
            approval, record = risk.evaluate(opp)
            with contextlib.suppress(StoreUnavailable):  # the intent's write fails too
                await store.append(journal.encode(record))
            if approval is None:
                continue
            report = await executor.run(approval)
            if report is not None:
                risk.on_execution(report)
                detector.set_positions(risk.ledger.snapshot()["positions"])
            while risk.events:  # breakers tripped by the decision or the outcome
                with contextlib.suppress(StoreUnavailable):
                    await store.append(journal.encode(risk.events.popleft()))
        detector.tick_to_detect_ns.clear()


def parts_of(paths: list[Path], windows: list[Window] | None = None) -> list[Part]:
    """The independent backtests of `paths`: files whose recorded spans overlap are replayed
    together (venues recorded side by side), files apart in time (days) each alone; with
    `windows`, every group once per window."""
    spans = []
    for p in paths:
        span = recorded_span([p])
        if span is not None:
            spans.append((span, p))
    spans.sort(key=lambda s: (s[0][0], str(s[1])))
    groups: list[tuple[int, list[Path]]] = []
    for (start, end), p in spans:
        if groups and start <= groups[-1][0]:
            groups[-1][1].append(p)
            groups[-1] = (max(groups[-1][0], end), groups[-1][1])
        else:
            groups.append((end, [p]))
    files = [g[1] for g in groups] or [list(paths)]
    cuts: list[Window | None] = list(windows) if windows else [None]
    return [Part(i, f, w) for i, (f, w) in enumerate(itertools.product(files, cuts))]


def recorded_span(paths: list[Path]) -> tuple[int, int] | None:
    """The first and last recorded instant of `paths` (None: no readable line)."""
    first = last = None
    for rec in read_files(paths, lambda err: None):
        first = rec.at_ns if first is None else first
        last = rec.at_ns
    return None if first is None or last is None else (first, last)


def run_parts(config: HftConfig, parts: list[Part], run_dir: Path) -> list[PartResult]:
    """Each part in this process when there is one, else as Ray tasks (a local Ray unless
    the config or RAY_ADDRESS names a cluster), results in part order."""
    if len(parts) == 1:
        return [asyncio.run(backtest_part(config, parts[0], run_dir))]
    import ray

    from hft_ray.cluster import connect

    started = connect(config, None)
    try:
        task = ray.remote(num_cpus=1, max_retries=0)(_part_task)
        refs = [task.remote(config, p, str(run_dir)) for p in parts]
        return list(ray.get(refs))
    finally:
        if started:
            ray.shutdown()


def _part_task(config: HftConfig, part: Part, run_dir: str) -> PartResult:
    return asyncio.run(backtest_part(config, part, Path(run_dir)))


def run_backtest(
    config: HftConfig,
    files: list[Path],
    *,
    runs_dir: Path | None = None,
    report_path: Path | None = None,
    out: TextIO = sys.stdout,
) -> dict[str, Any]:
    """Backtest `files` (fanned out per `parts_of`), write the run directory and report."""
    check_inputs(config, files)
    started = time.monotonic()
    run_id = backtest_run_id(config, files)
    run_dir = Path(runs_dir or config.run.runs_dir) / run_id
    if run_dir.exists():
        raise ConfigError(f"replay: {run_dir} exists already")
    run_dir.mkdir(parents=True)
    (run_dir / "config.yaml").write_text(masked_config_text(config))
    parts = parts_of(files)
    results = run_parts(config, parts, run_dir)
    report = merged_report(config, run_id, run_dir, files, results)
    report["timing"] = {"wall_s": round(time.monotonic() - started, 3), "parts": len(parts)}
    write_report(report, report_path or run_dir / "report.json")
    print(
        f"backtest {run_id}: {len(parts)} part(s), {report['replay']['lines']} books, "
        f"{report['opportunities']} opportunities, {report['trades']} trades, realized PnL "
        f"{report['realized_pnl_quote']:+.4f} in {report['timing']['wall_s']:.1f}s; "
        f"report: {report_path or run_dir / 'report.json'}",
        file=out,
    )
    return report


def backtest_run_id(config: HftConfig, files: list[Path]) -> str:
    """A run id from the wall clock, with a digest of what was backtested: the run directory
    says which config and files made it."""
    digest = hashlib.sha256(config.model_dump_json().encode())
    for f in files:
        digest.update(str(f.resolve()).encode())
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    return f"backtest-{stamp}-{digest.hexdigest()[:8]}-{time.monotonic_ns() % 10_000:04d}"


def merged_report(
    config: HftConfig,
    run_id: str,
    run_dir: Path,
    files: list[Path],
    results: list[PartResult],
) -> dict[str, Any]:
    """One report over every part: counts summed, the journal read back from the run
    directory (all parts' segments), positions from it."""
    raw, read = asyncio.run(_read_journal(run_dir))
    records, skipped = journal.read_records(raw)
    risk = _merged_risk([r.risk for r in results])
    spans = [r.span_ns for r in results if r.span_ns is not None]
    duration_s = sum(end - start for start, end in spans) / 1e9
    report = build_report(
        config=config,
        run_id=run_id,
        run_dir=run_dir,
        duration_s=duration_s,
        feed_stats=[
            _sum_feeds([r.feed_stats[i] for r in results]) for i in range(len(config.venues))
        ],
        detector_stats=[r.detector for r in results],
        risk_state=risk,
        journal=records,
        latency_ns={"venue_ack": sorted(ns for r in results for ns in r.venue_ack_ns)},
        placement=[],
        cpus_per_bundle=0.0,
    )
    report["journal"]["read"] = {**read, **journal.skipped_summary(skipped)}
    summary = journal_summary(records)
    start = {v: dict(c.balances) for v, c in config.venues.items()}
    moved: dict[str, dict[str, float]] = {}
    for r in results:
        for v, bal in r.balances.items():
            for a, b in bal.items():
                change = b - start[v].get(a, 0.0)
                if change:
                    moved.setdefault(v, {})[a] = moved.get(v, {}).get(a, 0.0) + change
    report["mode"] = "backtest"
    report["topology"] = "backtest"
    report["placement"] = {"pinning": "one process per part", "bundles": []}
    report["venue_positions"] = moved
    report["positions_match_venues"] = positions_equal(
        {v: a for v, a in summary["positions"].items() if v in moved}, moved
    )
    unknown = [n for r in results for n in r.replay["unknown"]]
    report["replay"] = {
        "files": [str(f) for f in files],
        "backtest": True,
        "seed": config.run.seed,
        "parts": len(results),
        "lines": sum(r.replay["lines"] for r in results),
        "other_exchanges": sum(r.replay["other_exchanges"] for r in results),
        "other_symbols": sum(r.replay["other_symbols"] for r in results),
        "malformed_lines": [s for r in results for s in r.malformed],
        "unreadable_files": [s for r in results for s in r.unreadable],
        "unknown": unknown,
        "held_s": 0.0,
    }
    return report


async def _read_journal(run_dir: Path) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Every part's journal segment in the run directory, and what reading them found."""
    store = LocalStore(run_dir, "report")
    try:
        return await store.read_journal(), store.last_read.summary()
    finally:
        await store.close()


def _sum_feeds(stats: list[dict[str, Any]]) -> dict[str, Any]:
    invalid: Counter[str] = Counter()
    for s in stats:
        invalid.update(s["invalid"])
    return {"updates": sum(s["updates"] for s in stats), "invalid": dict(invalid), "conflated": 0}


def _merged_risk(states: list[dict[str, Any]]) -> dict[str, Any]:
    """Risk's state over independent parts: counts and positions summed, the worst state."""
    first = states[0]
    if len(states) == 1:
        return first
    rejected: Counter[str] = Counter()
    clipped_by: Counter[str] = Counter()
    positions: dict[str, dict[str, float]] = {}
    for s in states:
        rejected.update(s["rejected"])
        clipped_by.update(s.get("clipped_by", {}))
        for v, assets in s["positions"].items():
            for a, q in assets.items():
                positions.setdefault(v, {})[a] = positions.get(v, {}).get(a, 0.0) + q
    summed = ("approved", "clipped", "trades", "legs_failed", "unwinds", "gross_exposure_quote")
    worst = max((TradingState(s["state"]) for s in states), key=SEVERITY.__getitem__)
    return {
        **first,
        **{k: sum(s[k] for s in states) for k in summed},
        "rejected": dict(rejected),
        "clipped_by": dict(clipped_by),
        "positions": positions,
        "state": worst.value,
        "breakers": {k: v for s in states for k, v in s["breakers"].items()},
        "journal_errors": sum(s.get("journal_errors", 0) for s in states),
    }
