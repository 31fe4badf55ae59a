"""`hft-ray`: the command line.

Every user error (a bad argument, a broken config, a cluster that cannot host the run) ends
with one line on stderr naming what was wrong and a non-zero exit, never a traceback.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from hft_ray import __version__
from hft_ray.config import ConfigError, load_config

EXIT_USAGE = 2
EXIT_CLUSTER = 3


def _positive_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be more than 0 seconds (got {text})")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hft-ray",
        description="Ray-distributed, multi-exchange crypto arbitrage: feeds, detectors, "
        "one risk actor and executors on a Ray cluster.",
    )
    parser.add_argument("--version", action="version", version=f"hft-ray {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = sub.add_parser(
        "run",
        help="run the arbitrage pipeline",
        description="Run the whole pipeline: one feed per venue, the detector pool, the risk "
        "actor and the executors, in one placement group. Prints a status line per second; "
        "Ctrl-C or the end of --duration stops it cleanly and writes the report.",
    )
    run.add_argument(
        "--config",
        type=Path,
        metavar="PATH",
        help="YAML config (default: the packaged configs/local.yaml: local Ray, three "
        "simulated venues)",
    )
    run.add_argument(
        "--duration",
        type=_positive_seconds,
        metavar="SECONDS",
        help="stop after this many seconds (default: run until Ctrl-C)",
    )
    run.add_argument(
        "--address",
        metavar="RAY_ADDRESS",
        help="join this Ray cluster (e.g. 127.0.0.1:6379 or auto) instead of starting a local "
        "one; default: cluster.address from the config, then $RAY_ADDRESS",
    )
    run.add_argument(
        "--report",
        type=Path,
        metavar="PATH",
        help="where to write the JSON run report (default: runs/<run_id>/report.json)",
    )
    return parser


def _cmd_run(args: argparse.Namespace) -> int:
    from hft_ray.cluster import ClusterError
    from hft_ray.runner import run

    config = load_config(args.config)
    try:
        run(config, duration_s=args.duration, address=args.address, report_path=args.report)
    except ClusterError as err:
        print(f"hft-ray: cluster error: {err}", file=sys.stderr)
        return EXIT_CLUSTER
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "run":
            return _cmd_run(args)
    except ConfigError as err:
        print(f"hft-ray: config error: {err}", file=sys.stderr)
        return EXIT_USAGE
    raise AssertionError(f"unhandled command {args.command}")


if __name__ == "__main__":
    sys.exit(main())
