"""The HTML run report: built from a realistic report, loaded in Debian's chromium headless,
every chart found and drawn with a non-empty box; a screenshot is kept in the test's tmp dir."""

from __future__ import annotations

import asyncio
import io
import json
import os
import random
import re
import subprocess
from collections.abc import Callable
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from hft_ray.cli import main
from hft_ray.config import HftConfig
from hft_ray.report_html import chart_ids, render_html

CHROMIUM = "/usr/bin/chromium"
T0 = 1_796_200_000_000_000_000  # 2026-12-02 08:26:40 UTC, ns since epoch
VENUES = ("binance", "kraken", "okx")
SYMBOLS = ("BTC/USDT", "ETH/USDT")


def _group(
    key: str,
    strategy: str,
    symbol: str | None,
    buy: str | None,
    sell: str | None,
    rng: random.Random,
) -> dict[str, Any]:
    opportunities = rng.randint(5, 400)
    approved = opportunities * rng.randint(40, 90) // 100
    executed = approved * rng.randint(70, 100) // 100
    wins = executed * rng.randint(40, 90) // 100
    expected = round(executed * rng.uniform(0.05, 0.4), 6)
    captured = round(expected * rng.uniform(0.6, 1.05), 6)
    fees = round(executed * 0.02, 6)
    return {
        "key": key, "strategy": strategy, "symbol": symbol, "buy_venue": buy,
        "sell_venue": sell, "opportunities": opportunities, "approved": approved,
        "clipped": approved // 10, "executed": executed, "wins": wins,
        "win_rate": round(wins / executed, 4) if executed else 0.0,
        "expected_edge_quote": expected, "captured_edge_quote": captured,
        "slippage_bps": round(rng.uniform(0, 3), 3),
        "realized_pnl_quote": round(captured - fees, 6), "fees_quote": fees,
        "legs_failed": rng.randint(0, 4), "repairs": rng.randint(0, 3),
        "repair_cost_quote": round(rng.uniform(0, 0.5), 6),
    }  # fmt: skip


def analytics_fixture(seed: int = 7) -> dict[str, Any]:
    """Analytics as hft_ray.analytics writes them, for a one-minute 3-venue 2-symbol run."""
    rng = random.Random(seed)
    pairs = [
        _group(f"{s} {b}->{v}", "arb", s, b, v, rng)
        for s in SYMBOLS
        for b in VENUES
        for v in VENUES
        if b != v and not (s == "ETH/USDT" and b == "kraken" and v == "okx")
    ]
    symbols = [_group(s, "arb", s, None, None, rng) for s in SYMBOLS]
    strategies = [_group("arb", "arb", None, None, None, rng)]
    ranked = sorted(pairs, key=lambda g: g["realized_pnl_quote"], reverse=True)
    pnl, curve, edge = 0.0, [], []
    for i in range(80):
        ts = T0 + int(i * 0.75e9) + rng.randint(0, 300_000_000)
        expected = rng.uniform(2, 14)
        captured = expected - rng.uniform(-1, 4)
        pnl += captured * 0.01 - 0.02
        curve.append([ts, round(pnl, 6)])
        edge.append([ts, round(expected, 3), round(captured, 3)])
    inventory: dict[str, dict[str, list[list[float]]]] = {}
    for venue in VENUES:
        inventory[venue] = {}
        for asset, unit in (("BTC", 0.001), ("ETH", 0.02), ("USDT", 80.0)):
            pos, points = 0.0, []
            for i in range(30):
                pos += rng.choice((-1, 1)) * unit * rng.randint(1, 3)
                points.append([T0 + int(i * 2e9) + rng.randint(0, 10**9), round(pos, 8)])
            inventory[venue][asset] = points
    edges = [round(10 * 1.5**k, 1) for k in range(21)]
    latency = {
        hop: {
            "edges": edges,
            "counts": [int(4000 * 2.7 ** (-((k - mid) ** 2) / 6)) for k in range(20)],
        }
        for hop, mid in (("tick_to_trade", 11), ("tick_to_detect", 5), ("venue_ack", 14))
    }
    return {
        "groups": {"by_pair": pairs, "by_symbol": symbols, "by_strategy": strategies},
        "top": ranked[:5],
        "bottom": ranked[-5:][::-1],
        "pnl_curve": curve,
        "edge": edge,
        "inventory": inventory,
        "inventory_drift": {v: {a: p[-1][1] for a, p in inv.items()} for v, inv in
                            inventory.items()},
        "rejections": {
            "bucket_ns": 3_000_000_000,
            "start_ns": T0,
            "by_reason": {
                "insufficient_inventory": [rng.randint(0, 9) for _ in range(20)],
                "max_position": [rng.randint(0, 4) for _ in range(20)],
                "stale_book <script>": [rng.randint(0, 2) for _ in range(20)],
            },
        },
        "latency_us": latency,
        "risk_events": [
            {"ts_ns": T0 + 31 * 10**9, "kind": "breaker", "detail": "max_drawdown tripped"},
            {"ts_ns": T0 + 45 * 10**9, "kind": "resume", "detail": {"by": "operator"}},
        ],
        "clips": {"max_order_notional": 12, "insufficient_inventory": 5},
    }  # fmt: skip


