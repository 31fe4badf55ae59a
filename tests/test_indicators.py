"""Streaming indicators (numba, O(1) per update) equal their plain definitions."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hft_ray.detect import indicators as ind

SERIES = st.lists(st.floats(-5.0, 5.0), min_size=1, max_size=300)


def close(a: float, b: float) -> bool:
    return (math.isnan(a) and math.isnan(b)) or a == pytest.approx(b, rel=1e-9, abs=1e-9)


@settings(max_examples=300, deadline=None)
@given(SERIES, st.integers(1, 50))
def test_rolling_sma_and_zscore_equal_their_definitions(xs: list[float], lookback: int) -> None:
    buf, acc = np.zeros(lookback), np.zeros(ind.WINDOW_ACC)
    for i, x in enumerate(xs):
        z = ind.window_zscore(acc, x, 1e-6)  # the new value against the window before it
        assert close(z, ind.zscore_reference(xs[:i], lookback, x, 1e-6)), (i, z)
        ind.window_push(buf, acc, x)
        assert close(ind.window_mean(acc), ind.sma_reference(xs[: i + 1], lookback))


@settings(max_examples=300, deadline=None)
@given(SERIES, st.floats(0.01, 1.0))
def test_ema_equals_its_definition(xs: list[float], alpha: float) -> None:
    state = np.zeros(2)
    for i, x in enumerate(xs):
        assert close(ind.ema_update(state, x, alpha), ind.ema_reference(xs[: i + 1], alpha))


@settings(max_examples=300, deadline=None)
@given(SERIES, st.integers(1, 20))
def test_rsi_equals_wilders_definition(xs: list[float], period: int) -> None:
    state = np.zeros(4)
    for i, x in enumerate(xs):
        assert close(ind.rsi_update(state, x, period), ind.rsi_reference(xs[: i + 1], period))


def test_rsi_edges() -> None:
    state = np.zeros(4)
    values = [ind.rsi_update(state, x, 3) for x in (1.0, 2.0, 3.0, 4.0)]
    assert math.isnan(values[2]) and values[3] == 100.0  # three changes, all gains
    flat = np.zeros(4)
    assert [ind.rsi_update(flat, 1.0, 2) for _ in range(4)][-1] == 50.0


def test_zscore_of_a_flat_window_is_undefined() -> None:
    buf, acc = np.zeros(10), np.zeros(ind.WINDOW_ACC)
    for _ in range(10):
        ind.window_push(buf, acc, 0.25)
    assert math.isnan(ind.window_zscore(acc, 0.3, 1e-9))
