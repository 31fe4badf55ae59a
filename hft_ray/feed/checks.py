"""The feed's per-book checks over BookUpdate rows, in numba, each beside its plain reference.

`level_status` judges each row's levels as `book.levels_status` judges a book (empty side,
non-positive / NaN / infinite level, level out of range, unsorted, crossed); `jump_status` then
runs the `book.JumpFilter` rule, one state per symbol, over the rows that passed, in row order.
Both write a status code per row (an index into `STATUS`, 0 for a good book). The jump state
lives in flat arrays (`JumpState`); its standard deviation is summed oldest return first, twice
(mean, then squared deviations), where `JumpFilter` calls `np.std`: the same definition, with
the last bits of rounding fixed so that kernel and reference agree exactly.
"""

from __future__ import annotations

import math

import numpy as np
from numba import float64, int16, int64, njit, void

from hft_ray.book import OUT_OF_RANGE, check_levels_reference, level_defect
from hft_ray.types import BAD_LEVEL, CROSSED, EMPTY_SIDE, PRICE_JUMP, UNSORTED

#: A book event that cannot become a row: its sequence number or exchange timestamp is no
#: integer that fits a row's int64 (or is negative), or its levels are no (n, 2) float array.
NONCE_OUT_OF_RANGE = "nonce_out_of_range"
TIMESTAMP_OUT_OF_RANGE = "timestamp_out_of_range"
MALFORMED_BOOK = "malformed_book"

#: Why a row is not tradable, by status code (the first six are `book.levels_status`'s; the
#: last three are judged on the event, before it is a row).
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
)
BAD = STATUS.index(BAD_LEVEL)
JUMP = STATUS.index(PRICE_JUMP)
#: Returns a symbol's jump filter keeps, and how many it needs before it flags anything
#: (`JumpFilter`'s defaults).
JUMP_WINDOW = 200
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
    """Every symbol's `JumpFilter` state as flat arrays: a ring of recent log returns, how many
    it holds and where the next goes, the last accepted mid and the pending (unconfirmed) one,
    NaN for none."""

    def __init__(self, symbols: int, window: int = JUMP_WINDOW) -> None:
        if symbols < 0 or window < 1:
            raise ValueError(f"a jump state needs symbols >= 0 and window >= 1, got {window}")
        self.returns = np.zeros((symbols, window))
        self.count = np.zeros(symbols, dtype=np.int64)
        self.head = np.zeros(symbols, dtype=np.int64)
        self.last = np.full(symbols, np.nan)
        self.pending = np.full(symbols, np.nan)


@njit(cache=True)
def _std(ring: np.ndarray, count: int, head: int) -> float:  # pragma: no cover - compiled
    """Population std-dev of the `count` returns before `head`, oldest first: the ring's two
    contiguous runs (no modulo per element, which costs more than the sum)."""
    start = (head - count) % ring.shape[0]
    first = ring[start : start + count]
    second = ring[: count - first.shape[0]]
    total = 0.0
    for x in first:
        total += x
    for x in second:
        total += x
    mean = total / count
    sq = 0.0
    for x in first:
        sq += (x - mean) * (x - mean)
    for x in second:
        sq += (x - mean) * (x - mean)
    return math.sqrt(sq / count)


@njit(
    void(
        int16[:],
        _ROWS_1D,
        _ROWS_1D,
        int64[:],
        float64,
        int64,
        _ROWS_2D,
        int64[:],
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
    min_samples: int,
    returns: np.ndarray,
    count: np.ndarray,
    head: np.ndarray,
    last: np.ndarray,
    pending: np.ndarray,
) -> None:  # pragma: no cover - compiled
    """Set `status` to `JUMP` where a row whose status is 0 jumps, updating the state in row
    order (kernel; `returns`..`pending` are a `JumpState`'s arrays)."""
    window = returns.shape[1]
    for i in range(symbols.shape[0]):
        if status[i] != 0:
            continue
        s = symbols[i]
        mid = (best_bid[i] + best_ask[i]) / 2
        if np.isnan(last[s]):
            last[s] = mid
            continue
        r = math.log(mid / last[s])
        if count[s] >= min_samples:
            band = max_z * max(_std(returns[s], count[s], head[s]), 1e-9)
            if abs(r) > band:
                confirmed = not np.isnan(pending[s]) and abs(math.log(mid / pending[s])) <= band
                if confirmed:
                    pending[s] = np.nan
                    last[s] = mid
                else:
                    pending[s] = mid
                    status[i] = JUMP
                continue
        pending[s] = np.nan
        returns[s, head[s]] = r
        head[s] = (head[s] + 1) % window
        count[s] = min(count[s] + 1, window)
        last[s] = mid


def jump_status_reference(
    symbols: list[int],
    mids: list[float],
    status: list[int],
    max_z: float,
    min_samples: int,
    window: int,
    state: dict[int, tuple[list[float], float | None, float | None]],
) -> list[int]:
    """`jump_status` in plain Python, one `JumpFilter` per symbol: `state[s]` is its returns
    (oldest first), last mid and pending mid; returns the new status of every row."""
    out = list(status)
    for i, (s, mid) in enumerate(zip(symbols, mids, strict=True)):
        if out[i] != 0:
            continue
        rets, last, pending = state.get(s, ([], None, None))
        if last is None:
            state[s] = (rets, mid, pending)
            continue
        r = math.log(mid / last)
        if len(rets) >= min_samples:
            mean = 0.0
            for x in rets:
                mean += x
            mean /= len(rets)
            sq = 0.0
            for x in rets:
                sq += (x - mean) * (x - mean)
            band = max_z * max(math.sqrt(sq / len(rets)), 1e-9)
            if abs(r) > band:
                confirmed = pending is not None and abs(math.log(mid / pending)) <= band
                if confirmed:
                    state[s] = (rets, mid, None)
                else:
                    state[s] = (rets, last, mid)
                    out[i] = JUMP
                continue
        state[s] = ([*rets, r][-window:], mid, None)
    return out
