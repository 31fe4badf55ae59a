"""A store that lost the run's data halts risk for good; a store that refuses the password or
does not answer says so in one line at the start.

Each test runs a Redis server of its own: one it may empty, flush or lock with a password."""

from __future__ import annotations

import asyncio
import shutil
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis

from hft_ray.clock import TestClock
from hft_ray.config import HftConfig
from hft_ray.markets import simulated_markets
from hft_ray.risk.core import RiskCore, TradingState
from hft_ray.risk.keeper import STORE_LOST, RiskKeeper
from hft_ray.store import LocalStore, RedisStore, Store, StoreLost, StoreUnavailable, check
from hft_ray.store.redis import epoch_key
from tests.conftest import RedisServer, free_port
from tests.test_risk_core import opp, universe_of

pytestmark = pytest.mark.redis


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path / "redis")
    server.workdir.mkdir()
    server.start()
    yield server
    server.stop()


def restart_empty(server: RedisServer) -> None:
    """Restart on the same port without the data (a Redis run without persistence)."""
    server.stop()
    shutil.rmtree(server.workdir)
    server.workdir.mkdir()
    server.start()


def keeper_on(config: HftConfig, store: Store, restarted: bool = False) -> RiskKeeper:
    core = RiskCore(config, universe_of(config), simulated_markets(config), TestClock())
    return RiskKeeper(core, store, restarted=restarted)


def assert_halted_for_a_lost_store(keeper: RiskKeeper) -> None:
    core = keeper.core
    assert core.state is TradingState.HALTED and STORE_LOST in core.breakers
    assert not core.store_ok and keeper.error.startswith("store: ")
    assert "lost the run's data" in keeper.error


def test_risk_halts_and_stays_halted_when_redis_comes_back_empty(
    make_config: Callable[..., HftConfig], own_redis: RedisServer
) -> None:
    config = make_config()
    run_id = f"e{uuid.uuid4().hex[:8]}"
    clock = TestClock()

    async def scenario() -> None:
        keeper = keeper_on(config, RedisStore(own_redis.url, run_id, writer="risk"))
        executor = RedisStore(own_redis.url, run_id, writer="executor0")
        assert await keeper.watch_round()  # the first incarnation writes the run's epoch
        await executor.append({"type": "intent", "ts_ns": 1, "opp_id": "a"})
        await executor.flush()
        assert (await keeper.decide(opp(clock, opp_id="a"))) is not None

        own_redis.stop()  # a restart with its append-only file: nothing is lost
        own_redis.start()
        assert await keeper.watch_round(), keeper.error
        await executor.append({"type": "intent", "ts_ns": 2, "opp_id": "b"})
        await executor.flush()

        restart_empty(own_redis)
        assert not await keeper.watch_round()
        assert_halted_for_a_lost_store(keeper)
        assert (await keeper.decide(opp(clock, opp_id="c", buy=1, sell=0))) is None
        keeper.core.resume()  # an operator's resume does not make the store whole again
        assert not await keeper.watch_round()
        assert_halted_for_a_lost_store(keeper)

        # An executor finds out on its reconnect, before anything is written.
        await executor.append({"type": "intent", "ts_ns": 3, "opp_id": "d"})
        with pytest.raises(StoreLost, match=r"epoch key \S+ missing"):
            await executor.flush()
        with pytest.raises(StoreLost):
            await executor.read_journal()
        assert redis.Redis.from_url(own_redis.url).keys("*") == []

        # A restarted risk on the emptied store does not start afresh.
        again = keeper_on(config, RedisStore(own_redis.url, run_id, writer="risk"), True)
        assert not await again.watch_round()
        assert_halted_for_a_lost_store(again)
        assert not again.core.restored
        # Nor does a process that never saw the epoch write a journal there.
        newcomer = RedisStore(own_redis.url, run_id, writer="executor1")
        await newcomer.append({"type": "intent", "ts_ns": 4, "opp_id": "e"})
        with pytest.raises(StoreUnavailable, match="has no epoch for run"):
            await newcomer.flush()
        assert redis.Redis.from_url(own_redis.url).keys("*") == []
        for k in (keeper, again):
            await k.close()  # the lost store's queue is said, not raised
        assert keeper.journal_errors == 1

    asyncio.run(scenario())


