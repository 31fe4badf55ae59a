"""Risk fails closed on a real Redis: nothing approved before the state is restored or while
the store is down, nothing journaled lost across the outage, and a restart continues where the
last incarnation stopped."""

from __future__ import annotations

import asyncio
import errno
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from hft_ray.clock import TestClock
from hft_ray.config import HftConfig
from hft_ray.markets import simulated_markets
from hft_ray.risk.core import RiskCore, TradingState
from hft_ray.risk.keeper import RiskKeeper
from hft_ray.store import LocalStore, RedisStore
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
        assert keeper.error == "cannot restore the risk state: KeyError: 'saved_at_ns'"
        assert (await keeper.decide(opp(clock))) is None
        await keeper.close()
        await store.close()

    asyncio.run(scenario())


class DiskFailing:
    """The real file store, whose disk starts failing on flush (EIO from fsync)."""

    def __init__(self, store: LocalStore) -> None:
        self._store = store
        self.failing = False

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    async def flush(self) -> None:
        if self.failing:
            raise OSError(errno.EIO, "Input/output error")
        await self._store.flush()


def test_an_unforeseen_store_fault_closes_risk_and_the_watch_goes_on(
    make_config: Callable[..., HftConfig], tmp_path: Path
) -> None:
    config = make_config()
    clock = TestClock()
    store = DiskFailing(LocalStore(tmp_path, "risk"))
    core = RiskCore(config, universe_of(config), simulated_markets(config), clock)
    keeper = RiskKeeper(core, store)  # type: ignore[arg-type]

    async def scenario() -> None:
        assert await keeper.watch_round()
        store.failing = True
        assert not await keeper.watch_round()
        assert keeper.error == "risk's store watch failed: OSError: [Errno 5] Input/output error"
        assert (await keeper.decide(opp(clock, opp_id="x"))) is None
        store.failing = False
        assert await keeper.watch_round() and keeper.error == ""
        assert (await keeper.decide(opp(clock, opp_id="y"))) is not None

    asyncio.run(scenario())
