"""Both store implementations behave alike: the journal outlives its writer, a record stored
twice is read once, damage to a segment costs only the records it touched, and an intent
that could not be made durable is journaled as aborted."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import struct
import subprocess
import sys
import textwrap
import uuid
import zlib
from collections.abc import Callable
from pathlib import Path

import msgpack
import pytest
import redis
import redis.asyncio as aioredis
from hypothesis import given, settings
from hypothesis import strategies as st
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import TimeoutError as RedisTimeoutError

from hft_ray.clock import LiveClock, TestClock
from hft_ray.config import HftConfig, StoreConfig
from hft_ray.execute.core import ExecutorCore
from hft_ray.markets import simulated_markets
from hft_ray.report import journal_summary
from hft_ray.risk.core import RiskCore
from hft_ray.store import LocalStore, RedisStore, Store, StoreUnavailable, check, open_store
from hft_ray.store.base import STORE_UNAVAILABLE, Corruption
from hft_ray.store.local import MAGIC
from hft_ray.store.redis import journal_key
from hft_ray.types import ExecutionReport
from tests.conftest import RedisServer, free_port, typed
from tests.test_executor_core import Harness

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
        await check(store)
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
    from hft_ray.store import LocalStore, RedisStore, check

    kind, where, run_id = sys.argv[1:4]

    async def main():
        store = (LocalStore(Path(where) / run_id, "executor0") if kind == "local"
                 else RedisStore(where, run_id))
        await check(store)
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

    async def write(i: int, start: bool) -> None:
        store = RedisStore(redis_server.url, run_id)
        await store.verify(create=start)  # after the restart: the run's epoch is still there
        await store.append({"type": "fill", "ts_ns": i, "i": i})
        await store.close()

    async def read() -> list[dict]:
        store = RedisStore(redis_server.url, run_id)
        try:
            return await store.read_journal()
        finally:
            await store.close()

    asyncio.run(write(1, start=True))
    redis_server.stop()
    redis_server.start()
    asyncio.run(write(2, start=False))
    assert asyncio.run(read()) == [
        {"type": "fill", "ts_ns": 1, "i": 1},
        {"type": "fill", "ts_ns": 2, "i": 2},
    ]


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
        assert (reader.last_read.torn, reader.last_read.corrupt_records) == (1, 0)

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
        await check(store)
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


BUSY = """
local t = redis.call('TIME')
local deadline = t[1] * 1000000 + t[2] + tonumber(ARGV[1])
while true do
  t = redis.call('TIME')
  if t[1] * 1000000 + t[2] >= deadline then return 1 end
end
"""


async def _until_busy(probe: aioredis.Redis) -> None:
    """Wait until the server stops answering `probe` (connected before: a slow connect
    is not mistaken for a busy server)."""
    while True:
        try:
            await probe.ping()
        except RedisTimeoutError:
            return
        await asyncio.sleep(0.01)


def test_a_write_redis_took_after_the_client_gave_up_is_read_once(
    redis_server: RedisServer,
) -> None:
    """The lost answer: Redis is busy, the client times out, Redis then runs the XADD it had
    received, and the client's retry writes it again. The reader returns it once."""

    async def scenario() -> None:
        run_id = f"u{uuid.uuid4().hex[:8]}"
        store = RedisStore(redis_server.url, run_id, timeout_s=0.3)
        await check(store)
        await store.append({"type": "decision", "ts_ns": 1, "opp_id": "a"})
        await store.flush()
        blocker = aioredis.from_url(redis_server.url)
        probe = aioredis.from_url(redis_server.url, socket_timeout=0.2, retry=Retry(NoBackoff(), 0))
        await probe.ping()
        busy = asyncio.create_task(blocker.eval(BUSY, 0, 1_000_000))
        await _until_busy(probe)
        await store.append({"type": "intent", "ts_ns": 2, "opp_id": "b"})
        with pytest.raises(StoreUnavailable, match=r"did not answer within 0\.3 s"):
            await store.flush()
        await busy
        for client in (blocker, probe):
            await client.aclose()
        await store.flush()  # the retry: the record is now in the stream twice
        raw = redis.Redis.from_url(redis_server.url)
        assert raw.xlen(journal_key(run_id)) >= 3
        assert [r["opp_id"] for r in await store.read_journal()] == ["a", "b"]
        assert store.last_read.duplicates == raw.xlen(journal_key(run_id)) - 2
        assert store.last_read.missing == 0
        await store.close()

    asyncio.run(scenario())


