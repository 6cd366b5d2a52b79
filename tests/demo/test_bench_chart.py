"""bench/chart.py: the dependency-free SVG chart is well-formed and scaled."""

from __future__ import annotations

import sys
import xml.etree.ElementTree as ET
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

from chart import bar_chart


def test_bar_chart_is_valid_svg_with_one_bar_per_value() -> None:
    svg = bar_chart(
        "added latency",
        [
            ("c=1", [("p50", 1.0), ("p99", 4.0)]),
            ("c=32", [("p50", 20.0), ("p99", 40.0)]),
        ],
    )
    root = ET.fromstring(svg)
    ns = "{http://www.w3.org/2000/svg}"
    bars = [r for r in root.findall(f"{ns}rect") if r.get("class") == "bar"]
    heights = sorted(float(r.get("height", 0)) for r in bars)
    assert len(heights) == 4
    assert heights[-1] == 2 * heights[-2]  # 40 vs 20: bars are proportional
    assert abs(heights[0] - heights[-1] / 40) < 0.1  # 1 vs 40 (rounded to 0.1 px)
    assert "added latency" in svg


def test_line_chart_is_valid_svg_with_one_line_per_series() -> None:
    from chart import line_chart

    svg = line_chart(
        "share",
        [("a", [(1.0, 0.0), (2.0, 0.5), (4.0, 1.0)]), ("b", [(1.0, 1.0), (4.0, 0.25)])],
        x_label="requests",
        y_label="share",
        x_max=4.0,
    )
    root = ET.fromstring(svg)
    ns = "{http://www.w3.org/2000/svg}"
    lines = [p for p in root.findall(f"{ns}polyline") if p.get("class") == "line"]
    assert len(lines) == 2
    a = [tuple(map(float, xy.split(","))) for xy in str(lines[0].get("points")).split()]
    # x scales to the plot's width (60..740 px), y = 1.0 at the top (40 px), 0 at 340 px.
    assert a[0] == (60 + 680 / 4, 340.0) and a[-1] == (740.0, 40.0)
    assert a[1][1] == 190.0  # 0.5: half-way
    assert ">4<" in svg and ">2<" in svg  # x ticks as numbers, not shares
