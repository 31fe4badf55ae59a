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
