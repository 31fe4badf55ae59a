"""The local exchange server against ccxt's own Binance and OKX clients, and against the
project's own book rules: it must be faithful enough that ccxt syncs, detects faults and
resyncs exactly as it would against the real venue."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Awaitable, Callable
from typing import Any, cast

import aiohttp
import ccxt
import ccxt.pro
import pytest

from hft_ray.book import CHECKSUM, SEQUENCE_GAP, VENUE_BOOK_RULES, OrderBook, okx_checksum
from tests.exchange_server import (
    STALE_STATES,
    TOP,
    ExchangeServer,
    FrameFault,
    ServedBook,
    Venue,
)

WATCH_TIMEOUT_S = 5.0

Body = Callable[[ExchangeServer, Any], Awaitable[None]]


def run_with(venue: Venue, body: Body, **server_kwargs: Any) -> None:
    """Run `body(server, exchange)` with a started server and a ccxt.pro client pointed at it."""

    async def main() -> None:
        server = ExchangeServer(venue, **server_kwargs)
        exchange = None
        try:
            await server.start()
            exchange = getattr(ccxt.pro, venue)(
                {"urls": server.ccxt_urls(), "options": server.ccxt_options()}
            )
            await body(server, exchange)
        finally:
            if exchange is not None:
                await exchange.close()
            await server.stop()

    asyncio.run(main())


async def watch(server: ExchangeServer, exchange: Any) -> tuple[Any, tuple[float, ...]]:
    """One watch_order_book; returns (nonce, (bid px, bid sz, ask px, ask sz)) read at once,
    since ccxt's book object keeps changing as later frames arrive."""
    ob = await asyncio.wait_for(exchange.watch_order_book(server.symbol), WATCH_TIMEOUT_S)
    return ob_state(server, ob)


def ob_state(server: ExchangeServer, ob: Any) -> tuple[Any, tuple[float, ...]]:
    """ccxt's nonce and top of book, checked against the server's book at that point."""
    nonce, ts = ob["nonce"], ob["timestamp"]
    top = (*ob["bids"][0], *ob["asks"][0])
    served = server.book_at(nonce, ts)
    assert served is not None, f"server never had a book at nonce={nonce} ts={ts}"
    assert top == (*served.bids[0], *served.asks[0])
    return nonce, top


def test_urls_point_only_at_the_server() -> None:
    for venue in ("binance", "okx"):
        server = ExchangeServer(venue)
        server.port = 12345

        def strings(node: Any) -> list[str]:
            if isinstance(node, dict):
                return [s for v in node.values() for s in strings(v)]
            return [node] if isinstance(node, str) else []

        urls = strings(server.ccxt_urls())
        assert urls and all(u.split("/")[2] == "127.0.0.1:12345" for u in urls), urls


def test_binance_syncs_and_follows_the_stream_past_the_capture() -> None:
    async def body(server: ExchangeServer, ex: Any) -> None:
        await ex.load_markets()
        market = ex.market("NKN/USDT")
        assert market["spot"] and market["id"] == "NKNUSDT"
        assert market["precision"]["price"] == 0.0001 and market["precision"]["amount"] == 1
        assert market["limits"]["amount"]["min"] == 1 and market["limits"]["cost"]["min"] == 5
        nonces = []
        while server.synthetic_deltas < 20:  # through the captured deltas into synthetic ones
            nonce, _ = await watch(server, ex)
            nonces.append(nonce)
        assert nonces == sorted(set(nonces)) and len(nonces) > 5
        assert server.snapshots_served == 1 and server.subscriptions == 1
        assert server.rest_requests == [
            "/api/v3/exchangeInfo",
            "/api/v3/depth?symbol=NKNUSDT&limit=1000",
        ]

    run_with("binance", body, interval_s=0.003)


def test_binance_gap_raises_checksum_error_then_resyncs() -> None:
    async def body(server: ExchangeServer, ex: Any) -> None:
        first, _ = await watch(server, ex)
        subscriptions, snapshots = server.subscriptions, server.snapshots_served
        server.drop_next_delta()
        # frames already on the wire may still resolve a watch or two before the gap shows
        with pytest.raises(ccxt.ChecksumError):
            for _ in range(50):
                await watch(server, ex)
        assert any(not book.sent for book in server.sent_books)
        nonce, _ = await watch(server, ex)  # ccxt resubscribes and fetches a new snapshot
        assert nonce > first
        assert server.subscriptions == subscriptions + 1
        assert server.snapshots_served == snapshots + 1
        for _ in range(5):
            later, _ = await watch(server, ex)
            assert later > nonce
            nonce = later

    run_with("binance", body)


