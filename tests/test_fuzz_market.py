"""Bad market input, fuzzed: the replay line decoder and file reader, the order book's snapshot
and delta updaters, the feed core's checks on ccxt-shaped books, and OKX's raw-message check
(the path ccxt.pro's frames take on a live OKX feed and in the feed bench).

Every input here is hostile: NaN, infinities, 1e308, denormals, negatives, integers up to
2**70, booleans and text where numbers belong, wrong shapes, corrupt bytes. The properties:
nothing raises but the documented error (`ReplayFormatError` for a line, ValueError for an
order-book level that cannot be read), nothing hangs, and no book is passed on as tradable
unless every level is finite, within the book's range, sorted and uncrossed.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import math
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import ccxt.pro
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hft_ray.book import LEVEL_MAX, LEVEL_MIN, VENUE_BOOK_RULES, OrderBook
from hft_ray.config import FeedConfig
from hft_ray.feed.core import FeedCore
from hft_ray.types import BOOK_VALID, BookEvent, BookInvalid, BookSnapshot, Universe
from hft_ray.venues.ccxt_live import book_event
from hft_ray.venues.integrity import OkxRawChecksum
from hft_ray.venues.replay import ReplayFormatError, parse_line, read_file
from tests.captures import DATA, ws_frames

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
INT64_MAX = (1 << 63) - 1
UNIVERSE = Universe(("okx", "binance"), ("BTC/USDT", "ETH/USDT"))

# -- hostile values ---------------------------------------------------------------------------

EXTREMES = st.sampled_from(
    [math.nan, math.inf, -math.inf, 1e308, -1e308, 5e-324, -5e-324, 0.0, -0.0, 1e-16, 1e16]
)
FLOATS = st.one_of(EXTREMES, st.floats(), st.floats(0.5, 2_000.0))
INTS = st.one_of(st.integers(-(2**70), 2**70), st.integers(0, 10))
NUMBERS = st.one_of(FLOATS, INTS)
#: Anything a decoded message may hold where a number belongs.
VALUES = st.one_of(
    NUMBERS,
    NUMBERS.map(str),
    st.booleans(),
    st.none(),
    st.text(max_size=4),
    st.lists(st.integers(), max_size=2),
)


def mostly(
    common: st.SearchStrategy, rare: st.SearchStrategy, one_in: int = 5
) -> st.SearchStrategy:
    """`rare` once in `one_in` draws, else `common` (`st.one_of` flattens nested choices, so a
    hostile strategy of many branches would otherwise be drawn most of the time)."""
    return st.integers(1, one_in).flatmap(lambda k: rare if k == 1 else common)


def assert_tradable(bids: np.ndarray, asks: np.ndarray) -> None:
    """What every book passed on as tradable must be."""
    assert len(bids) and len(asks)
    for side in (bids, asks):
        assert np.isfinite(side).all()
        assert ((side >= LEVEL_MIN) & (side <= LEVEL_MAX)).all(), side
    assert (np.diff(bids[:, 0]) < 0).all() and (np.diff(asks[:, 0]) > 0).all()
    assert bids[0, 0] < asks[0, 0]


def assert_rows_tradable_only_if_sane(rows: np.ndarray) -> None:
    for row in rows[(rows["flags"] & BOOK_VALID) != 0]:
        nb, na = int(row["n_bids"]), int(row["n_asks"])
        bids = np.column_stack([row["bid_px"][:nb], row["bid_qty"][:nb]])
        asks = np.column_stack([row["ask_px"][:na], row["ask_qty"][:na]])
        assert_tradable(bids, asks)
        assert row["seq"] >= 0 and row["ts_exchange_ns"] >= 0


@st.composite
def sane_side(draw: st.DrawFn, best: float, sign: int) -> list[list[Any]]:
    steps = draw(st.lists(st.floats(0.01, 5.0), max_size=6))
    prices = best + sign * np.cumsum([0.0, *steps])
    return [[float(p), draw(st.floats(0.001, 50.0))] for p in prices]


SANE_NONCE, SANE_TS = st.integers(0, 10**12), st.integers(1_600_000_000_000, 1_800_000_000_000)


@st.composite
def ccxt_books(draw: st.DrawFn) -> dict[str, Any]:
    """A book as ccxt.pro's `watch_order_book` gives it: mostly sane, then corrupted in a few
    places (a level's value, its shape, the nonce, the timestamp)."""
    mid = draw(st.floats(1.0, 1_000.0))
    book: dict[str, Any] = {
        "bids": draw(sane_side(mid - 0.05, -1)),
        "asks": draw(sane_side(mid + 0.05, 1)),
        "nonce": draw(mostly(st.one_of(st.none(), SANE_NONCE), st.one_of(INTS, VALUES))),
        "timestamp": draw(mostly(st.one_of(st.none(), SANE_TS), st.one_of(FLOATS, VALUES))),
        "symbol": "BTC/USDT",
    }
    for _ in range(draw(st.sampled_from([0, 0, 0, 1, 2, 3]))):
        side = book[draw(st.sampled_from(["bids", "asks"]))]
        if not side:
            continue
        level = side[draw(st.integers(0, len(side) - 1))]
        what = draw(st.sampled_from(["value", "extra", "shape"]))
        if what == "value" and level:
            level[draw(st.integers(0, len(level) - 1))] = draw(st.one_of(NUMBERS, VALUES))
        elif what == "extra":  # some venues add a count or an order id
            level.append(draw(VALUES))
        else:
            level[:] = draw(st.lists(NUMBERS, max_size=3))
    return book


# -- the feed core on ccxt-shaped books -------------------------------------------------------


@FUZZ
@given(books=st.lists(ccxt_books(), min_size=1, max_size=8), max_z=st.sampled_from([0.0, 4.0]))
def test_ccxt_books_become_rows_tradable_only_if_sane(books: list[dict], max_z: float) -> None:
    core = FeedCore(UNIVERSE, "okx", FeedConfig(depth=4, max_jump_z=max_z), 1)
    events = [book_event("BTC/USDT", b, 4) for b in books]
    rows = core.rows_from_events(events, 1, 2)
    assert len(rows) == len(books)
    assert_rows_tradable_only_if_sane(rows)
    assert core.updates + sum(isinstance(e, BookInvalid) for e in events) == len(books)


ODD_ARRAYS = st.sampled_from(
    [
        np.empty((0, 2)),
        np.array([1.0, 2.0]),
        np.array([[1.0, 2.0, 3.0]]),
        np.array([["1", "2"]]),
        np.array([[1, 2]], dtype=np.int64),
        np.array([[math.nan, 1.0]]),
        np.array([[99.0, 1.0]]),
    ]
)


@FUZZ
@given(
    events=st.lists(
        st.builds(
            BookSnapshot,
            st.sampled_from(["BTC/USDT", "ETH/USDT", "DOGE/USDT"]),
            st.one_of(INTS, FLOATS, st.just(np.uint64(2**63))),
            st.one_of(INTS, FLOATS),
            st.one_of(ODD_ARRAYS, st.just(np.array([[99.0, 1.0], [98.0, 2.0]]))),
            st.one_of(ODD_ARRAYS, st.just(np.array([[100.0, 1.0]]))),
        ),
        max_size=6,
    )
)
def test_book_events_of_any_shape_never_break_the_feed(events: list[BookEvent]) -> None:
    core = FeedCore(UNIVERSE, "okx", FeedConfig(depth=3), 1)
    rows = core.rows_from_events(events, 1, 2)
    assert len(rows) == sum(e.symbol != "DOGE/USDT" for e in events)
    assert_rows_tradable_only_if_sane(rows)


# -- the order book ---------------------------------------------------------------------------

LEVEL_VALUES = st.one_of(NUMBERS, NUMBERS.map(repr), VALUES)
HOSTILE_LEVEL = st.one_of(
    st.tuples(LEVEL_VALUES, LEVEL_VALUES),
    st.tuples(st.floats(95.0, 105.0).map(str), LEVEL_VALUES),
    st.lists(LEVEL_VALUES, max_size=3),
)
SIZE_TEXT = mostly(st.integers(1, 500).map(lambda k: f"{k / 100:.2f}"), st.just("0"))


def sane_levels(low: int, high: int, min_size: int) -> st.SearchStrategy[list]:
    """Levels as venues send them (price and size text, a size of 0 removing the price) on a
    grid where bids and asks overlap a little; one list in five with hostile levels."""
    sane = st.tuples(st.integers(low, high).map(lambda k: f"{k / 100:.2f}"), SIZE_TEXT)
    clean = st.lists(sane, min_size=min_size, max_size=5)
    dirty = st.lists(mostly(sane, HOSTILE_LEVEL), min_size=min_size, max_size=5)
    return mostly(clean, dirty)


#: A message's sequence numbers: mostly the next ones, now and then anything.
SEQ = mostly(st.just("next"), st.one_of(st.none(), INTS, VALUES))
SNAPSHOT = st.tuples(
    st.just("snapshot"), sane_levels(9_500, 10_050, 1), sane_levels(9_950, 10_500, 1), SEQ
)
DELTA = st.tuples(
    st.just("delta"), sane_levels(9_500, 10_050, 0), sane_levels(9_950, 10_500, 0), SEQ
)
OPS = st.lists(st.one_of(SNAPSHOT, DELTA, DELTA), min_size=1, max_size=12)


def assert_book_sane_if_valid(book: OrderBook) -> None:
    if book.valid:
        assert_tradable(*book.top(10_000))


@FUZZ
@given(venue=st.sampled_from(sorted(VENUE_BOOK_RULES)), ops=OPS)
def test_order_book_updaters_never_raise_but_value_error_nor_keep_a_bad_book_valid(
    venue: str, ops: list[tuple]
) -> None:
    book = OrderBook(VENUE_BOOK_RULES[venue])
    u = 100
    for kind, bids, asks, seq in ops:
        first, last, prev = (u + 1, u + 2, u) if seq == "next" else (seq, seq, seq)
        try:
            if kind == "snapshot":
                reason = book.apply_snapshot(bids, asks, u if seq == "next" else seq, 0)
            else:
                reason = book.apply_delta(bids, asks, 0, first=first, last=last, prev=prev)
                u += 2
        except ValueError:
            pass  # a level or sequence number that cannot be read: the documented error
        else:
            assert reason == book.invalid_reason
        assert_book_sane_if_valid(book)


@FUZZ
@given(deltas=st.lists(st.tuples(st.lists(st.tuples(FLOATS, FLOATS), max_size=3)), max_size=6))
def test_a_book_with_a_bad_value_is_invalid_until_resynced(deltas: list[tuple[list]]) -> None:
    """Binance diffs as the bench feeds them: any NaN, infinite, non-positive or out-of-range
    value leaves the book invalid, whatever comes after, until a new snapshot."""
    book = OrderBook(VENUE_BOOK_RULES["binance"])
    book.apply_snapshot([("100", "1"), ("99", "2")], [("101", "1")], 10, 0)
    u = 10
    poisoned = False
    for (bids,) in deltas:
        bad = any(
            not (LEVEL_MIN <= p <= LEVEL_MAX and (q == 0 or LEVEL_MIN <= q <= LEVEL_MAX))
            for p, q in bids
        )
        reason = book.apply_delta(bids, [], 0, first=u + 1, last=u + 1)
        u += 1
        poisoned |= bad
        if poisoned:
            assert reason and not book.valid
        assert_book_sane_if_valid(book)
    assert book.apply_snapshot([("100", "1")], [("101", "1")], u, 0) == ""


# -- OKX's raw messages -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def okx() -> Iterator[Any]:
    exchange = ccxt.pro.okx()  # the real class: its safe_symbol maps instrument ids
    yield exchange
    asyncio.run(exchange.close())


def okx_side(low: int, high: int) -> st.SearchStrategy[list]:
    """A side as OKX sends it: [price, size, "0", orders], text."""
    return sane_levels(low, high, 0).map(
        lambda levels: [[*x, "0", "1"] if isinstance(x, tuple) else x for x in levels]
    )


OKX_ENTRY = st.fixed_dictionaries(
    {
        "bids": mostly(okx_side(9_500, 10_050), VALUES, 15),
        "asks": mostly(okx_side(9_950, 10_500), VALUES, 15),
        "ts": mostly(SANE_TS.map(str), VALUES, 15),
        # older captures carry no sequence ids; a checksum of their own is rarely right
        "seqId": mostly(st.none(), st.one_of(st.integers(0, 10), VALUES), 15),
        "prevSeqId": mostly(st.none(), st.one_of(st.integers(-1, 10), VALUES), 15),
        "checksum": mostly(st.none(), st.one_of(st.integers(-(2**31), 2**31), VALUES), 15),
    },
)
OKX_MESSAGES = st.fixed_dictionaries(
    {
        "action": mostly(st.sampled_from(["snapshot", "update"]), st.sampled_from(["x", None])),
        "arg": mostly(
            st.fixed_dictionaries(
                {"channel": st.just("books"), "instId": st.sampled_from(["BTC-USDT", "ETH-USDT"])}
            ),
            st.one_of(st.fixed_dictionaries({"instId": VALUES}), VALUES),
        ),
        "data": mostly(st.lists(mostly(OKX_ENTRY, VALUES), min_size=1, max_size=2), VALUES),
    }
)


@FUZZ
@given(messages=st.lists(mostly(OKX_MESSAGES, VALUES), min_size=1, max_size=8))
def test_okx_raw_messages_never_raise_nor_keep_a_bad_book_valid(
    okx: Any, messages: list[Any]
) -> None:
    check = OkxRawChecksum(okx)
    for message in messages:
        broken = check.observe(message)
        if broken is not None:
            symbol, reason = broken
            assert reason and not check.valid(symbol)
        for book in check._books.values():
            assert_book_sane_if_valid(book)


OKX_CAPTURED = [
    f.body
    for f in ws_frames(DATA / "okx" / "OKX.ws.1.0")
    if not f.sent and f.body.get("arg") == {"channel": "books", "instId": "BTC-USDT"}
]


@settings(max_examples=60, deadline=None)
@given(
    at=st.integers(1, len(OKX_CAPTURED) - 1),
    field=st.sampled_from([("bids", 0), ("bids", 1), ("asks", 0), ("asks", 1)]),
    value=VALUES,
)
def test_a_corrupted_captured_okx_update_invalidates_the_book(
    okx: Any, at: int, field: tuple[str, int], value: Any
) -> None:
    """The real stream, one price or size of one update replaced: the book is invalid, or its
    top 25 levels (what OKX's checksum covers) are the true book's; never a wrong top called
    valid, nor a book with a level no venue can mean."""
    frames = json.loads(json.dumps(OKX_CAPTURED[: at + 1]))
    side, index = field
    levels = frames[at]["data"][0][side]
    if not levels:
        return
    levels[0][index] = value
    check, truth = OkxRawChecksum(okx), OkxRawChecksum(okx)
    results = [check.observe(f) for f in frames]
    assert [truth.observe(f) for f in OKX_CAPTURED[: at + 1]] == [None] * (at + 1)
    assert results[:at] == [None] * at
    book = check._books["BTC-USDT"]
    if book.valid:
        assert_tradable(*book.top(10_000))
        got, want = book.top(25), truth._books["BTC-USDT"].top(25)
        assert all((g == w).all() for g, w in zip(got, want, strict=True))


# -- recorded lines and files -----------------------------------------------------------------

JSON_VALUES = st.recursive(
    st.one_of(st.none(), st.booleans(), NUMBERS, st.text(max_size=6)),
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=3), inner, max_size=3)
    ),
    max_leaves=12,
)
RECORD_LEVEL = st.one_of(
    st.tuples(st.floats(1, 1e3), st.floats(0, 10)).map(list),
    st.tuples(st.floats(1, 1e3), st.floats(0, 10)).map(list),
    st.tuples(NUMBERS, NUMBERS).map(list),
    st.lists(st.one_of(NUMBERS, VALUES), max_size=3),
    NUMBERS,
)
HOSTILE_FIELDS = {
    "exchange": JSON_VALUES,
    "symbol": st.one_of(st.just("XYZ/USDT"), JSON_VALUES),
    "timestamp": st.one_of(NUMBERS, JSON_VALUES),
    "nonce": st.one_of(INTS, JSON_VALUES),
    "bids": st.one_of(st.lists(RECORD_LEVEL, max_size=4), JSON_VALUES),
    "asks": st.one_of(st.lists(RECORD_LEVEL, max_size=4), JSON_VALUES),
}


