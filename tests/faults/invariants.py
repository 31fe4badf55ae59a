"""What must hold after any run, whatever was done to it: asserted after every fault scenario
and by the end-to-end tests. Each reads the journal (the record of what was decided and
traded) against the config, the report, and the simulated venues' own accounts."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest

from hft_ray.config import HftConfig


def fills_by_hand(journal: list[dict]) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    for r in journal:
        if r["type"] != "fill":
            continue
        base, quote = r["symbol"].split("/")
        sign = 1.0 if r["side"] == "buy" else -1.0
        out[r["venue"]][base] += sign * r["filled"]
        out[r["venue"]][quote] += -sign * r["filled"] * r["price"] - r["fee_quote"]
    return out


def assert_positions_equal(report: dict, journal: list[dict]) -> None:
    """Journal, risk actor and the venues' own balances tell the same story."""
    expected = fills_by_hand(journal)
    for venue, assets in expected.items():
        for asset, value in assets.items():
            assert report["positions"][venue][asset] == pytest.approx(value, abs=1e-9)
            assert report["risk_positions"][venue][asset] == pytest.approx(value, abs=1e-9)
            moved = report["venue_positions"].get(venue, {}).get(asset, 0.0)
            assert moved == pytest.approx(value, abs=1e-6)
    assert report["positions_match_venues"] and report["in_flight_at_stop"] == 0


def assert_within_risk_limits(config: HftConfig, journal: list[dict]) -> None:
    """No order, position or rate ever went past a limit of the config, by the journal."""
    limits = config.risk
    intents = {r["opp_id"]: r for r in journal if r["type"] == "intent"}
    approved = [r for r in journal if r["type"] == "decision" and r["verdict"] != "rejected"]
    assert {r["opp_id"] for r in approved} >= set(intents)  # no intent without an approval
    for intent in intents.values():
        for leg in intent["legs"]:
            notional = config.detector.statarb.max_notional if intent["kind"] != "arb" else None
            cap = min(limits.max_order_notional, notional or limits.max_order_notional)
            assert leg["amount"] * leg["price"] <= cap * (1 + 1e-9), leg
    # Two orders per arbitrage: approvals in any window of one second stay within the bucket.
    times = sorted(r["ts_ns"] for r in approved)
    per_s, burst = limits.max_orders_per_s, limits.order_burst
    for i, t in enumerate(times):
        in_window = sum(1 for u in times[i:] if u - t <= 1e9)
        assert 2 * in_window <= burst + per_s + 2, (i, in_window)
    position: dict[tuple[str, str], float] = defaultdict(float)
    for r in journal:
        if r["type"] == "fill":
            base = r["symbol"].split("/")[0]
            position[r["venue"], base] += r["filled"] * (1 if r["side"] == "buy" else -1)
            cap = limits.max_position.get(base)
            if cap is not None:
                assert abs(position[r["venue"], base]) <= cap * (1 + 1e-9), (r, position)


def assert_intents_come_first(journal: list[dict]) -> None:
    """Every order record of an opportunity follows its durable intent."""
    intent_at = {r["opp_id"]: r["ts_ns"] for r in journal if r["type"] == "intent"}
    orders = [r for r in journal if r["type"] in ("order", "fill")]
    assert orders
    for r in orders:
        assert r["opp_id"] in intent_at and intent_at[r["opp_id"]] <= r["ts_ns"]


def assert_every_order_approved(journal: list[dict]) -> None:
    """Every intent (and so every order) follows a decision that approved its opportunity."""
    approved_at = {
        r["opp_id"]: r["ts_ns"]
        for r in journal
        if r["type"] == "decision" and r["verdict"] != "rejected"
    }
    for r in journal:
        if r["type"] == "intent":
            assert r["opp_id"] in approved_at, r
            assert approved_at[r["opp_id"]] <= r["ts_ns"], r


def assert_hedged_within_budget(journal: list[dict]) -> None:
    """An arbitrage is flat in its base once repaired: what its fills left unhedged is what
    its execution record declares (`residual_base`), and no more than one approved leg (a
    repair the loss budget kept from filling leaves at most the leg that did fill; the
    approved size, not its notional at the fill price, which moves with the market; risk's
    notional limits are checked by `assert_within_risk_limits`)."""
    net: dict[str, float] = defaultdict(float)
    for r in journal:
        if r["type"] == "fill":
            net[r["opp_id"]] += r["filled"] * (1 if r["side"] == "buy" else -1)
    intents = {r["opp_id"]: r for r in journal if r["type"] == "intent"}
    for r in journal:
        intent = intents.get(r["opp_id"]) if r["type"] == "execution" else None
        if intent is None or intent["kind"] != "arb":
            continue
        left = net.get(r["opp_id"], 0.0)
        assert abs(left - r["residual_base"]) <= 1e-9, r
        leg = max(abs(leg["amount"]) for leg in intent["legs"])
        assert abs(left) <= leg * (1 + 1e-9), (r, intent["legs"])


def assert_every_intent_finished(journal: list[dict]) -> None:
    """Every trade begun has its outcome journaled (the interrupted ones by reconciliation)."""
    intents = {r["opp_id"] for r in journal if r["type"] == "intent"}
    executions = {r["opp_id"] for r in journal if r["type"] == "execution"}
    assert intents <= executions, sorted(intents - executions)[:5]


def assert_stopped_cleanly(report: dict[str, Any], output: str) -> None:
    """The run stopped through its own stop sequence and wrote its report."""
    assert "Traceback" not in output
    assert "stopping: draining" in output and "report: " in output
    assert (Path(report["run_dir"]) / "report.json").exists()
    assert report["stop_errors"] == []


def assert_invariants(
    config: HftConfig, report: dict[str, Any], journal: list[dict], output: str
) -> None:
    """Every invariant of a run that ended well, whatever happened during it."""
    assert_stopped_cleanly(report, output)
    assert_every_order_approved(journal)
    assert_intents_come_first(journal)
    assert_within_risk_limits(config, journal)
    assert_positions_equal(report, journal)
    assert_hedged_within_budget(journal)
    assert_every_intent_finished(journal)
    assert report["positions_match_journal"]
