"""`hft-ray record` then `hft-ray replay`: the recording holds what a run's feed would pass on,
and its outages with their reasons."""

from __future__ import annotations

import asyncio
import gzip
import io
import json
from pathlib import Path

import pytest

from hft_ray.book import SEQUENCE_GAP
from hft_ray.clock import LiveClock
from hft_ray.config import RecordConfig
from hft_ray.feed.checks import MALFORMED_BOOK, NONCE_BACKWARDS
from hft_ray.replay_run import RecordCounts, record
from hft_ray.types import BAD_LEVEL, BookInvalid
from hft_ray.venues.ccxt_live import OUT_OF_SYNC, STALE_SNAPSHOT, STALLED, CcxtBookStream
from hft_ray.venues.replay import read_files
from tests.exchange_server import ExchangeServer
from tests.test_ccxt_live import assert_matches_server, venue_config

FIELDS = ("flags", "n_bids", "n_asks", "seq", "bid_px", "bid_qty", "ask_px", "ask_qty")


def raise_it(err: Exception) -> None:
    raise err


def test_a_recording_holds_only_checked_books_and_replays_its_outages(tmp_path: Path) -> None:
    """`record` through ccxt's real binance class: every line is strict JSON, every book one
    a run's feed would pass (and the exchange's book at its nonce), a gap one invalidation line
    with its reason, our receipt stamps in order; replay reads the reason back."""
    out = tmp_path / "binance.jsonl.gz"
    status = io.StringIO()

    async def scenario() -> tuple[RecordCounts, ExchangeServer]:
        server = ExchangeServer("binance")
        await server.start()
        stream = CcxtBookStream("binance", venue_config(server), [server.symbol], 10, LiveClock())
        asyncio.get_running_loop().call_later(1.0, server.drop_next_delta)  # an outage
        try:
            counts = await record(
                RecordConfig(),
                "binance",
                [server.symbol],
                out,
                3.0,
                10,
                status=status,
                stream=stream,
                status_every_s=1.0,
            )
        finally:
            await server.stop()
        return counts, server

    counts, server = asyncio.run(scenario())
    with gzip.open(out, "rt") as f:
        lines = [json.loads(x, parse_constant=raise_it) for x in f]  # NaN is not JSON
    reasons = [line["invalid"] for line in lines if "invalid" in line]
    assert reasons == [OUT_OF_SYNC]  # one line for the episode, not one per failed watch
    assert counts.books == len(lines) - 1 > 50 and counts.invalid == {OUT_OF_SYNC: 1}
    received = [line["received_ns"] for line in lines]
    assert received == sorted(received)
    recorded = list(read_files([out], raise_it))
    assert_matches_server(server, [r.book for r in recorded if not r.invalid])
    replayed = [r.event for r in recorded if isinstance(r.event, BookInvalid)]
    assert replayed == [BookInvalid(server.symbol, OUT_OF_SYNC)]
    shown = status.getvalue().splitlines()
    assert len(shown) >= 3 and all(x.startswith("record binance: ") for x in shown[:-1])
    assert shown[-1] == f"recorded to {out}: {counts.line()}"
    assert f"1 invalid ({OUT_OF_SYNC} 1)" in shown[-1]


