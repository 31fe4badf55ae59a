"""Risk fails closed on a real Redis: nothing approved before the state is restored or while
the store is down, nothing journaled lost across the outage, and a restart continues where the
last incarnation stopped."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable

import pytest

from hft_ray.clock import TestClock
from hft_ray.config import HftConfig
from hft_ray.markets import simulated_markets
from hft_ray.risk.core import RiskCore, TradingState
from hft_ray.risk.keeper import RiskKeeper
from hft_ray.store import RedisStore
from tests.conftest import RedisServer
from tests.test_risk_core import opp, trade, universe_of

pytestmark = pytest.mark.redis


def keeper_for(config: HftConfig, clock: TestClock, url: str, run_id: str) -> RiskKeeper:
    core = RiskCore(config, universe_of(config), simulated_markets(config), clock)
    return RiskKeeper(core, RedisStore(url, run_id))


def test_risk_fails_closed_while_redis_is_down_and_restores_after_a_restart(
    make_config: Callable[..., HftConfig], redis_server: RedisServer
) -> None:
    config = make_config(risk={"max_drawdown_quote": 1.0, "max_in_flight_per_symbol": 5})
    clock = TestClock()
    run_id = f"k{uuid.uuid4().hex[:8]}"

    async def scenario() -> None:
        keeper = keeper_for(config, clock, redis_server.url, run_id)
        assert (await keeper.decide(opp(clock, opp_id="a0"))) is None  # nothing seen yet
        assert await keeper.watch_round()
        assert (await keeper.decide(opp(clock, opp_id="a1"))) is not None
        keeper.on_execution(trade("a1", 90_000.0, 89_900.0))  # trips the drawdown breaker
        assert keeper.core.state is TradingState.REDUCING
        assert await keeper.watch_round()  # persists the new state

        redis_server.stop()
        try:
            assert not await keeper.watch_round()
            denied = await keeper.decide(opp(clock, opp_id="a2", buy=1, sell=0))
            assert denied is None
            assert keeper.core.rejected["store_unavailable"] == 2  # a0 and a2
        finally:
            redis_server.start()
        assert await keeper.watch_round()
        assert (await keeper.decide(opp(clock, opp_id="a3", buy=1, sell=0))) is not None
        assert await keeper.watch_round()
        before = keeper.core.snapshot()
        await keeper.close()

        # A new incarnation: fail closed until restored, then the same state.
        restarted = keeper_for(config, clock, redis_server.url, run_id)
        assert (await restarted.decide(opp(clock, opp_id="b0"))) is None
        early = trade("a3", 90_000.0, 90_050.0)  # a report that arrives before the restore
        restarted.on_execution(early)
        assert restarted.core.trades == 0
        assert await restarted.watch_round()
        after = restarted.core.snapshot()
        for key in ("state", "breakers", "approved", "peak_pnl_quote"):
            assert after[key] == before[key], key
        # ... with the early report booked on top: a3's legs filled, nothing in flight.
        assert after["trades"] == before["trades"] + 1 and after["in_flight"] == 0
        assert after["positions"]["binance"]["BTC"] == pytest.approx(0.02)
        assert after["positions"]["okx"]["BTC"] == pytest.approx(-0.02)
        assert after["rejected"] == {**before["rejected"], "store_unavailable": 3}

        # Every decision, those made while Redis was down included, reached the journal.
        journal = await RedisStore(redis_server.url, run_id).read_journal()
        decided = [r["opp_id"] for r in journal if r["type"] == "decision"]
        assert decided == ["a0", "a1", "a2", "a3", "b0"]
        await restarted.close()

    asyncio.run(scenario())


def test_a_state_that_cannot_be_read_keeps_risk_closed_and_says_why(
    make_config: Callable[..., HftConfig], redis_server: RedisServer
) -> None:
    config = make_config()
    clock = TestClock()
    run_id = f"k{uuid.uuid4().hex[:8]}"

    async def scenario() -> None:
        store = RedisStore(redis_server.url, run_id)
        await store.put_state("risk", {"breakers": {}})  # written by some other version
        keeper = keeper_for(config, clock, redis_server.url, run_id)
        assert not await keeper.watch_round()
        assert keeper.error == "cannot restore the risk state: KeyError: 'ledger'"
        assert (await keeper.decide(opp(clock))) is None
        await keeper.close()
        await store.close()

    asyncio.run(scenario())
