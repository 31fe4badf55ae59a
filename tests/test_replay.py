"""Recorded books: the file format, malformed lines, and detect-only replay checked against
the reference definition of an opportunity."""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from hft_ray.config import HftConfig
from hft_ray.detect.reference import PairLimits, cross_venue_quote
from hft_ray.markets import simulated_markets
from hft_ray.replay_run import detect_replay
from hft_ray.venues.replay import ReplayFormatError, format_line, parse_line
from hft_ray.venues.sim import sim_exchange_from_config

T0 = 1_700_000_000_000_000_000


def write_sim_recording(config: HftConfig, path: Path, ticks: int = 300) -> None:
    exchanges = {v: sim_exchange_from_config(config, v) for v in config.venues}
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "wt") as f:  # type: ignore[operator]
        for i in range(ticks):
            for venue, ex in exchanges.items():
                for book in ex.step(T0 + i * 25_000_000):
                    f.write(format_line(venue, book) + "\n")


@pytest.fixture
def busy(make_config: Callable[..., HftConfig]) -> HftConfig:
    return make_config(sim={"dislocations_per_min": 60}, feed={"max_jump_z": 0})


def assert_matches_reference(config: HftConfig, path: Path, report: dict) -> int:
    """Recompute every listed opportunity from the books the file held at its line, with the
    pure-Python reference; return how many were checked."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt") as f:  # type: ignore[operator]
        lines = [json.loads(x) for x in f]
    markets = simulated_markets(config)
    latest: dict[tuple[str, str], dict] = {}
    by_line: dict[int, list[dict]] = {}
    for opp in report["opportunities_list"]:
        by_line.setdefault(opp["line"], []).append(opp)
    checked = 0
    for index, line in enumerate(lines):
        latest[(line["exchange"], line["symbol"])] = line
        for opp in by_line.get(index, []):
            symbol = opp["symbol"]
            buy = latest[(opp["buy_exchange"], symbol)]
            sell = latest[(opp["sell_exchange"], symbol)]
            bs = markets.spec(opp["buy_exchange"], symbol)
            ss = markets.spec(opp["sell_exchange"], symbol)
            balances = config.venues[opp["buy_exchange"]].balances
            sell_balances = config.venues[opp["sell_exchange"]].balances
            limits = PairLimits(
                bs.taker_fee,
                ss.taker_fee,
                bs.lot,
                ss.lot,
                bs.min_amount,
                ss.min_amount,
                bs.min_notional,
                ss.min_notional,
                config.risk.max_order_notional,
                balances.get(bs.quote, 0.0) if balances else float("inf"),
                sell_balances.get(ss.base, 0.0) if sell_balances else float("inf"),
            )
            asks = [tuple(x) for x in buy["asks"]]
            bids = [tuple(x) for x in sell["bids"]]
            ref = cross_venue_quote(asks, bids, limits, config.detector.min_profit_bps)
            assert ref is not None, (index, opp)
            got = (
                opp["size"],
                opp["buy_avg_price"],
                opp["sell_avg_price"],
                opp["profit_quote"],
                opp["edge_bps"],
            )
            assert got == (ref.size, ref.buy_avg, ref.sell_avg, ref.profit_quote, ref.edge_bps)
            checked += 1
    return checked


def test_every_opportunity_matches_the_reference_on_the_recorded_books(
    busy: HftConfig, tmp_path: Path
) -> None:
    path = tmp_path / "books.jsonl"
    write_sim_recording(busy, path)
    report = detect_replay(busy, [path])
    assert report["lines"] == 300 * 9 and report["malformed_lines"] == []
    assert report["opportunities"] > 20
    assert assert_matches_reference(busy, path, report) == report["opportunities"]


def test_the_repository_sample_replays_to_the_reference(
    make_config: Callable[..., HftConfig],
) -> None:
    sample = Path(__file__).parent / "data" / "replay" / "sim-sample.jsonl.gz"
    config = make_config(feed={"max_jump_z": 0})
    report = detect_replay(config, [sample])
    assert report["lines"] == 3_600 and report["malformed_lines"] == []
    assert report["opportunities"] > 100
    assert assert_matches_reference(config, sample, report) == report["opportunities"]


def test_malformed_lines_are_named_skipped_and_the_replay_goes_on(
    busy: HftConfig, tmp_path: Path
) -> None:
    path = tmp_path / "books.jsonl"
    write_sim_recording(busy, path, ticks=20)
    lines = path.read_text().splitlines()
    lines.insert(3, "{not json")
    lines.insert(7, json.dumps({"exchange": "okx", "symbol": "BTC/USDT", "timestamp": 1}))
    lines.insert(
        11,
        json.dumps(
            {"exchange": "okx", "symbol": "BTC/USDT", "timestamp": "soon", "bids": [], "asks": []}
        ),
    )
    lines.insert(15, lines[0])  # goes back in time
    path.write_text("\n".join(lines) + "\n")
    report = detect_replay(busy, [path], err=sys.stderr)
    assert report["lines"] == 20 * 9
    errors = report["malformed_lines"]
    assert errors[0].startswith(f"{path}:4: ") and len(errors) == 4
    assert f"{path}:8: missing bids, asks" in errors[1]
    assert "timestamp must be milliseconds" in errors[2]
    assert errors[3] == f"{path}:16: timestamp goes back in time"


def test_gzip_files_and_multiple_files_merge_by_time(busy: HftConfig, tmp_path: Path) -> None:
    plain, packed = tmp_path / "a.jsonl", tmp_path / "b.jsonl.gz"
    write_sim_recording(busy, plain, ticks=30)
    write_sim_recording(busy, packed, ticks=30)
    report = detect_replay(busy, [plain, packed])
    assert report["lines"] == 2 * 30 * 9 and report["malformed_lines"] == []


def test_parse_line_names_the_problem() -> None:
    with pytest.raises(
        ReplayFormatError, match=r"f.jsonl:3: bids must be a list of \[price, amount\]"
    ):
        parse_line(
            '{"exchange":"x","symbol":"A/B","timestamp":1,"bids":{},"asks":[]}', "f.jsonl", 3
        )
    with pytest.raises(ReplayFormatError, match="nonce must be an integer or null"):
        parse_line(
            '{"exchange":"x","symbol":"A/B","timestamp":1,"nonce":"7","bids":[],"asks":[]}',
            "f.jsonl",
            1,
        )
    rec = parse_line(
        '{"exchange":"okx","symbol":"A/B","timestamp":5,"nonce":null,'
        '"bids":[[1.0,2.0]],"asks":[[1.5,1.0]]}',
        "f",
        1,
    )
    assert rec.book.ts_exchange_ns == 5_000_000 and rec.book.bids.tolist() == [[1.0, 2.0]]


def test_cli_replay_writes_the_report(busy: HftConfig, tmp_path: Path) -> None:
    path, report_path = tmp_path / "books.jsonl", tmp_path / "out" / "report.json"
    write_sim_recording(busy, path, ticks=10)
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "hft_ray.cli",
            "replay",
            str(path),
            "--detect-only",
            "--report",
            str(report_path),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    report = json.loads(report_path.read_text())
    assert report["lines"] == 90 and "opportunities_list" in report
    missing = subprocess.run(
        [sys.executable, "-m", "hft_ray.cli", "replay", str(tmp_path / "nope"), "--detect-only"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert missing.returncode == 2 and "no such file" in missing.stderr
