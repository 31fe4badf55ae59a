"""Detection: the row-scan kernel against its pure-Python reference on the same books, a full
scan of 1,000 symbols x 5 venues with under 1 % of pairs crossed, and the cost per row of a
stream of updates (1,000 symbols x 3 venues, about 1 % of rows crossing) through the kernel
alone and through the whole DetectorCore, on one pinned core.

Every scan here is in steady state: the books are already held, and each row replaces one
and is quoted against the others, as in a run.
"""

from __future__ import annotations

import importlib.resources
import math
from collections.abc import Callable
from typing import Any

import numpy as np
import yaml

from hft_ray.bench.common import Scale, best_of, pinned_to_one_core
from hft_ray.clock import TestClock
from hft_ray.config import DEFAULT_CONFIG, parse_config
from hft_ray.detect import kernels, reference
from hft_ray.detect.core import DetectorCore
from hft_ray.markets import simulated_markets
from hft_ray.types import BOOK_VALID, Universe, book_update_dtype

TARGET_SPEEDUP = 100
TARGET_FULL_SCAN_MS = 1.0
#: The fused node's ingest target; the detector's share of it must leave room for the rest.
TARGET_ROWS_PER_S = 100_000

_NOW_MONO, _NOW_WALL = 10**9, 1_700_000_000 * 10**9
_MAX_AGE_NS = 500_000_000
_STREAM_VENUES = ("binance", "okx", "gateio")
_STREAM_BATCHES = (32, 1_000)  # rows per batch: the feed's default flush, and a busy one
_BOOK_FIELDS = ("bid_px", "bid_qty", "ask_px", "ask_qty", "n_bids", "n_asks")


def synthetic_market(
    n_sym: int, n_ven: int, depth: int, crossed_symbols: int, seed: int = 11
) -> dict[str, Any]:
    """Books for `n_sym` symbols on `n_ven` venues, tight around one mid per symbol; in the
    first `crossed_symbols` symbols one venue sits 60 bps high, crossing every other venue's
    asks net of fees (n_ven - 1 crossed pairs each)."""
    rng = np.random.default_rng(seed)
    mids = rng.uniform(1.0, 50_000.0, n_sym)
    bump = np.zeros((n_sym, n_ven))
    bump[:crossed_symbols, n_ven - 1] = 0.006
    mid = mids[:, None] * (1.0 + bump + rng.normal(0.0, 2e-5, (n_sym, n_ven)))
    market = _levels(mid, mids, depth, rng)
    market["mids"] = mids
    # Taker fees only: no notional, inventory or position caps, lots, ticks, slippage or skew
    # (the defaults of every other field).
    inf = math.inf
    pair = reference.PairLimits(0.001, 0.001, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, inf, inf, inf)
    market["limits"] = np.broadcast_to(
        np.array(pair), (n_sym, n_ven, n_ven, reference.LIMIT_COLS)
    ).copy()
    return market


def _levels(
    mid: np.ndarray, mids: np.ndarray, depth: int, rng: np.random.Generator
) -> dict[str, Any]:
    """Books around `mid` (one per leading index), spread and level gaps scaled by `mids`."""
    scale = mids.reshape(mids.shape + (1,) * (mid.ndim - mids.ndim + 1))
    step = scale * 1e-4 * np.arange(depth)
    half = scale * 5e-5
    shape = (*mid.shape, depth)
    return {
        "bid_px": mid[..., None] - half - step,
        "ask_px": mid[..., None] + half + step,
        "bid_qty": rng.uniform(0.1, 3.0, shape),
        "ask_qty": rng.uniform(0.1, 3.0, shape),
        "n_bids": np.full(mid.shape, depth, np.int64),
        "n_asks": np.full(mid.shape, depth, np.int64),
    }


def market_rows(m: dict[str, Any]) -> np.ndarray:
    """One fresh, valid BookUpdate row per (symbol, venue) of the market, in that order."""
    n_sym, n_ven, depth = m["bid_px"].shape
    rows = np.zeros(n_sym * n_ven, book_update_dtype(depth))
    rows["symbol"] = np.repeat(np.arange(n_sym), n_ven)
    rows["venue"] = np.tile(np.arange(n_ven), n_sym)
    for name in _BOOK_FIELDS:
        rows[name] = m[name].reshape(n_sym * n_ven, *m[name].shape[2:])
    _stamp_fresh(rows)
    return rows


def _stamp_fresh(rows: np.ndarray) -> None:
    rows["flags"] = BOOK_VALID
    rows["ts_exchange_ns"] = rows["ts_recv_ns"] = _NOW_WALL
    rows["ts_recv_mono_ns"] = _NOW_MONO


