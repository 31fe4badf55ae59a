"""Order book integrity: a book kept by deltas under its venue's rules, and the checks that
decide whether anything may trade on it.

`OrderBook` holds one (venue, symbol) book: full depth as sorted price lists, the exchange's
original price and size strings beside each level (checksums are computed over those), and a
state, valid or invalid with a reason. A snapshot makes it valid; a delta that breaks the
venue's sequence rule or checksum, or leaves the book crossed, makes it invalid until the next
snapshot. The venue rules are data (`SequenceRule`, `ChecksumRule`); nothing in here names an
exchange except the rule tables at the bottom.
"""

from __future__ import annotations

import bisect
import math
import zlib
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from itertools import zip_longest
from typing import Literal

import numpy as np
from numba import njit

#: Reasons a book is not tradable.
EMPTY_SIDE = "empty_side"
BAD_LEVEL = "non_positive_or_nan_level"
CROSSED = "crossed"
UNSORTED = "unsorted_levels"
SEQUENCE_GAP = "sequence_gap"
CHECKSUM = "checksum_mismatch"
PRICE_JUMP = "price_jump"
NO_SNAPSHOT = "no_snapshot"

Level = tuple[str, str]  # price and size as the exchange sent them


_STATUS = ("", EMPTY_SIDE, BAD_LEVEL, UNSORTED, CROSSED)


@njit(cache=True)
def _bad_level(side: np.ndarray) -> bool:  # pragma: no cover - compiled
    for i in range(side.shape[0]):
        px, qty = side[i, 0], side[i, 1]
        if not (px > 0.0 and qty > 0.0) or not (np.isfinite(px) and np.isfinite(qty)):
            return True
    return False


@njit(cache=True)
def levels_status(bids: np.ndarray, asks: np.ndarray) -> int:  # pragma: no cover - compiled
    """Index into `_STATUS` of what is wrong with a top-N book; 0 if nothing (kernel)."""
    if bids.shape[0] == 0 or asks.shape[0] == 0:
        return 1
    if _bad_level(bids) or _bad_level(asks):
        return 2
    for i in range(1, bids.shape[0]):
        if bids[i, 0] >= bids[i - 1, 0]:
            return 3
    for i in range(1, asks.shape[0]):
        if asks[i, 0] <= asks[i - 1, 0]:
            return 3
    if bids[0, 0] >= asks[0, 0]:
        return 4
    return 0


def check_levels(bids: np.ndarray, asks: np.ndarray) -> str:
    """Why a top-N book (levels as (n, 2) price/qty arrays, best first) is broken, or ''."""
    return _STATUS[levels_status(bids, asks)]


def check_levels_reference(bids: np.ndarray, asks: np.ndarray) -> str:
    """`check_levels` in plain numpy: the definition the kernel is tested against."""
    if len(bids) == 0 or len(asks) == 0:
        return EMPTY_SIDE
    for side in (bids, asks):
        if not np.all(np.isfinite(side)) or np.any(side <= 0.0):
            return BAD_LEVEL
    if np.any(np.diff(bids[:, 0]) >= 0) or np.any(np.diff(asks[:, 0]) <= 0):
        return UNSORTED
    if bids[0, 0] >= asks[0, 0]:
        return CROSSED
    return ""


class JumpFilter:
    """Flags a mid price that jumps more than `max_z` standard deviations of recent mid-to-mid
    log returns: a fat-fingered print or a corrupt level is not traded on.

    A real move is confirmed by the next mid landing near the jumped one; it is then accepted
    as the new level, one update late. Until `min_samples` returns are seen nothing is flagged,
    and a flagged mid is never learned from, so one bad print cannot widen the band.
    """

    def __init__(self, max_z: float, window: int = 200, min_samples: int = 30) -> None:
        self._max_z = max_z
        self._returns: deque[float] = deque(maxlen=window)
        self._min = min_samples
        self._last: float | None = None
        self._pending: float | None = None

    def check(self, mid: float) -> bool:
        """True if `mid` may be traded on."""
        if self._last is None:
            self._last = mid
            return True
        r = math.log(mid / self._last)
        if len(self._returns) >= self._min:
            band = self._max_z * max(float(np.std(self._returns)), 1e-9)
            if abs(r) > band:
                confirmed = self._pending is not None and abs(math.log(mid / self._pending)) <= band
                self._pending = None if confirmed else mid
                if confirmed:
                    self._last = mid
                return confirmed
        self._pending = None
        self._returns.append(r)
        self._last = mid
        return True


