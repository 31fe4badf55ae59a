"""The per-stage breakdown of a trade's latency: stages add up, missing hops merge."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from hft_ray.latency import STAGES, StageSamples, merge_recent, stage_samples
from hft_ray.types import Trace


def test_a_distributed_trade_has_every_hop_as_a_stage() -> None:
    trace = Trace(100, 150, 300, 350, 600, 650, 900, 1_000, 1_050, 9_000)
    assert stage_samples(trace) == {
        "batch_wait": 50,
        "hop_feed_detector": 150,
        "scan": 50,
        "hop_detector_risk": 250,
        "decide": 50,
        "hop_risk_executor": 250,
        "journal_intent": 100,
        "send": 50,
        "venue_ack": 7_950,
        "tick_to_trade": 950,
        "tick_to_ack": 8_900,
        "approve_to_ack": 8_350,
    }


def test_a_fused_trade_has_no_hops_and_its_time_is_in_the_next_stage() -> None:
    trace = Trace(100, 0, 0, 180, 0, 260, 0, 400, 430, 5_000)
    assert stage_samples(trace) == {
        "scan": 80,
        "decide": 80,
        "journal_intent": 140,
        "send": 30,
        "venue_ack": 4_570,
        "tick_to_trade": 330,
        "tick_to_ack": 4_900,
        "approve_to_ack": 4_740,
    }


@given(st.lists(st.integers(0, 10**6), min_size=len(STAGES), max_size=len(STAGES)), st.data())
def test_the_stages_up_to_the_send_add_up_to_tick_to_trade(gaps: list[int], data) -> None:  # type: ignore[no-untyped-def]
    present = data.draw(st.lists(st.booleans(), min_size=len(STAGES), max_size=len(STAGES)))
    stamps, t = [], 1_000
    for gap, keep, (field, _) in zip(gaps, present, STAGES, strict=True):
        t += gap
        stamps.append(t if keep or field in ("sent", "acked") else 0)
    stages = stage_samples(Trace(1_000, *stamps))
    before_ack = sum(v for k, v in stages.items() if k in {name for _, name in STAGES[:-1]})
    assert before_ack == stages["tick_to_trade"]
    assert before_ack + stages["venue_ack"] == stages["tick_to_ack"]


def test_samples_are_kept_per_stage() -> None:
    samples = StageSamples()
    samples.add(Trace(0, 0, 0, 10, 0, 20, 0, 30, 40, 100))
    samples.add(Trace(0, 0, 0, 12, 0, 22, 0, 32, 42, 102))
    values = samples.values()
    assert values["scan"] == [10, 12] and values["tick_to_trade"] == [40, 42]


def test_recent_stages_of_several_actors_merge_to_the_slowest() -> None:
    fast, slow = StageSamples(), StageSamples()
    for i in range(10):
        fast.add(Trace(0, 0, 0, 10 + i, 0, 20 + i, 0, 30 + i, 40 + i, 100 + i))
        slow.add(Trace(0, 0, 0, 1_000 + i, 0, 2_000 + i, 0, 3_000 + i, 4_000 + i, 9_000 + i))
    merged = merge_recent([fast.recent_us(), slow.recent_us()])
    assert list(merged)[:5] == ["scan", "decide", "journal_intent", "send", "venue_ack"]
    assert merged["scan"]["count"] == 20
    assert merged["scan"]["p50"] == slow.recent_us()["scan"]["p50"]
