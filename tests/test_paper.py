"""Paper trading offline: `PaperVenue` follows ccxt's own binance and okx classes streaming the
local exchange server's books, and matches orders against them without sending any.

Every expected fill is computed here from the server's book (the truth the stream must show),
with the taker fee of the market ccxt loaded from the server; and after every test the server
must have seen no order and no request to anything but its public market endpoints.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from typing import Any

import pytest
from pydantic import ValidationError

from hft_ray.clock import LiveClock
from hft_ray.config import CcxtVenueConfig, load_config, parse_config
from hft_ray.report import human_summary
from hft_ray.report_html import render_html
from hft_ray.types import BookInvalid, BookSnapshot
from hft_ray.venues.base import ORDER_NOT_FOUND, MarketSpec
from hft_ray.venues.ccxt_live import CcxtBookStream, load_ccxt_markets
from hft_ray.venues.paper import PaperVenue
from tests.conftest import default_config_dict
from tests.exchange_server import ExchangeServer, Venue
from tests.test_report_html import report_fixture

VENUES: list[Venue] = ["binance", "okx"]
DEPTH = 10
#: What the server answers publicly: markets, snapshots, time. Anything else is private.
PUBLIC_PATHS = (
    "/api/v3/exchangeInfo",
    "/api/v3/depth",
    "/api/v3/time",
    "/api/v3/ping",
    "/api/v5/public/",
    "/api/v5/market/books",
)


def paper_config(server: ExchangeServer) -> CcxtVenueConfig:
    return CcxtVenueConfig(
        kind="ccxt",
        exchange=server.venue,
        urls=server.ccxt_urls(),
        options=server.ccxt_options(),
        backoff_s=(0.05, 0.5),
        mode="paper",
    )


@asynccontextmanager
async def paper(
    venue: Venue,
    balances: Mapping[str, float],
    latency_s: float = 0.0,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> AsyncIterator[tuple[ExchangeServer, PaperVenue, MarketSpec]]:
    server = ExchangeServer(venue)
    await server.start()
    cfg = paper_config(server)
    specs = await load_ccxt_markets(venue, cfg, [server.symbol])
    stream = CcxtBookStream(venue, cfg, [server.symbol], DEPTH, LiveClock())
    client = PaperVenue(venue, stream, specs, balances, latency_s, LiveClock(), sleep)
    try:
        await client.start()
        yield server, client, specs[server.symbol]
        assert server.order_requests == 0 and not server.orders
        private = [r for r in server.rest_requests if not r.startswith(PUBLIC_PATHS)]
        assert not private, private
    finally:
        await client.close()
        await server.stop()


def top(levels: Any, n: int) -> list[tuple[float, float]]:
    return [(float(p), float(q)) for p, q in list(levels)[:n]]


def book_matches(book: BookSnapshot | None, server: ExchangeServer) -> bool:
    served = server.book
    return (
        book is not None
        and top(book.asks.tolist(), DEPTH) == top(served.asks, DEPTH)
        and top(book.bids.tolist(), DEPTH) == top(served.bids, DEPTH)
    )


async def settled(server: ExchangeServer, client: PaperVenue) -> None:
    """Stop the server's book and wait until the paper venue holds exactly that book, and no
    frame is still on its way (no new book for a while). It waits for a first book before
    stalling: a stalled OKX server sends no snapshot."""
    deadline = time.monotonic() + 15.0
    while client.book(server.symbol) is None:
        assert time.monotonic() < deadline, "the paper venue never had a book"
        await asyncio.sleep(0.02)
    server.stall()
    last, quiet = client.book(server.symbol), 0
    while quiet < 50 or not book_matches(last, server):  # a second with no frame
        assert time.monotonic() < deadline, "the paper venue never showed the served book"
        await asyncio.sleep(0.02)
        book = client.book(server.symbol)
        last, quiet = book, (quiet + 1 if book is last else 0)


def expected_fill(
    levels: list[tuple[float, float]], amount: float, limit: float, buy: bool, lot: float
) -> tuple[float, float]:
    """(filled, cost) of an IOC order walking `levels` (lot-floored takes)."""
    filled = cost = 0.0
    for px, qty in levels:
        if (px > limit if buy else px < limit) or filled >= amount:
            break
        take = math.floor(min(qty, amount - filled) / lot + 1e-9) * lot
        filled += take
        cost += take * px
    return filled, cost


def two_level_amount(levels: list[tuple[float, float]], spec: MarketSpec) -> float:
    """An amount that takes all of the first level and part of the second."""
    return spec.floor_amount(levels[0][1] + levels[1][1] / 2)


def run(body: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(asyncio.wait_for(body(), 60))


@pytest.mark.parametrize("venue", VENUES)
def test_paper_orders_fill_against_the_served_book_with_the_venues_fee(venue: Venue) -> None:
    async def body() -> None:
        async with paper(venue, {}) as (server, client, spec):
            client.balances.update({spec.base: 1e6, spec.quote: 1e9})
            start = dict(client.balances)
            await settled(server, client)
            asks, bids = top(server.book.asks, DEPTH), top(server.book.bids, DEPTH)
            fee = spec.taker_fee  # the market's, as ccxt loaded it from the server
            assert fee > 0

            amount = two_level_amount(asks, spec)
            r = await client.create_order("b1", server.symbol, "buy", amount, asks[1][0])
            filled, cost = expected_fill(asks, amount, asks[1][0], True, spec.lot)
            assert (r.status, r.filled, r.reason) == ("filled", pytest.approx(amount), "")
            assert filled == pytest.approx(amount)
            assert r.avg_price == pytest.approx(cost / amount)
            assert r.avg_price > asks[0][0]  # it did take the second level
            assert r.fee_quote == pytest.approx(cost * fee)
            assert r.sent_mono_ns > 0

            sell = spec.floor_amount(bids[0][1] / 2)
            s = await client.create_order("s1", server.symbol, "sell", sell, bids[0][0])
            assert (s.status, s.avg_price) == ("filled", pytest.approx(bids[0][0]))
            assert s.fee_quote == pytest.approx(sell * bids[0][0] * fee)

            # the first level is gone until the next book: a buy at its price finds nothing
            again = await client.create_order("b2", server.symbol, "buy", amount, asks[0][0])
            assert (again.status, again.filled) == ("expired", 0.0)
            below = await client.create_order("b3", server.symbol, "buy", amount, bids[0][0])
            assert (below.status, below.reason) == ("expired", "ioc_remainder_expired")

            base = start[spec.base] + amount - sell
            quote = start[spec.quote] - cost * (1 + fee) + sell * bids[0][0] * (1 - fee)
            assert client.balances[spec.base] == pytest.approx(base)
            assert client.balances[spec.quote] == pytest.approx(quote)

            assert await client.fetch_order("b1", server.symbol) == r
            assert await client.cancel_order("s1", server.symbol) == s
            lost = await client.fetch_order("nope", server.symbol)
            assert (lost.status, lost.reason) == ("unknown", ORDER_NOT_FOUND)
            dup = await client.create_order("b1", server.symbol, "buy", amount, asks[1][0])
            assert (dup.status, dup.reason) == ("rejected", "duplicate_client_id")

    run(body)


@pytest.mark.parametrize("venue", VENUES)
def test_an_order_that_arrives_after_the_book_moved_fills_at_the_new_book(venue: Venue) -> None:
    """The order is held for its latency (here until the test lets it go) and matched
    against the book the stream holds then, not the one it was sent against."""
    arrive = asyncio.Event()
    asked: list[float] = []

    async def latency(seconds: float) -> None:
        asked.append(seconds)
        await arrive.wait()

    async def body() -> None:
        async with paper(venue, {}, latency_s=0.25, sleep=latency) as (server, client, spec):
            client.balances.update({spec.base: 1e6, spec.quote: 1e9})
            await settled(server, client)
            sent_against = top(server.book.asks, DEPTH)
            amount = spec.floor_amount(sum(q for _, q in sent_against[:5]))
            limit = sent_against[4][0]
            order = asyncio.create_task(
                client.create_order("late", server.symbol, "buy", amount, limit)
            )
            await asyncio.sleep(0)
            server.resume()
            deadline = time.monotonic() + 15.0
            old = expected_fill(sent_against, amount, limit, True, spec.lot)

            def fill_now() -> tuple[float, float]:
                return expected_fill(top(server.book.asks, DEPTH), amount, limit, True, spec.lot)

            while fill_now() == pytest.approx(old):  # until the order would fill differently
                assert time.monotonic() < deadline, "the served book never moved"
                await asyncio.sleep(0.01)
            await settled(server, client)
            assert not order.done()
            arrive.set()
            r = await order
            filled, cost = fill_now()
            assert (filled, cost) != pytest.approx(old)
            assert r.filled == pytest.approx(filled)
            assert r.filled * r.avg_price == pytest.approx(cost)
            assert r.fee_quote == pytest.approx(cost * spec.taker_fee)
            assert asked == [0.25]

    run(body)


@pytest.mark.parametrize("venue", VENUES)
def test_an_order_beyond_the_accounts_funds_is_refused_and_changes_nothing(venue: Venue) -> None:
    async def body() -> None:
        async with paper(venue, {}) as (server, client, spec):
            await settled(server, client)
            (ask, _), (bid, _) = top(server.book.asks, 1)[0], top(server.book.bids, 1)[0]
            amount = spec.floor_amount(max(spec.min_amount, spec.min_notional / bid) * 2)
            need = amount * ask * (1 + spec.taker_fee)
            client.balances.update({spec.base: amount / 2, spec.quote: need * 0.99})
            before = dict(client.balances)
            buy = await client.create_order("poor1", server.symbol, "buy", amount, ask)
            sell = await client.create_order("poor2", server.symbol, "sell", amount, bid)
            for r in (buy, sell):
                assert (r.status, r.reason, r.filled) == ("rejected", "insufficient_funds", 0.0)
            assert client.balances == before
            client.balances[spec.quote] = need * 1.01  # just enough now
            ok = await client.create_order("rich1", server.symbol, "buy", amount, ask)
            assert ok.status == "filled"

    run(body)


def test_a_venue_without_a_book_refuses_the_order() -> None:
    async def body() -> None:
        async with paper("okx", {"BTC": 1.0, "USDT": 1e6}) as (server, client, spec):
            await settled(server, client)
            (ask, _) = top(server.book.asks, 1)[0]
            client.apply([BookInvalid(server.symbol, "stalled")])
            r = await client.create_order("blind", server.symbol, "buy", spec.lot * 1000, ask)
            assert (r.status, r.reason) == ("rejected", "no_book")

    run(body)


# -- config --------------------------------------------------------------------------------------


def test_paper_mode_is_configured_per_ccxt_venue_and_refuses_credentials() -> None:
    data = default_config_dict()
    data["symbols"] = ["BTC/USDT"]
    data["venues"] = {
        "binance": {"kind": "ccxt", "mode": "paper", "balances": {"USDT": 1000}},
        "okx": {"kind": "ccxt", "mode": "paper", "paper_latency_ms": 5},
    }
    config = parse_config(data)
    assert config.paper_venues == ["binance", "okx"]
    assert not config.orders_sent_to_venues and config.mode == "paper"
    assert config.venues["okx"].paper_latency_ms == 5  # type: ignore[union-attr]
    data["venues"]["okx"] = {"kind": "ccxt"}
    live = parse_config(data)
    assert live.paper_venues == ["binance"] and live.orders_sent_to_venues
    assert live.mode == "live"
    with pytest.raises(ValidationError, match="mode paper needs no credentials"):
        CcxtVenueConfig(kind="ccxt", mode="paper", api_key_env="SOME_KEY")


def test_the_shipped_paper_config_is_paper_everywhere_with_no_keys() -> None:
    config = load_config("configs/paper.yaml")  # packaged: found from any directory
    assert config.paper_venues == list(config.venues) and len(config.venues) >= 2
    assert not config.orders_sent_to_venues
    for venue in config.venues.values():
        assert isinstance(venue, CcxtVenueConfig) and venue.balances
        assert venue.api_key_env is venue.api_key_file is venue.secret_env is None


def test_the_reports_say_that_no_real_order_was_sent() -> None:
    report = report_fixture()
    report.update(mode="live", orders_sent_to_venues=False, paper_venues=["binance", "okx"])
    html = render_html(report)
    assert "real orders sent: no (paper trading on live books: binance, okx)" in html
    report.update(
        risk_state="NORMAL", positions_match_journal=True, placement={"pinning": "-"}, journal={}
    )
    assert "binance, okx): no real order was sent" in human_summary(report)
    report["orders_sent_to_venues"] = True
    assert "real orders sent: <span" in render_html(report)
    assert "no real order" not in human_summary(report)
