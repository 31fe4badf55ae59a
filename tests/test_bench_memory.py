"""The memory bench: the process tree below a command, each process's kind and size, and the
peaks of a measured command (sizes are only checked to be positive: this machine is shared)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from hft_ray.bench import memory
from hft_ray.bench.common import SCALES
from hft_ray.bench.memory import (
    TARGET_PSS_MIB,
    ProcessMemory,
    bench_memory,
    kind_of,
    measure_command,
    sample_tree,
)
from tests.conftest import default_config_dict, free_port, merge

RAY = "/py/site-packages/ray"
LOGS = "/tmp/ray/session_2026-12-01_22-41-50_977842_12870/logs"
FORKSERVER = (
    "/usr/bin/python -B -c from multiprocessing.forkserver import main; main(25, 27, "
    "['ray', 'ray.dashboard.subprocesses.module', 'ray.dashboard.modules.data.data_head'])"
)


@pytest.mark.parametrize(
    ("command", "kind"),
    [
        (f"{RAY}/core/src/ray/gcs/gcs_server --log_dir={LOGS} --gcs_server_port=0", "gcs_server"),
        (f"{RAY}/core/src/ray/raylet/raylet --raylet_socket_name=/tmp/s/raylet", "raylet"),
        (f"/usr/bin/python {RAY}/dashboard/dashboard.py --host=127.0.0.1", "dashboard"),
        (f"ray-dashboard-MetricsHead-0 ({FORKSERVER})", "dashboard"),
        (FORKSERVER, "dashboard"),
        (
            f"/usr/bin/python -u {RAY}/dashboard/agent.py --node-ip-address=10.0.0.2",
            "dashboard_agent",
        ),
        ("ray::DashboardAgent", "dashboard_agent"),
        (f"/usr/bin/python -u {RAY}/_private/runtime_env/agent/main.py", "runtime_env_agent"),
        ("ray::RuntimeEnvAgent", "runtime_env_agent"),
        (f"/usr/bin/python -u {RAY}/_private/log_monitor.py --logs-dir={LOGS}", "log_monitor"),
        (f"/usr/bin/python -u {RAY}/autoscaler/_private/monitor.py --logs-dir={LOGS}", "monitor"),
        (
            f"/usr/bin/python {RAY}/_private/workers/default_worker.py --worker-type=W",
            "worker:IDLE",
        ),
        ("ray::IDLE", "worker:IDLE"),
        ("ray::FeedActor", "worker:FeedActor"),
        ("ray::FeedActor.start", "worker:FeedActor"),
        ("ray::SimVenueActor.poll", "worker:SimVenueActor"),
        ("ray::hft_ray_detector_0:DetectorActor.__init__", "worker:DetectorActor"),
        ("ray::_node_cores", "worker:_node_cores"),
    ],
)
def test_ray_processes_are_known_by_their_command_line_or_title(command: str, kind: str) -> None:
    assert kind_of(command) == kind


@pytest.mark.parametrize(
    "command",
    [
        "python -m hft_ray.cli run --duration 20",
        "/usr/bin/python -B -c from multiprocessing.resource_tracker import main;main(25)",
        "/usr/bin/redis-server 127.0.0.1:6379",
        "raylet-helper --raylet",  # a name that merely contains a Ray binary's
        "",
    ],
)
def test_other_processes_are_left_to_the_caller(command: str) -> None:
    assert kind_of(command) is None


SLEEP = "import time; time.sleep(60)"
SPAWN_AND_SLEEP = "import subprocess, sys, time; subprocess.Popen(sys.argv[1:]); time.sleep(60)"
#: A driver with a sleeping child; a helper with a child of its own; a "worker" titled as Ray
#: titles them, with a child of its own; and a child that exits and is never reaped (a zombie,
#: which holds no memory).
TREE = f"""
import subprocess, sys, time
sleeper = [sys.executable, "-c", {SLEEP!r}]
subprocess.Popen(sleeper)
subprocess.Popen([sys.executable, "-c", {SPAWN_AND_SLEEP!r}, *sleeper])
subprocess.Popen(["ray::FeedActor.start", "-c", {SPAWN_AND_SLEEP!r}, *sleeper],
                 executable=sys.executable)
