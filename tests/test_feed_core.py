"""The feed core: rows checked and counted, broken books flagged not dropped, batches by rows,
by age and per detector shard, growing rather than losing rows."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from hft_ray.config import FeedConfig, HftConfig
from hft_ray.feed.checks import STATUS
from hft_ray.feed.core import FeedCore
from hft_ray.types import BOOK_VALID, BookInvalid, BookSnapshot, Universe, book_update_dtype
from hft_ray.venues.ccxt_live import book_event
from hft_ray.venues.sim import sim_exchange_from_config

UNIVERSE = Universe(("binance", "okx"), ("BTC/USDT", "ETH/USDT", "SOL/USDT"))
T0 = 1_700_000_000_000_000_000


def book(
    symbol: str = "BTC/USDT", bid: float = 100.0, ask: float = 100.1, n: int = 3
) -> BookSnapshot:
    bids = np.array([[bid - i, 1.0 + i] for i in range(n)])
    asks = np.array([[ask + i, 2.0 + i] for i in range(n)])
    return BookSnapshot(symbol, 7, 123, bids, asks)


def valid(rows: np.ndarray) -> list[bool]:
    return [bool(f & BOOK_VALID) for f in rows["flags"]]


def test_rows_carry_the_book_and_pad_unused_levels() -> None:
    core = FeedCore(UNIVERSE, "okx", FeedConfig(depth=5, batch_max_rows=4), 1)
    core.on_event(book(n=3), 1_000, 2_000)
    (row,) = core.take(0)
    assert (row["venue"], row["symbol"], row["seq"], row["ts_exchange_ns"]) == (1, 0, 7, 123)
    assert (row["ts_recv_ns"], row["ts_recv_mono_ns"], row["n_bids"], row["n_asks"]) == (
        1_000,
        2_000,
        3,
        3,
    )
    assert row["flags"] & BOOK_VALID
    assert list(row["bid_px"][:3]) == [100.0, 99.0, 98.0] and np.isnan(row["bid_px"][3:]).all()
    assert list(row["ask_qty"][:3]) == [2.0, 3.0, 4.0]


def test_a_deeper_book_is_cut_to_the_feed_depth() -> None:
    core = FeedCore(UNIVERSE, "okx", FeedConfig(depth=2), 1)
    (row,) = core.rows_from_events([book(n=5)], 0, 0)
    assert (row["n_bids"], row["n_asks"]) == (2, 2)
    assert list(row["bid_px"]) == [100.0, 99.0] and list(row["ask_px"]) == [100.1, 101.1]


def test_extreme_numbers_invalidate_the_book_and_never_stop_the_feed() -> None:
    """A price of 1e308 or 5e-324, a nonce of 2**63 or below 0, a timestamp past int64, or
    levels that are no (n, 2) float array: each a row without the valid flag, counted under
    its reason as a book that failed a check; the good books around them pass."""
    core = FeedCore(UNIVERSE, "okx", FeedConfig(depth=3, max_jump_z=4.0), 1)
    good = book()
    bad = [
        good._replace(bids=np.array([[1e308, 1.0]]), asks=np.array([[1.5e308, 1.0]])),
        good._replace(bids=np.array([[5e-324, 1.0]])),
        good._replace(asks=np.array([[100.1, 1e308]])),
        good._replace(seq=2**63),
        good._replace(seq=-1),
        good._replace(ts_exchange_ns=10**30),
        good._replace(bids=np.array([100.0, 1.0])),
        good._replace(asks=np.array([[100.1]])),
    ]
    rows = core.rows_from_events([good, *bad, good], 5, 6)
    assert valid(rows) == [True] + [False] * len(bad) + [True]
    assert core.invalid == {
        "level_out_of_range": 3,
        "nonce_out_of_range": 2,
        "timestamp_out_of_range": 1,
        "malformed_book": 2,
    }
    assert core.updates == len(bad) + 2
    assert (rows["seq"][4:9] == 0).all() and (rows["n_bids"][4:9] == 0).all()


def test_ccxt_books_as_rows() -> None:
    """Books as ccxt.pro gives them: extra fields per level are dropped, a missing timestamp
    stays missing (0) and the row carries the receipt instead, and what cannot be read is an
    invalidation, never an exception."""
    now = 1_700_000_000_000_000_000
    ok = {"bids": [[100.0, 1.0, 3]], "asks": [[100.1, 2.0, 1]], "nonce": 9, "timestamp": None}
    event = book_event("BTC/USDT", ok, 5)
    assert isinstance(event, BookSnapshot) and (event.seq, event.ts_exchange_ns) == (9, 0)
    assert event.bids.tolist() == [[100.0, 1.0]] and event.asks.tolist() == [[100.1, 2.0]]
    broken = [
        {**ok, "bids": [[100.0]]},
        {**ok, "bids": [[100.0, "x"]]},
        {**ok, "asks": None},
        {**ok, "nonce": "9"},
        {**ok, "nonce": 9.5},
        {**ok, "timestamp": float("nan")},
        {**ok, "timestamp": True},
        {"bids": []},
        None,
    ]
    events = [book_event("BTC/USDT", b, 5) for b in broken]
    assert events == [BookInvalid("BTC/USDT", "malformed_book")] * len(broken)
    huge = book_event("BTC/USDT", {**ok, "nonce": 2**63, "timestamp": 1e308}, 5)
    core = FeedCore(UNIVERSE, "okx", FeedConfig(), 1)
    rows = core.rows_from_events([event, huge], now, 0)
    assert valid(rows) == [True, False] and rows["ts_exchange_ns"][0] == now
    assert core.invalid == {"nonce_out_of_range": 1}


def test_a_book_older_than_one_passed_on_is_refused_until_the_sequence_restarts() -> None:
    """A sequence number below the highest passed on for the symbol (a stale snapshot) is
    `nonce_backwards`; after `restart_sequence` (a resync) a lower start is taken."""
    core = FeedCore(UNIVERSE, "okx", FeedConfig(max_jump_z=0), 1)
    good = book()
    seqs = [10, 12, 11, 12, 13]
    rows = core.rows_from_events([good._replace(seq=n) for n in seqs], 5, 6)
    assert valid(rows) == [True, True, False, True, True]
    assert core.invalid == {"nonce_backwards": 1}
    assert list(core.last_status) == [0, 0, STATUS.index("nonce_backwards"), 0, 0]
    other = good._replace(symbol="ETH/USDT", seq=1)  # each symbol has its own sequence
    assert valid(core.rows_from_events([other, good._replace(seq=5)], 5, 6)) == [True, False]
    core.restart_sequence("BTC/USDT")
    assert valid(core.rows_from_events([good._replace(seq=5)], 5, 6)) == [True]


def test_batch_leaves_when_full_or_old() -> None:
    core = FeedCore(UNIVERSE, "okx", FeedConfig(batch_max_rows=3, batch_max_us=1_000), 1)
    ms = 1_000_000
    assert core.on_event(book(), 0, 10 * ms) is None
    assert core.due(10 * ms + ms // 2) == []
    assert core.next_deadline_ns(10 * ms + ms // 2) == ms // 2
    assert core.due(11 * ms) == [0]
    core.on_event(book(), 0, 11 * ms)
    assert core.on_event(book(), 0, 11 * ms + 1) == 0
    assert len(core.take(0)) == 3
    assert core.pending() == [] and core.next_deadline_ns(20_000) is None


def test_rows_go_to_the_shard_that_owns_the_symbol() -> None:
    core = FeedCore(UNIVERSE, "binance", FeedConfig(batch_max_rows=10), 3)
    core.add(core.rows_from_events([book(s) for s in UNIVERSE.symbols * 2], 0, 0))
    taken = 0
    for shard in core.pending():
        rows = core.take(shard)
        taken += len(rows)
        assert all(UNIVERSE.shard_of(int(r["symbol"]), 3) == shard for r in rows)
    assert taken == 6


def test_crossed_or_broken_books_are_flagged_not_dropped() -> None:
    core = FeedCore(UNIVERSE, "okx", FeedConfig(), 1)
    core.on_event(book(bid=101.0, ask=100.0), 0, 0)
    broken = book()
    broken.asks[1, 1] = np.nan
    core.on_event(broken, 0, 0)
    core.on_event(book("DOGE/USDT"), 0, 0)
    rows = core.take(0)
    assert valid(rows) == [False, False]
    assert core.invalid == {"crossed": 1, "non_positive_or_nan_level": 1}
    assert core.unknown_symbols == 1 and core.updates == 2


def test_an_invalidation_travels_as_an_invalid_row_and_is_not_an_update() -> None:
    core = FeedCore(UNIVERSE, "okx", FeedConfig(depth=3), 1)
    rows = core.rows_from_events(
        [book("ETH/USDT"), BookInvalid("ETH/USDT", "sequence_gap"), book("SOL/USDT")], 50, 60
    )
    assert valid(rows) == [True, False, True]
    gap = rows[1]
    assert (gap["symbol"], gap["seq"], gap["n_bids"], gap["n_asks"]) == (1, 0, 0, 0)
    assert gap["ts_exchange_ns"] == 50 and gap["ts_recv_mono_ns"] == 60
    assert np.isnan(gap["bid_px"]).all()
    assert core.invalid == {"sequence_gap": 1} and core.updates == 2


def test_a_burst_leaves_as_one_batch_however_large() -> None:
    core = FeedCore(UNIVERSE, "okx", FeedConfig(batch_max_rows=32), 1)
    burst = [book(UNIVERSE.symbols[i % 3], bid=100.0 + i * 0.01) for i in range(100)]
    assert core.add(core.rows_from_events(burst[:20], 0, 0)) == []
    assert core.add(core.rows_from_events(burst[20:], 0, 0)) == [0]
    sent = core.take(0)
    assert list(sent["bid_px"][:, 0]) == [100.0 + i * 0.01 for i in range(100)]
    assert core.pending() == []
    assert [len(rows) for _, rows in core.ingest(burst, 0, 0)] == [100]  # events in, batch out


def sim_rows(config: HftConfig, venue: str, steps: int) -> list[np.ndarray]:
    ex = sim_exchange_from_config(config, venue)
    return [ex.step_rows(T0 + i) for i in range(steps)]


def test_check_rows_stamps_flags_and_counts_a_venue_array(
    make_config: Callable[..., HftConfig],
) -> None:
    config = make_config()
    universe = Universe(tuple(config.venues), tuple(config.symbols))
    core = FeedCore(universe, "okx", config.feed, 1)
    rows = sim_rows(config, "okx", 2)[1]
    rows["ask_qty"][2, 5] = -1.0
    assert core.check_rows(rows, 11, 22) is rows
    assert valid(rows) == [True, True, False]
    assert (rows["ts_recv_ns"] == 11).all() and (rows["ts_recv_mono_ns"] == 22).all()
    assert core.updates == 3 and core.invalid == {"non_positive_or_nan_level": 1}


def test_check_rows_decides_as_the_event_path_on_the_same_books(
    make_config: Callable[..., HftConfig],
) -> None:
    """One array of many steps, checked at once, gets the flags the same books get one event
    at a time: the jump filter runs per symbol in row order either way."""
    config = make_config(sim={"dislocations_per_min": 600}, feed={"max_jump_z": 4})
    universe = Universe(tuple(config.venues), tuple(config.symbols))
    a, b = (sim_exchange_from_config(config, "gateio") for _ in range(2))
    rows = np.concatenate([a.step_rows(T0 + i) for i in range(400)])
    events = [book for i in range(400) for book in b.step(T0 + i)]
    batched = FeedCore(universe, "gateio", config.feed, 1)
    one_by_one = FeedCore(universe, "gateio", config.feed, 1)
    batched.check_rows(rows, 0, 0)
    flags = [one_by_one.rows_from_events([e], 0, 0)["flags"][0] for e in events]
    assert rows["flags"].tolist() == flags
    assert batched.invalid == one_by_one.invalid and batched.invalid["price_jump"] > 5
    assert batched.updates == one_by_one.updates == 1_200


def test_rows_the_kernels_cannot_read_are_refused(make_config: Callable[..., HftConfig]) -> None:
    config = make_config()
    universe = Universe(tuple(config.venues), tuple(config.symbols))
    core = FeedCore(universe, "okx", config.feed, 1)
    good = sim_rows(config, "okx", 1)[0]
    for method in (core.add, lambda rows: core.check_rows(rows, 0, 0)):
        with pytest.raises(ValueError, match=r"book_update_dtype\(20\)"):
            method(np.zeros(3, book_update_dtype(5)))
    with pytest.raises(ValueError, match="venue ids"):
        core.check_rows(sim_rows(config, "binance", 1)[0], 0, 0)
    bad = good.copy()
    bad["symbol"][0] = 3
    with pytest.raises(ValueError, match=r"symbol ids outside 0\.\.2"):
        core.check_rows(bad, 0, 0)
    bad = good.copy()
    bad["n_asks"][1] = 21
    with pytest.raises(ValueError, match=r"n_asks outside 0\.\.20"):
        core.check_rows(bad, 0, 0)
    assert core.updates == 0
    assert len(core.check_rows(np.zeros(0, book_update_dtype(20)), 0, 0)) == 0


def test_a_recording_refuses_a_book_stale_at_receipt_and_a_run_leaves_age_to_the_detector() -> None:
    config = FeedConfig(max_jump_z=0, max_book_age_ms=500)
    old, young = (
        book()._replace(ts_exchange_ns=T0 - 600_000_000),
        book()._replace(ts_exchange_ns=T0),
    )
    recording = FeedCore(UNIVERSE, "okx", config, 1, stale_at_receipt=True)
    assert valid(recording.rows_from_events([old, young], T0, 0)) == [False, True]
    assert recording.invalid == {"stale": 1}
    run = FeedCore(UNIVERSE, "okx", config, 1)
    assert valid(run.rows_from_events([old, young], T0, 0)) == [True, True]


def test_after_the_venue_invalidates_a_book_its_next_mid_is_a_new_anchor() -> None:
    """The market moves while a book is broken: the first book after an outage is not held
    against the mid from before it (a jump it would otherwise be), later ones are."""
    core = FeedCore(UNIVERSE, "okx", FeedConfig(), 1)
    before, moved = book(bid=100.0, ask=100.1), book(bid=101.0, ask=101.1)  # ~100 bps
    assert valid(core.rows_from_events([before, moved], 5, 6)) == [True, False]
    outage = BookInvalid("BTC/USDT", "sequence_gap")
    after = book(bid=102.0, ask=102.1)
    assert valid(core.rows_from_events([outage, after, before], 5, 6)) == [False, True, False]
