"""The live feed end to end, offline: ccxt's own binance and okx classes against a local server
that replays real captures in the exchanges' wire formats, with faults injected on demand.

Every book the feed emits must equal the server's book at that point; a gap, a bad checksum,
a stall and a disconnect must each invalidate the book and lead to a resync, and no book from
a broken state may reach a detector as tradable.
"""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from hft_ray.clock import LiveClock
from hft_ray.config import CcxtVenueConfig, parse_config
from hft_ray.detect.core import DetectorCore
from hft_ray.feed.core import FeedCore
from hft_ray.markets import Markets
from hft_ray.types import BookEvent, BookInvalid, BookSnapshot, Universe
from hft_ray.venues.base import MarketSpec
from hft_ray.venues.ccxt_live import DISCONNECTED, OUT_OF_SYNC, RESYNC, STALLED, CcxtBookStream
from tests.conftest import default_config_dict
from tests.exchange_server import ExchangeServer

DEPTH = 5


def venue_config(server: ExchangeServer, **extra: Any) -> CcxtVenueConfig:
    return CcxtVenueConfig(
        kind="ccxt",
        exchange=server.venue,
        urls=server.ccxt_urls(),
        options=server.ccxt_options(),
        backoff_s=(0.05, 0.5),
        **extra,
    )


async def collect(
    stream: CcxtBookStream, until: Callable[[BookEvent], bool], timeout_s: float = 15.0
) -> list[BookEvent]:
    """Events up to and including the first for which `until` holds."""
    seen: list[BookEvent] = []
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for event in await stream.next(0.2):
            seen.append(event)
            if until(event):
                return seen
    kinds = [
        type(e).__name__ + (f"({e.reason})" if isinstance(e, BookInvalid) else "") for e in seen
    ]
    raise AssertionError(f"not seen within {timeout_s}s; got {kinds[-10:]}")


def is_book(event: BookEvent) -> bool:
    return isinstance(event, BookSnapshot)


