"""Records that cross actor boundaries: numpy dtypes for the hot path, tuples for the rest.

Venues and symbols are small integer ids inside the hot path, assigned once at start-up from
the config's order (`Universe`). Timestamps are integer nanoseconds: `*_ns` since the epoch on
the wire, `*_mono_ns` from the host's monotonic clock for latency.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from functools import cached_property, lru_cache
from typing import Literal, NamedTuple

import numpy as np

Side = Literal["buy", "sell"]
OrderStatus = Literal["filled", "partial", "expired", "rejected", "timeout", "unknown"]

#: Kinds of opportunity: a crossed book, or opening / closing a spread-reversion position.
ARB = "arb"
REVERT_OPEN = "revert_open"
REVERT_CLOSE = "revert_close"

#: Flags of a BookUpdate row.
BOOK_VALID = 1

#: Why a book is not tradable (the feed counts each; a live venue adapter adds its own).
EMPTY_SIDE = "empty_side"
BAD_LEVEL = "non_positive_or_nan_level"
CROSSED = "crossed"
UNSORTED = "unsorted_levels"
SEQUENCE_GAP = "sequence_gap"
CHECKSUM = "checksum_mismatch"
PRICE_JUMP = "price_jump"
NO_SNAPSHOT = "no_snapshot"
#: A book event whose levels, sequence number or timestamp cannot be read at all.
MALFORMED_BOOK = "malformed_book"


@lru_cache(maxsize=16)
def book_update_dtype(depth: int) -> np.dtype:
    """One BookUpdate row: a top-`depth` snapshot of one (venue, symbol) book.

    Unused levels are NaN; `n_bids`/`n_asks` say how many are filled.
    """
    return np.dtype(
        [
            ("venue", np.int16),
            ("symbol", np.int16),
            ("flags", np.int16),
            ("n_bids", np.int16),
            ("n_asks", np.int16),
            ("seq", np.int64),
            ("ts_exchange_ns", np.int64),
            ("ts_recv_ns", np.int64),
            ("ts_recv_mono_ns", np.int64),
            ("bid_px", np.float64, (depth,)),
            ("bid_qty", np.float64, (depth,)),
            ("ask_px", np.float64, (depth,)),
            ("ask_qty", np.float64, (depth,)),
        ],
        align=True,
    )


@lru_cache(maxsize=64)
def _shards(symbols: tuple[str, ...], pool_size: int) -> tuple[int, ...]:
    if pool_size < 1:
        raise ValueError(f"a pool of {pool_size} cannot own symbols")
    order = sorted(range(len(symbols)), key=lambda i: (zlib.crc32(symbols[i].encode()), i))
    shard = [0] * len(symbols)
    for rank, i in enumerate(order):
        shard[i] = rank % pool_size
    return tuple(shard)


@dataclass(frozen=True)
class Universe:
    """The venues and symbols of a run and their integer ids (their index here)."""

    venues: tuple[str, ...]
    symbols: tuple[str, ...]

    def venue_id(self, name: str) -> int:
        return self.venues.index(name)

    def symbol_id(self, name: str) -> int:
        return self.symbols.index(name)

    def shard_of(self, symbol_id: int, pool_size: int) -> int:
        """The detector (or trading node) that owns a symbol, of `pool_size`: symbols ordered
        by a hash stable across runs and processes, then dealt round-robin, so that every
        shard has a symbol as soon as there are as many symbols as shards."""
        return _shards(self.symbols, pool_size)[symbol_id]

    @cached_property
    def bases(self) -> tuple[str, ...]:
        """Every base asset, sorted."""
        return tuple(sorted({symbol.split("/")[0] for symbol in self.symbols}))

    def assets(self) -> tuple[str, ...]:
        """Every base and quote asset, in first-seen order."""
        seen: dict[str, None] = {}
        for symbol in self.symbols:
            base, quote = symbol.split("/")
            seen[base] = None
            seen[quote] = None
        return tuple(seen)


class BookSnapshot(NamedTuple):
    """A venue's top-N book as a venue adapter hands it to a feed: levels as (n, 2) arrays."""

    symbol: str
    seq: int
    ts_exchange_ns: int
    bids: np.ndarray
    asks: np.ndarray


class BookInvalid(NamedTuple):
    """A venue's book of `symbol` may not be traded on until its next good snapshot."""

    symbol: str
    reason: str


BookEvent = BookSnapshot | BookInvalid


class Opportunity(NamedTuple):
    """Buy `size` on `buy_venue`, sell it on `sell_venue`: what a detector found."""

    opp_id: str
    symbol: int
    buy_venue: int
    sell_venue: int
    size: float
    buy_worst: float
    sell_worst: float
    buy_avg: float
    sell_avg: float
    profit_quote: float
    edge_bps: float
    buy_ts_ns: int
    sell_ts_ns: int
    tick_mono_ns: int
    detect_mono_ns: int
    kind: str = ARB
    # Hand-overs before detection in the distributed topology (0 where there was no hop): the
    # feed sent the batch holding the triggering book, the detector took it.
    batch_sent_mono_ns: int = 0
    detector_in_mono_ns: int = 0


class Approval(NamedTuple):
    """A risk-approved opportunity, possibly clipped to a smaller size."""

    opp: Opportunity
    size: float
    approve_mono_ns: int
    risk_in_mono_ns: int = 0  # when risk took the opportunity (0: in the same process)


class Trace(NamedTuple):
    """Monotonic nanoseconds at every hand-over of one trade, from the book to both acks, on
    one host; 0 where the topology has no such hop (a fused node has none before the venue).
    `latency.stage_samples` turns it into the per-stage breakdown of the report."""

    recv: int  # the feed received the newer of the two books
    batch_sent: int  # the feed sent the batch that held it
    detector_in: int  # the detector took that batch
    detected: int  # the detector emitted the opportunity
    risk_in: int  # risk (or the node's gate) took it
    approved: int
    executor_in: int  # the executor took the approval
    intent: int  # the intent was durable in the journal
    sent: int  # the later of the two legs left this process for its venue
    acked: int  # the later of the two acknowledgements came back


class OrderResult(NamedTuple):
    """What a venue says about one IOC order."""

    client_id: str
    venue: str
    symbol: str
    side: Side
    status: OrderStatus
    amount: float
    filled: float
    avg_price: float
    fee_quote: float  # every fee of the order, valued in quote
    reason: str
    ts_ns: int
    # The part of the fee the venue took in the base asset (Binance on a buy, unless paid in
    # BNB): the base received is `filled - fee_base`, and no quote was paid for that part.
    fee_base: float = 0.0
    # When the order really left this process (the request handed to the connection; for a
    # simulated venue, the call), monotonic ns; 0 if the venue adapter could not tell.
    sent_mono_ns: int = 0


class ExecutionReport(NamedTuple):
    """The outcome of one approval, reported by an executor to risk."""

    opp_id: str
    symbol: str
    fills: tuple[OrderResult, ...]
    legs_failed: int
    unwound: bool
    tick_to_trade_ns: int
    legs_unknown: int = 0  # legs whose outcome the venue never told us
    journal_failed: bool = False  # a record after the intent could not be journaled
    trace: Trace | None = None  # None: not traded live (reconciled, refused, written off)


def client_order_id(opp_id: str, leg: str) -> str:
    """Deterministic client order id: the same opportunity and leg always give the same id.

    Alphanumeric only and at most 32 characters, the strictest of the supported venues (OKX).
    """
    cid = f"{opp_id}{leg}"
    if not cid.isalnum() or len(cid) > 32:
        raise ValueError(f"client order id {cid!r} must be alphanumeric and at most 32 chars")
    return cid
