"""The retention chart: a valid SVG whose bars and whiskers are the report's figures, and a
PNG of it."""

from __future__ import annotations

import asyncio
import shutil
import xml.etree.ElementTree as ET
from decimal import Decimal

import pytest

from amends import aftermath_report as report
from amends import retention_chart as chart

pytestmark = pytest.mark.unit

SVG = "{http://www.w3.org/2000/svg}"


def _figure(group: str, n: int, reordered: int, complained: int, *,
            dimension: str = "remedy kind", days: int = 30) -> report.Figure:
    return report.Figure(dimension=dimension, group=group, days=days, n=n,
                         reordered=reordered, complained=complained, currency="EUR",
                         value_mean=Decimal(0), value_low=Decimal(0), value_high=Decimal(0))


FIGURES = [_figure("all", 400, 200, 40, dimension="all"),
           _figure("apology", 200, 60, 30), _figure("voucher", 200, 140, 10),
           _figure("points", 0, 0, 0), _figure("voucher", 50, 1, 1, days=7)]


def _bars(document: str) -> dict[str, list[float]]:
    root = ET.fromstring(document)
    bars: dict[str, list[float]] = {}
    for rect in root.iter(f"{SVG}rect"):
        title = rect.find(f"{SVG}title")
        assert title is not None
        assert title.text
        bars.setdefault(title.text.split(":")[0], []).append(float(rect.attrib["width"]))
    return bars


def test_the_chart_is_svg_with_a_bar_per_measure_of_each_group_of_its_window() -> None:
    document = chart.svg(FIGURES, 30)
    root = ET.fromstring(document)
    assert root.tag == f"{SVG}svg"
    texts = [t.text for t in root.iter(f"{SVG}text")]
    for label in ("all", "remedy kind", "apology", "voucher", "points", "n=400", "n=200",
                  "n=0", "reordered", "complained again", "30%", "70%"):
        assert label in texts, label
    bars = _bars(document)
    # Reorder then complaint bar, each the rate's share of the plot's width.
    assert bars["apology"] == [pytest.approx(0.3 * chart.PLOT_W, abs=0.1),
                               pytest.approx(0.15 * chart.PLOT_W, abs=0.1)]
    assert bars["voucher"] == [pytest.approx(0.7 * chart.PLOT_W, abs=0.1),
                               pytest.approx(0.05 * chart.PLOT_W, abs=0.1)]
    assert "points" not in bars  # nothing closed: no bar, not a bar of zero
    assert "n=50" not in texts  # the 7-day figure is another chart


def test_each_whisker_spans_the_wilson_interval() -> None:
    root = ET.fromstring(chart.svg(FIGURES, 30))
    paths = [p.attrib["d"] for p in root.iter(f"{SVG}path")]
    interval = report.wilson(140, 200)
    reorder = chart.MEASURES[0]
    low = round(reorder.x + interval.low * chart.PLOT_W, 1)
    high = round(reorder.x + interval.high * chart.PLOT_W, 1)
    assert any(d.startswith(f"M{low} ") and f"H{high}M" in d for d in paths), paths


def test_names_are_escaped_and_the_same_figures_give_the_same_bytes() -> None:
    odd = [_figure("<b>&", 10, 5, 1, dimension="locale")]
    document = chart.svg(odd, 30)
    ET.fromstring(document)  # still well-formed
    assert "&lt;b&gt;&amp;" in document
    assert chart.svg(odd, 30) == document


@pytest.mark.skipif(shutil.which("chromium") is None, reason="no Chromium (make tools)")
def test_the_png_is_the_chart_rasterised() -> None:
    browser = shutil.which("chromium")
    assert browser is not None
    image = asyncio.run(chart.png(chart.svg(FIGURES, 30), browser))
    assert image.startswith(b"\x89PNG\r\n\x1a\n")
    width = int.from_bytes(image[16:20], "big")
    assert width == 2 * chart.WIDTH  # drawn at twice the size, for sharp text
