"""The feed's row checks: each numba kernel equals its plain reference exactly (the jump
kernel on drawn, real and simulated mids), the level checks say what `book.check_levels` says,
and the jump filter lets still mids tick while lone prints are withheld."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hft_ray.book import check_levels
from hft_ray.config import FeedConfig
from hft_ray.feed.checks import (
    JUMP,
    JUMP_MIN_SAMPLES,
    JUMP_SPAN,
    RESTART,
    STATUS,
    JumpState,
    jump_status_reference,
    level_status,
    level_status_reference,
    mean_square_reference,
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


RefState = dict[int, tuple[list[float], float | None, float | None]]


def run_jump(
    symbols: list[int], mids: list[float], status: list[int], state: JumpState
) -> list[int]:
    out = np.array(status, dtype=np.int64)
    mid = np.array(mids)
    # A book whose bid and ask are the mid: the kernel's mid is then exactly it.
    state.check(np.array(symbols, dtype=np.int16), mid, mid, out)
    return out.tolist()


def assert_state_is(state: JumpState, ref: RefState, span: int) -> None:
    for s in range(len(state.count)):
        rets, last, pending = ref.get(s, ([], None, None))
        assert int(state.count[s]) == len(rets)
        assert float(state.mean_sq[s]) == mean_square_reference(rets, span)
        assert (None if np.isnan(state.last[s]) else state.last[s]) == last
        assert (None if np.isnan(state.pending[s]) else state.pending[s]) == pending


def ticks_strategy() -> st.SearchStrategy[list[tuple[int, float, int]]]:
    """(symbol, log return, status before the jump check): mostly small returns around the
    bands drawn below, still mids, sometimes a lone jump, sometimes a row already judged bad,
    sometimes the venue's invalidation (`RESTART`)."""
    ret = st.one_of(
        st.floats(-1e-3, 1e-3),
        st.floats(-1e-3, 1e-3),
        st.sampled_from([0.05, -0.05, 0.2, 45e-4]),
        st.just(0.0),
    )
    return st.lists(
        st.tuples(st.integers(0, 2), ret, st.sampled_from([0, 0, 0, 0, 2, RESTART])), max_size=300
    )


@settings(max_examples=150, deadline=None)
@given(
    ticks=ticks_strategy(),
    span=st.integers(1, 12),
    min_samples=st.integers(0, 8),
    max_z=st.sampled_from([2.0, 4.0, 12.0]),
    bands=st.sampled_from([(1.0, 20.0), (5.0, 40.0), (10.0, 10.0), (0.01, 1_000.0)]),
)
def test_jump_kernel_equals_reference(
    ticks: list[tuple[int, float, int]],
    span: int,
    min_samples: int,
    max_z: float,
    bands: tuple[float, float],
) -> None:
    level = [100.0, 5.0, 0.01]
    symbols, mids, status = [], [], []
    for s, r, code in ticks:
        level[s] *= float(np.exp(r))
        symbols.append(s)
        mids.append(level[s])
        status.append(code)
    state = JumpState(3, max_z, *bands, span=span, min_samples=min_samples)
    # Twice over: the second pass starts from the state the first left.
    ref: RefState = {}
    for _ in range(2):
        got = run_jump(symbols, mids, status, state)
        want = jump_status_reference(symbols, mids, status, max_z, *bands, span, min_samples, ref)
        assert got == want
    assert_state_is(state, ref, span)


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


def test_jump_kernel_equals_reference_on_real_looking_mids() -> None:
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
    prints = sum(len(range(45, len(mids), 53)) for mids in series)
    for max_z in (4.0, 12.0):
        state = JumpState(len(series), max_z, 10.0, 40.0)
        got = run_jump(symbols, flat, [0] * len(flat), state)
        ref: RefState = {}
        want = jump_status_reference(
            symbols, flat, [0] * len(flat), max_z, 10.0, 40.0, JUMP_SPAN, JUMP_MIN_SAMPLES, ref
        )
        assert got == want
        assert_state_is(state, ref, JUMP_SPAN)
        assert prints <= got.count(JUMP) < len(flat) // 10, got.count(JUMP)


def filter_of(config: FeedConfig | None = None) -> JumpState:
    config = config or FeedConfig()
    return JumpState(1, config.max_jump_z, config.min_jump_bps, config.max_jump_bps)


def withheld(state: JumpState, mids: list[float]) -> list[bool]:
    return [code == JUMP for code in run_jump([0] * len(mids), mids, [0] * len(mids), state)]


def test_a_still_mid_does_not_withhold_the_next_real_tick() -> None:
    """Issue 12: a mid that did not move for many updates had a band of almost nothing, and a
    real 2.2 bps move was withheld. The band's floor lets it through; a 50 bps print is not."""
    state = filter_of()
    mid = 0.3521
    assert not any(withheld(state, [mid] * 100))
    assert withheld(state, [mid * 1.00022, mid * 1.00022 * 1.005, mid * 1.00022]) == [
        False,
        True,
        False,
    ]


def test_a_spike_is_withheld_from_the_second_book_and_after_wild_moves() -> None:
    """Before the filter has learned anything its band is the ceiling, and it stays the most
    however wide recent moves were: a lone 50 bps print is never taken."""
    assert withheld(filter_of(), [100.0, 100.5, 100.0]) == [False, True, False]
    state = filter_of()
    wild = [100.0 * (1.0035 if i % 2 else 1.0) for i in range(100)]  # 35 bps every update
    assert not any(withheld(state, wild))
    assert 12 * np.sqrt(state.mean_sq[0]) * 1e4 > 50  # the band's std-dev part alone: 420 bps
    assert withheld(state, [wild[-1] * 0.995, wild[-1]]) == [True, False]


def test_a_confirmed_move_is_learned_and_a_rejected_print_is_not() -> None:
    state = filter_of()
    rng = np.random.default_rng(1)
    mids = list(100.0 * np.exp(np.cumsum(rng.normal(0, 2e-5, 60))))
    assert not any(withheld(state, mids))
    before = state.mean_sq.copy()
    assert withheld(state, [mids[-1] * 1.05, mids[-1]]) == [True, False]
    assert state.mean_sq[0] < before[0] * 1.1  # the print taught nothing; a small real step did
    moved = mids[-1] * 0.994
    assert withheld(state, [moved, moved * 1.00001]) == [True, False]  # flagged once, confirmed
    assert state.mean_sq[0] > 100 * before[0]  # the 60 bps move widened the band
    assert state.last[0] == moved * 1.00001


def test_jump_bands_are_checked() -> None:
    with pytest.raises(ValueError, match=r"min_jump_bps 50\.0 is above max_jump_bps 40\.0"):
        FeedConfig(min_jump_bps=50)
    with pytest.raises(ValueError, match=r"0 < min_bps <= max_bps"):
        JumpState(1, 12.0, 5.0, 1.0)