def _fills(n: int) -> list[dict]:
    return [{"type": "fill", "ts_ns": 1_000 + i, "i": i, "venue": "okx"} for i in range(n)]


def _written(tmp_path: Path, records: list[dict]) -> tuple[Path, list[int]]:
    """Records appended by one writer; its segment and each frame's offset."""

    async def write() -> None:
        store = LocalStore(tmp_path, "executor0")
        for r in records:
            await store.append(r)
        await store.close()

    asyncio.run(write())
    segment = tmp_path / "journal" / "executor0.log"
    offsets = [m.start() for m in re.finditer(re.escape(MAGIC), segment.read_bytes())]
    return segment, offsets


def _read(tmp_path: Path) -> tuple[list[dict], LocalStore]:
    reader = LocalStore(tmp_path, "report")
    return asyncio.run(reader.read_journal()), reader


def test_a_corrupt_byte_costs_one_record_and_says_where(tmp_path: Path) -> None:
    segment, offsets = _written(tmp_path, _fills(132))
    data = bytearray(segment.read_bytes())
    data[offsets[40] + 20] ^= 0x01  # one bit of fill 40's payload
    segment.write_bytes(bytes(data))
    journal, reader = _read(tmp_path)
    assert [r["i"] for r in journal] == [i for i in range(132) if i != 40]
    read = reader.last_read
    assert read.corrupt_records == 1 and read.missing == 1 and read.torn == 0
    assert read.corrupt[0] == Corruption(str(segment), offsets[40], offsets[41] - offsets[40])
    assert read.summary()["corrupt"] == [
        {"segment": str(segment), "offset": offsets[40], "length": offsets[41] - offsets[40]}
    ]


def test_records_after_a_torn_write_are_read(tmp_path: Path) -> None:
    """A writer died in the middle of a write; its restarted process appended after it."""
    segment, offsets = _written(tmp_path, _fills(10))
    data = segment.read_bytes()
    segment.write_bytes(data[: offsets[9] + 7])  # the tenth write, torn
    _written(tmp_path, _fills(15)[10:])  # the writer's next process
    journal, reader = _read(tmp_path)
    assert [r["i"] for r in journal] == [i for i in range(15) if i != 9]
    assert reader.last_read.corrupt[0].offset == offsets[9]
    assert (reader.last_read.corrupt_records, reader.last_read.torn) == (1, 0)
    assert reader.last_read.missing == 0  # its last record: no later one shows the gap


def test_old_format_segments_are_read_and_resynchronised(tmp_path: Path) -> None:
    """Segments written before frames had a magic and an id (`<u32 len><u32 crc32><msgpack>`)
    are read, a corrupt old frame is skipped, and a new writer appends after old frames."""
    records = _fills(6)
    old = b""
    starts = []
    for r in records[:4]:
        payload = msgpack.packb(r, use_bin_type=True)
        starts.append(len(old))
        old += struct.pack("<II", len(payload), zlib.crc32(payload)) + payload
    bad = bytearray(old)
    bad[starts[1] + 3] ^= 0x80  # the second frame's length, far too large now
    (tmp_path / "journal").mkdir()
    (tmp_path / "journal" / "executor0.log").write_bytes(bytes(bad))
    _written(tmp_path, records[4:])
    journal, reader = _read(tmp_path)
    assert [r["i"] for r in journal] == [0, 2, 3, 4, 5]
    assert [(c.offset, c.length) for c in reader.last_read.corrupt] == [
        (starts[1], starts[2] - starts[1])
    ]


