"""The console's Retention page (ADR 0019): `amends report retention` for people who do not
use a terminal. The same figures (reorder rate, value after and repeat-complaint rate with
their intervals and sample sizes) for one window and one dimension, and the same chart,
inline: SVG needs no script, which the console's policy forbids.

The aftermath is intake's; like the report, the page reads intake's store and joins the
decisions by id. It is a read of what grows, for a person asking, never on the hot path;
an operator of one tenant sees that tenant's incidents only.
"""

# No `from __future__ import annotations`: FastAPI reads the routes' annotations as objects.

from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime, timedelta
from typing import Annotated, Protocol

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, Response
from markupsafe import Markup

from amends import aftermath_report as report
from amends import retention_chart
from amends import retention_source as source
from services.decision.console import PREFIX, Console, Refused, Signed
from services.decision.settings import DecisionSettings


class RetentionRows(Protocol):
    async def __call__(self, since: datetime, windows: Sequence[int]) -> list[report.Row]: ...


def store_rows(settings: DecisionSettings) -> RetentionRows:
    """The rows as `amends report retention` reads them: intake's aftermath, decision's
    decisions."""

    async def rows(since: datetime, windows: Sequence[int]) -> list[report.Row]:
        return await source.load(settings.mongo_url, settings.retention_intake_db,
                                 settings.mongo_db, since, windows)

    return rows


def _rate(k: int, n: int, interval: report.Interval) -> str:
    return f"{k / n:.1%} [{interval.low:.1%}, {interval.high:.1%}]" if n else "-"


def figure_rows(figures: Sequence[report.Figure]) -> list[dict[str, str]]:
    return [{"group": f.group, "n": f"{f.n:,}",
             "reordered": _rate(f.reordered, f.n, f.reorder_ci),
             "value": (f"{f.value_mean:.2f} [{f.value_low:.2f}, {f.value_high:.2f}]"
                       if f.n else "-"),
             "complained": _rate(f.complained, f.n, f.complaint_ci)} for f in figures]


async def retention_page(console: Console, rows: RetentionRows, settings: DecisionSettings,
                         me: Signed, *, window: int | None, by: str | None
                         ) -> HTMLResponse:
    windows = sorted(settings.retention_windows_days)
    days = window if window is not None else windows[len(windows) // 2]
    dimension = by or "remedy kind"
    if days not in windows:
        raise Refused(400, "No such window", f"The windows are {', '.join(map(str, windows))} "
                      "days.")
    if dimension not in report.DIMENSIONS:
        raise Refused(400, "No such breakdown", "Choose one of the listed breakdowns.")
    now = console.service.clock()
    found = await rows(now - timedelta(days=settings.retention_since_days), windows)
    tenants = console.access.tenants(me.principal)
    if tenants is not None:
        found = [r for r in found if r.aftermath.followed.tenant in tenants]
    figures = report.figures(found, windows, now, ["all", dimension])
    shown = report.select(figures, days)
    currency = next((f.currency for f in shown if f.currency), None) or ""
    chart = retention_chart.svg(shown, days, f"Retention {days} days after the incident, "
                                f"by {dimension}")
    return console.page(
        "console_retention.html.j2", me, days=days, windows=windows, dimension=dimension,
        dimensions=report.DIMENSIONS[1:], since_days=settings.retention_since_days,
        incidents=len(found), currency=currency,
        overall=figure_rows([f for f in shown if f.dimension == "all"]),
        groups=figure_rows([f for f in shown if f.dimension == dimension]),
        # Our own drawing: every name in it is escaped by the chart.
        chart=Markup(chart))  # noqa: S704


def retention_router(console: Console, rows: RetentionRows,
                     settings: DecisionSettings) -> APIRouter:
    api = APIRouter(prefix=PREFIX, include_in_schema=False)

    async def guarded(request: Request, run: Callable[[], Awaitable[Response]]) -> Response:
        return await console.guarded("retention", request, run)

    @api.get("/retention")
    async def retention(request: Request,
                        window: Annotated[int | None, Query(ge=1, le=3650)] = None,
                        by: Annotated[str | None, Query(max_length=40)] = None) -> Response:
        async def run() -> Response:
            me = await console.signed(request)
            return await retention_page(console, rows, settings, me, window=window, by=by)
        return await guarded(request, run)

    return api
