"""The Redis store: the journal as one Redis Stream per run, state as msgpack strings.

Appends are queued and leave in pipelined batches (one round trip for many records); `flush`
waits until everything queued is acknowledged by Redis. A failed batch stays queued, in order,
for the next attempt, and `flush` raises `StoreUnavailable` until Redis answers again.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import msgpack
import redis.asyncio as aioredis
from redis.exceptions import RedisError

from hft_ray.store.base import Record, StoreUnavailable

KEY_PREFIX = "hft_ray"
_FIELD = b"d"
_READ_CHUNK = 5_000


def journal_key(run_id: str) -> str:
    return f"{KEY_PREFIX}:{run_id}:journal"


def state_key(run_id: str, key: str) -> str:
    return f"{KEY_PREFIX}:{run_id}:state:{key}"


class RedisStore:
    def __init__(
        self, url: str, run_id: str, *, password: str | None = None, timeout_s: float = 2.0
    ) -> None:
        self._client = aioredis.from_url(
            url,
            password=password,
            socket_timeout=timeout_s,
            socket_connect_timeout=timeout_s,
            retry_on_timeout=False,
        )
        self._run_id = run_id
        self._journal = journal_key(run_id)
        self._queue: list[bytes] = []
        self._drain_lock = asyncio.Lock()
        self._pending_drain: asyncio.Task[None] | None = None

    async def append(self, record: Record) -> None:
        self._queue.append(msgpack.packb(record, use_bin_type=True))
        if self._pending_drain is None or self._pending_drain.done():
            self._pending_drain = asyncio.get_running_loop().create_task(self._drain_quietly())

    async def _drain_quietly(self) -> None:
        # On failure the records stay queued; flush() reports the outage to whoever must know.
        with contextlib.suppress(StoreUnavailable):
            await self._drain()

    async def _drain(self) -> None:
        async with self._drain_lock:
            while self._queue:
                batch = self._queue[:]
                try:
                    async with self._client.pipeline(transaction=False) as pipe:
                        for payload in batch:
                            pipe.xadd(self._journal, {_FIELD: payload})
                        await pipe.execute()
                except (RedisError, OSError) as err:
                    raise StoreUnavailable(f"redis journal: {err.__class__.__name__}") from None
                del self._queue[: len(batch)]

    async def flush(self) -> None:
        await self._drain()

    async def read_journal(self) -> list[Record]:
        out: list[Record] = []
        start = "-"
        try:
            while True:
                rows: list[Any] = (
                    await self._client.xrange(self._journal, start, "+", count=_READ_CHUNK) or []
                )
                out.extend(msgpack.unpackb(fields[_FIELD], raw=False) for _, fields in rows)
                if len(rows) < _READ_CHUNK:
                    return out
                ms, n = rows[-1][0].decode().split("-")
                start = f"{ms}-{int(n) + 1}"
        except (RedisError, OSError) as err:
            raise StoreUnavailable(f"redis journal read: {err.__class__.__name__}") from None

    async def put_state(self, key: str, value: Record) -> None:
        try:
            await self._client.set(state_key(self._run_id, key), msgpack.packb(value))
        except (RedisError, OSError) as err:
            raise StoreUnavailable(f"redis state {key}: {err.__class__.__name__}") from None

    async def get_state(self, key: str) -> Record | None:
        try:
            raw = await self._client.get(state_key(self._run_id, key))
        except (RedisError, OSError) as err:
            raise StoreUnavailable(f"redis state {key}: {err.__class__.__name__}") from None
        return None if raw is None else msgpack.unpackb(raw, raw=False)

    async def ping(self) -> bool:
        try:
            return bool(await self._client.ping())
        except (RedisError, OSError):
            return False

    async def close(self) -> None:
        try:
            await self._drain()
        finally:
            await self._client.aclose()
