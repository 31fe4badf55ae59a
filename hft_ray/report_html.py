"""The run report as one self-contained HTML page: headline numbers, SVG charts, tables.

One file with inline CSS and SVG and no external resource, so it can be mailed, archived with
the run or opened offline. A report without "analytics" (an older run) still renders its
headline numbers, with a note saying why there are no charts.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from hft_ray.charts import (
    esc,
    fmt_num,
    fmt_us,
    heat_map,
    histogram,
    line_chart,
    scatter_chart,
    stacked_bars,
)

_CSS = """
body{font-family:system-ui,sans-serif;margin:0 auto;max-width:1360px;padding:16px 24px;
color:#222;background:#fafafa}
h1{font-size:22px;margin:4px 0}h2{font-size:17px;margin:28px 0 8px;border-bottom:1px solid #ddd}
.meta{color:#555;margin:2px 0}.live{color:#b00;font-weight:bold}.note{background:#fff7d6;
border:1px solid #e8d48a;padding:8px 12px;border-radius:4px}
.cards{display:flex;flex-wrap:wrap;gap:8px}.card{background:#fff;border:1px solid #ddd;
border-radius:4px;padding:6px 12px;min-width:110px}.card .v{font-size:20px;font-weight:bold}
.card .k{color:#666;font-size:12px}.bad{color:#b00}.good{color:#2a7d2a}
.charts{display:grid;grid-template-columns:repeat(auto-fill,minmax(640px,1fr));gap:12px}
figure.chart{margin:0;background:#fff;border:1px solid #ddd;border-radius:4px;padding:6px}
figure.chart svg{max-width:100%;height:auto;display:block}
figcaption{color:#666;font-size:12px;padding:2px 4px}
table{border-collapse:collapse;background:#fff;font-size:13px;margin-bottom:8px}
th,td{border:1px solid #ddd;padding:3px 8px;text-align:right}th{background:#f0f0f0}
td.t,th.t{text-align:left}tr:nth-child(even) td{background:#f8f8f8}
"""

# Marks each chart whose SVG has a non-empty box, so a headless browser test can tell that the
# page rendered every chart (not just that the markup is there).
_CHECK = """
(function(){var figs=document.querySelectorAll('figure.chart'),n=0;
for(var i=0;i<figs.length;i++){var s=figs[i].querySelector('svg');
var b=s?s.getBoundingClientRect():null;var ok=!!b&&b.width>0&&b.height>0;
figs[i].setAttribute('data-rendered',ok?'yes':'no');if(ok)n++;}
document.body.setAttribute('data-charts-rendered',String(n));
document.body.setAttribute('data-charts-total',String(figs.length));})();
"""

_GROUP_COLUMNS: tuple[tuple[str, str, Callable[[Any], str]], ...] = (
    ("opportunities", "opps", str),
    ("approved", "approved", str),
    ("clipped", "clipped", str),
    ("executed", "executed", str),
    ("win_rate", "win rate", lambda v: f"{100 * float(v):.0f}%"),
    ("expected_edge_quote", "expected edge", fmt_num),
    ("captured_edge_quote", "captured edge", fmt_num),
    ("slippage_bps", "slippage bps", lambda v: f"{float(v):.2f}"),
    ("realized_pnl_quote", "realized PnL", fmt_num),
    ("fees_quote", "fees", fmt_num),
    ("legs_failed", "legs failed", str),
    ("repairs", "repairs", str),
    ("repair_cost_quote", "repair cost", fmt_num),
)


def render_html(report: Mapping[str, Any]) -> str:
    """The whole page for one run report (report.json, or its rebuild from the journal)."""
    run_id = str(report.get("run_id") or report.get("run_dir") or "run")
    body = [_header(report), _headline(report)]
    analytics = report.get("analytics")
    if isinstance(analytics, Mapping):
        body += _analytics(analytics, _quote(report))
    else:
        body.append(
            '<p class="note">This report has no analytics (it was written by an hft_ray that '
            "did not compute them, or its journal could not be read): headline numbers only. "
            "<code>hft-ray report RUN_DIR --html</code> rebuilds them from the journal.</p>"
        )
    body += _latency_table(report.get("latency_us"))
    body += _replay(report.get("replay"))
    return "\n".join(
        [
            "<!DOCTYPE html>",
            '<html lang="en"><head><meta charset="utf-8">',
            '<meta name="viewport" content="width=device-width, initial-scale=1">',
            f"<title>hft_ray report {esc(run_id)}</title>",
            f"<style>{_CSS}</style></head>",
            "<body>",
            *body,
            f"<script>{_CHECK}</script>",
            "</body></html>",
            "",
        ]
    )


def page_report(rebuilt: Mapping[str, Any], run_report: Mapping[str, Any] | None) -> dict[str, Any]:
    """What the page shows for a run directory: its report.json (`run_report`, None when the
    run never wrote one) with every figure the journal supports taken from the journal's
    rebuild instead. Latency histograms need the run's samples, which only report.json has."""
    run_dir = str(rebuilt.get("run_dir", ""))
    out: dict[str, Any] = {"run_id": run_dir.rstrip("/").rsplit("/", 1)[-1], **(run_report or {})}
    for key in _FROM_JOURNAL:
        if key in rebuilt:
            out[key] = rebuilt[key]
    if "positions_match_risk" in rebuilt:
        out["positions_match_journal"] = rebuilt["positions_match_risk"]
    analytics = rebuilt.get("analytics")
    if isinstance(analytics, Mapping):
        held = (run_report or {}).get("analytics") or {}
        out["analytics"] = {
            **analytics,
            "latency_us": analytics.get("latency_us") or held.get("latency_us") or {},
        }
    return out


_FROM_JOURNAL = (
    "approved",
    "rejected",
    "trades",
    "legs_failed",
    "unwinds",
    "realized_pnl_quote",
    "fees_quote",
    "positions",
)


def _header(report: Mapping[str, Any]) -> str:
    mode = str(report.get("mode", "?"))
    paper = ", ".join(report.get("paper_venues") or [])
    if report.get("orders_sent_to_venues", mode == "live"):
        real = '<span class="live">yes: live venues</span>'
    elif paper:
        real = f"no (paper trading on live books: {esc(paper)})"
    else:
        real = f"no ({esc(mode)}: simulated venues)"
    duration = report.get("duration_s")
    lines = [
        f"<header><h1>hft_ray run {esc(report.get('run_id', '?'))}</h1>",
        f'<p class="meta">mode <b>{esc(mode)}</b> · duration '
        f"{esc(f'{float(duration):.1f} s' if duration is not None else '?')} · "
        f"real orders sent: {real}</p>",
        f'<p class="meta">venues: {esc(", ".join(report.get("venues", [])) or "?")} · '
        f"symbols: {esc(', '.join(report.get('symbols', [])) or '?')}</p>",
    ]
    if report.get("failure"):
        lines.append(f'<p class="note bad">failure: {esc(report["failure"])}</p>')
    lines.append("</header>")
    return "\n".join(lines)


def _headline(report: Mapping[str, Any]) -> str:
    quote = _quote(report)
    rejected = report.get("rejected") or {}
    cards: list[tuple[str, str, str]] = [
        ("books", _count(report.get("book_updates")), ""),
        ("opportunities", _count(report.get("opportunities")), ""),
        ("approved", _count(report.get("approved")), ""),
        ("clipped", _count(report.get("clipped")), ""),
        ("rejected", _count(sum(rejected.values()) if rejected else 0), ""),
        ("trades", _count(report.get("trades")), ""),
        ("legs failed", _count(report.get("legs_failed")), ""),
        ("unwinds", _count(report.get("unwinds")), ""),
        (f"realized PnL ({quote})", _money(report.get("realized_pnl_quote")), ""),
        (f"fees ({quote})", _money(report.get("fees_quote"), signed=False), ""),
        ("positions match journal", *_yes_no(report.get("positions_match_journal"))),
    ]
    if "positions_match_venues" in report:
        cards.append(("positions match venues", *_yes_no(report["positions_match_venues"])))
    html = ['<section id="headline"><h2>Headline</h2><div class="cards">']
    html += [
        f'<div class="card"><div class="v {cls}">{esc(value)}</div><div class="k">{esc(key)}'
        "</div></div>"
        for key, value, cls in cards
    ]
    html.append("</div>")
    if rejected:
        html.append("<p>rejected by reason:</p>")
        html.append(_table(["reason", "count"], sorted(rejected.items()), left=1))
    html.append("</section>")
    return "\n".join(html)


def _quote(report: Mapping[str, Any]) -> str:
    return "/".join(report.get("quote_currencies", [])) or "quote"


def _count(value: Any) -> str:
    return "-" if value is None else f"{int(value):,}"


def _money(value: Any, *, signed: bool = True) -> str:
    if value is None:
        return "-"
    return f"{float(value):+,.4f}" if signed else f"{float(value):,.4f}"


def _yes_no(value: Any) -> tuple[str, str]:
    if value is None:
        return "-", ""
    return ("yes", "good") if value else ("NO", "bad")


def _analytics(a: Mapping[str, Any], quote: str) -> list[str]:
    charts = _charts(a, quote)
    html = ['<section id="charts"><h2>Charts</h2><div class="charts">']
    html += [
        f'<figure class="chart" id="{chart_id}">{svg}<figcaption>{esc(caption)}</figcaption>'
        "</figure>"
        for chart_id, svg, caption in charts
    ]
    html.append("</div></section>")
    groups = a.get("groups") or {}
    for key, title in (
        ("by_pair", "By venue pair"),
        ("by_symbol", "By symbol"),
        ("by_strategy", "By strategy"),
    ):
        html += _group_table(title, key, groups.get(key) or [])
    html += _group_table("Top performers", "top", a.get("top") or [])
    html += _group_table("Bottom performers", "bottom", a.get("bottom") or [])
    html += _risk_events(a.get("risk_events") or [])
    clips = a.get("clips") or {}
    if clips:
        html.append('<section id="clips"><h2>Clips by binding limit</h2>')
        html.append(_table(["limit", "clipped"], sorted(clips.items()), left=1))
        html.append("</section>")
    drift = a.get("inventory_drift") or {}
    rows = [
        (v, asset, _position(q))
        for v, assets in sorted(drift.items())
        for asset, q in sorted(assets.items())
    ]
    if rows:
        html.append('<section id="inventory-drift"><h2>Inventory drift (final position)</h2>')
        html.append(_table(["venue", "asset", "position"], rows, left=2))
        html.append("</section>")
    return html


def _position(quantity: float) -> str:
    """A balance change without float dust: 1.7e-18 after a round trip is flat."""
    q = round(float(quantity), 10)
    return f"{q:+.10g}" if q else "0"


def chart_ids(analytics: Mapping[str, Any]) -> list[str]:
    """The ids of the charts `render_html` draws for these analytics, in page order."""
    return [chart_id for chart_id, _, _ in _charts(analytics, "quote")]


def _span_ns(a: Mapping[str, Any]) -> tuple[float, float] | None:
    """The first and last instant any time chart shows, so that they share one time axis."""
    times = [float(p[0]) for p in a.get("pnl_curve") or []]
    times += [float(p[0]) for p in a.get("edge") or []]
    times += [
        float(p[0])
        for assets in (a.get("inventory") or {}).values()
        for points in assets.values()
        for p in points
    ]
    rej = a.get("rejections") or {}
    counts = [c for c in (rej.get("by_reason") or {}).values() if any(c)]
    if counts and rej.get("bucket_ns"):
        start = int(rej.get("start_ns", 0))
        times += [start, start + max(map(len, counts)) * int(rej["bucket_ns"])]
    return (min(times), max(times)) if times else None


def _charts(a: Mapping[str, Any], quote: str) -> list[tuple[str, str, str]]:
    """(element id, svg, caption) of every chart, in page order."""
    used: set[str] = set()
    span = _span_ns(a)
    out = [
        (
            _unique("chart-pnl", used),
            line_chart(
                "Cumulative realized PnL",
                {"realized PnL": _from_zero(a.get("pnl_curve") or [], span)},
                y_label=quote,
                step=True,
                span_ns=span,
            ),
            "after fees, booked at each execution",
        ),
        (
            _unique("chart-edge", used),
            scatter_chart(
                "Edge captured vs expected",
                [(p[1], p[2]) for p in a.get("edge") or []],
                x_label="expected (bps)",
                y_label="captured (bps)",
            ),
            "one dot per executed trade; below the line: slippage",
        ),
    ]
    inventory = a.get("inventory") or {}
    by_asset: dict[str, dict[str, Sequence[Sequence[float]]]] = {}
    for venue, assets in inventory.items():
        for asset, points in assets.items():
            by_asset.setdefault(asset, {})[venue] = _from_zero(points, span)
    if not by_asset:
        out.append(
            (
                _unique("chart-inventory", used),
                line_chart("Inventory", {}, y_label=""),
                "position per venue after each fill",
            )
        )
    for asset in sorted(by_asset):
        out.append(
            (
                _unique(f"chart-inventory-{asset}", used),
                line_chart(
                    f"Inventory {asset}", by_asset[asset], y_label=asset, step=True, span_ns=span
                ),
                "position per venue after each fill",
            )
        )
    latency = a.get("latency_us") or {}
    if not latency:
        out.append(
            (_unique("chart-latency", used), histogram("Latency", [], [], x_label=""), "per hop")
        )
    for hop in sorted(latency):
        h = latency[hop]
        out.append(
            (
                _unique(f"chart-latency-{hop}", used),
                histogram(
                    f"Latency {hop}",
                    h.get("edges", []),
                    h.get("counts", []),
                    x_label="latency (log-spaced buckets)",
                ),
                f"{sum(h.get('counts', [])):,} samples",
            )
        )
    cells = {
        (f"{g.get('buy_venue')} → {g.get('sell_venue')}", str(g.get("symbol"))): float(
            g.get("opportunities", 0)
        )
        for g in (a.get("groups") or {}).get("by_pair") or []
    }
    out.append(
        (
            _unique("chart-heatmap", used),
            heat_map(
                "Opportunities by venue pair and symbol",
                cells,
                row_label="buy → sell",
                col_label="symbol",
            ),
            "opportunities seen (decisions) per cell",
        )
    )
    rej = a.get("rejections") or {}
    out.append(
        (
            _unique("chart-rejections", used),
            stacked_bars(
                "Rejections by reason over time",
                int(rej.get("start_ns", 0)),
                int(rej.get("bucket_ns", 0)),
                rej.get("by_reason") or {},
                span_ns=span,
            ),
            "risk decisions refused, per time bucket",
        )
    )
    return out


def _from_zero(
    points: Sequence[Sequence[float]], span: tuple[float, float] | None
) -> list[Sequence[float]]:
    """A run's cumulative series (PnL, a position change) with the zero it began at."""
    if not points or span is None:
        return list(points)
    return [[span[0], 0.0], *points]


def _unique(name: str, used: set[str]) -> str:
    """An element id made of [a-z0-9-], distinct from the ones already used."""
    base = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")
    chart_id, n = base, 2
    while chart_id in used:
        chart_id, n = f"{base}-{n}", n + 1
    used.add(chart_id)
    return chart_id


def _group_table(title: str, key: str, groups: Sequence[Mapping[str, Any]]) -> list[str]:
    section = f'<section id="groups-{key.replace("_", "-")}"><h2>{esc(title)}</h2>'
    if not groups:
        return [section, "<p>none</p></section>"]
    head = ["key", *(label for _, label, _ in _GROUP_COLUMNS)]
    rows = [
        [str(g.get("key", "?")), *(_cell(g.get(field), f) for field, _, f in _GROUP_COLUMNS)]
        for g in groups
    ]
    return [section, _table(head, rows, left=1), "</section>"]


def _cell(value: Any, fmt: Callable[[Any], str]) -> str:
    return "-" if value is None else fmt(value)


def _risk_events(events: Sequence[Mapping[str, Any]]) -> list[str]:
    html = ['<section id="risk-events"><h2>Risk events</h2>']
    if not events:
        return [*html, "<p>none</p></section>"]
    rows = [
        (_utc(e.get("ts_ns")), str(e.get("kind", "?")), _detail(e.get("detail"))) for e in events
    ]
    return [*html, _table(["time (UTC)", "kind", "detail"], rows, left=3), "</section>"]


def _utc(ts_ns: Any) -> str:
    if ts_ns is None:
        return "-"
    return datetime.fromtimestamp(int(ts_ns) / 1e9, UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]


def _detail(detail: Any) -> str:
    if detail is None:
        return ""
    return detail if isinstance(detail, str) else json.dumps(detail, sort_keys=True)


def _latency_table(latency: Any) -> list[str]:
    if not latency:
        return []
    rows = [
        (
            name,
            str(s.get("count", 0)),
            *(fmt_us(float(s.get(k, 0))) for k in ("p50", "p90", "p99", "max")),
        )
        for name, s in sorted(latency.items())
        if s.get("count")
    ]
    if not rows:
        return []
    return [
        '<section id="latency"><h2>Latency</h2>',
        _table(["stage", "count", "p50", "p90", "p99", "max"], rows, left=1),
        "</section>",
    ]


def _replay(replay: Any) -> list[str]:
    if not replay:
        return []
    rows = [
        ("files", ", ".join(map(str, replay.get("files", []))) or "-"),
        ("seed", str(replay.get("seed", "-"))),
        ("lines released", str(replay.get("lines", 0))),
        ("malformed lines skipped", str(len(replay.get("malformed_lines", [])))),
        (
            "lines of venues or symbols outside the run",
            str(replay.get("other_exchanges", 0) + replay.get("other_symbols", 0)),
        ),
        ("files cut short", str(len(replay.get("unreadable_files", [])))),
        ("held for feeds behind (s)", f"{float(replay.get('held_s') or 0.0):.3f}"),
    ]
    html = ['<section id="replay"><h2>Replay</h2>', _table(["", ""], rows, left=2)]
    reasons = [
        *replay.get("unreadable_files", []),
        *replay.get("unknown", []),
        *replay.get("malformed_lines", []),
    ]
    if reasons:
        html.append("<ul>" + "".join(f"<li>{esc(r)}</li>" for r in reasons[:20]) + "</ul>")
        if len(reasons) > 20:
            html.append(f"<p>... {len(reasons) - 20} more in report.json</p>")
    html.append("</section>")
    return html


def _table(head: Sequence[str], rows: Iterable[Sequence[Any]], *, left: int = 0) -> str:
    """An HTML table; the first `left` columns (names) are left-aligned, numbers right."""

    def cls(i: int) -> str:
        return ' class="t"' if i < left else ""

    out = ["<table><tr>" + "".join(f"<th{cls(i)}>{esc(h)}</th>" for i, h in enumerate(head))]
    out.append("</tr>")
    for row in rows:
        out.append(
            "<tr>" + "".join(f"<td{cls(i)}>{esc(v)}</td>" for i, v in enumerate(row)) + "</tr>"
        )
    out.append("</table>")
    return "".join(out)
