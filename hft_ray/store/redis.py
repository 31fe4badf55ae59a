"""The Redis store: the journal as one Redis Stream per run, state as msgpack strings.

Appends are queued and leave in pipelined batches (one round trip for many records); `flush`
waits until everything queued is acknowledged by Redis. A failed batch stays queued, in order,
for the next attempt, and `flush` raises `StoreUnavailable` until Redis answers again: no
record appended is dropped, acknowledged or not. A batch that failed may still have reached
Redis (the answer was lost), so a retry can store a record twice; each entry carries its
record id and `read_journal` keeps the first. A caller that gave up on a record it needed
durable journals that it did (`store.base`), since the record itself may still arrive.

Data loss is detected by the run's epoch, `hft_ray:<run>:epoch`, a random token written once
at the run's start (`verify(create=True)`: the driver's `check`, risk's first incarnation);
`verify()` without `create` requires it. Every new connection, so every reconnect after an
outage, reads it before any command runs on it, and `verify` reads it each time: missing or
changed means Redis came back without the run's data, and from then on every call raises
`StoreLost`. A store that never saw the epoch reads whatever is there, but writes no journal
record until the epoch exists (they wait in the queue), so a process that first connects
after a loss cannot extend a journal with a hole in it.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from typing import Any, cast
from urllib.parse import urlsplit

import msgpack
import redis.asyncio as aioredis
from redis.asyncio.connection import AbstractConnection
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import AuthenticationError, RedisError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from hft_ray.store.base import (
    JournalRead,
    Record,
    RecordIds,
    StoreLost,
    StoreUnavailable,
    unique_records,
)

KEY_PREFIX = "hft_ray"
_FIELD = b"d"
_ID_FIELD = b"i"
_READ_CHUNK = 5_000


def journal_key(run_id: str) -> str:
    return f"{KEY_PREFIX}:{run_id}:journal"


def state_key(run_id: str, key: str) -> str:
    return f"{KEY_PREFIX}:{run_id}:state:{key}"


def epoch_key(run_id: str) -> str:
    return f"{KEY_PREFIX}:{run_id}:epoch"


def public_url(url: str) -> str:
    """The URL without its user and password, fit for a message."""
    parts = urlsplit(url)
    host = parts.netloc.rpartition("@")[2]
    return f"{parts.scheme}://{host}{parts.path}"


def _reason(err: BaseException, timeout_s: float, password: bool) -> str:
    """What went wrong, in words that quote neither the password nor Redis's own text."""
    if isinstance(err, AuthenticationError):
        if not password:
            return "asks for a password (NOAUTH): set store.password_env"
        return "refused the password (AUTH failed)"
    if isinstance(err, (RedisTimeoutError, TimeoutError)):
        return f"did not answer within {timeout_s:g} s"
    if isinstance(err, (RedisConnectionError, OSError)):
        return f"does not answer ({err.__class__.__name__})"
    return f"failed ({err.__class__.__name__})"


