"""Statistical arbitrage: trade the reversion of the log mid-price spread between two venues.

For every (symbol, venue pair) the kernel keeps a rolling z-score of
`spread = log(mid_a) - log(mid_b)` (a < b), updated in O(1) whenever either book updates.
When |z| reaches `z_entry` with no position open on the pair, it signals an open: sell the
rich venue, buy the cheap one. When |z| falls to `z_exit` with a position open, it signals the
close: the opposite trade. The z-score of each new spread is taken against the window before
it, so a jump is judged against what came before.

The detector's view of what is open is optimistic (set when it signals); risk approves a close
only against a position it has booked, so a refused open is closed by a refused close.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from hft_ray.detect import indicators as ind

#: Actions in a signal row (symbol, a, b, action, z). A close is twice the open it undoes.
OPEN_SELL_A = 1  # spread high: a is rich, sell a and buy b
OPEN_BUY_A = -1  # spread low: a is cheap, buy a and sell b
CLOSE_SELL_A = 2  # undo OPEN_SELL_A: buy a, sell b
CLOSE_BUY_A = -2  # undo OPEN_BUY_A: sell a, buy b


@njit(cache=True)
def statarb_scan(
    updated: np.ndarray,
    mid: np.ndarray,
    tradable: np.ndarray,
    bufs: np.ndarray,
    accs: np.ndarray,
    open_dir: np.ndarray,
    z_entry: float,
    z_exit: float,
    min_std: float,
    out: np.ndarray,
) -> int:  # pragma: no cover - compiled
    """Update the spread of every pair touched by `updated` (once per pair); write signals.

    `mid` (S, V); `bufs` (S, V, V, lookback) and `accs` (S, V, V, 4) hold a window per pair
    (a < b); `open_dir` (S, V, V) is 0, OPEN_SELL_A or OPEN_BUY_A. Returns the signal count.
    """
    n_sym, n_ven = mid.shape
    touched = np.zeros((n_sym, n_ven, n_ven), np.bool_)
    found = 0
    for k in range(updated.shape[0]):
        s, v = updated[k, 0], updated[k, 1]
        for w in range(n_ven):
            if w == v:
                continue
            a, b = (v, w) if v < w else (w, v)
            if touched[s, a, b] or not (tradable[s, a] and tradable[s, b]):
                continue
            touched[s, a, b] = True
            spread = math.log(mid[s, a]) - math.log(mid[s, b])
            z = ind.window_zscore(accs[s, a, b], spread, min_std)
            ind.window_push(bufs[s, a, b], accs[s, a, b], spread)
            if math.isnan(z) or found >= out.shape[0]:
                continue
            action = 0
            if open_dir[s, a, b] == 0 and abs(z) >= z_entry:
                action = OPEN_SELL_A if z > 0 else OPEN_BUY_A
                open_dir[s, a, b] = action
            elif open_dir[s, a, b] != 0 and abs(z) <= z_exit:
                action = 2 * open_dir[s, a, b]
                open_dir[s, a, b] = 0
            if action != 0:
                out[found, 0] = s
                out[found, 1] = a
                out[found, 2] = b
                out[found, 3] = action
                out[found, 4] = z
                found += 1
    return found


def legs(action: int, a: int, b: int) -> tuple[int, int]:
    """(buy venue, sell venue) of a signal."""
    return (b, a) if action in (OPEN_SELL_A, CLOSE_BUY_A) else (a, b)


def statarb_reference(
    spreads: list[float], lookback: int, z_entry: float, z_exit: float, min_std: float
) -> list[tuple[int, int]]:
    """The signals of one pair's spread series, the plain way: (index, action)."""
    out = []
    open_dir = 0
    for i, spread in enumerate(spreads):
        z = ind.zscore_reference(spreads[:i], lookback, spread, min_std)
        if math.isnan(z):
            continue
        if open_dir == 0 and abs(z) >= z_entry:
            open_dir = OPEN_SELL_A if z > 0 else OPEN_BUY_A
            out.append((i, open_dir))
        elif open_dir != 0 and abs(z) <= z_exit:
            out.append((i, 2 * open_dir))
            open_dir = 0
    return out
