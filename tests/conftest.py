"""Shared fixtures: one local Ray instance and one real Redis server per test session."""

from __future__ import annotations

import importlib.resources
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
import yaml

from hft_ray.config import HftConfig, deep_merge, parse_config
from hft_ray.journal import JournalRecord, read_records

os.environ.setdefault("RAY_AUTH_MODE", "disabled")  # the session's instance; test_security: token
# Runs record where they can be reached (hft_ray.run_registry): keep the tests' records apart.
os.environ.setdefault("HFT_RAY_STATE_DIR", tempfile.mkdtemp(prefix="hft_ray_state_"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def typed(journal: list[dict[str, Any]]) -> list[JournalRecord]:
    """A journal as read from a store, decoded; every record the code wrote must decode."""
    records, skipped = read_records(journal)
    assert skipped == []
    return records


def default_config_dict() -> dict[str, Any]:
    text = importlib.resources.files("hft_ray.configs").joinpath("local.yaml").read_text()
    data: dict[str, Any] = yaml.safe_load(text)
    return data


merge = deep_merge


@pytest.fixture
def make_config(tmp_path: Path) -> Callable[..., HftConfig]:
    """The packaged default with overrides merged in, writing runs under tmp_path."""

    def make(**override: Any) -> HftConfig:
        data = merge(default_config_dict(), {"run": {"runs_dir": str(tmp_path / "runs")}})
        return parse_config(merge(data, override))

    return make


class RedisServer:
    """A real redis-server on a free loopback port, which a test may stop and start again."""

    def __init__(self, workdir: Path, password: str | None = None) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            pytest.fail("redis-server is not installed: run tests/run.sh, which installs it")
        self.binary = binary
        self.port = free_port()
        self.workdir = workdir
        self.password = password
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [
                self.binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
                "--dir",
                str(self.workdir),
                *(["--requirepass", self.password] if self.password else []),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        client = redis.Redis(port=self.port, password=self.password)
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                return
            except redis.ConnectionError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(10)
            self.proc = None


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def ray_session() -> Iterator[str]:
    """The session's one local Ray instance; yields its GCS address for subprocesses."""
    import ray

    ray.init(
        num_cpus=4,
        include_dashboard=False,
        namespace="hft_ray",
        logging_level="WARNING",
    )
    yield ray.get_runtime_context().gcs_address
    ray.shutdown()
