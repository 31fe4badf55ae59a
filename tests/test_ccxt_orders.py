"""The live order path offline: `CcxtOrderVenue` drives ccxt's own binance and okx classes
against the local exchange server's private order endpoints, alone and under `ExecutorCore`.

Every expected number is computed here from the book the server matched against: a buy of
`q` at the best ask `p` fills at `p` and pays 0.1% of `q` in the base asset, `0.001 * q * p` in
quote. Fault injection (rejection, 429, held response, an order left open) is the server's.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from hft_ray.clock import LiveClock
from hft_ray.config import CcxtVenueConfig, HftConfig, parse_config
from hft_ray.execute.core import ExecutorCore
from hft_ray.ledger import Ledger
from hft_ray.markets import Markets
from hft_ray.store import LocalStore
from hft_ray.types import Approval, ExecutionReport, Opportunity, OrderResult, Universe
from hft_ray.venues.base import MarketSpec
from hft_ray.venues.ccxt_live import load_ccxt_markets
from hft_ray.venues.ccxt_orders import CcxtOrderVenue, order_venue_for
from hft_ray.venues.sim import InProcessSimVenue, sim_exchange_from_config
from tests.conftest import default_config_dict, merge, typed
from tests.exchange_server import API_KEY, ExchangeServer, Venue

SYMBOL = "BTC/USDT"
VENUES: list[Venue] = ["binance", "okx"]
SECRET = "s3cr3t-never-printed-9f2c"
PASSPHRASE = "pass-never-printed-4e1a"
TAKER = 0.001
BINANCE_LOT = 0.00001  # the served BTCUSDT step, the coarser of the two venues
SIZE = 0.001  # of an arbitrage: within the top level of both books


@pytest.fixture(autouse=True)
def credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HFT_TEST_KEY", API_KEY)
    monkeypatch.setenv("HFT_TEST_SECRET", SECRET)
    monkeypatch.setenv("HFT_TEST_PASSPHRASE", PASSPHRASE)


def venue_section(server: ExchangeServer, api_key_env: str | None = "HFT_TEST_KEY") -> dict:
    section: dict[str, Any] = {
        "kind": "ccxt",
        "exchange": server.venue,
        "urls": server.ccxt_urls(),
        "options": server.ccxt_options(),
        "api_key_env": api_key_env,
        "secret_env": "HFT_TEST_SECRET",
    }
    if server.venue == "okx":
        section["password_env"] = "HFT_TEST_PASSPHRASE"
    return section


def config_for(servers: Mapping[str, ExchangeServer], **execution: Any) -> HftConfig:
    data = default_config_dict()
    data["symbols"] = [SYMBOL]
    # a config names two venues at least; a venue without a server is never contacted
    data["venues"] = {v: {"kind": "ccxt"} for v in VENUES}
    data["venues"].update({name: venue_section(server) for name, server in servers.items()})
    data["execution"] = merge(data.get("execution", {}), execution)
    return parse_config(data)


def new_server(venue: Venue) -> ExchangeServer:
    return ExchangeServer(venue, binance_btc_usdt=venue == "binance", hold_s=5.0)


@asynccontextmanager
async def serving(venue: Venue) -> AsyncIterator[tuple[ExchangeServer, CcxtOrderVenue]]:
    server = new_server(venue)
    await server.start()
    client = order_venue_for(config_for({venue: server}), venue)
    try:
        await client.start()
        yield server, client
    finally:
        await client.close()
        await server.stop()


def run(venue: Venue, body: Callable[[ExchangeServer, CcxtOrderVenue], Awaitable[None]]) -> None:
    async def main() -> None:
        async with serving(venue) as (server, client):
            await body(server, client)

    asyncio.run(main())


def best(server: ExchangeServer, side: str, depth: int = 1) -> list[tuple[float, float]]:
    """The top `depth` (price, qty) levels of one side of the book orders are matched against."""
    bids, asks = server.trading_book(SYMBOL)
    levels = asks if side == "ask" else bids
    return [(float(px), float(qty)) for px, qty, *_ in levels[:depth]]


def assert_result(r: OrderResult, **expected: Any) -> None:
    for name, value in expected.items():
        got = getattr(r, name)
        if isinstance(value, float):
            assert got == pytest.approx(value, rel=1e-9, abs=1e-12), (name, got, value)
        else:
            assert got == value, (name, got, value)


# -- the venue alone ---------------------------------------------------------------------------


@pytest.mark.parametrize("venue", VENUES)
def test_an_ioc_buy_with_enough_liquidity_fills_at_the_ask_and_pays_the_taker_fee(
    venue: Venue,
) -> None:
    async def body(server: ExchangeServer, client: CcxtOrderVenue) -> None:
        ((ask, _),) = best(server, "ask")
        r = await client.create_order("full1", SYMBOL, "buy", 0.001, ask)
        assert_result(
            r,
            client_id="full1",
            venue=venue,
            symbol=SYMBOL,
            side="buy",
            status="filled",
            amount=0.001,
            filled=0.001,
            avg_price=ask,
            fee_quote=0.001 * ask * TAKER,  # charged in BTC, valued at the fill price
            fee_base=0.001 * TAKER,  # ... and it leaves the BTC received, not the USDT
            reason="",
        )
        assert server.orders["full1"].fee_asset == "BTC"  # the venue did charge base

    run(venue, body)


@pytest.mark.parametrize("venue", VENUES)
def test_an_ioc_sell_fills_at_the_bid_and_pays_its_fee_in_quote(venue: Venue) -> None:
    async def body(server: ExchangeServer, client: CcxtOrderVenue) -> None:
        ((bid, _),) = best(server, "bid")
        r = await client.create_order("sell1", SYMBOL, "sell", 0.001, bid)
        assert_result(r, status="filled", side="sell", filled=0.001, avg_price=bid)
        assert_result(r, fee_quote=0.001 * bid * TAKER)
        assert server.orders["sell1"].fee_asset == "USDT"

    run(venue, body)


@pytest.mark.parametrize("venue", VENUES)
def test_an_ioc_buy_larger_than_the_book_up_to_its_limit_fills_partly(venue: Venue) -> None:
    async def body(server: ExchangeServer, client: CcxtOrderVenue) -> None:
        (p1, q1), (p2, q2) = best(server, "ask", 2)
        amount = round(q1 + q2 + 1.0, 8)
        r = await client.create_order("part1", SYMBOL, "buy", amount, p2)
        avg = (p1 * q1 + p2 * q2) / (q1 + q2)
        assert_result(
            r,
            status="partial",
            amount=amount,
            filled=q1 + q2,
            avg_price=avg,
            fee_quote=(q1 + q2) * avg * TAKER,
            reason="ioc_remainder_expired",
        )

    run(venue, body)


@pytest.mark.parametrize("venue", VENUES)
def test_an_ioc_buy_below_the_ask_expires_unfilled(venue: Venue) -> None:
    async def body(server: ExchangeServer, client: CcxtOrderVenue) -> None:
        ((bid, _),) = best(server, "bid")
        r = await client.create_order("exp1", SYMBOL, "buy", 0.001, bid)
        assert_result(
            r,
            status="expired",
            filled=0.0,
            avg_price=0.0,
            fee_quote=0.0,
            reason="ioc_remainder_expired",
        )

    run(venue, body)


@pytest.mark.parametrize("venue", VENUES)
def test_insufficient_funds_is_a_rejection_and_the_venue_keeps_no_order(venue: Venue) -> None:
    async def body(server: ExchangeServer, client: CcxtOrderVenue) -> None:
        ((ask, _),) = best(server, "ask")
        server.fail_next_order("insufficient_funds")
        r = await client.create_order("poor1", SYMBOL, "buy", 0.001, ask)
        assert_result(r, status="rejected", filled=0.0, reason="insufficient_funds", amount=0.001)
        assert "poor1" not in server.orders
        lookup = await client.fetch_order("poor1", SYMBOL)
        assert_result(lookup, status="unknown", reason="order_not_found")

    run(venue, body)


@pytest.mark.parametrize("venue", VENUES)
def test_a_429_is_a_rate_limited_rejection_and_nothing_is_placed(venue: Venue) -> None:
    async def body(server: ExchangeServer, client: CcxtOrderVenue) -> None:
        ((ask, _),) = best(server, "ask")
        server.fail_next_order("rate_limit")
        r = await client.create_order("busy1", SYMBOL, "buy", 0.001, ask)
        assert_result(r, status="rejected", filled=0.0, reason="rate_limited")
        assert "busy1" not in server.orders and server.order_requests == 1
        again = await client.create_order("busy2", SYMBOL, "buy", 0.001, ask)
        assert_result(again, status="filled", filled=0.001)

    run(venue, body)


@pytest.mark.parametrize("venue", VENUES)
def test_a_timed_out_order_is_unknown_then_found_filled_by_client_id(venue: Venue) -> None:
    async def body(server: ExchangeServer, client: CcxtOrderVenue) -> None:
        ((ask, _),) = best(server, "ask")
        client.exchange.timeout = 300  # ms: shorter than the server holds the response
        server.fail_next_order("timeout")
        r = await client.create_order("slow1", SYMBOL, "buy", 0.001, ask)
        assert_result(r, status="unknown", filled=0.0, reason="request_timeout")
        found = await client.fetch_order("slow1", SYMBOL)
        assert_result(
            found,
            client_id="slow1",
            side="buy",
            status="filled",
            amount=0.001,
            filled=0.001,
            avg_price=ask,
            fee_quote=0.001 * ask * TAKER,
            reason="",
        )
        field = "origClientOrderId=slow1" if venue == "binance" else "clOrdId=slow1"
        assert any(field in path for path in server.rest_requests)

    run(venue, body)


@pytest.mark.parametrize("venue", VENUES)
def test_an_unknown_client_id_is_not_found_exactly_as_on_the_simulated_venue(
    venue: Venue, make_config: Callable[..., HftConfig]
) -> None:
    config = make_config()
    sim = InProcessSimVenue(sim_exchange_from_config(config, venue), late_ack_s=0.0)
    expected = asyncio.run(sim.fetch_order("nobody1", SYMBOL))

    async def body(server: ExchangeServer, client: CcxtOrderVenue) -> None:
        for r in (
            await client.fetch_order("nobody1", SYMBOL),
            await client.cancel_order("nobody1", SYMBOL),
        ):
            assert r._replace(ts_ns=0) == expected._replace(ts_ns=0)
            assert r.status == "unknown" and r.reason == "order_not_found"

    run(venue, body)


@pytest.mark.parametrize("venue", VENUES)
def test_an_order_the_venue_leaves_open_is_cancelled_and_its_final_state_returned(
    venue: Venue,
) -> None:
    async def body(server: ExchangeServer, client: CcxtOrderVenue) -> None:
        ((p1, q1),) = best(server, "ask")
        amount = round(q1 + 1.0, 8)
        server.fail_next_order("rest")  # the venue keeps the unfilled remainder open
        before = time.monotonic_ns()
        r = await client.create_order("rest1", SYMBOL, "buy", amount, p1)
        assert before < r.sent_mono_ns < time.monotonic_ns()  # when the request left
        assert_result(r, status="partial", filled=q1, avg_price=p1, reason="ioc_remainder_expired")
        held = server.orders["rest1"]
        assert held.canceled and not held.open  # cancelled on the venue, not just reported
        # cancelling what is already final just reports it
        again = await client.cancel_order("rest1", SYMBOL)
        assert again._replace(ts_ns=0) == r._replace(ts_ns=0, sent_mono_ns=0)

    run(venue, body)


@pytest.mark.parametrize("venue", VENUES)
def test_a_wrong_or_missing_api_key_is_an_auth_rejection_and_no_secret_leaks(
    venue: Venue, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)

    async def main() -> list[OrderResult]:
        server = new_server(venue)
        await server.start()
        try:
            ((ask, _),) = best(server, "ask")
            results = []
            monkeypatch.setenv("HFT_TEST_KEY", "not-the-key")
            wrong = order_venue_for(config_for({venue: server}), venue)
            try:
                results.append(await wrong.create_order("auth1", SYMBOL, "buy", 0.001, ask))
            finally:
                await wrong.close()
            data = default_config_dict()
            data["symbols"] = [SYMBOL]
            data["venues"] = {v: {"kind": "ccxt"} for v in VENUES}
            data["venues"][venue] = venue_section(server, api_key_env=None)
            keyless = order_venue_for(parse_config(data), venue)
            try:
                results.append(await keyless.create_order("auth2", SYMBOL, "buy", 0.001, ask))
            finally:
                await keyless.close()
            assert not server.orders
            # the server itself refuses a signed request without the key header
            path = "/api/v3/order" if venue == "binance" else "/api/v5/trade/order"
            async with aiohttp.ClientSession() as http:
                url = f"http://127.0.0.1:{server.port}{path}"
                async with http.post(url, data="timestamp=1&signature=x") as resp:
                    assert resp.status == 401
                    body = await resp.json(content_type=None)
            assert str(body["code"]) == ("-2014" if venue == "binance" else "50103")
            return results
        finally:
            await server.stop()

    for r in asyncio.run(main()):
        assert_result(r, status="rejected", filled=0.0, reason="auth_error")
        assert SECRET not in repr(r) and PASSPHRASE not in repr(r)
    for secret in (SECRET, PASSPHRASE, API_KEY):
        assert secret not in caplog.text


# -- ExecutorCore over two live venues ---------------------------------------------------------


class Live:
    """Two local servers (binance, okx) serving the same BTC/USDT book, their ccxt venues,
    and an ExecutorCore journaling to a real file store."""

    def __init__(self, tmp_path: Path, **execution: Any) -> None:
        self.tmp_path = tmp_path
        self.execution = execution
        self.servers: dict[str, ExchangeServer] = {v: new_server(v) for v in VENUES}
        self.store = LocalStore(tmp_path, "executor0")

    async def start(self) -> None:
        for server in self.servers.values():
            await server.start()
        self.config = config_for(self.servers, **self.execution)
        self.venues: dict[str, CcxtOrderVenue] = {
            v: order_venue_for(self.config, v) for v in VENUES
        }
        specs: dict[tuple[str, str], MarketSpec] = {}
        for v in VENUES:
            await self.venues[v].start()
            cfg = self.config.venues[v]
            assert isinstance(cfg, CcxtVenueConfig)
            specs[(v, SYMBOL)] = (await load_ccxt_markets(v, cfg, [SYMBOL]))[SYMBOL]
        self.markets = Markets(specs)
        self.universe = Universe(tuple(VENUES), (SYMBOL,))
        self.core = ExecutorCore(
            self.config, self.universe, self.markets, self.venues, self.store, LiveClock()
        )

    async def stop(self) -> None:
        for client in self.venues.values():
            await client.close()
        for server in self.servers.values():
            await server.stop()

    def approval(self, size: float) -> Approval:
        """Buy on binance at its ask, sell on okx at its bid."""
        ((ask, _),) = best(self.servers["binance"], "ask")
        ((bid, _),) = best(self.servers["okx"], "bid")
        now = LiveClock().monotonic_ns()
        opp = Opportunity("t1", 0, 0, 1, size, ask, bid, ask, bid, 0.0, 0.0, 0, 0, now, now)
        return Approval(opp, size, now)

    async def journal(self) -> list[dict]:
        return await self.store.read_journal()


def drive(
    tmp_path: Path,
    scenario: Callable[[Live], Awaitable[ExecutionReport]],
    **execution: Any,
) -> tuple[Live, ExecutionReport, list[dict]]:
    live = Live(tmp_path, **execution)

    async def main() -> tuple[ExecutionReport, list[dict]]:
        await live.start()
        try:
            report = await scenario(live)
            return report, await live.journal()
        finally:
            await live.stop()

    report, journal = asyncio.run(main())
    return live, report, journal


def net_base(journal: list[dict]) -> float:
    return sum(
        r["filled"] * (1 if r["side"] == "buy" else -1) for r in journal if r["type"] == "fill"
    )


def of_type(journal: list[dict], kind: str) -> list[dict]:
    return [r for r in journal if r["type"] == kind]


def test_both_live_legs_fill_and_the_journal_tells_it(tmp_path: Path) -> None:
    async def scenario(live: Live) -> ExecutionReport:
        return await live.core.execute(live.approval(SIZE))

    live, report, journal = drive(tmp_path, scenario)
    ((ask, _),) = best(live.servers["binance"], "ask")
    ((bid, _),) = best(live.servers["okx"], "bid")
    buy, sell = report.fills
    assert_result(buy, client_id="t1B", venue="binance", status="filled", filled=SIZE)
    assert_result(buy, avg_price=ask, fee_quote=SIZE * ask * TAKER)
    assert_result(sell, client_id="t1S", venue="okx", status="filled", filled=SIZE)
    assert_result(sell, avg_price=bid, fee_quote=SIZE * bid * TAKER)
    assert report.legs_failed == 0 and report.legs_unknown == 0 and not report.unwound
    types = [r["type"] for r in journal]
    assert types[0] == "intent" and types[-1] == "execution"
    assert sorted(types[1:-1]) == ["fill", "fill", "order", "order"]
    fills = {r["client_id"]: r for r in of_type(journal, "fill")}
    assert fills["t1B"]["price"] == pytest.approx(ask) and fills["t1S"]["price"] == bid
    assert fills["t1B"]["fee_quote"] == pytest.approx(SIZE * ask * TAKER)
    assert journal[-1]["residual_base"] == pytest.approx(0.0, abs=1e-12)
    ledger = Ledger.from_journal(typed(journal))
    # Binance kept its fee out of the BTC bought: the ledger holds what was received.
    assert fills["t1B"]["fee_base"] == pytest.approx(SIZE * TAKER)
    assert ledger.position("binance", "BTC") == pytest.approx(SIZE * (1 - TAKER))
    assert ledger.position("okx", "BTC") == pytest.approx(-SIZE)
    assert live.servers["binance"].orders["t1B"].filled == live.servers["okx"].orders["t1S"].filled


@pytest.mark.parametrize("policy", ["reverse", "proceed", "cancel"])
def test_a_leg_rejected_for_funds_is_repaired_by_each_policy(policy: str, tmp_path: Path) -> None:
    async def scenario(live: Live) -> ExecutionReport:
        live.servers["okx"].fail_next_order("insufficient_funds")
        return await live.core.execute(live.approval(SIZE))

    live, report, journal = drive(tmp_path, scenario, unwind_policy=policy)
    buy, sell = report.fills[:2]
    assert_result(buy, status="filled", filled=SIZE)
    assert_result(sell, status="rejected", filled=0.0, reason="insufficient_funds")
    assert report.legs_failed == 1
    orders = {r["client_id"]: r for r in of_type(journal, "order")}
    assert orders["t1S"]["status"] == "rejected"
    assert orders["t1S"]["reason"] == "insufficient_funds"
    (unwind,) = of_type(journal, "unwind")
    assert unwind["policy"] == policy and unwind["excess"] == pytest.approx(SIZE)
    if policy == "cancel":
        assert unwind["action"] == "none" and unwind["reason"] == "policy_cancel"
        assert len(report.fills) == 2 and not report.unwound
        assert journal[-1]["type"] == "execution"
        assert journal[-1]["residual_base"] == pytest.approx(SIZE)
        assert net_base(journal) == pytest.approx(SIZE)
        return
    repair = report.fills[2]
    repair_venue = "binance" if policy == "reverse" else "okx"
    ((bid, _),) = best(live.servers[repair_venue], "bid")
    assert_result(repair, client_id="t1U", venue=repair_venue, side="sell", status="filled")
    assert_result(repair, filled=SIZE, avg_price=bid, fee_quote=SIZE * bid * TAKER)
    assert unwind["action"] == "sell" and unwind["venue"] == repair_venue
    assert report.unwound
    assert abs(net_base(journal)) <= BINANCE_LOT
    assert abs(journal[-1]["residual_base"]) <= BINANCE_LOT
    assert live.servers[repair_venue].orders["t1U"].side == "sell"


def test_a_timed_out_leg_is_reconciled_by_client_id(tmp_path: Path) -> None:
    async def scenario(live: Live) -> ExecutionReport:
        live.servers["okx"].fail_next_order("timeout")
        return await live.core.execute(live.approval(SIZE))

    live, report, journal = drive(tmp_path, scenario, order_timeout_ms=400)
    ((bid, _),) = best(live.servers["okx"], "bid")
    sell = report.fills[1]
    assert_result(sell, client_id="t1S", status="filled", filled=SIZE, avg_price=bid)
    assert_result(sell, fee_quote=SIZE * bid * TAKER, reason="ack_timeout_reconciled")
    assert report.legs_failed == 0 and report.legs_unknown == 0 and not report.unwound
    assert "clOrdId=t1S" in " ".join(live.servers["okx"].rest_requests)
    fills = {r["client_id"]: r for r in of_type(journal, "fill")}
    assert fills["t1S"]["filled"] == pytest.approx(SIZE)
    assert net_base(journal) == pytest.approx(0.0, abs=1e-12)
    assert not of_type(journal, "unwind")


def test_a_rate_limited_leg_is_rejected_and_the_other_reversed(tmp_path: Path) -> None:
    async def scenario(live: Live) -> ExecutionReport:
        live.servers["binance"].fail_next_order("rate_limit")
        return await live.core.execute(live.approval(SIZE))

    live, report, journal = drive(tmp_path, scenario, unwind_policy="reverse")
    buy, sell, repair = report.fills
    assert_result(buy, venue="binance", status="rejected", filled=0.0, reason="rate_limited")
    assert_result(sell, venue="okx", status="filled", filled=SIZE)
    ((ask, _),) = best(live.servers["okx"], "ask")
    assert_result(repair, client_id="t1U", venue="okx", side="buy", status="filled")
    assert_result(repair, filled=SIZE, avg_price=ask, fee_quote=SIZE * ask * TAKER)
    assert "t1B" not in live.servers["binance"].orders
    (unwind,) = of_type(journal, "unwind")
    assert unwind["excess"] == pytest.approx(-SIZE) and unwind["action"] == "buy"
    assert abs(net_base(journal)) <= BINANCE_LOT