def assert_matches_server(server: ExchangeServer, books: list[BookSnapshot]) -> None:
    """Each emitted book is the server's book at the moment it stands for."""
    for book in books:
        if server.venue == "binance":
            served = server.book_at(nonce=book.seq)
        else:
            served = server.book_at(ts=book.ts_exchange_ns // 1_000_000)
        assert served is not None, f"no server state for seq {book.seq}"
        assert [tuple(x) for x in book.bids[:DEPTH].tolist()] == list(served.bids[:DEPTH])
        assert [tuple(x) for x in book.asks[:DEPTH].tolist()] == list(served.asks[:DEPTH])


def live(
    venue: str, scenario: Callable[[ExchangeServer, CcxtBookStream], Awaitable[None]], **cfg: Any
) -> None:
    async def main() -> None:
        server = ExchangeServer(venue)  # type: ignore[arg-type]
        await server.start()
        stream = CcxtBookStream(
            venue, venue_config(server, **cfg), [server.symbol], DEPTH, LiveClock()
        )
        try:
            await stream.start()
            await asyncio.wait_for(scenario(server, stream), 60)
        finally:
            await stream.close()
            await server.stop()

    asyncio.run(main())


@pytest.mark.parametrize("venue", ["binance", "okx"])
def test_books_follow_the_exchange(venue: str) -> None:
    async def scenario(server: ExchangeServer, stream: CcxtBookStream) -> None:
        events: list[BookEvent] = []
        while sum(map(is_book, events)) < 30:
            events += await collect(stream, is_book)
        assert not [e for e in events if isinstance(e, BookInvalid)]
        books = [e for e in events if isinstance(e, BookSnapshot)]
        assert_matches_server(server, books)
        assert len({b.ts_exchange_ns for b in books}) > 10  # the book really moved

    live(venue, scenario)


def test_binance_gap_invalidates_and_resyncs_from_a_new_snapshot() -> None:
    async def scenario(server: ExchangeServer, stream: CcxtBookStream) -> None:
        await collect(stream, is_book)
        snapshots = server.snapshots_served
        server.drop_next_delta()
        before = await collect(stream, lambda e: isinstance(e, BookInvalid))
        assert before[-1] == BookInvalid(server.symbol, OUT_OF_SYNC)
        after = await collect(stream, is_book)
        assert server.snapshots_served > snapshots  # ccxt fetched a fresh REST snapshot
        books = [e for e in before + after if isinstance(e, BookSnapshot)]
        assert_matches_server(server, books)  # nothing from the broken state was emitted
        # one invalidation for the episode, and a few retries with backoff, not a storm: ccxt
        # fails every watch at once until its new snapshot is in
        assert not [e for e in after if isinstance(e, BookInvalid)]
        assert 1 <= stream.errors[OUT_OF_SYNC] <= 4, stream.errors
        assert stream.outages["count"] == 1 and stream.outages["longest_s"] > 0

    live("binance", scenario)


@pytest.mark.parametrize("fault", ["corrupt_next_checksum", "drop_next_delta"])
def test_okx_bad_checksum_invalidates_and_resubscribes(fault: str) -> None:
    """ccxt 4.5.90 does not check OKX's CRC32: hft_ray's own raw check must catch both a
    wrong checksum and an update that never arrived."""

    async def scenario(server: ExchangeServer, stream: CcxtBookStream) -> None:
        await collect(stream, is_book)
        subscriptions = server.subscriptions
        getattr(server, fault)()
        before = await collect(stream, lambda e: isinstance(e, BookInvalid))
        assert before[-1] == BookInvalid(server.symbol, "checksum_mismatch")
        after = await collect(stream, is_book)
        assert server.subscriptions > subscriptions  # resubscribed, so a new snapshot came
        books = [e for e in before[:-1] + after if isinstance(e, BookSnapshot)]
        assert_matches_server(server, books)

    live("okx", scenario)


@pytest.mark.parametrize("venue", ["binance", "okx"])
def test_a_silent_stream_is_invalidated_and_resubscribed(venue: str) -> None:
    async def scenario(server: ExchangeServer, stream: CcxtBookStream) -> None:
        await collect(stream, is_book)
        subscriptions = server.subscriptions
        server.stall()
        stalled = await collect(stream, lambda e: isinstance(e, BookInvalid))
        assert stalled[-1] == BookInvalid(server.symbol, STALLED)
        server.resume()
        after = await collect(stream, is_book)
        assert server.subscriptions > subscriptions and stream.resubscribes >= 1
        assert_matches_server(server, [e for e in after if isinstance(e, BookSnapshot)])

    live(venue, scenario, stall_timeout_s=0.5)


@pytest.mark.parametrize("venue", ["binance", "okx"])
def test_a_disconnect_invalidates_and_reconnects(venue: str) -> None:
    async def scenario(server: ExchangeServer, stream: CcxtBookStream) -> None:
        await collect(stream, is_book)
        subscriptions = server.subscriptions
        await server.disconnect()
        dropped = await collect(stream, lambda e: isinstance(e, BookInvalid))
        assert dropped[-1] == BookInvalid(server.symbol, DISCONNECTED)
        after = await collect(stream, is_book)
        assert server.subscriptions > subscriptions and stream.reconnects >= 1
        assert_matches_server(server, [e for e in after if isinstance(e, BookSnapshot)])

    live(venue, scenario)


def test_no_book_from_a_broken_state_reaches_the_detector_as_tradable() -> None:
    """Feed the live stream through the feed's checks into a detector: from the gap until the
    resync the detector holds the venue's book as untradable."""
    data = default_config_dict()
    data["symbols"] = ["NKN/USDT"]
    data["venues"] = {"binance": {"kind": "ccxt"}, "okx": {"kind": "ccxt"}}
    config = parse_config(data)
    universe = Universe(("binance", "okx"), ("NKN/USDT",))
    spec = MarketSpec("NKN/USDT", "NKN", "USDT", 0.0001, 1.0, 1.0, 5.0, 0.001)
    markets = Markets({("binance", "NKN/USDT"): spec, ("okx", "NKN/USDT"): spec})
    feed = FeedCore(universe, "binance", config.feed, 1)
    detector = DetectorCore(config, universe, markets, LiveClock(), "t")

    def push(events: list[BookEvent]) -> list[bool]:
        """Through the feed into the detector; the tradable flag after each event."""
        flags = []
        for event in events:
            feed.on_event(event, time.time_ns(), time.monotonic_ns())
            detector.on_batch(feed.take(0))
            flags.append(bool(detector.valid[0, 0]))
        return flags

    async def scenario(server: ExchangeServer, stream: CcxtBookStream) -> None:
        assert push(await collect(stream, is_book))[-1]
        server.drop_next_delta()
        broken = await collect(stream, lambda e: isinstance(e, BookInvalid))
        flags = push(broken)
        assert flags[-1] is False
        resynced = await collect(stream, is_book)
        flags = push(resynced)
        assert flags[:-1] == [False] * (len(flags) - 1) and flags[-1] is True
        top = resynced[-1]
        assert isinstance(top, BookSnapshot)
        assert np.array_equal(detector.bid_px[0, 0, : len(top.bids)], top.bids[:, 0])

    live("binance", scenario)


@pytest.mark.parametrize(
    ("venue", "expected"),
    [
        ("binance", (0.0001, 1.0, 1.0, 5.0)),
        ("okx", (0.1, 0.00000001, 0.00001, 0.0)),
    ],
)
def test_fees_and_precision_come_from_load_markets(
    venue: str, expected: tuple[float, float, float, float]
) -> None:
    from hft_ray.venues.ccxt_live import load_ccxt_markets

    async def main() -> MarketSpec:
        server = ExchangeServer(venue)  # type: ignore[arg-type]
        await server.start()
        try:
            specs = await load_ccxt_markets(venue, venue_config(server), [server.symbol])
            return specs[server.symbol]
        finally:
            await server.stop()

    spec = asyncio.run(main())
    assert (spec.tick, spec.lot, spec.min_amount, spec.min_notional) == expected
    assert spec.taker_fee > 0


def test_a_missing_market_is_a_config_error() -> None:
    from hft_ray.config import ConfigError
    from hft_ray.venues.ccxt_live import load_ccxt_markets

    async def main() -> None:
        server = ExchangeServer("okx")
        await server.start()
        try:
            with pytest.raises(ConfigError, match=r"venues\.okx: okx has no market DOGE/USDT"):
                await load_ccxt_markets("okx", venue_config(server), ["DOGE/USDT"])
        finally:
            await server.stop()

    asyncio.run(main())


@pytest.mark.parametrize("command", ["record", "run"])
def test_markets_that_cannot_load_are_one_line_naming_the_venue(
    command: str, tmp_path: Path
) -> None:
    """No traceback, no URL: the venue and the error's class, exit 3, before anything starts
    (a `record` config holding only its venue will do)."""
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{s.getsockname()[1]}"
    urls = {"api": {k: f"{dead}/api/v3" for k in ("public", "private", "v1")}}
    venue = {"kind": "ccxt", "urls": urls, "options": {"fetchMarkets": {"types": ["spot"]}}}
    if command == "record":
        data: dict[str, Any] = {"venues": {"binance": venue}}
        args = ["--exchange", "binance", "--symbols", "BTC/USDT", "--out", "x.jsonl"]
    else:
        data = default_config_dict()
        data["venues"]["binance"] = venue
        data["run"] = {"runs_dir": str(tmp_path / "runs")}
        args = ["--duration", "5"]
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(data))
    proc = subprocess.run(
        [sys.executable, "-m", "hft_ray.cli", command, *args, "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert proc.returncode == 3, proc.stderr[-2000:]
    assert proc.stderr.splitlines() == [
        "hft-ray: venue unavailable: venues.binance: cannot load markets from binance "
        "(ExchangeNotAvailable)"
    ]
    assert "127.0.0.1" not in proc.stdout + proc.stderr
    assert not (tmp_path / "runs").exists()


def test_the_feed_asking_for_a_resync_gets_a_fresh_snapshot() -> None:
    """What `CheckedRows` does with a book that keeps failing the checks: one invalidation,
    the connection started again, a new snapshot, books that follow the exchange again."""

    async def scenario(server: ExchangeServer, stream: CcxtBookStream) -> None:
        await collect(stream, is_book)
        requests = len(server.rest_requests)
        stream.resync(server.symbol)
        stream.resync(server.symbol)  # asked twice before it happens: one resubscribe
        events = await collect(stream, is_book)
        assert [e for e in events if isinstance(e, BookInvalid)] == [
            BookInvalid(server.symbol, RESYNC)
        ]
        assert stream.resubscribes == 1
        assert any("depth" in r for r in server.rest_requests[requests:])
        after = await collect(stream, lambda e: is_book(e) and e.seq > events[-1].seq)
        assert_matches_server(server, [e for e in events + after if isinstance(e, BookSnapshot)])

    live("binance", scenario, watch_depth=100)