@st.composite
def records(draw: st.DrawFn) -> dict[str, Any]:
    """A recorded book as `format_line` writes it, then 0-2 of its fields replaced by anything
    or left out."""
    side = st.lists(st.tuples(st.floats(1, 1e3), st.floats(0, 10)).map(list), max_size=4)
    record: dict[str, Any] = {
        "exchange": draw(st.sampled_from(["okx", "binance"])),
        "symbol": "BTC/USDT",
        "timestamp": draw(st.integers(0, 2 * 10**12)),
        "nonce": draw(st.one_of(st.none(), st.integers(1, 10**12))),
        "bids": draw(side),
        "asks": draw(side),
    }
    for field in draw(st.lists(st.sampled_from(sorted(HOSTILE_FIELDS)), max_size=2)):
        if draw(st.booleans()):
            record[field] = draw(HOSTILE_FIELDS[field])
        else:
            record.pop(field, None)
    return record


def encode(record: Any) -> str:
    return json.dumps(record)  # NaN and Infinity as Python writes them: not JSON


LINES = mostly(
    records().map(encode),
    st.one_of(
        JSON_VALUES.map(encode),
        st.text(max_size=40),
        st.integers(1, 3_000).map(lambda d: "[" * d + "]" * d),
        st.integers(1, 3_000).map(lambda d: '{"a":' * d + "1" + "}" * d),
    ),
)


