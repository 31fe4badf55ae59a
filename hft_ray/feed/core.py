"""Check venue books as BookUpdate rows, count them, and cut them into batches.

Rows come from a simulated venue ready-made (`check_rows`) or from venue events
(`rows_from_events`, which checks them too); the checks run in the numba kernels of
`feed.checks` over the whole array, so a message of thousands of rows costs one call. Rows for
each detector shard accumulate in a buffer that grows as needed (no row is ever dropped here)
and leave as one numpy array when the shard holds `batch_max_rows` rows or its oldest row is
`batch_max_us` old.
"""

from __future__ import annotations

from collections import Counter

import numpy as np

from hft_ray.config import FeedConfig
from hft_ray.feed.checks import (
    MALFORMED_BOOK,
    NONCE_BACKWARDS,
    NONCE_OUT_OF_RANGE,
    RESTART,
    STALE,
    STATUS,
    TIMESTAMP_OUT_OF_RANGE,
    JumpState,
    level_status,
)
from hft_ray.types import (
    BOOK_VALID,
    BookEvent,
    BookInvalid,
    BookSnapshot,
    Universe,
    book_update_dtype,
)

_LEVELS = ("bid_px", "bid_qty", "ask_px", "ask_qty")
_META = ("symbol", "seq", "ts_exchange_ns", "n_bids", "n_asks")
_INT64_MAX = np.iinfo(np.int64).max
#: A row's preset status: an invalidation the venue adapter judged (no level or jump check;
#: the jump filter starts the symbol again).
VENUE_INVALID = RESTART
_MALFORMED, _NONCE, _TIMESTAMP, _BACKWARDS, _STALE = (
    STATUS.index(r)
    for r in (MALFORMED_BOOK, NONCE_OUT_OF_RANGE, TIMESTAMP_OUT_OF_RANGE, NONCE_BACKWARDS, STALE)
)


def _row_int(value: object) -> bool:
    """`value` fits a row's int64 field, and is not negative."""
    return (
        isinstance(value, int | np.integer)
        and not isinstance(value, bool)
        and 0 <= int(value) <= _INT64_MAX
    )


def _levels(value: object) -> bool:
    return (
        isinstance(value, np.ndarray)
        and value.ndim == 2
        and value.shape[1] == 2
        and value.dtype.kind == "f"
    )


def event_defect(event: BookSnapshot) -> int:
    """The status code of what makes a book event unfit to be a row, or 0: levels that are no
    (n, 2) float array, a sequence number or timestamp that is no int64 >= 0 (a nonce of 2**63
    would overflow the row, and the kernels after it)."""
    if not (_levels(event.bids) and _levels(event.asks)):
        return _MALFORMED
    if not _row_int(event.seq):
        return _NONCE
    if not _row_int(event.ts_exchange_ns):
        return _TIMESTAMP
    return 0


