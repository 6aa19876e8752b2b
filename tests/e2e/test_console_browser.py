"""The operations console in a real browser (the system's Chromium), on the real services,
Kafka and the database, with e-mail through a real SMTP server (aiosmtpd): a long wait is held
for review; the customer's page says a person is checking it; a reviewer signs in and
approves it with the keyboard alone; the customer's page then shows the voucher and its code,
and a second message confirms it. The case, the dead letters, the budget and the outages are
opened too. axe-core checks every console page; screenshots of each are written under the
test's output."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from playwright.async_api import Page, ViewportSize

from services.common.access import Role
from services.decision.domain.policy import parse_policy
from tests import auth
from tests.browser import axe, chromium, focused, phone_page, screenshot, tab_to
from tests.clock import FakeClock
from tests.e2e.test_customer_page_browser import CODE, LINK, until_shown
from tests.infra import Infra
from tests.integration.fulfilment_api.decisions import waited
from tests.integration.fulfilment_api.test_follow_ups import mails
from tests.kafka_tools import incident_events, produce
from tests.mail import Inbox, body
from tests.pipeline import running_pipeline
from tests.servers import bound, served_here

pytestmark = pytest.mark.e2e

T0 = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
DESKTOP: ViewportSize = {"width": 1280, "height": 900}
HELD = parse_policy("""
version: console-browser
currency: EUR
values: {point: "0.01"}
guards:
  incident_cap: 100
  customer_cap: 200
  daily_budget: 1000
  review:
    - id: waits-checked
      reason: long waits are checked by a person first
      when: {type: [support_wait_exceeded]}
      total_above: 0
rules:
  - id: wait
    when: {type: [support_wait_exceeded]}
    because: for the wait
    grant:
      - points: 100
      - voucher: {amount: 10, expires_days: 90}
""")


async def no_violations(page: Page, name: str) -> None:
    found = await axe(page)
    assert found == [], f"{name}: {found}"


async def sign_in_with_the_keyboard(page: Page, base: str, key: str) -> None:
    """The sign-in form with the keyboard alone: skip link, then the key field (labelled),
    then Enter; each stop drawn with a visible outline."""
    await page.goto(f"{base}/console/review")
    assert page.url.endswith("/console/login")
    stops = await tab_to(page, "API key or token")
    assert stops[0]["text"] == "Skip to the content"
    assert all("none" not in stop["outline"] for stop in stops), stops
    await page.keyboard.type(key)
    async with page.expect_navigation():
        await page.keyboard.press("Enter")
    assert page.url.endswith("/console/review")


async def approve_with_the_keyboard(page: Page, shots: Path) -> None:
    """On to the held decision's reason field, a reason, Tab to Approve and Enter."""
    await tab_to(page, "Reason (for the record)")
    await page.keyboard.type("the wait was ours; checked the ticket")
    await page.keyboard.press("Tab")
    assert (await focused(page))["text"] == "Approve"
    async with page.expect_navigation():
        await page.keyboard.press("Enter")
    main = await page.inner_text("main")
    assert "Approved: its remedies go out." in main
    assert "Nothing is held for review." in main
    await screenshot(page, shots, "console-2-approved")
    await no_violations(page, "the queue after the approval")


async def the_other_pages(page: Page, base: str, customer: str, order: str,
                          shots: Path) -> None:
    """The case by its order, the budget, the outages, retention: each readable and clean."""
    await page.goto(f"{base}/console/cases?order={order}")
    assert f"Customer {customer}" in await page.inner_text("main")
    kinds = await page.locator("table.timeline td:nth-child(2)").all_inner_texts()
    assert {"incident", "decision", "effect", "message"} <= set(kinds), kinds
    await screenshot(page, shots, "console-4-case")
    await no_violations(page, "the case")

    # The approval reserved its goodwill: 100 points (1.00 EUR) and the 10.00 voucher.
    await page.goto(f"{base}/console/budget")
    reserved = page.get_by_role("row", name=re.compile("^Reserved"))
    assert "11.00 EUR" in await reserved.inner_text()
    await screenshot(page, shots, "console-5-budget")
    await no_violations(page, "the budget")

    await page.goto(f"{base}/console/outages")
    assert "No outage in progress" in await page.inner_text("main")
    await no_violations(page, "the outages")

    # No incident's window has closed on this clock: the page says so, and the form works.
    await page.goto(f"{base}/console/retention?window=7&by=locale")
    main = await page.inner_text("main")
    assert "No incident's 7 days have passed yet" in main
    await no_violations(page, "the retention page")