# -- sequence rules ---------------------------------------------------------------------------

Verdict = Literal["apply", "skip", "gap"]


class SequenceRule:
    """Decides whether a delta continues the book; subclasses encode a venue's documented rule."""

    def on_snapshot(self, seq: int | None) -> None:
        """A snapshot with this sequence number was applied."""

    def check(self, first: int | None, last: int | None, prev: int | None) -> Verdict:
        return "apply"


class UpdateIdBridge(SequenceRule):
    """Binance spot, Gate.io spot: deltas carry a range `U..u` of update ids.

    After a REST snapshot with `lastUpdateId` L: drop deltas with `u <= L`; the first applied
    must have `U <= L + 1 <= u`; after that every `U` is the previous `u + 1`.
    """

    def __init__(self) -> None:
        self._last: int | None = None
        self._bridged = False

    def on_snapshot(self, seq: int | None) -> None:
        self._last = seq
        self._bridged = False

    def check(self, first: int | None, last: int | None, prev: int | None) -> Verdict:
        if self._last is None or first is None or last is None:
            return "gap"
        if last <= self._last:
            return "skip"
        if not self._bridged:
            if first <= self._last + 1 <= last:
                self._bridged = True
                self._last = last
                return "apply"
            return "gap"
        if first != self._last + 1:
            return "gap"
        self._last = last
        return "apply"


class PrevSeqLink(SequenceRule):
    """OKX: each message's `prevSeqId` is the previous message's `seqId` (`-1` on snapshots).

    Older captures carry no sequence ids; then only the checksum guards the book.
    """

    def __init__(self) -> None:
        self._last: int | None = None

    def on_snapshot(self, seq: int | None) -> None:
        self._last = seq

    def check(self, first: int | None, last: int | None, prev: int | None) -> Verdict:
        if prev is None or last is None:
            return "apply"
        if self._last is not None and prev != self._last:
            return "gap"
        self._last = last
        return "apply"


# -- checksum rules ---------------------------------------------------------------------------

ChecksumRule = Callable[[Sequence[Level], Sequence[Level]], int]


def okx_checksum(bids: Sequence[Level], asks: Sequence[Level]) -> int:
    """OKX: CRC32 (as signed 32-bit) of the top 25 levels interleaved
    `bidPx:bidSz:askPx:askSz:...`, the shorter side simply running out, original strings."""
    pairs = zip_longest(bids[:25], asks[:25])
    text = ":".join(f"{lvl[0]}:{lvl[1]}" for pair in pairs for lvl in pair if lvl is not None)
    crc = zlib.crc32(text.encode())
    return crc - (1 << 32) if crc >= 1 << 31 else crc


def kraken_checksum(bids: Sequence[Level], asks: Sequence[Level]) -> int:
    """Kraken: CRC32 (unsigned) of the top 10 asks then the top 10 bids, each price and volume
    with the decimal point and leading zeros removed."""

    def digits(s: str) -> str:
        return s.replace(".", "").lstrip("0")

    text = "".join(digits(p) + digits(q) for p, q in [*asks[:10], *bids[:10]])
    return zlib.crc32(text.encode())


# -- the book ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class BookRules:
    """How one venue's book stays correct."""

    sequence: type[SequenceRule]
    checksum: ChecksumRule | None = None
    checksum_depth: int = 0
    truncate_to: int | None = None  # Kraken: keep only the subscribed depth after each update


class _Side:
    """One side: prices kept sorted (bids negated), each with its original strings."""

    def __init__(self, descending: bool) -> None:
        self._sign = -1.0 if descending else 1.0
        self._keys: list[float] = []
        self._levels: dict[float, tuple[float, str, str]] = {}

    def clear(self) -> None:
        self._keys.clear()
        self._levels.clear()

    def set(self, price_s: str, size_s: str) -> None:
        price, size = float(price_s), float(size_s)
        key = self._sign * price
        if size == 0.0:
            if key in self._levels:
                del self._levels[key]
                del self._keys[bisect.bisect_left(self._keys, key)]
            return
        if key not in self._levels:
            bisect.insort(self._keys, key)
        self._levels[key] = (size, price_s, size_s)

    def truncate(self, depth: int) -> None:
        for key in self._keys[depth:]:
            del self._levels[key]
        del self._keys[depth:]

    def top(self, n: int) -> np.ndarray:
        keys = self._keys[:n]
        out = np.empty((len(keys), 2))
        out[:, 0] = keys
        out[:, 0] *= self._sign
        levels = self._levels
        out[:, 1] = [levels[k][0] for k in keys]
        return out

    def strings(self, n: int) -> list[Level]:
        levels = self._levels
        return [levels[k][1:] for k in self._keys[:n]]

    def best(self) -> float | None:
        return self._sign * self._keys[0] if self._keys else None

    def __len__(self) -> int:
        return len(self._keys)


