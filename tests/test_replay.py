"""Recorded books: the file format, malformed lines, and detect-only replay checked against
the reference definition of an opportunity."""

from __future__ import annotations

import asyncio
import gzip
import io
import json
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from hft_ray.cli import EXIT_RUN_FAILED
from hft_ray.config import HftConfig
from hft_ray.detect.reference import PairLimits, cross_venue_quote
from hft_ray.markets import simulated_markets
from hft_ray.replay_run import detect_replay
from hft_ray.venues.base import step_decimals
from hft_ray.venues.replay import (
    ReplayFormatError,
    ReplayMarket,
    format_line,
    parse_line,
    read_file,
)
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
                tick_buy=bs.tick,
                tick_sell=ss.tick,
                tick_scale_buy=10.0 ** step_decimals(bs.tick),
                tick_scale_sell=10.0 ** step_decimals(ss.tick),
                slippage_bps=config.execution.slippage_bps,
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
    assert errors[3] == f"{path}:16: goes back in time (earlier than a line before)"


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
    fake = tmp_path / "fake.jsonl.gz"
    fake.write_text(path.read_text())
    unreadable = subprocess.run(
        [sys.executable, "-m", "hft_ray.cli", "replay", str(path), str(fake), "--detect-only"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert unreadable.returncode == EXIT_RUN_FAILED
    assert unreadable.stderr.splitlines() == [
        f"hft-ray replay: {fake}:1: cannot read (Not a gzipped file (b'{{\"'))",
        "hft-ray: replay ended badly: 1 files could not be read to their end",
    ]
    assert json.loads(unreadable.stdout)["lines"] == 90


GOOD = {"exchange": "okx", "symbol": "BTC/USDT", "timestamp": 5, "bids": [[1, 2]], "asks": [[3, 1]]}


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({"bids": [1.0, 2.0]}, r"bids\[0\] must be \[price, amount\] numbers, got 1.0"),
        ({"asks": [["3", "1"]]}, r"asks\[0\] must be \[price, amount\] numbers"),
        ({"bids": [[True, 2]]}, r"bids\[0\] must be \[price, amount\] numbers, got \[True, 2\]"),
        ({"bids": [[1, 2, 3]]}, r"bids\[0\] must be \[price, amount\] numbers"),
        ({"bids": [[0, 2]]}, r"bids\[0\] needs a finite price above 0 and amount from 0"),
        ({"asks": [[3, -1]]}, r"asks\[0\] needs a finite price above 0"),
        ({"timestamp": 1e308}, "timestamp must be milliseconds from 0 to 9223372036854"),
        ({"timestamp": -1}, "timestamp must be milliseconds"),
        ({"timestamp": True}, "timestamp must be milliseconds"),
        ({"nonce": 2**63}, r"nonce must be from 0 to 2\*\*63-1, got 9223372036854775808"),
        ({"nonce": -5}, r"nonce must be from 0 to 2\*\*63-1"),
        ({"nonce": True}, "nonce must be an integer or null, got True"),
    ],
)
def test_the_parser_is_strict_about_numbers_and_levels(change: dict, problem: str) -> None:
    with pytest.raises(ReplayFormatError, match=f"^f.jsonl:2: {problem}"):
        parse_line(json.dumps({**GOOD, **change}), "f.jsonl", 2)


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("[" * 100_000 + "]" * 100_000, "not JSON (depth limit exceeded"),
        ('{"a": NaN}', "not JSON"),
        ('{"a": 1e400}', "not JSON (number is infinity"),
    ],
)
def test_text_that_is_not_json_is_one_line(text: str, problem: str) -> None:
    with pytest.raises(ReplayFormatError, match=rf"^f:1: {re.escape(problem)}"):
        parse_line(text, "f", 1)


def read(path: Path) -> tuple[int, list[str]]:
    errors: list[ReplayFormatError] = []
    books = list(read_file(path, errors.append))
    return len(books), [str(e) for e in errors]


