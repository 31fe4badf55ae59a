"""Health and status of a running run, over HTTP and through `hft-ray status`.

The driver already reads every actor's stats once a status interval. `StatusBuilder` (plain,
tested without Ray) turns them into one JSON document; the driver pushes it to `StatusActor`,
a small named actor on the driver's node that holds the latest document and serves:

- `GET /health`: 200 `{"status": "ok"}` when the run is healthy; 503
  `{"status": "degraded" | "down", "reasons": [...]}` otherwise. Degraded answers 503 too: a
  probe or a load balancer should not call a run healthy while a venue is dark or risk only
  reduces; `/status` says how bad it is.
- `GET /status`: the whole document (200; 503 before the first document arrives).
- `GET /metrics`: a few of the document's figures in Prometheus text format, from a
  registry of the actor's own.

Health, from the worst rule that holds:
- down: risk HALTED, its store unavailable, its state not restored, or risk not answering;
  fewer than two venues with a healthy feed (no pair left to trade); no document pushed for
  `stale_after_s` (the driver is gone or stuck).
- degraded: risk REDUCING; a venue whose feed failed or is not running, has sent no book for
  longer than `feed.max_book_age_ms`, or sent only invalid books since the previous document.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any, TextIO

import ray
from aiohttp import web
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from hft_ray import names
from hft_ray.clock import Clock, LiveClock
from hft_ray.config import HftConfig
from hft_ray.feed.source import NO_OUTAGES
from hft_ray.latency import merge_recent
from hft_ray.report import format_positions

OK, DEGRADED, DOWN = "ok", "degraded", "down"
TRADING_STATES = ("ACTIVE", "REDUCING", "HALTED")
#: Seconds the driver waits for the status actor to start serving.
_START_TIMEOUT_S = 30.0


def _iso(ns: int) -> str:
    return datetime.fromtimestamp(ns / 1e9, UTC).isoformat(timespec="milliseconds")


def _delta(now: int, before: int) -> int:
    """Growth of a counter; a counter that went back was reset by a restart."""
    return now - before if now >= before else now


class StatusBuilder:
    """Turn the latest stats of feeds, detectors, risk and executors into the status document.

    Feed stats come in the order of `config.venues`. Between calls it keeps each venue's
    previous counters, to derive update rates, books that were all invalid since the last
    call, and, when a feed does not report `last_book_age_ms`, a lower bound of the last
    book's age: the time since a call first saw the feed's counters move.
    """

    def __init__(self, config: HftConfig, run_id: str, quote: str, clock: Clock) -> None:
        self._config = config
        self._run_id = run_id
        self._quote = quote
        self._clock = clock
        self._started_ns = clock.time_ns()
        self._started_mono = clock.monotonic_ns()
        self._previous: dict[str, tuple[int, int, int]] = {}  # updates, invalid, mono
        self._moved_mono: dict[str, int] = {}
        self.http: dict[str, Any] = {"url": None, "error": ""}

    def build(
        self,
        feeds: list[dict[str, Any]],
        detectors: list[dict[str, Any]],
        risk: dict[str, Any] | None,
        executors: list[dict[str, Any]] | None = None,
        down: dict[str, float] | None = None,
    ) -> dict[str, Any]:
        """The status document now; `risk` None when the risk actor did not answer,
        `executors` None when their stats are not at hand, `down` the actors that did not
        answer the driver and for how many seconds."""
        now_mono = self._clock.monotonic_ns()
        now_ns = self._clock.time_ns()
        venues = {
            venue: self._venue(venue, stats, now_mono)
            for venue, stats in zip(self._config.venues, feeds, strict=True)
        }
        doc: dict[str, Any] = {
            "run_id": self._run_id,
            "mode": self._config.mode,
            "symbols": list(self._config.symbols),
            "started_at": _iso(self._started_ns),
            "updated_at": _iso(now_ns),
            "updated_ns": now_ns,
            "uptime_s": round((now_mono - self._started_mono) / 1e9, 3),
            "interval_s": self._config.run.status_interval_s,
            "http": dict(self.http),
            "venues": venues,
            "counts": {
                "book_updates": sum(v["updates"] for v in venues.values()),
                "invalid_books": sum(v["invalid_total"] for v in venues.values()),
                "opportunities": sum(d["opportunities"] for d in detectors),
                "opportunities_suppressed": sum(d.get("suppressed", 0) for d in detectors),
            },
            "orders": _orders(executors),
            # Each stage of the last trades, from the book to both acknowledgements.
            "latency_us": merge_recent([e.get("latency_us", {}) for e in executors or []]),
            "actors_down": {a: round(s, 1) for a, s in sorted((down or {}).items())},
        }
        return with_risk(doc, risk, self._quote)

    def _venue(self, venue: str, s: dict[str, Any], now_mono: int) -> dict[str, Any]:
        updates, invalid = int(s["updates"]), {k: int(n) for k, n in s["invalid"].items()}
        invalid_total = sum(invalid.values())
        prev_updates, prev_invalid, prev_mono = self._previous.get(venue, (0, 0, 0))
        first = venue not in self._previous
        self._previous[venue] = (updates, invalid_total, now_mono)
        new_updates = _delta(updates, prev_updates)
        new_invalid = _delta(invalid_total, prev_invalid)
        if new_updates or new_invalid:
            self._moved_mono[venue] = now_mono
        elapsed_s = (now_mono - (self._started_mono if first else prev_mono)) / 1e9
        if "last_book_age_ms" in s:
            age, source = s["last_book_age_ms"], "feed"
        else:
            moved = self._moved_mono.get(venue)
            age = None if moved is None else (now_mono - moved) / 1e6
            source = "observed"
        problems = []
        if s.get("error"):
            problems.append(f"feed failed: {s['error']}")
        elif not s.get("answering", True):
            problems.append("feed not answering")
        elif not s["running"]:
            problems.append("feed not running")
        max_age = self._config.feed.max_book_age_ms
        if age is None:
            problems.append("no book received yet")
        elif age > max_age:
            problems.append(f"no book for {age:.0f} ms (feed.max_book_age_ms {max_age:g})")
        # Checked books count among updates and invalid alike; invalidations only among
        # invalid: no more updates than invalid books means none of them was valid.
        if new_invalid and new_updates <= new_invalid:
            reasons = ", ".join(sorted(invalid))
            problems.append(f"every book invalid since the previous status ({reasons})")
        return {
            "healthy": not problems,
            "problems": problems,
            "running": bool(s["running"]),
            "error": s.get("error", ""),
            "updates": updates,
            "updates_per_s": round(new_updates / elapsed_s, 3) if elapsed_s > 0 else 0.0,
            "invalid": invalid,
            "invalid_total": invalid_total,
            "last_book_age_ms": None if age is None else round(float(age), 3),
            "last_book_age_source": source,
            "queue_depth": int(s.get("queue_depth", 0)),
            "backpressure_waits": int(s.get("backpressure_waits", 0)),
            "resyncs": int(s.get("resyncs", 0)),
            "outages": dict(s.get("outages") or NO_OUTAGES),
        }


def _orders(executors: list[dict[str, Any]] | None) -> dict[str, Any]:
    """What the executors report; `by_status` once they report orders by venue and status."""
    if executors is None:
        return {"executors_answered": False}
    by_venue: dict[str, dict[str, int]] = {}
    for e in executors:
        for venue, statuses in e.get("orders", {}).items():
            mine = by_venue.setdefault(venue, {})
            for status, n in statuses.items():
                mine[status] = mine.get(status, 0) + int(n)
    by_status: dict[str, int] = {}
    for statuses in by_venue.values():
        for status, n in statuses.items():
            by_status[status] = by_status.get(status, 0) + n
    return {
        "executors_answered": True,
        "executions": sum(int(e.get("executions", 0)) for e in executors),
        "executing": sum(int(e.get("running", 0)) for e in executors),
        "reconciled": sum(int(e.get("reconciled", 0)) for e in executors),
        "aborted_store_unavailable": sum(
            int(e.get("aborted_store_unavailable", 0)) for e in executors
        ),
        "by_status": by_status,
        "by_venue": by_venue,
    }


def with_risk(doc: dict[str, Any], risk: dict[str, Any] | None, quote: str = "") -> dict[str, Any]:
    """`doc` with its risk part taken from the risk actor's `stats()` (None: risk did not
    answer) and its health assessed again; `hft-ray status` uses it to show risk as it is
    now rather than as the last push saw it."""
    out = dict(doc)
    counts = {
        k: v
        for k, v in doc.get("counts", {}).items()
        if k in ("book_updates", "invalid_books", "opportunities", "opportunities_suppressed")
    }
    quote = quote or doc.get("pnl", {}).get("quote", "")
    if risk is None:
        out.update(risk_answered=False, state=None, state_reason="", breakers={})
        out.update(store_ok=None, restored=None, pnl={"quote": quote}, positions={})
    else:
        rejected = {k: int(n) for k, n in risk["rejected"].items()}
        out.update(
            risk_answered=True,
            state=risk["state"],
            state_reason=risk["state_reason"],
            breakers=risk["breakers"],
            store_ok=risk["store_ok"],
            restored=risk["restored"],
            positions=risk["positions"],
            pnl={
                "quote": quote,
                "realized": risk["realized_pnl_quote"],
                "fees": risk["fees_quote"],
                "peak": risk.get("peak_pnl_quote", 0.0),
                "gross_exposure": risk["gross_exposure_quote"],
            },
        )
        counts.update(
            approved=risk["approved"],
            clipped=risk["clipped"],
            rejected=rejected,
            rejected_total=sum(rejected.values()),
            trades=risk["trades"],
            legs_failed=risk["legs_failed"],
            unwinds=risk["unwinds"],
            in_flight=risk["in_flight"],
            fills=risk.get("fills", 0),
        )
    out["counts"] = counts
    out["status"], out["reasons"] = assess(doc.get("venues", {}), risk, doc.get("actors_down", {}))
    return out


def assess(
    venues: dict[str, dict[str, Any]],
    risk: dict[str, Any] | None,
    silent: dict[str, float] | None = None,
) -> tuple[str, list[str]]:
    """Overall health and its reasons, from the venues' health, risk's stats and the
    actors that did not answer the driver (`silent`, seconds each)."""
    down: list[str] = []
    degraded: list[str] = []
    silent = silent or {}
    if risk is None:
        since = f" for {silent['risk']:.1f} s" if "risk" in silent else ""
        down.append(f"risk: did not answer{since}")
    else:
        state = risk["state"]
        why = f" ({risk['state_reason']})" if risk.get("state_reason") else ""
        if state == "HALTED":
            down.append(f"risk: HALTED{why}")
        elif state == "REDUCING":
            degraded.append(f"risk: REDUCING{why}")
        if not risk["store_ok"]:
            down.append("risk: store unavailable, approving nothing")
        elif not risk["restored"]:
            down.append("risk: state not restored yet, approving nothing")
    degraded.extend(f"{a}: not answering for {t:.1f} s" for a, t in silent.items() if a != "risk")
    for venue, v in venues.items():
        degraded.extend(f"{venue}: {p}" for p in v["problems"])
    healthy = [venue for venue, v in venues.items() if v["healthy"]]
    if len(healthy) < 2:
        down.append(f"fewer than two venues with a healthy feed ({', '.join(healthy) or 'none'})")
    if down:
        return DOWN, down + degraded
    return (DEGRADED, degraded) if degraded else (OK, [])


def served(doc: dict[str, Any] | None, now_ns: int, stale_after_s: float) -> dict[str, Any]:
    """The document as served at `now_ns`: down when none arrived yet or the latest is
    older than `stale_after_s`."""
    if doc is None:
        return {"status": DOWN, "reasons": ["no status yet: the run is starting"]}
    age_s = (now_ns - doc["updated_ns"]) / 1e9
    out = {**doc, "status_age_s": round(age_s, 3)}
    if age_s > stale_after_s:
        out["status"] = DOWN
        out["reasons"] = [
            f"no status for {age_s:.1f} s: the driver is gone or stuck",
            *doc["reasons"],
        ]
    return out


def health_body(doc: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    """HTTP status and body of `GET /health`."""
    if doc["status"] == OK:
        return 200, {"status": OK}
    return 503, {"status": doc["status"], "reasons": doc["reasons"]}


# -- Prometheus -------------------------------------------------------------------------------


class _DocumentCollector:
    """Figures of the latest document, read at each scrape."""

    def __init__(self, document: Callable[[], dict[str, Any]]) -> None:
        self._document = document

    def collect(self) -> Iterator[Metric]:
        doc = self._document()
        health = GaugeMetricFamily(
            "hft_ray_health", "1 for the run's current health, 0 for the others.", labels=["status"]
        )
        for status in (OK, DEGRADED, DOWN):
            health.add_metric([status], float(doc["status"] == status))
        yield health
        if "updated_ns" not in doc:
            return
        yield GaugeMetricFamily(
            "hft_ray_status_age_seconds",
            "Seconds since the driver pushed this document.",
            value=doc.get("status_age_s", 0.0),
        )
        yield GaugeMetricFamily(
            "hft_ray_uptime_seconds", "Seconds since the run started.", value=doc["uptime_s"]
        )
        yield from _venue_metrics(doc["venues"])
        yield from _risk_metrics(doc)


def _venue_metrics(venues: dict[str, dict[str, Any]]) -> Iterator[Metric]:
    up = GaugeMetricFamily(
        "hft_ray_feed_up", "1 while the venue's feed is healthy.", labels=["venue"]
    )
    updates = CounterMetricFamily(
        "hft_ray_book_updates", "Book updates received from the venue.", labels=["venue"]
    )
    invalid = CounterMetricFamily(
        "hft_ray_book_invalid", "Books not tradable, by reason.", labels=["venue", "reason"]
    )
    age = GaugeMetricFamily(
        "hft_ray_book_age_seconds", "Seconds since the venue's last book.", labels=["venue"]
    )
    queue = GaugeMetricFamily(
        "hft_ray_feed_batches_in_flight",
        "Batches sent to detectors and not yet acknowledged.",
        labels=["venue"],
    )
    for venue, v in venues.items():
        up.add_metric([venue], float(v["healthy"]))
        updates.add_metric([venue], float(v["updates"]))
        for reason, n in v["invalid"].items():
            invalid.add_metric([venue, reason], float(n))
        if v["last_book_age_ms"] is not None:
            age.add_metric([venue], v["last_book_age_ms"] / 1e3)
        queue.add_metric([venue], float(v["queue_depth"]))
    yield from (up, updates, invalid, age, queue)


def _risk_metrics(doc: dict[str, Any]) -> Iterator[Metric]:
    counts = doc["counts"]
    yield CounterMetricFamily(
        "hft_ray_opportunities", "Opportunities sent to risk.", value=counts["opportunities"]
    )
    if not doc["risk_answered"]:
        return
    state = GaugeMetricFamily(
        "hft_ray_risk_trading_state", "1 for the current trading state.", labels=["state"]
    )
    for name in TRADING_STATES:
        state.add_metric([name], float(doc["state"] == name))
    yield state
    breakers = GaugeMetricFamily(
        "hft_ray_risk_breaker_tripped", "1 while the breaker is tripped.", labels=["breaker"]
    )
    for name in doc["breakers"]:
        breakers.add_metric([name], 1.0)
    yield breakers
    rejected = CounterMetricFamily(
        "hft_ray_risk_rejections", "Opportunities rejected, by reason.", labels=["reason"]
    )
    for reason, n in counts["rejected"].items():
        rejected.add_metric([reason], float(n))
    yield rejected
    for name, key, text in (
        ("hft_ray_risk_approvals", "approved", "Opportunities approved (clipped or not)."),
        ("hft_ray_trades", "trades", "Approved trades with at least one fill."),
        ("hft_ray_legs_failed", "legs_failed", "Legs that did not fill completely."),
        ("hft_ray_unwinds", "unwinds", "Trades whose broken leg was repaired."),
    ):
        yield CounterMetricFamily(name, text, value=float(counts[key]))
    yield GaugeMetricFamily(
        "hft_ray_risk_trades_in_flight",
        "Approved trades not yet reported back.",
        value=float(counts["in_flight"]),
    )
    pnl = doc["pnl"]
    yield GaugeMetricFamily(
        "hft_ray_risk_realized_pnl_quote",
        "Realized PnL net of fees, in the quote currency.",
        value=pnl["realized"],
    )
    yield GaugeMetricFamily(
        "hft_ray_risk_gross_exposure_quote",
        "Gross exposure over venues, in the quote currency.",
        value=pnl["gross_exposure"],
    )


def metrics_registry(document: Callable[[], dict[str, Any]]) -> CollectorRegistry:
    """A registry of its own (not the process-wide one) exposing `document()`'s figures."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_DocumentCollector(document))
    return registry


