"""Each added venue's published book rule, on messages shaped as the venue sends them (field
names and string/number types from its docs and ccxt's parsers), through ccxt.pro's real
exchange class and `Client`, offline: in order the book is right; a gap, a repeat and a
reordered message invalidate it with the reason; a new snapshot makes it valid again.

Binance futures: ccxt's own `pu` check, whose `ChecksumError` the feed turns into an
invalidation (`CcxtBookStream._failure`). The others: hft_ray's raw check, as
`CcxtBookStream._install_raw_check` wires it before ccxt's handler.
"""

from __future__ import annotations

import asyncio
import copy
from collections.abc import Callable
from typing import Any

import ccxt.pro
import pytest
from ccxt.base.errors import ChecksumError

from hft_ray.book import SEQUENCE_GAP, VENUE_BOOK_RULES, OrderBook
from hft_ray.feed.checks import MALFORMED_BOOK
from hft_ray.types import BAD_LEVEL
from hft_ray.venues.ccxt_live import OUT_OF_SYNC, CcxtBookStream
from hft_ray.venues.integrity import RAW_BOOK_CHECKS, BinanceDepthCheck


def market(market_id: str, symbol: str, kind: str) -> dict[str, Any]:
    base, quote = symbol.split(":")[0].split("/")
    contract = kind != "spot"
    return {
        "id": market_id,
        "symbol": symbol,
        "base": base,
        "quote": quote,
        "baseId": base,
        "quoteId": quote,
        "settle": symbol.split(":")[1] if contract else None,
        "type": kind,
        "spot": not contract,
        "swap": contract,
        "future": False,
        "option": False,
        "contract": contract,
        "linear": (quote in symbol.split(":")[-1]) if contract else None,
        "inverse": (quote not in symbol.split(":")[-1]) if contract else None,
        "active": True,
        "precision": {"price": 0.01, "amount": 0.001},
        "limits": {},
        "info": {},
    }


def run(body: Callable[[], Any]) -> None:
    """Run `body` inside an event loop, as ccxt's clients need one."""

    async def main() -> None:
        await body()

    asyncio.run(main())


def tops(book: Any, n: int = 2) -> tuple[list[list[float]], list[list[float]]]:
    """The best `n` levels of a ccxt book (price, size)."""
    return [lv[:2] for lv in book["bids"][:n]], [lv[:2] for lv in book["asks"][:n]]


class Venue:
    """A ccxt.pro exchange with one market, its raw check installed as the feed installs it."""

    def __init__(self, exchange: Any, url: str) -> None:
        self.exchange = exchange
        self.client = exchange.client(url)
        method, make = RAW_BOOK_CHECKS[exchange.id]
        self.check = make(exchange)
        self.handler = getattr(exchange, method)
        self.broken: list[tuple[str, str]] = []

    def send(self, message: dict[str, Any]) -> None:
        """What `CcxtBookStream._install_raw_check`'s wrapper does with one raw message."""
        message = copy.deepcopy(message)  # ccxt may keep what it is given
        broken = self.check.observe(message)
        if broken is not None:
            self.broken.append(broken)
        self.handler(self.client, message)

    def reasons(self) -> list[str]:
        reasons = [r for _, r in self.broken]
        self.broken.clear()
        return reasons

    async def close(self) -> None:
        await self.exchange.close()


# -- Binance USD-M and COIN-M futures: ccxt checks `pu` ----------------------------------------


def depth_update(market_id: str, first: int, last: int, prev: int, bids: list, asks: list) -> dict:
    return {
        "e": "depthUpdate",
        "E": 1_700_000_000_000 + last,
        "T": 1_700_000_000_000 + last,
        "s": market_id,
        "U": first,
        "u": last,
        "pu": prev,
        "b": bids,
        "a": asks,
    }


