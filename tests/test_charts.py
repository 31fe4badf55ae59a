"""SVG charts: well-formed XML, one mark per datum, escaped text, "no data" when empty."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

from hft_ray.charts import (
    fmt_num,
    fmt_us,
    heat_map,
    histogram,
    line_chart,
    nice_ticks,
    scatter_chart,
    stacked_bars,
)

NS = "{http://www.w3.org/2000/svg}"
T0 = 1_796_200_000_000_000_000
NASTY = 'stale <book> & "quoted"\x07'


def _svg(text: str) -> ET.Element:
    root = ET.fromstring(text)
    assert root.tag == f"{NS}svg"
    return root


def _all(root: ET.Element, tag: str, cls: str | None = None) -> list[ET.Element]:
    found = root.iter(f"{NS}{tag}")
    return [e for e in found if cls is None or cls in (e.get("class") or "").split()]


def _texts(root: ET.Element) -> list[str]:
    return [e.text or "" for e in _all(root, "text")]


def _is_empty(text: str) -> bool:
    return "no data" in _texts(_svg(text))


def test_numbers_read_as_people_write_them() -> None:
    assert [fmt_num(v) for v in (0, 12, 0.0042, 1234, -1_500_000, 2.5e9)] == [
        "0",
        "12",
        "0.0042",
        "1.23k",
        "-1.5M",
        "2.5G",
    ]
    assert [fmt_us(v) for v in (850, 1200, 3_400_000)] == ["850us", "1.2ms", "3.4s"]


def test_ticks_are_round_and_cover_the_range() -> None:
    assert nice_ticks(0, 10) == [0, 2, 4, 6, 8, 10]
    assert nice_ticks(0.1, 0.9) == [0.2, 0.4, 0.6, 0.8]
    assert nice_ticks(-1.5e3, 500) == [-1500, -1000, -500, 0, 500]
    assert nice_ticks(3, 3) == [3]


def test_a_line_chart_has_one_line_per_series_and_a_legend() -> None:
    series = {
        "binance": [[T0 + i * 10**9, float(i)] for i in range(5)],
        "okx": [[T0 + i * 10**9, -float(i)] for i in range(3)],
        "kraken": [],
    }
    root = _svg(line_chart("Inventory BTC", series, y_label="BTC", step=True))
    lines = _all(root, "polyline", "series")
    assert [line.get("data-series") for line in lines] == ["binance", "okx"]
    assert [line.get("data-points") for line in lines] == ["5", "3"]
    # A staircase: two vertices per point after the first, and one to hold the last value.
    assert len((lines[0].get("points") or "").split()) == 5 * 2
    assert {"binance", "okx"} <= set(_texts(root))
    assert "time since start (s)" in _texts(root)


def test_a_single_line_has_no_legend_and_a_long_run_reads_in_minutes() -> None:
    hour = [[T0 + i * 60 * 10**9, i * 1000.0] for i in range(61)]
    root = _svg(line_chart("PnL", {"pnl": hour}, y_label="USDT"))
    assert _all(root, "g", "legend") == []
    assert "time since start (min)" in _texts(root)
    assert "60k" in _texts(root)


def test_a_scatter_has_one_dot_per_trade_and_the_diagonal() -> None:
    points = [(2.0, 1.5), (5.0, 5.5), (9.0, 7.0)]
    root = _svg(scatter_chart("Edge", points, x_label="expected", y_label="captured"))
    assert len(_all(root, "circle")) == 3
    (diagonal,) = _all(root, "line", "diagonal")
    # y = x runs from the bottom left to the top right of a square range.
    x1, y1, x2, y2 = (float(diagonal.get(k) or 0) for k in ("x1", "y1", "x2", "y2"))
    assert x1 < x2 and y1 > y2


def test_a_histogram_draws_a_bar_per_filled_bucket() -> None:
    edges = [10.0, 100.0, 1000.0, 10_000.0, 100_000.0]
    root = _svg(histogram("Latency", edges, [3, 0, 7, 1], x_label="latency"))
    bars = _all(root, "rect", "bar")
    assert len(bars) == 3
    heights = [float(b.get("height") or 0) for b in bars]
    assert heights[1] == max(heights) and heights[2] == min(heights)
    assert {"10us", "1ms", "100ms"} <= set(_texts(root))


def test_a_histogram_with_open_last_bucket_and_a_mismatch() -> None:
    root = _svg(histogram("Latency", [10.0, 100.0], [1, 2], x_label="latency"))
    assert len(_all(root, "rect", "bar")) == 2
    with pytest.raises(ValueError, match="3 edges for 1 buckets"):
        histogram("Latency", [1.0, 2.0, 3.0], [1], x_label="latency")


def test_a_heat_map_shades_every_cell_and_prints_its_number() -> None:
    values = {("binance → okx", "BTC/USDT"): 120.0, ("okx → binance", "BTC/USDT"): 30.0}
    values[("okx → binance", "ETH/USDT")] = 2500.0
    root = _svg(heat_map("Opportunities", values, row_label="pair", col_label="symbol"))
    cells = _all(root, "rect", "cell")
    assert len(cells) == 4  # 2 rows x 2 columns, one of them without data
    texts = _texts(root)
    assert {"120", "30", "2.5k", "-"} <= set(texts)
    fills = {c.findtext(f"{NS}title"): c.get("fill") for c in cells}
    assert fills["okx → binance / ETH/USDT: 2.5k"] != fills["okx → binance / BTC/USDT: 30"]


def test_stacked_bars_stack_each_reason_in_its_bucket() -> None:
    by_reason = {"max_position": [1, 0, 2], "insufficient_inventory": [3, 1, 0], "none": [0, 0]}
    root = _svg(stacked_bars("Rejections", T0, 5 * 10**9, by_reason))
    bars = _all(root, "rect", "bar")
    assert len(bars) == 4  # the non-zero counts
    first = [b for b in bars if b.get("x") == bars[0].get("x")]
    assert len(first) == 2
    # The bucket's segments touch: one ends where the next begins.
    lower, upper = sorted(first, key=lambda b: -float(b.get("y") or 0))
    assert float(upper.get("y") or 0) + float(upper.get("height") or 0) == pytest.approx(
        float(lower.get("y") or 0), abs=0.11
    )
    legend = _texts(root)
    assert "insufficient_inventory" in legend and "none" not in legend


def test_journal_text_is_escaped() -> None:
    by_reason = {NASTY: [1, 2]}
    root = _svg(stacked_bars(NASTY, T0, 10**9, by_reason))
    assert 'stale <book> & "quoted"?' in _texts(root)
    root = _svg(line_chart("t", {NASTY: [[T0, 1.0]], "z": [[T0, 2.0]]}, y_label=NASTY))
    assert _all(root, "polyline")[0].get("data-series") == 'stale <book> & "quoted"?'


@pytest.mark.parametrize(
    "svg",
    [
        line_chart("PnL", {}, y_label="USDT"),
        line_chart("PnL", {"pnl": []}, y_label="USDT"),
        scatter_chart("Edge", [], x_label="x", y_label="y"),
        histogram("Latency", [], [], x_label="x"),
        histogram("Latency", [1.0, 2.0], [0], x_label="x"),
        heat_map("Heat", {}, row_label="r", col_label="c"),
        stacked_bars("Rejections", T0, 10**9, {}),
        stacked_bars("Rejections", T0, 10**9, {"max_position": [0, 0]}),
    ],
)
def test_empty_data_says_no_data(svg: str) -> None:
    assert _is_empty(svg)


def test_flat_data_still_draws() -> None:
    root = _svg(line_chart("PnL", {"pnl": [[T0, 0.0]]}, y_label="USDT"))
    assert len(_all(root, "polyline")) == 1
    assert len(_svg(scatter_chart("Edge", [(1.0, 1.0)], x_label="x", y_label="y")).findall(
        f".//{NS}circle"
    )) == 1  # fmt: skip


def test_charts_are_deterministic() -> None:
    series = {"a": [[T0 + i * 7 * 10**8, (i * 37 % 11) / 3] for i in range(40)]}
    assert line_chart("A", series, y_label="y") == line_chart("A", dict(series), y_label="y")
