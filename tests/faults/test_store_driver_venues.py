"""Faults outside the actors: the store going away, the driver SIGKILLed, venues that
refuse, time out, rate-limit or go dark."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from hft_ray import names
from hft_ray.config import HftConfig
from hft_ray.store import LocalStore
from tests.conftest import RedisServer
from tests.faults.conftest import Fault, cont, fault_run, pid_of, stop
from tests.faults.invariants import fills_by_hand
from tests.test_end_to_end import on

pytestmark = [pytest.mark.faults, pytest.mark.ray, pytest.mark.slow]

#: Seconds Ray takes to kill the actors of a driver that died (its owner-death cleanup).
OWNER_DEATH_S = 2.0


@pytest.mark.redis
def test_redis_stopped_for_seconds_and_restarted(
    ray_session: str, redis_server: RedisServer, fault_config: Callable[..., HftConfig]
) -> None:
    """With AOF persistence, as shipped: trading fails closed while Redis is away, nothing
    journaled is lost, and trading resumes once the store answers again."""
    config = fault_config("fused", store={"url": redis_server.url})
    faults = [
        Fault(3, "redis stopped", redis_server.stop),
        Fault(7, "redis started", redis_server.start),
    ]
    outcome = fault_run(config, faults, duration_s=13)
    down_from, down_to = outcome.done["redis stopped"], outcome.done["redis started"]
    # No trade begins while the store is away (once a lease the gate held ran out).
    grace = int((config.risk.lease_ttl_ms / 1e3 + 0.5) * 1e9)
    begun = [r for r in outcome.journal if r["type"] == "intent"]
    assert not [r for r in begun if down_from + grace < r["ts_ns"] < down_to]
    # Trading resumes once the store answers, unless a trade was caught mid-way by the
    # outage: a record after its intent was lost, and risk holds the run HALTED
    # (`journal_write_failed`) for an operator, failing closed as documented.
    halted = outcome.report["risk_breakers"]
    assert outcome.after("redis started") or "journal_write_failed" in halted, (
        "no trade once Redis was back",
        halted,
    )


def test_the_driver_killed_then_a_new_run_starts_at_once(
    ray_session: str, tmp_path: Path, fault_config: Callable[..., HftConfig]
) -> None:
    """kill -9 of `hft-ray run`: its actors die with it (Ray owns them by the driver), a new
    run in the same namespace starts at once and trades, nothing of the old run trades
    after, and `hft-ray report` rebuilds what the old run left from its journal."""
    runs = tmp_path / "old"
    config_file = tmp_path / "run.yaml"
    config_file.write_text(yaml.safe_dump(on("fused", run={"runs_dir": str(runs)})))
    proc = subprocess.Popen(
        [
            *(sys.executable, "-m", "hft_ray.cli", "run", "--config", str(config_file)),
            *("--duration", "60", "--address", ray_session),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert proc.stdout is not None
    for line in proc.stdout:  # trading: status lines come
        if line.startswith("[") and "trades" in line and " trades    0" not in line:
            break
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    killed_at = time.time_ns()
    (old_dir,) = list(runs.iterdir())

    outcome = fault_run(fault_config("fused"), [Fault(0, "new run", lambda: None)], 8)
    assert outcome.report["trades"] > 0

    old = asyncio.run(LocalStore(old_dir, "test").read_journal())
    # Ray kills a dead driver's actors within moments: nothing of the old run trades after.
    fenced_by = killed_at + int(OWNER_DEATH_S * 1e9)
    late = [r for r in old if r["type"] in ("decision", "intent") and r["ts_ns"] > fenced_by]
    assert late == [], [(r["type"], (r["ts_ns"] - killed_at) / 1e9) for r in late[:3]]
    rebuilt = subprocess.run(
        [sys.executable, "-m", "hft_ray.cli", "report", str(old_dir), "--json"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert rebuilt.returncode == 0, rebuilt.stderr
    positions = json.loads(rebuilt.stdout)["positions"]
    for venue, assets in fills_by_hand(old).items():
        for asset, value in assets.items():
            assert positions[venue][asset] == pytest.approx(value, abs=1e-9)


def test_venue_faults_trip_breakers_and_the_others_trade_within_limits(
    ray_session: str, fault_config: Callable[..., HftConfig]
) -> None:
    """gateio in a 429 storm with timeouts, okx rejecting: the reject-rate breaker turns
    trading REDUCING as configured; then binance's account goes dark (SIGSTOP) and comes
    back. Every invariant holds; trades on the healthy pair go on."""
    config = fault_config(
        "distributed",
        venues={
            "gateio": {"rate_limit_rate": 0.6, "timeout_rate": 0.2},
            "okx": {"reject_rate": 0.5},
        },
        risk={"max_reject_rate": 0.3, "reject_rate_window": 10},
    )
    pids: dict[str, int] = {}

    def dark() -> None:
        pids["binance"] = pid_of(names.venue("binance"))
        stop(pids["binance"])

    faults = [
        Fault(6, "binance dark", dark),
        Fault(9, "binance back", lambda: cont(pids["binance"])),
    ]
    try:
        outcome = fault_run(config, faults, duration_s=13)
    finally:
        for pid in pids.values():
            cont(pid)
    orders = [r for r in outcome.journal if r["type"] == "order"]
    statuses = {(r["venue"], r["status"]) for r in orders}
    assert any(v == "gateio" and s != "closed" for v, s in statuses), statuses
    assert any(v == "okx" and s != "closed" for v, s in statuses), statuses
    # The breaker tripped as configured (it may have been cleared by nobody: it holds).
    assert "reject_rate" in outcome.report["risk_breakers"], outcome.report["risk_breakers"]
    assert outcome.report["trades"] > 0
