"""Actors stopped (SIGSTOP) longer than any call timeout, then continued: the run marks them
down in its status document and health at once, risk fails closed, the run waits for them
and goes on; no timeout reaches the driver as a traceback."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest
import ray

from hft_ray import names
from hft_ray.config import HftConfig
from hft_ray.runner import POLL_TIMEOUT_S
from hft_ray.status import health_body
from tests.faults.conftest import (
    Fault,
    Outcome,
    cont,
    fault_run,
    pid_of,
    pids_of_class,
    stop,
)

pytestmark = [pytest.mark.faults, pytest.mark.ray, pytest.mark.slow]

#: Longer than the driver's old stats timeout (10 s), after which it died.
RISK_STOPPED_S = 11.0
FEED_STOPPED_S = 3.0


@pytest.mark.parametrize("topology", ["fused", "distributed"])
def test_risk_then_a_feed_stopped_longer_than_any_timeout(
    ray_session: str, fault_config: Callable[..., HftConfig], topology: str
) -> None:
    config = fault_config(topology)
    pids: dict[str, int] = {}
    docs: list[dict[str, Any]] = []

    def pause_risk() -> None:
        pids["risk"] = pid_of(names.RISK)
        stop(pids["risk"])

    def pause_feed() -> None:
        pids["feed"] = (
            pid_of(names.node(0)) if topology == "fused" else pids_of_class("FeedActor")[0]
        )
        stop(pids["feed"])

    def look(t: float, outcome: Outcome) -> None:
        """The document the status actor serves, each time the driver loop comes round."""
        doc = ray.get(ray.get_actor(names.STATUS).document.remote(), timeout=5)
        if doc is not None and (not docs or docs[-1]["updated_ns"] != doc["updated_ns"]):
            docs.append(doc)

    faults = [
        Fault(3, "stop risk", pause_risk),
        Fault(3 + RISK_STOPPED_S, "continue risk", lambda: cont(pids["risk"])),
        Fault(16, "stop feed", pause_feed),
        Fault(16 + FEED_STOPPED_S, "continue feed", lambda: cont(pids["feed"])),
    ]
    try:
        outcome = fault_run(config, faults, watch=look)
    finally:
        for pid in pids.values():  # never leave a stopped process behind a failed test
            cont(pid)
    stopped, continued = outcome.done["stop risk"], outcome.done["continue risk"]
    # Every document built a poll after risk stopped, until it continued, says it is down.
    settled = stopped + int((POLL_TIMEOUT_S + 0.3) * 1e9)
    while_stopped = [d for d in docs if settled < d["updated_ns"] < continued]
    assert while_stopped, "no status document while risk was stopped"
    for doc in while_stopped:
        assert doc["status"] == "down" and not doc["risk_answered"], doc["reasons"]
        assert any(r.startswith("risk: did not answer") for r in doc["reasons"])
        assert health_body(doc)[0] == 503
    assert docs[-1]["status"] in ("ok", "degraded") or docs[-1]["actors_down"] == {}
    # Fail closed: nothing approved while risk was stopped, once a lease had run out.
    lease_s = config.risk.lease_ttl_ms / 1e3
    approved = [
        r
        for r in outcome.journal
        if r["type"] == "decision"
        and r["verdict"] != "rejected"
        and stopped + (lease_s + 0.2) * 1e9 < r["ts_ns"] < continued
    ]
    assert approved == []
    assert "risk: not answering" in outcome.output and "risk: answering again" in outcome.output
    assert outcome.after("continue feed"), "no trade after the feed continued"


def test_a_risk_that_never_comes_back_ends_the_run_with_its_report(
    ray_session: str,
    fault_config: Callable[..., HftConfig],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Past the recovery budget the run stops: its report is written from the journal, the
    failure says who did not answer, and no call of the stop sequence hangs."""
    from hft_ray import runner

    monkeypatch.setattr(runner, "_DOWN_CALL_TIMEOUT_S", 1.0)
    config = fault_config("fused")
    config = config.model_copy(
        update={"run": config.run.model_copy(update={"recovery_budget_s": 3.0})}
    )
    pids: dict[str, int] = {}

    def pause_risk() -> None:
        pids["risk"] = pid_of(names.RISK)
        stop(pids["risk"])

    import io

    out = io.StringIO()
    started: list[float] = []

    def script() -> bool:
        started.append(time.monotonic())
        if time.monotonic() - started[0] > 3 and not pids:
            pause_risk()
        return False

    try:
        report = runner.run(config, duration_s=60, out=out, stop_when=script)
    finally:
        for pid in pids.values():
            cont(pid)
    text = out.getvalue()
    assert "past the recovery budget" in report["failure"] and "risk" in report["failure"]
    assert report["duration_s"] < 60
    assert not report["risk_answered_at_stop"] and report["risk_state"] == "NOT ANSWERING"
    assert "report: " in text and "Traceback" not in text
    assert any("close risk" in e for e in report["stop_errors"])
