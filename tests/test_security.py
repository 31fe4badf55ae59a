"""A local run admits only clients holding its Ray token, keeps secrets out of every worker's
environment, and never writes a secret anywhere: one run with sentinel credentials against
a venue that refuses them, then every output is searched."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from hft_ray import run_registry
from tests.conftest import RedisServer, default_config_dict, free_port, merge
from tests.exchange_server import ExchangeServer, _binance_capture

pytestmark = [pytest.mark.slow]


@dataclass
class TokenRun:
    proc: subprocess.Popen[str]
    record: run_registry.RunAddress
    env: dict[str, str]  # the operator's environment: home holds the token
    stranger: dict[str, str]  # someone on the network: no token


def _env(home: Path, state: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_", "HFT_RAY_"))}
    env.update(HOME=str(home), **{run_registry.STATE_DIR_ENV: str(state)})
    return env


_HFT_RAY_RUN = (sys.executable, "-m", "hft_ray.cli", "run")


def _start_run(
    config: Path, duration_s: int, env: dict[str, str], cwd: Path
) -> tuple[subprocess.Popen[str], run_registry.RunAddress]:
    """`hft-ray run` in its own environment, once it has recorded where it can be reached
    (in that environment's state directory)."""
    proc = subprocess.Popen(
        [*_HFT_RAY_RUN, "--config", str(config), "--duration", str(duration_s)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=cwd,
    )
    saved = os.environ[run_registry.STATE_DIR_ENV]
    os.environ[run_registry.STATE_DIR_ENV] = env[run_registry.STATE_DIR_ENV]
    try:
        deadline = time.monotonic() + 180
        while not (live := run_registry.live_runs()):
            assert proc.poll() is None, proc.communicate()[1][-3000:]
            assert time.monotonic() < deadline, "the run never recorded its address"
            time.sleep(0.2)
    finally:
        os.environ[run_registry.STATE_DIR_ENV] = saved
    return proc, live[0]


@pytest.fixture(scope="module")
def token_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TokenRun]:
    """`hft-ray run` as a user starts it: its own local Ray, the auth mode left to hft_ray."""
    root = tmp_path_factory.mktemp("token_run")
    env = _env(root / "home", root / "state")
    (root / "home").mkdir()
    config = merge(
        default_config_dict(),
        {
            "run": {"runs_dir": str(root / "runs")},
            "metrics": {"export_port": free_port()},
            "status": {"port": free_port()},
        },
    )
    path = root / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    proc, record = _start_run(path, 300, env, root)
    stranger = _env(root / "stranger", root / "stranger_state")
    for knob in ("connect", "reconnect"):  # refused either way: sooner
        stranger[f"RAY_gcs_rpc_server_{knob}_timeout_s"] = "3"
    (root / "stranger").mkdir()
    yield TokenRun(proc, record, env, stranger)
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
    proc.communicate(timeout=180)


def _cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "hft_ray.cli", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )


def test_the_local_run_uses_token_auth_with_a_private_token(token_run: TokenRun) -> None:
    token = Path(token_run.env["HOME"], ".ray", "auth_token")
    assert token.exists() and token.stat().st_mode & 0o077 == 0
    ok = _cli(token_run.env, "status", "--run", token_run.record.run_dir, "--json")
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout)["run_id"] == token_run.record.run_id


@pytest.mark.parametrize("mode", ["token", "disabled"])
def test_a_client_without_the_token_can_neither_halt_nor_reach_an_actor(
    token_run: TokenRun, mode: str
) -> None:
    stranger = {**token_run.stranger, "RAY_AUTH_MODE": mode}
    record = token_run.record
    # Without a token Ray's client gives up fast; believing auth is off, it retries for long.
    for command in ("halt", "resume", "status") if mode == "token" else ("halt",):
        proc = _cli(stranger, command, "--address", record.address, "--namespace", record.namespace)
        assert proc.returncode == 3, (command, proc.stdout, proc.stderr[-2000:])
        assert "hft-ray: cluster error" in proc.stderr
    raw = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import ray, sys\n"
            f"ray.init(address={record.address!r}, namespace={record.namespace!r})\n"
            "risk = ray.get_actor('hft_ray_risk')\n"
            "print(ray.get(risk.halt.remote(reason='stranger'), timeout=20))\n",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=stranger,
    )
    try:  # refused, or still knocking after 20 s (Ray's client retries): either way not in
        out, _ = raw.communicate(timeout=20)
        assert raw.returncode != 0 and "stranger" not in out
    except subprocess.TimeoutExpired:
        raw.kill()
        raw.communicate()
    # The run is untouched.
    state = json.loads(_cli(token_run.env, "status", "--run", record.run_dir, "--json").stdout)
    assert state["state"] == "ACTIVE"


