"""`hft-ray bench` writes its figures and the baseline they were compared against (no timing
is asserted: this machine is shared)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from hft_ray.bench.feed import _naive, _ours, okx_stream
from hft_ray.cli import main
from tests.test_bench_hops import assert_every_hop_measured


def test_bench_stream_is_valid_for_both_implementations() -> None:
    snapshot, updates = okx_stream(levels=50, updates=300)
    assert _ours(snapshot, updates)() == 0
    assert _naive(snapshot, updates)() == 0


def test_bench_writes_figures_and_baselines(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    assert main(["bench", "--smoke", "--out", str(out), "--only", "kernel,feed"]) == 0
    report = json.loads(out.read_text())
    assert report["scale"] == "smoke"
    assert report["machine"]["cpus"] >= 1 and len(report["machine"]["load_average"]) == 3
    feed = report["feed"]
    assert feed["updates"] == 200
    assert feed["ours"]["us_per_update"] > 0 and feed["baseline_same_run"]["us_per_update"] > 0
    assert feed["cryptofeed_documented_checksum_us"] == [10.0, 100.0]
    assert feed["checksum_alone_us"] > 0
    kernel = report["kernel"]
    assert kernel["pinned_core"] in report["machine"]["allowed_cores"]
    same, full = kernel["same_books"], kernel["full_scan"]
    # The smoke market: 15 crossed symbols; each of the 4 ordinary venues' rows finds (buy
    # there, sell on the high venue), and the high venue's own row finds the same 4 again.
    assert same["opportunities"] == 15 * 8
    assert same["kernel_ms"] > 0 and same["reference_ms"] > 0 and same["target_speedup"] == 100
    assert full["crossed_pairs_share"] == 0.008 and full["target_ms"] == 1.0


def test_bench_leaves_the_callers_affinity_alone(tmp_path: Path) -> None:
    two = set(sorted(os.sched_getaffinity(0))[:2]) | {max(os.sched_getaffinity(0))}
    os.sched_setaffinity(0, two)
    main(["bench", "--smoke", "--out", str(tmp_path / "b.json"), "--only", "kernel"])
    assert os.sched_getaffinity(0) == two


def test_an_unknown_section_is_one_line(capsys) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(SystemExit) as exc:
        main(["bench", "--only", "kernal"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "expected sections among kernel, feed, tick_to_trade, ingest, memory" in err
    assert "(got 'kernal')" in err


@pytest.mark.ray
@pytest.mark.slow
def test_every_section_at_its_smallest_writes_figures_beside_baselines(tmp_path: Path) -> None:
    """The bench's Ray sections at smoke size, as the CLI runs them: the JSON's shape, not its
    times (kernel and feed run in-process above; memory, a whole run beside a bare Ray, in
    test_bench_memory.py)."""
    out = tmp_path / "bench.json"
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}  # the bench's own Ray
    sections = "tick_to_trade,ingest"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "hft_ray.cli",
            "bench",
            "--smoke",
            "--only",
            sections,
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(out.read_text())
    assert set(report) >= {"ingest", "tick_to_trade", "machine"}
    assert set(report["seconds"]) == set(sections.split(","))
    machine = report["machine"]
    assert machine["cpu_model"] and machine["cpus"] >= 1 and len(machine["load_average"]) == 3

    t2t = report["tick_to_trade"]
    assert t2t["baseline"].startswith("floor") and set(t2t["targets"]) == {
        "fused_loaded_p50_ms",
        "fused_loaded_p99_ms",
    }
    for case in ("floor", "fused", "distributed"):
        assert set(t2t[case]) == {"idle", "loaded_10k_updates_per_s"}
        for figures in t2t[case].values():
            assert {"tick_to_trade", "tick_to_ack", "stages", "book_updates_per_s"} <= set(figures)
    assert set(t2t["distributed"]["idle"]["stages"]) >= {"hop_feed_detector", "hop_risk_executor"}
    assert not any(s.startswith("hop_") for s in t2t["fused"]["idle"]["stages"])
    assert_every_hop_measured(t2t["hops"])
    assert isinstance(t2t["meets_target"], bool)

    ingest = report["ingest"]
    assert ingest["target_per_s"] == 100_000 and ingest["rates"]
    assert {"nominal_per_s", "ingested_per_s", "conflated_share"} <= set(ingest["rates"][0])
    assert ingest["baseline_same_run"]["bound_per_s_on_these_cores"] > 0
