"""The journal and state store: Redis when configured, else an embedded file store."""

from __future__ import annotations

import os
from pathlib import Path

from hft_ray.config import ConfigError, StoreConfig
from hft_ray.store.base import Store, StoreUnavailable
from hft_ray.store.local import LocalStore
from hft_ray.store.redis import RedisStore

__all__ = ["LocalStore", "RedisStore", "Store", "StoreUnavailable", "open_store"]


def open_store(config: StoreConfig, run_id: str, run_dir: Path, writer: str) -> Store:
    """The store a config names, for one writer (an actor) of one run."""
    if config.url is None:
        return LocalStore(run_dir, writer, fsync=config.fsync)
    password = None
    if config.password_env is not None:
        password = os.environ.get(config.password_env)
        if password is None:
            raise ConfigError(
                f"store.password_env: environment variable {config.password_env} is not set"
            )
    return RedisStore(config.url, run_id, password=password)
