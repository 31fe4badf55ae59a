"""Both store implementations behave alike, and the journal outlives its writer."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path

import pytest

from hft_ray.config import StoreConfig
from hft_ray.store import LocalStore, RedisStore, Store, StoreUnavailable, open_store
from tests.conftest import RedisServer, free_port

pytestmark = pytest.mark.redis


def make_store(kind: str, tmp_path: Path, redis_server: RedisServer, run_id: str) -> Store:
    if kind == "local":
        return LocalStore(tmp_path / run_id, "writer0", fsync=True)
    return RedisStore(redis_server.url, run_id)


@pytest.fixture(params=["local", "redis"])
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def test_journal_keeps_order_and_state_round_trips(
    kind: str, tmp_path: Path, redis_server: RedisServer
) -> None:
    async def scenario() -> None:
        run_id = f"t{uuid.uuid4().hex[:8]}"
        store = make_store(kind, tmp_path, redis_server, run_id)
        for i in range(250):
            await store.append({"type": "fill", "ts_ns": 1_000 + i, "i": i, "px": 1.5 * i})
        await store.flush()
        journal = await store.read_journal()
        assert [r["i"] for r in journal] == list(range(250))
        assert journal[7] == {"type": "fill", "ts_ns": 1_007, "i": 7, "px": 10.5}
        assert await store.get_state("risk") is None
        await store.put_state("risk", {"state": "HALTED", "positions": {"okx": {"BTC": 0.5}}})
        assert await store.get_state("risk") == {
            "state": "HALTED",
            "positions": {"okx": {"BTC": 0.5}},
        }
        assert await store.ping()
        await store.close()

    asyncio.run(scenario())


WRITER = textwrap.dedent(
    """
    import asyncio, os, signal, sys
    from pathlib import Path
    from hft_ray.store import LocalStore, RedisStore

    kind, where, run_id = sys.argv[1:4]

    async def main():
        store = (LocalStore(Path(where) / run_id, "executor0") if kind == "local"
                 else RedisStore(where, run_id))
        for i in range(500):
            await store.append({"type": "intent", "ts_ns": i, "i": i})
        await store.flush()
        print("flushed", flush=True)
        os.kill(os.getpid(), signal.SIGKILL)  # die without closing anything

    asyncio.run(main())
    """
)


def test_journal_survives_the_writer_being_killed(
    kind: str, tmp_path: Path, redis_server: RedisServer
) -> None:
    run_id = f"k{uuid.uuid4().hex[:8]}"
    where = str(tmp_path) if kind == "local" else redis_server.url
    proc = subprocess.run(
        [sys.executable, "-c", WRITER, kind, where, run_id],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == -signal.SIGKILL
    assert proc.stdout.strip() == "flushed"

    async def read() -> list[dict]:
        store = make_store(kind, tmp_path, redis_server, run_id)
        try:
            return await store.read_journal()
        finally:
            await store.close()

    assert [r["i"] for r in asyncio.run(read())] == list(range(500))


def test_redis_journal_survives_a_server_restart(redis_server: RedisServer) -> None:
    run_id = f"r{uuid.uuid4().hex[:8]}"

    async def write() -> None:
        store = RedisStore(redis_server.url, run_id)
        await store.append({"type": "fill", "ts_ns": 1, "i": 1})
        await store.close()

    async def read() -> list[dict]:
        store = RedisStore(redis_server.url, run_id)
        try:
            return await store.read_journal()
        finally:
            await store.close()

    asyncio.run(write())
    redis_server.stop()
    redis_server.start()
    assert asyncio.run(read()) == [{"type": "fill", "ts_ns": 1, "i": 1}]


def test_local_store_skips_a_torn_last_frame(tmp_path: Path) -> None:
    async def scenario() -> None:
        store = LocalStore(tmp_path, "w")
        for i in range(3):
            await store.append({"type": "order", "ts_ns": i, "i": i})
        await store.close()
        segment = tmp_path / "journal" / "w.log"
        data = segment.read_bytes()
        segment.write_bytes(data[:-3])  # a crash in the middle of the last write
        reader = LocalStore(tmp_path, "reader")
        assert [r["i"] for r in await reader.read_journal()] == [0, 1]
        assert reader.torn_frames == 1

    asyncio.run(scenario())


def test_local_store_merges_writers_by_timestamp(tmp_path: Path) -> None:
    async def scenario() -> None:
        a, b = LocalStore(tmp_path, "risk"), LocalStore(tmp_path, "executor0")
        await a.append({"type": "decision", "ts_ns": 10})
        await b.append({"type": "intent", "ts_ns": 20})
        await a.append({"type": "decision", "ts_ns": 30})
        await a.close()
        await b.close()
        assert [r["ts_ns"] for r in await LocalStore(tmp_path, "x").read_journal()] == [10, 20, 30]

    asyncio.run(scenario())


def test_redis_down_means_flush_fails_and_nothing_is_lost(redis_server: RedisServer) -> None:
    async def scenario() -> None:
        run_id = f"d{uuid.uuid4().hex[:8]}"
        store = RedisStore(redis_server.url, run_id, timeout_s=0.5)
        await store.append({"type": "intent", "ts_ns": 1})
        await store.flush()
        redis_server.stop()
        try:
            await store.append({"type": "intent", "ts_ns": 2})
            with pytest.raises(StoreUnavailable):
                await store.flush()
            assert not await store.ping()
        finally:
            redis_server.start()
        await store.flush()  # the queued record leaves once Redis is back
        assert [r["ts_ns"] for r in await store.read_journal()] == [1, 2]
        await store.close()

    asyncio.run(scenario())


def test_unreachable_redis_raises_store_unavailable() -> None:
    async def scenario() -> None:
        store = RedisStore(f"redis://127.0.0.1:{free_port()}/0", "nobody", timeout_s=0.3)
        await store.append({"type": "intent", "ts_ns": 1})
        with pytest.raises(StoreUnavailable):
            await store.flush()
        with pytest.raises(StoreUnavailable):
            await store.get_state("risk")

    asyncio.run(scenario())


def test_open_store_reads_the_password_from_the_environment(tmp_path: Path) -> None:
    config = StoreConfig(url="redis://127.0.0.1:6379/0", password_env="HFT_TEST_REDIS_PW")
    os.environ.pop("HFT_TEST_REDIS_PW", None)
    with pytest.raises(Exception, match="HFT_TEST_REDIS_PW is not set"):
        open_store(config, "run", tmp_path, "w")
    assert isinstance(open_store(StoreConfig(), "run", tmp_path, "w"), LocalStore)
