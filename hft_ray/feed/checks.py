"""The feed's per-book checks over BookUpdate rows, in numba, each beside its plain reference.

`level_status` judges each row's levels as `book.levels_status` judges a book (empty side,
non-positive / NaN / infinite level, level out of range, unsorted, crossed); `jump_status` then
withholds, per symbol and in row order, a mid that moved past its band until the next update
confirms it (`JumpState` says how; `tests/test_jump_calibration.py` calibrates it on real
captures). Both write a status code per row (an index into `STATUS`, 0 for a good book).
"""

from __future__ import annotations

import math

import numpy as np
from numba import float64, int16, int64, njit, void

from hft_ray.book import OUT_OF_RANGE, check_levels_reference, level_defect
from hft_ray.types import BAD_LEVEL, CROSSED, EMPTY_SIDE, MALFORMED_BOOK, PRICE_JUMP, UNSORTED

#: A book event that cannot become a row: its sequence number or exchange timestamp is no
#: integer that fits a row's int64 (or is negative), or its levels are no (n, 2) float array.
NONCE_OUT_OF_RANGE = "nonce_out_of_range"
#: A book whose sequence number is below one already passed on for its symbol: the venue (or
#: ccxt) went back to an older state, e.g. a REST snapshot older than the stream.
NONCE_BACKWARDS = "nonce_backwards"
#: A book whose venue stamp is older than `feed.max_book_age_ms` when it is received (judged
#: here only by `record`; a run's detector judges age at every scan, as books age while held).
STALE = "stale"
TIMESTAMP_OUT_OF_RANGE = "timestamp_out_of_range"

#: Why a row is not tradable, by status code (the first six are `book.levels_status`'s; the
#: next four are judged on the event, before it is a row; the last on the row's two clocks).
STATUS = (
    "",
    EMPTY_SIDE,
    BAD_LEVEL,
    UNSORTED,
    CROSSED,
    OUT_OF_RANGE,
    PRICE_JUMP,
    NONCE_OUT_OF_RANGE,
    TIMESTAMP_OUT_OF_RANGE,
    MALFORMED_BOOK,
    NONCE_BACKWARDS,
    STALE,
)
BAD = STATUS.index(BAD_LEVEL)
#: A row's status while the jump filter runs: the venue declared the book broken (an
#: invalidation), so the filter takes the symbol's next mid as a new anchor.
RESTART = -1
JUMP = STATUS.index(PRICE_JUMP)
#: The jump filter's memory, in mid returns (the span of its exponential weights), and how
#: many returns it learns before its band follows them (until then the band is its ceiling).
JUMP_SPAN = 200
JUMP_MIN_SAMPLES = 30


# -- level checks -----------------------------------------------------------------------------


@njit(cache=True)
def _side_defect(px: np.ndarray, qty: np.ndarray, n: int) -> int:  # pragma: no cover - compiled
    """The worst `book.level_defect` of the first `n` levels."""
    worst = 0
    for j in range(n):
        code = level_defect(px[j], qty[j])
        if code == BAD:
            return code
        worst = max(worst, code)
    return worst


# Explicit signatures over any-layout ('A') arrays: one compiled kernel serves a one-row array
# (C-contiguous) and a strided batch alike, compiled (or loaded from cache) at import rather
# than at the first book of each shape.
_ROWS_2D, _ROWS_1D = float64[:, :], float64[:]


