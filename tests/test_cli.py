"""The command line: help for every option, one clear line for every bad argument."""

from __future__ import annotations

import subprocess
import sys

import pytest

from hft_ray.cli import build_parser, main


def hft_ray(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "hft_ray.cli", *args], capture_output=True, text=True, timeout=60
    )


def test_help_explains_every_subcommand_and_option() -> None:
    top = hft_ray("--help")
    assert top.returncode == 0 and "run the arbitrage pipeline" in top.stdout
    run = hft_ray("run", "--help")
    assert run.returncode == 0
    for option in ("--config", "--duration", "--address", "--report"):
        assert option in run.stdout
    replay = hft_ray("replay", "--help")
    for option in ("--speed", "--fast", "--detect-only", "--report", "--config"):
        assert option in replay.stdout
    record = hft_ray("record", "--help")
    for option in ("--exchange", "--symbols", "--out", "--duration", "--depth", "--config"):
        assert option in record.stdout
    assert "configs/local.yaml" in run.stdout and "Ctrl-C" in run.stdout


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["run", "--duration", "-3"], "argument --duration: must be more than 0 seconds"),
        (["run", "--duration", "soon"], "argument --duration: not a number of seconds: 'soon'"),
        (["run", "--bogus"], "unrecognized arguments: --bogus"),
        (["fly"], "invalid choice: 'fly'"),
        (
            ["record", "--exchange", "binance", "--symbols", "BTCUSDT", "--out", "x"],
            "argument --symbols: expected ccxt unified symbols like BTC/USDT,ETH/USDT",
        ),
        (
            ["record", "--exchange", "binance", "--symbols", "BTC/USDT"],
            "the following arguments are required: --out",
        ),
        (["replay", "f.jsonl", "--speed", "0"], "argument --speed: must be more than 0"),
        (["replay", "f.jsonl", "--speed", "2", "--fast"], "not allowed with argument"),
        (["bench", "--only", "kernel,nope"], "argument --only: expected sections among"),
        (["bench", "--quick", "--smoke"], "not allowed with argument"),
    ],
)
def test_bad_arguments_name_what_was_wrong(args: list[str], expected: str) -> None:
    proc = hft_ray(*args)
    assert proc.returncode == 2
    assert expected in proc.stderr and "Traceback" not in proc.stderr


RECORD = ["record", "--exchange", "binance", "--symbols", "BTC/USDT", "--out", "x"]


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["run", "--duration", "inf"], "argument --duration: must be at most 604800 seconds"),
        (["run", "--duration", "1e400"], "argument --duration: must be at most 604800 seconds"),
        (["run", "--duration", "700000"], "argument --duration: must be at most 604800 seconds"),
        (["run", "--duration", "nan"], "argument --duration: not a number of seconds: 'nan'"),
        (["run", "--duration", "-1"], "argument --duration: must be more than 0 seconds (got -1)"),
        (["run", "--duration", "0"], "argument --duration: must be more than 0 seconds (got 0)"),
        (["run", "--duration=-inf"], "argument --duration: must be more than 0 seconds"),
        ([*RECORD, "--duration", "inf"], "argument --duration: must be at most 604800 seconds"),
        (["replay", "f.jsonl", "--speed", "inf"], "argument --speed: must be at most 10000"),
        (["replay", "f.jsonl", "--speed", "nan"], "argument --speed: not a number: 'nan'"),
        (["replay", "f.jsonl", "--speed", "1e5"], "argument --speed: must be at most 10000"),
        ([*RECORD, "--depth", "0"], "argument --depth: must be a whole number from 1 to 400"),
        ([*RECORD, "--depth", "401"], "argument --depth: must be a whole number from 1 to 400"),
        ([*RECORD, "--depth", "2.5"], "argument --depth: must be a whole number from 1 to 400"),
        ([*RECORD, "--depth", "9" * 5000], "argument --depth: must be a whole number from 1"),
    ],
)
def test_infinite_negative_and_huge_numbers_are_one_line_naming_the_argument(
    args: list[str], expected: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as done:
        main(args)
    assert done.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and expected in err, err
    assert err.startswith(f"hft-ray {args[0]}: error: ")


def test_every_parse_error_is_one_line_pointing_at_help(capsys: pytest.CaptureFixture[str]) -> None:
    for args in (["run", "--bogus"], ["fly"], [], ["replay"], ["bench", "--quick", "--smoke"]):
        with pytest.raises(SystemExit) as done:
            main(args)
        assert done.value.code == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "--help)" in err, err


def test_numbers_within_bounds_parse_to_what_was_given() -> None:
    parse = build_parser().parse_args
    assert parse(["run", "--duration", "604800"]).duration == 604800.0
    assert parse(["replay", "f.jsonl", "--speed", "0.25"]).speed == 0.25
    assert parse([*RECORD, "--depth", " 400 "]).depth == 400


def test_missing_config_file_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "--config", "/nonexistent/x.yaml", "--duration", "1"]) == 2
    err = capsys.readouterr().err.strip()
    assert (
        err == "hft-ray: config error: /nonexistent/x.yaml: cannot read (No such file or directory)"
    )


def test_parser_defaults_leave_choices_to_the_config() -> None:
    args = build_parser().parse_args(["run"])
    assert (args.config, args.duration, args.address, args.report) == (None, None, None, None)


@pytest.mark.parametrize("command", [["status"], ["halt"], ["resume"], ["run", "--duration", "1"]])
def test_an_address_nothing_answers_at_fails_fast_with_one_line(command: list[str]) -> None:
    from tests.conftest import free_port

    address = f"127.0.0.1:{free_port()}"
    done = hft_ray(*command, "--address", address)
    assert done.returncode == 3
    assert done.stderr.strip().splitlines()[-1] == (
        f"hft-ray: cluster error: no Ray cluster answers at {address}: Connection refused"
    )
