"""Order book integrity: a book kept by deltas under its venue's rules, and the checks that
decide whether anything may trade on it.

`OrderBook` holds one (venue, symbol) book: full depth as sorted float64 (price, size) rows,
read and merged by compiled kernels one message at a time (see the level kernels), the
exchange's original price and size strings beside each level where the venue's checksum is
computed over them, and a state, valid or invalid with a reason. A snapshot makes it valid;
a delta that breaks the venue's sequence rule or checksum, carries a level no venue can mean
(NaN, infinite, non-positive or out-of-range price, negative or NaN size), or leaves the book
crossed, makes it invalid until the next snapshot. The venue rules are data (`SequenceRule`,
`ChecksumRule`); nothing in here names an exchange except the rule tables at the bottom.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from itertools import chain
from typing import Literal

import numpy as np
import orjson
from numba import njit

from hft_ray.types import (  # the reasons a book is not tradable, named once
    BAD_LEVEL,
    CHECKSUM,
    CROSSED,
    EMPTY_SIDE,
    NO_SNAPSHOT,
    SEQUENCE_GAP,
    UNSORTED,
)

Level = tuple[str, str]  # price and size as the exchange sent them

#: A level whose price or size is finite and positive but outside [LEVEL_MIN, LEVEL_MAX].
OUT_OF_RANGE = "level_out_of_range"
#: The prices and sizes a tradable level may have: within them every product and ratio of two
#: (notional, edge in bps, fees) stays finite and normal in float64; a price of 1e308 or a
#: denormal is a corrupt message, not a market.
LEVEL_MIN, LEVEL_MAX = 1e-15, 1e15

_STATUS = ("", EMPTY_SIDE, BAD_LEVEL, UNSORTED, CROSSED, OUT_OF_RANGE)
_BAD, _OUT_OF_RANGE = 2, 5


@njit(cache=True)
def level_defect(price: float, size: float) -> int:  # pragma: no cover - compiled
    """`_BAD` for a NaN, infinite or non-positive price or size, `_OUT_OF_RANGE` for one outside
    [LEVEL_MIN, LEVEL_MAX], else 0: a status code of `_STATUS` (kernel)."""
    if not (price > 0.0 and size > 0.0 and price < np.inf and size < np.inf):
        return _BAD
    if not (LEVEL_MIN <= price <= LEVEL_MAX and LEVEL_MIN <= size <= LEVEL_MAX):
        return _OUT_OF_RANGE
    return 0


@njit(cache=True)
def _side_defect(side: np.ndarray) -> int:  # pragma: no cover - compiled
    worst = 0
    for i in range(side.shape[0]):
        code = level_defect(side[i, 0], side[i, 1])
        if code == _BAD:
            return code
        worst = max(worst, code)
    return worst


@njit(cache=True)
def levels_status(bids: np.ndarray, asks: np.ndarray) -> int:  # pragma: no cover - compiled
    """Index into `_STATUS` of what is wrong with a top-N book; 0 if nothing (kernel)."""
    if bids.shape[0] == 0 or asks.shape[0] == 0:
        return 1
    bad_bids, bad_asks = _side_defect(bids), _side_defect(asks)
    if bad_bids == _BAD or bad_asks == _BAD:
        return _BAD
    if bad_bids or bad_asks:
        return _OUT_OF_RANGE
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
    for side in (bids, asks):
        if np.any(side < LEVEL_MIN) or np.any(side > LEVEL_MAX):
            return OUT_OF_RANGE
    if np.any(np.diff(bids[:, 0]) >= 0) or np.any(np.diff(asks[:, 0]) <= 0):
        return UNSORTED
    if bids[0, 0] >= asks[0, 0]:
        return CROSSED
    return ""


# -- sequence rules ---------------------------------------------------------------------------

Verdict = Literal["apply", "skip", "gap"]


class SequenceRule:
    """Decides whether a delta continues the book; subclasses encode a venue's documented rule.

    `check` only judges; `accept` records a delta `check` let through once it is applied, so a
    delta whose levels cannot be read leaves the rule as it was (the next one is then a gap).
    """

    def on_snapshot(self, seq: int | None) -> None:
        """A snapshot with this sequence number was applied."""

    def check(self, first: int | None, last: int | None, prev: int | None) -> Verdict:
        return "apply"

    def accept(self, first: int | None, last: int | None, prev: int | None) -> None:
        """The delta `check` said to apply was applied."""


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
            return "apply" if first <= self._last + 1 <= last else "gap"
        return "apply" if first == self._last + 1 else "gap"

    def accept(self, first: int | None, last: int | None, prev: int | None) -> None:
        self._bridged = True
        self._last = last


class PrevSeqLink(SequenceRule):
    """OKX: each message's `prevSeqId` is the previous message's `seqId` (`-1` on snapshots);
    Deribit likewise with `prev_change_id` and `change_id`.

    Older OKX captures carry no sequence ids; then only the checksum guards the book.
    """

    def __init__(self) -> None:
        self._last: int | None = None

    def on_snapshot(self, seq: int | None) -> None:
        self._last = seq

    def check(self, first: int | None, last: int | None, prev: int | None) -> Verdict:
        if prev is None or last is None:
            return "apply"
        return "gap" if self._last is not None and prev != self._last else "apply"

    def accept(self, first: int | None, last: int | None, prev: int | None) -> None:
        if prev is not None and last is not None:
            self._last = last


class PrevUpdateIdLink(UpdateIdBridge):
    """Binance USD-M and COIN-M futures: deltas carry `U..u` and `pu`, the previous event's `u`.

    After a REST snapshot with `lastUpdateId` L: drop deltas with `u < L`; the first applied
    must have `U <= L <= u`; after that every `pu` is the previous `u` (a repeat is a gap).
    """

    def check(self, first: int | None, last: int | None, prev: int | None) -> Verdict:
        if self._last is None or first is None or last is None:
            return "gap"
        if self._bridged:
            return "apply" if prev == self._last else "gap"
        if last < self._last:
            return "skip"
        return "apply" if first <= self._last else "gap"


class RangeOverlap(UpdateIdBridge):
    """KuCoin spot: deltas carry `sequenceStart..sequenceEnd`; the snapshot, `sequence`.

    Deltas ending at or before the snapshot's sequence are dropped; every applied delta must
    start at or before the previous end + 1 and end after it. Once one is applied, a delta
    that does not (a repeat included) is a gap.
    """

    def check(self, first: int | None, last: int | None, prev: int | None) -> Verdict:
        if self._last is None or first is None or last is None:
            return "gap"
        if last <= self._last:
            return "gap" if self._bridged else "skip"
        return "apply" if first <= self._last + 1 else "gap"


class ConsecutiveId(SequenceRule):
    """Bybit v5 (`u`), Coinbase Advanced Trade (`sequence_num`): every message's number is
    the previous one's + 1, counted from the snapshot's; anything else is a gap."""

    def __init__(self) -> None:
        self._last: int | None = None

    def on_snapshot(self, seq: int | None) -> None:
        self._last = seq

    def check(self, first: int | None, last: int | None, prev: int | None) -> Verdict:
        if self._last is None or last is None:
            return "gap"
        return "apply" if last == self._last + 1 else "gap"

    def accept(self, first: int | None, last: int | None, prev: int | None) -> None:
        self._last = last


# -- checksum rules ---------------------------------------------------------------------------

ChecksumRule = Callable[[Sequence[Level], Sequence[Level]], int]
_flat = chain.from_iterable


def okx_checksum(bids: Sequence[Level], asks: Sequence[Level]) -> int:
    """OKX: CRC32 (as signed 32-bit) of the top 25 levels interleaved
    `bidPx:bidSz:askPx:askSz:...`, the shorter side simply running out, original strings."""
    b, a = bids[:25], asks[:25]
    n = min(len(b), len(a))
    text = ":".join(chain(_flat(_flat(zip(b, a, strict=False))), _flat(b[n:]), _flat(a[n:])))
    crc = zlib.crc32(text.encode())
    return crc - (1 << 32) if crc >= 1 << 31 else crc


def kraken_checksum(bids: Sequence[Level], asks: Sequence[Level]) -> int:
    """Kraken: CRC32 (unsigned) of the top 10 asks then the top 10 bids, each price and volume
    with the decimal point and leading zeros removed."""

    def digits(s: str) -> str:
        return s.replace(".", "").lstrip("0")

    text = "".join(digits(p) + digits(q) for p, q in [*asks[:10], *bids[:10]])
    return zlib.crc32(text.encode())


# -- level kernels ----------------------------------------------------------------------------
#
# A side is a float64 array of (price, size) rows sorted worst price first, so that the busy
# end of a book, near the best price, is the end of the array: an insert or a delete there
# moves few rows. Bids are therefore stored ascending and asks descending.

#: 10**k for k <= 22, each exact in float64. A decimal whose digits form an integer below 2**53,
#: divided by one of these, is correctly rounded: the same float as Python's `float()` of it.
_POW10 = np.array([10.0**k for k in range(23)])
_MAX_MANTISSA = 1 << 53
_QUOTE, _MINUS, _DOT, _COMMA, _OPEN, _CLOSE = 34, 45, 46, 44, 91, 93


@njit(cache=True)
def _parse_decimal(buf: np.ndarray, i: int) -> tuple[float, int]:  # pragma: no cover - compiled
    """The plain decimal (a JSON string or number: digits, one optional '.', a leading '-')
    at `buf[i]`, and the index after it; index -1 for anything it cannot read exactly."""
    n = buf.shape[0]
    quoted = i < n and buf[i] == _QUOTE
    i += quoted
    negative = i < n and buf[i] == _MINUS
    i += negative
    start, mantissa = i, 0
    while i < n and 48 <= buf[i] <= 57:
        mantissa = mantissa * 10 + (buf[i] - 48)
        if mantissa >= _MAX_MANTISSA:
            return 0.0, -1
        i += 1
    digits, scale = i - start, 0
    if i < n and buf[i] == _DOT:
        i += 1
        start = end = i  # end: after the last non-zero digit (trailing zeros change nothing)
        while i < n and 48 <= buf[i] <= 57:
            i += 1
            if buf[i - 1] != 48:
                end = i
        digits += i - start
        scale = end - start
        if scale > 22:
            return 0.0, -1
        for k in range(start, end):
            mantissa = mantissa * 10 + (buf[k] - 48)
            if mantissa >= _MAX_MANTISSA:
                return 0.0, -1
    if digits == 0:
        return 0.0, -1
    if quoted:
        if i >= n or buf[i] != _QUOTE:
            return 0.0, -1
        i += 1
    value = mantissa / _POW10[scale]
    return (-value if negative else value), i


@njit(cache=True)
def parse_levels(buf: np.ndarray, vals: np.ndarray) -> tuple[int, int]:  # pragma: no cover
    """Read the JSON `[[[price, size], ...], [[price, size], ...]]` (bids, then asks; each
    value a decimal string or number) into `vals` as flat price, size pairs (kernel).

    Returns (values of the bids, values in all), or (-1, -1) if the text is anything else,
    holds a value this parser cannot read exactly, or does not fit in `vals`; the caller then
    reads the levels with `float()` (`parse_levels_reference`).
    """
    end = buf.shape[0] - 1  # the closing bracket
    if end < 4 or buf[0] != _OPEN or buf[end] != _CLOSE:
        return -1, -1
    n, i, bid_values = 0, 1, 0
    for side in range(2):
        if side == 1:
            if buf[i] != _COMMA:
                return -1, -1
            i += 1
        if i >= end or buf[i] != _OPEN:
            return -1, -1
        i += 1
        if buf[i] == _CLOSE:
            i += 1
        else:
            while True:
                if i >= end or buf[i] != _OPEN or n + 2 > vals.shape[0]:
                    return -1, -1
                price, i = _parse_decimal(buf, i + 1)
                if i < 0 or i >= end or buf[i] != _COMMA:
                    return -1, -1
                size, i = _parse_decimal(buf, i + 1)
                if i < 0 or i + 1 >= end or buf[i] != _CLOSE:
                    return -1, -1
                vals[n], vals[n + 1] = price, size
                n += 2
                i += 2
                if buf[i - 1] == _CLOSE:
                    break
                if buf[i - 1] != _COMMA:
                    return -1, -1
        if side == 0:
            bid_values = n
    if i != end:
        return -1, -1
    return bid_values, n


@njit(cache=True)
def _merge(
    rows: np.ndarray, count: int, vals: np.ndarray, lo: int, hi: int, descending: bool
) -> int:  # pragma: no cover - compiled
    """Apply the pairs `vals[lo:hi]` in order to a side of `count` rows; the new count."""
    for j in range(lo, hi, 2):
        price, size = vals[j], vals[j + 1]
        a, b = 0, count
        while a < b:  # the first row not worse than `price`
            mid = (a + b) >> 1
            if (rows[mid, 0] < price) if descending else (rows[mid, 0] > price):
                a = mid + 1
            else:
                b = mid
        if a < count and rows[a, 0] == price:
            if size == 0.0:
                for k in range(a, count - 1):
                    rows[k, 0], rows[k, 1] = rows[k + 1, 0], rows[k + 1, 1]
                count -= 1
            else:
                rows[a, 1] = size
        elif size != 0.0:
            for k in range(count, a, -1):
                rows[k, 0], rows[k, 1] = rows[k - 1, 0], rows[k - 1, 1]
            rows[a, 0], rows[a, 1] = price, size
            count += 1
    return count


@njit(cache=True)
def _fill(
    rows: np.ndarray, vals: np.ndarray, lo: int, hi: int, descending: bool
) -> int:  # pragma: no cover - compiled
    """An empty side after the pairs `vals[lo:hi]`. A snapshot listed best first, each price
    once (as venues send them), is copied in reverse instead of merged level by level."""
    for j in range(lo + 2, hi, 2):
        if (vals[j] >= vals[j - 2]) if descending else (vals[j] <= vals[j - 2]):
            return _merge(rows, 0, vals, lo, hi, descending)
    count = 0
    for j in range(hi - 2, lo - 2, -2):
        if vals[j + 1] != 0.0:
            rows[count, 0], rows[count, 1] = vals[j], vals[j + 1]
            count += 1
    return count


@njit(cache=True)
def _keep_best(rows: np.ndarray, count: int, depth: int) -> int:  # pragma: no cover - compiled
    if depth < 0 or count <= depth:
        return count
    cut = count - depth
    for k in range(depth):
        rows[k, 0], rows[k, 1] = rows[k + cut, 0], rows[k + cut, 1]
    return depth


@njit(cache=True)
def apply_pairs(
    vals: np.ndarray,
    bid_values: int,
    n: int,
    bids: np.ndarray,
    asks: np.ndarray,
    counts: np.ndarray,
    snapshot: bool,
    depth: int,
) -> int:  # pragma: no cover - compiled
    """Apply the bid pairs `vals[:bid_values]` and the ask pairs `vals[bid_values:n]` to the
    sides (`counts` rows each, worst first; replaced if `snapshot`) in order, a size of 0
    removing the price and any other setting it; keep the best `depth` levels if `depth` >= 0
    (kernel; `apply_pairs_reference` defines it).

    The caller leaves room for every pair. Returns the index into `_STATUS` of what is wrong
    with the book's best levels: 0, an empty side or a crossed book; or, changing nothing, of
    the first pair no venue can mean (`level_defect`; a size of 0 is a removal).
    """
    for j in range(0, n, 2):
        code = level_defect(vals[j], 1.0 if vals[j + 1] == 0.0 else vals[j + 1])
        if code:
            return code
    if snapshot:
        nb = _fill(bids, vals, 0, bid_values, True)
        na = _fill(asks, vals, bid_values, n, False)
    else:
        nb = _merge(bids, counts[0], vals, 0, bid_values, True)
        na = _merge(asks, counts[1], vals, bid_values, n, False)
    nb, na = _keep_best(bids, nb, depth), _keep_best(asks, na, depth)
    counts[0], counts[1] = nb, na
    if nb == 0 or na == 0:
        return 1
    return 4 if bids[nb - 1, 0] >= asks[na - 1, 0] else 0


#: `apply_json` could not read the text exactly; `apply_json` needs more rows.
NEEDS_FLOAT, NEEDS_ROOM = -1, -2


@njit(cache=True)
def apply_json(
    buf: np.ndarray,
    vals: np.ndarray,
    bids: np.ndarray,
    asks: np.ndarray,
    counts: np.ndarray,
    snapshot: bool,
    depth: int,
) -> int:  # pragma: no cover - compiled
    """`parse_levels` then `apply_pairs`, in one call: `apply_pairs`' status, or (nothing
    changed) `NEEDS_FLOAT` if the text must be read by `float()` instead, `NEEDS_ROOM` if a
    side has no room for every pair (kernel)."""
    bid_values, n = parse_levels(buf, vals)
    if n < 0:
        return NEEDS_FLOAT
    held = 0 if snapshot else counts[0]
    if held + bid_values // 2 > bids.shape[0]:
        return NEEDS_ROOM
    held = 0 if snapshot else counts[1]
    if held + (n - bid_values) // 2 > asks.shape[0]:
        return NEEDS_ROOM
    return apply_pairs(vals, bid_values, n, bids, asks, counts, snapshot, depth)


def apply_pairs_reference(
    side: Sequence[tuple[float, float]], pairs: Sequence[tuple[float, float]], descending: bool
) -> list[tuple[float, float]]:
    """What applying `pairs` to a side (levels best first) must give, best first: the
    definition the kernel is tested against."""
    levels = dict(side)
    for price, size in pairs:
        if size == 0.0:
            levels.pop(price, None)
        else:
            levels[price] = size
    return sorted(levels.items(), reverse=descending)


def parse_levels_reference(bids: Sequence[Level], asks: Sequence[Level]) -> list[float]:
    """Every price and size as Python's `float()` reads it, bids first: what `parse_levels`
    must match, and how the book reads what that parser declines.

    Raises ValueError naming the level (`bids[3]: ...`) for one that is not two values, or a
    value that is no number (a boolean, None, text `float()` refuses).
    """
    out: list[float] = []
    for name, side in (("bids", bids), ("asks", asks)):
        for i, level in enumerate(side):
            try:
                price, size = level
                if isinstance(price, bool) or isinstance(size, bool):
                    raise ValueError(f"a boolean is not a number: {level!r}")
                out += (float(price), float(size))
            except (TypeError, ValueError, OverflowError) as err:
                raise ValueError(f"{name}[{i}]: {err}") from None
    return out


# -- the book ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class BookRules:
    """How one venue's book stays correct."""

    sequence: type[SequenceRule]
    checksum: ChecksumRule | None = None
    checksum_depth: int = 0
    truncate_to: int | None = None  # Kraken: keep only the subscribed depth after each update


