"""Control commands reach one run, the one they are pointed at; a start that cannot have its
ports fails in one line and leaves nothing behind."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from hft_ray import run_registry
from hft_ray.control import loss_breakers
from tests.conftest import default_config_dict, free_port, merge


def _write_config(tmp_path: Path, name: str, **override: Any) -> Path:
    data = merge(default_config_dict(), {"run": {"runs_dir": str(tmp_path / "runs")}})
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(merge(data, override)))
    return path


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "hft_ray.cli", *args],
        capture_output=True,
        text=True,
        timeout=90,
    )


def _wait_recorded(run_ids_before: set[str], n: int, procs: list[subprocess.Popen[str]]) -> list:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        live = [r for r in run_registry.live_runs() if r.run_id not in run_ids_before]
        if len(live) >= n:
            return live
        for p in procs:
            assert p.poll() is None, p.communicate()[1][-3000:]
        time.sleep(0.2)
    raise AssertionError("the runs never recorded their addresses")


@pytest.mark.ray
@pytest.mark.slow
def test_halt_reaches_only_the_run_it_names(ray_session: str, tmp_path: Path) -> None:
    """Two runs on one host, in two namespaces of one cluster: `halt --run A` halts A and
    says so; B trades on; with no run named, the command refuses to guess."""
    before = {r.run_id for r in run_registry.live_runs()}
    procs = []
    for name in ("a", "b"):
        config = _write_config(
            tmp_path,
            name,
            run={"name": f"ctl{name}"},
            cluster={"namespace": f"ctl_{name}", "topology": "fused"},
            status={"enabled": False},
        )
        procs.append(
            subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "hft_ray.cli",
                    "run",
                    "--config",
                    str(config),
                    "--duration",
                    "120",
                    "--address",
                    ray_session,
                ],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
        )
    try:
        runs = {r.namespace: r for r in _wait_recorded(before, 2, procs)}
        a, b = runs["ctl_a"], runs["ctl_b"]
        assert Path(a.run_dir, run_registry.ADDRESS_FILE).exists()

        guessed = _cli("halt")
        assert guessed.returncode == 3
        assert "runs are live on this host" in guessed.stderr and "--run" in guessed.stderr

        halted = _cli("halt", "--run", a.run_dir, "--reason", "only a", "--json")
        assert halted.returncode == 0, halted.stderr
        assert json.loads(halted.stdout)["run_id"] == a.run_id
        assert json.loads(halted.stdout)["state"] == "HALTED"

        other = _cli("status", "--run", b.run_id, "--json")
        assert other.returncode == 0, other.stderr
        assert json.loads(other.stdout)["run_id"] == b.run_id
        assert json.loads(other.stdout)["state"] == "ACTIVE"

        resumed = _cli("resume", "--run", a.run_dir)
        assert resumed.returncode == 0, resumed.stderr
        first = resumed.stdout.splitlines()[0]
        assert first == f"run {a.run_id} (namespace ctl_a at {ray_session}):"
        assert "risk ACTIVE" in resumed.stdout
    finally:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGINT)
        for p in procs:
            _, err = p.communicate(timeout=120)
            assert p.returncode == 0, err[-3000:]
    # A run that stopped is no longer live; its directory keeps where it ran.
    assert not {a.run_id, b.run_id} & {r.run_id for r in run_registry.live_runs()}
    assert json.loads(Path(a.run_dir, run_registry.ADDRESS_FILE).read_text())["run_id"] == a.run_id


def test_no_live_run_and_no_address_is_refused_in_one_line(tmp_path: Path) -> None:
    env = {**os.environ, run_registry.STATE_DIR_ENV: str(tmp_path / "empty")}
    env.pop("RAY_ADDRESS", None)
    proc = subprocess.run(
        [sys.executable, "-m", "hft_ray.cli", "status"],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert proc.returncode == 3
    assert proc.stderr.strip().splitlines() == [
        "hft-ray: cluster error: no run is live on this host: name one with --run RUN_DIR, "
        "or its cluster with --address"
    ]
    missing = subprocess.run(
        [sys.executable, "-m", "hft_ray.cli", "halt", "--run", str(tmp_path / "nope")],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert missing.returncode == 3 and "no run" in missing.stderr


def test_loss_breakers_are_the_ones_resume_asks_about() -> None:
    state = {
        "breakers": {
            "operator": {"forces": "HALTED", "detail": "ops", "ts_ns": 1},
            "max_daily_loss": {"forces": "HALTED", "detail": "lost 12.5 today", "ts_ns": 2},
        }
    }
    assert loss_breakers(state) == {"max_daily_loss": "lost 12.5 today"}
    assert loss_breakers({"breakers": {}}) == {}


@pytest.mark.parametrize("which", ["metrics", "status"])
def test_a_taken_port_is_named_in_one_line_and_nothing_is_left(tmp_path: Path, which: str) -> None:
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen()
    port = holder.getsockname()[1]
    override: dict[str, Any] = {
        "metrics": {"export_port": port if which == "metrics" else free_port()},
        "status": {"port": port if which == "status" else free_port()},
    }
    config = _write_config(tmp_path, "taken", **override)
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    try:
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "hft_ray.cli",
                "run",
                "--config",
                str(config),
                "--duration",
                "5",
            ],
            capture_output=True,
            text=True,
            timeout=60,
            env=env,
        )
    finally:
        holder.close()
    key = "metrics.export_port" if which == "metrics" else "status.port"
    assert proc.returncode == 3, proc.stderr[-2000:]
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and f"port {port} ({key}) is already in use" in lines[0], lines
    runs = tmp_path / "runs"
    assert not runs.exists() or not any(runs.iterdir())