def report_fixture(*, analytics: bool = True) -> dict[str, Any]:
    """A run report (report.json) of a replay, with or without its analytics."""
    report: dict[str, Any] = {
        "run_id": "local-20261201T000000Z-ab12",
        "mode": "replay",
        "duration_s": 60.2,
        "venues": list(VENUES),
        "symbols": list(SYMBOLS),
        "quote_currencies": ["USDT"],
        "book_updates": 21_600,
        "opportunities": 1_432,
        "approved": 790,
        "clipped": 17,
        "rejected": {"insufficient_inventory": 301, "max_position": 88},
        "trades": 80,
        "legs_failed": 6,
        "unwinds": 3,
        "realized_pnl_quote": 1.2345,
        "fees_quote": 1.6,
        "positions_match_journal": True,
        "latency_us": {
            "tick_to_trade": {"count": 790, "p50": 812.0, "p90": 1500.0, "p99": 4100.0,
                              "max": 9100.0},
            "scan": {"count": 0, "p50": 0, "p90": 0, "p99": 0, "max": 0},
        },
        "replay": {
            "lines": 21_600, "other_exchanges": 0, "other_symbols": 12,
            "malformed_lines": ["books.jsonl:910: missing timestamp, bids, asks"],
            "unreadable_files": [], "unknown": ["books.jsonl: symbol XRP/USDT not traded"],
            "held_s": 0.25,
        },
    }  # fmt: skip
    if analytics:
        report["analytics"] = analytics_fixture()
    return report


class _Figures(HTMLParser):
    """Every figure.chart (id -> its attributes), whether each holds an svg, and body's."""

    def __init__(self) -> None:
        super().__init__()
        self.figures: dict[str, dict[str, str | None]] = {}
        self.svgs: set[str] = set()
        self.body: dict[str, str | None] = {}
        self._open: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "body":
            self.body = a
        if tag == "figure" and "chart" in (a.get("class") or "").split():
            self._open = a.get("id") or ""
            self.figures[self._open] = a
        if tag == "svg" and self._open is not None:
            self.svgs.add(self._open)

    def handle_endtag(self, tag: str) -> None:
        if tag == "figure":
            self._open = None


def _parse(html: str) -> _Figures:
    parser = _Figures()
    parser.feed(html)
    return parser


def _browser() -> str:
    if Path(CHROMIUM).exists():
        return CHROMIUM
    if os.environ.get("HFT_RAY_REQUIRE_BROWSER"):
        pytest.fail(f"{CHROMIUM} is missing and HFT_RAY_REQUIRE_BROWSER is set")
    pytest.skip(f"{CHROMIUM} is missing: apt-get install chromium (tests/run.sh does)")


def _chromium(page: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [_browser(), "--headless=new", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
         f"--user-data-dir={page.parent / 'chromium-profile'}", *args, page.as_uri()],
        capture_output=True, text=True, timeout=120, check=True,
    )  # fmt: skip


