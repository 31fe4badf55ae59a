"""The feed bench's streams, its correctness checks and the shape of its figures (no timing is
asserted: this machine is shared)."""

from __future__ import annotations

import asyncio
import copy
import json
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

from hft_ray.bench import feed
from hft_ray.bench.common import SCALES
from hft_ray.book import VENUE_BOOK_RULES, OrderBook


@pytest.fixture(scope="module")
def nkn() -> dict[str, Any]:
    return json.loads(feed.binance_capture().snapshots["NKNUSDT"])


@pytest.fixture
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    loop = asyncio.new_event_loop()
    yield loop
    loop.close()


def test_captures_are_read_whole() -> None:
    capture = feed.binance_capture()
    assert sorted(capture.snapshots) == ["BLZETH", "LRCBTC", "NKNUSDT", "RUNEEUR"]
    assert len(capture.diffs) == 177 and sum(len(t) for t in capture.tickers.values()) == 84
    assert {m for _, m in capture.diffs} == set(capture.snapshots)
    okx = feed.okx_capture()
    assert len(okx) == 290
    firsts = {}
    for text, inst in okx:
        firsts.setdefault(inst, json.loads(text)["action"])
    assert firsts == dict.fromkeys(["BTC-USD-220527", "UNI-USD-SWAP", "BTC-USDT"], "snapshot")


def test_levels_stream_is_36_real_levels_a_diff_the_update_id_rule_accepts(nkn: dict) -> None:
    frames, (want_bids, want_asks) = feed.binance_levels_stream(nkn, 400)
    assert frames == feed.binance_levels_stream(nkn, 400)[0]  # deterministic
    assert frames != feed.binance_levels_stream(nkn, 400, seed=1)[0]
    grid = {"b": {p for p, _ in nkn["bids"]}, "a": {p for p, _ in nkn["asks"]}}
    sizes = {q for _, q in nkn["bids"] + nkn["asks"]} | {"0.00000000"}
    book = OrderBook(VENUE_BOOK_RULES["binance"])
    book.apply_snapshot(nkn["bids"], nkn["asks"], nkn["lastUpdateId"], 0)
    expected_first, removed = nkn["lastUpdateId"] + 1, 0
    for text in frames:
        d = json.loads(text)["data"]
        assert (d["U"], d["u"]) == (expected_first, expected_first + 35)
        expected_first = d["u"] + 1
        for side in ("b", "a"):
            prices = [p for p, _ in d[side]]
            assert len(prices) == 18 == len(set(prices)) and set(prices) <= grid[side]
            assert {q for _, q in d[side]} <= sizes
            removed += sum(q == "0.00000000" for _, q in d[side])
        assert book.apply_delta(d["b"], d["a"], 0, first=d["U"], last=d["u"]) == ""
    bids, asks = book.top(feed.TOP)
    assert np.array_equal(bids, want_bids) and np.array_equal(asks, want_asks)
    assert removed > 400 * 36 * 0.1  # levels come and go, not only sizes


def test_every_book_ticker_of_the_capture_matches_and_a_wrong_one_stops_the_bench() -> None:
    capture = feed.binance_capture()
    assert feed._ticker_checked(capture) >= 20
    ends = {json.loads(text)["data"]["u"] for text, market in capture.diffs if market == "NKNUSDT"}
    tickers = copy.deepcopy(capture.tickers)
    i = next(i for i, t in enumerate(tickers["NKNUSDT"]) if t[0] in ends)
    u, bid, bid_size, ask, ask_size = tickers["NKNUSDT"][i]
    tickers["NKNUSDT"][i] = (u, bid, bid_size + 1.0, ask, ask_size)
    with pytest.raises(RuntimeError, match="bookTicker"):
        feed._ticker_checked(feed.BinanceCapture(capture.snapshots, capture.diffs, tickers))


