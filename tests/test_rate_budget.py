"""The shared REST budget: its Lua bucket against a real Redis (refill, burst, debt, shrink,
recover), and two executor processes plus a feed drawing from one budget through ccxt's own
binance class against the local exchange server, which answers one order with 429.

Rates are judged from the request times the server logged; the only times asserted are what
the budget itself guarantees (a window's cost within rate * length + burst, silence in a
pause), with generous margins.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
import redis

from hft_ray.clock import LiveClock
from hft_ray.config import CcxtVenueConfig, HftConfig, StoreConfig, parse_config
from hft_ray.metrics import VENUE_RATE_BUDGET, VENUE_RATE_LIMITED
from hft_ray.venues import rate_budget
from hft_ray.venues.ccxt_live import CcxtBookStream
from hft_ray.venues.rate_budget import FLOOR_SHARE, LocalBucket, RedisBucket, key_id
from tests.conftest import RedisServer, default_config_dict
from tests.exchange_server import API_KEY, ExchangeServer

SYMBOL = "BTC/USDT"
RATE = 5.0  # cost units per second: binance's order weighs 0.2 in ccxt, so 25 orders/s
BURST = 1.0
ORDERING_S = 7.0  # how long each executor process keeps ordering
SECRET = "s3cr3t-rate-budget"


def bucket(server: RedisServer, rate: float, burst: float, recover_s: float = 60.0) -> RedisBucket:
    return RedisBucket(server.url, None, f"test:{uuid.uuid4().hex}", rate, burst, recover_s)


# -- the bucket ---------------------------------------------------------------------------------


def test_burst_then_turns_in_order_then_refill(redis_server: RedisServer) -> None:
    async def main() -> None:
        b = bucket(redis_server, rate=1.0, burst=3.0)
        other = RedisBucket(redis_server.url, None, b.key, 1.0, 3.0)  # another process's view
        try:
            assert [(await b.take(1.0)).wait_s for _ in range(3)] == [0.0] * 3
            first = await other.take(1.0)  # the burst is shared, not per client
            second = await b.take(1.0)  # reservations queue: each waits for its own turn
            assert first.granted and second.granted
            assert 0 < first.wait_s <= 1.0 and 1.0 < second.wait_s <= 2.0
            await asyncio.sleep(second.wait_s + 4.0)  # refills 4+ units, kept up to the burst
            waits = [(await b.take(1.0)).wait_s for _ in range(4)]
            assert waits[:3] == [0.0] * 3 and 0 < waits[3] <= 1.0
        finally:
            await b.close()
            await other.close()

    asyncio.run(main())


def test_a_heavy_request_goes_and_pays_afterwards(redis_server: RedisServer) -> None:
    async def main() -> None:
        b = bucket(redis_server, rate=10.0, burst=1.0)
        try:
            assert (await b.take(5.0)).wait_s == 0.0  # weight 5 > burst 1: sent, into debt
            after = await b.take(1.0)
            assert 0.4 < after.wait_s <= 0.5 + 1e-6  # 4 units of debt + 1 needed, at 10/s
        finally:
            await b.close()

    asyncio.run(main())


def test_shrink_pauses_halves_once_per_episode_and_recovers(redis_server: RedisServer) -> None:
    async def main() -> None:
        b = bucket(redis_server, rate=10.0, burst=2.0, recover_s=0.5)
        try:
            reserved = await b.take(1.0)
            assert await b.shrink(0.3) is True
            assert await b.shrink(0.3) is False  # another process's 429 of the same burst
            assert await b.epoch() == reserved.epoch + 1  # reservations before it are void
            paused = await b.take(1.0)
            assert not paused.granted and 0 < paused.wait_s <= 0.3 + 1e-6
            state = await b.state()
            assert state["rate"] == 5.0 and state["shrinks"] == 1
            await asyncio.sleep(paused.wait_s + 0.05)
            climbing = await b.take(0.0)
            assert climbing.granted and 5.0 <= climbing.rate < 10.0
            await asyncio.sleep(0.6)  # past recover_s: back to the configured rate
            assert (await b.take(0.0)).rate == 10.0
            for _ in range(10):  # episodes back to back: never below the floor
                await b.shrink(0.0)
            assert (await b.state())["rate"] == pytest.approx(10.0 * FLOOR_SHARE)
        finally:
            await b.close()

    asyncio.run(main())


def test_local_bucket_is_the_same_bucket() -> None:
    now = [100.0]
    b = LocalBucket(rate=2.0, burst=2.0, recover_s=10.0, clock=lambda: now[0])

    async def main() -> None:
        waits = [(await b.take(1.0)).wait_s for _ in range(3)]
        assert waits == [0.0, 0.0, pytest.approx(0.5)]
        now[0] += 1.0  # the third's turn came and went; one more unit refilled
        assert (await b.take(1.0)).wait_s == pytest.approx(0.0)
        assert await b.shrink(1.0) and not await b.shrink(1.0)
        now[0] += 0.5
        paused = await b.take(1.0)
        assert not paused.granted and paused.wait_s == pytest.approx(0.5)
        now[0] += 1.0  # 0.5 s past the pause: 0.5 units refilled at 1/s, rate climbing
        climbing = await b.take(1.0)
        assert climbing.wait_s > 0 and 1.0 < climbing.rate < 2.0
        now[0] += 20.0
        assert (await b.take(1.0)).rate == 2.0

    asyncio.run(main())


def test_key_id_never_the_key() -> None:
    assert key_id(None) == key_id("") == "public"
    kid = key_id(API_KEY)
    assert len(kid) == 12 and kid not in API_KEY and kid != key_id(API_KEY + "x")


def test_retry_after() -> None:
    assert rate_budget.retry_after_s({"Retry-After": "3"}) == 3.0
    assert rate_budget.retry_after_s({"retry-after": "99999"}) == rate_budget.MAX_PAUSE_S
    assert rate_budget.retry_after_s({}) == rate_budget.DEFAULT_PAUSE_S
    assert rate_budget.retry_after_s({"Retry-After": "Wed, 21 Oct"}) == rate_budget.DEFAULT_PAUSE_S


# -- two executor processes and a feed through one budget ---------------------------------------


def venue_section(server: ExchangeServer) -> dict[str, Any]:
    return {
        "kind": "ccxt",
        "exchange": "binance",
        "urls": server.ccxt_urls(),
        "options": server.ccxt_options(),
        "api_key_env": "HFT_TEST_KEY",
        "secret_env": "HFT_TEST_SECRET",
        "watch_depth": 100,  # a snapshot of weight 1
        "rate_limit_per_s": RATE,
        "rate_limit_burst": BURST,
    }


def config_of(section: dict[str, Any], redis_url: str) -> HftConfig:
    data = default_config_dict()
    data["symbols"] = [SYMBOL]
    data["venues"] = {"binance": section, "okx": {"kind": "ccxt"}}
    data["store"] = {"url": redis_url}
    return parse_config(data)


async def executor_driver(name: str, config_json: str) -> None:
    """One executor process: orders as fast as the budget lets it for `ORDERING_S`; prints
    what its metrics reading holds."""
    from hft_ray.venues.ccxt_orders import order_venue_for

    config = config_of(json.loads(config_json), os.environ["HFT_TEST_REDIS"])
    venue = order_venue_for(config, "binance")
    venue.exchange.userAgent = name
    await venue.start()
    print("ready", flush=True)
    results: dict[str, int] = {}
    end = time.monotonic() + ORDERING_S
    i = 0
    while time.monotonic() < end:
        i += 1
        r = await venue.create_order(f"{name}x{i}", SYMBOL, "buy", 0.001, 1000.0)
        results[r.reason or r.status] = results.get(r.reason or r.status, 0) + 1
    await venue.close()
    reading = rate_budget.reading()
    out = {
        "results": results,
        "rate_limited": sum(v for (s, _), v in reading.counts.items() if s is VENUE_RATE_LIMITED),
        "rate": next(v for (s, _), v in reading.levels.items() if s is VENUE_RATE_BUDGET),
    }
    print(json.dumps(out), flush=True)


def cost_of(method: str, path_qs: str) -> float:
    """The weight ccxt's binance class gives a request the server logged."""
    import ccxt

    api = ccxt.binance().describe()["api"]
    path = path_qs.split("?")[0].removeprefix("/api/v3/")
    section = "private" if path == "order" else "public"
    entry = api[section][method.lower()][path]
    if "byLimit" in entry and "limit=" in path_qs:
        limit = int(path_qs.split("limit=")[1].split("&")[0])
        return float(next(c for n, c in entry["byLimit"] if limit <= n))
    return float(entry["cost"])


