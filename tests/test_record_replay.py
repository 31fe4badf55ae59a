"""`hft-ray record` then `hft-ray replay`: the replay sees the book states the live feed saw,
outages included."""

from __future__ import annotations

import asyncio
import io
import time
from pathlib import Path

import numpy as np

from hft_ray.clock import LiveClock
from hft_ray.config import FeedConfig, parse_config
from hft_ray.feed.core import FeedCore
from hft_ray.replay_run import record
from hft_ray.types import BookEvent, BookInvalid, Universe
from hft_ray.venues.ccxt_live import CcxtBookStream
from hft_ray.venues.replay import read_files
from tests.conftest import default_config_dict
from tests.exchange_server import ExchangeServer
from tests.test_ccxt_live import venue_config

FIELDS = ("flags", "n_bids", "n_asks", "seq", "bid_px", "bid_qty", "ask_px", "ask_qty")


def raise_it(err: Exception) -> None:
    raise err


def rows(events: list[BookEvent], universe: Universe) -> np.ndarray:
    """The rows a feed makes of these events (one detector, batches large enough)."""
    feed = FeedCore(universe, "binance", FeedConfig(depth=10, batch_max_rows=100_000), 1)
    for event in events:
        feed.on_event(event, 0, 0)
    return feed.take(0)


def test_replay_reproduces_the_recorded_live_books(tmp_path: Path) -> None:
    out = tmp_path / "binance.jsonl.gz"
    live: list[BookEvent] = []

    async def scenario() -> None:
        server = ExchangeServer("binance")
        await server.start()
        stream = CcxtBookStream("binance", venue_config(server), [server.symbol], 10, LiveClock())
        loop = asyncio.get_running_loop()
        loop.call_later(1.0, server.drop_next_delta)  # an outage in the middle of the recording
        try:
            data = default_config_dict()
            await record(
                parse_config(data),
                "binance",
                [server.symbol],
                out,
                3.0,
                10,
                status=io.StringIO(),
                observe=live.append,
                stream=stream,
            )
        finally:
            await server.stop()

    t0 = time.monotonic()
    asyncio.run(scenario())
    assert time.monotonic() - t0 < 30
    universe = Universe(("binance",), ("NKN/USDT",))
    recorded = [r.book for r in read_files([out], raise_it)]
    assert any(isinstance(e, BookInvalid) for e in live) and len(live) > 50
    live_rows, replay_rows = rows(live, universe), rows(recorded, universe)
    assert len(live_rows) == len(replay_rows) == len(live)
    for field in FIELDS:
        assert np.array_equal(live_rows[field], replay_rows[field], equal_nan=True), field
    assert (live_rows["flags"] == 0).sum() >= 1  # the outage replays as an untradable book