def row_stream(
    n_sym: int, n_ven: int, depth: int, n_rows: int, jump_share: float, seed: int = 13
) -> tuple[dict[str, Any], np.ndarray, int]:
    """A market and `n_rows` updates of random books of it: each a small move of its mid, a
    `jump_share` of them a 60 bps jump that crosses the other venues, reverted by the next
    row (the same book). Returns the market, the rows and the count of jumps."""
    rng = np.random.default_rng(seed)
    market = synthetic_market(n_sym, n_ven, depth, 0, seed)
    mids = market["mids"]
    s, v = rng.integers(0, n_sym, n_rows), rng.integers(0, n_ven, n_rows)
    jump = rng.random(n_rows) < jump_share
    jump[-1] = False
    jump[1:] &= ~jump[:-1]  # a jump's next row is its reversal, never a jump itself
    after = np.flatnonzero(jump) + 1
    s[after], v[after] = s[after - 1], v[after - 1]
    mid = mids[s] * (1.0 + 0.006 * jump + rng.normal(0.0, 2e-5, n_rows))
    levels = _levels(mid, mids[s], depth, rng)
    rows = np.zeros(n_rows, book_update_dtype(depth))
    rows["symbol"], rows["venue"] = s, v
    for name in _BOOK_FIELDS:
        rows[name] = levels[name]
    _stamp_fresh(rows)
    return market, rows, int(jump.sum())


def _held_books(m: dict[str, Any]) -> kernels.Books:
    """The market as a detector holds it after one fresh update of every book."""
    n_sym, n_ven = m["n_bids"].shape
    return kernels.Books(
        **{name: m[name].copy() for name in _BOOK_FIELDS},
        valid=np.ones((n_sym, n_ven), np.bool_),
        ts_exchange=np.full((n_sym, n_ven), _NOW_WALL, np.int64),
        recv_mono=np.full((n_sym, n_ven), _NOW_MONO, np.int64),
    )


def _scan_kernel(m: dict[str, Any], rows: np.ndarray, batch: int) -> Callable[[], int]:
    """The kernel over `rows` in batches of `batch`, on the market's books."""
    books = _held_books(m)
    n_ven = books[0].shape[1]
    capacity = min(batch, len(rows)) * 2 * (n_ven - 1)
    ids = np.zeros((capacity, kernels.ID_COLS), np.int64)
    quotes = np.zeros((capacity, kernels.QUOTE_COLS))
    chunks = [kernels.row_columns(rows[i : i + batch]) for i in range(0, len(rows), batch)]

    def run() -> int:
        found = 0
        for columns in chunks:
            n, _ = kernels.scan_rows(
                *columns,
                *books,
                m["limits"],
                0.0,
                _MAX_AGE_NS,
                _NOW_MONO,
                _NOW_WALL,
                False,
                0,
                ids,
                quotes,
            )
            if n < 0:
                raise RuntimeError(f"scan_rows refused a bench batch (status {n})")
            found += n
        return found

    return run


def _scan_reference(m: dict[str, Any], rows: np.ndarray) -> Callable[[], int]:
    n_sym, n_ven, _ = m["bid_px"].shape

    def book(s: int, v: int, source: Any) -> reference.BookRow:
        return reference.BookRow(
            s,
            v,
            True,
            _NOW_WALL,
            _NOW_MONO,
            list(zip(source["bid_px"].tolist(), source["bid_qty"].tolist(), strict=True)),
            list(zip(source["ask_px"].tolist(), source["ask_qty"].tolist(), strict=True)),
        )

    held = {
        (s, v): book(s, v, {name: m[name][s, v] for name in _BOOK_FIELDS[:4]})
        for s in range(n_sym)
        for v in range(n_ven)
    }
    updates = [book(int(r["symbol"]), int(r["venue"]), r) for r in rows]
    limits = {
        (s, a, b): reference.PairLimits(*m["limits"][s, a, b].tolist())
        for s in range(n_sym)
        for a in range(n_ven)
        for b in range(n_ven)
    }
    now = reference.Now(_NOW_MONO, _NOW_WALL, recorded=False, file_ns=0)

    def run() -> int:
        books = dict(held)
        found, _ = reference.scan_rows(updates, books, limits, n_ven, 0.0, _MAX_AGE_NS, now)
        return len(found)

    return run


def stream_detector(n_sym: int, depth: int) -> DetectorCore:
    """A DetectorCore of the packaged config on `n_sym` made-up symbols x 3 simulated venues,
    with no inventory caps and no cooldown, on a clock that stands still (books never age)."""
    text = importlib.resources.files("hft_ray.configs").joinpath(DEFAULT_CONFIG).read_text()
    data = yaml.safe_load(text)
    symbols = [f"S{i}/USDT" for i in range(n_sym)]
    market = {"tick": 1e-8, "lot": 1e-8}
    data["symbols"] = symbols
    data["venues"] = {
        v: {"kind": "sim", "markets": dict.fromkeys(symbols, market)} for v in _STREAM_VENUES
    }
    data["sim"]["initial_prices"] = dict.fromkeys(symbols, 100.0)
    data["feed"]["depth"] = depth
    data["detector"] = {"cooldown_ms": 0.0}  # every quote becomes an Opportunity: the dearest
    config = parse_config(data, "bench detector")
    universe = Universe(tuple(config.venues), tuple(config.symbols))
    clock = TestClock(start_ns=_NOW_WALL)
    core = DetectorCore(config, universe, simulated_markets(config), clock, "bench")
    core.warm_up()
    return core


