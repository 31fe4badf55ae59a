"""The order book against each venue's real traffic: its sequence rule and checksum hold on the
captured stream, and every way of breaking them invalidates the book."""

from __future__ import annotations

import copy

import numpy as np
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hft_ray.book import (
    BAD_LEVEL,
    CHECKSUM,
    CROSSED,
    LEVEL_MAX,
    LEVEL_MIN,
    OUT_OF_RANGE,
    SEQUENCE_GAP,
    VENUE_BOOK_RULES,
    BookRules,
    OrderBook,
    SequenceRule,
    apply_pairs,
    apply_pairs_reference,
    check_levels,
    check_levels_reference,
    kraken_checksum,
    okx_checksum,
    parse_levels,
    parse_levels_reference,
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


PRICE = st.one_of(
    st.floats(-5, 200), st.sampled_from([float("nan"), float("inf"), 1e308, 5e-324, 1e16])
)
SIZE = st.one_of(st.floats(-1, 5), st.sampled_from([float("nan"), 1e300, 1e-20]))


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


# -- the level kernels against their references ----------------------------------------------

DIGITS = st.text("0123456789", max_size=12)
DECIMAL = st.builds(
    lambda sign, whole, dot, frac: sign + whole + dot + frac,
    st.sampled_from(["", "", "-"]),
    DIGITS,
    st.sampled_from(["", "."]),
    DIGITS,
)
ANY_TEXT = st.one_of(DECIMAL, st.sampled_from(["1e-05", "nan", "inf", " 1", "1_0", "+1", "."]))
#: What venues send: up to 15 significant digits, trailing zeros of any length.
PLAIN = st.builds(
    lambda sign, whole, frac, zeros: f"{sign}{whole}.{frac}{'0' * zeros}",
    st.sampled_from(["", "-"]),
    st.integers(0, 10**7),
    st.text("0123456789", max_size=7),
    st.integers(0, 12),
)


def parsed(bids: list, asks: list) -> list[float] | None:
    """What `parse_levels` reads from the JSON of (bids, asks), or None if it declines."""
    vals = np.empty(2 * (len(bids) + len(asks)) + 2)
    bid_values, n = parse_levels(np.frombuffer(orjson.dumps((bids, asks)), np.uint8), vals)
    if n < 0:
        return None
    assert bid_values == 2 * len(bids) and n == 2 * (len(bids) + len(asks))
    return vals[:n].tolist()


def exact(values: list[float]) -> list[str]:
    return [v.hex() for v in values]  # tells -0.0 from 0.0 and every last bit


@settings(max_examples=400, deadline=None)
@given(
    bids=st.lists(st.tuples(ANY_TEXT, ANY_TEXT), max_size=5),
    asks=st.lists(st.tuples(ANY_TEXT, ANY_TEXT), max_size=5),
)
def test_level_parser_reads_exactly_what_float_reads_or_declines(bids: list, asks: list) -> None:
    got = parsed(bids, asks)
    try:
        want = parse_levels_reference(bids, asks)
    except ValueError:
        assert got is None  # float() refuses it: so must the parser
        return
    if got is not None:
        assert exact(got) == exact(want)


@settings(max_examples=300, deadline=None)
@given(bids=st.lists(st.tuples(PLAIN, PLAIN), max_size=5), asks=st.lists(st.tuples(PLAIN, PLAIN)))
def test_level_parser_reads_plain_decimals_itself(bids: list, asks: list) -> None:
    got = parsed(bids, asks)
    assert got is not None, "a plain decimal of up to 15 digits must not need float()"
    assert exact(got) == exact(parse_levels_reference(bids, asks))


@settings(max_examples=200, deadline=None)
@given(values=st.lists(st.floats(allow_nan=False, allow_infinity=False), min_size=2, max_size=8))
def test_level_parser_reads_json_numbers_exactly(values: list[float]) -> None:
    bids = [(values[i], values[i + 1]) for i in range(0, len(values) - 1, 2)]
    got = parsed(bids, [])
    if got is not None:  # shortest repr of up to 15 digits and no exponent
        assert exact(got) == exact(parse_levels_reference(bids, []))


def test_level_parser_declines_what_is_not_two_values_a_level() -> None:
    assert parsed([("1", "2", "3")], []) is None
    assert parsed([("1",)], []) is None
    assert parsed([("1", "2")], [("3", "4")]) == [1.0, 2.0, 3.0, 4.0]


PRICES = st.integers(1, 40).map(lambda k: k / 4)
SIZES = st.one_of(st.just(0.0), st.integers(1, 9).map(float))
PAIRS = st.lists(st.tuples(PRICES, SIZES), max_size=30)


def kernel_sides(
    start_bids: list, start_asks: list, bids: list, asks: list, snapshot: bool, depth: int
) -> tuple[list, list, int]:
    """Both sides after `apply_pairs` (best first), from sides set up with the reference."""
    rows = [
        np.empty((len(start_bids) + len(bids) + 1, 2)),
        np.empty((len(start_asks) + len(asks) + 1, 2)),
    ]
    counts = np.zeros(2, np.int64)
    for i, (start, descending) in enumerate(((start_bids, True), (start_asks, False))):
        worst_first = apply_pairs_reference([], start, descending)[::-1]
        counts[i] = len(worst_first)
        rows[i][: len(worst_first)] = np.array(worst_first).reshape(-1, 2)
    vals = np.array([x for pair in (*bids, *asks) for x in pair], dtype=np.float64)
    status = apply_pairs(vals, 2 * len(bids), len(vals), rows[0], rows[1], counts, snapshot, depth)
    sides = [r[: counts[i]][::-1].tolist() for i, r in enumerate(rows)]
    return [tuple(x) for x in sides[0]], [tuple(x) for x in sides[1]], status


@settings(max_examples=400, deadline=None)
@given(
    start_bids=PAIRS,
    start_asks=PAIRS,
    bids=PAIRS,
    asks=PAIRS,
    snapshot=st.booleans(),
    depth=st.sampled_from([-1, -1, 0, 1, 3, 10]),
)
def test_level_merge_kernel_equals_reference(
    start_bids: list, start_asks: list, bids: list, asks: list, snapshot: bool, depth: int
) -> None:
    got_b, got_a, status = kernel_sides(start_bids, start_asks, bids, asks, snapshot, depth)
    start_b = [] if snapshot else apply_pairs_reference([], start_bids, True)
    start_a = [] if snapshot else apply_pairs_reference([], start_asks, False)
    want_b = apply_pairs_reference(start_b, bids, True)
    want_a = apply_pairs_reference(start_a, asks, False)
    if depth >= 0:
        want_b, want_a = want_b[:depth], want_a[:depth]
    assert (got_b, got_a) == (want_b, want_a)
    if not (want_b and want_a):
        assert status == 1  # _STATUS: EMPTY_SIDE
    else:
        assert status == (4 if want_b[0][0] >= want_a[0][0] else 0)  # CROSSED or fine


@settings(max_examples=100, deadline=None)
@given(prices=st.sets(PRICES, max_size=30), sizes=st.lists(SIZES, min_size=30, max_size=30))
def test_snapshot_listed_best_first_equals_reference(prices: set, sizes: list) -> None:
    """The copy-in-reverse path of a snapshot (each price once, best first)."""
    bids = [(p, s) for p, s in zip(sorted(prices, reverse=True), sizes, strict=False)]
    asks = [(p, s) for p, s in zip(sorted(prices), sizes, strict=False)]
    got_b, got_a, _ = kernel_sides([], [], bids, asks, True, -1)
    assert got_b == apply_pairs_reference([], bids, True)
    assert got_a == apply_pairs_reference([], asks, False)


def test_levels_not_read_by_the_parser_give_the_same_book() -> None:
    """Floats, Decimals and exponents take the float() path, to the same book."""
    from decimal import Decimal

    as_text = OrderBook(VENUE_BOOK_RULES["binance"])
    as_text.apply_snapshot([("100.5", "2"), ("99", "1")], [("101", "0.00001")], 1, 0)
    for bids, asks in (
        ([(100.5, 2.0), (99.0, 1.0)], [(101.0, 1e-05)]),
        ([(Decimal("100.5"), Decimal(2)), ("99", "1")], [("1.01e2", "1e-5")]),
    ):
        other = OrderBook(VENUE_BOOK_RULES["binance"])
        assert other.apply_snapshot(bids, asks, 1, 0) == ""
        assert [t.tolist() for t in other.top(5)] == [t.tolist() for t in as_text.top(5)]


def test_a_malformed_level_is_a_clear_error_and_changes_nothing() -> None:
    book = OrderBook(VENUE_BOOK_RULES["binance"])
    book.apply_snapshot([("100", "1")], [("101", "1")], 1, 0)
    with pytest.raises(ValueError, match="could not convert string to float: 'abc'"):
        book.apply_delta([("100", "2"), ("abc", "1")], [], 0, first=2, last=2)
    with pytest.raises(ValueError, match="unpack"):
        book.apply_delta([("100", "2", "3")], [], 0, first=3, last=3)
    assert [t.tolist() for t in book.top(5)] == [[[100.0, 1.0]], [[101.0, 1.0]]]


def test_books_grow_past_their_first_rows_and_keep_order() -> None:
    book = OrderBook(VENUE_BOOK_RULES["binance"])
    book.apply_snapshot([(str(1000 - i), "1") for i in range(150)], [("2000", "1")], 1, 0)
    deltas = [(str(1000 - 150 - i), str(i + 1)) for i in range(300)]
    assert book.apply_delta(deltas, [], 0, first=2, last=2) == ""
    bids, _ = book.top(1000)
    assert (
        len(bids) == 450 and bids[0].tolist() == [1000.0, 1.0] and np.all(np.diff(bids[:, 0]) < 0)
    )
    assert len(book.bids) == 450 and book.bids.best() == 1000.0


def test_truncated_book_keeps_the_best_levels_and_their_strings() -> None:
    rules = BookRules(SequenceRule, okx_checksum, checksum_depth=25, truncate_to=2)
    book = OrderBook(rules)
    book.apply_snapshot([("10", "1"), ("9", "1"), ("8", "1")], [("11", "1"), ("12", "1")], None, 0)
    book.apply_delta([("9.5", "2")], [("13", "1")], 0)
    assert [t.tolist() for t in book.top(5)] == [
        [[10.0, 1.0], [9.5, 2.0]],
        [[11.0, 1.0], [12.0, 1.0]],
    ]
    assert book.bids.strings(5) == [("10", "1"), ("9.5", "2")]
    assert book.asks.strings(5) == [("11", "1"), ("12", "1")]


def test_only_books_with_a_checksum_keep_level_strings() -> None:
    book = OrderBook(VENUE_BOOK_RULES["binance"])
    book.apply_snapshot([("1", "1")], [("2", "1")], 1, 0)
    with pytest.raises(ValueError, match="no checksum"):
        book.bids.strings(5)


def test_strings_follow_each_prices_last_change_within_a_message() -> None:
    book = OrderBook(VENUE_BOOK_RULES["okx"])
    book.apply_snapshot([("10", "1"), ("9", "1")], [("11", "1")], None, 0)
    book.apply_delta([("9", "0"), ("9", "5"), ("8", "2"), ("8", "0")], [], 0)
    assert book.bids.strings(5) == [("10", "1"), ("9", "5")]
    assert [t.tolist() for t in book.top(5)] == [[[10.0, 1.0], [9.0, 5.0]], [[11.0, 1.0]]]


def test_strings_of_levels_gone_do_not_pile_up() -> None:
    book = OrderBook(VENUE_BOOK_RULES["okx"])
    book.apply_snapshot([("100", "1")], [("200", "1")], None, 0)
    for i in range(2_000):  # a level comes and goes at a new price each time
        book.apply_delta([(f"{50 + i / 100:.2f}", "1")], [], 0)
        book.apply_delta([(f"{50 + i / 100:.2f}", "0")], [], 0)
    assert book.bids.strings(5) == [("100", "1")]
    assert len(book.bids._strings or {}) <= 2 * len(book.bids) + 64


# -- levels no venue can mean -----------------------------------------------------------------


@pytest.mark.parametrize("venue", ["binance", "okx", "kraken"])
@pytest.mark.parametrize(
    ("price", "size", "reason"),
    [
        ("nan", "1", BAD_LEVEL),
        ("100", "nan", BAD_LEVEL),
        ("inf", "1", BAD_LEVEL),
        ("-100", "1", BAD_LEVEL),
        ("0", "1", BAD_LEVEL),
        ("100", "-1", BAD_LEVEL),
        ("100", "inf", BAD_LEVEL),
        ("1e308", "1", OUT_OF_RANGE),
        ("5e-324", "1", OUT_OF_RANGE),
        ("100", "1e308", OUT_OF_RANGE),
        (1e308, 1.0, OUT_OF_RANGE),
    ],
)
def test_a_level_no_venue_can_mean_invalidates_the_book_until_a_snapshot(
    venue: str, price: object, size: object, reason: str
) -> None:
    """In a delta or a snapshot: the book is invalid with the reason, never a KeyError, and
    nothing of the message is applied; the next snapshot makes it valid again."""
    book = OrderBook(VENUE_BOOK_RULES[venue])
    assert book.apply_snapshot([("99", "1")], [("101", "1")], 1, 0) == ""
    assert book.apply_delta([(price, size)], [], 0, first=2, last=2, prev=1) == reason
    assert not book.valid and book.invalid_reason == reason
    assert [t.tolist() for t in book.top(5)] == [[[99.0, 1.0]], [[101.0, 1.0]]]
    assert book.apply_delta([("98", "1")], [], 0, first=3, last=3, prev=2) == reason
    assert book.apply_snapshot([("99", "1")], [("101", "1")], 5, 0) == ""
    assert book.apply_snapshot([("99", "1"), (price, size)], [("101", "1")], 6, 0) == reason
    assert not book.valid
    assert book.apply_snapshot([("99", "1")], [("101", "1")], 7, 0) == "" and book.valid


def test_a_checksum_over_levels_sent_as_numbers_fails_not_raises() -> None:
    """OKX's CRC32 is over the venue's text; levels given as numbers cannot match it."""
    book = OrderBook(VENUE_BOOK_RULES["okx"])
    crc = okx_checksum([("99", "1")], [("101", "1")])
    assert book.apply_snapshot([("99", "1")], [("101", "1")], None, 0, crc) == ""
    assert book.apply_snapshot([(99.0, 1.0)], [("101", "1")], None, 0, crc) == CHECKSUM


def test_an_unreadable_delta_changes_nothing_and_the_next_one_is_a_gap() -> None:
    """A delta whose levels or sequence numbers cannot be read raises, is not applied, and
    does not advance the sequence rule: the book missed it, so the next delta is a gap."""
    book = OrderBook(VENUE_BOOK_RULES["binance"])
    book.apply_snapshot([("100", "1")], [("101", "1")], 1, 0)
    for bad in ([(True, "1")], [("100", None)], [("100",)], [["1", "2", "3"]]):
        with pytest.raises(ValueError, match=r"bids\[0\]: "):
            book.apply_delta(bad, [], 0, first=2, last=2)
    with pytest.raises(ValueError, match="last must be an integer or None, got '2'"):
        book.apply_delta([("100", "2")], [], 0, first=2, last="2")  # type: ignore[arg-type]
    assert book.valid
    assert book.apply_delta([("100", "3")], [], 0, first=3, last=3) == SEQUENCE_GAP


def test_sequence_numbers_beyond_int64_are_compared_not_overflowed() -> None:
    book = OrderBook(VENUE_BOOK_RULES["binance"])
    big = 2**70
    assert book.apply_snapshot([("100", "1")], [("101", "1")], big, 0) == ""
    assert book.apply_delta([("100", "2")], [], 0, first=big + 1, last=big + 1) == ""
    assert book.seq == big + 1 and book.valid


def test_check_levels_names_levels_out_of_range() -> None:
    good_a = np.array([[101.0, 1.0]])
    assert check_levels(np.array([[1e308, 1.0]]), np.array([[1.5e308, 1.0]])) == OUT_OF_RANGE
    assert check_levels(np.array([[5e-324, 1.0]]), good_a) == OUT_OF_RANGE
    assert check_levels(np.array([[100.0, 1e16]]), good_a) == OUT_OF_RANGE
    assert check_levels(np.array([[LEVEL_MIN, LEVEL_MAX]]), good_a) == ""
