"""`hft-ray sweep`: backtests over a parameter grid, judged walk-forward.

A setting chosen because it did best on the data it was tried on will look better there than
it ever will again. So the recording is cut into `folds` windows in recorded time, every grid
point is backtested on every window (in parallel, as Ray tasks), and then, fold by fold, the
point that did best on all windows before the fold (in sample) is judged on the fold itself
(out of sample), never seen while choosing. The report sets the chosen points' in-sample
results beside their out-of-sample ones: a setting that only fits its past shows as a gap.

Each window is an independent backtest (flat at its start, as `hft_ray.backtest` defines),
so a training set's result is the sum of its windows'.
"""

from __future__ import annotations

import itertools
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from pydantic import BaseModel, ValidationError

from hft_ray.backtest import Part, Window, backtest_part, check_inputs, recorded_span
from hft_ray.config import ConfigError, HftConfig

#: The figures kept of each backtest of a (point, window).
_FIGURES = ("realized_pnl_quote", "fees_quote", "trades", "approved", "legs_failed")


@dataclass(frozen=True)
class Parameter:
    """One axis of the grid: a config field and the values it takes."""

    section: str
    field: str
    values: tuple[Any, ...]

    @property
    def name(self) -> str:
        return f"{self.section}.{self.field}"


def parse_parameter(spec: str) -> tuple[str, list[str]]:
    """`name=v1,v2,...` as (name, values); the name may be a config field (`min_profit_bps`)
    or a dotted path (`detector.min_profit_bps`)."""
    name, sep, values = spec.partition("=")
    items = [v.strip() for v in values.split(",") if v.strip()]
    if not sep or not name.strip() or not items:
        raise ConfigError(
            f"sweep: --grid {spec!r}: expected NAME=V1,V2,... (e.g. min_profit_bps=2,5)"
        )
    return name.strip(), items


def resolve_parameter(config: HftConfig, name: str, values: list[str]) -> Parameter:
    """The config field `name` names, each value checked by the config's own validation
    (an unknown name or a value the field refuses is a `ConfigError` naming it)."""
    sections = {
        s: type(v).model_fields for s, v in config if isinstance(v, BaseModel) and s != "venues"
    }
    if "." in name:
        section, _, field = name.partition(".")
        if field not in sections.get(section, {}):
            raise ConfigError(f"sweep: no config field {name}")
    else:
        owners = [s for s, fields in sections.items() if name in fields]
        if not owners:
            raise ConfigError(
                f"sweep: parameter {name}: no such config field "
                "(a field name, or SECTION.FIELD such as detector.min_profit_bps)"
            )
        if len(owners) > 1:
            raise ConfigError(
                f"sweep: parameter {name} is a field of {' and '.join(owners)}: say which "
                f"(e.g. {owners[0]}.{name})"
            )
        section, field = owners[0], name
    checked = tuple(
        getattr(getattr(_validated(config, section, field, v), section), field) for v in values
    )
    if len(set(map(repr, checked))) != len(checked):
        raise ConfigError(f"sweep: parameter {section}.{field} lists a value twice")
    return Parameter(section, field, checked)


def _validated(config: HftConfig, section: str, field: str, value: Any) -> HftConfig:
    raw = config.model_dump()
    raw[section][field] = value
    try:
        return HftConfig.model_validate(raw)
    except ValidationError as err:
        why = "; ".join(e["msg"] for e in err.errors())
        raise ConfigError(f"sweep: {section}.{field}={value}: {why}") from None


def grid_points(config: HftConfig, grid: list[Parameter]) -> list[tuple[dict[str, Any], HftConfig]]:
    """Every combination of the grid's values, as (point, config), in a fixed order."""
    points = []
    for values in itertools.product(*(p.values for p in grid)):
        raw = config.model_dump()
        point = {}
        for p, v in zip(grid, values, strict=True):
            raw[p.section][p.field] = v
            point[p.name] = v
        points.append((point, HftConfig.model_validate(raw)))
    return points


