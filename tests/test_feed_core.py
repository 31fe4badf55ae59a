"""Feed batching: by rows, by age, per detector shard; broken books travel flagged invalid."""

from __future__ import annotations

import numpy as np

from hft_ray.config import FeedConfig
from hft_ray.feed.core import FeedCore
from hft_ray.types import BOOK_VALID, BookSnapshot, Universe

UNIVERSE = Universe(("binance", "okx"), ("BTC/USDT", "ETH/USDT", "SOL/USDT"))


def book(
    symbol: str = "BTC/USDT", bid: float = 100.0, ask: float = 100.1, n: int = 3
) -> BookSnapshot:
    bids = np.array([[bid - i, 1.0 + i] for i in range(n)])
    asks = np.array([[ask + i, 2.0 + i] for i in range(n)])
    return BookSnapshot(symbol, 7, 123, bids, asks)


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
    for symbol in UNIVERSE.symbols:
        core.on_event(book(symbol), 0, 0)
    for shard in core.pending():
        rows = core.take(shard)
        assert all(UNIVERSE.shard_of(int(r["symbol"]), 3) == shard for r in rows)


def test_crossed_or_broken_books_are_flagged_not_dropped() -> None:
    core = FeedCore(UNIVERSE, "okx", FeedConfig(), 1)
    core.on_event(book(bid=101.0, ask=100.0), 0, 0)
    broken = book()
    broken.asks[1, 1] = np.nan
    core.on_event(broken, 0, 0)
    core.on_event(book("DOGE/USDT"), 0, 0)
    rows = core.take(0)
    assert [bool(r["flags"] & BOOK_VALID) for r in rows] == [False, False]
    assert core.invalid == {"crossed": 1, "non_positive_or_nan_level": 1}
    assert core.unknown_symbols == 1


def test_a_burst_longer_than_a_batch_leaves_in_full_batches() -> None:
    core = FeedCore(UNIVERSE, "okx", FeedConfig(batch_max_rows=32), 1)
    burst = [book(UNIVERSE.symbols[i % 3], bid=100.0 + i * 0.01) for i in range(100)]
    batches = core.ingest(burst, 0, 0)
    assert [len(rows) for _, rows in batches] == [32, 32, 32]
    assert len(core.take(0)) == 4
    sent = np.concatenate([rows["bid_px"][:, 0] for _, rows in batches])
    assert list(sent) == [100.0 + i * 0.01 for i in range(96)]