@pytest.mark.parametrize(
    ("exchange_id", "market_id", "symbol", "url"),
    [
        ("binanceusdm", "BTCUSDT", "BTC/USDT:USDT", "linear"),
        ("binancecoinm", "BTCUSD_PERP", "BTC/USD:BTC", "inverse"),
    ],
)
def test_binance_futures_pu_link_is_ccxts_and_its_error_invalidates(
    exchange_id: str, market_id: str, symbol: str, url: str
) -> None:
    assert RAW_BOOK_CHECKS[exchange_id][1] is BinanceDepthCheck  # links: ccxt's own check

    async def body() -> None:
        e = getattr(ccxt.pro, exchange_id)()
        e.set_markets([market(market_id, symbol, "swap")])
        client = e.client(e.urls["api"]["ws"][url])
        ours = OrderBook(VENUE_BOOK_RULES[exchange_id])
        snapshot = {"bids": [["100.0", "1.0"], ["99.9", "2.0"]], "asks": [["100.1", "3.0"]]}
        m1 = depth_update(market_id, 990, 1005, 989, [["100.0", "1.5"]], [["100.2", "4.0"]])
        m2 = depth_update(market_id, 1006, 1010, 1005, [["99.9", "0"]], [["100.1", "0"]])
        m3 = depth_update(market_id, 1011, 1012, 1010, [["99.8", "5.0"]], [])
        m4 = depth_update(market_id, 1013, 1020, 1012, [], [["100.3", "1.0"]])

        def resync() -> None:  # what ccxt's fetch_order_book_snapshot leaves: lastUpdateId 1000
            parsed = e.parse_order_book(snapshot, symbol)  # floats, as fetchOrderBook gives
            book = e.order_book({**parsed, "nonce": 1000})
            e.orderbooks[symbol] = book
            ours.apply_snapshot(snapshot["bids"], snapshot["asks"], 1000, 0)

        def send(m: dict) -> tuple[asyncio.Future, str]:
            future = client.future("orderbook::" + symbol)
            e.handle_order_book(client, copy.deepcopy(m))
            reason = ours.apply_delta(m["b"], m["a"], 0, first=m["U"], last=m["u"], prev=m["pu"])
            return future, reason

        resync()
        for m in (m1, m2):
            future, reason = send(m)
            assert future.done() and not future.exception() and reason == ""
        top = ([[100.0, 1.5]], [[100.2, 4.0]])
        assert tops(e.orderbooks[symbol]) == top and e.orderbooks[symbol]["nonce"] == 1010
        assert ours.top(1)[0].tolist() == [[100.0, 1.5]]

        # A repeat of the last event: ccxt applies it again (U <= nonce), harmlessly, since
        # Binance sends absolute sizes; the documented rule (pu = previous u) calls it a gap.
        future, reason = send(m2)
        assert not future.exception() and tops(e.orderbooks[symbol]) == top
        assert reason == SEQUENCE_GAP

        for broken in ([m1, m2, m4], [m1, m3]):  # a gap (m3 lost); m3 before m2
            resync()
            for m in broken[:-1]:
                send(m)
            future, reason = send(broken[-1])
            assert isinstance(future.exception(), ChecksumError)
            assert CcxtBookStream._failure(future) == OUT_OF_SYNC
            assert symbol not in e.orderbooks and reason == SEQUENCE_GAP  # ccxt dropped it

        resync()  # a new snapshot: valid again
        for m in (m1, m2, m3):
            future, reason = send(m)
            assert not future.exception() and reason == ""
        assert tops(e.orderbooks[symbol], 1) == ([[100.0, 1.5]], [[100.2, 4.0]])
        assert e.orderbooks[symbol]["bids"][1][:2] == [99.8, 5.0]
        await e.close()

    run(body)


# -- Bybit v5: `u` + 1, `u` = 1 or a snapshot resets -------------------------------------------

BYBIT_SNAPSHOT = {
    "topic": "orderbook.50.BTCUSDT",
    "type": "snapshot",
    "ts": 1672304484978,
    "data": {
        "s": "BTCUSDT",
        "b": [["16493.50", "0.006"], ["16493.00", "0.100"]],
        "a": [["16611.00", "0.029"], ["16612.00", "0.213"]],
        "u": 18521288,
        "seq": 7961638724,
    },
    "cts": 1672304484976,
}


def bybit_delta(u: int, bids: list, asks: list, kind: str = "delta") -> dict:
    return {
        "topic": "orderbook.50.BTCUSDT",
        "type": kind,
        "ts": 1672304484978 + u % 1000,
        "data": {"s": "BTCUSDT", "b": bids, "a": asks, "u": u, "seq": 7961638724 + u},
        "cts": 1672304484976,
    }