@njit(void(_ROWS_2D, _ROWS_2D, _ROWS_2D, _ROWS_2D, int16[:], int16[:], int64[:]), cache=True)
def level_status(
    bid_px: np.ndarray,
    bid_qty: np.ndarray,
    ask_px: np.ndarray,
    ask_qty: np.ndarray,
    n_bids: np.ndarray,
    n_asks: np.ndarray,
    status: np.ndarray,
) -> None:  # pragma: no cover - compiled
    """Write each row's level status into `status` (kernel; levels as (rows, depth) arrays,
    the first `n_bids[i]` / `n_asks[i]` of row i filled)."""
    for i in range(n_bids.shape[0]):
        nb, na = n_bids[i], n_asks[i]
        code = 0
        if nb == 0 or na == 0:
            code = 1
        else:
            bad_bids = _side_defect(bid_px[i], bid_qty[i], nb)
            bad_asks = _side_defect(ask_px[i], ask_qty[i], na)
            code = BAD if bad_bids == BAD or bad_asks == BAD else max(bad_bids, bad_asks)
        if code == 0:
            for j in range(1, nb):
                if bid_px[i, j] >= bid_px[i, j - 1]:
                    code = 3
                    break
            if code == 0:
                for j in range(1, na):
                    if ask_px[i, j] <= ask_px[i, j - 1]:
                        code = 3
                        break
            if code == 0 and bid_px[i, 0] >= ask_px[i, 0]:
                code = 4
        status[i] = code


def level_status_reference(rows: np.ndarray) -> list[int]:
    """`level_status` by definition: `book.check_levels_reference` on each row's levels."""
    out = []
    for row in rows:
        nb, na = int(row["n_bids"]), int(row["n_asks"])
        bids = np.column_stack([row["bid_px"][:nb], row["bid_qty"][:nb]])
        asks = np.column_stack([row["ask_px"][:na], row["ask_qty"][:na]])
        out.append(STATUS.index(check_levels_reference(bids, asks)))
    return out


# -- jump filter ------------------------------------------------------------------------------


class JumpState:
    """Every symbol's jump filter, as flat arrays the kernel updates in place.

    A symbol's mid may move by its band in one update: `max_z` times the root mean square of
    its recent mid log returns, kept between `min_bps` and `max_bps`. A move past the band is
    withheld until the next mid lands within the band of the moved one. Why each part:

    - the floor: a mid that sits still for most updates (one tick wide, or quiet) would shrink
      the band to nothing and withhold every real tick (issue 12: a 2.2 bps move flagged
      against a 0.8 bps band);
    - the ceiling: however wild recent moves were, a mid this far off is not traded on one
      book's word; it also is the band until `min_samples` returns are seen;
    - the root mean square, exponentially weighted (span `span` returns; a plain mean of
      squares until the weight would be less than 2 / (span + 1)): a drift is movement too, and
      one value per symbol is updated in O(1), no ring of returns summed per row;
    - a withheld mid is never learned from, so a bad print cannot widen the band; a confirmed
      move is, so the band follows a market that really moves.

    Arrays: mean square of returns, returns seen, last accepted mid, pending (unconfirmed)
    mid, NaN for none.
    """

    def __init__(
        self,
        symbols: int,
        max_z: float,
        min_bps: float,
        max_bps: float,
        *,
        span: int = JUMP_SPAN,
        min_samples: int = JUMP_MIN_SAMPLES,
    ) -> None:
        if symbols < 0 or span < 1 or min_samples < 0 or not 0 < min_bps <= max_bps:
            raise ValueError(
                "a jump state needs symbols >= 0, span >= 1, min_samples >= 0 and "
                f"0 < min_bps <= max_bps, got {symbols}, {span}, {min_samples}, "
                f"{min_bps}, {max_bps}"
            )
        self.max_z = float(max_z)
        self.min_band = min_bps * 1e-4
        self.max_band = max_bps * 1e-4
        self.alpha = 2.0 / (span + 1)
        self.min_samples = min_samples
        self.mean_sq = np.zeros(symbols)
        self.count = np.zeros(symbols, dtype=np.int64)
        self.last = np.full(symbols, np.nan)
        self.pending = np.full(symbols, np.nan)

    def check(
        self, symbols: np.ndarray, best_bid: np.ndarray, best_ask: np.ndarray, status: np.ndarray
    ) -> None:
        """`jump_status` on these rows with this state."""
        jump_status(
            symbols,
            best_bid,
            best_ask,
            status,
            self.max_z,
            self.min_band,
            self.max_band,
            self.alpha,
            self.min_samples,
            self.mean_sq,
            self.count,
            self.last,
            self.pending,
        )