def test_a_frame_stored_twice_is_read_once(tmp_path: Path) -> None:
    segment, offsets = _written(tmp_path, _fills(4))
    data = segment.read_bytes()
    segment.write_bytes(data + data[offsets[2] : offsets[3]])
    journal, reader = _read(tmp_path)
    assert [r["i"] for r in journal] == [0, 1, 2, 3]
    assert reader.last_read.duplicates == 1


@settings(max_examples=60, deadline=None)
@given(
    n=st.integers(1, 40),
    damage=st.lists(
        st.tuples(st.floats(0, 1, exclude_max=True), st.integers(1, 255)), min_size=1, max_size=5
    ),
    cut=st.one_of(st.none(), st.floats(0, 1)),
)
def test_damage_loses_only_the_frames_it_touched(
    tmp_path_factory: pytest.TempPathFactory,
    n: int,
    damage: list[tuple[float, int]],
    cut: float | None,
) -> None:
    """Flipped bytes anywhere, and the segment maybe cut short: every frame left whole is
    read, nothing else is, and nothing raises."""
    root = tmp_path_factory.mktemp("fuzz")
    segment, offsets = _written(root, _fills(n))
    whole = segment.read_bytes()
    data = bytearray(whole)
    ends = [*offsets[1:], len(data)]
    for where, flip in damage:
        data[int(where * len(data))] ^= flip
    if cut is not None:
        del data[int(cut * len(data)) :]
    touched = {
        i
        for i, (start, end) in enumerate(zip(offsets, ends, strict=True))
        if data[start:end] != whole[start:end]
    }
    segment.write_bytes(bytes(data))
    journal, reader = _read(root)
    assert [r["i"] for r in journal] == [i for i in range(n) if i not in touched]
    read = reader.last_read
    lost = sum(c.length for c in read.corrupt)
    assert lost + sum(ends[i] - offsets[i] for i in range(n) if i not in touched) <= len(data)


def test_an_intent_that_could_not_be_made_durable_is_journaled_as_aborted(
    make_config: Callable[..., HftConfig], tmp_path: Path, redis_server: RedisServer
) -> None:
    """Redis is down when the intent must be durable: nothing is sent, and when Redis is back
    the intent reaches the journal followed by its abort, which every reader books as a
    trade that never happened."""
    config = make_config()
    run_id = f"a{uuid.uuid4().hex[:8]}"
    store = RedisStore(redis_server.url, run_id, timeout_s=0.3, writer="executor0")
    h = Harness(config, tmp_path, store=store)
    approval = h.approval("binance", "okx", 0.5)

    async def scenario() -> tuple[ExecutionReport | None, list[dict], list[ExecutionReport]]:
        await check(store)
        redis_server.stop()
        try:
            report = await h.core.run(approval)
        finally:
            redis_server.start()
        await store.flush()  # the queued intent and its abort leave together
        journal = await store.read_journal()
        restarted = ExecutorCore(
            config, h.universe, simulated_markets(config), h.venues, store, LiveClock()
        )
        settled = await restarted.reconcile(typed(journal))
        assert not restarted.admit("t1")  # never to be traded again
        await store.close()
        return report, journal, settled

    report, journal, settled = asyncio.run(scenario())
    assert report is not None and report.fills == () and h.core.aborted == 1
    assert all(ex.fetch("t1B") is None and ex.fetch("t1S") is None for ex in h.exchanges.values())
    assert [(r["type"], r.get("reason")) for r in journal] == [
        ("intent", None),
        ("execution", STORE_UNAVAILABLE),
    ]
    assert settled == []  # nothing left for a restarted executor to settle
    core = RiskCore(config, h.universe, simulated_markets(config), TestClock())
    core.restore(None, typed(journal))
    assert core.in_flight_ids() == [] and core.trades == 0 and core.legs_failed == 0
    summary = journal_summary(typed(journal))
    assert (summary["trades"], summary["legs_failed"], summary["positions"]) == (0, 0, {})
