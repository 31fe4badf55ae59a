"""The order book against each venue's real traffic: its sequence rule and checksum hold on the
captured stream, and every way of breaking them invalidates the book."""

from __future__ import annotations

import copy

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hft_ray.book import (
    CHECKSUM,
    CROSSED,
    SEQUENCE_GAP,
    VENUE_BOOK_RULES,
    JumpFilter,
    OrderBook,
    check_levels,
    check_levels_reference,
    kraken_checksum,
    okx_checksum,
)
from tests.captures import DATA, http_bodies, ws_frames


def binance_stream(symbol: str = "NKNUSDT") -> tuple[dict, list[dict]]:
    snapshots = http_bodies(DATA / "binance" / "BINANCE.http.0.0")
    snapshot = next(b for url, b in snapshots.items() if f"symbol={symbol}&" in url)
    frames = [f.body for f in ws_frames(DATA / "binance" / "BINANCE.ws.1.0") if not f.sent]
    return snapshot, [f for f in frames if f["data"].get("s") == symbol]


def binance_book(snapshot: dict) -> OrderBook:
    book = OrderBook(VENUE_BOOK_RULES["binance"])
    book.apply_snapshot(snapshot["bids"], snapshot["asks"], snapshot["lastUpdateId"], 0)
    return book


@pytest.mark.parametrize(("symbol", "at_least"), [("NKNUSDT", 15), ("LRCBTC", 5)])
def test_binance_rebuilt_top_matches_book_ticker(symbol: str, at_least: int) -> None:
    """The book after the delta ending at update id u has the top @bookTicker reported at u.

    Tickers arrive ahead of the 100 ms depth batches, so states are compared by update id.
    """
    snapshot, frames = binance_stream(symbol)
    book = binance_book(snapshot)
    tops: dict[int, tuple[float, ...]] = {}
    for frame in frames:
        data = frame["data"]
        if data.get("e") == "depthUpdate":
            reason = book.apply_delta(
                data["b"], data["a"], data["E"] * 1_000_000, first=data["U"], last=data["u"]
            )
            assert reason == "", reason
            bids, asks = book.top(1)
            tops[data["u"]] = (bids[0, 0], bids[0, 1], asks[0, 0], asks[0, 1])
    tickers = [f["data"] for f in frames if f["stream"].endswith("@bookTicker")]
    compared = [t for t in tickers if t["u"] in tops]
    assert len(compared) >= at_least
    for t in compared:
        assert tops[t["u"]] == (float(t["b"]), float(t["B"]), float(t["a"]), float(t["A"]))


def test_binance_missing_delta_is_a_gap_until_the_next_snapshot() -> None:
    snapshot, frames = binance_stream()
    deltas = [f["data"] for f in frames if f["data"].get("e") == "depthUpdate"]
    book = binance_book(snapshot)
    applied = [d for d in deltas if d["u"] > snapshot["lastUpdateId"]]
    book.apply_delta(
        applied[0]["b"], applied[0]["a"], 0, first=applied[0]["U"], last=applied[0]["u"]
    )
    skipped = applied[2]  # applied[1] is lost
    assert (
        book.apply_delta(skipped["b"], skipped["a"], 0, first=skipped["U"], last=skipped["u"])
        == SEQUENCE_GAP
    )
    later = applied[3]
    assert (
        book.apply_delta(later["b"], later["a"], 0, first=later["U"], last=later["u"])
        == SEQUENCE_GAP
    )
    assert not book.valid
    book.apply_snapshot(snapshot["bids"], snapshot["asks"], snapshot["lastUpdateId"], 0)
    assert book.valid


def test_binance_first_delta_must_bridge_the_snapshot() -> None:
    snapshot, frames = binance_stream()
    deltas = [f["data"] for f in frames if f["data"].get("e") == "depthUpdate"]
    stale = [d for d in deltas if d["u"] <= snapshot["lastUpdateId"]]
    book = binance_book(snapshot)
    for d in stale:  # already inside the snapshot: skipped, book unchanged
        assert book.apply_delta(d["b"], d["a"], 0, first=d["U"], last=d["u"]) == ""
    too_late = {"U": snapshot["lastUpdateId"] + 5, "u": snapshot["lastUpdateId"] + 9}
    assert book.apply_delta([], [], 0, first=too_late["U"], last=too_late["u"]) == SEQUENCE_GAP