SENTINELS = {
    "HFT_SENTINEL_KEY": "sentinel-api-key-5d41402abc",
    "HFT_SENTINEL_SECRET": "sentinel-api-secret-7d793037a0",
    "HFT_SENTINEL_REDIS": "sentinel-redis-pw-9e107d9d37",
}


class ThreadedServer:
    """A local exchange server on its own event loop, for a run in another process."""

    def __init__(self, server: ExchangeServer) -> None:
        self.server = server
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)

    def __enter__(self) -> ExchangeServer:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self.server.start(), self._loop).result(30)
        return self.server

    def __exit__(self, *exc: object) -> None:
        asyncio.run_coroutine_threadsafe(self.server.stop(), self._loop).result(30)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)


def _environ_of(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return b""


def _http(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=10) as resp:
        body: bytes = resp.read()
        return body


def test_secrets_reach_no_output_and_no_worker_environment(tmp_path: Path) -> None:
    """Sentinel API keys against a venue that refuses them (every order an authentication
    error, until the breaker halts the run) and a Redis password: not one of them in stdout,
    stderr, the run directory, the journal, Ray's logs, the status document, the metrics, or
    the environment of any process of the run's Ray instance."""
    snapshot, _ = _binance_capture()
    mid = (float(snapshot["bids"][0][0]) + float(snapshot["asks"][0][0])) / 2
    redis_server = RedisServer(tmp_path / "redis", password=SENTINELS["HFT_SENTINEL_REDIS"])
    (tmp_path / "redis").mkdir()
    redis_server.start()
    metrics_port, status_port = free_port(), free_port()
    with ThreadedServer(ExchangeServer("binance")) as server:
        config = default_config_dict()
        nkn = {"USDT": 50_000, "NKN": 100_000}
        config = merge(
            config,
            {
                "run": {"runs_dir": str(tmp_path / "runs")},
                "symbols": [server.symbol],
                "metrics": {"export_port": metrics_port},
                "status": {"port": status_port},
                "store": {"url": redis_server.url, "password_env": "HFT_SENTINEL_REDIS"},
                # the simulated venue quotes 1 % above the served book: an arbitrage to try
                "sim": {
                    "initial_prices": {server.symbol: mid * 1.01},
                    "dislocations_per_min": 0,
                    "volatility_bps": 0.5,
                },
            },
        )
        config["venues"] = {
            "binance": {
                "kind": "ccxt",
                "exchange": "binance",
                "urls": server.ccxt_urls(),
                "options": server.ccxt_options(),
                "api_key_env": "HFT_SENTINEL_KEY",
                "secret_env": "HFT_SENTINEL_SECRET",
                "balances": nkn,
            },
            "okx": {
                **config["venues"]["okx"],
                "balances": nkn,
                "markets": {server.symbol: {"tick": 0.0001, "lot": 1, "min_notional": 1}},
            },
        }
        path = tmp_path / "config.yaml"
        path.write_text(yaml.safe_dump(config))
        env = {**_env(tmp_path / "home", tmp_path / "state"), **SENTINELS}
        (tmp_path / "home").mkdir()
        proc, record = _start_run(path, 15, env, tmp_path)
        time.sleep(6)  # orders are tried and refused meanwhile
        served = [
            _http(f"http://127.0.0.1:{status_port}/status"),
            _http(f"http://127.0.0.1:{status_port}/metrics"),
            _http(f"http://127.0.0.1:{metrics_port}/metrics"),
        ]
        workers = run_registry.process_tree([pid for pid, _ in record.ray_procs])
        environs = {pid: _environ_of(pid) for pid in workers}
        out, err = proc.communicate(timeout=180)
    redis_server.stop()
    assert proc.returncode is not None
    assert len(workers) > 5  # GCS, raylet, agents and the run's actors
    assert "AuthenticationError" in out + err  # the venue refused the keys, and it was said
    texts = {"stdout": out.encode(), "stderr": err.encode()}
    texts.update({f"served {i}": body for i, body in enumerate(served)})
    texts.update({f"environ of {pid}": body for pid, body in environs.items()})
    for root in (tmp_path / "runs", tmp_path / "redis", Path(record.session_dir)):
        texts.update({str(f): f.read_bytes() for f in root.rglob("*") if f.is_file()})
    for name, secret in SENTINELS.items():
        leaks = [where for where, body in texts.items() if secret.encode() in body]
        assert not leaks, f"{name} leaked into {leaks[:5]}"
