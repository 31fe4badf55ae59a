"""The local exchange server against ccxt's own Binance and OKX clients, and against the
project's own book rules: it must be faithful enough that ccxt syncs, detects faults and
resyncs exactly as it would against the real venue."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import ccxt
import ccxt.pro
import pytest

from hft_ray.book import CHECKSUM, SEQUENCE_GAP, VENUE_BOOK_RULES, OrderBook
from tests.exchange_server import ExchangeServer, Venue

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
