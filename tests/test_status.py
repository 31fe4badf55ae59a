"""Health and status: the document built from stats (no Ray), its health rules and ages; then
the status actor's HTTP server and `hft-ray status` during a real run."""

from __future__ import annotations

import io
import json
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import ray
from prometheus_client.parser import text_string_to_metric_families

from hft_ray import names
from hft_ray.clock import TestClock
from hft_ray.config import ConfigError, HftConfig, parse_config
from hft_ray.markets import simulated_markets
from hft_ray.risk.core import RiskCore
from hft_ray.runner import run
from hft_ray.status import (
    DEGRADED,
    DOWN,
    OK,
    StatusBuilder,
    format_document,
    health_body,
    metrics_registry,
    served,
    with_risk,
)
from hft_ray.types import Universe
from tests.conftest import default_config_dict, free_port, merge

VENUES = ("binance", "okx", "gateio")
SECOND = 1_000_000_000


def feed(
    updates: int,
    invalid: dict[str, int] | None = None,
    *,
    running: bool = True,
    error: str = "",
    queue: int = 0,
    **extra: Any,
) -> dict[str, Any]:
    """Stats as FeedActor.stats() reports them."""
    return {
        "updates": updates,
        "invalid": invalid or {},
        "batches": updates // 8,
        "rows_sent": updates,
        "queue_depth": queue,
        "backpressure_waits": 0,
        "running": running,
        "error": error,
        **extra,
    }


def detector(opportunities: int) -> dict[str, Any]:
    return {"updates": 0, "opportunities": opportunities, "suppressed": 1}


@pytest.fixture
def config(tmp_path: Path) -> HftConfig:
    return parse_config(merge(default_config_dict(), {"run": {"runs_dir": str(tmp_path)}}))


@pytest.fixture
def risk_core(config: HftConfig) -> RiskCore:
    """A real risk core, so the stats have exactly the shape RiskActor.stats() returns."""
    universe = Universe(tuple(config.venues), tuple(config.symbols))
    core = RiskCore(config, universe, simulated_markets(config), TestClock())
    core.store_ok = core.restored = True
    return core


def build_after(
    builder: StatusBuilder,
    clock: TestClock,
    feeds: list[dict[str, Any]],
    risk: dict[str, Any] | None,
    *,
    step_ns: int = SECOND,
) -> dict[str, Any]:
    clock.advance(step_ns)
    return builder.build(feeds, [detector(3)], risk, [])


def test_a_healthy_run_is_ok_with_rates_counts_and_risk(
    config: HftConfig, risk_core: RiskCore
) -> None:
    clock = TestClock()
    builder = StatusBuilder(config, "run-1", "USDT", clock)
    build_after(builder, clock, [feed(100), feed(80), feed(60)], risk_core.snapshot())
    doc = build_after(
        builder,
        clock,
        [feed(300, {"crossed": 2}), feed(280), feed(160, queue=3)],
        risk_core.snapshot(),
        step_ns=2 * SECOND,
    )
    assert doc["status"] == OK and doc["reasons"] == []
    assert health_body(doc) == (200, {"status": "ok"})
    assert doc["run_id"] == "run-1" and doc["mode"] == "sim" and doc["uptime_s"] == 3.0
    assert list(doc["venues"]) == list(VENUES)
    binance = doc["venues"]["binance"]
    assert binance["healthy"] and binance["running"] and binance["updates"] == 300
    assert binance["updates_per_s"] == 100.0  # 200 more over two seconds
    assert binance["invalid"] == {"crossed": 2} and binance["invalid_total"] == 2
    assert doc["venues"]["gateio"]["queue_depth"] == 3
    assert doc["counts"]["book_updates"] == 740 and doc["counts"]["invalid_books"] == 2
    assert doc["counts"]["opportunities"] == 3 and doc["counts"]["approved"] == 0
    assert doc["state"] == "ACTIVE" and doc["breakers"] == {}
    assert doc["pnl"]["quote"] == "USDT" and doc["pnl"]["realized"] == 0.0
    assert doc["orders"]["executors_answered"] and doc["orders"]["executions"] == 0
    json.dumps(doc)  # plain data all the way down


