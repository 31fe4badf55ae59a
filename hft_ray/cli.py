"""`hft-ray`: the command line.

Every user error (a bad argument, a broken config, a cluster that cannot host the run) ends
with one line on stderr naming what was wrong and a non-zero exit, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn

from hft_ray import __version__
from hft_ray.config import (
    MAX_BOOK_DEPTH,
    MAX_REPLAY_SPEED,
    MAX_SEED,
    MAX_SYMBOLS,
    SYMBOL_RE,
    ConfigError,
    HftConfig,
    load_config,
    load_record_config,
)
from hft_ray.venues.base import VenueUnavailable

EXIT_USAGE = 2
EXIT_CLUSTER = 3
EXIT_RUN_FAILED = 4


#: Most walk-forward folds of a sweep: each is a backtest per grid point.
MAX_FOLDS = 100

#: Longest --duration: a run or a recording meant to last longer is a service, not a command.
MAX_DURATION_S = 7 * 86_400.0


class _Parser(argparse.ArgumentParser):
    """An argument parser whose every error is one line on stderr (the usage is for --help),
    exit status 2."""

    def error(self, message: str) -> NoReturn:
        line = " ".join(message.split())
        self.exit(EXIT_USAGE, f"{self.prog}: error: {line} (see {self.prog} --help)\n")


def _positive(most: float, unit: str = "") -> Callable[[str], float]:
    """An argparse type for a finite number above zero and at most `most`, its errors naming
    the unit."""
    of_unit, in_unit = (f" of {unit}", f" {unit}") if unit else ("", "")

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        if math.isnan(value):
            raise argparse.ArgumentTypeError(f"not a number{of_unit}: {text!r}")
        if not value > 0:
            raise argparse.ArgumentTypeError(f"must be more than 0{in_unit} (got {text.strip()})")
        if value > most:  # inf and 1e400 included
            raise argparse.ArgumentTypeError(
                f"must be at most {most:g}{in_unit} (got {text.strip()})"
            )
        return value

    return parse


def _whole(most: int, unit: str = "", least: int = 1) -> Callable[[str], int]:
    """An argparse type for a whole number from `least` to `most`."""
    in_unit = f" {unit}" if unit else ""

    def parse(text: str) -> int:
        digits = text.strip()
        # ASCII digits only, and no more of them than `most` has: int() of a long string is
        # slow, and refused past 4300 digits.
        if (
            not re.fullmatch(r"[0-9]+", digits)
            or len(digits.lstrip("0")) > len(str(most))
            or not least <= int(digits) <= most
        ):
            raise argparse.ArgumentTypeError(
                f"must be a whole number from {least} to {most}{in_unit} (got {text!r})"
            )
        return int(digits)

    return parse


def _symbols(text: str) -> list[str]:
    symbols = [s.strip() for s in text.split(",") if s.strip()]
    bad = [s for s in symbols if not SYMBOL_RE.match(s)]
    if not symbols or bad:
        raise argparse.ArgumentTypeError(
            f"expected ccxt unified symbols like BTC/USDT,ETH/USDT (got {text!r})"
        )
    if len(symbols) > MAX_SYMBOLS:
        raise argparse.ArgumentTypeError(f"at most {MAX_SYMBOLS} symbols (got {len(symbols)})")
    return symbols


_positive_seconds = _positive(MAX_DURATION_S, "seconds")
_speed = _positive(MAX_REPLAY_SPEED)
_depth = _whole(MAX_BOOK_DEPTH, "levels")
_seed = _whole(MAX_SEED, least=0)
_folds = _whole(MAX_FOLDS, "folds", least=2)


def build_parser() -> argparse.ArgumentParser:
    from hft_ray.soak import MAX_MINUTES, MAX_RATE

    parser = _Parser(
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
    replay = sub.add_parser(
        "replay",
        help="replay recorded books",
        description="Replay recorded books (JSON Lines, .gz allowed; see README) through the "
        "same feed checks, detector, risk and executor as a live run. By default a backtest: "
        "in recorded time, in this process (files recorded apart in time as parallel Ray "
        "tasks), the same journal and report every time for the same files, config and seed. "
        "--speed or --fast replay through the actors instead, on the host's clocks. Fees, "
        "precision, balances and min_profit_bps come from the config; every exchange in the "
        "files must be one of its venues. A malformed line is reported with its file and line "
        "number and skipped.",
    )
    replay.add_argument("files", nargs="+", type=Path, metavar="FILE", help="recorded books")
    replay.add_argument(
        "--config",
        type=Path,
        metavar="PATH",
        help="YAML config (default: the packaged configs/local.yaml)",
    )
    pace = replay.add_mutually_exclusive_group()
    pace.add_argument(
        "--speed",
        type=_speed,
        metavar="X",
        help="through the actors, at X times recorded speed",
    )
    pace.add_argument(
        "--fast",
        action="store_true",
        help="through the actors, as fast as they take the books (in lockstep)",
    )
    replay.add_argument(
        "--seed",
        type=_seed,
        metavar="N",
        help="seed of the simulated venues' order fates (default: run.seed of the config)",
    )
    replay.add_argument(
        "--detect-only",
        action="store_true",
        help="evaluate after every line: no cooldown, no risk, no execution; "
        "the report lists every opportunity (opportunities_list)",
    )
    replay.add_argument(
        "--report",
        type=Path,
        metavar="PATH",
        help="where to write the JSON report (default: print it)",
    )

    sweep = sub.add_parser(
        "sweep",
        help="backtest a parameter grid, judged walk-forward",
        description="Backtest every point of a parameter grid on FOLDS consecutive windows of "
        "the recording (parallel Ray tasks), then walk forward: for each window after the "
        "first, the point that did best on the windows before it is judged on it. Prints the "
        "grid's and the walk-forward's tables and writes sweep.json.",
    )
    sweep.add_argument("files", nargs="+", type=Path, metavar="FILE", help="recorded books")
    sweep.add_argument(
        "--config", type=Path, metavar="PATH", help="YAML config (default: configs/local.yaml)"
    )
    sweep.add_argument(
        "--grid",
        action="append",
        required=True,
        metavar="NAME=V1,V2",
        help="a config field and its values, e.g. min_profit_bps=2,5,10 or "
        "risk.max_order_notional=500,2000 (repeat for more axes)",
    )
    sweep.add_argument(
        "--folds",
        type=_folds,
        default=4,
        metavar="N",
        help="windows of equal recorded time (default 4)",
    )
    sweep.add_argument(
        "--out", type=Path, metavar="DIR", help="where to write (default: runs/sweep-<time>)"
    )

    record = sub.add_parser(
        "record",
        help="record live order books to a file",
        description="Watch a live exchange's order books through ccxt.pro and write each book "
        "as one line of JSON, after the same checks a run's feed makes; a moment a book was "
        "not tradable is an empty book with its reason. A status line every few seconds, a "
        "summary at the end. --config may hold just the venue (and feed) sections.",
    )
    record.add_argument("--exchange", required=True, metavar="ID", help="ccxt exchange id")
    record.add_argument(
        "--symbols",
        required=True,
        type=_symbols,
        metavar="S1,S2",
        help="ccxt unified symbols, comma-separated",
    )
    record.add_argument(
        "--out", required=True, type=Path, metavar="FILE", help="output file (.gz to compress)"
    )
    record.add_argument(
        "--duration",
        type=_positive_seconds,
        metavar="SECONDS",
        help="stop after this long (default: until Ctrl-C)",
    )
    record.add_argument(
        "--depth",
        type=_depth,
        default=20,
        metavar="D",
        help="levels per side to record (default 20)",
    )
    record.add_argument(
        "--config",
        type=Path,
        metavar="PATH",
        help="config whose ccxt venue for this exchange gives urls, options, "
        "sandbox and credentials (default: ccxt's own endpoints)",
    )
    for command, summary, text in (
        (
            "status",
            "show the health and status of a running run",
            "Print the status of the run active in the namespace: health and its reasons, "
            "each venue's feed (running, updates, last book age, invalid books, queue), the "
            "trading state and breakers, counts, PnL and positions, as the run's status actor "
            "serves them on /status. With no status actor (status.enabled false), only what "
            "the risk actor holds.",
        ),
        (
            "halt",
            "stop trading in a running run",
            "Trip the operator breaker: risk approves "
            "nothing (or, with --reduce-only, only orders that shrink exposure) until resumed.",
        ),
        (
            "resume",
            "resume trading in a running run",
            "Clear every breaker, the operator's "
            "and those risk tripped by itself, and trade again.",
        ),
    ):
        control = sub.add_parser(command, help=summary, description=text)
        control.add_argument(
            "--run",
            metavar="RUN",
            help="the run: its directory (runs/<run_id>) or its id (default: the one run live "
            "on this host)",
        )
        control.add_argument(
            "--address",
            metavar="RAY_ADDRESS",
            help="instead of --run, the Ray cluster of the run (default: $RAY_ADDRESS)",
        )
        control.add_argument(
            "--namespace",
            metavar="NS",
            help="with --address, the Ray namespace of the run, cluster.namespace in its "
            "config (default hft_ray)",
        )
        control.add_argument("--json", action="store_true", help="print the state as JSON")
        if command == "halt":
            control.add_argument(
                "--reason", default="operator", help="why, recorded with the breaker"
            )
            control.add_argument(
                "--reduce-only",
                action="store_true",
                help="admit orders that shrink exposure instead of nothing",
            )
        if command == "resume":
            control.add_argument(
                "--force",
                action="store_true",
                help="clear a loss breaker (max_daily_loss, max_drawdown) without asking",
            )
    report = sub.add_parser(
        "report",
        help="rebuild positions and PnL from a run's journal",
        description="Rebuild positions, PnL, fees and counts of a finished (or running) run "
        "from its journal alone, list intents with no recorded outcome, and compare the "
        "positions with what the run's risk actor held (from its report.json).",
    )
    report.add_argument("run_dir", type=Path, metavar="RUN_DIR", help="runs/<run_id>")
    report.add_argument(
        "--config",
        type=Path,
        metavar="PATH",
        help="the run's config, for a run journaled in Redis (default: the packaged one)",
    )
    report.add_argument("--json", action="store_true", help="print the whole rebuild as JSON")
    report.add_argument(
        "--html",
        nargs="?",
        const="",
        metavar="PATH",
        help="also write a self-contained HTML page with charts (default: RUN_DIR/report.html)",
    )
    bench = sub.add_parser(
        "bench",
        help="measure speed against a baseline measured in the same run",
        description="Measure every section (kernel, feed, ...) beside the baseline it is "
        "compared with in the same run, with the machine (cores, CPU model, load average), "
        "and write the figures as JSON. Timings are minimums of several runs on a pinned core "
        "where a section says so.",
    )
    bench.add_argument(
        "--out",
        type=Path,
        default=Path("bench/bench.json"),
        metavar="PATH",
        help="where to write the JSON (default bench/bench.json)",
    )
    size = bench.add_mutually_exclusive_group()
    size.add_argument(
        "--quick", action="store_true", help="smaller sizes: under three minutes on 2 cores"
    )
    size.add_argument(
        "--smoke",
        action="store_true",
        help="the smallest sizes, only to prove every section runs (figures mean nothing)",
    )
    bench.add_argument(
        "--only",
        type=_sections,
        metavar="S1,S2",
        help=f"run only these sections ({', '.join(_bench_sections())})",
    )
    soak = sub.add_parser(
        "soak",
        help="a long run at a high update rate, checking memory, queues and latency drift",
        description="Run the fused pipeline for --minutes at --rate book updates/s on a local "
        "Ray of its own, sampling every process's RSS/PSS, the feed queues and tick_to_trade; "
        "write the figures as JSON and exit non-zero when memory grew past its bound after "
        "warm-up, a queue grew, or the last minute's p99 drifted from the first's.",
    )
    soak.add_argument(
        "--minutes",
        required=True,
        type=_positive(MAX_MINUTES, "minutes"),
        metavar="N",
        help="how long (<= 1440)",
    )
    soak.add_argument(
        "--rate",
        type=_whole(MAX_RATE, "updates/s"),
        default=10_000,
        metavar="UPDATES_PER_S",
        help="book updates per second over all venues (default 10000)",
    )
    soak.add_argument(
        "--out",
        type=Path,
        default=Path("soak.json"),
        metavar="PATH",
        help="where to write the JSON (default soak.json)",
    )
    return parser


def _cmd_soak(args: argparse.Namespace) -> int:
    from hft_ray.soak import soak, summary

    result = soak(args.minutes, args.rate)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(summary(result))
    print(f"soak: {args.out}")
    return 0 if result["ok"] else EXIT_RUN_FAILED


def _bench_sections() -> list[str]:
    from hft_ray.bench import SECTIONS

    return list(SECTIONS)


def _sections(text: str) -> list[str]:
    wanted = [s.strip() for s in text.split(",") if s.strip()]
    known = _bench_sections()
    bad = [s for s in wanted if s not in known]
    if not wanted or bad:
        raise argparse.ArgumentTypeError(
            f"expected sections among {', '.join(known)} (got {text!r})"
        )
    return wanted


def _cmd_bench(args: argparse.Namespace) -> int:
    from hft_ray.bench import run_bench
    from hft_ray.bench.report import summary_lines

    scale = "quick" if args.quick else "smoke" if args.smoke else "full"
    report = run_bench(args.out, scale, args.only)
    for line in summary_lines(report):
        print(line)
    print(f"bench: {args.out}")
    return 0


def _cmd_replay(args: argparse.Namespace) -> int:
    from hft_ray.replay_run import detect_replay

    config = load_config(args.config)
    if args.seed is not None:
        config = config.model_copy(
            update={"run": config.run.model_copy(update={"seed": args.seed})}
        )
    if not args.detect_only:
        if args.speed is None and not args.fast:
            return _backtest(config, args)
        return _replay_through_actors(config, args)
    report = detect_replay(config, args.files)
    text = json.dumps(report, indent=2) + "\n"
    if args.report is None:
        sys.stdout.write(text)
    else:
        args.report.parent.mkdir(parents=True, exist_ok=True)
        args.report.write_text(text)
        print(
            f"{report['lines']} lines, {report['opportunities']} opportunities, "
            f"{len(report['malformed_lines'])} malformed; report: {args.report}"
        )
    if report["unreadable_files"]:
        print(
            f"hft-ray: replay ended badly: {len(report['unreadable_files'])} files could not "
            "be read to their end",
            file=sys.stderr,
        )
        return EXIT_RUN_FAILED
    return 0


def _backtest(config: HftConfig, args: argparse.Namespace) -> int:
    from hft_ray.backtest import run_backtest
    from hft_ray.cluster import ClusterError
    from hft_ray.report import human_summary

    try:
        report = run_backtest(config, args.files, report_path=args.report)
    except ClusterError as err:
        print(f"hft-ray: cluster error: {err}", file=sys.stderr)
        return EXIT_CLUSTER
    print(human_summary(report))
    return _run_outcome(report)


def _cmd_sweep(args: argparse.Namespace) -> int:
    from hft_ray.cluster import ClusterError
    from hft_ray.sweep import parse_parameter, resolve_parameter, sweep, sweep_tables

    config = load_config(args.config)
    grid = [resolve_parameter(config, *parse_parameter(spec)) for spec in args.grid]
    out = args.out or Path(config.run.runs_dir) / f"sweep-{time.strftime('%Y%m%dT%H%M%SZ')}"
    if out.exists():
        raise ConfigError(f"sweep: {out} exists already")
    try:
        result = sweep(config, args.files, grid, args.folds, out)
    except ClusterError as err:
        print(f"hft-ray: cluster error: {err}", file=sys.stderr)
        return EXIT_CLUSTER
    (out / "sweep.json").write_text(json.dumps(result, indent=2) + "\n")
    print(sweep_tables(result))
    print(f"sweep: {out / 'sweep.json'}")
    return 0


def _replay_through_actors(config: HftConfig, args: argparse.Namespace) -> int:
    from hft_ray.cluster import ClusterError
    from hft_ray.config import ReplayConfig
    from hft_ray.runner import run

    for path in args.files:
        if not path.exists():
            raise ConfigError(f"replay: no such file {path}")
    replay = ReplayConfig(files=args.files, speed=args.speed or 1.0, fast=args.fast)
    try:
        report = run(
            config.model_copy(update={"replay": replay}),
            duration_s=None,
            report_path=args.report,
        )
    except ClusterError as err:
        print(f"hft-ray: cluster error: {err}", file=sys.stderr)
        return EXIT_CLUSTER
    return _run_outcome(report)


def _cmd_record(args: argparse.Namespace) -> int:
    from hft_ray.replay_run import run_record

    config = load_record_config(args.config)
    run_record(config, args.exchange, args.symbols, args.out, args.duration, args.depth)
    return 0


def _cmd_run(args: argparse.Namespace) -> int:
    from hft_ray.cluster import ClusterError
    from hft_ray.runner import run
    from hft_ray.store import StoreUnavailable

    config = load_config(args.config)
    try:
        report = run(
            config, duration_s=args.duration, address=args.address, report_path=args.report
        )
    except ClusterError as err:
        print(f"hft-ray: cluster error: {err}", file=sys.stderr)
        return EXIT_CLUSTER
    except StoreUnavailable as err:
        print(f"hft-ray: {err}", file=sys.stderr)
        return EXIT_CLUSTER
    return _run_outcome(report)


def _run_outcome(report: dict[str, Any]) -> int:
    """Exit status of a finished run: non-zero whenever the report finds something wrong (a
    failure that stopped it, trades left unreported, positions that do not reconcile, a stop
    that could not ask every actor, a replayed file that could not be read to its end)."""
    problems = []
    if report.get("failure"):
        problems.append(str(report["failure"]))
    if report.get("in_flight_at_stop"):
        problems.append(f"{report['in_flight_at_stop']} trades unreported at stop")
    if report.get("positions_match_journal") is False:
        problems.append("risk's positions do not match the journal")
    if report.get("positions_match_venues") is False:
        problems.append("the journal's positions do not match the venues'")
    if report.get("risk_answered_at_stop") is False:
        problems.append("risk did not answer at the stop (report made from the journal)")
    if "store_lost" in (report.get("risk_breakers") or {}):
        problems.append("the store lost its data during the run")
    read = (report.get("journal") or {}).get("read") or {}
    if read.get("corrupt_records") or read.get("missing"):
        problems.append(
            f"the journal has {read.get('corrupt_records', 0)} corrupt and "
            f"{read.get('missing', 0)} missing records"
        )
    if read.get("unreadable_records"):
        problems.append(
            f"the journal has {read['unreadable_records']} records this version cannot read"
        )
    if report.get("stop_errors"):
        problems.append(f"the stop met {len(report['stop_errors'])} errors")
    unreadable = (report.get("replay") or {}).get("unreadable_files")
    if unreadable:
        problems.append(f"{len(unreadable)} replay files could not be read to their end")
    if problems:
        print(f"hft-ray: run ended badly: {'; '.join(problems)}", file=sys.stderr)
        return EXIT_RUN_FAILED
    return 0


def _cmd_control(args: argparse.Namespace) -> int:
    from hft_ray.cluster import ClusterError
    from hft_ray.control import call_risk, format_status, loss_breakers, read_status, target
    from hft_ray.status import format_document

    whole = False
    try:
        to = target(args.address, args.namespace, args.run)
        if args.command == "status":
            state, whole = read_status(to)
        elif args.command == "halt":
            state = call_risk(to, "halt", reason=args.reason, reduce_only=args.reduce_only)
        else:
            losses = loss_breakers(call_risk(to, "stats"))
            if losses and not args.force and not _confirmed(to.describe({}), losses):
                print(
                    "hft-ray: resume refused: it would clear "
                    + ", ".join(f"{n} ({d})" for n, d in losses.items())
                    + "; pass --force to clear them",
                    file=sys.stderr,
                )
                return EXIT_USAGE
            state = call_risk(to, "resume")
    except ClusterError as err:
        print(f"hft-ray: cluster error: {err}", file=sys.stderr)
        return EXIT_CLUSTER
    if args.json:
        print(json.dumps(state, indent=2))
    else:
        print(f"{to.describe(state)}:")
        print(format_document(state) if whole else format_status(state))
    return 0


def _confirmed(run: str, losses: dict[str, str]) -> bool:
    """Ask on a terminal before a loss breaker is cleared by hand; elsewhere, never assume."""
    if not sys.stdin.isatty():
        return False
    listed = ", ".join(f"{n} ({d})" for n, d in losses.items())
    answer = input(f"{run} tripped {listed}. Resume trading anyway? [y/N] ")
    return answer.strip().lower() in ("y", "yes")


def _cmd_report(args: argparse.Namespace) -> int:
    from hft_ray.analytics import pair_table
    from hft_ray.control import journal_report
    from hft_ray.report import format_positions
    from hft_ray.store import StoreUnavailable

    if not args.run_dir.is_dir():
        raise ConfigError(f"report: {args.run_dir} is not a run directory")
    try:
        rebuilt = journal_report(load_config(args.config), args.run_dir)
    except StoreUnavailable as err:
        print(f"hft-ray: store error: cannot read the journal: {err}", file=sys.stderr)
        return EXIT_CLUSTER
    except (KeyError, TypeError, ValueError) as err:
        print(
            f"hft-ray: journal error: {args.run_dir}: a record this version cannot read "
            f"({err.__class__.__name__}: {err})",
            file=sys.stderr,
        )
        return EXIT_RUN_FAILED
    if args.html is not None:
        page = _write_html(args.run_dir, rebuilt, Path(args.html) if args.html else None)
        print(f"html report: {page}", file=sys.stderr if args.json else sys.stdout)
    if args.json:
        print(json.dumps(rebuilt, indent=2))
        return 0
    print(
        f"{rebuilt['run_dir']}: {rebuilt['fills']} fills, trades {rebuilt['trades']}, "
        f"legs failed {rebuilt['legs_failed']}, unwinds {rebuilt['unwinds']}"
    )
    print(
        f"  realized PnL {rebuilt['realized_pnl_quote']:+.4f}  fees {rebuilt['fees_quote']:.4f}"
        f"  unfinished intents {len(rebuilt['unfinished_intents'])}"
    )
    for line in format_positions(rebuilt["positions"]):
        print(line)
    for line in pair_table(rebuilt["analytics"]):
        print(line)
    if "positions_match_risk" in rebuilt:
        match = "yes" if rebuilt["positions_match_risk"] else "NO"
        print(f"  positions match the risk actor's: {match}")
    read = rebuilt["journal_read"]
    for c in read["corrupt"]:
        print(f"  corrupt record skipped: {c['segment']} at byte {c['offset']} ({c['length']} B)")
    for u in read["unreadable"]:
        print(f"  unreadable record skipped: #{u['index']}: {u['reason']}")
    if read["duplicates"] or read["missing"]:
        print(f"  duplicates dropped {read['duplicates']}, records missing {read['missing']}")
    damaged = read["corrupt_records"] or read["missing"] or read["unreadable_records"]
    return 0 if rebuilt.get("positions_match_risk", True) and not damaged else EXIT_RUN_FAILED


def _write_html(run_dir: Path, rebuilt: dict[str, Any], path: Path | None) -> Path:
    """The run's HTML page, from its report.json with the journal's rebuild laid over it."""
    from hft_ray.report_html import page_report, render_html

    report_file = run_dir / "report.json"
    run_report = None
    if report_file.exists():
        try:
            run_report = json.loads(report_file.read_text())
        except ValueError as err:
            print(
                f"hft-ray: {report_file} unreadable, page from the journal only: {err}",
                file=sys.stderr,
            )
    path = path or run_dir / "report.html"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_html(page_report(rebuilt, run_report)))
    return path


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "run":
            return _cmd_run(args)
        if args.command == "replay":
            return _cmd_replay(args)
        if args.command == "sweep":
            return _cmd_sweep(args)
        if args.command == "record":
            return _cmd_record(args)
        if args.command == "bench":
            return _cmd_bench(args)
        if args.command == "soak":
            return _cmd_soak(args)
        if args.command in ("status", "halt", "resume"):
            return _cmd_control(args)
        if args.command == "report":
            return _cmd_report(args)
    except ConfigError as err:
        print(f"hft-ray: config error: {err}", file=sys.stderr)
        return EXIT_USAGE
    except VenueUnavailable as err:
        print(f"hft-ray: venue unavailable: {err}", file=sys.stderr)
        return EXIT_CLUSTER
    raise AssertionError(f"unhandled command {args.command}")


if __name__ == "__main__":
    sys.exit(main())
