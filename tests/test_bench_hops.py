"""`bench_hops` measures every hop it names, each with its sample count (no time is asserted:
this machine is shared), and weighs channels against the cores an idle graph holds."""

from __future__ import annotations

from hft_ray.bench.hops import verdict

HOPS = (
    "in_process_call",
    "actor_one_way",
    "actor_round_trip",
    "actor_chain_one_way",
    "compiled_graph_1_stage",
    "compiled_graph_3_stages",
)


def assert_every_hop_measured(out: dict) -> None:
    """What `bench_hops` must report (the bench's tick_to_trade section runs it, at smoke
    size in test_bench.py): every hop with its samples, the graphs' idle cores, a verdict."""
    for hop in HOPS:
        latency = out[hop]["latency_us"]
        assert latency["count"] >= 200, hop
        assert 0 <= latency["p50"] <= latency["p90"] <= latency["p99"] <= latency["max"], hop
    one_way = out["actor_one_way"]
    assert one_way["caller_thread_cpu_us_per_remote"]["count"] == one_way["latency_us"]["count"]
    assert set(one_way["process_cpu_us_per_message"]) == {"caller", "callee"}
    assert out["actor_chain_one_way"]["hops"] == 3
    assert out["compiled_graph_1_stage"]["stages"] == 1
    assert out["compiled_graph_3_stages"]["stages"] == 3
    for graph in ("compiled_graph_1_stage", "compiled_graph_3_stages"):
        assert 0 <= out[graph]["idle_cores"] <= out["cores"] + 0.5
    assert out["verdict"].startswith("channels ")


def test_the_verdict_weighs_speed_against_the_cores_an_idle_graph_holds() -> None:
    assert verdict(9_000.0, 300.0, 1.2, 8, 0.5).startswith("channels pay here: 3 stages")
    held = verdict(9_000.0, 300.0, 0.9, 2, 0.5)
    assert held.startswith("channels do not pay here (no core is left for each stage's work)")
    assert "holds 0.90 of 2 cores" in held and held.endswith("fuse the stages instead")
    assert "(they are no faster)" in verdict(300.0, 400.0, 0.1, 8, 0.5)
