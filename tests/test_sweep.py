"""`hft-ray sweep`: the grid's parameters checked by the config, windows in recorded time,
the walk-forward choosing only on the past, and a real sweep on the sample over Ray."""

from __future__ import annotations

import asyncio
import io
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from hft_ray.backtest import Part, Window, backtest_part
from hft_ray.config import ConfigError, HftConfig
from hft_ray.sweep import (
    Progress,
    grid_points,
    parse_parameter,
    resolve_parameter,
    sweep,
    sweep_tables,
    walk_forward,
    windows_of,
)

SAMPLE = Path(__file__).parent / "data" / "replay" / "sim-sample.jsonl.gz"


def test_parameters_are_config_fields_with_values_the_config_accepts(
    make_config: Callable[..., HftConfig],
) -> None:
    config = make_config()
    p = resolve_parameter(config, *parse_parameter("min_profit_bps=2, 5"))
    assert (p.name, p.values) == ("detector.min_profit_bps", (2.0, 5.0))
    p = resolve_parameter(config, *parse_parameter("risk.max_order_notional=500,2000"))
    assert p.values == (500.0, 2000.0)
    points = grid_points(config, [p, resolve_parameter(config, "min_profit_bps", ["1", "3"])])
    assert [pt for pt, _ in points][1] == {
        "risk.max_order_notional": 500.0,
        "detector.min_profit_bps": 3.0,
    }
    assert points[3][1].risk.max_order_notional == 2000.0
    assert points[3][1].detector.min_profit_bps == 3.0
    for spec, says in [
        ("min_profit_bps", "expected NAME=V1,V2"),
        ("=1,2", "expected NAME=V1,V2"),
        ("nonsense=1", "parameter nonsense: no such config field"),
        ("risk.nonsense=1", "no config field risk.nonsense"),
        ("min_profit_bps=abc", "detector.min_profit_bps=abc"),
        ("risk.max_order_notional=-5", "risk.max_order_notional=-5"),
        ("min_profit_bps=2,2.0", "lists a value twice"),
    ]:
        with pytest.raises(ConfigError, match=says):
            resolve_parameter(config, *parse_parameter(spec))


def test_windows_cover_the_span_in_order() -> None:
    windows = windows_of((1_000, 1_999), 4)
    assert [(w.start_ns, w.end_ns) for w in windows] == [
        (1_000, 1_250),
        (1_250, 1_500),
        (1_500, 1_750),
        (1_750, 2_000),
    ]


def test_the_walk_forward_chooses_on_the_past_only() -> None:
    """Point 0 shines in the first window only (an overfit); point 1 is steady."""
    pnl = {0: [100.0, -50.0, -40.0], 1: [10.0, 12.0, 11.0]}
    figures = {
        (pi, wi): {"realized_pnl_quote": v, "trades": 1} for pi, row in pnl.items()
        for wi, v in enumerate(row)
    }  # fmt: skip
    windows = [Window(0, 1), Window(1, 2), Window(2, 3)]
    result = walk_forward([{"x": 1}, {"x": 2}], windows, figures, [SAMPLE], 3)
    folds = result["walk_forward"]
    # Fold 1 chooses on w0 alone: point 0, which then loses on w1 (rank 2 of 2).
    assert (folds[0]["chosen_index"], folds[0]["out_of_sample_pnl"]) == (0, -50.0)
    assert folds[0]["out_of_sample_rank"] == 2
    # Fold 2 chooses on w0+w1: 50 against 22, still point 0, still losing.
    assert (folds[1]["chosen_index"], folds[1]["in_sample_pnl_per_window"]) == (0, 25.0)
    assert result["summary"] == {
        "in_sample_pnl_per_window": (100.0 + 25.0) / 2,
        "out_of_sample_pnl_per_window": (-50.0 - 40.0) / 2,
    }
    table = sweep_tables(result)
    assert "| w1 | w0 | 1 | +100.00 | -50.00 | 2 of 2 |" in table
    assert "| 2 | +10.00 | +12.00 | +11.00 | +33.00 | 3 |" in table


def test_progress_on_a_log_is_a_line_every_tenth() -> None:
    out = io.StringIO()
    bar = Progress(40, out)
    for done in range(41):
        bar.update(done)
    lines = out.getvalue().splitlines()
    assert len(lines) == 11 and lines[-1].startswith("sweep [" + "#" * 30 + "] 40/40")


def test_a_sweep_on_the_sample_backtests_every_point_on_every_window(
    ray_session: str, make_config: Callable[..., HftConfig], tmp_path: Path
) -> None:
    config = make_config()
    grid = [
        resolve_parameter(config, "min_profit_bps", ["1", "6"]),
        resolve_parameter(config, "max_order_notional", ["1000", "5000"]),
    ]
    progress = io.StringIO()
    result = sweep(config, [SAMPLE], grid, 2, tmp_path / "sweep", progress)
    assert len(result["points"]) == 4 and len(result["walk_forward"]) == 1
    assert progress.getvalue().splitlines()[-1].startswith("sweep [" + "#" * 30 + "] 8/8")
    # Every cell is the backtest of its point's config on its window, as run alone here.
    w1 = Window(**result["windows"][1])
    _, cfg = grid_points(config, grid)[3]
    alone = asyncio.run(backtest_part(cfg, Part(1, [SAMPLE], w1), tmp_path / "alone"))
    cell = result["points"][3]["windows"][1]
    assert cell["realized_pnl_quote"] == alone.risk["realized_pnl_quote"]
    assert cell["trades"] == alone.risk["trades"] > 0
    assert sum(p["windows"][0]["books"] + p["windows"][1]["books"] for p in result["points"]) == (
        4 * 3600
    )


def test_the_cli_names_a_bad_grid(tmp_path: Path) -> None:
    run = subprocess.run(
        [sys.executable, "-m", "hft_ray.cli", "sweep", str(SAMPLE), "--grid", "bogus=1,2"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert run.returncode == 2
    assert run.stderr.strip() == (
        "hft-ray: config error: sweep: parameter bogus: no such config field "
        "(a field name, or SECTION.FIELD such as detector.min_profit_bps)"
    )
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "hft_ray.cli",
            "sweep",
            str(SAMPLE),
            "--grid",
            "x=1",
            "--folds",
            "1",
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert run.returncode == 2 and "--folds: must be a whole number from 2 to" in run.stderr