def test_okx_follows_snapshot_updates_and_the_resnapshot() -> None:
    async def body(server: ExchangeServer, ex: Any) -> None:
        await ex.load_markets()
        market = ex.market("BTC/USDT")
        assert market["spot"] and market["id"] == "BTC-USDT"
        assert market["precision"] == {"amount": 1e-8, "price": 0.1}
        assert market["limits"]["amount"]["min"] == 1e-5
        count = 0
        while server.synthetic_deltas < 20:  # captured updates, a fresh snapshot, synthetic
            await watch(server, ex)
            count += 1
        assert count > 5
        assert server.snapshots_served == 2 and server.subscriptions == 1
        assert server.rest_requests == ["/api/v5/public/instruments?instType=SPOT"]

    run_with("okx", body, interval_s=0.003)


def test_okx_ccxt_does_not_check_the_checksum() -> None:
    """ccxt 4.5.90 ignores OKX's `checksum`: a corrupt one (or a lost update) passes silently,
    so the project's own book must verify it (see the raw-protocol test below)."""

    async def body(server: ExchangeServer, ex: Any) -> None:
        await watch(server, ex)
        server.corrupt_next_checksum()
        for _ in range(10):
            await watch(server, ex)
        assert server.subscriptions == 1 and server.snapshots_served == 1

    run_with("okx", body)


def test_okx_with_seq_ids_lost_update_raises_invalid_nonce_then_resyncs() -> None:
    async def body(server: ExchangeServer, ex: Any) -> None:
        first, _ = await watch(server, ex)
        assert isinstance(first, int)
        subscriptions, snapshots = server.subscriptions, server.snapshots_served
        server.drop_next_delta()
        with pytest.raises(ccxt.InvalidNonce):
            for _ in range(50):
                await watch(server, ex)
        nonce, _ = await watch(server, ex)  # ccxt unsubscribes, subscribes, gets a snapshot
        assert nonce > first
        assert server.subscriptions == subscriptions + 1
        assert server.snapshots_served == snapshots + 1
        for _ in range(5):
            later, _ = await watch(server, ex)
            assert later > nonce
            nonce = later

    run_with("okx", body, okx_seq_ids=True)


@pytest.mark.parametrize("venue", ["binance", "okx"])
def test_disconnect_fails_a_pending_watch_and_the_next_watch_reconnects(venue: Venue) -> None:
    async def body(server: ExchangeServer, ex: Any) -> None:
        await watch(server, ex)
        subscriptions = server.subscriptions
        # a watch must be pending when the socket closes for ccxt to raise: hold data back so
        # the watch stays open, let frames already sent land, then close from the server side
        server.stall()
        await asyncio.sleep(0.2)
        pending = asyncio.ensure_future(ex.watch_order_book(server.symbol))
        await asyncio.sleep(0.1)
        assert not pending.done()
        await server.disconnect()
        with pytest.raises(ccxt.NetworkError):
            await asyncio.wait_for(pending, WATCH_TIMEOUT_S)
        server.resume()
        await watch(server, ex)
        assert server.subscriptions == subscriptions + 1
        # with no watch pending, a disconnect raises nothing: the next watch just reconnects
        await server.disconnect()
        await asyncio.sleep(0.1)
        await watch(server, ex)
        assert server.subscriptions == subscriptions + 2

    run_with(venue, body)


@pytest.mark.parametrize("venue", ["binance", "okx"])
def test_stall_holds_a_watch_until_resume(venue: Venue) -> None:
    async def body(server: ExchangeServer, ex: Any) -> None:
        await watch(server, ex)
        server.stall()
        await asyncio.sleep(0.2)  # frames already sent are consumed
        task = asyncio.ensure_future(ex.watch_order_book(server.symbol))
        done, _ = await asyncio.wait({task}, timeout=1.0)
        assert not done
        server.resume()
        ob = await asyncio.wait_for(task, WATCH_TIMEOUT_S)
        ob_state(server, ob)

    run_with(venue, body)


# -- the wire, checked by the project's own book rules (no ccxt) -------------------------------


def levels(raw: list[list[str]]) -> list[tuple[str, str]]:
    return [(lvl[0], lvl[1]) for lvl in raw]


