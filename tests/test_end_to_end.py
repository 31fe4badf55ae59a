"""The whole pipeline on a real local Ray instance against simulated venues."""

from __future__ import annotations

import asyncio
import gzip
import io
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from hft_ray import names
from hft_ray.cli import EXIT_RUN_FAILED
from hft_ray.config import parse_config
from hft_ray.latency import STAGES
from hft_ray.markets import simulated_markets
from hft_ray.runner import run
from hft_ray.store import LocalStore, RedisStore
from tests.conftest import RedisServer, default_config_dict, merge
from tests.faults.invariants import (
    assert_intents_come_first,
    assert_positions_equal,
    assert_within_risk_limits,
)

pytestmark = [pytest.mark.ray, pytest.mark.slow]

#: Both topologies run the same end-to-end tests.
TOPOLOGIES = ("fused", "distributed")

#: Faster dislocations and some failing orders, so a few seconds show trades and repairs.
BUSY_MARKET: dict[str, Any] = {
    "sim": {"dislocations_per_min": 60},
    "venues": {"okx": {"reject_rate": 0.1}, "gateio": {"timeout_rate": 0.05}},
    "execution": {"order_timeout_ms": 300},
    "detector": {"statarb": {"enabled": True, "lookback": 50, "z_entry": 3.0, "z_exit": 0.5}},
    # Failing legs are the point here: the streak breaker would stop the run that shows them.
    "risk": {"max_consecutive_leg_failures": 1_000},
}


def on(topology: str, **override: Any) -> dict[str, Any]:
    """The default config, busy, in `topology`, with `override` merged in."""
    return merge(
        merge(default_config_dict(), {**BUSY_MARKET, "cluster": {"topology": topology}}),
        override,
    )


@pytest.mark.parametrize("topology", TOPOLOGIES)
def test_cli_run_joins_the_cluster_trades_and_reports(
    ray_session: str, tmp_path: Path, topology: str
) -> None:
    config = tmp_path / "run.yaml"
    config.write_text(
        yaml.safe_dump(on(topology, run={"runs_dir": str(tmp_path / "runs")}), sort_keys=False)
    )
    report_path = tmp_path / "report.json"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "hft_ray.cli",
            "run",
            "--config",
            str(config),
            "--duration",
            "8",
            "--address",
            ray_session,
            "--report",
            str(report_path),
        ],
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    status = [line for line in proc.stdout.splitlines() if line.startswith("[")]
    assert len(status) >= 6 and "risk ACTIVE" in status[-1]
    last_rate = float(status[-1].split("books")[1].split("/s")[0])
    assert last_rate > 100  # the feeds were still alive at the end
    assert f"report: {report_path}" in proc.stdout
    report = json.loads(report_path.read_text())
    assert report["topology"] == topology
    assert report["mode"] == "sim" and report["duration_s"] >= 8
    assert report["venues"] == ["binance", "okx", "gateio"]
    # 3 symbols every 25 ms for 8 s is 960 per venue: all feeds ran the whole time.
    assert all(n > 800 for n in report["book_updates_by_venue"].values())
    assert report["opportunities"] > 0 and report["approved"] > 0 and report["trades"] > 0
    assert report["fees_quote"] > 0
    # Every stage of every trade, hops only where the topology has them.
    stages = [name for _, name in STAGES]
    if topology == "fused":
        stages = [n for n in stages if not n.startswith(("hop_", "batch_"))]
    traded = report["latency_us"]["tick_to_trade"]["count"]
    for name in ("tick_to_detect", "tick_to_trade", "tick_to_ack", *stages):
        stats = report["latency_us"][name]
        assert stats["count"] > 0 and 0 <= stats["p50"] <= stats["p90"] <= stats["p99"], name
        assert stats["p99"] <= stats["max"], name
        assert name == "tick_to_detect" or stats["count"] == traded, name
    assert not {n for n in report["latency_us"] if n.startswith("hop_")} - set(stages)
    bundles = report["placement"]["bundles"]
    assert len(bundles) == {"fused": 2, "distributed": 6}[topology]
    assert all(b["node_id"] == b["actor_node_id"] for b in bundles)
    assert all(b["pinned"] and b["affinity"] == b["cores"] for b in bundles)
    journal = asyncio.run(LocalStore(Path(report["run_dir"]), "test").read_journal())
    assert report["positions_match_journal"]
    assert_positions_equal(report, journal)
    assert_intents_come_first(journal)
    # Legs failed and were repaired, and no limit was breached on the way.
    assert report["legs_failed"] > 0 and report["unwinds"] > 0
    assert_within_risk_limits(parse_config(yaml.safe_load(config.read_text())), journal)


