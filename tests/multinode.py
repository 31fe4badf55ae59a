"""A multi-node Ray cluster on this machine, running the real `build_pipeline` per strategy.

Run in a subprocess of its own (`python -m tests.multinode RESULT.json`): a multi-node
`ray.cluster_utils.Cluster` needs its own driver, and the test session already has one. Every
node is started while this process is restricted to that node's CPU set, so the node's raylet
and every worker it spawns inherit that set: the nodes see different allowed cores although
they share one machine, and a core handed to an actor shows which node's set it came from.

Writes JSON: the nodes (name, node id, allowed cores, resources) and, per scenario, every
bundle's node by the placement group table, the node its actor reports, the cores handed over,
whether they are shared, and the affinity of every thread of the actor's process read back
from `/proc/<pid>/task/*/status`; then a whole `runner.run` with PACK and its report, and a
whole run of the fused topology with two trading nodes spread over the cluster.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")

#: Custom resource of the node nearest binance; the binance feed asks for it in one scenario.
NEAR_BINANCE = "near_binance"
#: Logical CPUs per bundle in every scenario: five bundles fit the head node alone (3 CPUs).
CPUS_PER_BUNDLE = 0.5


def node_specs(allowed: list[int]) -> list[dict[str, Any]]:
    """Head on every allowed core; four one-core workers, alternating over the allowed cores."""
    specs: list[dict[str, Any]] = [{"name": "head", "cores": allowed, "num_cpus": 3}]
    for i in range(4):
        specs.append(
            {
                "name": f"w{i + 1}",
                "cores": [allowed[(i + 1) % len(allowed)]],
                "num_cpus": 1,
                "resources": {NEAR_BINANCE: 1} if i == 0 else {},
            }
        )
    return specs


def threads_affinity(pid: int) -> list[str]:
    """`Cpus_allowed_list` of every thread of process `pid`."""
    out = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            lines = (task / "status").read_text().splitlines()
        except (FileNotFoundError, ProcessLookupError):
            continue  # a thread that ended while we looked
        out += [ln.split(":", 1)[1].strip() for ln in lines if ln.startswith("Cpus_allowed_list:")]
    return out


def scenario_config(strategy: str, runs_dir: str, near_binance: bool) -> Any:
    from hft_ray.config import parse_config
    from tests.conftest import default_config_dict, merge

    data = default_config_dict()
    data["venues"] = {name: data["venues"][name] for name in ("binance", "okx")}
    if near_binance:
        data["venues"]["binance"]["node_resource"] = NEAR_BINANCE
    return parse_config(
        merge(
            data,
            {
                "run": {"name": "multinode", "runs_dir": runs_dir},
                "symbols": ["BTC/USDT"],
                "cluster": {
                    "topology": "distributed",
                    "placement_strategy": strategy,
                    "cpus_per_bundle": CPUS_PER_BUNDLE,
                    "pin_cores": True,
                    "ready_timeout_s": 30,
                },
                "detector": {"pool_size": 1},
                "execution": {"pool_size": 1},
                "metrics": {"enabled": False},
            },
        )
    )


def build_and_read(strategy: str, runs_dir: str, near_binance: bool) -> dict[str, Any]:
    """Build the pipeline, read where everything landed and how it is pinned, tear it down."""
    import ray
    from ray.util.placement_group import placement_group_table

    from hft_ray import names
    from hft_ray.cluster import build_pipeline, teardown
    from hft_ray.markets import resolve_markets
    from hft_ray.types import Universe

    config = scenario_config(strategy, runs_dir, near_binance)
    universe = Universe(tuple(config.venues), tuple(config.symbols))
    run_dir = Path(runs_dir) / strategy.lower()
    run_dir.mkdir(parents=True, exist_ok=True)
    pipeline = build_pipeline(
        config,
        universe,
        resolve_markets(config),
        strategy,
        str(run_dir),
        "hmn" + strategy[-4:].lower(),
    )
    try:
        table = placement_group_table(pipeline.placement_group)
        bundles = []
        for b in pipeline.placement:
            bundles.append({**b, "threads": threads_affinity(int(b["pid"]))})
        result = {
            "strategy": table["strategy"],
            "pg_bundles_to_node": {str(k): v for k, v in table["bundles_to_node_id"].items()},
            "bundles": bundles,
        }
    finally:
        teardown(pipeline)
    # Names and the group's CPUs are released a little after the kill; the next scenario
    # must find the cluster idle, or PACK packs around what is still held.
    total = ray.cluster_resources()["CPU"]
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            ray.get_actor(names.RISK)
        except ValueError:
            if ray.available_resources().get("CPU", 0.0) >= total:
                break
        time.sleep(0.1)
    return result


def fused_run(runs_dir: str) -> dict[str, Any]:
    """The fused topology scaled out: two trading nodes, each on a node of its own with its
    shard of the symbols, and risk on a third (STRICT_SPREAD); a short whole run."""
    from hft_ray.config import parse_config
    from hft_ray.runner import run

    data = scenario_config("STRICT_SPREAD", runs_dir, near_binance=False).model_dump(mode="json")
    data["cluster"] |= {"topology": "fused", "trading_nodes": 2, "cpus_per_bundle": 1}
    data["symbols"] = ["BTC/USDT", "ETH/USDT", "SOL/USDT"]
    data["sim"]["dislocations_per_min"] = 60
    report = run(parse_config(data), duration_s=4.0, out=io.StringIO())
    keys = ("placement", "trading_nodes", "book_updates", "trades", "topology", "symbols")
    return {k: report[k] for k in keys} | {
        "positions_match_venues": report["positions_match_venues"],
        "positions_match_journal": report["positions_match_journal"],
    }


def whole_run(runs_dir: str) -> dict[str, Any]:
    """A short `runner.run` with PACK on the idle cluster: its report's placement section."""
    from hft_ray.runner import run

    config = scenario_config("PACK", runs_dir, near_binance=False)
    out = io.StringIO()
    report = run(config, duration_s=2.0, out=out)
    return {"placement": report["placement"], "book_updates": report["book_updates"]}


