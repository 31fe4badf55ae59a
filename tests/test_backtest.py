"""Replay as a backtest: the same files, config and seed give the same journal and report
whatever the host's clocks do; orders match against the book of their arrival; files recorded
apart fan out as Ray tasks and merge into one report."""

from __future__ import annotations

import asyncio
import gzip
import io
import itertools
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from hft_ray.backtest import RUN_KEYS, parts_of, run_backtest
from hft_ray.config import HftConfig
from hft_ray.store import LocalStore

SAMPLE = Path(__file__).parent / "data" / "replay" / "sim-sample.jsonl.gz"
T0_MS = 1_700_000_000_000


def _journal(run_dir: Path) -> list[dict[str, Any]]:
    async def read() -> list[dict[str, Any]]:
        store = LocalStore(run_dir, "test")
        try:
            return await store.read_journal()
        finally:
            await store.close()

    return asyncio.run(read())


def _findings(report: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in report.items() if k not in RUN_KEYS}


def _backtest(config: HftConfig, files: list[Path]) -> tuple[dict[str, Any], list[dict]]:
    report = run_backtest(config, files, out=io.StringIO())
    return report, _journal(Path(report["run_dir"]))


def test_two_backtests_of_the_sample_give_the_same_journal_and_report(
    make_config: Callable[..., HftConfig], monkeypatch: pytest.MonkeyPatch
) -> None:
    config = make_config()
    first, first_journal = _backtest(config, [SAMPLE])
    # The host's clocks racing ahead by a random stretch at every read (a loaded machine,
    # at its worst) change nothing: the backtest reads only the recording's.
    jumps = itertools.count(1)
    real_ns, real_mono_ns = time.time_ns, time.monotonic_ns
    monkeypatch.setattr(time, "time_ns", lambda: real_ns() + next(jumps) * 7_919_000_000)
    monkeypatch.setattr(time, "monotonic_ns", lambda: real_mono_ns() + next(jumps) * 7_919_000)
    second, second_journal = _backtest(config, [SAMPLE])
    monkeypatch.undo()

    assert first["run_dir"] != second["run_dir"]
    assert first_journal == second_journal
    assert _findings(first) == _findings(second)
    assert (
        json.loads((Path(first["run_dir"]) / "report.json").read_text())["trades"]
        == (first["trades"])
    )
    # Not an empty agreement: the sample trades, every book reached the feeds, and what the
    # venues hold is what the journal says.
    assert first["book_updates"] == first["replay"]["lines"] == 3600
    assert first["trades"] > 10 and first["mode"] == "backtest"
    assert first["positions_match_journal"] and first["positions_match_venues"]
    types = {r["type"] for r in first_journal}
    assert {"decision", "intent", "order", "execution"} <= types

    # The seed decides every order's fate and latency: another seed, another journal.
    reseed = config.model_copy(update={"run": config.run.model_copy(update={"seed": 8})})
    assert _backtest(reseed, [SAMPLE])[1] != first_journal


def _line(exchange: str, ms: float, bid: float, ask: float) -> str:
    return json.dumps(
        {
            "exchange": exchange,
            "symbol": "BTC/USDT",
            "timestamp": T0_MS + ms,
            "bids": [[bid, 0.5]],
            "asks": [[ask, 0.5]],
        }
    )


def test_an_order_matches_the_book_of_when_it_arrives(
    make_config: Callable[..., HftConfig], tmp_path: Path
) -> None:
    """binance's ask is cheap at t0 and gone 1 ms later: an order arriving within that
    millisecond buys it, one arriving after finds the new book and does not fill."""
    path = tmp_path / "move.jsonl"
    path.write_text(
        "\n".join(
            [
                _line("binance", 0, 89_980.0, 90_000.0),
                _line("okx", 0, 90_600.0, 90_620.0),
                _line("binance", 1, 90_880.0, 90_900.0),
                _line("okx", 50, 90_600.0, 90_620.0),
            ]
        )
        + "\n"
    )

    def fills(binance_latency_ms: float) -> dict[str, Any]:
        quiet = {"reject_rate": 0.0, "timeout_rate": 0.0, "rate_limit_rate": 0.0}
        config = make_config(
            venues={
                "binance": {**quiet, "ack_latency_ms": binance_latency_ms},
                "okx": {**quiet, "ack_latency_ms": 0.01},
            },
            detector={"min_profit_bps": 1.0},
        )
        report, journal = _backtest(config, [path])
        orders = {r["venue"]: r for r in journal if r["type"] == "order"}
        return {"report": report, "orders": orders}

    early = fills(0.01)
    assert early["orders"]["binance"]["filled"] > 0
    assert early["orders"]["binance"]["avg_price"] == 90_000.0
    late = fills(10.0)  # arrives 2.5 to 7.5 ms after the decision: the ask moved
    assert late["orders"]["binance"]["filled"] == 0
    assert late["orders"]["binance"]["status"] == "expired"
    assert late["report"]["legs_failed"] >= 1


def _split(tmp_path: Path) -> list[Path]:
    """The sample's first and second halves in recorded time, as two files."""
    with gzip.open(SAMPLE, "rt") as f:
        lines = f.readlines()
    cut = T0_MS + 5_000  # 5 s in
    halves = [
        [x for x in lines if json.loads(x)["timestamp"] < cut],
        [x for x in lines if json.loads(x)["timestamp"] >= cut],
    ]
    paths = []
    for i, part in enumerate(halves):
        p = tmp_path / f"half{i}.jsonl"
        p.write_text("".join(part))
        paths.append(p)
    return paths


def test_files_recorded_apart_fan_out_and_merge_into_one_report(
    ray_session: str, make_config: Callable[..., HftConfig], tmp_path: Path
) -> None:
    config = make_config()
    halves = _split(tmp_path)
    assert [p.files for p in parts_of(halves)] == [[halves[0]], [halves[1]]]
    assert len(parts_of([halves[0], SAMPLE])) == 1  # files of one span replay together

    merged, journal = _backtest(config, halves)  # two parts: two Ray tasks
    alone = [_backtest(config, [h])[0] for h in halves]
    assert merged["replay"]["parts"] == 2 and merged["replay"]["lines"] == 3600
    for key in ("trades", "opportunities", "approved", "legs_failed", "book_updates"):
        assert merged[key] == alone[0][key] + alone[1][key], key
    assert merged["realized_pnl_quote"] == pytest.approx(
        alone[0]["realized_pnl_quote"] + alone[1]["realized_pnl_quote"]
    )
    segments = sorted(p.name for p in (Path(merged["run_dir"]) / "journal").iterdir())
    assert segments == ["part0000.log", "part0001.log"]
    assert merged["positions_match_journal"] and merged["positions_match_venues"]
    assert len({r["opp_id"] for r in journal if r["type"] == "intent"}) == merged["approved"]
