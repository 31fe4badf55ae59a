"""The feed's row checks: each numba kernel equals its plain reference exactly, the level
checks say what `book.check_levels` says, and the jump kernel decides as `JumpFilter` does on
real and simulated mids."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from hft_ray.book import JumpFilter, check_levels
from hft_ray.feed.checks import (
    JUMP,
    JUMP_MIN_SAMPLES,
    JUMP_WINDOW,
    STATUS,
    JumpState,
    jump_status,
    jump_status_reference,
    level_status,
    level_status_reference,
)
from hft_ray.types import book_update_dtype
from tests.captures import DATA, ws_frames

DEPTH = 4
PRICE = st.one_of(
    st.floats(-5, 200), st.sampled_from([0.0, float("nan"), float("inf"), 1e308, 5e-324, 1e16])
)
SIZE = st.one_of(st.floats(-1, 5), st.sampled_from([float("nan"), float("-inf"), 1e300, 1e-20]))
SIDE = st.lists(st.tuples(PRICE, SIZE), max_size=DEPTH)


def make_rows(books: list[tuple[list, list]]) -> np.ndarray:
    rows = np.zeros(len(books), book_update_dtype(DEPTH))
    for field in ("bid_px", "bid_qty", "ask_px", "ask_qty"):
        rows[field] = np.nan
    for i, (bids, asks) in enumerate(books):
        for side, levels in (("bid", bids), ("ask", asks)):
            rows[f"n_{side}s"][i] = len(levels)
            for j, (px, qty) in enumerate(levels):
                rows[f"{side}_px"][i, j], rows[f"{side}_qty"][i, j] = px, qty
    return rows


def run_level_status(rows: np.ndarray) -> list[int]:
    status = np.full(len(rows), -7, dtype=np.int64)
    level_status(
        rows["bid_px"],
        rows["bid_qty"],
        rows["ask_px"],
        rows["ask_qty"],
        rows["n_bids"],
        rows["n_asks"],
        status,
    )
    return status.tolist()


@settings(max_examples=300, deadline=None)
@given(books=st.lists(st.tuples(SIDE, SIDE), max_size=8), sort=st.booleans())
def test_level_kernel_equals_reference_and_check_levels(books: list, sort: bool) -> None:
    if sort:  # most real books are sorted: reach the crossed check too
        books = [(sorted(b, key=lambda x: -x[0]), sorted(a, key=lambda x: x[0])) for b, a in books]
    rows = make_rows(books)
    got = run_level_status(rows)
    assert got == level_status_reference(rows)
    for code, (bids, asks) in zip(got, books, strict=True):
        b = np.array(bids, dtype=np.float64).reshape(-1, 2)
        a = np.array(asks, dtype=np.float64).reshape(-1, 2)
        assert STATUS[code] == check_levels(b, a)


def test_level_kernel_names_each_defect() -> None:
    good_b, good_a = [(100.0, 1.0), (99.0, 1.0)], [(101.0, 1.0), (102.0, 1.0)]
    rows = make_rows(
        [
            (good_b, good_a),
            ([], good_a),
            ([(100.0, float("nan"))], good_a),
            (good_b, [(101.0, 0.0)]),
            (good_b[::-1], good_a),
            ([(101.5, 1.0)], good_a),
            ([(1e308, 1.0)], [(1.5e308, 1.0)]),
            ([(5e-324, 1.0)], good_a),
            (good_b, [(101.0, 1e300)]),
            ([(5e-324, 1.0)], [(101.0, float("nan"))]),  # the worse defect is named
        ]
    )
    reasons = [STATUS[c] for c in run_level_status(rows)]
    assert reasons == [
        "",
        "empty_side",
        "non_positive_or_nan_level",
        "non_positive_or_nan_level",
        "unsorted_levels",
        "crossed",
        "level_out_of_range",
        "level_out_of_range",
        "level_out_of_range",
        "non_positive_or_nan_level",
    ]


def run_jump(
    symbols: list[int], mids: list[float], status: list[int], state: JumpState, max_z: float
) -> list[int]:
    out = np.array(status, dtype=np.int64)
    mid = np.array(mids)
    jump_status(
        np.array(symbols, dtype=np.int16),
        mid,
        mid,  # a book whose bid and ask are the mid: the kernel's mid is then exactly it
        out,
        max_z,
        state_min_samples(state),
        state.returns,
        state.count,
        state.head,
        state.last,
        state.pending,
    )
    return out.tolist()


def state_min_samples(state: JumpState) -> int:
    return max(1, min(JUMP_MIN_SAMPLES, state.returns.shape[1] // 2))


def ticks_strategy() -> st.SearchStrategy[list[tuple[int, float, int]]]:
    """(symbol, log return, status before the jump check): mostly small returns, sometimes a
    lone jump, sometimes a row already judged bad."""
    ret = st.one_of(
        st.floats(-1e-3, 1e-3),
        st.floats(-1e-3, 1e-3),
        st.sampled_from([0.05, -0.05, 0.2]),
        st.just(0.0),
    )
    return st.lists(
        st.tuples(st.integers(0, 2), ret, st.sampled_from([0, 0, 0, 0, 2])), max_size=300
    )


@settings(max_examples=150, deadline=None)
@given(ticks=ticks_strategy(), window=st.integers(1, 12), max_z=st.sampled_from([2.0, 4.0]))
def test_jump_kernel_equals_reference(
    ticks: list[tuple[int, float, int]], window: int, max_z: float
) -> None:
    level = [100.0, 5.0, 0.01]
    symbols, mids, status = [], [], []
    for s, r, code in ticks:
        level[s] *= float(np.exp(r))
        symbols.append(s)
        mids.append(level[s])
        status.append(code)
    kernel_state = JumpState(3, window)
    min_samples = state_min_samples(kernel_state)
    # Twice over: the second pass starts from the state the first left (rings wrapped).
    ref_state: dict[int, tuple[list[float], float | None, float | None]] = {}
    for _ in range(2):
        got = run_jump(symbols, mids, status, kernel_state, max_z)
        want = jump_status_reference(symbols, mids, status, max_z, min_samples, window, ref_state)
        assert got == want
    for s in range(3):
        rets, last, pending = ref_state.get(s, ([], None, None))
        count, head = int(kernel_state.count[s]), int(kernel_state.head[s])
        ring = np.roll(kernel_state.returns[s], -head)[window - count :]
        assert ring.tolist() == rets
        assert (None if np.isnan(kernel_state.last[s]) else kernel_state.last[s]) == last
        assert (None if np.isnan(kernel_state.pending[s]) else kernel_state.pending[s]) == pending


def real_and_simulated_mids() -> list[list[float]]:
    """Mid series: Binance NKNUSDT's best bid and ask from its captured @bookTicker stream,
    and every (venue, symbol) of the repository's simulated sample, whose dislocations jump."""
    frames = [f.body for f in ws_frames(DATA / "binance" / "BINANCE.ws.1.0") if not f.sent]
    tickers = [f["data"] for f in frames if f["stream"] == "nknusdt@bookTicker"]
    series = [[(float(t["b"]) + float(t["a"])) / 2 for t in tickers]]
    sample = Path(__file__).parent / "data" / "replay" / "sim-sample.jsonl.gz"
    by_book: dict[tuple[str, str], list[float]] = {}
    with gzip.open(sample, "rt") as f:
        for line in f:
            rec = json.loads(line)
            mid = (rec["bids"][0][0] + rec["asks"][0][0]) / 2
            by_book.setdefault((rec["exchange"], rec["symbol"]), []).append(mid)
    return series + list(by_book.values())