class OrderBook:
    """One venue's book of one symbol, built from a snapshot and kept by deltas."""

    def __init__(self, rules: BookRules) -> None:
        self._rules = rules
        self._sequence = rules.sequence()
        self.bids = _Side(descending=True)
        self.asks = _Side(descending=False)
        self.invalid_reason = NO_SNAPSHOT
        self.seq: int | None = None
        self.ts_exchange_ns = 0
        self.updates = 0

    @property
    def valid(self) -> bool:
        return not self.invalid_reason

    def apply_snapshot(
        self,
        bids: Sequence[Level],
        asks: Sequence[Level],
        seq: int | None,
        ts_exchange_ns: int,
        checksum: int | None = None,
    ) -> str:
        """Replace the book; return '' or why it is invalid."""
        self.bids.clear()
        self.asks.clear()
        for p, q in bids:
            self.bids.set(p, q)
        for p, q in asks:
            self.asks.set(p, q)
        self._sequence.on_snapshot(seq)
        self.seq = seq
        self.ts_exchange_ns = ts_exchange_ns
        self.invalid_reason = ""
        return self._after_change(checksum)

    def apply_delta(
        self,
        bids: Sequence[Level],
        asks: Sequence[Level],
        ts_exchange_ns: int,
        *,
        first: int | None = None,
        last: int | None = None,
        prev: int | None = None,
        checksum: int | None = None,
    ) -> str:
        """Apply one delta; return '' or why the book is (now, or still) invalid.

        A delta the sequence rule says is already contained in the snapshot is skipped and
        changes nothing. An invalid book ignores deltas until the next snapshot.
        """
        if not self.valid:
            return self.invalid_reason
        verdict = self._sequence.check(first, last, prev)
        if verdict == "skip":
            return ""
        if verdict == "gap":
            self.invalid_reason = SEQUENCE_GAP
            return self.invalid_reason
        for p, q in bids:
            self.bids.set(p, q)
        for p, q in asks:
            self.asks.set(p, q)
        self.seq = last if last is not None else self.seq
        self.ts_exchange_ns = ts_exchange_ns
        return self._after_change(checksum)

    def _after_change(self, checksum: int | None) -> str:
        self.updates += 1
        if self._rules.truncate_to is not None:
            self.bids.truncate(self._rules.truncate_to)
            self.asks.truncate(self._rules.truncate_to)
        if checksum is not None and self._rules.checksum is not None:
            depth = self._rules.checksum_depth
            got = self._rules.checksum(self.bids.strings(depth), self.asks.strings(depth))
            if got != checksum:
                self.invalid_reason = CHECKSUM
                return self.invalid_reason
        bid, ask = self.bids.best(), self.asks.best()
        if bid is None or ask is None:
            self.invalid_reason = EMPTY_SIDE
        elif bid >= ask:
            self.invalid_reason = CROSSED
        return self.invalid_reason

    def invalidate(self, reason: str) -> None:
        """Mark the book untradable until the next snapshot (e.g. an error from the venue)."""
        self.invalid_reason = reason

    def top(self, depth: int) -> tuple[np.ndarray, np.ndarray]:
        """(bids, asks) as (n, 2) price/size arrays, best first."""
        return self.bids.top(depth), self.asks.top(depth)


#: Each venue's book rules, as its documentation states them.
VENUE_BOOK_RULES: dict[str, BookRules] = {
    "binance": BookRules(UpdateIdBridge),
    "gateio": BookRules(UpdateIdBridge),
    "okx": BookRules(PrevSeqLink, okx_checksum, checksum_depth=25),
    "kraken": BookRules(SequenceRule, kraken_checksum, checksum_depth=10),
}