def assert_recorded_book_sane(book: BookSnapshot) -> None:
    assert 0 <= book.seq <= INT64_MAX and 0 <= book.ts_exchange_ns <= INT64_MAX
    for side in (book.bids, book.asks):
        assert side.ndim == 2 and side.shape[1] == 2 and np.isfinite(side).all()
        assert (side[:, 0] > 0).all() and (side[:, 1] >= 0).all()


@settings(max_examples=400, deadline=None)
@given(text=LINES)
def test_the_line_decoder_raises_only_a_named_format_error(text: str) -> None:
    try:
        rec = parse_line(text, "books.jsonl", 7)
    except ReplayFormatError as err:
        assert str(err).startswith("books.jsonl:7: ") and "\n" not in str(err)
        return
    assert isinstance(rec.exchange, str) and isinstance(rec.book.symbol, str)
    assert_recorded_book_sane(rec.book)


def corrupt(data: bytes, at: int, junk: bytes, cut: bool) -> bytes:
    at = at % (len(data) + 1)
    return data[:at] if cut else data[:at] + junk + data[at + len(junk) :]


@settings(
    max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    lines=st.lists(LINES, max_size=6),
    packed=st.booleans(),
    at=st.integers(0, 10**6),
    junk=st.binary(max_size=40),
    cut=st.booleans(),
)
def test_a_corrupt_file_is_read_to_its_end_with_every_problem_named(
    lines: list[str], packed: bool, at: int, junk: bytes, cut: bool
) -> None:
    """Plain or gzipped, cut short or overwritten with junk anywhere: reading ends, every
    problem is one `ReplayFormatError` naming the file, every book read is sane, and the feed
    passes on only sane books."""
    good = json.dumps(
        {
            "exchange": "okx",
            "symbol": "BTC/USDT",
            "timestamp": 1,
            "bids": [[1, 1]],
            "asks": [[2, 1]],
        }
    )
    data = "\n".join([good, *lines, good]).encode() + b"\n"
    data = corrupt(gzip.compress(data) if packed else data, at, junk, cut)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / ("books.jsonl.gz" if packed else "books.jsonl")
        path.write_bytes(data)
        errors: list[ReplayFormatError] = []
        books = list(read_file(path, errors.append))
    for err in errors:
        assert isinstance(err, ReplayFormatError) and str(err).startswith(f"{path}:")
        assert "\n" not in str(err)
    core = FeedCore(UNIVERSE, "okx", FeedConfig(depth=4), 1)
    for rec in books:
        assert_recorded_book_sane(rec.book)
    assert_rows_tradable_only_if_sane(core.rows_from_events([r.book for r in books], 0, 0))
