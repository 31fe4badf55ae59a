"""Streaming indicators as numba kernels, O(1) per update, each beside its plain definition.

State lives in flat arrays the caller owns (one row per series), so a detector can keep
thousands of series in one block and update any of them from inside another kernel:

- a rolling window is a ring `buf[lookback]` plus `acc = [count, next slot, mean, M2]`,
  updated Welford-style as values enter and leave (the naive sum of squares cancels badly
  when the std-dev is small beside the level, as a log-spread's is); its mean and population
  std-dev give the SMA and the z-score;
- an EMA is `ema = [value, initialized]`;
- Wilder's RSI is `rsi = [previous x, average gain, average loss, updates seen]`.

The `*_reference` functions compute the same numbers from the whole history the plain way;
property tests compare the two.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from itertools import pairwise

import numpy as np
from numba import njit

# -- rolling window: SMA and z-score -----------------------------------------------------------

COUNT, NEXT, MEAN, M2 = range(4)
WINDOW_ACC = 4


@njit(cache=True)
def window_push(buf: np.ndarray, acc: np.ndarray, x: float) -> None:  # pragma: no cover
    """Add `x` to the window, dropping the oldest value once it is full."""
    lookback = buf.shape[0]
    slot = int(acc[NEXT])
    mean = acc[MEAN]
    if acc[COUNT] >= lookback:
        old = buf[slot]
        new_mean = mean + (x - old) / lookback
        m2 = acc[M2] + (x - old) * (x - new_mean + old - mean)
    else:
        acc[COUNT] += 1
        new_mean = mean + (x - mean) / acc[COUNT]
        m2 = acc[M2] + (x - mean) * (x - new_mean)
    buf[slot] = x
    acc[NEXT] = (slot + 1) % lookback
    if m2 < 1e-6 * acc[M2]:
        # A large value left a window whose rest barely varies: what remains of M2 is mostly
        # rounding. Recompute from the ring (rare, so still O(1) amortized).
        n = int(acc[COUNT])
        new_mean = 0.0
        for i in range(n):
            new_mean += buf[i]
        new_mean /= n
        m2 = 0.0
        for i in range(n):
            m2 += (buf[i] - new_mean) ** 2
    acc[MEAN] = new_mean
    acc[M2] = max(m2, 0.0)


@njit(cache=True)
def window_mean(acc: np.ndarray) -> float:  # pragma: no cover
    return acc[MEAN] if acc[COUNT] > 0 else math.nan


@njit(cache=True)
def window_zscore(acc: np.ndarray, x: float, min_std: float) -> float:  # pragma: no cover
    """(x - mean) / population std-dev of the window; NaN until the std-dev exceeds min_std."""
    n = acc[COUNT]
    if n < 2:
        return math.nan
    mean = acc[MEAN]
    std = math.sqrt(acc[M2] / n)
    if std <= min_std:
        return math.nan
    return (x - mean) / std


def sma_reference(history: Sequence[float], lookback: int) -> float:
    window = history[-lookback:]
    return sum(window) / len(window) if window else math.nan


def zscore_reference(history: Sequence[float], lookback: int, x: float, min_std: float) -> float:
    window = history[-lookback:]
    if len(window) < 2:
        return math.nan
    mean = sum(window) / len(window)
    std = math.sqrt(sum((w - mean) ** 2 for w in window) / len(window))
    return math.nan if std <= min_std else (x - mean) / std


# -- EMA ---------------------------------------------------------------------------------------


@njit(cache=True)
def ema_update(ema: np.ndarray, x: float, alpha: float) -> float:  # pragma: no cover
    """Exponential moving average; the first value seeds it."""
    if ema[1] == 0.0:
        ema[0] = x
        ema[1] = 1.0
    else:
        ema[0] += alpha * (x - ema[0])
    return ema[0]


def ema_reference(history: Sequence[float], alpha: float) -> float:
    value = math.nan
    for i, x in enumerate(history):
        value = x if i == 0 else value + alpha * (x - value)
    return value


# -- RSI (Wilder) ------------------------------------------------------------------------------


@njit(cache=True)
def rsi_update(state: np.ndarray, x: float, period: int) -> float:  # pragma: no cover
    """Wilder's RSI over `period`: gains and losses averaged with alpha = 1 / period, the first
    `period` changes by their plain mean. NaN until `period` changes are seen."""
    seen = state[3]
    if seen == 0.0:
        state[0] = x
        state[3] = 1.0
        return math.nan
    change = x - state[0]
    state[0] = x
    gain, loss = max(change, 0.0), max(-change, 0.0)
    changes = seen - 1.0  # changes before this one (seen counts values)
    if changes < period:
        state[1] += gain / period
        state[2] += loss / period
    else:
        state[1] += (gain - state[1]) / period
        state[2] += (loss - state[2]) / period
    state[3] = seen + 1.0
    if changes + 1 < period:
        return math.nan
    if state[2] == 0.0:
        return 100.0 if state[1] > 0.0 else 50.0
    return 100.0 - 100.0 / (1.0 + state[1] / state[2])


def rsi_reference(history: Sequence[float], period: int) -> float:
    changes = [b - a for a, b in pairwise(history)]
    if len(changes) < period:
        return math.nan
    gain = sum(max(c, 0.0) for c in changes[:period]) / period
    loss = sum(max(-c, 0.0) for c in changes[:period]) / period
    for c in changes[period:]:
        gain += (max(c, 0.0) - gain) / period
        loss += (max(-c, 0.0) - loss) / period
    if loss == 0.0:
        return 100.0 if gain > 0.0 else 50.0
    return 100.0 - 100.0 / (1.0 + gain / loss)
