"""The jump filter calibrated on real markets (issue 12): every book rebuilt from the captured
venue traffic in tests/data (the project's shared exchange samples) goes through the feed's
jump filter with the default config, per (capture, symbol). At most 0.1 % of these genuine
books may be withheld, and a book planted after any of them with its mid 50 bps off, which
the next real book does not confirm, must always be withheld, and leave no trace.

`python -m pytest -q -s tests/test_jump_calibration.py` prints both rates per venue.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterator
from copy import deepcopy
from itertools import pairwise
from typing import Any

import numpy as np

from hft_ray.book import VENUE_BOOK_RULES, OrderBook
from hft_ray.config import FeedConfig
from hft_ray.feed.checks import JUMP, JumpState
from tests.captures import DATA, http_bodies, ws_frames

#: (venue, stream and symbol) -> best (bid, ask) of every book, in arrival order.
Series = dict[tuple[str, str], list[tuple[float, float]]]
SPIKE = 50e-4


def received(path: str) -> list[Any]:
    return [f.body for f in ws_frames(DATA / path) if not f.sent]


def keep_top(book: OrderBook, reason: str, out: list[tuple[float, float]]) -> None:
    """Append the book's best bid and ask; every captured update must keep the book valid."""
    assert reason == "", reason
    bids, asks = book.top(1)
    if len(bids) and len(asks):
        out.append((float(bids[0, 0]), float(asks[0, 0])))


def snapshot_books(venue: str, path: str, key: str, id_field: str) -> dict[str, OrderBook]:
    books = {}
    for url, snap in http_bodies(DATA / path).items():
        book = OrderBook(VENUE_BOOK_RULES[venue])
        book.apply_snapshot(snap["bids"], snap["asks"], snap[id_field], 0)
        books[url.split(f"{key}=")[1].split("&")[0]] = book
    return books


def update_id_books(venue: str, http: str, key: str, id_field: str) -> Callable[..., None]:
    """Applies a `U..u` delta to its symbol's book, and keeps the top if the delta was new."""
    books = snapshot_books(venue, http, key, id_field)

    def apply(out: list, symbol: str, delta: dict) -> None:
        book = books[symbol]
        seq = book.seq
        reason = book.apply_delta(delta["b"], delta["a"], 0, first=delta["U"], last=delta["u"])
        if book.seq != seq:  # not already inside the snapshot
            keep_top(book, reason, out)

    return apply


def binance(series: Series) -> None:
    apply = update_id_books("binance", "binance/BINANCE.http.0.0", "symbol", "lastUpdateId")
    for frame in received("binance/BINANCE.ws.1.0"):
        d = frame["data"]
        if d.get("e") == "depthUpdate":
            apply(series["binance", f"depth {d['s']}"], d["s"], d)
        elif frame["stream"].endswith("@bookTicker"):
            series["binance", f"bookTicker {d['s']}"].append((float(d["b"]), float(d["a"])))


def gateio(series: Series) -> None:
    apply = update_id_books("gateio", "gateio/GATEIO.http.0.0", "currency_pair", "id")
    for frame in received("gateio/GATEIO.ws.1.0"):
        if frame.get("event") != "update":
            continue
        r = frame["result"]
        if frame["channel"] == "spot.order_book_update":
            apply(series["gateio", f"book {r['s']}"], r["s"], r)
        elif frame["channel"] == "spot.tickers":
            top = (float(r["highest_bid"]), float(r["lowest_ask"]))
            series["gateio", f"tickers {r['currency_pair']}"].append(top)


def okx(series: Series) -> None:
    books: dict[str, OrderBook] = {}
    for frame in received("okx/OKX.ws.1.0"):
        arg = frame.get("arg", {})
        inst = arg.get("instId")
        if arg.get("channel") == "tickers" and "data" in frame:
            d = frame["data"][0]
            series["okx", f"tickers {inst}"].append((float(d["bidPx"]), float(d["askPx"])))
        elif arg.get("channel") == "books" and "action" in frame:
            d = frame["data"][0]
            bids = [(p, q) for p, q, *_ in d["bids"]]
            asks = [(p, q) for p, q, *_ in d["asks"]]
            if frame["action"] == "snapshot":
                books[inst] = OrderBook(VENUE_BOOK_RULES["okx"])
                reason = books[inst].apply_snapshot(bids, asks, d.get("seqId"), 0, d["checksum"])
            else:
                reason = books[inst].apply_delta(
                    bids,
                    asks,
                    0,
                    last=d.get("seqId"),
                    prev=d.get("prevSeqId"),
                    checksum=d["checksum"],
                )
            keep_top(books[inst], reason, series["okx", f"books {inst}"])