def test_binance_stream_keeps_the_update_id_rule_and_a_drop_is_a_gap() -> None:
    async def main() -> None:
        server = ExchangeServer("binance", interval_s=0.001)
        await server.start()
        base = f"127.0.0.1:{server.port}"
        try:
            async with (
                aiohttp.ClientSession() as http,
                http.ws_connect(f"ws://{base}/ws/0") as ws,
            ):
                sub = {"method": "SUBSCRIBE", "params": ["nknusdt@depth@100ms"], "id": 7}
                await ws.send_json(sub)
                assert await ws.receive_json() == {"result": None, "id": 7}
                buffered = [await ws.receive_json() for _ in range(3)]
                url = f"http://{base}/api/v3/depth?symbol=NKNUSDT&limit=1000"
                async with http.get(url) as response:
                    snap = await response.json()
                book = OrderBook(VENUE_BOOK_RULES["binance"])
                book.apply_snapshot(
                    levels(snap["bids"]), levels(snap["asks"]), snap["lastUpdateId"], 0
                )

                def apply(d: dict[str, Any]) -> str:
                    assert d["e"] == "depthUpdate" and d["s"] == "NKNUSDT"
                    return book.apply_delta(
                        levels(d["b"]), levels(d["a"]), d["E"], first=d["U"], last=d["u"]
                    )

                for delta in buffered:
                    assert apply(delta) == ""
                while server.synthetic_deltas < 50:
                    assert apply(await ws.receive_json()) == ""
                assert book.bids.best() == server.book.bids[0][0]
                server.drop_next_delta()
                reasons = [apply(await ws.receive_json()) for _ in range(3)]
                assert SEQUENCE_GAP in reasons
        finally:
            await server.stop()

    asyncio.run(main())


def test_okx_stream_checksums_hold_and_faults_break_them() -> None:
    async def main() -> None:
        server = ExchangeServer("okx", interval_s=0.001)
        await server.start()
        arg = {"channel": "books", "instId": "BTC-USDT"}
        try:
            async with (
                aiohttp.ClientSession() as http,
                http.ws_connect(f"ws://127.0.0.1:{server.port}/ws/v5/public") as ws,
            ):
                book = OrderBook(VENUE_BOOK_RULES["okx"])
                snapshots = 0

                async def subscribe() -> None:
                    await ws.send_json({"op": "subscribe", "args": [arg]})
                    ack = await ws.receive_json()
                    assert ack["event"] == "subscribe" and ack["arg"] == arg and ack["connId"]

                async def apply_next() -> str:
                    nonlocal snapshots
                    msg = await ws.receive_json()
                    assert msg["arg"] == arg
                    d = msg["data"][0]
                    bids, asks = levels(d["bids"]), levels(d["asks"])
                    if msg["action"] == "snapshot":
                        snapshots += 1
                        return book.apply_snapshot(bids, asks, None, 0, d["checksum"])
                    return book.apply_delta(bids, asks, 0, checksum=d["checksum"])

                await ws.send_str("ping")
                assert (await ws.receive()).data == "pong"
                await subscribe()
                while server.synthetic_deltas < 30:
                    assert await apply_next() == ""
                assert snapshots == 2  # the captured one, and the one after the capture ran out
                server.corrupt_next_checksum()
                assert await apply_next() == CHECKSUM

                await ws.send_json({"op": "unsubscribe", "args": [arg]})
                while (msg := await ws.receive_json()).get("event") != "unsubscribe":
                    assert msg["action"] == "update"
                await subscribe()
                assert await apply_next() == ""  # the snapshot makes the book valid again
                assert await apply_next() == ""
                server.drop_next_delta()
                assert await apply_next() == CHECKSUM  # synthetic updates touch the top levels
        finally:
            await server.stop()

    asyncio.run(main())


# -- book-frame faults, as sent on the wire (no ccxt) ------------------------------------------


