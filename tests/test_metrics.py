"""hft_ray.metrics: the flusher pushes exactly the deltas of what actors count, the readings map
actor state to the right series, and every metric works as a real `ray.util.metrics` object."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from hft_ray import metrics
from hft_ray.clock import TestClock
from hft_ray.config import HftConfig
from hft_ray.markets import simulated_markets
from hft_ray.metrics import MetricsFlusher, MetricSpec, Reading
from hft_ray.risk.core import RiskCore
from hft_ray.types import ExecutionReport, OrderResult, Universe
from tests.test_risk_core import opp


class FakeMetric:
    """Records what the flusher does to one metric: (method, value, tags) calls."""

    def __init__(self, spec: MetricSpec) -> None:
        self.spec = spec
        self.calls: list[tuple[str, float, dict[str, str]]] = []

    def inc(self, value: float, tags: dict[str, str]) -> None:
        self.calls.append(("inc", value, tags))

    def set(self, value: float, tags: dict[str, str]) -> None:
        self.calls.append(("set", value, tags))

    def observe(self, value: float, tags: dict[str, str]) -> None:
        self.calls.append(("observe", value, tags))


class Recorder:
    def __init__(self) -> None:
        self.made: dict[str, FakeMetric] = {}

    def __call__(self, spec: MetricSpec) -> FakeMetric:
        assert spec.name not in self.made, "one metric object per name and flusher"
        self.made[spec.name] = FakeMetric(spec)
        return self.made[spec.name]

    def calls(self, spec: MetricSpec) -> list[tuple[str, float, dict[str, str]]]:
        metric = self.made.get(spec.name)
        calls = [] if metric is None else list(metric.calls)
        if metric is not None:
            metric.calls.clear()
        return calls


class Seconds:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def flusher(**kw: Any) -> tuple[MetricsFlusher, Recorder, Seconds]:
    recorder, clock = Recorder(), Seconds()
    return MetricsFlusher(clock=clock, make=recorder, **kw), recorder, clock


def feed(updates: int, gaps: int = 0, in_flight: int = 0) -> Reading:
    return metrics.feed_reading(
        "binance",
        updates=updates,
        invalid={"sequence_gap": gaps} if gaps else {},
        batches=0,
        in_flight=in_flight,
        backpressure_waits=0,
        resyncs=0,
        book_age_s=0.25,
    )


def test_counters_go_up_by_exactly_the_difference_since_the_last_push() -> None:
    f, rec, _ = flusher()
    f.push(feed(updates=5))
    assert rec.calls(metrics.BOOK_UPDATES) == [("inc", 5.0, {"venue": "binance"})]
    f.push(feed(updates=12, gaps=1))
    assert rec.calls(metrics.BOOK_UPDATES) == [("inc", 7.0, {"venue": "binance"})]
    assert rec.calls(metrics.SEQUENCE_GAPS) == [("inc", 1.0, {"venue": "binance"})]
    assert rec.calls(metrics.BOOK_INVALIDATIONS) == [
        ("inc", 1.0, {"venue": "binance", "reason": "sequence_gap"})
    ]
    # Nothing new: no increments at all (Ray refuses inc(0)).
    f.push(feed(updates=12, gaps=1))
    assert rec.calls(metrics.BOOK_UPDATES) == []
    assert rec.calls(metrics.SEQUENCE_GAPS) == []
    # A count below the last push started again from zero: all of it is new.
    f.push(feed(updates=3, gaps=1))
    assert rec.calls(metrics.BOOK_UPDATES) == [("inc", 3.0, {"venue": "binance"})]


def test_series_of_one_counter_are_kept_apart_by_their_tags() -> None:
    f, rec, _ = flusher()
    counts = metrics.ExecutionCounts()
    counts.orders.update({("binance", "filled"): 2, ("okx", "rejected"): 1})
    f.push(counts.reading())
    counts.orders.update({("binance", "filled"): 1, ("okx", "filled"): 4})
    f.push(counts.reading())
    calls = rec.calls(metrics.ORDERS)
    assert calls == [
        ("inc", 2.0, {"venue": "binance", "status": "filled"}),
        ("inc", 1.0, {"venue": "okx", "status": "rejected"}),
        ("inc", 1.0, {"venue": "binance", "status": "filled"}),
        ("inc", 4.0, {"venue": "okx", "status": "filled"}),
    ]


def test_gauges_are_set_each_push_and_a_series_that_disappears_reads_zero() -> None:
    f, rec, _ = flusher()
    f.push(metrics.Reading(levels={(metrics.BREAKER_TRIPPED, (("breaker", "operator"),)): 1.0}))
    assert rec.calls(metrics.BREAKER_TRIPPED) == [("set", 1.0, {"breaker": "operator"})]
    f.push(metrics.Reading())
    assert rec.calls(metrics.BREAKER_TRIPPED) == [("set", 0.0, {"breaker": "operator"})]
    f.push(metrics.Reading())
    assert rec.calls(metrics.BREAKER_TRIPPED) == []
    f.push(feed(updates=1, in_flight=3))
    f.push(feed(updates=1, in_flight=0))
    assert rec.calls(metrics.FEED_IN_FLIGHT) == [
        ("set", 3.0, {"venue": "binance"}),
        ("set", 0.0, {"venue": "binance"}),
    ]
    assert rec.calls(metrics.BOOK_AGE) == [("set", 0.25, {"venue": "binance"})] * 2


def test_samples_are_observed_once_in_seconds_at_the_next_push() -> None:
    f, rec, _ = flusher()
    f.sample_ns(metrics.TICK_TO_TRADE, [1_500_000, 2_000_000_000])
    f.sample(metrics.FEED_BATCH_ROWS, 7, venue="okx")
    assert rec.made == {}  # nothing reaches Ray before the push
    f.push(Reading())
    assert rec.calls(metrics.TICK_TO_TRADE) == [("observe", 0.0015, {}), ("observe", 2.0, {})]
    assert rec.calls(metrics.FEED_BATCH_ROWS) == [("observe", 7.0, {"venue": "okx"})]
    f.push(Reading())
    assert rec.calls(metrics.TICK_TO_TRADE) == []


def test_more_samples_than_the_cap_are_thinned_to_a_uniform_sample() -> None:
    f, rec, _ = flusher(max_samples=100)
    f.sample_ns(metrics.TICK_TO_DETECT, range(0, 1_000_000, 1_000))  # 1000 samples
    f.push(Reading())
    observed = [value for _, value, _ in rec.calls(metrics.TICK_TO_DETECT)]
    assert len(observed) == 100
    assert len(set(observed)) == 100
    assert min(observed) < 0.0002 and max(observed) > 0.0008  # spread over the whole second


def test_maybe_push_waits_for_the_interval() -> None:
    f, rec, clock = flusher(interval_s=1.0)
    reads: list[int] = []

    def read() -> Reading:
        reads.append(1)
        return feed(updates=len(reads) * 10)

    assert not f.maybe_push(read)
    clock.now += 0.999
    assert not f.maybe_push(read)
    assert reads == []  # the reading is not even built before it is due
    clock.now += 0.001
    assert f.maybe_push(read)
    assert not f.maybe_push(read)
    clock.now += 1.0
    assert f.maybe_push(read)
    assert [c[1] for c in rec.calls(metrics.BOOK_UPDATES)] == [10.0, 10.0]


def test_a_forced_push_goes_at_once_and_a_failing_one_never_raises() -> None:
    f, rec, _ = flusher(interval_s=1.0)
    assert f.maybe_push(lambda: feed(updates=4), force=True)  # at stop, not due
    assert rec.calls(metrics.BOOK_UPDATES) == [("inc", 4.0, {"venue": "binance"})]

    def broken() -> Reading:
        raise KeyError("approved")

    assert f.maybe_push(broken, force=True)
    assert f.maybe_push(broken, force=True)
    assert f.errors == 2
    assert f.maybe_push(lambda: feed(updates=6), force=True)
    assert rec.calls(metrics.BOOK_UPDATES) == [("inc", 2.0, {"venue": "binance"})]


def test_disabled_flusher_creates_and_records_nothing() -> None:
    f, rec, clock = flusher(enabled=False)
    f.sample_ns(metrics.TICK_TO_TRADE, [1])
    clock.now += 10
    assert not f.due()
    assert not f.maybe_push(lambda: feed(updates=1))
    assert not f.maybe_push(lambda: feed(updates=1), force=True)
    f.push(feed(updates=1))
    assert rec.made == {}


def test_a_tag_set_that_does_not_match_the_metric_is_refused() -> None:
    with pytest.raises(ValueError, match="hft_ray_book_updates_total takes tags"):
        Reading().count(metrics.BOOK_UPDATES, 1)
    with pytest.raises(ValueError, match="takes tags"):
        Reading().count(metrics.OPPORTUNITIES, 1, venue="okx")


def order(venue: str, status: str, filled: float) -> OrderResult:
    return OrderResult("c", venue, "BTC/USDT", "buy", status, 0.01, filled, 1.0, 0.0, "", 0)  # type: ignore[arg-type]


def test_execution_counts_orders_by_venue_and_status_fills_failures_and_unwinds() -> None:
    counts = metrics.ExecutionCounts()
    counts.add(
        ExecutionReport(
            "o1",
            "BTC/USDT",
            (order("binance", "filled", 0.01), order("okx", "partial", 0.004)),
            1,
            False,
            5,
        )
    )
    counts.add(
        ExecutionReport(
            "o2",
            "BTC/USDT",
            (
                order("binance", "filled", 0.01),
                order("okx", "rejected", 0.0),
                order("binance", "filled", 0.01),
            ),
            1,
            True,
            5,
        )
    )
    reading = counts.reading()
    assert reading.counts == {
        (metrics.ORDERS, (("status", "filled"), ("venue", "binance"))): 3.0,
        (metrics.ORDERS, (("status", "partial"), ("venue", "okx"))): 1.0,
        (metrics.ORDERS, (("status", "rejected"), ("venue", "okx"))): 1.0,
        (metrics.FILLS, (("venue", "binance"),)): 3.0,
        (metrics.FILLS, (("venue", "okx"),)): 1.0,
        (metrics.LEGS_FAILED, ()): 2.0,
        (metrics.UNWINDS, ()): 1.0,
    }


def test_risk_reading_from_a_real_risk_core(make_config: Callable[..., HftConfig]) -> None:
    config = make_config(risk={"min_edge_bps": 5})
    clock = TestClock()
    universe = Universe(tuple(config.venues), tuple(config.symbols))
    core = RiskCore(config, universe, simulated_markets(config), clock)
    core.store_ok = core.restored = True
    approval, _ = core.evaluate(opp(clock, opp_id="a1"))
    assert approval is not None
    _, record = core.evaluate(opp(clock, opp_id="a2", edge=1.0))
    assert record.verdict == "rejected"
    core.reduce_only("test")

    reading = metrics.risk_reading(core.snapshot())
    assert reading.counts[metrics.APPROVALS, ()] == 1.0
    assert reading.counts[metrics.CLIPS, ()] == 0.0
    assert reading.counts[metrics.REJECTIONS, (("reason", "edge_below_min"),)] == 1.0
    states = {
        tags[0][1]: v for (spec, tags), v in reading.levels.items() if spec.name.endswith("state")
    }
    assert states == {"ACTIVE": 0.0, "REDUCING": 1.0, "HALTED": 0.0}
    assert reading.levels[metrics.BREAKER_TRIPPED, (("breaker", "operator"),)] == 1.0
    assert reading.levels[metrics.TRADES_IN_FLIGHT, ()] == 1.0
    assert reading.levels[metrics.GROSS_EXPOSURE, ()] >= 0.0
    assert reading.levels[metrics.REALIZED_PNL, ()] == 0.0


def test_names_follow_prometheus_conventions() -> None:
    names = [spec.name for spec in metrics.ALL]
    assert len(names) == len(set(names))
    assert len(names) >= 25
    for spec in metrics.ALL:
        assert re.fullmatch(r"hft_ray_[a-z_]+", spec.name), spec.name
        assert spec.exported == "ray_" + spec.name
        assert spec.description
        assert spec.name.endswith("_total") == (spec.kind == "counter"), spec.name
        if spec.kind == "histogram":
            assert spec.name.endswith(("_seconds", "_rows")), spec.name
            assert list(spec.boundaries) == sorted(spec.boundaries) and spec.boundaries[0] > 0
        # Small label sets only: nothing per order, per opportunity or per symbol.
        assert set(spec.tag_keys) <= {"venue", "reason", "status", "state", "breaker", "stage"}


@pytest.mark.ray
def test_every_metric_records_through_real_ray_metrics(ray_session: str) -> None:
    """Real `ray.util.metrics` objects accept every series the readings produce (tag keys,
    value types); the session's Ray has no dashboard, so nothing is scraped here: the export
    is checked by tests/test_job_submit.py."""
    f = MetricsFlusher(interval_s=0.0)
    reading = Reading()
    for spec in metrics.ALL:
        tags = {key: "x" for key in spec.tag_keys}
        if spec.kind == "counter":
            reading.count(spec, 3, **tags)
        elif spec.kind == "gauge":
            reading.level(spec, 1.5, **tags)
        else:
            f.sample(spec, 0.002, **tags)
    f.push(reading)
    reading.counts = {key: value + 2 for key, value in reading.counts.items()}
    f.push(reading)
    assert set(f._metrics) == {spec.name for spec in metrics.ALL}


DASHBOARD = Path(__file__).resolve().parent.parent / "k8s" / "grafana" / "hft-ray-dashboard.json"
_HISTOGRAM_SERIES = ("_bucket", "_count", "_sum")


def queried_metrics(expr: str) -> set[str]:
    """The metrics a PromQL expression reads, histogram series mapped to their histogram."""
    found = set()
    for name in re.findall(r"\b(ray_[a-z_]+)\b", expr):
        for suffix in _HISTOGRAM_SERIES:
            if name.endswith(suffix) and name[: -len(suffix)].endswith(("_seconds", "_rows")):
                name = name[: -len(suffix)]
        found.add(name)
    return found


def test_grafana_dashboard_queries_exactly_the_metrics_defined() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["title"] and dashboard["uid"] and dashboard["schemaVersion"] >= 30
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"

    panels = dashboard["panels"]
    assert len({p["id"] for p in panels}) == len(panels)
    queried: set[str] = set()
    for panel in panels:
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
        assert panel["targets"], panel["title"]
        ref_ids = [t["refId"] for t in panel["targets"]]
        assert len(set(ref_ids)) == len(ref_ids), panel["title"]
        for target in panel["targets"]:
            assert target["datasource"] == panel["datasource"]
            expr = target["expr"]
            assert expr.count("(") == expr.count(")"), expr
            names = queried_metrics(expr)
            assert names, expr
            queried |= names
        pos = panel["gridPos"]
        assert pos["x"] >= 0 and pos["x"] + pos["w"] <= 24, panel["title"]

    exported = {spec.exported for spec in metrics.ALL}
    assert queried - exported == set(), "the dashboard queries metrics hft_ray does not define"
    assert exported - queried == set(), "metrics on no panel of the dashboard"


def test_histogram_series_are_recognised_in_queries() -> None:
    expr = (
        "histogram_quantile(0.99, sum by (le) (rate(ray_hft_ray_tick_to_trade_seconds_bucket"
        "[5m]))) + sum(rate(ray_hft_ray_feed_batch_rows_count[1m])) + ray_hft_ray_fills_total"
    )
    assert queried_metrics(expr) == {
        "ray_hft_ray_tick_to_trade_seconds",
        "ray_hft_ray_feed_batch_rows",
        "ray_hft_ray_fills_total",
    }


def test_a_process_reading_is_pushed_once_by_the_processs_first_flusher() -> None:
    """What a whole process keeps (the shared rate budget's counts) reaches Prometheus once,
    however many flushers the process has."""
    from hft_ray import metrics as m

    make = Recorder()

    def process_reading() -> m.Reading:
        r = m.Reading()
        r.count(m.VENUE_RATE_LIMITED, 3, venue="binance")
        return r

    saved = list(m._PROCESS_READINGS), list(m._process_flusher)
    m._PROCESS_READINGS.clear()
    m._process_flusher.clear()
    try:
        m.add_process_reading(process_reading)
        m.add_process_reading(process_reading)
        first, second = m.MetricsFlusher(make=make), m.MetricsFlusher(make=make)
        first.push(m.Reading())
        second.push(m.Reading())
        assert make.made[m.VENUE_RATE_LIMITED.name].calls == [("inc", 3.0, {"venue": "binance"})]
    finally:
        m._PROCESS_READINGS[:] = saved[0]
        m._process_flusher[:] = saved[1]
