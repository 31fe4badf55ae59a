"""The soak in its short version: the JSON's shape and every bound evaluated (not times)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from hft_ray.cli import build_parser

pytestmark = [pytest.mark.ray, pytest.mark.slow]


def test_minutes_and_rate_are_bounded() -> None:
    for args in (["--minutes", m] for m in ("0", "-1", "inf", "nan", "1441", "x")):
        with pytest.raises(SystemExit) as exit_:
            build_parser().parse_args(["soak", *args])
        assert exit_.value.code == 2
    for rate in ("0", "1.5", "1000001"):
        with pytest.raises(SystemExit):
            build_parser().parse_args(["soak", "--minutes", "1", "--rate", rate])
    assert build_parser().parse_args(["soak", "--minutes", "0.5"]).minutes == 0.5


def test_a_short_soak_writes_its_figures_and_verdicts(tmp_path: Path) -> None:
    out = tmp_path / "soak.json"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "hft_ray.cli",
            "soak",
            "--minutes",
            "0.5",
            "--rate",
            "3000",
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode in (0, 4), proc.stderr[-3000:]
    result = json.loads(out.read_text())
    assert {"samples", "bounds", "memory", "queues", "latency", "run", "ok"} <= set(result)
    assert len(result["samples"]) >= 3
    assert {"driver", "raylet", "worker:TradingNodeActor"} <= set(result["memory"])
    for figure in (*result["memory"].values(), result["queues"], result["latency"]):
        assert isinstance(figure["ok"], bool)
    assert result["ok"] == (proc.returncode == 0)
    assert "soak 0.5 min" in proc.stdout
