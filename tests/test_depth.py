"""Watch depth on a real capture: ccxt.pro's own Binance and OKX classes rebuild every book from
snapshot + diffs of the local exchange server's replay, and the top `feed.depth` levels of both
sides must be the server's truth at that nonce. With the default depth they all are; with a
limit as shallow as the levels compared, ccxt forgets levels it cut off and the book is wrong."""

from __future__ import annotations

import asyncio
from typing import Any

import ccxt.pro
import pytest

from hft_ray.config import CcxtVenueConfig, FeedConfig
from hft_ray.venues.depth import WATCH_DEPTHS, default_watch_depth, watch_depth
from tests.exchange_server import TOP, ExchangeServer, Venue

N = FeedConfig().depth  # levels compared per side: what the feed carries
WATCH_TIMEOUT_S = 5.0
Top = tuple[tuple[float, float], ...]


def test_default_depth_is_the_deepest_snapshot_per_venue() -> None:
    assert default_watch_depth("binance", "spot") == 5000
    assert default_watch_depth("binance", "swap") == 1000
    assert default_watch_depth("binanceusdm", "swap") == 1000
    assert default_watch_depth("okx", "spot") == default_watch_depth("okx", "swap") == 400
    assert default_watch_depth("kraken", "spot") == 1000
    assert default_watch_depth("bybit", "option") == 100
    assert default_watch_depth("coinbase", "spot") is None  # whole book, kept unbounded
    assert default_watch_depth("bitfinex", "spot") is None  # unknown: ccxt's default
    assert default_watch_depth("binance", "option") is None
    assert all(d is None or 1 <= d <= 5000 for v in WATCH_DEPTHS.values() for d in v.values())


def test_a_configured_depth_wins_over_the_table() -> None:
    exchange = ccxt.pro.binance()
    exchange.markets = {"NKN/USDT": {"type": "spot"}}
    assert watch_depth(exchange, "NKN/USDT", None) == 5000
    assert watch_depth(exchange, "NKN/USDT", 100) == 100
    assert watch_depth(exchange, "XYZ/USDT", None) is None  # no such market: ccxt's default


async def rebuilt_books(
    venue: Venue, limit: int | None
) -> tuple[list[tuple[Any, Top, Top, Top, Top]], ExchangeServer]:
    """Every book ccxt gives while the server replays its capture: (nonce, ccxt's top N bids,
    asks, the server's top N bids, asks at that nonce)."""
    assert TOP >= N, "the server keeps fewer levels than are compared"
    server = ExchangeServer(venue, interval_s=0.003, okx_seq_ids=True)
    exchange = None
    books = []
    try:
        await server.start()
        exchange = getattr(ccxt.pro, venue)(
            {"urls": server.ccxt_urls(), "options": server.ccxt_options()}
        )
        await exchange.load_markets()
        depth = watch_depth(exchange, server.symbol, limit)
        while server.synthetic_deltas == 0:  # the captured part
            ob = await asyncio.wait_for(
                exchange.watch_order_book(server.symbol, depth), WATCH_TIMEOUT_S
            )
            # read at once: ccxt's book keeps changing as later frames arrive
            bids = tuple((b[0], b[1]) for b in ob["bids"][:N])
            asks = tuple((a[0], a[1]) for a in ob["asks"][:N])
            served = server.book_at(ob["nonce"])
            assert served is not None, f"server never had a book at nonce {ob['nonce']}"
            books.append((ob["nonce"], bids, asks, served.bids[:N], served.asks[:N]))
    finally:
        if exchange is not None:
            await exchange.close()
        await server.stop()
    return books, server


def wrong(books: list[tuple[Any, Top, Top, Top, Top]]) -> list[Any]:
    return [nonce for nonce, bids, asks, sb, sa in books if (bids, asks) != (sb, sa)]


@pytest.mark.parametrize("venue", ["binance", "okx"])
def test_default_depth_rebuilds_every_book_of_the_capture(venue: Venue) -> None:
    default = CcxtVenueConfig.model_fields["watch_depth"].default
    books, server = asyncio.run(rebuilt_books(venue, default))
    assert len(books) > 30 and not wrong(books)
    assert all(len(b[1]) == len(b[2]) == N for b in books)
    if venue == "binance":  # the REST snapshot was asked at the venue's deepest
        assert "/api/v3/depth?symbol=NKNUSDT&limit=5000" in server.rest_requests


def test_a_limit_as_shallow_as_the_levels_compared_gets_books_wrong() -> None:
    """ccxt keeps only `limit` levels: each level that leaves the top N is not replaced by the
    next one, which it cut off, until a diff happens to touch that price again."""
    books, _ = asyncio.run(rebuilt_books("binance", N))
    assert len(wrong(books)) > len(books) // 4