class RedisStore:
    def __init__(
        self,
        url: str,
        run_id: str,
        *,
        password: str | None = None,
        timeout_s: float = 2.0,
        writer: str = "store",
    ) -> None:
        # One immediate retry on a broken connection (the first call after a Redis restart
        # finds its pooled socket closed), none after a timeout: a call fails within
        # `timeout_s`, and a write sent twice is read once (record ids). Every new
        # connection passes `_on_connect` first.
        self._client = aioredis.from_url(
            url,
            password=password,
            socket_timeout=timeout_s,
            socket_connect_timeout=timeout_s,
            retry=Retry(NoBackoff(), 1, supported_errors=(RedisConnectionError,)),
            redis_connect_func=self._on_connect,
        )
        self._has_password = bool(password or urlsplit(url).password)
        self.where = f"redis at {public_url(url)}"
        self._timeout_s = timeout_s
        self._run_id = run_id
        self._journal = journal_key(run_id)
        self._epoch_key = epoch_key(run_id)
        self._epoch: bytes | None = None  # the token this store first saw
        self._lost = ""  # why the store can no longer be trusted, once it cannot
        self._ids = RecordIds(writer)
        self._queue: list[tuple[bytes, bytes]] = []
        self._drain_lock = asyncio.Lock()
        self._pending_drain: asyncio.Task[None] | None = None
        self.last_read = JournalRead()

    def _error(self, err: BaseException, what: str = "") -> StoreUnavailable:
        reason = _reason(err, self._timeout_s, self._has_password)
        return StoreUnavailable(f"store: {self.where} {reason}" + (f" ({what})" if what else ""))

    # -- the epoch ----------------------------------------------------------------------------

    async def _on_connect(self, conn: AbstractConnection) -> None:
        """A new connection (a first one, or a reconnect): read the epoch before anything
        else runs on it."""
        await conn.on_connect()
        await conn.send_command("GET", self._epoch_key)
        found = await conn.read_response()
        try:
            self._see_epoch(found)
        except StoreLost:
            await conn.disconnect()
            raise

    def _refuse_if_lost(self) -> None:
        if self._lost:
            raise StoreLost(self._lost)

    def _see_epoch(self, found: bytes | None) -> None:
        self._refuse_if_lost()
        if self._epoch is None:
            self._epoch = found
        elif found != self._epoch:
            how = "missing" if found is None else "changed"
            self._lost = (
                f"store: {self.where} lost the run's data (epoch key {self._epoch_key} "
                f"{how}: restarted without persistence, or flushed)"
            )
            raise StoreLost(self._lost)

    async def _read_epoch(self) -> None:
        try:
            # bytes: the client does not decode responses
            self._see_epoch(cast("bytes | None", await self._client.get(self._epoch_key)))
        except (RedisError, OSError) as err:
            raise self._error(err) from None

    async def verify(self, create: bool = False) -> None:
        self._refuse_if_lost()
        if create and self._epoch is None:
            try:
                await self._client.set(self._epoch_key, uuid.uuid4().hex.encode(), nx=True)
            except (RedisError, OSError) as err:
                raise self._error(err) from None
        await self._read_epoch()
        if self._epoch is None and not create:
            self._lost = (
                f"store: {self.where} has no epoch for run {self._run_id} ({self._epoch_key}): "
                "it lost the run's data, or the run never started on it"
            )
            raise StoreLost(self._lost)

    async def _journal_epoch(self) -> None:
        """Before a journal write: the epoch must exist (see the module docstring). Until it
        does the write waits in the queue: the run may be starting."""
        if self._epoch is None:
            await self._read_epoch()
            if self._epoch is None:
                raise StoreUnavailable(
                    f"store: {self.where} has no epoch for run {self._run_id} yet "
                    f"({self._epoch_key})"
                )

    # -- the journal --------------------------------------------------------------------------

    async def append(self, record: Record) -> None:
        self._queue.append((self._ids.take().encode(), msgpack.packb(record, use_bin_type=True)))
        if self._pending_drain is None or self._pending_drain.done():
            self._pending_drain = asyncio.get_running_loop().create_task(self._drain_quietly())

    async def _drain_quietly(self) -> None:
        # On failure the records stay queued; flush() reports the outage to whoever must know.
        with contextlib.suppress(StoreUnavailable):
            await self._drain()

    async def _drain(self) -> None:
        async with self._drain_lock:
            self._refuse_if_lost()
            if self._queue:
                await self._journal_epoch()
            while self._queue:
                batch = self._queue[:]
                try:
                    async with self._client.pipeline(transaction=False) as pipe:
                        for rid, payload in batch:
                            pipe.xadd(self._journal, {_FIELD: payload, _ID_FIELD: rid})
                        await pipe.execute()
                except (RedisError, OSError) as err:
                    raise self._error(err, "journal write") from None
                del self._queue[: len(batch)]

    async def flush(self) -> None:
        await self._drain()

    async def read_journal(self) -> list[Record]:
        self._refuse_if_lost()
        entries: list[tuple[str | None, Record]] = []
        start = "-"
        try:
            while True:
                rows: list[Any] = (
                    await self._client.xrange(self._journal, start, "+", count=_READ_CHUNK) or []
                )
                for _, fields in rows:
                    rid = fields.get(_ID_FIELD)
                    record = msgpack.unpackb(fields[_FIELD], raw=False)
                    entries.append((None if rid is None else rid.decode(), record))
                if len(rows) < _READ_CHUNK:
                    break
                ms, n = rows[-1][0].decode().split("-")
                start = f"{ms}-{int(n) + 1}"
        except (RedisError, OSError) as err:
            raise self._error(err, "journal read") from None
        self.last_read = JournalRead()
        return unique_records(entries, self.last_read)

    # -- state --------------------------------------------------------------------------------

    async def put_state(self, key: str, value: Record) -> None:
        self._refuse_if_lost()
        try:
            await self._client.set(state_key(self._run_id, key), msgpack.packb(value))
        except (RedisError, OSError) as err:
            raise self._error(err, f"state {key}") from None

    async def get_state(self, key: str) -> Record | None:
        self._refuse_if_lost()
        try:
            raw = await self._client.get(state_key(self._run_id, key))
        except (RedisError, OSError) as err:
            raise self._error(err, f"state {key}") from None
        return None if raw is None else msgpack.unpackb(raw, raw=False)

    async def ping(self) -> bool:
        try:
            return bool(await self._client.ping())
        except (RedisError, OSError, StoreLost):
            return False

    async def close(self) -> None:
        try:
            await self._drain()
        finally:
            await self._client.aclose()