class RawStream:
    """A plain websocket subscribed to the server's book: delta frames as text or payload."""

    def __init__(self, server: ExchangeServer, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.server, self.ws = server, ws
        self.snapshot: dict[str, Any] | None = None  # okx: the last snapshot frame's data
        self.last = ""  # the last delta frame read

    async def subscribe(self) -> None:
        if self.server.venue == "binance":
            await self.ws.send_json({"method": "SUBSCRIBE", "params": [BINANCE_DEPTH], "id": 1})
        else:
            await self.ws.send_json({"op": "subscribe", "args": [OKX_ARG]})
        await self.ws.receive_json()  # the ack

    async def text(self) -> str:
        """The next delta frame's text (an okx snapshot frame is kept in `snapshot`)."""
        while True:
            text = (await asyncio.wait_for(self.ws.receive(), WATCH_TIMEOUT_S)).data
            assert isinstance(text, str)
            if self.server.venue == "okx" and '"action":"snapshot"' in text:
                self.snapshot = json.loads(text)["data"][0]
                continue
            self.last = text
            return text

    async def delta(self) -> dict[str, Any]:
        body = json.loads(await self.text())
        return body if self.server.venue == "binance" else body["data"][0]

    async def drain(self) -> str:
        """Stall the server and read until the wire is quiet; the last frame read."""
        self.server.stall()
        with contextlib.suppress(TimeoutError):
            while True:
                await asyncio.wait_for(self.text(), 0.2)
        return self.last


BINANCE_DEPTH = "nknusdt@depth@100ms"
OKX_ARG = {"channel": "books", "instId": "BTC-USDT"}
RawBody = Callable[[ExchangeServer, RawStream, aiohttp.ClientSession], Awaitable[None]]


def run_raw(venue: Venue, body: RawBody) -> None:
    """Run `body` with a started server (OKX with seqIds) and a subscribed plain websocket."""

    async def main() -> None:
        server = ExchangeServer(venue, interval_s=0.002, okx_seq_ids=True)
        await server.start()
        path = "/ws/0" if venue == "binance" else "/ws/v5/public"
        try:
            async with (
                aiohttp.ClientSession() as http,
                http.ws_connect(f"ws://127.0.0.1:{server.port}{path}") as ws,
            ):
                stream = RawStream(server, ws)
                await stream.subscribe()
                for _ in range(3):
                    await stream.delta()
                await body(server, stream, http)
        finally:
            await server.stop()

    asyncio.run(main())


def sides(venue: Venue, d: dict[str, Any]) -> tuple[list[list[str]], list[list[str]]]:
    return (d["b"], d["a"]) if venue == "binance" else (d["bids"], d["asks"])


def seq_of(venue: Venue, d: dict[str, Any]) -> int:
    return int(d["u"] if venue == "binance" else d["seqId"])


VENUES = ["binance", "okx"]
BAD_LEVELS: list[tuple[FrameFault, Callable[[list[str], ServedBook], bool], bool]] = [
    # (fault, is the bad level, on the bid side)
    ("negative_ask", lambda lv, b: float(lv[0]) == -b.asks[0][0], False),
    ("negative_bid", lambda lv, b: float(lv[0]) == b.bids[0][0] and float(lv[1]) < 0, True),
    ("nan_bid", lambda lv, b: lv[0] == "NaN", True),
    ("non_numeric_qty", lambda lv, b: lv[1] == "abc" and float(lv[0]) == b.bids[0][0], True),
]


@pytest.mark.parametrize("venue", VENUES)
@pytest.mark.parametrize(("fault", "is_bad", "on_bids"), BAD_LEVELS, ids=[f[0] for f in BAD_LEVELS])
def test_a_bad_level_rides_on_one_real_delta_and_the_truth_ignores_it(
    venue: Venue, fault: FrameFault, is_bad: Callable[[list[str], ServedBook], bool], on_bids: bool
) -> None:
    async def body(server: ExchangeServer, stream: RawStream, _: Any) -> None:
        server.corrupt_next_frame(fault)
        read = [await stream.delta() for _ in range(20)]
        (kind, state) = server.faults_sent[0]
        (d,) = [d for d in read if seq_of(venue, d) == state.seq]
        bids, asks = sides(venue, d)
        bad = bids[-1] if on_bids else asks[-1]  # appended after the delta's own levels
        assert kind == fault and is_bad(bad, state)
        assert all(px > 0 and qty > 0 for px, qty in (*state.bids, *state.asks))
        for _ in range(5):  # only that frame carries it
            later = await stream.delta()
            assert not any(
                is_bad(lv, state) for lv in (*sides(venue, later)[0], *sides(venue, later)[1])
            )

    run_raw(venue, body)


@pytest.mark.parametrize("venue", VENUES)
def test_a_truncated_frame_is_cut_json_and_the_next_one_is_whole(venue: Venue) -> None:
    async def body(server: ExchangeServer, stream: RawStream, _: Any) -> None:
        server.corrupt_next_frame("truncated")
        texts = [await stream.text() for _ in range(60)]
        cut = [t for t in texts if not t.endswith("}")]
        assert len(cut) == 1 and server.faults_sent[0][0] == "truncated"
        with pytest.raises(json.JSONDecodeError):
            json.loads(cut[0])
        assert json.loads(texts[texts.index(cut[0]) + 1])

    run_raw(venue, body)


@pytest.mark.parametrize("venue", VENUES)
def test_duplicate_sends_the_last_delta_again(venue: Venue) -> None:
    async def body(server: ExchangeServer, stream: RawStream, _: Any) -> None:
        last = await stream.drain()
        books = len(server.sent_books)
        server.corrupt_next_frame("duplicate")
        server.resume()
        assert await stream.text() == last
        assert server.faults_sent == [("duplicate", server.sent_books[books - 1])]
        assert await stream.text() != last

    run_raw(venue, body)


@pytest.mark.parametrize("venue", VENUES)
def test_reorder_swaps_the_next_two_deltas(venue: Venue) -> None:
    async def body(server: ExchangeServer, stream: RawStream, _: Any) -> None:
        await stream.drain()
        seq = server.book.seq
        assert seq is not None
        server.corrupt_next_frame("reorder")
        server.resume()
        second, first = await stream.delta(), await stream.delta()
        if venue == "binance":
            assert first["U"] == seq + 1 and second["U"] == first["u"] + 1
        else:
            assert first["prevSeqId"] == seq and second["prevSeqId"] == first["seqId"]
        assert server.faults_sent == [("reorder", server.book_at(seq_of(venue, first)))]
        assert seq_of(venue, await stream.delta()) > seq_of(venue, second)  # in order again

    run_raw(venue, body)


def test_binance_stale_snapshot_is_older_than_every_delta_streamed() -> None:
    async def body(server: ExchangeServer, stream: RawStream, http: aiohttp.ClientSession) -> None:
        for _ in range(2 * STALE_STATES):  # the book moves; then a client subscribes anew
            await stream.delta()
        await stream.ws.send_json({"method": "UNSUBSCRIBE", "params": [BINANCE_DEPTH], "id": 2})
        await stream.drain()
        server.resume()
        await stream.subscribe()
        buffered = [await stream.delta() for _ in range(3)]
        server.stale_next_snapshot()
        url = f"http://127.0.0.1:{server.port}/api/v3/depth?symbol=NKNUSDT&limit=5000"
        async with http.get(url) as response:
            snap = await response.json()
        last_id = snap["lastUpdateId"]
        assert last_id + 1 < buffered[0]["U"]  # no buffered delta bridges it
        state = server.book_at(last_id)
        assert state is not None and server.faults_sent == [("stale_snapshot", state)]
        top = [(float(p), float(q)) for p, q in snap["bids"][:TOP]]
        assert tuple(top) == state.bids
        assert tuple((float(p), float(q)) for p, q in snap["asks"][:TOP]) == state.asks
        async with http.get(url) as response:  # only the next snapshot is stale
            assert (await response.json())["lastUpdateId"] >= buffered[-1]["u"]

    run_raw("binance", body)


def test_okx_stale_snapshot_frame_is_an_earlier_book_the_updates_do_not_link_to() -> None:
    async def body(server: ExchangeServer, stream: RawStream, _: Any) -> None:
        for _ in range(2 * STALE_STATES):
            await stream.delta()
        await stream.ws.send_json({"op": "unsubscribe", "args": [OKX_ARG]})
        await stream.drain()
        now = server.book.seq
        server.stale_next_snapshot()
        server.resume()
        await stream.subscribe()
        update = await stream.delta()
        snap = stream.snapshot
        assert snap is not None and snap["seqId"] < now and update["prevSeqId"] == now
        state = server.book_at(snap["seqId"])
        assert state is not None and server.faults_sent == [("stale_snapshot", state)]
        assert tuple((float(p), float(q)) for p, q, *_ in snap["bids"][:TOP]) == state.bids
        assert (
            okx_checksum(levels(snap["bids"][:25]), levels(snap["asks"][:25])) == snap["checksum"]
        )

    run_raw("okx", body)


def test_fault_requests_are_checked() -> None:
    server = ExchangeServer("binance")
    with pytest.raises(ValueError, match="unknown frame fault 'zero'"):
        server.corrupt_next_frame(cast(Any, "zero"))
    with pytest.raises(ValueError, match="has not moved yet"):
        server.stale_next_snapshot()