def main(result_path: str) -> None:
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    os.environ.pop("RAY_ADDRESS", None)
    # A private temp dir: this cluster's address file and sockets stay out of /tmp/ray.
    tmp = tempfile.mkdtemp(prefix="hftmn", dir="/tmp")
    os.environ["RAY_TMPDIR"] = tmp

    import ray
    from ray.cluster_utils import Cluster

    full = os.sched_getaffinity(0)
    t0 = time.monotonic()

    def under(cores: list[int], start: Callable[[], T]) -> T:
        os.sched_setaffinity(0, set(cores))  # children inherit the calling thread's affinity
        try:
            return start()
        finally:
            os.sched_setaffinity(0, full)

    specs = node_specs(sorted(full))
    head, *workers = specs
    cluster = under(
        head["cores"],
        lambda: Cluster(
            initialize_head=True,
            head_node_args={"num_cpus": head["num_cpus"], "include_dashboard": False},
        ),
    )
    result: dict[str, Any] = {"nodes": [], "scenarios": {}}
    try:
        assert cluster.head_node is not None
        head["node_id"] = cluster.head_node.node_id
        for spec in workers:
            node = under(
                spec["cores"],
                lambda s=spec: cluster.add_node(
                    wait=False, num_cpus=s["num_cpus"], resources=s["resources"]
                ),
            )
            spec["node_id"] = node.node_id
        cluster.wait_for_nodes()
        result["nodes"] = specs
        result["seconds"] = {"nodes_up": round(time.monotonic() - t0, 1)}
        ray.init(address=cluster.address, namespace="hft_ray", logging_level="WARNING")
        runs_dir = str(Path(tmp) / "runs")
        for strategy, near in (
            ("STRICT_SPREAD", True),
            ("STRICT_PACK", False),
            ("SPREAD", False),
        ):
            result["scenarios"][strategy] = build_and_read(strategy, runs_dir, near)
            result["seconds"][strategy] = round(time.monotonic() - t0, 1)
        result["run"] = whole_run(runs_dir)
        result["seconds"]["run"] = round(time.monotonic() - t0, 1)
        result["fused"] = fused_run(runs_dir)
        result["seconds"]["fused"] = round(time.monotonic() - t0, 1)
    finally:
        ray.shutdown()
        cluster.shutdown()
        Path(result_path).write_text(json.dumps(result, indent=1))
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main(sys.argv[1])