def test_unreadable_files_are_one_error_naming_where_reading_stopped(tmp_path: Path) -> None:
    line = json.dumps(GOOD) + "\n"
    packed = gzip.compress((line * 2_000).encode())
    cut = tmp_path / "cut.jsonl.gz"
    cut.write_bytes(packed[: len(packed) // 2])
    fake = tmp_path / "fake.jsonl.gz"
    fake.write_text(line)
    binary = tmp_path / "binary.jsonl"
    binary.write_bytes(bytes(range(256)) * 8)
    books, errors = read(cut)
    assert 0 < books < 2_000 and len(errors) == 1
    assert errors[0] == (
        f"{cut}:{books + 1}: cannot read past line {books} "
        "(Compressed file ended before the end-of-stream marker was reached)"
    )
    assert read(fake) == (0, [f"{fake}:1: cannot read (Not a gzipped file (b'{{\"'))"])
    assert read(binary) == (0, [f"{binary}:1: not a JSON Lines file (binary data (a NUL byte))"])
    assert read(tmp_path) == (0, [f"{tmp_path}:1: cannot read (Is a directory)"])


def test_bad_lines_in_a_text_file_are_skipped_one_line_each(tmp_path: Path) -> None:
    line = json.dumps(GOOD).encode() + b"\n"
    path = tmp_path / "books.jsonl"
    path.write_bytes(line + b'{"x": "\xff"}\n' + b"\0\0\n" + b"[" * (5 << 20) + b"\n" + line)
    assert read(path) == (
        2,
        [
            f"{path}:2: not UTF-8 text (byte 0xff at column 8)",
            f"{path}:3: binary data (a NUL byte)",
            f"{path}:4: line longer than {4 << 20} bytes",
        ],
    )


def test_detect_only_names_an_unreadable_file_and_reads_the_others(
    busy: HftConfig, tmp_path: Path
) -> None:
    path = tmp_path / "books.jsonl.gz"
    path.write_bytes(b"\x1f\x8b\x08\x00garbage")
    good = tmp_path / "good.jsonl"
    write_sim_recording(busy, good, ticks=10)
    err = io.StringIO()
    report = detect_replay(busy, [path, good], err=err)
    assert report["lines"] == 10 * len(busy.venues) * len(busy.symbols)
    assert len(report["unreadable_files"]) == 1
    assert re.match(rf"hft-ray replay: {re.escape(str(path))}:1: cannot read", err.getvalue())


def test_lines_the_config_does_not_know_are_counted_and_noticed_once_per_file(
    busy: HftConfig, tmp_path: Path
) -> None:
    paths = [tmp_path / "a.jsonl", tmp_path / "b.jsonl"]
    for path in paths:
        lines = [
            {**GOOD, "timestamp": t, "symbol": s, "exchange": x}
            for t, (s, x) in enumerate([("XYZ/USDT", "okx"), ("BTC/USDT", "kraken")] * 3)
        ]
        path.write_text("".join(json.dumps(x) + "\n" for x in lines))
    err = io.StringIO()
    report = detect_replay(busy, paths, err=err)
    assert report["lines_of_other_symbols"] == 6 and report["lines_of_other_exchanges"] == 6
    assert report["unknown"] == [
        f"{paths[0]}:1: symbol XYZ/USDT is not a symbol of the run: its lines are skipped",
        f"{paths[1]}:1: symbol XYZ/USDT is not a symbol of the run: its lines are skipped",
        f"{paths[0]}:2: exchange kraken is not a venue of the run: its lines are skipped",
        f"{paths[1]}:2: exchange kraken is not a venue of the run: its lines are skipped",
    ]
    assert err.getvalue().splitlines() == [f"hft-ray replay: {n}" for n in report["unknown"]]


def test_a_full_replay_of_a_corrupt_file_finishes_and_keeps_bad_books_off_the_venue(
    busy: HftConfig, tmp_path: Path
) -> None:
    """The replay market (as its actor and a fused node run it) on a file cut short: every
    line before the cut is released, the error is listed, and it is done, so the run never
    waits at 0 books/s; a book of 1e308 reaches the feed (which refuses it) while the
    matching engine sees an empty book."""
    kinds = [
        {"bids": [[100.0, 1.0]], "asks": [[101.0, 1.0]]},
        {"bids": [[1e308, 1.0]], "asks": [[1e308, 1.0]]},
        {"exchange": "nowhere"},
    ]
    lines = [{**GOOD, **kinds[t % 3], "timestamp": t} for t in range(1_200)]
    packed = gzip.compress("".join(json.dumps(x) + "\n" for x in lines).encode())
    path = tmp_path / "books.jsonl.gz"
    path.write_bytes(packed[: len(packed) // 2])
    exchanges = {v: sim_exchange_from_config(busy, v) for v in busy.venues}
    market = ReplayMarket(exchanges, 0.1, [path], 1.0, True, run_symbols=busy.symbols)

    books = asyncio.run(asyncio.wait_for(take_everything(market, list(exchanges)), 60))["okx"]
    assert market.done and len(books) == market.lines > 100
    assert market.malformed == [] and len(market.unreadable) == 1
    assert "cannot read past line" in market.unreadable[0]
    assert market.unknown == [
        f"{path}:3: exchange nowhere is not a venue of the run: its lines are skipped"
    ]
    last = books[-1]
    bids, asks = exchanges["okx"].book("BTC/USDT")
    if last.bids[0, 0] == 1e308:
        assert len(bids) == len(asks) == 0
    else:
        assert bids.tolist() == [[100.0, 1.0]]


async def take_everything(
    market: ReplayMarket, venues: list[str], pause_s: float = 0.0
) -> dict[str, list]:
    """Play the market while a feed per venue takes its books, each pausing `pause_s` after
    every poll (a feed slower than the replay); every book each venue got."""
    task = asyncio.create_task(market.play())
    got: dict[str, list] = {v: [] for v in venues}
    cursors = dict.fromkeys(venues, 0)

    async def feed(venue: str) -> None:
        while not (market.done and cursors[venue] == market.progress()["released"][venue]):
            cursors[venue], books = await market.poll(venue, cursors[venue], 0.05)
            got[venue] += books
            await asyncio.sleep(pause_s)

    await asyncio.gather(*(feed(v) for v in venues))
    await task
    return got


@pytest.mark.parametrize(
    ("speed", "fast", "pause_s"), [(4.0, False, 0.02), (200.0, False, 0.1), (1.0, True, 0.0)]
)
def test_a_replay_passes_every_book_to_feeds_slower_than_it(
    busy: HftConfig, tmp_path: Path, speed: float, fast: bool, pause_s: float
) -> None:
    """At `--speed 4`, at a speed no feed keeps up with, and with `--fast`: every line of the
    file reaches its venue's feed, in order, none lost to the ring (a slow feed holds the
    replay back instead); the clock starts only once every feed reads."""
    path = tmp_path / "books.jsonl"
    write_sim_recording(busy, path, ticks=120)  # 3 s of books, 120 per venue and symbol
    exchanges = {v: sim_exchange_from_config(busy, v) for v in busy.venues}
    market = ReplayMarket(exchanges, 0.1, [path], speed, fast, run_symbols=busy.symbols)
    got = asyncio.run(asyncio.wait_for(take_everything(market, list(exchanges), pause_s), 120))
    with open(path) as f:
        lines = [json.loads(x) for x in f]
    for venue, books in got.items():
        recorded = [(x["symbol"], x["nonce"]) for x in lines if x["exchange"] == venue]
        assert [(b.symbol, b.seq) for b in books] == recorded, venue
    assert market.lines == len(lines)
    if speed == 200.0:
        assert market.progress()["held_s"] > 0  # it did have to wait for the feeds