#: What a bad frame of each kind leaves in a recording of each venue: the reasons of its
#: invalidation lines (one per outage; a set: reasons from it, as the race of two checks goes).
BAD_FRAMES: dict[tuple[str, str], list[str] | set[str]] = {
    ("binance", "negative_ask"): [MALFORMED_BOOK],  # hft_ray's raw check: not a price
    ("binance", "negative_bid"): [MALFORMED_BOOK],
    ("binance", "nan_bid"): [MALFORMED_BOOK],
    ("binance", "non_numeric_qty"): [MALFORMED_BOOK],  # ccxt would take "abc" as a delete
    ("binance", "truncated"): [STALLED],  # ccxt's reader dies on text that is not JSON
    ("binance", "duplicate"): [],  # ccxt drops an update it has applied: nothing breaks
    ("binance", "reorder"): [OUT_OF_SYNC],
    ("binance", "stale_snapshot"): [OUT_OF_SYNC],  # the gap that fetches the stale snapshot
    ("okx", "negative_ask"): [BAD_LEVEL],
    ("okx", "negative_bid"): [BAD_LEVEL],
    ("okx", "nan_bid"): [BAD_LEVEL],
    ("okx", "non_numeric_qty"): [MALFORMED_BOOK],
    ("okx", "truncated"): [STALLED],
    ("okx", "duplicate"): [SEQUENCE_GAP],  # its prevSeqId is no longer the last seqId
    ("okx", "reorder"): [SEQUENCE_GAP],
    # the gap that resubscribes; the stale snapshot is refused by the gate if ccxt hands it out
    # before the raw check finds the next update does not follow it
    ("okx", "stale_snapshot"): {SEQUENCE_GAP, NONCE_BACKWARDS},
}


@pytest.mark.parametrize(("venue", "fault"), list(BAD_FRAMES))
def test_bad_frames_never_reach_a_recording_as_tradable(
    venue: str, fault: str, tmp_path: Path
) -> None:
    """ccxt's real binance and okx classes against frames that are negative, NaN,
    non-numeric, truncated, duplicated, reordered, and a snapshot older than the stream:
    every book recorded is the exchange's book at its moment and never older than one before
    it, each outage has its reason, the book is resynced after it, and replay reads the same
    outage back."""
    out = tmp_path / "books.jsonl"

    async def scenario() -> tuple[ExchangeServer, CcxtBookStream]:
        server = (
            ExchangeServer(venue, okx_seq_ids=True) if venue == "okx" else ExchangeServer(venue)
        )  # type: ignore[arg-type]
        await server.start()
        # a shallow snapshot: ccxt's rate limiter holds one of 5000 levels (weight 250) ~2.5 s
        config = venue_config(server, watch_depth=100, stall_timeout_s=0.8)
        stream = CcxtBookStream(venue, config, [server.symbol], 10, LiveClock())

        def inject() -> None:
            if fault == "stale_snapshot":
                server.stale_next_snapshot()
                server.drop_next_delta()
            else:
                server.corrupt_next_frame(fault)  # type: ignore[arg-type]

        asyncio.get_running_loop().call_later(0.6, inject)
        try:
            await record(
                RecordConfig(), venue, [server.symbol], out, 2.5, 10, io.StringIO(), stream
            )
        finally:
            await server.stop()
        return server, stream

    server, stream = asyncio.run(scenario())
    lines = [json.loads(x, parse_constant=raise_it) for x in out.read_text().splitlines()]
    reasons = [line["invalid"] for line in lines if "invalid" in line]
    expected = BAD_FRAMES[(venue, fault)]
    if STALLED not in expected:  # a busy machine may leave the stream silent past the watchdog
        reasons = [r for r in reasons if r != STALLED]
    if isinstance(expected, set):  # the first outage is always there, the rest by timing
        assert reasons and set(reasons) <= expected, stream.errors
    else:
        assert reasons == expected, stream.errors
    recorded = list(read_files([out], raise_it))
    books = [r.book for r in recorded if not r.invalid]
    assert_matches_server(server, books)
    nonces = [b.seq for b in books]
    assert nonces == sorted(nonces)  # no stale snapshot passed as the book
    replayed = [r.invalid for r in recorded if r.invalid and r.invalid in reasons]
    assert replayed == reasons  # replay: the same outage
    if reasons:
        last_outage = max(i for i, line in enumerate(lines) if "invalid" in line)
        assert len(lines) - last_outage > 5  # resynced and recording books again
    if (venue, fault) == ("binance", "stale_snapshot"):
        assert stream.errors.get(STALE_SNAPSHOT) == 1, stream.errors