@pytest.mark.redis
@pytest.mark.parametrize("topology", TOPOLOGIES)
def test_run_with_the_redis_store(
    ray_session: str, redis_server: RedisServer, tmp_path: Path, topology: str
) -> None:
    config = parse_config(
        on(topology, run={"runs_dir": str(tmp_path)}, store={"url": redis_server.url})
    )
    out = io.StringIO()
    report = run(config, duration_s=6, out=out)
    assert report["book_updates"] > 0 and report["trades"] > 0
    store = RedisStore(redis_server.url, report["run_id"])
    journal = asyncio.run(store.read_journal())
    assert {"decision", "intent", "order", "fill", "execution"} <= {r["type"] for r in journal}
    kinds = {r["kind"] for r in journal if r["type"] == "intent"}
    assert {"arb", "revert_open"} <= kinds  # both strategies traded
    assert_positions_equal(report, journal)
    assert_intents_come_first(journal)
    assert "report:" in out.getvalue()
    assert not (tmp_path / report["run_id"] / "journal").exists()


def test_a_second_run_in_the_same_namespace_is_refused(ray_session: str, tmp_path: Path) -> None:
    import ray

    from hft_ray.cluster import ClusterError, build_pipeline
    from hft_ray.types import Universe

    @ray.remote(num_cpus=0)
    class Squatter:
        def ping(self) -> bool:
            return True

    squatter = Squatter.options(name=names.RISK).remote()  # type: ignore[attr-defined]
    ray.get(squatter.ping.remote())
    config = parse_config(merge(default_config_dict(), {"run": {"runs_dir": str(tmp_path)}}))
    try:
        with pytest.raises(ClusterError, match="another run is active in Ray namespace 'hft_ray'"):
            build_pipeline(
                config,
                Universe(tuple(config.venues), tuple(config.symbols)),
                simulated_markets(config),
                "r",
                str(tmp_path),
                "hx",
            )
    finally:
        ray.kill(squatter)


@pytest.mark.parametrize(
    ("topology", "pace"), [("fused", "--fast"), ("distributed", "--fast"), ("fused", "4")]
)
def test_a_replay_drives_the_actors_and_every_book_reaches_a_feed(
    ray_session: str, tmp_path: Path, topology: str, pace: str
) -> None:
    """`--fast` in lockstep, `--speed 4` paced: every recorded book reaches a feed, lines the
    run does not know are named, a file cut short fails the run, and the books balance."""
    import os

    from tests.test_replay import write_sim_recording

    data = on(topology, run={"runs_dir": str(tmp_path)})
    recording = tmp_path / "books.jsonl.gz"
    ticks = 200
    write_sim_recording(parse_config(data), recording, ticks=ticks)
    strangers = tmp_path / "strangers.jsonl"  # lines the run does not know: noticed, skipped
    line = {"timestamp": 1, "bids": [[1.0, 1.0]], "asks": [[2.0, 1.0]]}
    strangers.write_text(
        json.dumps({**line, "exchange": "nowhere", "symbol": "BTC/USDT"})
        + "\n"
        + json.dumps({**line, "exchange": "okx", "symbol": "XYZ/USDT"})
        + "\n"
    )
    cut = tmp_path / "cut.jsonl.gz"  # a file cut short: the run finishes and fails
    cut.write_bytes(gzip.compress(strangers.read_bytes() * 50)[:30])
    config = tmp_path / "replay.yaml"
    config.write_text(yaml.safe_dump(data, sort_keys=False))
    report_path = tmp_path / "replay-report.json"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "hft_ray.cli",
            "replay",
            str(recording),
            str(strangers),
            str(cut),
            *(["--fast"] if pace == "--fast" else ["--speed", pace]),
            "--config",
            str(config),
            "--report",
            str(report_path),
        ],
        capture_output=True,
        text=True,
        timeout=240,
        env={**os.environ, "RAY_ADDRESS": ray_session},
    )
    assert proc.returncode == EXIT_RUN_FAILED, proc.stderr[-3000:]
    assert "1 replay files could not be read to their end" in proc.stderr
    assert "1 files cut short" in proc.stdout and f"{cut}:1: cannot read" in proc.stdout
    report = json.loads(report_path.read_text())
    assert report["mode"] == "replay" and report["topology"] == topology
    replay = report["replay"]
    assert replay["lines"] == ticks * 9 and replay["malformed_lines"] == []
    assert [u.split(": ", 1)[1] for u in replay["unknown"]] == [
        "exchange nowhere is not a venue of the run: its lines are skipped",
        "symbol XYZ/USDT is not a symbol of the run: its lines are skipped",
    ]
    assert len(replay["unreadable_files"]) == 1
    assert report["book_updates"] == ticks * 9  # every recorded book reached a feed
    assert report["opportunities"] > 0 and report["trades"] > 0
    journal = asyncio.run(LocalStore(Path(report["run_dir"]), "test").read_journal())
    assert_positions_equal(report, journal)