def okx_frames(inst: str = "BTC-USDT") -> list[dict]:
    frames = [f.body for f in ws_frames(DATA / "okx" / "OKX.ws.1.0") if not f.sent]
    return [
        f for f in frames if f.get("arg") == {"channel": "books", "instId": inst} and "action" in f
    ]


def replay_okx(frames: list[dict]) -> tuple[OrderBook, list[str]]:
    book = OrderBook(VENUE_BOOK_RULES["okx"])
    reasons = []
    for frame in frames:
        d = frame["data"][0]
        bids = [(p, q) for p, q, *_ in d["bids"]]
        asks = [(p, q) for p, q, *_ in d["asks"]]
        ts = int(d["ts"]) * 1_000_000
        if frame["action"] == "snapshot":
            reasons.append(book.apply_snapshot(bids, asks, d.get("seqId"), ts, d["checksum"]))
        else:
            reasons.append(
                book.apply_delta(
                    bids,
                    asks,
                    ts,
                    last=d.get("seqId"),
                    prev=d.get("prevSeqId"),
                    checksum=d["checksum"],
                )
            )
    return book, reasons


@pytest.mark.parametrize("inst", ["BTC-USDT", "BTC-USD-220527", "UNI-USD-SWAP"])
def test_okx_checksum_holds_on_every_captured_update(inst: str) -> None:
    frames = okx_frames(inst)
    book, reasons = replay_okx(frames)
    assert len(frames) > 20 and set(reasons) == {""} and book.valid


def test_okx_wrong_size_fails_the_checksum() -> None:
    frames = copy.deepcopy(okx_frames())
    update = frames[5]["data"][0]
    side = update["asks"] or update["bids"]
    side[0][1] = str(float(side[0][1]) + 1.0)
    _, reasons = replay_okx(frames)
    assert reasons[5] == CHECKSUM and set(reasons[:5]) == {""}
    assert set(reasons[6:]) == {CHECKSUM}  # stays invalid until a new snapshot


def test_okx_sequence_ids_link_messages() -> None:
    book = OrderBook(VENUE_BOOK_RULES["okx"])
    book.apply_snapshot([("100", "1")], [("101", "1")], 10, 0)
    assert book.apply_delta([("100", "2")], [], 0, last=11, prev=10) == ""
    assert book.apply_delta([("100", "3")], [], 0, last=13, prev=12) == SEQUENCE_GAP


def kraken_frames(pair: str = "XMR/USD") -> list[dict]:
    frames = [f.body for f in ws_frames(DATA / "kraken" / "KRAKEN.ws.50.0") if not f.sent]
    return [f for f in frames if isinstance(f, list) and f[-1] == pair]


def test_kraken_checksum_holds_over_the_captured_stream() -> None:
    book = OrderBook(VENUE_BOOK_RULES["kraken"])
    checked = 0
    for frame in kraken_frames():
        parts = [p for p in frame[1:-2] if isinstance(p, dict)]
        if "as" in parts[0]:
            book.apply_snapshot(
                [(p, q) for p, q, *_ in parts[0]["bs"]],
                [(p, q) for p, q, *_ in parts[0]["as"]],
                None,
                0,
            )
            continue
        bids = [(p, q) for part in parts for p, q, *_ in part.get("b", [])]
        asks = [(p, q) for part in parts for p, q, *_ in part.get("a", [])]
        checksum = int(next(part["c"] for part in parts if "c" in part))
        assert book.apply_delta(bids, asks, 0, checksum=checksum) == ""
        checked += 1
    assert checked > 50