class _Side:
    """One side of a book: its rows (see the level kernels) and, where the venue's checksum
    needs them, the exchange's original strings of each level, keyed by price."""

    def __init__(self, counts: np.ndarray, index: int, strings: bool) -> None:
        self.rows = np.empty((64, 2))
        self._counts = counts
        self._index = index
        self._strings: dict[float, Level] | None = {} if strings else None

    def __len__(self) -> int:
        return int(self._counts[self._index])

    def clear(self) -> None:
        self._counts[self._index] = 0
        if self._strings is not None:
            self._strings.clear()

    def reserve(self, extra: int) -> None:
        """Room for `extra` more rows."""
        count = len(self)
        if count + extra > self.rows.shape[0]:
            rows = np.empty((max(count + extra, 2 * self.rows.shape[0]), 2))
            rows[:count] = self.rows[:count]
            self.rows = rows

    def keep_strings(self, levels: Sequence[Level], prices: list[float]) -> None:
        """Record the original strings of `levels`, at `prices` (as the kernel read them).

        Each price's entry is its last change's, removals included: the book holds a price
        after a message only if its last change there set it, so every held price has its
        right strings. Entries of prices no longer held are dropped once they outnumber the
        held ones, so the dict stays the size of the book without a Python step per level.
        """
        strings = self._strings
        if strings is None:
            return
        strings.update(zip(prices, levels, strict=True))
        count = len(self)
        if len(strings) > 2 * count + 64:
            self._strings = {p: strings[p] for p in self.rows[:count, 0].tolist()}

    def top(self, n: int) -> np.ndarray:
        count = len(self)
        return self.rows[count - min(n, count) : count][::-1].copy()

    def strings(self, n: int) -> list[Level]:
        if self._strings is None:
            raise ValueError("this book keeps no level strings: its venue rules have no checksum")
        count = len(self)
        prices = self.rows[count - min(n, count) : count, 0][::-1].tolist()
        strings = self._strings
        return [strings[p] for p in prices]

    def best(self) -> float | None:
        count = len(self)
        return float(self.rows[count - 1, 0]) if count else None