def test_bybit_update_ids_are_checked_on_the_raw_messages() -> None:
    async def body() -> None:
        e = ccxt.pro.bybit({"options": {"defaultType": "spot"}})
        e.set_markets([market("BTCUSDT", "BTC/USDT", "spot")])
        v = Venue(e, "wss://stream.bybit.com/v5/public/spot")
        u = 18521288
        d1 = bybit_delta(u + 1, [["16493.50", "0"]], [["16610.00", "0.5"]])
        d2 = bybit_delta(u + 2, [["16494.00", "1.2"]], [])
        d3 = bybit_delta(u + 3, [], [["16610.00", "0"]])
        v.send(BYBIT_SNAPSHOT)
        v.send(d1)
        v.send(d2)
        assert v.reasons() == [] and v.check.valid("BTC/USDT")
        assert tops(e.orderbooks["BTC/USDT"]) == (
            [[16494.0, 1.2], [16493.0, 0.1]],
            [[16610.0, 0.5], [16611.0, 0.029]],
        )
        for wrong in ([d2], [bybit_delta(u + 4, [], [])]):  # a repeat; a gap
            v.send(wrong[0])
            assert v.reasons() == [SEQUENCE_GAP] and not v.check.valid("BTC/USDT")
            v.send(BYBIT_SNAPSHOT)
            v.send(d1)
            v.send(d2)
            assert v.check.valid("BTC/USDT")
        v.send(bybit_delta(u + 4, [], []))  # reordered: u+4 before u+3
        v.send(d3)
        assert v.reasons() == [SEQUENCE_GAP, SEQUENCE_GAP]
        # `u` = 1: Bybit restarted; the message is the whole book, whatever its type
        restart = bybit_delta(1, [["16400.00", "1.0"]], [["16401.00", "2.0"]])
        v.send(restart)
        v.send(bybit_delta(2, [["16399.00", "3.0"]], []))
        assert v.reasons() == [] and v.check.valid("BTC/USDT")
        assert tops(e.orderbooks["BTC/USDT"], 5) == (
            [[16400.0, 1.0], [16399.0, 3.0]],
            [[16401.0, 2.0]],
        )  # nothing left of the book before the restart
        v.send(bybit_delta(3, [["16399.00", "abc"]], []))
        assert v.reasons() == [MALFORMED_BOOK]
        await v.close()

    run(body)


# -- KuCoin spot: sequenceStart <= previous sequenceEnd + 1 < sequenceEnd + 1 ------------------


def kucoin_delta(start: int, end: int, bids: list, asks: list) -> dict:
    return {
        "type": "message",
        "topic": "/market/level2:BTC-USDT",
        "subject": "trade.l2update",
        "data": {
            "changes": {"asks": asks, "bids": bids},
            "sequenceEnd": end,
            "sequenceStart": start,
            "symbol": "BTC-USDT",
            "time": 1709000000000 + end,
        },
    }


def test_kucoin_sequence_links_are_checked_on_the_raw_messages() -> None:
    async def body() -> None:
        e = ccxt.pro.kucoin()
        e.set_markets([market("BTC-USDT", "BTC/USDT", "spot")])
        v = Venue(e, "wss://x-push-spot.kucoin.com")
        rest = {  # fetchOrderBook's parse of GET /api/v1/market/orderbook/level2 (sequence 1000)
            "bids": [[100.0, 1.0], [99.0, 2.0]],
            "asks": [[101.0, 1.0], [102.0, 2.0]],
            "nonce": 1000,
        }
        d1 = kucoin_delta(999, 1001, [["100", "1.5", "1001"]], [])
        d2 = kucoin_delta(1002, 1003, [], [["101", "0", "1002"], ["100.5", "0.7", "1003"]])
        d3 = kucoin_delta(1004, 1004, [["0", "0", "1004"]], [])  # a price of "0": sequence only
        d4 = kucoin_delta(1005, 1006, [["99", "0", "1006"]], [])

        def subscribe_and_sync(buffered: list[dict]) -> None:
            """A new subscription (ccxt has no book), then ccxt's `load_order_book` steps
            with the REST snapshot in place of the request."""
            e.orderbooks["BTC/USDT"] = e.order_book()
            for m in buffered:
                v.send(m)
            stored = e.orderbooks["BTC/USDT"]
            cache = stored.cache
            index = e.get_cache_index(rest, cache)
            assert index >= 0
            stored.reset(copy.deepcopy(rest))
            e.handle_book_deltas(stored, cache[index:])
            cache.clear()

        subscribe_and_sync([d1])
        v.send(d2)
        v.send(d3)
        assert v.reasons() == [] and v.check.valid("BTC/USDT")
        assert tops(e.orderbooks["BTC/USDT"]) == (
            [[100.0, 1.5], [99.0, 2.0]],
            [[100.5, 0.7], [102.0, 2.0]],
        )
        for wrong in (d3, kucoin_delta(1007, 1008, [], [])):  # a repeat; a gap
            v.send(wrong)
            assert v.reasons() == [SEQUENCE_GAP] and not v.check.valid("BTC/USDT")
            subscribe_and_sync([d1])  # resubscribed: a new chain, ccxt resynced
            v.send(d2)
            v.send(d3)
            assert v.check.valid("BTC/USDT")
        v.send(d4)  # reordered: d4 lost its place, then the one before arrives
        v.send(d3)
        assert v.reasons() == [SEQUENCE_GAP]
        subscribe_and_sync([d1, d2])
        assert v.reasons() == [] and v.check.valid("BTC/USDT")
        bad = kucoin_delta(1004, 1004, [["abc", "1", "1004"]], [])  # ccxt's handler raises
        assert v.check.observe(bad) == ("BTC/USDT", MALFORMED_BOOK)
        await v.close()

    run(body)