def test_the_page_holds_every_chart_and_section() -> None:
    report = report_fixture()
    html = render_html(report)
    figures = _parse(html)
    expected = chart_ids(report["analytics"])
    assert list(figures.figures) == expected
    assert figures.svgs == set(expected)
    assert {"chart-pnl", "chart-edge", "chart-heatmap", "chart-rejections"} <= set(expected)
    assert {"chart-inventory-btc", "chart-inventory-usdt", "chart-latency-venue-ack"} <= set(
        expected
    )
    for section in (
        "headline",
        "groups-by-pair",
        "groups-by-symbol",
        "groups-by-strategy",
        "groups-top",
        "groups-bottom",
        "risk-events",
        "clips",
        "replay",
        "latency",
    ):
        assert f'id="{section}"' in html, section  # fmt: skip
    assert "local-20261201T000000Z-ab12" in html
    assert "max_drawdown tripped" in html
    assert "BTC/USDT binance-&gt;okx" in html


def test_the_page_is_self_contained_and_escapes_journal_text() -> None:
    html = render_html(report_fixture())
    assert html.count("<script>") == 1  # the page's own check, nothing from the journal
    assert "stale_book &lt;script&gt;" in html
    without_namespace = html.replace('xmlns="http://www.w3.org/2000/svg"', "")
    assert not re.search(r"https?://|\bsrc=|<link\b|@import", without_namespace)


def test_the_page_is_deterministic() -> None:
    assert render_html(report_fixture()) == render_html(report_fixture())


def test_an_older_report_without_analytics_has_the_headline_and_a_note() -> None:
    report = report_fixture(analytics=False)
    del report["replay"]
    html = render_html(report)
    assert _parse(html).figures == {}
    assert 'id="headline"' in html
    assert "no analytics" in html
    assert 'id="replay"' not in html
    assert "21,600" in html


def test_chromium_renders_every_chart(tmp_path: Path) -> None:
    report = report_fixture()
    page = tmp_path / "report.html"
    page.write_text(render_html(report))
    dom = _chromium(page, "--dump-dom").stdout
    parsed = _parse(dom)
    expected = chart_ids(report["analytics"])
    assert set(parsed.figures) == set(expected)
    not_drawn = [i for i, a in parsed.figures.items() if a.get("data-rendered") != "yes"]
    assert not_drawn == []
    assert parsed.body.get("data-charts-rendered") == str(len(expected))
    assert parsed.body.get("data-charts-total") == str(len(expected))
    shot = tmp_path / "report.png"
    _chromium(page, f"--screenshot={shot}", "--window-size=1400,5200")
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_chromium_renders_an_older_report(tmp_path: Path) -> None:
    page = tmp_path / "old.html"
    page.write_text(render_html(report_fixture(analytics=False)))
    parsed = _parse(_chromium(page, "--dump-dom").stdout)
    assert parsed.figures == {}
    assert parsed.body.get("data-charts-rendered") == "0"


def _journal_run(run_dir: Path) -> None:
    """A run directory with a one-trade journal and the report.json its run wrote."""
    from hft_ray.journal import Decision, Execution, Fill, Intent, Leg, Order, RiskEvent, encode
    from hft_ray.store.local import LocalStore

    ms = 1_000_000
    legs = (Leg("binance", "o1B", "buy", 0.01, 50_000.0), Leg("okx", "o1S", "sell", 0.01, 50_100.0))
    records = [
        Decision(T0, "o0", "arb", "BTC/USDT", "okx", "binance", 0.01, 0.0, 3.0, "rejected",
                 "max_position", "ACTIVE"),
        Decision(T0 + ms, "o1", "arb", "BTC/USDT", "binance", "okx", 0.01, 0.01, 20.0,
                 "approved", "", "ACTIVE"),
        Intent(T0 + 2 * ms, "o1", "BTC/USDT", 0.01, 20.0, 0.9, legs),
        Order(T0 + 3 * ms, "o1", "o1B", "binance", "BTC/USDT", "buy", T0, "filled", 0.01, 0.01,
              50_000.0, 0.5, ""),
        Fill(T0 + 3 * ms, "o1", "o1B", "binance", "BTC/USDT", "buy", T0, 0.01, 50_000.0, 0.5),
        Order(T0 + 4 * ms, "o1", "o1S", "okx", "BTC/USDT", "sell", T0, "filled", 0.01, 0.01,
              50_100.0, 0.5, ""),
        Fill(T0 + 4 * ms, "o1", "o1S", "okx", "BTC/USDT", "sell", T0, 0.01, 50_100.0, 0.5),
        Execution(T0 + 5 * ms, "o1", "BTC/USDT", "executor-0", 0, 0, False, 0.0),
        RiskEvent(T0 + 6 * ms, "trip", "max_drawdown", "HALTED", "drawdown 3.1 > 3"),
    ]  # fmt: skip

    async def write() -> None:
        store = LocalStore(run_dir, "executor-0")
        for r in records:
            await store.append(encode(r))
        await store.close()

    asyncio.run(write())
    report = report_fixture()
    report["run_id"], report["run_dir"] = run_dir.name, str(run_dir)
    report["risk_positions"] = {"binance": {"BTC": 0.01, "USDT": -500.5},
                                "okx": {"BTC": -0.01, "USDT": 500.5}}  # fmt: skip
    (run_dir / "report.json").write_text(json.dumps(report))