def max_window_excess(log: list[tuple[float, float]], rate: float) -> float:
    """The largest cost sent in any window [t_i, t_j] beyond what `rate` refills in it."""
    worst = 0.0
    for i in range(len(log)):
        total = 0.0
        for j in range(i, len(log)):
            total += log[j][1]
            worst = max(worst, total - rate * (log[j][0] - log[i][0]))
    return worst


def test_two_executors_and_a_feed_share_one_budget_and_all_back_off(
    redis_server: RedisServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HFT_TEST_KEY", API_KEY)
    monkeypatch.setenv("HFT_TEST_SECRET", SECRET)
    budget_key = f"{rate_budget.KEY_PREFIX}:binance:{key_id(API_KEY)}"
    redis.Redis(port=redis_server.port).delete(budget_key)

    async def main() -> tuple[ExchangeServer, list[dict[str, Any]], float, int]:
        server = ExchangeServer("binance", binance_btc_usdt=True)
        await server.start()
        section = venue_section(server)
        env = {**os.environ, "HFT_TEST_REDIS": redis_server.url}
        procs = [
            await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "tests.test_rate_budget",
                f"exec{i}",
                json.dumps(section),
                stdout=asyncio.subprocess.PIPE,
                env=env,
                cwd=str(Path(__file__).parent.parent),
            )
            for i in range(2)
        ]
        cfg = CcxtVenueConfig.model_validate(section)
        store = StoreConfig(url=redis_server.url)
        feed = CcxtBookStream("binance", cfg, [SYMBOL], 5, LiveClock(), store=store)
        feed._exchange.userAgent = "feed"
        await feed.start()
        stop = asyncio.Event()

        async def resync_often() -> None:  # each resync fetches a REST snapshot again
            while not stop.is_set():
                await feed.next(0.4)
                feed.resync(SYMBOL)

        feeding = asyncio.create_task(resync_often())
        for p in procs:
            assert p.stdout is not None
            assert (await asyncio.wait_for(p.stdout.readline(), 60)).strip() == b"ready"
        await asyncio.sleep(2.5)
        server.fail_next_order("rate_limit")
        outputs = []
        for p in procs:
            out, _ = await asyncio.wait_for(p.communicate(), 60)
            assert p.returncode == 0
            outputs.append(json.loads(out.decode().strip().splitlines()[-1]))
        stop.set()
        await feeding
        feed_rate = rate_budget.STATS["binance"].rate
        await feed.close()
        await server.stop()
        shrinks = int(redis.Redis(port=redis_server.port).hget(budget_key, "shrinks") or 0)
        return server, outputs, feed_rate, shrinks

    server, outputs, feed_rate, shrinks = asyncio.run(main())
    log = sorted((t, cost_of(m, p), a, status) for t, m, p, a, status in server.rest_log)
    [t429] = [t for t, _, _, status in log if status == 429]

    # every source drew from the one budget: the combined cost never beat it
    sent = [(t, c) for t, c, _, _ in log]
    assert max_window_excess(sent, RATE) <= BURST + 4.0 + 1.0  # + the heaviest (exchangeInfo)
    before = [(t, c, a) for t, c, a, _ in log if t429 - 2.0 <= t < t429]
    assert sum(c for _, c, _ in before) > 0.6 * RATE * 2.0  # the budget was what held them
    assert {a for _, _, a in before} == {"exec0", "exec1", "feed"}

    # after the 429 everyone paused for its Retry-After (1 s), then went on slower
    for agent in ("exec0", "exec1", "feed"):
        mine = [t for t, _, a, _ in log if a == agent]
        assert not [t for t in mine if t429 + 0.2 < t < t429 + 0.9], agent
        assert [t for t in mine if t > t429 + 1.0], f"{agent} never went on"
    after = [c for t, c, _, _ in log if t429 + 1.0 <= t < t429 + 4.0]
    assert sum(after) <= 0.6 * RATE * 3.0 + BURST + 1.0

    # and it was counted: one 429, one shrink for everyone, seen by every process
    assert sum(o["results"].get("rate_limited", 0) for o in outputs) == 1
    assert sum(o["rate_limited"] for o in outputs) == 1
    assert shrinks == 1
    assert all(o["rate"] < RATE for o in outputs) and feed_rate < RATE


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(executor_driver(sys.argv[1], sys.argv[2]))
