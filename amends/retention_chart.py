"""The retention report as a chart (ADR 0019): for one window, each group's reorder rate and
repeat-complaint rate as bars with their 95% interval as whiskers and the sample size beside
the group. Pure: figures in, SVG text out.

Hand-written SVG rather than a plotting library: the console shows it inline under a CSP that
allows no script, the same figures always give the same bytes (tests compare them), and the
services need no plotting stack. A PNG is the same drawing rasterised where a renderer is
installed (`amends report retention --chart out.png`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from xml.sax.saxutils import escape

from amends.aftermath_report import Figure, Interval

ROW = 18  # px per group
HEADER = 22  # px per dimension's title
LABEL_W = 230  # the groups' names and sample sizes
PLOT_W = 230  # one measure's bars
GAP = 40
TOP = 58
BOTTOM = 30
WIDTH = LABEL_W + 2 * PLOT_W + 2 * GAP + 20
# Colour-blind-safe pair (blue, vermilion), dark whiskers.
REORDER, COMPLAINT, WHISKER, GRID, TEXT = "#0072b2", "#d55e00", "#222", "#ddd", "#222"


@dataclass(frozen=True)
class _Measure:
    title: str
    colour: str
    x: int
    reorders: bool

    def rate(self, figure: Figure) -> tuple[float, Interval]:
        if self.reorders:
            return figure.reorder_rate, figure.reorder_ci
        return figure.complaint_rate, figure.complaint_ci


MEASURES = (_Measure("reordered", REORDER, LABEL_W + GAP, reorders=True),
            _Measure("complained again", COMPLAINT, LABEL_W + 2 * GAP + PLOT_W,
                     reorders=False))


def _pct(value: float) -> str:
    return f"{value:.0%}"


def _x(measure: _Measure, value: float) -> float:
    return round(measure.x + value * PLOT_W, 1)


NOTE = ("bars: the rate; whiskers: its 95% interval (Wilson); n: incidents whose window has "
        "closed")


def svg(figures: Sequence[Figure], days: int, title: str | None = None,
        note: str = NOTE) -> str:
    """The chart of `figures` over the `days` window, as a standalone SVG document."""
    shown = [f for f in figures if f.days == days]
    dimensions: list[str] = []
    for f in shown:
        if f.dimension not in dimensions:
            dimensions.append(f.dimension)
    height = TOP + len(shown) * ROW + len(dimensions) * HEADER + BOTTOM
    heading = title or f"Retention {days} days after the incident"
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" '
           f'viewBox="0 0 {WIDTH} {height}" role="img" font-family="sans-serif" '
           f'font-size="12" fill="{TEXT}">',
           f"<title>{escape(heading)}</title>",
           f'<text x="10" y="20" font-size="15" font-weight="bold">{escape(heading)}</text>',
           f'<text x="10" y="38">{escape(note)}</text>']
    plot_top, plot_bottom = TOP - 6, height - BOTTOM + 4
    for measure in MEASURES:
        out.append(f'<text x="{measure.x}" y="{TOP - 10}" font-weight="bold" '
                   f'fill="{measure.colour}">{escape(measure.title)}</text>')
        for tick in (0.0, 0.25, 0.5, 0.75, 1.0):
            x = _x(measure, tick)
            out.append(f'<line x1="{x}" y1="{plot_top}" x2="{x}" y2="{plot_bottom}" '
                       f'stroke="{GRID}"/>')
            out.append(f'<text x="{x}" y="{plot_bottom + 14}" text-anchor="middle" '
                       f'font-size="10">{_pct(tick)}</text>')
    y = TOP
    for dimension in dimensions:
        out.append(f'<text x="10" y="{y + 15}" font-weight="bold">{escape(dimension)}</text>')
        y += HEADER
        for f in (f for f in shown if f.dimension == dimension):
            out.extend(_row(f, y))
            y += ROW
    out.append("</svg>")
    return "\n".join(out) + "\n"


def _row(figure: Figure, y: int) -> list[str]:
    middle = y + ROW / 2
    parts = [f'<text x="20" y="{middle + 4}">{escape(figure.group)}</text>',
             f'<text x="{LABEL_W - 4}" y="{middle + 4}" text-anchor="end" font-size="10">'
             f"n={figure.n:,}</text>"]
    if figure.n == 0:
        return parts  # nothing closed yet: no bar rather than a bar of zero
    for measure in MEASURES:
        rate, ci = measure.rate(figure)
        left = measure.x
        parts.append(f'<rect x="{left}" y="{y + 3}" width="{_x(measure, rate) - left:.1f}" '
                     f'height="{ROW - 6}" fill="{measure.colour}" fill-opacity="0.75">'
                     f"<title>{escape(figure.group)}: {_pct(rate)} "
                     f"[{ci.low:.1%}, {ci.high:.1%}], n={figure.n}</title></rect>")
        low, high = _x(measure, ci.low), _x(measure, ci.high)
        parts.append(f'<path d="M{low} {middle}H{high}M{low} {y + 5}V{y + ROW - 5}'
                     f'M{high} {y + 5}V{y + ROW - 5}" stroke="{WHISKER}" fill="none"/>')
        parts.append(f'<text x="{min(high + 4, measure.x + PLOT_W + 2)}" y="{middle + 4}" '
                     f'font-size="10">{_pct(rate)}</text>')
    return parts


async def png(document: str, chromium: str) -> bytes:
    """`document` rasterised by the Chromium at `chromium`, driven by Playwright (a
    dependency already, for the page tests): a PNG needs a renderer of text, and this one
    draws the SVG exactly as the console's browsers do."""
    from playwright.async_api import async_playwright  # noqa: PLC0415 - only for a PNG

    width, height = _size(document)
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=chromium, headless=True,
            args=["--no-sandbox", "--disable-dev-shm-usage"])
        try:
            page = await browser.new_page(viewport={"width": width, "height": height},
                                          device_scale_factor=2)
            await page.set_content(f'<body style="margin:0;background:#fff">{document}</body>')
            return await page.screenshot(type="png", full_page=True)
        finally:
            await browser.close()


def _size(document: str) -> tuple[int, int]:
    head = document[:document.index(">")]
    width = int(head.split('width="', 1)[1].split('"', 1)[0])
    height = int(head.split('height="', 1)[1].split('"', 1)[0])
    return width, height
