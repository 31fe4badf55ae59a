"""The journal and state store: Redis when configured, else an embedded file store."""

from __future__ import annotations

import asyncio
from pathlib import Path

from hft_ray.config import StoreConfig, read_secret
from hft_ray.store.base import JournalRead, Store, StoreLost, StoreUnavailable
from hft_ray.store.local import LocalStore
from hft_ray.store.redis import RedisStore

__all__ = [
    "JournalRead",
    "LocalStore",
    "RedisStore",
    "Store",
    "StoreLost",
    "StoreUnavailable",
    "check",
    "open_store",
]

_CHECK_S = 5.0


def open_store(config: StoreConfig, run_id: str, run_dir: Path, writer: str) -> Store:
    """The store a config names, for one writer (an actor) of one run."""
    if config.url is None:
        return LocalStore(run_dir, writer, fsync=config.fsync)
    password = read_secret(config.password_env, config.password_file, "store.password")
    return RedisStore(config.url, run_id, password=password, writer=writer)


async def check(store: Store, *, start: bool = True) -> None:
    """At a run's start: raise `StoreUnavailable` with one line (a refused password, nothing
    listening, no answer) unless the store answers within a few seconds; `start` also writes
    the run's epoch, by which every writer later detects a store that lost its data."""
    try:
        await asyncio.wait_for(store.verify(create=start), _CHECK_S)
    except TimeoutError:
        raise StoreUnavailable(
            f"store: {store.where} did not answer within {_CHECK_S:g} s"
        ) from None