def test_hft_ray_report_html_writes_the_page_from_the_journal(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run_dir = tmp_path / "local-20261201T000000Z-cd34"
    run_dir.mkdir()
    _journal_run(run_dir)
    assert main(["report", str(run_dir), "--html"]) == 0
    page = run_dir / "report.html"
    assert f"html report: {page}" in capsys.readouterr().out
    html = page.read_text()
    figures = _parse(html).figures
    # The journal's analytics, with the latency histograms only the run's report.json holds.
    assert {"chart-pnl", "chart-inventory-btc", "chart-latency-venue-ack"} <= set(figures)
    assert "local-20261201T000000Z-cd34" in html and "mode <b>replay</b>" in html
    assert "BTC/USDT binance-&gt;okx" in html and "BTC/USDT binance-&gt;kraken" not in html
    assert "drawdown 3.1 &gt; 3" in html
    elsewhere = tmp_path / "pages" / "run.html"
    assert main(["report", str(run_dir), "--json", "--html", str(elsewhere)]) == 0
    out = capsys.readouterr()
    assert json.loads(out.out)["trades"] == 1
    assert f"html report: {elsewhere}" in out.err and elsewhere.exists()


def test_a_run_that_traded_nothing_gets_every_chart_saying_no_data() -> None:
    from hft_ray.analytics import analytics

    report = {**report_fixture(analytics=False), "analytics": analytics([], {})}
    html = render_html(report)
    figures = _parse(html).figures
    assert list(figures) == [
        "chart-pnl",
        "chart-edge",
        "chart-inventory",
        "chart-latency",
        "chart-heatmap",
        "chart-rejections",
    ]
    assert html.count(">no data</text>") == len(figures)


def test_the_sample_recording_backtested_has_its_page_drawn_in_chromium(
    make_config: Callable[..., HftConfig], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The repository's sample, backtested and reported as a user would: every chart the
    analytics call for is drawn by the browser, from real trades."""
    from hft_ray.backtest import run_backtest

    sample = Path(__file__).parent / "data" / "replay" / "sim-sample.jsonl.gz"
    report = run_backtest(make_config(), [sample], out=io.StringIO())
    run_dir = Path(report["run_dir"])
    assert main(["report", str(run_dir), "--html"]) == 0
    capsys.readouterr()
    page = run_dir / "report.html"
    parsed = _parse(_chromium(page, "--dump-dom").stdout)
    expected = chart_ids(report["analytics"])
    assert set(parsed.figures) == set(expected)
    assert {"chart-pnl", "chart-edge", "chart-heatmap", "chart-latency-venue-ack"} <= set(expected)
    assert [i for i, a in parsed.figures.items() if a.get("data-rendered") != "yes"] == []
    assert parsed.body.get("data-charts-rendered") == str(len(expected))
    html = page.read_text()
    assert report["trades"] > 10 and f">{report['trades']}<" in html
    shot = tmp_path / "sample.png"
    _chromium(page, f"--screenshot={shot}", "--window-size=1400,4400")
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
