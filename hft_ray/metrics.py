"""Every metric of hft_ray, and the flusher that moves what actors count into Ray's metrics.

The metrics are `ray.util.metrics` objects, so they leave through Ray's own export: the metrics
agent of each node serves them in Prometheus format on the node's metrics export port, every
name prefixed with `ray_` (`hft_ray_book_updates_total` is scraped as
`ray_hft_ray_book_updates_total`), each series tagged by Ray with the `WorkerId`, `NodeAddress`
and `SessionName` of the process that reported it. Workers send them to the agent about every
10 s.

Nothing on the hot path touches a Ray metric. Actors count in plain ints (the counters their
cores and `stats()` already keep) and hand samples to a `MetricsFlusher`, which about once a
second (`FLUSH_INTERVAL_S`) reads the cumulative counts, adds the difference since its last push
to the Ray counters, sets the gauges and observes the buffered samples.

Trading state is exported as one gauge per state (`hft_ray_risk_trading_state{state=...}`),
1 for the current state and 0 for the others, so a panel shows the state by name.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from hft_ray.risk.state import TradingState
from hft_ray.types import CHECKSUM, SEQUENCE_GAP, ExecutionReport

_log = logging.getLogger(__name__)

PREFIX = "ray_"  # what Ray's export puts before every `ray.util.metrics` name
FLUSH_INTERVAL_S = 1.0
# `Histogram.observe` costs 1-5 us a sample inside an actor on this 2-core machine (1,000
# samples pushed in 1.3 ms, a flush with no samples 0.3 ms). Above this many samples per flush
# and histogram a uniform sample of this size is observed instead, so a flush holds its actor
# for a few ms at most; the histogram's `_count` then counts observed samples, and the exact
# event counts are the counters (`hft_ray_book_updates_total` for tick-to-detect).
MAX_SAMPLES_PER_FLUSH = 2_000

Kind = Literal["counter", "gauge", "histogram"]

LATENCY_BOUNDARIES_S = (
    0.000_05,
    0.000_1,
    0.000_25,
    0.000_5,
    0.001,
    0.002_5,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
)
BATCH_ROWS_BOUNDARIES = (1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0)


@dataclass(frozen=True)
class MetricSpec:
    """One metric: its name as defined (Ray exports it as `PREFIX + name`)."""

    name: str
    kind: Kind
    description: str
    tag_keys: tuple[str, ...] = ()
    boundaries: tuple[float, ...] = ()

    @property
    def exported(self) -> str:
        return PREFIX + self.name


def _counter(name: str, description: str, *tag_keys: str) -> MetricSpec:
    return MetricSpec(name, "counter", description, tag_keys)


def _gauge(name: str, description: str, *tag_keys: str) -> MetricSpec:
    return MetricSpec(name, "gauge", description, tag_keys)


def _histogram(
    name: str, description: str, boundaries: tuple[float, ...], *tag_keys: str
) -> MetricSpec:
    return MetricSpec(name, "histogram", description, tag_keys, boundaries)


# -- feed ---------------------------------------------------------------------------------------
BOOK_UPDATES = _counter(
    "hft_ray_book_updates_total", "Book updates received from the venue.", "venue"
)
BOOK_INVALIDATIONS = _counter(
    "hft_ray_book_invalidations_total",
    "Books made untradable, by reason (failed checks and venue-adapter invalidations).",
    "venue",
    "reason",
)
SEQUENCE_GAPS = _counter(
    "hft_ray_book_sequence_gaps_total", "Books invalidated by a sequence gap.", "venue"
)
CHECKSUM_FAILURES = _counter(
    "hft_ray_book_checksum_failures_total", "Books invalidated by a checksum mismatch.", "venue"
)
BOOKS_CONFLATED = _counter(
    "hft_ray_book_conflated_total",
    "Books the venue published that the feed never saw: it fell behind, and took only the "
    "latest book of each symbol.",
    "venue",
)
FEED_RESYNCS = _counter(
    "hft_ray_feed_resyncs_total", "Stream resubscriptions for a fresh snapshot.", "venue"
)
FEED_OUTAGES = _counter(
    "hft_ray_feed_outages_total",
    "Episodes of a live book not tradable for the venue's reasons (gap, stall, disconnect, "
    "failed checks), each counted once it ends.",
    "venue",
)
FEED_OUTAGE_SECONDS = _counter(
    "hft_ray_feed_outage_seconds_total", "Seconds the ended outages lasted, summed.", "venue"
)
FEED_OUTAGE_LONGEST = _gauge(
    "hft_ray_feed_outage_longest_seconds", "The longest ended outage so far.", "venue"
)
BOOK_AGE = _gauge(
    "hft_ray_book_age_seconds", "Seconds since the feed last received a book.", "venue"
)
FEED_BATCHES = _counter("hft_ray_feed_batches_total", "Batches sent to detectors.", "venue")
FEED_BATCH_ROWS = _histogram(
    "hft_ray_feed_batch_rows",
    "Rows per batch a detector scans: a feed actor's message, a trading node's venue step.",
    BATCH_ROWS_BOUNDARIES,
    "venue",
)
FEED_IN_FLIGHT = _gauge(
    "hft_ray_feed_batches_in_flight",
    "Batches sent to detectors and not yet taken (queue depth).",
    "venue",
)
FEED_BACKPRESSURE = _counter(
    "hft_ray_feed_backpressure_waits_total",
    "Times the feed waited for a detector because too many batches were in flight.",
    "venue",
)

# -- detector -----------------------------------------------------------------------------------
OPPORTUNITIES = _counter("hft_ray_opportunities_total", "Opportunities sent to risk.")
OPPORTUNITIES_SUPPRESSED = _counter(
    "hft_ray_opportunities_suppressed_total", "Opportunities held back by the cooldown."
)
TICK_TO_DETECT = _histogram(
    "hft_ray_tick_to_detect_seconds",
    "From the feed receiving a book to the detector having scanned it.",
    LATENCY_BOUNDARIES_S,
)

# -- risk ---------------------------------------------------------------------------------------
APPROVALS = _counter("hft_ray_risk_approvals_total", "Opportunities approved (clipped or not).")
CLIPS = _counter("hft_ray_risk_clips_total", "Approvals clipped to a smaller size.")
REJECTIONS = _counter("hft_ray_risk_rejections_total", "Opportunities rejected.", "reason")
TRADING_STATE = _gauge(
    "hft_ray_risk_trading_state", "1 for the current trading state, 0 for the others.", "state"
)
BREAKER_TRIPPED = _gauge(
    "hft_ray_risk_breaker_tripped", "1 while the breaker is tripped, then 0.", "breaker"
)
REALIZED_PNL = _gauge(
    "hft_ray_risk_realized_pnl_quote", "Realized PnL net of fees, in the quote currency."
)
GROSS_EXPOSURE = _gauge(
    "hft_ray_risk_gross_exposure_quote", "Gross exposure over venues, in the quote currency."
)
TRADES_IN_FLIGHT = _gauge("hft_ray_risk_trades_in_flight", "Approved trades not yet reported back.")
DETECT_TO_APPROVE = _histogram(
    "hft_ray_detect_to_approve_seconds",
    "From the detector finding an opportunity to risk approving it.",
    LATENCY_BOUNDARIES_S,
)

# -- executor -----------------------------------------------------------------------------------
ORDERS = _counter(
    "hft_ray_orders_total", "Orders placed (legs and repairs), by final status.", "venue", "status"
)
FILLS = _counter("hft_ray_fills_total", "Orders that filled, fully or in part.", "venue")
LEGS_FAILED = _counter("hft_ray_legs_failed_total", "Legs that did not fill completely.")
UNWINDS = _counter("hft_ray_unwinds_total", "Trades whose broken leg was repaired.")

# -- live venues' shared REST budget (hft_ray/venues/rate_budget.py) ----------------------------
VENUE_RATE_LIMITED = _counter(
    "hft_ray_venue_rate_limited_total",
    "HTTP 429/418 answers from a venue; each shrinks the venue's shared budget.",
    "venue",
)
VENUE_RATE_BUDGET = _gauge(
    "hft_ray_venue_rate_budget",
    "Refill rate of the venue's shared REST budget now, in cost units per second.",
    "venue",
)
APPROVE_TO_ACK = _histogram(
    "hft_ray_approve_to_ack_seconds",
    "From risk approving a trade to both legs acknowledged.",
    LATENCY_BOUNDARIES_S,
)
TICK_TO_TRADE = _histogram(
    "hft_ray_tick_to_trade_seconds",
    "From the feed receiving the book that made the opportunity to both legs sent.",
    LATENCY_BOUNDARIES_S,
)
TRADE_STAGE = _histogram(
    "hft_ray_trade_stage_seconds",
    "Time a trade spent in each stage between the book and the acknowledgements (batch_wait, "
    "hop_feed_detector, scan, hop_detector_risk, decide, hop_risk_executor, journal_intent, "
    "send, venue_ack; a topology without a hop has no such stage).",
    LATENCY_BOUNDARIES_S,
    "stage",
)

#: Every metric above, in definition order.
ALL: tuple[MetricSpec, ...] = tuple(
    v for v in dict(globals()).values() if isinstance(v, MetricSpec)
)


# -- readings -----------------------------------------------------------------------------------

Tags = tuple[tuple[str, str], ...]
Key = tuple[MetricSpec, Tags]


def _key(spec: MetricSpec, tags: Mapping[str, str]) -> Key:
    if set(tags) != set(spec.tag_keys):
        raise ValueError(f"{spec.name} takes tags {spec.tag_keys}, got {tuple(tags)}")
    return spec, tuple(sorted(tags.items()))


@dataclass
class Reading:
    """What an actor holds at one moment: cumulative counts and current levels."""

    counts: dict[Key, float] = field(default_factory=dict)
    levels: dict[Key, float] = field(default_factory=dict)

    def count(self, spec: MetricSpec, total: float, **tags: str) -> None:
        """Record the cumulative value of a counter (not an increment)."""
        self.counts[_key(spec, tags)] = float(total)

    def level(self, spec: MetricSpec, value: float, **tags: str) -> None:
        self.levels[_key(spec, tags)] = float(value)


def feed_reading(
    venue: str,
    *,
    updates: int,
    invalid: Mapping[str, int],
    batches: int,
    in_flight: int,
    backpressure_waits: int,
    resyncs: int,
    book_age_s: float | None,
    conflated: int = 0,
    outages: Mapping[str, float] | None = None,
) -> Reading:
    r = Reading()
    r.count(BOOK_UPDATES, updates, venue=venue)
    r.count(BOOKS_CONFLATED, conflated, venue=venue)
    for reason, n in invalid.items():
        r.count(BOOK_INVALIDATIONS, n, venue=venue, reason=reason)
    r.count(SEQUENCE_GAPS, invalid.get(SEQUENCE_GAP, 0), venue=venue)
    r.count(CHECKSUM_FAILURES, invalid.get(CHECKSUM, 0), venue=venue)
    r.count(FEED_RESYNCS, resyncs, venue=venue)
    if outages:
        r.count(FEED_OUTAGES, int(outages["count"]), venue=venue)
        r.count(FEED_OUTAGE_SECONDS, float(outages["seconds"]), venue=venue)
        r.level(FEED_OUTAGE_LONGEST, float(outages["longest_s"]), venue=venue)
    r.count(FEED_BATCHES, batches, venue=venue)
    r.count(FEED_BACKPRESSURE, backpressure_waits, venue=venue)
    r.level(FEED_IN_FLIGHT, in_flight, venue=venue)
    if book_age_s is not None:
        r.level(BOOK_AGE, book_age_s, venue=venue)
    return r


def detector_reading(*, opportunities: int, suppressed: int) -> Reading:
    r = Reading()
    r.count(OPPORTUNITIES, opportunities)
    r.count(OPPORTUNITIES_SUPPRESSED, suppressed)
    return r


def risk_reading(snapshot: Mapping[str, Any]) -> Reading:
    """From `RiskCore.snapshot()`."""
    r = Reading()
    r.count(APPROVALS, snapshot["approved"])
    r.count(CLIPS, snapshot["clipped"])
    for reason, n in snapshot["rejected"].items():
        r.count(REJECTIONS, n, reason=reason)
    for state in TradingState:
        r.level(TRADING_STATE, float(snapshot["state"] == state.value), state=state.value)
    for breaker in snapshot["breakers"]:
        r.level(BREAKER_TRIPPED, 1.0, breaker=breaker)
    r.level(REALIZED_PNL, snapshot["realized_pnl_quote"])
    r.level(GROSS_EXPOSURE, snapshot["gross_exposure_quote"])
    r.level(TRADES_IN_FLIGHT, snapshot["in_flight"])
    return r


class ExecutionCounts:
    """An executor's orders, fills, failed legs and repairs, counted from its reports."""

    def __init__(self) -> None:
        self.orders: Counter[tuple[str, str]] = Counter()
        self.fills: Counter[str] = Counter()
        self.legs_failed = 0
        self.unwinds = 0

    def add(self, report: ExecutionReport) -> None:
        for order in report.fills:
            self.orders[order.venue, order.status] += 1
            if order.filled > 0:
                self.fills[order.venue] += 1
        self.legs_failed += report.legs_failed
        self.unwinds += int(report.unwound)

    def by_venue(self) -> dict[str, dict[str, int]]:
        """Orders per venue and status, for the status document."""
        out: dict[str, dict[str, int]] = {}
        for (venue, status), n in self.orders.items():
            out.setdefault(venue, {})[status] = n
        return out

    def reading(self) -> Reading:
        r = Reading()
        for (venue, status), n in self.orders.items():
            r.count(ORDERS, n, venue=venue, status=status)
        for venue, n in self.fills.items():
            r.count(FILLS, n, venue=venue)
        r.count(LEGS_FAILED, self.legs_failed)
        r.count(UNWINDS, self.unwinds)
        return r