# -- the actor ---------------------------------------------------------------------------------


#: Bytes of a request line, of one header, and of a body the status server accepts.
_MAX_REQUEST_BYTES = 4096


@ray.remote(num_cpus=0, max_restarts=0)
class StatusActor:
    """Holds the latest status document and serves it over HTTP."""

    def __init__(self, stale_after_s: float) -> None:
        self._doc: dict[str, Any] | None = None
        self._stale_after_s = stale_after_s
        self._runner: web.AppRunner | None = None
        self._registry = metrics_registry(self.document_now)

    async def serve(self, host: str, port: int) -> dict[str, Any]:
        """Listen on host:port; return the URL, or the error that prevented it."""
        # Read-only and small: GET and HEAD of three paths (any other method is 405), no
        # request body, request line and headers capped well below aiohttp's defaults.
        app = web.Application(client_max_size=_MAX_REQUEST_BYTES)
        app.router.add_get("/health", self._health)
        app.router.add_get("/status", self._status)
        app.router.add_get("/metrics", self._metrics)
        runner = web.AppRunner(
            app,
            access_log=None,
            max_line_size=_MAX_REQUEST_BYTES,
            max_field_size=_MAX_REQUEST_BYTES,
            max_headers=32,
            keepalive_timeout=15,
        )
        await runner.setup()
        try:
            await web.TCPSite(runner, host, port).start()
        except OSError as err:
            await runner.cleanup()
            return {"url": None, "error": f"cannot listen on {host}:{port}: {err.strerror or err}"}
        self._runner = runner
        shown = ray.util.get_node_ip_address() if host in ("0.0.0.0", "::") else host
        return {"url": f"http://{shown}:{port}", "error": ""}

    async def update(self, doc: dict[str, Any]) -> None:
        self._doc = doc

    def document_now(self) -> dict[str, Any]:
        return served(self._doc, time.time_ns(), self._stale_after_s)

    async def document(self) -> dict[str, Any] | None:
        """The latest document as served, None before the first push."""
        return None if self._doc is None else self.document_now()

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _health(self, request: web.Request) -> web.Response:
        code, body = health_body(self.document_now())
        return web.json_response(body, status=code)

    async def _status(self, request: web.Request) -> web.Response:
        doc = self.document_now()
        return web.json_response(doc, status=200 if self._doc is not None else 503)

    async def _metrics(self, request: web.Request) -> web.Response:
        body = generate_latest(self._registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


class StatusPublisher:
    """The driver's side: start the status actor on this node, push a document each status
    interval without waiting on anyone, stop it. Nothing here stops a run: every failure
    becomes `error`, shown in the document and the report."""

    def __init__(self, config: HftConfig, run_id: str, quote: str, executors: list[Any]) -> None:
        self.builder = StatusBuilder(config, run_id, quote, LiveClock())
        self._config = config.status
        self._stale_after_s = max(5.0, 5 * config.run.status_interval_s)
        self._executors = executors
        self._actor: Any = None
        self._last_push: Any = None
        self._executor_refs: list[Any] = []
        self._executor_stats: list[dict[str, Any]] | None = None
        self.url: str | None = None
        self.error = ""
        self._out: TextIO | None = None

    @property
    def status_url(self) -> str | None:
        """Where `GET /status` answers, None when not served."""
        return None if self.url is None else f"{self.url}/status"

    def start(self, out: TextIO) -> None:
        """Create the actor and start serving; say where on `out`, or why not."""
        cfg = self._config
        self._out = out
        node = ray.get_runtime_context().get_node_id()
        try:
            self._actor = StatusActor.options(  # type: ignore[attr-defined]
                name=names.STATUS,
                scheduling_strategy=NodeAffinitySchedulingStrategy(node_id=node, soft=False),
            ).remote(self._stale_after_s)
            answer = ray.get(self._actor.serve.remote(cfg.host, cfg.port), timeout=_START_TIMEOUT_S)
        except (ray.exceptions.RayError, ValueError) as err:
            self.error = f"status actor did not start: {type(err).__name__}: {err}"
            answer = {"url": None, "error": self.error}
            self._kill()
        self.url, self.error = answer["url"], answer["error"]
        self.builder.http = {"url": self.url, "error": self.error}
        if self.url:
            print(f"status: {self.status_url}", file=out, flush=True)
        else:
            print(f"status: WARNING, not served over HTTP: {self.error}", file=out, flush=True)

    def push(
        self,
        feeds: list[dict[str, Any]],
        detectors: list[dict[str, Any]],
        risk: dict[str, Any] | None,
        executors: list[dict[str, Any]] | None = None,
        down: dict[str, float] | None = None,
    ) -> None:
        """Build the document from the stats the driver just read and send it, one actor call;
        executors' stats, unless the driver read them (a trading node's), are asked for here
        and used once they have answered. `risk` None and `down` as in `StatusBuilder.build`."""
        if self._actor is None:
            return
        if executors is None:
            self._poll_executors()
            executors = self._executor_stats
        doc = self.builder.build(feeds, detectors, risk, executors, down)
        if self._last_push is not None and ray.wait([self._last_push], timeout=0)[0]:
            try:
                ray.get(self._last_push)
            except ray.exceptions.RayError as err:
                self.error = f"status actor lost: {type(err).__name__}"
                print(f"status: WARNING, {self.error}; the run goes on", file=self._out, flush=True)
                self._actor = None
                return
        self._last_push = self._actor.update.remote(doc)

    def _poll_executors(self) -> None:
        refs = self._executor_refs
        if refs and len(ray.wait(refs, num_returns=len(refs), timeout=0)[0]) == len(refs):
            try:
                self._executor_stats = ray.get(refs)
            except ray.exceptions.RayError:
                self._executor_stats = None  # one is restarting; ask again
            refs = []
        if not refs:
            self._executor_refs = [e.stats.remote() for e in self._executors]

    def close(self) -> None:
        """Stop serving (the port is free once this returns) and kill the actor."""
        if self._actor is not None:
            with contextlib.suppress(ray.exceptions.RayError):
                ray.get(self._actor.close.remote(), timeout=10)
        self._kill()

    def _kill(self) -> None:
        if self._actor is not None:
            with contextlib.suppress(ray.exceptions.RayError, ValueError):
                ray.kill(self._actor, no_restart=True)
            self._actor = None


def format_document(doc: dict[str, Any]) -> str:
    """The status document for a terminal."""
    lines = [
        f"run {doc['run_id']} ({doc['mode']}), up {doc['uptime_s']:.0f} s: {doc['status'].upper()}",
    ]
    lines += [f"  ! {r}" for r in doc["reasons"]]
    if doc["http"]["url"]:
        lines.append(f"  {doc['http']['url']}/status")
    elif doc["http"]["error"]:
        lines.append(f"  not served over HTTP: {doc['http']['error']}")
    lines.append("feeds:")
    width = max(len(v) for v in doc["venues"])
    for venue, v in doc["venues"].items():
        state = "failed" if v["error"] else ("running" if v["running"] else "STOPPED")
        age = _age_text(v["last_book_age_ms"], v["last_book_age_source"], doc["interval_s"])
        invalid = f" {v['invalid']}" if v["invalid"] else ""
        lines.append(
            f"  {venue:<{width}}  {'ok ' if v['healthy'] else 'BAD'} {state}  updates "
            f"{v['updates']} ({v['updates_per_s']:.1f}/s)  last book {age}  queue "
            f"{v['queue_depth']}  invalid {v['invalid_total']}{invalid}"
        )
    if not doc["risk_answered"]:
        lines.append("risk: did not answer")
        return "\n".join(lines)
    lines += risk_lines(doc, doc["counts"], doc["pnl"])
    lines += latency_lines(doc.get("latency_us", {}))
    return "\n".join(lines)


def latency_lines(latency_us: dict[str, Any]) -> list[str]:
    """The stages of the trades, p50 / p99 in us, for a terminal ([] before the first)."""
    stages = [n for n in latency_us if n not in ("tick_to_ack", "approve_to_ack")]
    parts = [
        f"{n} {latency_us[n]['p50']:.0f}/{latency_us[n]['p99']:.0f}"
        for n in stages
        if latency_us[n]["count"]
    ]
    return [f"latency us p50/p99: {' | '.join(parts)}"] if parts else []


def risk_lines(risk: dict[str, Any], c: dict[str, Any], pnl: dict[str, Any]) -> list[str]:
    """Risk's part of a status, for a terminal: `risk` has state, state_reason, breakers and
    positions; `c` the counts (opportunities optional); `pnl` realized, fees, gross_exposure
    (quote optional)."""
    opportunities = f"opportunities {c['opportunities']}  " if "opportunities" in c else ""
    reason = f" ({risk['state_reason']})" if risk["state_reason"] else ""
    lines = [
        f"risk {risk['state']}{reason}",
        f"  {opportunities}approved {c['approved']}  clipped {c['clipped']}  rejected "
        f"{c['rejected_total']} {c['rejected'] or ''}".rstrip(),
        f"  trades {c['trades']}  legs failed {c['legs_failed']}  unwinds {c['unwinds']}  "
        f"in flight {c['in_flight']}  fills {c['fills']}",
        f"  realized PnL {pnl['realized']:+.4f} {pnl.get('quote', '')}".rstrip()
        + f"  fees {pnl['fees']:.4f}  gross exposure {pnl['gross_exposure']:.2f}",
    ]
    for name, b in risk["breakers"].items():
        lines.append(f"  breaker {name}: {b['forces']} ({b['detail']})")
    return lines + format_positions(risk["positions"])


def _age_text(age_ms: float | None, source: str, interval_s: float) -> str:
    if age_ms is None:
        return "none yet"
    if source == "feed":
        return f"{age_ms:.0f} ms"
    # Observed by the driver: a lower bound, to within one status interval.
    return f"< {interval_s:g} s" if age_ms == 0 else f"{age_ms:.0f}+ ms"