# -- Coinbase Advanced Trade: `sequence_num` + 1 per message of the connection -----------------


def coinbase(seq: int, channel: str = "l2_data", kind: str = "update", updates: Any = ()) -> dict:
    events: list[dict] = []
    if channel == "l2_data":
        events = [{"type": kind, "product_id": "BTC-USD", "updates": list(updates)}]
    elif channel == "heartbeats":
        events = [{"current_time": "2023-06-23 20:31:56 +0000 UTC", "heartbeat_counter": "3"}]
    return {
        "channel": channel,
        "client_id": "",
        "timestamp": "2023-02-09T20:32:50.714964855Z",
        "sequence_num": seq,
        "events": events,
    }


def level(side: str, price: str, qty: str) -> dict:
    return {
        "side": side,
        "event_time": "2023-02-09T20:32:50.714964855Z",
        "price_level": price,
        "new_quantity": qty,
    }


def test_coinbase_connection_sequence_is_checked_on_every_message() -> None:
    async def body() -> None:
        e = ccxt.pro.coinbase()
        e.set_markets([market("BTC-USD", "BTC/USD", "spot")])
        v = Venue(e, e.urls["api"]["ws"])
        book = [
            level("bid", "21921.74", "0.06317902"),
            level("bid", "21921.3", "0.02"),
            level("offer", "21921.75", "0.5"),
            level("offer", "21922.1", "1.25"),
        ]

        def snapshot(seq: int) -> None:
            v.send(coinbase(seq, kind="snapshot", updates=book))

        snapshot(0)
        v.send(coinbase(1, updates=[level("bid", "21921.74", "0")]))
        v.send(coinbase(2, "heartbeats"))  # another channel counts too
        v.send(coinbase(3, updates=[level("offer", "21921.5", "0.3")]))
        assert v.reasons() == [] and v.check.valid("BTC/USD")
        assert tops(e.orderbooks["BTC/USD"]) == (
            [[21921.3, 0.02]],
            [[21921.5, 0.3], [21921.75, 0.5]],
        )
        for wrong in (3, 5):  # a repeat; a gap
            v.send(coinbase(wrong, updates=[]))
            assert v.reasons() == [SEQUENCE_GAP] and not v.check.valid("BTC/USD")
            snapshot(0)  # resubscribed on a new connection
            v.send(coinbase(1, "heartbeats"))
            v.send(coinbase(2, updates=[]))
            v.send(coinbase(3, updates=[]))
            assert v.reasons() == [] and v.check.valid("BTC/USD")
        v.send(coinbase(5, "heartbeats"))  # reordered: 5 before 4, on another channel
        assert v.reasons() == [SEQUENCE_GAP] and not v.check.valid("BTC/USD")
        v.send(coinbase(4, updates=[]))
        assert v.reasons() == [SEQUENCE_GAP]
        snapshot(9)  # a snapshot after the gap restarts the count
        v.send(coinbase(10, updates=[level("offer", "21923", "2")]))
        assert v.reasons() == [] and v.check.valid("BTC/USD")
        v.send(coinbase(11, updates=[level("bid", "21921.3", "NaN")]))
        assert v.reasons() == [BAD_LEVEL] and not v.check.valid("BTC/USD")
        await v.close()

    run(body)


# -- Deribit: prev_change_id = previous change_id ---------------------------------------------


