"""`hft-ray bench` writes its figures and the baseline they were compared against (no timing
is asserted: this machine is shared)."""

from __future__ import annotations

import json
from pathlib import Path

from hft_ray.bench import _naive, _ours, okx_stream
from hft_ray.cli import main


def test_bench_stream_is_valid_for_both_implementations() -> None:
    snapshot, updates = okx_stream(levels=50, updates=300)
    assert _ours(snapshot, updates)() == 0
    assert _naive(snapshot, updates)() == 0


def test_bench_writes_figures_and_baseline(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    assert main(["bench", "--out", str(out), "--updates", "200"]) == 0
    report = json.loads(out.read_text())
    feed = report["feed"]
    assert feed["updates"] == 200
    assert feed["ours"]["us_per_update"] > 0 and feed["baseline_same_run"]["us_per_update"] > 0
    assert feed["cryptofeed_documented_checksum_us"] == [10.0, 100.0]
    assert feed["checksum_alone_us"] > 0
    assert report["host"]["pinned_core"] in range(report["host"]["cpus"])
    same, full = report["detect"]["same_books"], report["detect"]["full_scan"]
    assert same["opportunities"] == 300 * 4  # the bench's market: 300 crossed symbols x 4 pairs
    assert same["kernel_ms"] > 0 and same["reference_ms"] > 0 and same["target_speedup"] == 100
    assert full["crossed_pairs_share"] == 0.008 and full["target_ms"] == 1.0


def test_bench_leaves_the_callers_affinity_alone(tmp_path: Path) -> None:
    import os

    two = set(sorted(os.sched_getaffinity(0))[:2]) | {max(os.sched_getaffinity(0))}
    os.sched_setaffinity(0, two)
    main(["bench", "--out", str(tmp_path / "b.json"), "--updates", "50"])
    assert os.sched_getaffinity(0) == two
