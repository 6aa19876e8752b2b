"""The console's Retention page in memory: the report's figures for a window and a
breakdown, the chart inline (an SVG, no script), sign-in first, bad choices refused, and an
operator of one tenant seeing that tenant's incidents only."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Sequence
from datetime import datetime, timedelta

import pytest
from prometheus_client import CollectorRegistry

from amends import aftermath_report as report
from devtools.customers_sim import simulate
from services.common.access import Authenticator, Role
from services.decision.console import create_console
from services.decision.console_retention import retention_router
from services.intake.aftermath import AftermathView
from tests.component.decision.conftest import T0, Decider, build
from tests.component.decision.test_console import browser, signed_in

pytestmark = pytest.mark.component

START = T0 - timedelta(days=60)


def _rows(tenants: Sequence[str | None] = (None,)) -> list[report.Row]:
    sim = simulate(300, START, seed=5, days=20)
    view = AftermathView((7, 30, 90))
    view.follow(view.unfollowed(sim.incidents))
    view.keep(view.facts(sim.events))
    rows = report.rows(view.records(), sim.decisions)
    # Spread the incidents over the tenants given, in turn.
    return [dataclasses.replace(r, aftermath=dataclasses.replace(
        r.aftermath, followed=dataclasses.replace(r.aftermath.followed,
                                                  tenant=tenants[n % len(tenants)])))
            for n, r in enumerate(rows)]


def mounted(rows: list[report.Row]) -> tuple[Decider, list[datetime]]:
    decider = build()
    asked: list[datetime] = []

    async def source(since: datetime, windows: Sequence[int]) -> list[report.Row]:
        asked.append(since)
        assert tuple(windows) == (7, 30, 90)
        return rows

    console, routes, web = create_console(
        decider.service, Authenticator(decider.settings.auth), decider.settings,
        CollectorRegistry(), brand=decider.settings.brand)
    decider.app.include_router(routes)
    decider.app.include_router(retention_router(console, source, decider.settings))
    decider.app.include_router(web.static_router())
    return decider, asked


async def test_the_page_shows_the_figures_and_the_chart_of_the_window() -> None:
    rows = _rows()
    decider, asked = mounted(rows)
    async with browser(decider.app) as client:
        assert (await client.get("/console/retention")).headers["location"] == "/console/login"
        await signed_in(client, Role.viewer)
        page = await client.get("/console/retention")
        by_tier = await client.get("/console/retention", params={"window": 7,
                                                                  "by": "customer tier"})
    assert page.status_code == 200, page.text
    assert asked[0] == decider.clock() - timedelta(days=180)
    now = decider.clock()
    expected = {f.group: f for f in report.select(
        report.figures(rows, (7, 30, 90), now, ["remedy kind"]), 30)}
    for group in ("apology", "points", "voucher"):
        f = expected[group]
        assert f.n == 100
        share = f"{f.reordered / f.n:.1%} [{f.reorder_ci.low:.1%}, {f.reorder_ci.high:.1%}]"
        assert re.search(rf"<td>{group}</td><td class=\"num\">100</td><td class=\"num\">"
                         rf"{re.escape(share)}</td>", page.text), group
    assert '<svg xmlns="http://www.w3.org/2000/svg"' in page.text
    assert "<script" not in page.text
    assert "Retention 30 days after the incident, by remedy kind" in page.text
    assert by_tier.status_code == 200
    assert "<td>gold</td>" in by_tier.text
    assert "Retention 7 days after the incident, by customer tier" in by_tier.text


async def test_unknown_windows_and_breakdowns_are_refused() -> None:
    decider, _ = mounted(_rows())
    async with browser(decider.app) as client:
        await signed_in(client, Role.viewer)
        window = await client.get("/console/retention", params={"window": 14})
        by = await client.get("/console/retention", params={"by": "customer_id"})
    assert window.status_code == 400
    assert "The windows are 7, 30, 90 days." in window.text
    assert by.status_code == 400


async def test_an_operator_of_one_tenant_sees_that_tenants_incidents_only() -> None:
    decider, _ = mounted(_rows(("shop-a", "shop-b")))
    async with browser(decider.app) as client:
        await signed_in(client, Role.viewer, "shop-a")
        page = await client.get("/console/retention")
    assert page.status_code == 200, page.text
    assert re.search(r'<th scope="row">all</th><td class="num">150</td>', page.text)


async def test_before_any_window_closed_the_page_says_so() -> None:
    decider, _ = mounted([])
    async with browser(decider.app) as client:
        await signed_in(client, Role.viewer)
        page = await client.get("/console/retention")
    assert "No incident's 30 days have passed yet" in page.text
