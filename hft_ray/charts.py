"""Small hand-drawn SVG charts for the HTML run report.

No plotting library: the page must be one self-contained file that any browser opens, and a run
host should not need matplotlib to explain a run. Every function is pure and deterministic (same
data, same bytes) and returns one `<svg>` element; a chart with nothing to draw says "no data".
All text is escaped: reason and venue names come from the journal.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping, Sequence
from html import escape

WIDTH = 640
HEIGHT = 300
_LEFT, _RIGHT, _TOP, _BOTTOM = 64, 16, 34, 46
_LEGEND_ROW = 18
# Tableau 10: distinguishable, and readable on white.
PALETTE = (
    "#4e79a7",
    "#f28e2b",
    "#e15759",
    "#76b7b2",
    "#59a14f",
    "#edc948",
    "#b07aa1",
    "#ff9da7",
    "#9c755f",
    "#bab0ac",
)
# Characters XML 1.0 forbids even escaped; a journal string carrying one must not break the page.
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")

Formatter = Callable[[float], str]


def esc(text: object) -> str:
    """`text` safe inside SVG/HTML text and attribute values."""
    return escape(_NOT_XML.sub("?", str(text)), quote=True)


def fmt_num(value: float) -> str:
    """A number in at most 4 significant digits, large ones with k/M/G: 12.3k, -1.5M, 0.0042."""
    if not math.isfinite(value):
        return str(value)
    size = abs(value)
    for scale, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if size >= scale:
            return f"{value / scale:.3g}{suffix}"
    if size == 0:
        return "0"
    return f"{value:.4g}" if size >= 1e-4 else f"{value:.2e}"


def fmt_us(value: float) -> str:
    """A duration given in microseconds: 850us, 1.2ms, 3.4s."""
    if value >= 1e6:
        return f"{value / 1e6:.3g}s"
    if value >= 1e3:
        return f"{value / 1e3:.3g}ms"
    return f"{value:.3g}us"


def nice_ticks(lo: float, hi: float, count: int = 5) -> list[float]:
    """Round tick values (steps of 1, 2 or 5 times a power of ten) covering [lo, hi]."""
    if hi <= lo:
        return [lo]
    raw = (hi - lo) / max(count, 1)
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 5, 10) if m * power >= raw)
    first = math.ceil(lo / step - 1e-9)
    last = math.floor(hi / step + 1e-9)
    # Rounded to the step's precision so that 0.30000000000000004 prints as 0.3.
    digits = max(0, -math.floor(math.log10(step))) + 1
    return [round(i * step, digits) for i in range(first, last + 1)]


def _padded(lo: float, hi: float) -> tuple[float, float]:
    """A range that is never empty, widened to the round ticks around it."""
    if hi == lo:
        pad = abs(lo) * 0.1 or 1.0
        lo, hi = lo - pad, hi + pad
    ticks = nice_ticks(lo, hi)
    step = ticks[1] - ticks[0] if len(ticks) > 1 else (hi - lo)
    return min(lo, math.floor(lo / step) * step), max(hi, math.ceil(hi / step) * step)


def _time_scale(span_s: float) -> tuple[float, str]:
    """Divisor and unit for an axis of elapsed time: seconds, minutes or hours."""
    if span_s >= 3 * 3600:
        return 3600.0, "h"
    if span_s >= 600:
        return 60.0, "min"
    return 1.0, "s"


def _f(value: float) -> str:
    """A coordinate: fixed precision keeps the output deterministic and small."""
    return f"{value:.1f}"


def _open(title: str, height: int, kind: str) -> list[str]:
    return [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="chart-svg {kind}" '
        f'viewBox="0 0 {WIDTH} {height}" width="{WIDTH}" height="{height}" role="img" '
        f'aria-label="{esc(title)}" font-family="sans-serif" font-size="11">',
        f"<title>{esc(title)}</title>",
        f'<text x="{WIDTH / 2:.0f}" y="18" text-anchor="middle" font-size="14" '
        f'font-weight="bold">{esc(title)}</text>',
    ]


def no_data(title: str, why: str = "no data") -> str:
    """The chart's frame with a line saying why there is nothing to draw."""
    parts = _open(title, HEIGHT // 2, "empty")
    parts.append(
        f'<text class="no-data" x="{WIDTH / 2:.0f}" y="{HEIGHT // 4 + 10}" '
        f'text-anchor="middle" fill="#888" font-size="13">{esc(why)}</text>'
    )
    parts.append("</svg>")
    return "\n".join(parts)


class _Frame:
    """The plot area of one chart and its mapping from data to pixels."""

    def __init__(self, x: tuple[float, float], y: tuple[float, float], height: int) -> None:
        self.x0, self.x1 = x
        self.y0, self.y1 = y
        self.left, self.right = _LEFT, WIDTH - _RIGHT
        self.top, self.bottom = _TOP, height - _BOTTOM

    def px(self, x: float) -> float:
        span = self.x1 - self.x0 or 1.0
        return self.left + (x - self.x0) / span * (self.right - self.left)

    def py(self, y: float) -> float:
        span = self.y1 - self.y0 or 1.0
        return self.bottom - (y - self.y0) / span * (self.bottom - self.top)

    def axes(
        self,
        x_ticks: Sequence[tuple[float, str]],
        y_ticks: Sequence[tuple[float, str]],
        x_label: str,
        y_label: str,
    ) -> list[str]:
        """Grid lines, tick labels and axis labels."""
        out = ['<g class="axes" stroke="#ccc" stroke-width="1">']
        for value, _ in y_ticks:
            y = _f(self.py(value))
            out.append(f'<line x1="{self.left}" y1="{y}" x2="{self.right}" y2="{y}"/>')
        out.append(
            f'<line x1="{self.left}" y1="{self.bottom}" x2="{self.right}" y2="{self.bottom}" '
            'stroke="#333"/>'
        )
        out.append(
            f'<line x1="{self.left}" y1="{self.top}" x2="{self.left}" y2="{self.bottom}" '
            'stroke="#333"/>'
        )
        out.append("</g>")
        out.append('<g class="ticks" fill="#333">')
        for value, label in x_ticks:
            x = _f(self.px(value))
            out.append(
                f'<line x1="{x}" y1="{self.bottom}" x2="{x}" y2="{self.bottom + 4}" stroke="#333"/>'
            )
            # The last label would stick out of the chart if centred on the right edge.
            anchor = "end" if self.px(value) > self.right - 8 else "middle"
            out.append(
                f'<text x="{x}" y="{self.bottom + 16}" text-anchor="{anchor}">{esc(label)}</text>'
            )
        for value, label in y_ticks:
            y = _f(self.py(value) + 4)
            out.append(f'<text x="{self.left - 6}" y="{y}" text-anchor="end">{esc(label)}</text>')
        out.append("</g>")
        mid_x, mid_y = (self.left + self.right) / 2, (self.top + self.bottom) / 2
        out.append(
            f'<text class="x-label" x="{_f(mid_x)}" y="{self.bottom + 34}" '
            f'text-anchor="middle">{esc(x_label)}</text>'
        )
        out.append(
            f'<text class="y-label" x="14" y="{_f(mid_y)}" text-anchor="middle" '
            f'transform="rotate(-90 14 {_f(mid_y)})">{esc(y_label)}</text>'
        )
        return out


def _ticks(lo: float, hi: float, fmt: Formatter) -> list[tuple[float, str]]:
    return [(t, fmt(t)) for t in nice_ticks(lo, hi) if lo - 1e-12 <= t <= hi + 1e-12]


def _legend_layout(names: Sequence[str]) -> tuple[int, int]:
    """Width of one legend item (fitting the longest name) and how many fit on a row."""
    longest = max((len(_clip(n, 30)) for n in names), default=0)
    item = min(WIDTH - _LEFT, max(90, 7 * longest + 30))
    return item, max(1, (WIDTH - _LEFT) // item)


def _legend_rows(names: Sequence[str]) -> int:
    return math.ceil(len(names) / _legend_layout(names)[1])


def _legend(names: Sequence[str], top: float) -> list[str]:
    """Colour swatches and names in rows below the plot."""
    item, per_row = _legend_layout(names)
    out = ['<g class="legend">']
    for i, name in enumerate(names):
        x = _LEFT + (i % per_row) * item
        y = top + (i // per_row) * _LEGEND_ROW
        colour = PALETTE[i % len(PALETTE)]
        out.append(f'<rect x="{x}" y="{_f(y)}" width="12" height="10" fill="{colour}"/>')
        out.append(f'<text x="{x + 16}" y="{_f(y + 9)}">{esc(_clip(name, 30))}</text>')
    out.append("</g>")
    return out


def _clip(text: str, length: int) -> str:
    return text if len(text) <= length else text[: length - 1] + "…"


def line_chart(
    title: str,
    series: Mapping[str, Sequence[Sequence[float]]],
    *,
    y_label: str,
    y_format: Formatter = fmt_num,
    step: bool = False,
    span_ns: tuple[float, float] | None = None,
) -> str:
    """One line per named series of `[ts_ns, value]` points over elapsed time, with a legend
    when there are several. `step` holds each value until the next point (positions).
    `span_ns`, the run's first and last instant, gives the charts of one run one time axis."""
    names = sorted(name for name, points in series.items() if points)
    if not names:
        return no_data(title)
    points = {n: sorted((float(p[0]), float(p[1])) for p in series[n]) for n in names}
    t0 = min(pts[0][0] for pts in points.values())
    t1 = max(pts[-1][0] for pts in points.values())
    if span_ns is not None:
        t0, t1 = min(t0, span_ns[0]), max(t1, span_ns[1])
    span_s = (t1 - t0) / 1e9
    div, unit = _time_scale(span_s)
    xs_hi = span_s / div if span_s > 0 else 1.0
    ys = [y for pts in points.values() for _, y in pts]
    y_lo, y_hi = _padded(min(ys), max(ys))
    legend = len(names) > 1
    height = HEIGHT + (_legend_rows(names) * _LEGEND_ROW + 8 if legend else 0)
    frame = _Frame((0.0, xs_hi), (y_lo, y_hi), HEIGHT)
    parts = _open(title, height, "line")
    parts += frame.axes(
        _ticks(0.0, xs_hi, fmt_num),
        _ticks(y_lo, y_hi, y_format),
        f"time since start ({unit})",
        y_label,
    )
    if y_lo < 0 < y_hi:
        zero = _f(frame.py(0.0))
        parts.append(
            f'<line class="zero" x1="{frame.left}" y1="{zero}" x2="{frame.right}" '
            f'y2="{zero}" stroke="#999" stroke-dasharray="4 3"/>'
        )
    for i, name in enumerate(names):
        coords = [(frame.px((t - t0) / 1e9 / div), frame.py(v)) for t, v in points[name]]
        if step:
            coords = _steps(coords, frame.right)
        if len(coords) == 1:
            x, y = coords[0]
            coords = [(x, y), (frame.right, y)]
        path = " ".join(f"{_f(x)},{_f(y)}" for x, y in coords)
        colour = PALETTE[i % len(PALETTE)]
        parts.append(
            f'<polyline class="series" data-series="{esc(name)}" data-points='
            f'"{len(points[name])}" fill="none" stroke="{colour}" stroke-width="1.8" '
            f'points="{path}"/>'
        )
    if legend:
        parts += _legend(names, HEIGHT + 2)
    parts.append("</svg>")
    return "\n".join(parts)


def _steps(coords: list[tuple[float, float]], right: float) -> list[tuple[float, float]]:
    """A staircase through the points, held flat to the right edge after the last one."""
    out: list[tuple[float, float]] = []
    for x, y in coords:
        if out:
            out.append((x, out[-1][1]))
        out.append((x, y))
    out.append((right, out[-1][1]))
    return out


def scatter_chart(
    title: str,
    points: Sequence[Sequence[float]],
    *,
    x_label: str,
    y_label: str,
    diagonal: bool = True,
) -> str:
    """One dot per `(x, y)` point, with the line y = x when `diagonal` (on it: captured what
    was expected; below it: slippage)."""
    pts = [(float(p[0]), float(p[1])) for p in points]
    if not pts:
        return no_data(title)
    xs, ys = [x for x, _ in pts], [y for _, y in pts]
    if diagonal:
        lo, hi = _padded(min(*xs, *ys), max(*xs, *ys))
        x_range = y_range = (lo, hi)
    else:
        x_range, y_range = _padded(min(xs), max(xs)), _padded(min(ys), max(ys))
    frame = _Frame(x_range, y_range, HEIGHT)
    parts = _open(title, HEIGHT, "scatter")
    parts += frame.axes(_ticks(*x_range, fmt_num), _ticks(*y_range, fmt_num), x_label, y_label)
    if diagonal:
        lo, hi = x_range
        parts.append(
            f'<line class="diagonal" x1="{_f(frame.px(lo))}" y1="{_f(frame.py(lo))}" '
            f'x2="{_f(frame.px(hi))}" y2="{_f(frame.py(hi))}" stroke="#e15759" '
            'stroke-dasharray="5 3"/>'
        )
        parts.append(
            f'<text x="{frame.left + 6}" y="{frame.top + 12}" fill="#e15759">dashed: y = x</text>'
        )
    parts.append(f'<g class="points" fill="{PALETTE[0]}" fill-opacity="0.6">')
    parts += [f'<circle cx="{_f(frame.px(x))}" cy="{_f(frame.py(y))}" r="3"/>' for x, y in pts]
    parts.append("</g>")
    parts.append("</svg>")
    return "\n".join(parts)


def histogram(
    title: str,
    edges: Sequence[float],
    counts: Sequence[int],
    *,
    x_label: str,
    value_format: Formatter = fmt_us,
) -> str:
    """One bar per bucket, drawn equally wide so log-spaced buckets read as a log axis.
    `edges` bound the buckets (one more than `counts`); with as many edges as counts each
    edge is a lower bound and the last bucket is open."""
    if len(edges) not in (len(counts), len(counts) + 1):
        raise ValueError(f"histogram {title!r}: {len(edges)} edges for {len(counts)} buckets")
    if not counts or sum(counts) == 0:
        return no_data(title)
    n = len(counts)
    y_lo, y_hi = _padded(0.0, float(max(counts)))
    frame = _Frame((0.0, float(n)), (0.0, y_hi), HEIGHT)
    every = max(1, math.ceil((len(edges)) / 8))
    x_ticks = [(float(i), value_format(e)) for i, e in enumerate(edges) if i % every == 0]
    parts = _open(title, HEIGHT, "histogram")
    parts += frame.axes(x_ticks, _ticks(y_lo, y_hi, fmt_num), x_label, "count")
    parts.append(f'<g class="bars" fill="{PALETTE[0]}">')
    width = (frame.right - frame.left) / n
    for i, c in enumerate(counts):
        if not c:
            continue
        hi = edges[i + 1] if i + 1 < len(edges) else None
        span = (
            f"{value_format(edges[i])}-{value_format(hi)}"
            if hi is not None
            else (f">= {value_format(edges[i])}")
        )
        top = frame.py(float(c))
        parts.append(
            f'<rect class="bar" x="{_f(frame.px(i) + 0.5)}" y="{_f(top)}" '
            f'width="{_f(max(width - 1, 0.5))}" height="{_f(frame.bottom - top)}">'
            f"<title>{esc(span)}: {c}</title></rect>"
        )
    parts.append("</g>")
    parts.append("</svg>")
    return "\n".join(parts)


def heat_map(
    title: str,
    values: Mapping[tuple[str, str], float],
    *,
    row_label: str,
    col_label: str,
) -> str:
    """A grid of `(row, column) -> value` cells, shaded from white to blue on a scale shown
    beside it, each cell with its number."""
    cells = {k: float(v) for k, v in values.items()}
    if not cells or all(v == 0 for v in cells.values()):
        return no_data(title)
    rows = sorted({r for r, _ in cells})
    cols = sorted({c for _, c in cells})
    top_v = max(cells.values())
    label_w, cell_h, scale_w = 150, 26, 70
    cell_w = min(120.0, (WIDTH - label_w - scale_w - _RIGHT) / len(cols))
    height = _TOP + 20 + cell_h * len(rows) + 36
    parts = _open(title, height, "heatmap")
    grid_top = _TOP + 20
    for j, col in enumerate(cols):
        x = label_w + (j + 0.5) * cell_w
        parts.append(
            f'<text class="col" x="{_f(x)}" y="{grid_top - 6}" text-anchor="middle">'
            f"{esc(_clip(col, 16))}</text>"
        )
    parts.append('<g class="cells">')
    for i, row in enumerate(rows):
        y = grid_top + i * cell_h
        parts.append(
            f'<text class="row" x="{label_w - 6}" y="{_f(y + cell_h / 2 + 4)}" '
            f'text-anchor="end">{esc(_clip(row, 24))}</text>'
        )
        for j, col in enumerate(cols):
            x = label_w + j * cell_w
            value = cells.get((row, col))
            if value is None:
                fill, text, ink = "#f4f4f4", "-", "#999"
            else:
                share = value / top_v if top_v > 0 else 0.0
                fill, text = _blue(share), fmt_num(value)
                ink = "#fff" if share > 0.55 else "#222"
            parts.append(
                f'<rect class="cell" x="{_f(x)}" y="{y}" width="{_f(cell_w - 2)}" '
                f'height="{cell_h - 2}" fill="{fill}"><title>{esc(row)} / {esc(col)}: '
                f"{esc(text)}</title></rect>"
            )
            parts.append(
                f'<text x="{_f(x + cell_w / 2 - 1)}" y="{_f(y + cell_h / 2 + 3)}" '
                f'text-anchor="middle" fill="{ink}">{esc(text)}</text>'
            )
    parts.append("</g>")
    scale_x = label_w + cell_w * len(cols) + 16
    parts += _colour_scale(scale_x, grid_top, cell_h * len(rows), top_v)
    parts.append(
        f'<text class="x-label" x="{_f(label_w + cell_w * len(cols) / 2)}" '
        f'y="{height - 10}" text-anchor="middle">{esc(col_label)}</text>'
    )
    parts.append(
        f'<text class="y-label" x="8" y="{grid_top - 6}" font-weight="bold">{esc(row_label)}</text>'
    )
    parts.append("</svg>")
    return "\n".join(parts)


def _blue(share: float) -> str:
    """White (0) to dark blue (1)."""
    share = min(max(share, 0.0), 1.0)
    r, g, b = (round(255 + (t - 255) * share) for t in (8, 69, 148))
    return f"#{r:02x}{g:02x}{b:02x}"


def _colour_scale(x: float, top: float, height: float, top_v: float) -> list[str]:
    height = max(height, 60.0)
    out = ['<g class="scale">']
    steps = 10
    for k in range(steps):
        share = 1 - k / steps
        out.append(
            f'<rect x="{_f(x)}" y="{_f(top + k * height / steps)}" width="14" '
            f'height="{_f(height / steps + 0.5)}" fill="{_blue(share)}"/>'
        )
    out.append(f'<text x="{_f(x + 18)}" y="{_f(top + 9)}">{esc(fmt_num(top_v))}</text>')
    out.append(f'<text x="{_f(x + 18)}" y="{_f(top + height)}">0</text>')
    out.append("</g>")
    return out


def stacked_bars(
    title: str,
    start_ns: int,
    bucket_ns: int,
    by_name: Mapping[str, Sequence[int]],
    *,
    y_label: str = "count",
    span_ns: tuple[float, float] | None = None,
) -> str:
    """One bar per time bucket from `start_ns`, split by name (e.g. rejection reason), with a
    legend; `span_ns` as for `line_chart`."""
    names = sorted(n for n, counts in by_name.items() if any(counts))
    if not names or bucket_ns <= 0:
        return no_data(title)
    n = max(len(by_name[name]) for name in names)
    totals = [sum(by_name[name][i] for name in names if i < len(by_name[name])) for i in range(n)]
    t0, t1 = float(start_ns), float(start_ns + n * bucket_ns)
    if span_ns is not None:
        t0, t1 = min(t0, span_ns[0]), max(t1, span_ns[1])
    span_s = (t1 - t0) / 1e9
    div, unit = _time_scale(span_s)
    _, y_hi = _padded(0.0, float(max(totals)))
    height = HEIGHT + _legend_rows(names) * _LEGEND_ROW + 8
    frame = _Frame((0.0, span_s / div), (0.0, y_hi), HEIGHT)
    parts = _open(title, height, "stacked")
    parts += frame.axes(
        _ticks(0.0, span_s / div, fmt_num),
        _ticks(0.0, y_hi, fmt_num),
        f"time since start ({unit}), buckets of {fmt_num(bucket_ns / 1e9)} s",
        y_label,
    )
    width = frame.px(bucket_ns / 1e9 / div) - frame.px(0.0)
    parts.append('<g class="bars">')
    for i in range(n):
        left = frame.px((start_ns + i * bucket_ns - t0) / 1e9 / div)
        base = 0
        for k, name in enumerate(names):
            count = by_name[name][i] if i < len(by_name[name]) else 0
            if not count:
                continue
            top, bottom = frame.py(float(base + count)), frame.py(float(base))
            parts.append(
                f'<rect class="bar" x="{_f(left + 0.5)}" y="{_f(top)}" '
                f'width="{_f(max(width - 1, 0.5))}" height="{_f(bottom - top)}" '
                f'fill="{PALETTE[k % len(PALETTE)]}"><title>{esc(name)}: {count}</title></rect>'
            )
            base += count
    parts.append("</g>")
    parts += _legend(names, HEIGHT + 2)
    parts.append("</svg>")
    return "\n".join(parts)
