"""The fault suite's tools: a run on the session's Ray driven by a script of faults, and
real signals sent to real actor processes (found by name or class through Ray's GCS)."""

from __future__ import annotations

import asyncio
import contextlib
import io
import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import ray

from hft_ray.config import HftConfig, parse_config
from hft_ray.runner import run
from hft_ray.store import LocalStore, RedisStore
from tests.faults.invariants import assert_invariants
from tests.test_end_to_end import on

#: Faults arrive at seconds into the run; a run lasts until its last fault plus this.
SETTLE_S = 5.0


def _alive(match: Callable[[dict[str, Any]], bool]) -> list[dict[str, Any]]:
    actors = ray._private.state.actors()  # the GCS's actor table: no dashboard needed
    return [a for a in actors.values() if a["State"] == "ALIVE" and match(a)]


def pid_of(name: str) -> int:
    """The process of the live actor named `name` in the run's namespace."""
    handle = ray.get_actor(name)
    info = ray._private.state.actors(handle._actor_id.hex())
    assert info["State"] == "ALIVE", (name, info["State"])
    return int(info["Pid"])


def pids_of_class(class_name: str) -> list[int]:
    """Processes of the live actors of a class, in creation order."""
    return [int(a["Pid"]) for a in _alive(lambda a: a["ActorClassName"].endswith(class_name))]


def wait_alive(name: str, timeout_s: float = 60.0) -> int:
    """The pid of `name` once Ray restarted it."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            return pid_of(name)
        except (AssertionError, ValueError):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


@dataclass
class Fault:
    """`act` once the run is `at_s` seconds old."""

    at_s: float
    name: str
    act: Callable[[], Any]


@dataclass
class Outcome:
    config: HftConfig
    report: dict[str, Any]
    journal: list[dict[str, Any]]
    output: str
    done: dict[str, float] = field(default_factory=dict)  # fault -> wall ns when done
    seen: dict[str, Any] = field(default_factory=dict)  # what `watch` collected

    def after(self, fault: str, kind: str = "intent") -> list[dict[str, Any]]:
        return [r for r in self.journal if r["type"] == kind and r["ts_ns"] > self.done[fault]]


def fault_run(
    config: HftConfig,
    faults: list[Fault],
    duration_s: float | None = None,
    watch: Callable[[float, Outcome], None] | None = None,
) -> Outcome:
    """Run `config` in-process on the session's Ray, acting out `faults` on time; assert
    every invariant of the suite on the outcome and return it."""
    out = io.StringIO()
    outcome = Outcome(config, {}, [], "")
    started: list[float] = []  # the run's first look: the pipeline is trading
    pending = sorted(faults, key=lambda f: f.at_s)

    def script() -> bool:
        if not started:
            started.append(time.monotonic())
        t = time.monotonic() - started[0]
        while pending and pending[0].at_s <= t:
            fault = pending.pop(0)
            fault.act()
            outcome.done[fault.name] = time.time_ns()
        if watch is not None:
            watch(t, outcome)
        return False

    duration = duration_s or max(f.at_s for f in faults) + SETTLE_S
    outcome.report = run(config, duration_s=duration, out=out, stop_when=script)
    outcome.output = out.getvalue()
    assert not pending, [f.name for f in pending]
    outcome.journal = read_journal(config, outcome.report)
    assert_invariants(config, outcome.report, outcome.journal, outcome.output)
    return outcome


def read_journal(config: HftConfig, report: dict[str, Any]) -> list[dict[str, Any]]:
    if config.store.url:
        return asyncio.run(RedisStore(config.store.url, report["run_id"]).read_journal())
    return asyncio.run(LocalStore(Path(report["run_dir"]), "faults").read_journal())


def kill(pid: int) -> None:
    os.kill(pid, signal.SIGKILL)


def stop(pid: int) -> None:
    os.kill(pid, signal.SIGSTOP)


def cont(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):  # gone already: nothing left stopped
        os.kill(pid, signal.SIGCONT)


@pytest.fixture
def fault_config(tmp_path: Path) -> Callable[..., HftConfig]:
    """The end-to-end tests' busy market in `topology`, with `override` merged in."""

    def make(topology: str, **override: Any) -> HftConfig:
        return parse_config(on(topology, run={"runs_dir": str(tmp_path / "runs")}, **override))

    return make