@pytest.mark.parametrize("how", ["flushed", "replaced"])
def test_risks_periodic_check_finds_a_store_emptied_under_it(
    how: str, make_config: Callable[..., HftConfig], own_redis: RedisServer
) -> None:
    """No reconnect: the data went while risk's connection stayed up (FLUSHALL, or another
    run's start writing over the epoch)."""
    config = make_config()
    run_id = f"f{uuid.uuid4().hex[:8]}"
    raw = redis.Redis.from_url(own_redis.url)

    async def scenario() -> None:
        keeper = keeper_on(config, RedisStore(own_redis.url, run_id, writer="risk"))
        assert await keeper.watch_round()
        if how == "flushed":
            raw.flushall()
        else:
            raw.set(epoch_key(run_id), b"another")
        assert not await keeper.watch_round()
        assert_halted_for_a_lost_store(keeper)
        assert ("missing" if how == "flushed" else "changed") in keeper.error
        await keeper.close()

    asyncio.run(scenario())


def test_a_deleted_journal_halts_risk_on_the_file_store(
    make_config: Callable[..., HftConfig], tmp_path: Path
) -> None:
    config = make_config()
    clock = TestClock()
    run_dir = tmp_path / "run"

    async def scenario() -> None:
        keeper = keeper_on(config, LocalStore(run_dir, "risk"))
        assert await keeper.watch_round()
        await keeper.decide(opp(clock))  # the decision opens risk's segment
        assert await keeper.watch_round()
        shutil.rmtree(run_dir)
        run_dir.mkdir()
        assert not await keeper.watch_round()
        assert keeper.core.state is TradingState.HALTED and STORE_LOST in keeper.core.breakers
        assert "journal segment risk.log deleted" in keeper.error

    asyncio.run(scenario())


def test_start_up_says_in_one_line_what_is_wrong_with_redis(own_redis: RedisServer) -> None:
    password = "s3cret-Pw"
    redis.Redis.from_url(own_redis.url).config_set("requirepass", password)
    port = own_redis.port
    where = f"redis://127.0.0.1:{port}/0"

    async def answer(url: str, pw: str | None = None) -> str:
        store = RedisStore(url, "r1", password=pw)
        try:
            await check(store)
        except StoreUnavailable as err:
            return str(err)
        finally:
            await store.close()
        return "ok"

    async def scenario() -> None:
        assert await answer(where, "wrong") == (
            f"store: redis at {where} refused the password (AUTH failed)"
        )
        in_url = f"redis://:{password}x@127.0.0.1:{port}/0"
        assert await answer(in_url) == f"store: redis at {where} refused the password (AUTH failed)"
        assert await answer(where) == (
            f"store: redis at {where} asks for a password (NOAUTH): set store.password_env"
        )
        nobody = f"redis://127.0.0.1:{free_port()}/0"
        assert await answer(nobody) == f"store: redis at {nobody} does not answer (ConnectionError)"
        assert await answer(where, password) == "ok"
        # The right password, and the run's epoch written by the check.
        assert redis.Redis(port=port, password=password).get(epoch_key("r1")) is not None

    asyncio.run(scenario())


def test_a_keeper_with_a_refused_password_stays_closed_and_says_why(
    make_config: Callable[..., HftConfig], own_redis: RedisServer
) -> None:
    redis.Redis.from_url(own_redis.url).config_set("requirepass", "right")

    async def scenario() -> None:
        keeper = keeper_on(make_config(), RedisStore(own_redis.url, "r2", password="wrong"))
        assert not await keeper.watch_round()
        assert keeper.error == (
            f"store: redis at {own_redis.url} refused the password (AUTH failed)"
        )
        assert keeper.core.state is TradingState.ACTIVE and not keeper.core.restored

    asyncio.run(scenario())