def _cli(*args: str, address: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "hft_ray.cli", *args, "--address", address],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.mark.parametrize("topology", TOPOLOGIES)
def test_risk_and_an_executor_crash_mid_run_and_the_books_still_balance(
    ray_session: str, tmp_path: Path, topology: str
) -> None:
    """Kill the risk actor and an executor (fused: the trading node, which is the executor)
    while trading; Ray restarts both, risk restores its state and replays the journal, the
    executor reconciles by client id; an operator halts and resumes through the CLI
    meanwhile. The report, the journal and the venues still agree."""
    import time

    import ray

    config = parse_config(on(topology, run={"runs_dir": str(tmp_path)}))
    executor = names.node(0) if topology == "fused" else names.executor(0)
    t0 = time.monotonic()
    done: set[str] = set()
    procs: dict[str, subprocess.Popen[str]] = {}

    def chaos() -> bool:
        t = time.monotonic() - t0
        if t > 3 and "risk" not in done:
            done.add("risk")
            ray.kill(ray.get_actor(names.RISK), no_restart=False)
        if t > 5 and "executor" not in done:
            done.add("executor")
            ray.kill(ray.get_actor(executor), no_restart=False)
        if t > 6 and "halt" not in done:
            done.add("halt")
            procs["halt"] = _cli("halt", "--reason", "test", "--json", address=ray_session)
        if "halt" in procs and procs["halt"].poll() is not None and "status" not in done:
            done.add("status")
            procs["status"] = _cli("status", "--json", address=ray_session)
        if "status" in procs and procs["status"].poll() is not None and "resume" not in done:
            done.add("resume")
            procs["resume"] = _cli("resume", address=ray_session)
        return False

    out = io.StringIO()
    report = run(config, duration_s=16, out=out, stop_when=chaos)
    assert done == {"risk", "executor", "halt", "status", "resume"}
    outputs = {k: p.communicate(timeout=60) for k, p in procs.items()}
    for name, p in procs.items():
        assert p.returncode == 0, (name, outputs[name][1][-2000:])
    halted = json.loads(outputs["halt"][0])
    assert halted["state"] == "HALTED" and halted["breakers"]["operator"]["detail"] == "test"
    assert json.loads(outputs["status"][0])["state"] == "HALTED"
    assert "\nrisk ACTIVE" in outputs["resume"][0]

    assert report["trades"] > 0 and report["risk_state"] == "ACTIVE"
    assert report["rejected"].get("state_halted", 0) > 0
    journal = asyncio.run(LocalStore(Path(report["run_dir"]), "test").read_journal())
    assert_positions_equal(report, journal)
    assert_intents_come_first(journal)
    executions = {r["opp_id"] for r in journal if r["type"] == "execution"}
    intents = {r["opp_id"] for r in journal if r["type"] == "intent"}
    assert intents == executions  # every trade finished, the interrupted ones by reconciliation
    # The journal alone rebuilds what risk held.
    proc = subprocess.run(
        [sys.executable, "-m", "hft_ray.cli", "report", report["run_dir"], "--json"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    rebuilt = json.loads(proc.stdout)
    assert rebuilt["positions_match_risk"] and rebuilt["unfinished_intents"] == []