def test_jump_kernel_decides_as_jump_filter_on_real_looking_mids() -> None:
    series = real_and_simulated_mids()
    # Fat-fingered prints among them: a lone mid 4 % off every 53 updates.
    for mids in series:
        for i in range(45, len(mids), 53):
            mids[i] *= 1.04
    symbols = [s for s, mids in enumerate(series) for _ in mids]
    flat = [m for mids in series for m in mids]
    order = np.argsort([i for mids in series for i in range(len(mids))], kind="stable")
    symbols = [symbols[i] for i in order]  # interleaved, as rows of many books arrive
    flat = [flat[i] for i in order]
    for max_z in (4.0, 12.0):
        filters = [JumpFilter(max_z) for _ in series]
        expected = [filters[s].check(mid) for s, mid in zip(symbols, flat, strict=True)]
        state = JumpState(len(series), JUMP_WINDOW)
        status = np.zeros(len(flat), dtype=np.int64)
        mid = np.array(flat)
        jump_status(
            np.array(symbols, dtype=np.int16),
            mid,
            mid,
            status,
            max_z,
            JUMP_MIN_SAMPLES,
            state.returns,
            state.count,
            state.head,
            state.last,
            state.pending,
        )
        assert [code != JUMP for code in status] == expected
        assert 40 < expected.count(False) < len(flat) // 10, expected.count(False)