class FeedCore:
    def __init__(
        self,
        universe: Universe,
        venue: str,
        config: FeedConfig,
        detector_count: int,
        *,
        stale_at_receipt: bool = False,
    ) -> None:
        """`stale_at_receipt`: also refuse a book whose venue stamp is older than
        `max_book_age_ms` when received (`STALE`), for a recording; a run's detector judges
        age itself at every scan."""
        self._venue_id = universe.venue_id(venue)
        self._symbol_ids = {s: i for i, s in enumerate(universe.symbols)}
        self._depth = config.depth
        self._dtype = book_update_dtype(config.depth)
        self._max_rows = config.batch_max_rows
        self._max_age_ns = int(config.batch_max_us * 1_000)
        self._shard = np.array(
            [universe.shard_of(s, detector_count) for s in range(len(universe.symbols))],
            dtype=np.int64,
        )
        # Rows are kept and moved as raw bytes: numpy copies a structured array field by field,
        # several times slower than the memcpy of the same bytes.
        self._raw = np.dtype((np.void, self._dtype.itemsize))
        self._buffers = [np.zeros(self._max_rows, self._raw) for _ in range(detector_count)]
        blank = np.zeros(1, self._dtype)  # a row before its book: no levels, NaN-padded
        blank["venue"] = self._venue_id
        for field in _LEVELS:
            blank[field] = np.nan
        self._blank = blank.view(self._raw)[0]
        self._fill = [0] * detector_count
        self._oldest_mono = [0] * detector_count
        self._max_z = config.max_jump_z
        self._stale_ns = int(config.max_book_age_ms * 1e6) if stale_at_receipt else 0
        self.symbols = universe.symbols
        #: Failed checks in a row after which a live book is resynced (`CheckedRows`).
        self.resync_after = config.resync_after_failures
        self._jumps = JumpState(
            len(universe.symbols) if config.max_jump_z else 0,
            config.max_jump_z,
            config.min_jump_bps,
            config.max_jump_bps,
        )
        self.updates = 0
        self.invalid: Counter[str] = Counter()
        self.unknown_symbols = 0
        # the highest sequence number passed on per symbol (0: none yet)
        self._last_seq = [0] * len(universe.symbols)
        #: The status of each row of the last batch checked: an index into `STATUS`, 0 for a
        #: good book, `VENUE_INVALID` for an invalidation the venue adapter sent.
        self.last_status = np.zeros(0, dtype=np.int64)

    @property
    def venue_id(self) -> int:
        return self._venue_id

    def restart_sequence(self, symbol: str) -> None:
        """Take the next book of `symbol` as a new start of its sequence numbers: after a
        resync the venue may legitimately begin again lower (a new connection)."""
        self._last_seq[self._symbol_ids[symbol]] = 0

    # -- checks -------------------------------------------------------------------------------

    def check_rows(
        self, rows: np.ndarray, recv_ns: int, recv_mono_ns: int, *, trusted: bool = False
    ) -> np.ndarray:
        """Stamp receipt on every row, check it, and set its flags, in place; return `rows`.

        A book that fails a check travels as a row without the valid flag, so the detector
        stops trading that book at once rather than when it goes stale. Rows from another
        process are first checked for shape (venue, symbol ids, level counts) before the
        kernels read them; `trusted` rows (a simulator in this process) skip that.
        """
        if trusted:
            self._check_dtype(rows)
        else:
            self._validate(rows)
        self._check(rows, recv_ns, recv_mono_ns, preset=None)
        return rows

    def rows_from_events(
        self, events: list[BookEvent], recv_ns: int, recv_mono_ns: int
    ) -> np.ndarray:
        """The events of a live or replayed venue as checked rows (as `check_rows` leaves them).

        An unknown symbol is counted and skipped; an invalidation becomes a row without the
        valid flag (no levels, `seq` 0), counted under its reason; so does a book that cannot
        be a row (`event_defect`), or whose sequence number is below one already passed on
        for its symbol (`NONCE_BACKWARDS`), counted as a book that failed a check. A book
        without the venue's timestamp (`ts_exchange_ns` 0) is stamped with its receipt.
        """
        rows = np.empty(len(events), self._raw)
        rows[:] = self._blank
        rows = rows.view(self._dtype)
        bid_px, bid_qty, ask_px, ask_qty = (rows[f] for f in _LEVELS)
        # (symbol, seq, ts_exchange_ns, n_bids, n_asks) of each kept event, and its preset
        # status: 0 to be judged by its levels, else `VENUE_INVALID` or an `event_defect`
        meta: list[tuple[int, int, int, int, int]] = []
        preset: list[int] = []
        depth, last_seq = self._depth, self._last_seq
        for event in events:
            symbol_id = self._symbol_ids.get(event.symbol)
            if symbol_id is None:
                self.unknown_symbols += 1
            elif isinstance(event, BookInvalid):
                self.invalid[event.reason] += 1
                meta.append((symbol_id, 0, recv_ns, 0, 0))
                preset.append(VENUE_INVALID)
            elif (defect := event_defect(event)) or 0 < event.seq < last_seq[symbol_id]:
                meta.append((symbol_id, 0, recv_ns, 0, 0))
                preset.append(defect or _BACKWARDS)
            else:
                bids, asks = event.bids[:depth], event.asks[:depth]
                n, nb, na = len(meta), len(bids), len(asks)
                bid_px[n, :nb], bid_qty[n, :nb] = bids[:, 0], bids[:, 1]
                ask_px[n, :na], ask_qty[n, :na] = asks[:, 0], asks[:, 1]
                meta.append((symbol_id, event.seq, event.ts_exchange_ns or recv_ns, nb, na))
                preset.append(0)
                last_seq[symbol_id] = max(last_seq[symbol_id], event.seq)
        rows = rows[: len(meta)]
        for field, values in zip(_META, zip(*meta, strict=True), strict=False):
            rows[field] = values
        self._check(rows, recv_ns, recv_mono_ns, np.array(preset, dtype=np.int64))
        return rows

    def _check(
        self, rows: np.ndarray, recv_ns: int, recv_mono_ns: int, preset: np.ndarray | None
    ) -> None:
        rows["ts_recv_ns"] = recv_ns
        rows["ts_recv_mono_ns"] = recv_mono_ns
        status = np.zeros(len(rows), dtype=np.int64)
        bid_px, ask_px = rows["bid_px"], rows["ask_px"]
        level_status(
            bid_px, rows["bid_qty"], ask_px, rows["ask_qty"], rows["n_bids"], rows["n_asks"], status
        )
        if preset is not None:
            judged = preset != 0
            status[judged] = preset[judged]  # no level or jump check
        if self._stale_ns:  # before the jump filter, which must not learn from a stale mid
            old = recv_ns - rows["ts_exchange_ns"] > self._stale_ns
            status[(status == 0) & old] = _STALE
        if self._max_z:
            self._jumps.check(rows["symbol"], bid_px[:, 0], ask_px[:, 0], status)
        rows["flags"] = np.where(status == 0, BOOK_VALID, 0)
        self.last_status = status
        bad = status[status > 0]
        if len(bad):
            for code, count in enumerate(np.bincount(bad, minlength=len(STATUS)).tolist()):
                if count:
                    self.invalid[STATUS[code]] += count
        self.updates += len(rows) - (0 if preset is None else int((preset == VENUE_INVALID).sum()))

    def _validate(self, rows: np.ndarray) -> None:
        """Refuse rows the kernels cannot read safely: another depth, venue or symbol set."""
        self._check_dtype(rows)
        if not len(rows):
            return
        if (rows["venue"] != self._venue_id).any():
            other = sorted(set(rows["venue"].tolist()) - {self._venue_id})
            raise ValueError(f"rows of venue ids {other}, this feed's is {self._venue_id}")
        sym = rows["symbol"]
        if sym.min() < 0 or sym.max() >= len(self._shard):
            raise ValueError(f"rows carry symbol ids outside 0..{len(self._shard) - 1}")
        for count in ("n_bids", "n_asks"):
            n = rows[count]
            if n.min() < 0 or n.max() > self._depth:
                raise ValueError(f"rows carry {count} outside 0..{self._depth}")

    def _check_dtype(self, rows: np.ndarray) -> None:
        if rows.dtype != self._dtype:
            raise ValueError(f"rows must be book_update_dtype({self._depth}), got {rows.dtype}")

    # -- batches ------------------------------------------------------------------------------

    def add(self, rows: np.ndarray) -> list[int]:
        """Append checked rows to their shards' batches; return the shards whose batch is now
        full, to be taken before more rows arrive."""
        self._check_dtype(rows)
        raw, mono = rows.view(self._raw), rows["ts_recv_mono_ns"]
        if len(self._buffers) == 1:
            self._append(0, raw, mono)
        else:
            shard_of = self._shard[rows["symbol"]]
            for shard in np.unique(shard_of).tolist():
                mine = shard_of == shard
                self._append(shard, raw[mine], mono[mine])
        return [s for s, n in enumerate(self._fill) if n >= self._max_rows]

    def _append(self, shard: int, raw: np.ndarray, mono: np.ndarray) -> None:
        n, fill, buffer = len(raw), self._fill[shard], self._buffers[shard]
        if not n:
            return
        if fill + n > len(buffer):
            grown = np.zeros(max(2 * len(buffer), fill + n), self._raw)
            grown[:fill] = buffer[:fill]
            self._buffers[shard] = buffer = grown
        buffer[fill : fill + n] = raw
        if fill == 0:
            self._oldest_mono[shard] = int(mono[0])
        self._fill[shard] = fill + n

    def on_event(self, event: BookEvent, recv_ns: int, recv_mono_ns: int) -> int | None:
        """Add one venue event; return the shard whose batch it filled, which must be taken
        before the next event."""
        full = self.add(self.rows_from_events([event], recv_ns, recv_mono_ns))
        return full[0] if full else None

    def ingest(
        self, events: list[BookEvent], recv_ns: int, recv_mono_ns: int
    ) -> list[tuple[int, np.ndarray]]:
        """Add a burst of events; return the batches that filled up, as (shard, rows), to be
        sent before anything else."""
        full = self.add(self.rows_from_events(events, recv_ns, recv_mono_ns))
        return [(shard, self.take(shard)) for shard in full]

    def due(self, now_mono_ns: int) -> list[int]:
        """Shards whose batch is full or old enough to leave."""
        return [
            shard
            for shard, n in enumerate(self._fill)
            if n >= self._max_rows
            or (n and now_mono_ns - self._oldest_mono[shard] >= self._max_age_ns)
        ]

    def pending(self) -> list[int]:
        """Shards holding any rows (to flush everything at shutdown)."""
        return [shard for shard, n in enumerate(self._fill) if n]

    def take(self, shard: int) -> np.ndarray:
        """The shard's batch as an owned array; the buffer is reused."""
        n = self._fill[shard]
        self._fill[shard] = 0
        return self._buffers[shard][:n].copy().view(self._dtype)

    def next_deadline_ns(self, now_mono_ns: int) -> int | None:
        """Nanoseconds until the oldest pending batch is due, or None if none is pending."""
        waits = [
            self._oldest_mono[s] + self._max_age_ns - now_mono_ns
            for s, n in enumerate(self._fill)
            if n
        ]
        return max(0, min(waits)) if waits else None