subprocess.Popen([sys.executable, "-c", "pass"])
print("up", flush=True)
time.sleep(60)
"""


@pytest.fixture
def tree() -> Iterator[subprocess.Popen[str]]:
    proc = subprocess.Popen(
        [sys.executable, "-c", TREE], stdout=subprocess.PIPE, text=True, start_new_session=True
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline() == "up\n"
        yield proc
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def _settled(root: int) -> list[ProcessMemory]:
    """The TREE once its six live processes run their own commands and its zombie has
    exited: children start (and exit) on their own time."""
    found: list[ProcessMemory] = []
    for _ in range(400):
        found = sample_tree(root)
        commands = {p.pid: p.command for p in found}
        if (
            len(found) == 6
            and all(commands.get(p.ppid) != p.command for p in found if p.pid != root)
            and not any(p.command.endswith("-c pass") for p in found)
        ):
            return found
        time.sleep(0.05)
    raise AssertionError(f"the tree below {root} never settled: {found}")


def test_sample_tree_finds_every_live_descendant_with_its_kind(
    tree: subprocess.Popen[str],
) -> None:
    found = _settled(tree.pid)
    by_pid = {p.pid: p for p in found}
    assert len(by_pid) == 6  # driver, sleeper, a helper and a worker with a child each; no zombie
    root = by_pid[tree.pid]
    assert root.kind == "driver" and root.ppid == os.getpid()
    children = [p for p in found if p.ppid == tree.pid]
    assert sorted(p.kind for p in children) == ["other", "other", "worker:FeedActor"]
    titled = next(p for p in children if p.kind == "worker:FeedActor")
    assert titled.command.startswith("ray::FeedActor.start -c")
    grandchildren = [p for p in found if p.ppid not in (tree.pid, os.getpid())]
    assert len(grandchildren) == 2
    # a helper takes its parent's kind; under the driver it stays `other`
    assert {by_pid[p.ppid].kind: p.kind for p in grandchildren} == {
        "other": "other",
        "worker:FeedActor": "worker:FeedActor",
    }
    for p in found:
        assert 0 < p.pss <= p.rss and not p.pss_from_rss


def test_without_smaps_rollup_pss_is_the_rss_and_says_so(
    tree: subprocess.Popen[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    real = memory._read
    monkeypatch.setattr(
        memory, "_read", lambda path: None if path.endswith("smaps_rollup") else real(path)
    )
    found = _settled(tree.pid)
    assert all(p.pss_from_rss and p.pss == p.rss > 0 for p in found)


def test_a_process_that_is_gone_has_no_tree() -> None:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    assert sample_tree(proc.pid) == []


def test_measure_command_reports_peaks_per_kind_and_the_exit_status() -> None:
    measured = measure_command(
        [sys.executable, "-c", "import time; time.sleep(1)"], seconds=30, interval_s=0.05
    )
    assert measured["exit_status"] == 0 and not measured["stopped_at_bound"]
    assert measured["samples"] >= 1
    driver = measured["kinds"]["driver"]
    assert driver["processes"] == 1 and driver["rss_bytes"] > 0 and driver["pss_bytes"] > 0
    total = measured["total"]
    assert total["pss_bytes"] >= driver["pss_bytes"] and total["rss_bytes"] >= total["pss_bytes"]
    assert total["processes"] >= 1 and measured["pss_from_rss"] == 0
    assert measured["sampler_cpu_s"] >= 0


def test_measure_command_interrupts_a_command_past_its_bound() -> None:
    measured = measure_command([sys.executable, "-c", SLEEP], seconds=0.2, interval_s=0.05)
    assert measured["stopped_at_bound"]
    assert measured["exit_status"] == -signal.SIGINT  # Ctrl-C, as a user stops a run


@pytest.mark.parametrize(
    ("argv", "seconds", "interval", "message"),
    [
        ([], 1.0, 0.5, "argv is empty"),
        (["true"], 0.0, 0.5, "seconds (0.0) and interval_s (0.5) must be > 0"),
        (["true"], 1.0, -1.0, "seconds (1.0) and interval_s (-1.0) must be > 0"),
    ],
)
def test_measure_command_refuses_bad_arguments(
    argv: list[str], seconds: float, interval: float, message: str
) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        measure_command(argv, seconds, interval)


def test_a_run_that_fails_is_an_error_naming_the_command() -> None:
    with pytest.raises(RuntimeError) as err:
        bench_memory(SCALES["smoke"], ["--config", "/nonexistent/memory.yaml"])
    text = str(err.value)
    assert "hft_ray.cli run --duration 3.0" in text and "failed (exit status 2)" in text
    assert "/nonexistent/memory.yaml" in text


@pytest.mark.ray
@pytest.mark.slow
def test_bench_memory_measures_the_run_beside_a_bare_ray(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = merge(
        default_config_dict(),
        {"metrics": {"export_port": free_port()}, "status": {"port": free_port()}},
    )
    (tmp_path / "memory.yaml").write_text(yaml.safe_dump(config))
    monkeypatch.chdir(tmp_path)  # a relative config path is the caller's, not the scratch dir's
    report = bench_memory(SCALES["smoke"], ["--config", "memory.yaml"])
    run, baseline = report["run"], report["baseline_same_run"]
    assert run["command"][-2:] == ["--config", str(tmp_path / "memory.yaml")]
    # The default run on this machine is fused: a trading node, risk, the simulated venues.
    actors = {"worker:TradingNodeActor", "worker:RiskActor", "worker:SimVenueActor"}
    ray_own = {"driver", "gcs_server", "raylet", "dashboard", "dashboard_agent"}
    assert ray_own | actors <= set(run["kinds"])
    assert ray_own <= set(baseline["kinds"]) and not actors & set(baseline["kinds"])
    assert run["kinds"]["worker:SimVenueActor"]["processes"] == 3  # one per venue
    for measured in (run, baseline):
        assert measured["samples"] > 0 and measured["total"]["processes"] > 5
        for kind, sizes in (("total", measured["total"]), *measured["kinds"].items()):
            assert sizes["rss_mib"] >= sizes["pss_mib"] >= 0, kind
            # A process caught starting or exiting may round to nothing; these never do.
            if kind == "total" or kind in ray_own | actors:
                assert sizes["pss_mib"] > 0, kind
    assert report["target_pss_mib"] == TARGET_PSS_MIB == 2048
    assert report["meets_target"] == (run["total"]["pss_mib"] < 2048)
    assert not list(tmp_path.glob("runs"))  # the run's journal stayed in the scratch directory