def test_checksum_functions_on_documented_shapes() -> None:
    # A side running out early is skipped, not padded (OKX); Kraken strips '.' and leading 0s.
    assert okx_checksum([("1", "2")], []) == okx_checksum([("1", "2")], [])
    assert kraken_checksum([("0.05005", "0.00000500")], []) == __import__("zlib").crc32(b"5005500")


def test_crossed_book_from_deltas_is_invalid() -> None:
    book = OrderBook(VENUE_BOOK_RULES["kraken"])
    book.apply_snapshot([("100", "1")], [("101", "1")], None, 0)
    assert book.apply_delta([("102", "1")], [], 0) == CROSSED


def test_jump_filter_rejects_a_lone_print_and_confirms_a_real_move() -> None:
    f = JumpFilter(max_z=8, min_samples=20)
    rng = np.random.default_rng(1)
    mid = 100.0
    for _ in range(60):
        mid *= 1 + 2e-4 * rng.standard_normal()
        assert f.check(mid)
    assert not f.check(mid * 1.05)  # a lone print far outside the band
    assert f.check(mid)  # and the market was where it was: nothing learned from the print
    assert not f.check(mid * 0.99)  # a real move: flagged once...
    assert f.check(mid * 0.99 * (1 + 1e-5))  # ...accepted when the next mid confirms it
    assert f.check(mid * 0.99)


def test_check_levels_names_each_defect() -> None:
    good_b, good_a = np.array([[100.0, 1.0], [99.0, 1.0]]), np.array([[101.0, 1.0], [102.0, 1.0]])
    assert check_levels(good_b, good_a) == ""
    assert check_levels(np.empty((0, 2)), good_a) == "empty_side"
    assert check_levels(np.array([[100.0, np.nan]]), good_a) == "non_positive_or_nan_level"
    assert check_levels(np.array([[100.0, -1.0]]), good_a) == "non_positive_or_nan_level"
    assert check_levels(good_b[::-1], good_a) == "unsorted_levels"
    assert check_levels(np.array([[101.5, 1.0]]), good_a) == "crossed"


def test_gateio_update_ids_continue_from_the_snapshot_id() -> None:
    snapshots = http_bodies(DATA / "gateio" / "GATEIO.http.0.0")
    frames = [f.body for f in ws_frames(DATA / "gateio" / "GATEIO.ws.1.0") if not f.sent]
    updates = [
        f["result"]
        for f in frames
        if f.get("channel") == "spot.order_book_update" and f.get("event") == "update"
    ]
    applied = 0
    for url, snapshot in snapshots.items():
        pair = url.split("currency_pair=")[1].split("&")[0]
        book = OrderBook(VENUE_BOOK_RULES["gateio"])
        book.apply_snapshot(snapshot["bids"], snapshot["asks"], snapshot["id"], 0)
        for u in (u for u in updates if u["s"] == pair):
            assert book.apply_delta(u["b"], u["a"], 0, first=u["U"], last=u["u"]) == ""
            applied += u["u"] > snapshot["id"]
        assert book.valid
    assert applied > 100


PRICE = st.one_of(st.floats(-5, 200), st.just(float("nan")), st.just(float("inf")))
SIZE = st.one_of(st.floats(-1, 5), st.just(float("nan")))


@settings(max_examples=300, deadline=None)
@given(
    bids=st.lists(st.tuples(PRICE, SIZE), max_size=6),
    asks=st.lists(st.tuples(PRICE, SIZE), max_size=6),
)
def test_level_checks_kernel_equals_reference(bids: list, asks: list) -> None:
    b = np.array(bids, dtype=np.float64).reshape(-1, 2)
    a = np.array(asks, dtype=np.float64).reshape(-1, 2)
    assert check_levels(b, a) == check_levels_reference(b, a)
    b_sorted = b[np.argsort(-b[:, 0])] if len(b) else b
    a_sorted = a[np.argsort(a[:, 0])] if len(a) else a
    assert check_levels(b_sorted, a_sorted) == check_levels_reference(b_sorted, a_sorted)