def deribit(kind: str, change: int, prev: int | None, bids: list, asks: list) -> dict:
    data: dict[str, Any] = {
        "type": kind,
        "timestamp": 1655395057025 + change,
        "instrument_name": "BTC-PERPETUAL",
        "change_id": change,
        "bids": bids,
        "asks": asks,
    }
    if prev is not None:
        data["prev_change_id"] = prev
    return {
        "jsonrpc": "2.0",
        "method": "subscription",
        "params": {"channel": "book.BTC-PERPETUAL.100ms", "data": data},
    }


def test_deribit_change_ids_are_checked_on_the_raw_messages() -> None:
    async def body() -> None:
        e = ccxt.pro.deribit()
        e.set_markets([market("BTC-PERPETUAL", "BTC/USD:BTC", "swap")])
        v = Venue(e, e.urls["api"]["ws"])
        snap = deribit(
            "snapshot",
            100,
            None,
            [["new", 20987, 0.487], ["new", 20986, 0.238]],
            [["new", 20999, 0.092]],
        )
        c1 = deribit("change", 103, 100, [["new", 20988, 0.109], ["delete", 20986, 0]], [])
        c2 = deribit("change", 107, 103, [], [["change", 20999, 0.5], ["new", 21000, 1.238]])
        c3 = deribit("change", 108, 107, [["delete", 20988, 0]], [])
        v.send(snap)
        v.send(c1)
        v.send(c2)
        sym = "BTC/USD:BTC"
        assert v.reasons() == [] and v.check.valid(sym)
        assert tops(e.orderbooks[sym]) == (
            [[20988, 0.109], [20987, 0.487]],
            [[20999, 0.5], [21000, 1.238]],
        )
        for wrong in (c2, deribit("change", 111, 109, [], [])):  # a repeat; a gap
            v.send(wrong)
            assert v.reasons() == [SEQUENCE_GAP] and not v.check.valid(sym)
            v.send(snap)
            v.send(c1)
            v.send(c2)
            assert v.check.valid(sym)
        v.send(c3)
        v.send(c2)  # reordered: an older change after a newer one
        assert v.reasons() == [SEQUENCE_GAP]
        resnap = deribit("snapshot", 200, None, [["new", 20990, 1.0]], [["new", 20995, 2.0]])
        v.send(resnap)
        assert v.reasons() == [] and v.check.valid(sym)
        # ccxt's own handler merges a snapshot into what it holds; the check drops ccxt's book
        # first, so nothing from before the new snapshot survives.
        assert tops(e.orderbooks[sym], 5) == ([[20990, 1.0]], [[20995, 2.0]])
        await v.close()

    run(body)


def test_binance_levels_that_do_not_read_and_a_book_older_than_the_stream() -> None:
    """A level ccxt would take as a delete ("abc") or keep (NaN, negative) breaks the book
    until ccxt starts it again; a snapshot below the highest final update id the stream
    delivered is behind (ccxt hands it out once when no buffered diff bridges it)."""
    e = ccxt.pro.binance()
    e.set_markets([market("BTCUSDT", "BTC/USDT", "spot")])
    check = BinanceDepthCheck(e)
    assert not check.behind("BTC/USDT", 5)  # nothing seen yet
    assert check.observe(depth_update("BTCUSDT", 101, 105, 100, [["1.5", "2"]], [])) is None
    check.observe(depth_update("BTCUSDT", 90, 95, 89, [], []))  # an old diff moves nothing
    assert check.behind("BTC/USDT", 100) and check.behind("BTC/USDT", 104)
    assert not check.behind("BTC/USDT", 105) and not check.behind("BTC/USDT", 106)
    assert not check.behind("BTC/USDT", None) and check.valid("BTC/USDT")
    bad_levels = (
        ["1.5", "abc"],
        ["NaN", "1"],
        ["1.5", "-1"],
        ["0", "1"],
        ["inf", "1"],
        ["1", "inf"],
    )
    for bad in bad_levels:
        broken = check.observe(depth_update("BTCUSDT", 106, 106, 105, [bad], []))
        assert broken == ("BTC/USDT", MALFORMED_BOOK) and not check.valid("BTC/USDT"), bad
        assert check.observe(depth_update("BTCUSDT", 107, 107, 106, [], [])) == broken
        check.restart()  # a new connection: ccxt starts the book again
        assert check.valid("BTC/USDT") and check.behind("BTC/USDT", 100)
        assert check.observe(depth_update("BTCUSDT", 108, 108, 107, [], [])) is None
    asyncio.run(e.close())
