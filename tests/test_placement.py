"""Placement and pinning on a real multi-node Ray cluster on this machine.

`tests/multinode.py` starts a head and four worker nodes (`ray.cluster_utils.Cluster`), each on
its own CPU set (head: every allowed core; workers: one core each, alternating), one worker
with the custom resource `near_binance`, and runs the real `build_pipeline` under each
placement strategy (STRICT_SPREAD, STRICT_PACK, SPREAD), then a whole `runner.run` with PACK.
It runs in a subprocess with a driver of its
own, because the test session already has one.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest

from hft_ray.cluster import NODE_RESOURCE_UNITS, _bundles, distributed_roles, fused_roles
from hft_ray.config import ConfigError, parse_config
from tests.conftest import default_config_dict, merge

ROOT = Path(__file__).resolve().parent.parent
STRATEGIES = ("STRICT_SPREAD", "STRICT_PACK", "SPREAD")


@pytest.fixture(scope="module")
def multinode(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    out = tmp_path_factory.mktemp("multinode") / "result.json"
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "RAY_TMPDIR")}
    env["RAY_AUTH_MODE"] = "disabled"  # Ray >= 2.59 would turn token auth on otherwise
    proc = subprocess.run(
        [sys.executable, "-m", "tests.multinode", str(out)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    result: dict[str, Any] = json.loads(out.read_text())
    return result


def nodes_by_id(result: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {n["node_id"]: n for n in result["nodes"]}


def all_bundles(result: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    out = [(s, b) for s in STRATEGIES for b in result["scenarios"][s]["bundles"]]
    return out + [("run", b) for b in result["run"]["placement"]["bundles"]]


@pytest.mark.ray
@pytest.mark.slow
def test_the_cluster_has_five_nodes_on_their_own_cpu_sets(multinode: dict[str, Any]) -> None:
    nodes = multinode["nodes"]
    assert [n["name"] for n in nodes] == ["head", "w1", "w2", "w3", "w4"]
    assert len({n["node_id"] for n in nodes}) == 5
    assert nodes[0]["cores"] == sorted(os.sched_getaffinity(0))
    assert all(len(n["cores"]) == 1 for n in nodes[1:])


@pytest.mark.ray
@pytest.mark.slow
def test_strict_spread_puts_every_bundle_on_a_node_of_its_own(multinode: dict[str, Any]) -> None:
    s = multinode["scenarios"]["STRICT_SPREAD"]
    assert s["strategy"] == "STRICT_SPREAD"
    table = s["pg_bundles_to_node"]
    assert len(table) == 5 and len(set(table.values())) == 5  # Ray's own placement table
    assert set(table.values()) == set(nodes_by_id(multinode))
    for b in s["bundles"]:
        assert table[str(b["bundle"])] == b["node_id"] == b["actor_node_id"]
        assert not b["shared_cores"]  # one bundle per node: every core exclusive


@pytest.mark.ray
@pytest.mark.slow
def test_a_node_resource_brings_the_binance_feed_to_its_node(multinode: dict[str, Any]) -> None:
    nodes = nodes_by_id(multinode)
    feed = next(b for b in multinode["scenarios"]["STRICT_SPREAD"]["bundles"] if b["bundle"] == 0)
    assert feed["role"] == "feed0"  # binance is the first venue
    host = nodes[feed["actor_node_id"]]
    assert host["name"] == "w1" and "near_binance" in host["resources"]
    assert feed["cores"] == host["cores"]  # and it is pinned to that node's one core


@pytest.mark.ray
@pytest.mark.slow
def test_every_actor_is_pinned_to_cores_of_its_own_node_on_every_thread(
    multinode: dict[str, Any],
) -> None:
    nodes = nodes_by_id(multinode)
    for scenario, b in all_bundles(multinode):
        where = f"{scenario} {b['role']}"
        assert b["node_id"] == b["actor_node_id"], where
        assert set(b["cores"]) <= set(nodes[b["node_id"]]["cores"]), where
        assert b["pinned"] and b["affinity"] == b["cores"], where
        if "threads" in b:  # read back from /proc/<pid>/task/*/status while the actor lived
            assert len(b["threads"]) > 5, where  # Ray's own threads, not just the main one
            assert set(b["threads"]) == {",".join(map(str, b["cores"]))}, where


@pytest.mark.ray
@pytest.mark.slow
def test_cores_never_overlap_on_a_node_while_cores_last_and_sharing_is_said(
    multinode: dict[str, Any],
) -> None:
    nodes = nodes_by_id(multinode)
    for scenario, bundles in [
        *((s, multinode["scenarios"][s]["bundles"]) for s in STRATEGIES),
        ("run", multinode["run"]["placement"]["bundles"]),
    ]:
        per_node: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for b in bundles:
            per_node[b["node_id"]].append(b)
        for node, mine in per_node.items():
            handed = [b["cores"][0] for b in mine]
            load = {c: handed.count(c) for c in nodes[node]["cores"]}
            if len(mine) <= len(nodes[node]["cores"]):
                assert len(set(handed)) == len(mine), (scenario, mine)
            assert max(load.values()) - min(load.values()) <= 1, (scenario, mine)
            for b in mine:
                assert b["shared_cores"] == (load[b["cores"][0]] > 1), (scenario, b)


@pytest.mark.ray
@pytest.mark.slow
def test_packed_on_two_cores_the_bundles_share_and_the_report_says_so(
    multinode: dict[str, Any],
) -> None:
    head = multinode["nodes"][0]
    shared = len(head["cores"]) < 5  # this machine: 2 cores
    # STRICT_PACK always, and PACK on an idle cluster, put all five on the one node with room.
    for bundles in (
        multinode["scenarios"]["STRICT_PACK"]["bundles"],
        multinode["run"]["placement"]["bundles"],
    ):
        assert {b["node_id"] for b in bundles} == {head["node_id"]}
        assert all(b["shared_cores"] == shared for b in bundles)
        core = {b["role"]: b["cores"][0] for b in bundles}
        if len(head["cores"]) >= 2:
            assert core["feed0"] != core["feed1"]
            mates = {r: sum(c == core[r] for c in core.values()) for r in core}
            assert mates["risk"] < mates["executor0"]  # the executor shares with more
    report = multinode["run"]["placement"]
    assert report["strategy"] == "PACK"
    assert report["pinning"] == ("shared" if shared else "exclusive")
    assert report["cpus_per_bundle"] == 0.5
    assert multinode["run"]["book_updates"] > 0  # the packed, shared pipeline ran


@pytest.mark.ray
@pytest.mark.slow
def test_spread_uses_more_than_one_node(multinode: dict[str, Any]) -> None:
    s = multinode["scenarios"]["SPREAD"]
    assert s["strategy"] == "SPREAD"
    assert len(set(s["pg_bundles_to_node"].values())) > 1  # best effort: not one per node


@pytest.mark.ray
@pytest.mark.slow
def test_fused_trading_nodes_scale_out_one_per_node_each_with_its_own_symbols(
    multinode: dict[str, Any],
) -> None:
    fused = multinode["fused"]
    nodes = nodes_by_id(multinode)
    assert fused["topology"] == "fused"
    bundles = {b["role"]: b for b in fused["placement"]["bundles"]}
    assert set(bundles) == {"node0", "node1", "risk"}
    assert len({b["node_id"] for b in bundles.values()}) == 3  # each on a node of its own
    for b in bundles.values():
        assert b["node_id"] == b["actor_node_id"] and not b["shared_cores"]
        assert b["pinned"] and b["affinity"] == b["cores"]
        assert set(b["cores"]) <= set(nodes[b["node_id"]]["cores"])
    shards = fused["trading_nodes"]
    assert sorted(s for shard in shards.values() for s in shard) == sorted(fused["symbols"])
    assert all(shards.values()) and len(shards) == 2  # every node trades, no symbol twice
    assert fused["book_updates"] > 0 and fused["trades"] > 0
    assert fused["positions_match_venues"] and fused["positions_match_journal"]


def test_a_feed_bundle_asks_for_its_venues_node_resource() -> None:
    data = default_config_dict()
    data["venues"]["okx"]["node_resource"] = "near_okx"
    config = parse_config(data)
    roles = distributed_roles(config)
    bundles = dict(zip(roles, _bundles(config, roles, 0.25), strict=True))
    assert bundles[("feed", 1)] == {"CPU": 0.25, "near_okx": NODE_RESOURCE_UNITS}
    assert all(b == {"CPU": 0.25} for role, b in bundles.items() if role != ("feed", 1))
    # A trading node connects to every venue itself: its bundle asks for each one's resource.
    roles = fused_roles(2)
    bundles = dict(zip(roles, _bundles(config, roles, 1.0), strict=True))
    assert (
        bundles[("node", 0)]
        == bundles[("node", 1)]
        == {
            "CPU": 1.0,
            "near_okx": NODE_RESOURCE_UNITS,
        }
    )
    assert bundles[("risk", 0)] == {"CPU": 1.0}


@pytest.mark.parametrize("name", ["CPU", "memory", "node:127.0.0.1", "near binance", ""])
def test_a_node_resource_must_be_a_custom_resource_name(name: str) -> None:
    data = merge(default_config_dict(), {"venues": {"binance": {"node_resource": name}}})
    with pytest.raises(ConfigError, match=r"venues\.binance\.node_resource: .*custom Ray"):
        parse_config(data)