def test_books_that_disagree_stop_the_bench() -> None:
    bids, asks = np.array([[2.0, 1.0], [1.0, 1.0]]), np.array([[3.0, 1.0]])
    feed._agree("same", {"X": (bids.copy(), asks.copy())}, {"X": (bids, asks)})
    other = bids.copy()
    other[1, 1] = 2.0
    with pytest.raises(RuntimeError, match="top 20 of X"):
        feed._agree("a path", {"X": (other, asks)}, {"X": (bids, asks)})
    with pytest.raises(RuntimeError, match="holds books"):
        feed._agree("a path", {}, {"X": (bids, asks)})
    failing = feed.BookPath(lambda: None, lambda _: 1, lambda _: {})
    with pytest.raises(RuntimeError, match="failed the path's own checks"):
        feed._measure(failing, 1, 1, 1)


def test_live_path_runs_our_okx_checksum_on_ccxt_s_messages(
    loop: asyncio.AbstractEventLoop,
) -> None:
    frames = feed.okx_capture()
    live = feed.CcxtLive("okx", loop)
    try:
        path = live.path(frames)
        state = path.make()
        assert path.run(state) == 0
        ours = feed.ours_okx(frames, json.loads)
        assert ours.run(ours.make()) == 0
        feed._agree("ccxt", path.tops(state), ours.tops(None))
        broken = [json.loads(t) for t, _ in frames]
        update = next(i for i, m in enumerate(broken) if m["action"] == "update")
        broken[update]["data"][0]["checksum"] += 1
        bad = live.path(
            [(json.dumps(m), inst) for m, (_, inst) in zip(broken, frames, strict=True)]
        )
        assert bad.run(bad.make()) > 0  # OkxRawChecksum held the book broken
    finally:
        live.close()


def test_a_peer_that_is_not_installed_is_reported_not_raised() -> None:
    def missing() -> None:
        raise ImportError("no module", name="cryptofeed")

    why = feed._peer(missing)
    assert why == "not installed (cryptofeed): pip install -e .[bench]"
    assert feed._peer_report({"cryptofeed": why}, "cryptofeed", None) == {"unavailable": why}


@pytest.fixture(scope="module")
def report() -> dict[str, Any]:
    return feed.bench_feed(SCALES["smoke"])


def _figure(entry: dict[str, Any]) -> float:
    (us,) = (v for k, v in entry.items() if k.startswith("us_per_"))
    return float(us)


def test_the_section_reports_every_path_beside_hft_ray_s_book(report: dict[str, Any]) -> None:
    assert report["updates"] == SCALES["smoke"].feed_updates  # the summary line's figures
    assert report["ours"]["us_per_update"] > 0 and report["speedup_vs_baseline"] > 0
    assert report["okx"]["synthetic_400"]["ours"] == report["ours"]
    cap, l36 = report["binance"]["capture"], report["binance"]["levels_36"]
    assert cap["diffs"] == 177 and 2 < cap["levels_per_diff"] < 3
    assert cap["book_tickers_equal_to_the_book"] >= 20
    assert l36["levels_per_diff"] == 36 and l36["diffs"] == SCALES["smoke"].feed_updates
    assert "U = lastUpdateId + 1" in l36["how_built"]
    assert l36["target_diffs_per_s"] == 50_000 and isinstance(l36["meets_target"], bool)
    for entry in (cap, l36):
        assert _figure(entry["ours"]) > 0 and _figure(entry["ours_orjson"]) > 0
        assert _figure(entry["baseline_same_run"]) > 0 and entry["speedup_vs_baseline"] > 0
    okx = report["okx"]["capture"]
    assert okx["messages"] == 290 and len(okx["instruments"]) == 3 and _figure(okx["ours"]) > 0
    live = report["live_path"]
    for stream in ("binance_capture", "binance_levels_36", "okx_capture"):
        assert _figure(live[stream]["ccxt"]) > 0 and _figure(live[stream]["hft_ray_book"]) > 0
    assert live["binance_levels_36"]["messages"] == min(l36["diffs"], feed.SLOW_PATH_DIFFS)
    for name in ("cryptofeed", "nautilus_trader"):
        peer = report["peers"][name]
        if "unavailable" in peer:
            assert peer["unavailable"]
            continue
        assert peer["version"] and _figure(peer["binance_capture"][name]) > 0
    json.dumps(report)  # JSON-able as it stands