def _detect_stream(core: DetectorCore, rows: np.ndarray, batch: int) -> Callable[[], int]:
    """The whole detector over `rows` in batches of `batch`: scan, cooldown, Opportunity
    objects, latency samples."""
    batches = [rows[i : i + batch] for i in range(0, len(rows), batch)]

    def run() -> int:
        found = sum(len(core.on_batch(b)) for b in batches)
        core.tick_to_detect_ns.clear()
        return found

    return run


def bench_kernel(scale: Scale) -> dict[str, Any]:
    """Kernel against reference on the same books (minimum of several runs, one pinned core),
    the full scan, and the cost per row of a stream."""
    n_sym = scale.kernel_symbols
    crossed = n_sym * 3 // 10
    with pinned_to_one_core() as core:
        same = synthetic_market(n_sym=n_sym, n_ven=5, depth=20, crossed_symbols=crossed)
        same_rows = market_rows(same)
        kernel = _scan_kernel(same, same_rows, len(same_rows))
        kernel()  # compiled, or loaded from numba's cache, before it is timed
        k_s, k_found = best_of(kernel, scale.repeats)
        r_s, r_found = best_of(_scan_reference(same, same_rows), scale.repeats)
        if k_found != r_found:
            raise RuntimeError(f"kernel found {k_found}, reference {r_found}")
        pair_checks = len(same_rows) * 4 * 2  # each row against 4 venues, both directions
        full = synthetic_market(n_sym=n_sym, n_ven=5, depth=20, crossed_symbols=n_sym // 25)
        full_rows = market_rows(full)
        f_s, f_found = best_of(_scan_kernel(full, full_rows, len(full_rows)), scale.repeats * 4)
        per_row = _per_row(n_sym, scale)
    crossed_share = f_found / pair_checks
    return {
        "pinned_core": core,
        "same_books": {
            "what": f"one update of every book of {n_sym:,} symbols x 5 venues, each quoted "
            f"against the 4 other venues' books held, {crossed} symbols crossed",
            "opportunities": k_found,
            "kernel_ms": round(k_s * 1e3, 3),
            "baseline": "the pure-Python reference (detect/reference.py) on the same books",
            "reference_ms": round(r_s * 1e3, 3),
            "kernel_pair_checks_per_s": round(pair_checks / k_s),
            "speedup_vs_reference": round(r_s / k_s, 1),
            "target_speedup": TARGET_SPEEDUP,
        },
        "full_scan": {
            "what": f"{n_sym:,} symbols x 5 venues, every book updated once",
            "crossed_pairs_share": round(crossed_share, 4),
            "kernel_ms": round(f_s * 1e3, 3),
            "target_ms": TARGET_FULL_SCAN_MS,
            "meets_target": f_s * 1e3 < TARGET_FULL_SCAN_MS and crossed_share < 0.01,
        },
        "per_row": per_row,
    }


def _per_row(n_sym: int, scale: Scale) -> dict[str, Any]:
    n_rows, depth = n_sym * 100, 20
    market, rows, jumps = row_stream(n_sym, len(_STREAM_VENUES), depth, n_rows, 0.01)
    detector = stream_detector(n_sym, depth)
    kernel_us, detector_us = {}, {}
    found = 0
    for batch in _STREAM_BATCHES:
        k_s, found = best_of(_scan_kernel(market, rows, batch), scale.repeats)
        d_s, _ = best_of(_detect_stream(detector, rows, batch), scale.repeats)
        kernel_us[str(batch)] = round(k_s / n_rows * 1e6, 3)
        detector_us[str(batch)] = round(d_s / n_rows * 1e6, 3)
    slowest = max(detector_us.values())
    return {
        "what": f"{n_rows:,} updates of random books of {n_sym:,} symbols x "
        f"{len(_STREAM_VENUES)} venues, {jumps / n_rows:.1%} of them a jump crossing the other "
        "venues (reverted by the next row), in batches of each size",
        "rows": n_rows,
        "crossing_rows_share": round(jumps / n_rows, 4),
        "quotes_found": found,
        "kernel_us_per_row": kernel_us,
        "detector_us_per_row": detector_us,
        "detector_rows_per_s_per_core": round(1e6 / slowest),
        "target_rows_per_s": TARGET_ROWS_PER_S,
    }