# -- the flusher --------------------------------------------------------------------------------


def ray_metric(spec: MetricSpec) -> Any:
    """The `ray.util.metrics` object of a spec (created in the process that records it)."""
    from ray.util import metrics

    if spec.kind == "counter":
        return metrics.Counter(spec.name, spec.description, tag_keys=spec.tag_keys)
    if spec.kind == "gauge":
        return metrics.Gauge(spec.name, spec.description, tag_keys=spec.tag_keys)
    return metrics.Histogram(
        spec.name, spec.description, boundaries=list(spec.boundaries), tag_keys=spec.tag_keys
    )


#: Readings of what a whole process keeps (not one actor): a module registers its reading
#: here when it is first used (a shared rate budget, in a process with a live venue), and the
#: process's first flusher to push adds it to its own, so it is pushed once per process.
_PROCESS_READINGS: list[Callable[[], Reading]] = []
_process_flusher: list[MetricsFlusher] = []


def add_process_reading(read: Callable[[], Reading]) -> None:
    if read not in _PROCESS_READINGS:
        _PROCESS_READINGS.append(read)


class MetricsFlusher:
    """Pushes an actor's locally kept counts to Ray's metrics, as deltas, about once a second.

    Counters go up by the difference between a reading's cumulative value and the last pushed
    one; gauges are set to the reading's level, and a gauge series the previous reading held
    and this one does not (a breaker cleared) is set to 0. Samples are buffered by `sample`
    and `sample_ns` and observed at the next push. Disabled, every method does nothing.

    A reading or a record that fails is logged (once) and counted in `errors`, never raised:
    metrics must not stop the actor that keeps them (risk pushes from its store watch).
    """

    def __init__(
        self,
        enabled: bool = True,
        interval_s: float = FLUSH_INTERVAL_S,
        *,
        clock: Callable[[], float] = time.monotonic,
        make: Callable[[MetricSpec], Any] = ray_metric,
        max_samples: int = MAX_SAMPLES_PER_FLUSH,
        seed: int = 0,
    ) -> None:
        self.enabled = enabled
        self.interval_s = interval_s
        self._clock = clock
        self._make = make
        self._max_samples = max_samples
        self._rng = random.Random(seed)
        self._metrics: dict[str, Any] = {}
        self._pushed: dict[Key, float] = {}
        self._levels: set[Key] = set()
        self._samples: dict[Key, list[float]] = {}
        self._last_push = clock()
        self.errors = 0

    def _metric(self, spec: MetricSpec) -> Any:
        metric = self._metrics.get(spec.name)
        if metric is None:
            metric = self._metrics[spec.name] = self._make(spec)
        return metric

    def sample(self, spec: MetricSpec, value: float, **tags: str) -> None:
        """Buffer one value, in the histogram's unit, for the next push."""
        if self.enabled:
            self._samples.setdefault(_key(spec, tags), []).append(float(value))

    def sample_ns(self, spec: MetricSpec, values_ns: Iterable[int], **tags: str) -> None:
        """Buffer latencies in nanoseconds for a histogram in seconds."""
        if self.enabled:
            self._samples.setdefault(_key(spec, tags), []).extend(v / 1e9 for v in values_ns)

    def sample_stages(self, stages_ns: Mapping[str, int]) -> None:
        """Buffer one trade's stages (`latency.stage_samples`)."""
        if not self.enabled:
            return
        for stage, ns in stages_ns.items():
            if stage == "tick_to_trade":
                self.sample_ns(TICK_TO_TRADE, (ns,))
            elif stage == "approve_to_ack":
                self.sample_ns(APPROVE_TO_ACK, (ns,))
            elif stage != "tick_to_ack":
                self.sample_ns(TRADE_STAGE, (ns,), stage=stage)

    def due(self) -> bool:
        return self.enabled and self._clock() - self._last_push >= self.interval_s

    def maybe_push(self, read: Callable[[], Reading], force: bool = False) -> bool:
        """Push `read()` if an interval has passed since the last push, or `force` (at stop);
        say whether it did."""
        if not (self.due() or (force and self.enabled)):
            return False
        try:
            self.push(read())
        except Exception:
            self.errors += 1
            if self.errors == 1:
                _log.exception("hft_ray metrics: a push failed (logged once)")
        return True

    async def run(self, read: Callable[[], Reading]) -> None:
        """Push `read()` every interval until cancelled (an async actor's background task)."""
        while self.enabled:
            await asyncio.sleep(self.interval_s)
            self.maybe_push(read, force=True)

    def push(self, reading: Reading) -> None:
        """Record a reading and the buffered samples now (`maybe_push` is the safe caller)."""
        if not self.enabled:
            return
        self._last_push = self._clock()
        if not _process_flusher:
            _process_flusher.append(self)
        if _process_flusher[0] is self:
            for read in _PROCESS_READINGS:
                extra = read()
                reading.counts.update(extra.counts)
                reading.levels.update(extra.levels)
        for key, total in reading.counts.items():
            spec, tags = key
            last = self._pushed.get(key, 0.0)
            # Below the last push the source started again from zero (a new core).
            delta = total - last if total >= last else total
            self._pushed[key] = total
            if delta > 0:
                self._metric(spec).inc(delta, dict(tags))
        for key in self._levels - reading.levels.keys():
            self._metric(key[0]).set(0.0, dict(key[1]))
        for key, value in reading.levels.items():
            self._metric(key[0]).set(value, dict(key[1]))
        self._levels = set(reading.levels)
        samples, self._samples = self._samples, {}
        for (spec, tags), values in samples.items():
            if len(values) > self._max_samples:
                values = self._rng.sample(values, self._max_samples)
            histogram, tag_dict = self._metric(spec), dict(tags)
            for value in values:
                histogram.observe(value, tag_dict)
