"""`hft-ray bench` writes its figures and the baseline they were compared against (no timing
is asserted: this machine is shared)."""

from __future__ import annotations

import json
import os
from pathlib import Path

from hft_ray.bench.feed import _naive, _ours, okx_stream
from hft_ray.cli import main


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
    import pytest

    with pytest.raises(SystemExit) as exc:
        main(["bench", "--only", "kernal"])
    assert exc.value.code == 2
    assert "expected sections among kernel, feed, memory (got 'kernal')" in capsys.readouterr().err