async def test_a_reviewer_approves_a_held_decision_and_the_customer_sees_the_remedy(
        infra: Infra, suffix: str, inbox: tuple[Inbox, int], tmp_path: Path) -> None:
    handler, smtp_port = inbox
    ana = f"{suffix}-ana"
    shots = tmp_path / "screenshots"
    clock = FakeClock(T0 + timedelta(minutes=5))
    decision_socket, fulfilment_socket = bound(), bound()
    decision_url = f"http://127.0.0.1:{decision_socket.getsockname()[1]}"
    fulfilment_url = f"http://127.0.0.1:{fulfilment_socket.getsockname()[1]}"
    reviewer = auth.headers(Role.reviewer)["Authorization"].split(" ", 1)[1]
    admin = auth.headers(Role.admin)["Authorization"].split(" ", 1)[1]
    async with running_pipeline(infra, suffix, clock=clock, policy=HELD, fulfilment={
            "smtp_host": "127.0.0.1", "smtp_port": smtp_port, "decision_url": decision_url,
            "brand_name": "Amends Shop",
            "customer_page_url": f"{fulfilment_url}/v1/customer/decisions/{{decision_id}}"
                                 "?token={token}"},
            decision={"fulfilment_url": fulfilment_url, "brand_name": "Amends Shop",
                      "retention_intake_db": f"amends_test_{suffix}_intake"}
            ) as pipeline, \
            served_here(pipeline.decision, decision_socket), \
            served_here(pipeline.fulfilment, fulfilment_socket), \
            chromium() as browser:
        await produce(infra.kafka_bootstrap, pipeline.topics.incidents,
                      incident_events([waited(ana, f"a-{suffix}", at=T0)]))
        context = await browser.new_context(viewport=DESKTOP, locale="en-GB",
                                            bypass_csp=True)
        page = await context.new_page()
        await sign_in_with_the_keyboard(page, decision_url, reviewer)
        await until_shown(page, re.compile(re.escape(ana) + r"[\s\S]*0 of 1"))
        assert "long waits are checked by a person first" in await page.inner_text("main")
        await screenshot(page, shots, "console-1-review")
        await no_violations(page, "the review queue")
        assert not handler.envelopes  # a held decision tells the customer nothing yet

        await approve_with_the_keyboard(page, shots)

        # The approval reaches the customer: the apology, its link, the page with the code.
        [apology] = await mails(handler, 1)
        link = LINK.search(body(apology, "plain"))
        assert link is not None, body(apology, "plain")
        customer = await phone_page(browser)
        await customer.goto(link.group(0))
        code = await until_shown(customer, CODE)
        assert code in body(apology, "plain")
        await screenshot(customer, shots, "console-3-customer-after")

        await the_other_pages(page, decision_url, ana, f"a-{suffix}", shots)

        # Signing out ends the session; an admin signs in for the dead letters.
        async with page.expect_navigation():
            await page.get_by_role("button", name="Sign out").click()
        assert "You are signed out." in await page.inner_text("main")
        await page.goto(f"{decision_url}/console/dead-letters")
        assert page.url.endswith("/console/login")
        await screenshot(page, shots, "console-0-sign-in")
        await no_violations(page, "the sign-in")
        await sign_in_with_the_keyboard(page, decision_url, admin)
        await page.goto(f"{decision_url}/console/dead-letters")
        assert "No dead letters." in await page.inner_text("main")
        await no_violations(page, "the dead letters")
    print(f"screenshots: {shots}")  # noqa: T201 - where to look, in the test's output
