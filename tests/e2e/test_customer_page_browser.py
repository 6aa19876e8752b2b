"""The customer's page in a real browser (the system's Chromium), on the real services,
Kafka and the database, with e-mail through a real SMTP server (aiosmtpd): the customer opens
the link from the apology, reaches the voucher with the keyboard alone and chooses it, sees
its code, gets the follow-up message, rates the remedy (an upstream remedy.rated event), and
an expired link shows a clear page. axe-core checks every page; screenshots of each are
written under the test's output."""

from __future__ import annotations

import asyncio
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from playwright.async_api import Page

from tests.browser import axe, chromium, focused, phone_page, screenshot, tab_to
from tests.clock import FakeClock
from tests.infra import Infra
from tests.integration.fulfilment_api.decisions import voucher_policy, waited
from tests.integration.fulfilment_api.test_follow_ups import mails
from tests.kafka_tools import collect, incident_events, produce
from tests.mail import Inbox, body
from tests.pipeline import running_pipeline
from tests.servers import bound, served_here

pytestmark = pytest.mark.e2e

T0 = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
LINK = re.compile(r"http://127\.0\.0\.1:\d+/v1/customer/decisions/\S+\?token=[\w.-]+")
CODE = re.compile(r"AMD(?:-[A-Z0-9]{4}){4}")


async def no_violations(page: Page, name: str) -> None:
    found = await axe(page)
    assert found == [], f"{name}: {found}"


async def until_shown(page: Page, pattern: re.Pattern[str], timeout_s: float = 30.0) -> str:
    """Reload the page until its text matches (the choice's revision reaches fulfilment
    through Kafka); the match."""
    for _ in range(int(timeout_s * 2)):
        found = pattern.search(await page.inner_text("main"))
        if found:
            return found.group(0)
        await asyncio.sleep(0.5)
        await page.reload()
    raise AssertionError(f"{pattern.pattern} never shown: {await page.inner_text('main')}")


async def rate_with_the_keyboard(page: Page, shots: Path) -> None:
    """Rate 5 and say why, with the keyboard: the ratings are one radio group (one Tab stop,
    the arrows move along it), the comment a labelled field."""
    await tab_to(page, "1, not at all")
    for _ in range(4):
        await page.keyboard.press("ArrowRight")
    assert await focused(page) == {"tag": "input", "text": "5, fully", "checked": "true",
                                   "outline": "solid 3px"}
    await page.get_by_label("Tell us more (optional)").fill("Quick and kind, thank you")
    async with page.expect_navigation():
        await page.get_by_role("button", name="Send").press("Enter")
    assert "Thank you for telling us" in await page.inner_text("main")
    await screenshot(page, shots, "3-rated")


async def test_a_customer_chooses_the_voucher_on_their_page_with_the_keyboard(
        infra: Infra, suffix: str, inbox: tuple[Inbox, int], tmp_path: Path) -> None:
    handler, smtp_port = inbox
    ana = f"{suffix}-ana"
    shots = tmp_path / "screenshots"
    clock = FakeClock(T0 + timedelta(minutes=5))
    decision_socket, fulfilment_socket = bound(), bound()
    decision_url = f"http://127.0.0.1:{decision_socket.getsockname()[1]}"
    page_base = f"http://127.0.0.1:{fulfilment_socket.getsockname()[1]}"
    async with running_pipeline(infra, suffix, clock=clock, policy=voucher_policy("browser"),
                                fulfilment={
            "smtp_host": "127.0.0.1", "smtp_port": smtp_port, "decision_url": decision_url,
            "brand_name": "Amends Shop",
            "customer_page_url": f"{page_base}/v1/customer/decisions/{{decision_id}}"
                                 "?token={token}"}) as pipeline, \
            served_here(pipeline.decision, decision_socket), \
            served_here(pipeline.fulfilment, fulfilment_socket), \
            chromium() as browser:
        await produce(infra.kafka_bootstrap, pipeline.topics.incidents,
                      incident_events([waited(ana, f"a-{suffix}", at=T0)]))
        [apology] = await mails(handler, 1)
        link = LINK.search(body(apology, "plain"))
        assert link is not None, body(apology, "plain")

        page = await phone_page(browser)
        opened = await page.goto(link.group(0))
        assert opened is not None
        assert opened.status == 200
        assert await page.get_attribute("html", "lang") == "en"
        assert "We're sorry you waited so long for an answer" in await page.inner_text("h1")
        await screenshot(page, shots, "1-offer")
        await no_violations(page, "the offer")

        # Keyboard only: the skip link first, then on to the voucher's button; each stop is
        # drawn with a visible outline.
        stops = await tab_to(page, "a €15.00 voucher")
        assert stops[0]["text"] == "Skip to the content"
        assert all("none" not in stop["outline"] for stop in stops), stops
        async with page.expect_navigation():  # the form posts, then the page again (303)
            await page.keyboard.press("Enter")
        assert "Thank you: your choice is recorded" in await page.inner_text("main")
        await until_shown(page, re.compile(r"You chose a €15\.00 voucher\."))
        # The policy's own 10.00 voucher and the chosen 15.00 one, each with its code.
        codes = CODE.findall(await page.inner_text("main"))
        assert len(codes) == 2, codes
        await screenshot(page, shots, "2-chosen")
        await no_violations(page, "the choice made")

        received = await mails(handler, 2)
        assert len(received) == 2
        follow_up = received[1]
        assert follow_up["Subject"] == "Your choice is confirmed"
        [code] = CODE.findall(body(follow_up, "plain"))
        assert code in codes

        await rate_with_the_keyboard(page, shots)
        rated = await collect(infra.kafka_bootstrap, pipeline.topics.support,
                              lambda seen: len(seen) >= 1)
        assert [(e["type"], e["data"]["rating"], e["data"]["comment"]) for e in rated] == [
            ("remedy.rated", 5, "Quick and kind, thank you")]

        clock.advance(timedelta(days=31))  # links last 30 days
        expired = await page.goto(link.group(0))
        assert expired is not None
        assert expired.status == 410
        assert await page.inner_text("h1") == "This link has expired"
        await screenshot(page, shots, "4-expired")
        await no_violations(page, "the expired link")
    print(f"screenshots: {shots}")  # noqa: T201 - where to look, in the test's output


async def test_the_accessibility_check_finds_what_it_should() -> None:
    """The harness's own check: a field without a label and grey-on-white text are found,
    so an empty list from the pages above means something."""
    async with chromium() as browser:
        page = await phone_page(browser)
        await page.set_content('<!DOCTYPE html><html lang="en"><head><title>t</title></head>'
                               '<body><main><h1>Form</h1><input type="text">'
                               '<p style="color:#aaaaaa">faint</p></main></body></html>')
        found = {v.rule for v in await axe(page)}
    assert {"label", "color-contrast"} <= found, found