def test_observed_book_age_is_the_time_since_the_counters_last_moved(
    config: HftConfig, risk_core: RiskCore
) -> None:
    """Without a feed-reported age, the age is a lower bound: a venue whose counters stood
    still over a whole status interval longer than max_book_age_ms is stale."""
    clock = TestClock()
    builder = StatusBuilder(config, "r", "USDT", clock)
    risk = risk_core.snapshot()
    doc = build_after(builder, clock, [feed(10), feed(10), feed(0)], risk)
    assert doc["venues"]["binance"]["last_book_age_ms"] == 0.0
    assert doc["venues"]["binance"]["last_book_age_source"] == "observed"
    assert doc["venues"]["gateio"]["last_book_age_ms"] is None
    assert doc["venues"]["gateio"]["problems"] == ["no book received yet"]
    assert doc["status"] == DEGRADED and doc["reasons"] == ["gateio: no book received yet"]

    doc = build_after(builder, clock, [feed(20), feed(10), feed(5)], risk, step_ns=SECOND // 4)
    okx = doc["venues"]["okx"]
    assert okx["last_book_age_ms"] == 250.0 and okx["healthy"]  # within max_book_age_ms 500
    doc = build_after(builder, clock, [feed(30), feed(10), feed(9)], risk, step_ns=SECOND // 2)
    okx = doc["venues"]["okx"]
    assert okx["last_book_age_ms"] == 750.0 and not okx["healthy"]
    assert okx["problems"] == ["no book for 750 ms (feed.max_book_age_ms 500)"]
    assert doc["status"] == DEGRADED
    assert doc["reasons"] == ["okx: no book for 750 ms (feed.max_book_age_ms 500)"]
    doc = build_after(builder, clock, [feed(40), feed(11), feed(12)], risk)
    assert doc["venues"]["okx"]["last_book_age_ms"] == 0.0 and doc["status"] == OK


def test_a_feed_reported_book_age_wins_over_the_observed_one(
    config: HftConfig, risk_core: RiskCore
) -> None:
    clock = TestClock()
    builder = StatusBuilder(config, "r", "USDT", clock)
    feeds = [feed(10, last_book_age_ms=12.5), feed(10, last_book_age_ms=900.0), feed(10)]
    doc = build_after(builder, clock, feeds, risk_core.snapshot())
    assert doc["venues"]["binance"]["last_book_age_ms"] == 12.5
    assert doc["venues"]["binance"]["last_book_age_source"] == "feed"
    assert doc["venues"]["okx"]["problems"] == ["no book for 900 ms (feed.max_book_age_ms 500)"]
    assert doc["venues"]["gateio"]["last_book_age_source"] == "observed"


def test_a_failed_feed_a_stopped_feed_and_all_invalid_books_degrade_then_take_it_down(
    config: HftConfig, risk_core: RiskCore
) -> None:
    clock = TestClock()
    builder = StatusBuilder(config, "r", "USDT", clock)
    risk = risk_core.snapshot()
    build_after(builder, clock, [feed(10), feed(10), feed(10)], risk)
    doc = build_after(builder, clock, [feed(20), feed(20, running=False), feed(20)], risk)
    assert doc["status"] == DEGRADED and doc["reasons"] == ["okx: feed not running"]
    assert health_body(doc) == (503, {"status": DEGRADED, "reasons": ["okx: feed not running"]})

    # Invalidations alone (a sequence gap, no snapshot since): no valid book on gateio.
    gap = {"sequence_gap": 3}
    doc = build_after(builder, clock, [feed(30), feed(30), feed(20, gap)], risk)
    assert doc["reasons"] == ["gateio: every book invalid since the previous status (sequence_gap)"]
    assert doc["venues"]["gateio"]["last_book_age_ms"] == 0.0  # it did hear from the venue
    # Books that arrive but all fail a check count as updates and as invalid alike.
    crossed = {"sequence_gap": 3, "crossed": 5}
    doc = build_after(builder, clock, [feed(40), feed(40), feed(25, crossed)], risk)
    assert doc["venues"]["gateio"]["problems"] == [
        "every book invalid since the previous status (crossed, sequence_gap)"
    ]
    assert doc["status"] == DEGRADED
    # Some valid among them: fine again.
    doc = build_after(builder, clock, [feed(50), feed(50), feed(35, crossed)], risk)
    assert doc["status"] == OK

    # Two of three venues out: no pair left to trade.
    failed = feed(50, error="ConnectionError: gone", running=False)
    more_crossed = {"sequence_gap": 3, "crossed": 15}
    doc = build_after(builder, clock, [failed, feed(60), feed(45, more_crossed)], risk)
    assert doc["status"] == DOWN
    assert doc["reasons"] == [
        "fewer than two venues with a healthy feed (okx)",
        "binance: feed failed: ConnectionError: gone",
        "binance: no book for 1000 ms (feed.max_book_age_ms 500)",
        "gateio: every book invalid since the previous status (crossed, sequence_gap)",
    ]
    assert doc["venues"]["binance"]["error"] == "ConnectionError: gone"
    assert "BAD failed" in format_document(doc)


def test_a_restarted_feed_whose_counters_went_back_is_not_stale(
    config: HftConfig, risk_core: RiskCore
) -> None:
    clock = TestClock()
    builder = StatusBuilder(config, "r", "USDT", clock)
    build_after(builder, clock, [feed(500), feed(500), feed(500)], risk_core.snapshot())
    doc = build_after(builder, clock, [feed(40), feed(600), feed(600)], risk_core.snapshot())
    assert doc["venues"]["binance"]["updates_per_s"] == 40.0
    assert doc["venues"]["binance"]["last_book_age_ms"] == 0.0 and doc["status"] == OK


def _store_down(core: RiskCore) -> None:
    core.store_ok = False


def _not_restored(core: RiskCore) -> None:
    core.restored = False


@pytest.mark.parametrize(
    ("trip", "status", "reason"),
    [
        (lambda c: c.halt("fat finger"), DOWN, "risk: HALTED (operator: fat finger)"),
        (lambda c: c.reduce_only("calm down"), DEGRADED, "risk: REDUCING (operator: calm down)"),
        (_store_down, DOWN, "risk: store unavailable, approving nothing"),
        (_not_restored, DOWN, "risk: state not restored yet, approving nothing"),
    ],
)
def test_risk_states_and_its_store_set_the_health(
    config: HftConfig,
    risk_core: RiskCore,
    trip: Callable[[RiskCore], None],
    status: str,
    reason: str,
) -> None:
    clock = TestClock()
    builder = StatusBuilder(config, "r", "USDT", clock)
    trip(risk_core)
    doc = build_after(builder, clock, [feed(10), feed(10), feed(10)], risk_core.snapshot())
    assert doc["status"] == status and doc["reasons"] == [reason]
    if risk_core.breakers:
        assert doc["breakers"]["operator"]["detail"] in ("fat finger", "calm down")
    assert health_body(doc)[0] == 503


def test_risk_not_answering_is_down_and_a_live_risk_read_replaces_the_pushed_one(
    config: HftConfig, risk_core: RiskCore
) -> None:
    clock = TestClock()
    builder = StatusBuilder(config, "r", "USDT", clock)
    doc = build_after(builder, clock, [feed(10), feed(10), feed(10)], None)
    assert doc["status"] == DOWN and doc["reasons"] == ["risk: did not answer"]
    assert not doc["risk_answered"] and doc["state"] is None
    assert "risk: did not answer" in format_document(doc)

    risk_core.halt("now")
    fresh = with_risk(doc, risk_core.snapshot())
    assert fresh["state"] == "HALTED" and fresh["status"] == DOWN
    assert fresh["reasons"] == ["risk: HALTED (operator: now)"]
    assert fresh["counts"]["book_updates"] == 30 and fresh["counts"]["approved"] == 0
    assert fresh["pnl"]["quote"] == "USDT"
    assert fresh["venues"] == doc["venues"]


def test_a_document_no_longer_pushed_is_served_as_down() -> None:
    doc = {"status": OK, "reasons": [], "updated_ns": 100 * SECOND}
    assert served(doc, 102 * SECOND, 5.0) == {**doc, "status_age_s": 2.0}
    late = served(doc, 107 * SECOND, 5.0)
    assert late["status"] == DOWN
    assert late["reasons"] == ["no status for 7.0 s: the driver is gone or stuck"]
    assert served(None, 0, 5.0) == {
        "status": DOWN,
        "reasons": ["no status yet: the run is starting"],
    }


def test_orders_by_status_are_summed_over_executors_when_they_report_them(
    config: HftConfig, risk_core: RiskCore
) -> None:
    clock = TestClock()
    builder = StatusBuilder(config, "r", "USDT", clock)
    executors = [
        {"executions": 4, "running": 1, "reconciled": 0, "aborted_store_unavailable": 0},
        {
            "executions": 2,
            "running": 0,
            "reconciled": 1,
            "aborted_store_unavailable": 1,
            "orders": {"okx": {"filled": 3, "rejected": 1}, "binance": {"filled": 2}},
        },
    ]
    clock.advance(SECOND)
    doc = builder.build([feed(1)] * 3, [detector(0)], risk_core.snapshot(), executors)
    assert doc["orders"] == {
        "executors_answered": True,
        "executions": 6,
        "executing": 1,
        "reconciled": 1,
        "aborted_store_unavailable": 1,
        "by_status": {"filled": 5, "rejected": 1},
        "by_venue": {"okx": {"filled": 3, "rejected": 1}, "binance": {"filled": 2}},
    }
    doc = builder.build([feed(1)] * 3, [detector(0)], risk_core.snapshot(), None)
    assert doc["orders"] == {"executors_answered": False}


def test_metrics_are_prometheus_text_from_a_registry_of_their_own(
    config: HftConfig, risk_core: RiskCore
) -> None:
    from prometheus_client import REGISTRY, generate_latest

    clock = TestClock()
    builder = StatusBuilder(config, "r", "USDT", clock)
    risk_core.halt("x")
    doc = build_after(
        builder, clock, [feed(100, {"crossed": 2}), feed(50), feed(0)], risk_core.snapshot()
    )
    text = generate_latest(metrics_registry(lambda: served(doc, doc["updated_ns"], 5.0)))
    families = {f.name: f for f in text_string_to_metric_families(text.decode())}
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for f in families.values()
        for s in f.samples
    }
    assert samples["hft_ray_health", (("status", "down"),)] == 1.0
    assert samples["hft_ray_health", (("status", "ok"),)] == 0.0
    assert samples["hft_ray_book_updates_total", (("venue", "binance"),)] == 100.0
    assert samples["hft_ray_book_invalid_total", (("reason", "crossed"), ("venue", "binance"))] == 2
    assert samples["hft_ray_feed_up", (("venue", "gateio"),)] == 0.0
    assert samples["hft_ray_book_age_seconds", (("venue", "okx"),)] == 0.0
    assert ("hft_ray_book_age_seconds", (("venue", "gateio"),)) not in samples  # never had one
    assert samples["hft_ray_risk_trading_state", (("state", "HALTED"),)] == 1.0
    assert samples["hft_ray_risk_breaker_tripped", (("breaker", "operator"),)] == 1.0
    assert samples["hft_ray_opportunities_total", ()] == 3.0
    assert samples["hft_ray_uptime_seconds", ()] == 1.0
    assert families["hft_ray_book_updates"].type == "counter"
    assert b"hft_ray_" not in generate_latest(REGISTRY)  # the process-wide registry is untouched


def test_status_port_must_lie_outside_rays_worker_ports() -> None:
    with pytest.raises(ConfigError, match=r"status\.port: .*worker port range"):
        parse_config(merge(default_config_dict(), {"status": {"port": 12000}}))
    assert parse_config(default_config_dict()).status.port == 8787


# -- on the session's Ray ----------------------------------------------------------------------


def _get(url: str, method: str = "GET", headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    request = urllib.request.Request(url, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()


@pytest.mark.ray
@pytest.mark.slow
def test_a_running_run_serves_health_status_and_metrics_and_the_cli_shows_them(
    ray_session: str, tmp_path: Path
) -> None:
    port = free_port()
    config = parse_config(
        merge(
            default_config_dict(),
            {"run": {"runs_dir": str(tmp_path)}, "status": {"port": port}},
        )
    )
    base = f"http://127.0.0.1:{port}"
    seen: dict[str, Any] = {}

    def probe() -> bool:
        if "cli" in seen:
            return seen["cli"].poll() is not None
        code, body = _get(f"{base}/status")
        if code != 200:
            return False  # before the first push: 503 "no status yet"
        doc = json.loads(body)
        seen.setdefault("health", []).append((doc["status"], *_get(f"{base}/health")))
        if doc["counts"]["opportunities"] == 0:
            return False
        seen["status"] = doc
        seen["metrics"] = _get(f"{base}/metrics")
        seen["refused"] = [
            _get(f"{base}/status", method)[0] for method in ("POST", "PUT", "DELETE")
        ] + [_get(f"{base}/status", headers={"X-Big": "x" * 10_000})[0]]
        seen["cli"] = subprocess.Popen(
            [sys.executable, "-m", "hft_ray.cli", "status", "--address", ray_session, "--json"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        return False

    out = io.StringIO()
    report = run(config, duration_s=90, out=out, stop_when=probe)
    assert "cli" in seen, "the run ended before it found an opportunity"
    stdout, stderr = seen["cli"].communicate(timeout=60)
    assert seen["cli"].returncode == 0, stderr[-2000:]

    assert f"status: {base}/status" in out.getvalue()
    assert report["status_url"] == f"{base}/status" and report["status_error"] == ""
    doc = seen["status"]
    assert doc["run_id"] == report["run_id"] and doc["http"] == {"url": base, "error": ""}
    for venue in VENUES:
        v = doc["venues"][venue]
        assert v["running"] and v["updates"] > 0 and v["last_book_age_ms"] is not None
    assert doc["counts"]["book_updates"] > 0 and doc["counts"]["opportunities"] > 0
    assert doc["state"] in ("ACTIVE", "REDUCING", "HALTED")
    # /health agrees with the document it was served beside, both ways.
    for status, code, body in seen["health"]:
        answer = json.loads(body)
        if answer["status"] == status == OK:
            assert code == 200 and answer == {"status": "ok"}
        elif answer["status"] != OK:
            assert code == 503 and answer["reasons"]
    assert any(code == 200 for _, code, _ in seen["health"])

    # Read-only, and requests are small.
    assert seen["refused"][:3] == [405, 405, 405] and seen["refused"][3] in (400, 431)

    code, text = seen["metrics"]
    assert code == 200
    families = {f.name: f for f in text_string_to_metric_families(text.decode())}
    updates = {s.labels["venue"]: s.value for s in families["hft_ray_book_updates"].samples}
    assert set(updates) == set(VENUES) and all(n > 0 for n in updates.values())
    assert families["hft_ray_opportunities"].samples[0].value > 0

    shown = json.loads(stdout)
    assert set(shown["venues"]) == set(VENUES)
    assert all(shown["venues"][v]["updates"] > 0 for v in VENUES)
    assert shown["risk_answered"] and shown["state"] in ("ACTIVE", "REDUCING", "HALTED")

    # Torn down with the run: nothing listens on the port any more (connections the
    # server closed may linger in TIME_WAIT, hence SO_REUSEADDR).
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", port))
        s.listen()


@pytest.mark.ray
@pytest.mark.slow
def test_a_taken_port_does_not_stop_the_run(ray_session: str, tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        config = parse_config(
            merge(
                default_config_dict(),
                {"run": {"runs_dir": str(tmp_path)}, "status": {"port": port}},
            )
        )
        seen: list[dict[str, Any]] = []

        def pushed_twice() -> bool:
            """The status actor still holds the document, for `hft-ray status`."""
            doc = ray.get(ray.get_actor(names.STATUS).document.remote(), timeout=30)
            if doc is not None and (not seen or doc["updated_ns"] != seen[-1]["updated_ns"]):
                seen.append(doc)
            return len(seen) >= 2

        out = io.StringIO()
        report = run(config, duration_s=60, out=out, stop_when=pushed_twice)
    warning = [line for line in out.getvalue().splitlines() if line.startswith("status: WARNING")]
    assert len(warning) == 1 and f"cannot listen on 127.0.0.1:{port}" in warning[0]
    assert report["status_url"] is None
    assert report["status_error"].startswith(f"cannot listen on 127.0.0.1:{port}")
    assert report["failure"] == "" and report["book_updates"] > 0
    assert seen[-1]["http"] == {"url": None, "error": report["status_error"]}
    assert seen[-1]["counts"]["book_updates"] > 0
    assert report["in_flight_at_stop"] == 0