@njit(
    void(
        int16[:],
        _ROWS_1D,
        _ROWS_1D,
        int64[:],
        float64,
        float64,
        float64,
        float64,
        int64,
        _ROWS_1D,
        int64[:],
        _ROWS_1D,
        _ROWS_1D,
    ),
    cache=True,
)
def jump_status(
    symbols: np.ndarray,
    best_bid: np.ndarray,
    best_ask: np.ndarray,
    status: np.ndarray,
    max_z: float,
    min_band: float,
    max_band: float,
    alpha: float,
    min_samples: int,
    mean_sq: np.ndarray,
    count: np.ndarray,
    last: np.ndarray,
    pending: np.ndarray,
) -> None:  # pragma: no cover - compiled
    """Set `status` to `JUMP` where a row whose status is 0 jumps, updating the state in row
    order (kernel; bands as log returns, `mean_sq`..`pending` a `JumpState`'s arrays). A row
    of negative status (`RESTART`: the venue declared the book broken, a gap or a stall) makes
    the next mid of its symbol a new anchor: the market moved while the book was not seen."""
    for i in range(symbols.shape[0]):
        s = symbols[i]
        if status[i] < 0:
            last[s] = np.nan
            pending[s] = np.nan
            continue
        if status[i] != 0:
            continue
        mid = (best_bid[i] + best_ask[i]) / 2
        if np.isnan(last[s]):
            last[s] = mid
            continue
        r = math.log(mid / last[s])
        band = max_band
        if count[s] >= min_samples:
            band = min(max(max_z * math.sqrt(mean_sq[s]), min_band), max_band)
        # Past the band and not confirmed by landing within the band of the pending mid.
        if abs(r) > band and (np.isnan(pending[s]) or abs(math.log(mid / pending[s])) > band):
            pending[s] = mid
            status[i] = JUMP
            continue
        pending[s] = np.nan
        count[s] += 1
        mean_sq[s] += (r * r - mean_sq[s]) * max(1.0 / count[s], alpha)
        last[s] = mid


def jump_status_reference(
    symbols: list[int],
    mids: list[float],
    status: list[int],
    max_z: float,
    min_bps: float,
    max_bps: float,
    span: int,
    min_samples: int,
    state: dict[int, tuple[list[float], float | None, float | None]],
) -> list[int]:
    """`jump_status` by definition, in plain Python: `state[s]` is symbol s's learned returns
    (oldest first), last accepted mid and pending mid; returns the new status of every row."""
    out = list(status)
    for i, (s, mid) in enumerate(zip(symbols, mids, strict=True)):
        rets, last, pending = state.get(s, ([], None, None))
        if out[i] < 0:
            state[s] = (rets, None, None)
            continue
        if out[i] != 0:
            continue
        if last is None:
            state[s] = (rets, mid, pending)
            continue
        r = math.log(mid / last)
        band = max_bps * 1e-4
        if len(rets) >= min_samples:
            rms = math.sqrt(mean_square_reference(rets, span))
            band = min(max(max_z * rms, min_bps * 1e-4), band)
        if abs(r) > band and (pending is None or abs(math.log(mid / pending)) > band):
            state[s] = (rets, last, mid)
            out[i] = JUMP
            continue
        state[s] = ([*rets, r], mid, None)
    return out


def mean_square_reference(returns: list[float], span: int) -> float:
    """`JumpState.mean_sq` after learning `returns`, oldest first."""
    alpha, mean_sq = 2.0 / (span + 1), 0.0
    for n, r in enumerate(returns, start=1):
        mean_sq += (r * r - mean_sq) * max(1.0 / n, alpha)
    return mean_sq