def kraken(series: Series) -> None:
    books: dict[str, OrderBook] = {}
    for frame in received("kraken/KRAKEN.ws.50.0"):
        if not isinstance(frame, list):
            continue
        pair = frame[-1]
        parts = [p for p in frame[1:-2] if isinstance(p, dict)]
        if "as" in parts[0]:
            books[pair] = OrderBook(VENUE_BOOK_RULES["kraken"])
            reason = books[pair].apply_snapshot(
                [(p, q) for p, q, *_ in parts[0]["bs"]],
                [(p, q) for p, q, *_ in parts[0]["as"]],
                None,
                0,
            )
        else:
            bids = [(p, q) for part in parts for p, q, *_ in part.get("b", [])]
            asks = [(p, q) for part in parts for p, q, *_ in part.get("a", [])]
            checksum = int(next(part["c"] for part in parts if "c" in part))
            reason = books[pair].apply_delta(bids, asks, 0, checksum=checksum)
        keep_top(books[pair], reason, series["kraken", f"book {pair}"])


def genuine_books() -> Series:
    series: Series = defaultdict(list)
    for venue in (binance, gateio, okx, kraken):
        venue(series)
    return {key: tops for key, tops in series.items() if tops}


def new_state() -> JumpState:
    """A filter of one symbol, configured as the feed is by default."""
    config = FeedConfig()
    return JumpState(1, config.max_jump_z, config.min_jump_bps, config.max_jump_bps)


def judge(state: JumpState, bid: float, ask: float) -> bool:
    """One book through the filter: True if withheld."""
    status = np.zeros(1, np.int64)
    state.check(np.zeros(1, np.int16), np.array([bid]), np.array([ask]), status)
    return bool(status[0] == JUMP)


def state_of(state: JumpState) -> np.ndarray:
    return np.array([getattr(state, name)[0] for name in ("mean_sq", "count", "last", "pending")])


def spikes(tops: list[tuple[float, float]]) -> Iterator[tuple[bool, bool]]:
    """Between each genuine book and the next, a planted one 50 bps up, then one 50 bps down
    (each on its own fork of the filter): (spike withheld, the next book then leaves the filter
    as it would have without the spike)."""
    state = new_state()
    for (bid, ask), following in pairwise(tops):
        judge(state, bid, ask)
        after = deepcopy(state)
        judge(after, *following)
        for sign in (1, -1):
            planted = deepcopy(state)
            caught = judge(planted, bid * (1 + sign * SPIKE), ask * (1 + sign * SPIKE))
            judge(planted, *following)
            yield caught, np.array_equal(state_of(planted), state_of(after), equal_nan=True)


def withheld(tops: list[tuple[float, float]]) -> int:
    bids, asks = (np.array(side) for side in zip(*tops, strict=True))
    status = np.zeros(len(tops), np.int64)
    new_state().check(np.zeros(len(tops), np.int16), bids, asks, status)
    return int((status == JUMP).sum())


def test_real_books_pass_and_planted_spikes_are_caught() -> None:
    series = genuine_books()
    by_venue: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0, 0, 0])
    for (venue, _), tops in series.items():
        results = list(spikes(tops))
        counts = by_venue[venue]
        counts[0] += withheld(tops)
        counts[1] += len(tops)
        counts[2] += sum(caught for caught, _ in results)
        counts[3] += len(results)
        counts[4] += sum(not clean for _, clean in results)
    by_venue["overall"] = [sum(c[k] for c in by_venue.values()) for k in range(5)]
    config = FeedConfig()
    print(
        f"\njump filter: max_jump_z {config.max_jump_z}, band {config.min_jump_bps}.."
        f"{config.max_jump_bps} bps, {len(series)} (capture, symbol) series"
    )
    for venue, (flagged, books, caught, planted, traced) in by_venue.items():
        print(
            f"{venue:8} genuine books withheld {flagged:3}/{books:5} ({flagged / books:.3%}); "
            f"planted 50 bps spikes withheld {caught:5}/{planted:5} ({caught / planted:.1%})"
        )
        assert traced == 0, f"{venue}: {traced} spikes changed how the next book was judged"
    flagged, books, caught, planted, _ = by_venue["overall"]
    assert books > 5_000 and planted == 2 * (books - len(series))
    assert flagged <= books / 1_000, flagged
    assert caught == planted