class OrderBook:
    """One venue's book of one symbol, built from a snapshot and kept by deltas.

    A message's levels are read and merged in one kernel call (`apply_json`) over their JSON
    text (orjson serialises the strings faster than `float()` reads them one by one); what
    that parser declines is read by `float()`, to the same floats.
    """

    def __init__(self, rules: BookRules) -> None:
        self._rules = rules
        self._sequence = rules.sequence()
        self._depth = -1 if rules.truncate_to is None else rules.truncate_to
        self._counts = np.zeros(2, np.int64)
        self._vals = np.empty(256)
        strings = rules.checksum is not None
        self.bids = _Side(self._counts, 0, strings)
        self.asks = _Side(self._counts, 1, strings)
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
        """Replace the book; return '' or why it is invalid.

        Raises ValueError if a level cannot be read (see `parse_levels_reference`) or `seq` is
        no integer; the book then holds nothing (`NO_SNAPSHOT`) until a snapshot that reads.
        """
        _check_sequence_numbers(seq=seq)
        self.bids.clear()
        self.asks.clear()
        self.invalid_reason = NO_SNAPSHOT  # until the new one is in (its levels may not read)
        status = self._apply(bids, asks, snapshot=True)
        self._sequence.on_snapshot(seq)
        self.seq = seq
        self.ts_exchange_ns = ts_exchange_ns
        self.invalid_reason = ""
        return self._after_change(checksum, status)

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
        changes nothing. An invalid book ignores deltas until the next snapshot. A delta with a
        level that cannot be read, or a sequence number that is no integer, raises ValueError
        and changes nothing, as if it never came (the sequence rule then sees the next as a gap).
        """
        if not self.valid:
            return self.invalid_reason
        _check_sequence_numbers(first=first, last=last, prev=prev)
        verdict = self._sequence.check(first, last, prev)
        if verdict != "apply":
            self._read(bids, asks)  # unreadable is an error whatever the sequence says
            if verdict == "gap":
                self.invalid_reason = SEQUENCE_GAP
            return self.invalid_reason
        status = self._apply(bids, asks, snapshot=False)
        self._sequence.accept(first, last, prev)
        self.seq = last if last is not None else self.seq
        self.ts_exchange_ns = ts_exchange_ns
        return self._after_change(checksum, status)

    def _text(self, bids: Sequence[Level], asks: Sequence[Level]) -> tuple[int, np.ndarray | None]:
        """The values the levels hold (room made for them in `_vals`) and their JSON text, None
        where it is not JSON as it stands (e.g. Decimal: `float()` reads it)."""
        try:
            n = 2 * (len(bids) + len(asks))
        except TypeError:
            raise ValueError("bids and asks must be lists of [price, size]") from None
        if n > self._vals.shape[0]:
            self._vals = np.empty(max(n, 2 * self._vals.shape[0]))
        try:
            return n, np.frombuffer(orjson.dumps((bids, asks)), np.uint8)
        except TypeError:
            return n, None

    def _read(self, bids: Sequence[Level], asks: Sequence[Level]) -> None:
        """Raise ValueError as `_apply` would for levels that cannot be read; apply nothing."""
        _, text = self._text(bids, asks)
        if text is None or parse_levels(text, self._vals)[1] < 0:
            parse_levels_reference(bids, asks)

    def _apply(self, bids: Sequence[Level], asks: Sequence[Level], snapshot: bool) -> int:
        """Apply the levels; the kernel's status: of the best levels, or of a level no venue
        can mean (then nothing was applied)."""
        n, text = self._text(bids, asks)
        vals = self._vals
        if text is None:
            status = NEEDS_FLOAT
        else:
            status = self._kernel(text, snapshot)
            if status == NEEDS_ROOM:
                self.bids.reserve(len(bids))
                self.asks.reserve(len(asks))
                status = self._kernel(text, snapshot)
        if status == NEEDS_FLOAT:
            vals[:n] = parse_levels_reference(bids, asks)
            self.bids.reserve(len(bids))
            self.asks.reserve(len(asks))
            status = apply_pairs(
                vals,
                2 * len(bids),
                n,
                self.bids.rows,
                self.asks.rows,
                self._counts,
                snapshot,
                self._depth,
            )
        if self._rules.checksum is not None and status not in (_BAD, _OUT_OF_RANGE):
            split = 2 * len(bids)
            self.bids.keep_strings(bids, vals[0:split:2].tolist())
            self.asks.keep_strings(asks, vals[split:n:2].tolist())
        return status

    def _kernel(self, text: np.ndarray, snapshot: bool) -> int:
        return apply_json(
            text,
            self._vals,
            self.bids.rows,
            self.asks.rows,
            self._counts,
            snapshot,
            self._depth,
        )

    def _after_change(self, checksum: int | None, status: int) -> str:
        self.updates += 1
        if status in (_BAD, _OUT_OF_RANGE):  # nothing applied: the book must be resynced
            self.invalid_reason = _STATUS[status]
            return self.invalid_reason
        if checksum is not None and self._rules.checksum is not None:
            depth = self._rules.checksum_depth
            try:
                got: int | None = self._rules.checksum(
                    self.bids.strings(depth), self.asks.strings(depth)
                )
            except (TypeError, AttributeError):  # a level sent as a number: not the venue's text
                got = None
            if got != checksum:
                self.invalid_reason = CHECKSUM
                return self.invalid_reason
        if status:
            self.invalid_reason = _STATUS[status]
        return self.invalid_reason

    def invalidate(self, reason: str) -> None:
        """Mark the book untradable until the next snapshot (e.g. an error from the venue)."""
        self.invalid_reason = reason

    def top(self, depth: int) -> tuple[np.ndarray, np.ndarray]:
        """(bids, asks) as (n, 2) price/size arrays, best first."""
        return self.bids.top(depth), self.asks.top(depth)


def _check_sequence_numbers(**numbers: object) -> None:
    for name, value in numbers.items():
        if value is not None and (
            isinstance(value, bool) or not isinstance(value, int | np.integer)
        ):
            raise ValueError(f"{name} must be an integer or None, got {value!r:.40}")


#: Each venue's book rules, as its documentation states them.
VENUE_BOOK_RULES: dict[str, BookRules] = {
    "binance": BookRules(UpdateIdBridge),
    "gateio": BookRules(UpdateIdBridge),
    "okx": BookRules(PrevSeqLink, okx_checksum, checksum_depth=25),
    "kraken": BookRules(SequenceRule, kraken_checksum, checksum_depth=10),
    "binanceusdm": BookRules(PrevUpdateIdLink),
    "binancecoinm": BookRules(PrevUpdateIdLink),
    "bybit": BookRules(ConsecutiveId),
    "kucoin": BookRules(RangeOverlap),
    # `sequence_num` counts every message of a connection, not of a book: checked per
    # connection (`hft_ray.venues.integrity`), so a book's own rule has nothing to link.
    "coinbase": BookRules(SequenceRule),
    "deribit": BookRules(PrevSeqLink),
}