def windows_of(span: tuple[int, int], folds: int) -> list[Window]:
    """`folds` consecutive windows of equal recorded length covering `span`."""
    start, end = span[0], span[1] + 1
    edges = [start + (end - start) * i // folds for i in range(folds + 1)]
    return [Window(a, b) for a, b in itertools.pairwise(edges)]


class Progress:
    """A progress bar on a terminal; elsewhere (a log) a line every tenth of the way."""

    def __init__(self, total: int, out: TextIO, label: str = "backtests") -> None:
        self._total, self._out, self._label = total, out, label
        self._tty = out.isatty()
        self._started = time.monotonic()
        self._shown = -1

    def update(self, done: int) -> None:
        tenth = done * 10 // max(1, self._total)
        if not self._tty and tenth == self._shown:
            return
        self._shown = tenth
        bar = "#" * (done * 30 // max(1, self._total))
        line = (
            f"sweep [{bar:<30}] {done}/{self._total} {self._label} "
            f"{time.monotonic() - self._started:.1f}s"
        )
        self._out.write(("\r" + line) if self._tty else line + "\n")
        if self._tty and done == self._total:
            self._out.write("\n")
        self._out.flush()


def _cell(
    config: HftConfig, files: list[Path], window: Window, index: int, run_dir: str
) -> dict[str, Any]:
    """One backtest of the grid: a point's config over one window; its figures."""
    import asyncio

    result = asyncio.run(backtest_part(config, Part(index, files, window), Path(run_dir)))
    risk = result.risk
    return {
        **{k: risk[k] for k in _FIGURES},
        "opportunities": result.detector["opportunities"],
        "rejected": sum(risk["rejected"].values()),
        "books": result.replay["lines"],
    }


def sweep(
    config: HftConfig,
    files: list[Path],
    grid: list[Parameter],
    folds: int,
    out_dir: Path,
    progress: TextIO = sys.stderr,
) -> dict[str, Any]:
    """Backtest every grid point on every window (Ray tasks), then walk forward."""
    import ray

    from hft_ray.cluster import connect

    if folds < 2:
        raise ConfigError("sweep: --folds must be at least 2 (one to choose on, one to judge)")
    check_inputs(config, files)
    span = recorded_span(files)
    if span is None:
        raise ConfigError(f"sweep: no readable book in {', '.join(map(str, files))}")
    windows = windows_of(span, folds)
    points = grid_points(config, grid)
    out_dir.mkdir(parents=True, exist_ok=False)
    started = connect(config, None)
    try:
        task = ray.remote(num_cpus=1, max_retries=0)(_cell)
        refs = {
            task.remote(cfg, files, w, wi, str(out_dir / f"point{pi:03d}")): (pi, wi)
            for pi, (_, cfg) in enumerate(points)
            for wi, w in enumerate(windows)
        }
        figures: dict[tuple[int, int], dict[str, Any]] = {}
        bar = Progress(len(refs), progress)
        bar.update(0)
        pending = list(refs)
        while pending:
            ready, pending = ray.wait(pending, num_returns=1)
            for ref in ready:
                figures[refs[ref]] = ray.get(ref)
            bar.update(len(figures))
    finally:
        if started:
            ray.shutdown()
    return walk_forward([p for p, _ in points], windows, figures, files, folds)


def walk_forward(
    points: list[dict[str, Any]],
    windows: list[Window],
    figures: dict[tuple[int, int], dict[str, Any]],
    files: list[Path],
    folds: int,
) -> dict[str, Any]:
    """Fold k (1..folds-1): choose the point of best realized PnL over windows 0..k-1 (ties:
    the first listed), judge it on window k."""

    def pnl(pi: int, wi: int) -> float:
        return float(figures[(pi, wi)]["realized_pnl_quote"])

    fold_rows: list[dict[str, Any]] = []
    for k in range(1, len(windows)):
        train = {pi: sum(pnl(pi, w) for w in range(k)) for pi in range(len(points))}
        chosen = max(train, key=lambda pi: (train[pi], -pi))
        test = sorted((pnl(pi, k) for pi in range(len(points))), reverse=True)
        fold_rows.append(
            {
                "fold": k,
                "train_windows": list(range(k)),
                "test_window": k,
                "chosen": points[chosen],
                "chosen_index": chosen,
                "in_sample_pnl_per_window": train[chosen] / k,
                "out_of_sample_pnl": pnl(chosen, k),
                "out_of_sample_rank": 1 + test.index(pnl(chosen, k)),
            }
        )
    n = len(fold_rows)
    return {
        "files": [str(f) for f in files],
        "folds": folds,
        "windows": [{"start_ns": w.start_ns, "end_ns": w.end_ns} for w in windows],
        "points": [
            {
                "point": p,
                "windows": [figures[(pi, wi)] for wi in range(len(windows))],
                "realized_pnl_quote": sum(pnl(pi, wi) for wi in range(len(windows))),
                "trades": sum(int(figures[(pi, wi)]["trades"]) for wi in range(len(windows))),
            }
            for pi, p in enumerate(points)
        ],
        "walk_forward": fold_rows,
        "summary": {
            "in_sample_pnl_per_window": sum(r["in_sample_pnl_per_window"] for r in fold_rows) / n,
            "out_of_sample_pnl_per_window": sum(r["out_of_sample_pnl"] for r in fold_rows) / n,
        },
    }


def sweep_tables(result: dict[str, Any]) -> str:
    """The grid and the walk-forward, as Markdown tables (the README shows one)."""
    names = list(result["points"][0]["point"]) if result["points"] else []
    nw = len(result["windows"])
    lines = [
        "| "
        + " | ".join([*names, *(f"w{i} PnL" for i in range(nw)), "total PnL", "trades"])
        + " |",
        "|" + "---|" * (len(names) + nw + 2),
    ]
    for p in result["points"]:
        cells = [_fmt(p["point"][n]) for n in names]
        cells += [f"{w['realized_pnl_quote']:+.2f}" for w in p["windows"]]
        cells += [f"{p['realized_pnl_quote']:+.2f}", str(p["trades"])]
        lines.append("| " + " | ".join(cells) + " |")
    lines += [
        "",
        "| tested on | chosen on | " + " | ".join(names) + " | in-sample PnL/window | "
        "out-of-sample PnL | out-of-sample rank |",
        "|" + "---|" * (len(names) + 5),
    ]
    for r in result["walk_forward"]:
        train = r["train_windows"]
        chosen_on = f"w{train[0]}" + (f"-w{train[-1]}" if len(train) > 1 else "")
        cells = [f"w{r['test_window']}", chosen_on, *(_fmt(r["chosen"][n]) for n in names)]
        cells += [
            f"{r['in_sample_pnl_per_window']:+.2f}",
            f"{r['out_of_sample_pnl']:+.2f}",
            f"{r['out_of_sample_rank']} of {len(result['points'])}",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    s = result["summary"]
    lines += [
        "",
        f"Chosen points: {s['in_sample_pnl_per_window']:+.2f} per window in sample, "
        f"{s['out_of_sample_pnl_per_window']:+.2f} out of sample.",
    ]
    return "\n".join(lines)


def _fmt(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)
