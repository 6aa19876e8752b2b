"""The customer's page as a browser gets it, in memory: fulfilment's app over the fake
stores, decision's choice endpoint replaced by a recording fake. The link opens HTML in the
customer's locale and brand; the choice form hands the choice to decision and redirects back;
the rating becomes an upstream remedy.rated event; a bad or expired link gets a page that
says so (403, 410), never the problem body an API client gets."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from html import unescape
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from fastapi import FastAPI

from schemas import topics
from schemas.decision import Decision, RemedyKind
from schemas.upstream import RemedyRatedEvent, upstream_event_adapter
from services.common.links import CustomerLinks
from services.fulfilment.app import create_app
from services.fulfilment.page import ChoiceAnswer, DecisionClient
from tests.component.fulfilment.harness import Fulfilment, settings
from tests.decisions import APOLOGY, chosen, decided, eur, grant, made_incident, offered

pytestmark = pytest.mark.component

BROWSER = {"Accept": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"}


@dataclass
class FakeDecision:
    """Decision's customer-choice endpoint: records each choice and answers as told."""

    answer: ChoiceAnswer = field(default_factory=lambda: ChoiceAnswer("chosen"))
    calls: list[tuple[str, int, str]] = field(default_factory=list)

    async def choose(self, decision_id: str, option: int, token: str) -> ChoiceAnswer:
        self.calls.append((decision_id, option, token))
        return self.answer


@asynccontextmanager
async def browser(f: Fulfilment, decision: FakeDecision
                  ) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    app = create_app(f.settings, stores=f.fakes.stores, publisher=f.publisher,
                     gateway=f.gateway, channels=f.service.channels, clock=f.clock,
                     choose=decision.choose)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                 base_url="http://fulfilment", headers=BROWSER) as client:
        yield app, client


def token_for(app: FastAPI, f: Fulfilment, customer: str, decision_id: str) -> str:
    links = app.state.runtime.links
    assert isinstance(links, CustomerLinks)
    token: str = links.sign(customer, decision_id, f.clock())
    return token


def waited(locale: str = "en", customer: str = "ana", tenant: str | None = None) -> Decision:
    """A long wait: 100 points now, and a choice of a 15 EUR voucher or 500 points (the
    points by default)."""
    made = made_incident("support_wait_exceeded", customer_id=customer, locale=locale,
                         paid=None, wait_minutes=95, ticket_id="t-7", tenant=tenant)
    return offered(decided(made, APOLOGY, grant(RemedyKind.points, points=100)),
                   [grant(RemedyKind.voucher, amount=eur("15.00"))],
                   [grant(RemedyKind.points, points=500)], default=1)


def text(page: str) -> str:
    """The page's words without markup, spaces folded."""
    return unescape(re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", page))).replace("\u00a0", " ")


async def test_the_link_opens_the_page_in_html_and_the_choice_goes_to_decision() -> None:
    f = Fulfilment.with_email()
    offer = waited()
    await f.deliver(offer)
    decision = FakeDecision()
    async with browser(f, decision) as (app, client):
        token = token_for(app, f, "ana", offer.decision_id)
        url = f"/v1/customer/decisions/{offer.decision_id}"
        page = await client.get(url, params={"token": token})
        css = await client.get("/static/amends.css")
        brand = await client.get("/static/brand.css")
        answer = await client.post(f"{url}/choice", data={"token": token, "option": "0"})
        after = await client.get(answer.headers["location"])
        # Decision's revision reaches fulfilment: the page shows the voucher and its code.
        await f.deliver(chosen(offer, 0))
        settled = await client.get(url, params={"token": token})
        api = await client.get(url, params={"token": token}, headers={"Accept": "*/*"})

    assert page.status_code == 200, page.text
    assert page.headers["content-type"].startswith("text/html")
    assert page.headers["cache-control"] == "no-store"
    assert "script-src" not in page.headers["content-security-policy"]  # none allowed
    shown = text(page.text)
    assert '<html lang="en">' in page.text
    assert "We're sorry you waited so long for an answer" in shown
    assert "you waited 95 minutes for our first answer to request t-7" in shown
    assert "100 loyalty points" in shown
    assert "Done" in shown
    assert re.search(r'<button type="submit" name="option" value="0" class="secondary">'
                     r"Choose: a €15.00 voucher</button>", page.text), page.text
    assert "Choose: 500 loyalty points (our suggestion)" in shown
    assert "you get 500 loyalty points" in shown  # the default and its deadline
    assert "26 November 2026" in shown
    assert "How did we do?" not in shown  # no rating while the offer is open
    assert css.headers["content-type"].startswith("text/css")
    assert b"--brand" in css.content
    assert brand.text == ":root { --brand: #1f4e8c; }\n"

    assert decision.calls == [(offer.decision_id, 0, token)]
    assert answer.status_code == 303
    assert parse_qs(urlsplit(answer.headers["location"]).query)["notice"] == ["chosen"]
    assert "Thank you: your choice is recorded" in text(after.text)
    assert "Choose:" not in text(after.text)  # not offered twice while decision applies it
    assert "What you chose shows here in a minute" in text(after.text)

    [voucher] = f.fakes.vouchers.vouchers.values()
    done = text(settled.text)
    assert f"Your code: {voucher.code} (ready to use)" in done
    assert "You chose a €15.00 voucher." in done, done
    assert "How did we do?" in done
    assert api.headers["content-type"].startswith("application/json")
    assert api.json()["choice"]["option"] == 0


@pytest.mark.parametrize(("locale", "subject", "button"), [
    ("ru", "Приносим извинения за долгое ожидание ответа", "Выбрать: 500 бонусных баллов"),
    ("ro", "Ne cerem scuze pentru așteptarea lungă", "Aleg: 500 de puncte de fidelitate"),
    ("de", "We're sorry you waited so long for an answer", "Choose: 500 loyalty points"),
])
async def test_the_page_speaks_the_customers_language(locale: str, subject: str,
                                                      button: str) -> None:
    f = Fulfilment.with_email()
    offer = waited(locale)
    await f.deliver(offer)
    async with browser(f, FakeDecision()) as (app, client):
        page = await client.get(f"/v1/customer/decisions/{offer.decision_id}",
                                params={"token": token_for(app, f, "ana", offer.decision_id)})
    assert f'<html lang="{locale if locale != "de" else "en"}">' in page.text
    assert subject in text(page.text)
    assert button in text(page.text)


async def test_a_tenant_has_its_brand() -> None:
    f = Fulfilment.with_email(settings=settings(
        brand_name="Shop A care", brands={"shop-b": {"name": "Shop B", "color": "#5b2a86"}}))
    offer = waited(tenant="shop-b")
    await f.deliver(offer)
    async with browser(f, FakeDecision()) as (app, client):
        page = await client.get(f"/v1/customer/decisions/{offer.decision_id}",
                                params={"token": token_for(app, f, "ana", offer.decision_id)})
        brand = await client.get("/static/brand.css", params={"tenant": "shop-b"})
    assert "Shop B" in page.text
    assert "Shop A care" not in page.text
    assert 'href="/static/brand.css?tenant=shop-b"' in page.text
    assert brand.text == ":root { --brand: #5b2a86; }\n"


def test_a_brand_colour_white_text_cannot_be_read_on_is_refused() -> None:
    with pytest.raises(ValueError, match=r"contrast of 1\.12:1"):
        settings(brand_color="#fafa00")
    with pytest.raises(ValueError, match="contrast"):
        settings(brands={"shop-b": {"name": "Shop B", "color": "#ffcc00"}})


async def test_a_choice_decision_refuses_or_cannot_take_is_said_so() -> None:
    f = Fulfilment.with_email()
    offer = waited()
    await f.deliver(offer)
    decision = FakeDecision(ChoiceAnswer("settled"))
    async with browser(f, decision) as (app, client):
        token = token_for(app, f, "ana", offer.decision_id)
        url = f"/v1/customer/decisions/{offer.decision_id}"
        settled = await client.post(f"{url}/choice", data={"token": token, "option": "1"},
                                    follow_redirects=True)
        decision.answer = ChoiceAnswer("unavailable")
        down = await client.post(f"{url}/choice", data={"token": token, "option": "0"},
                                 follow_redirects=True)
        nonsense = await client.post(f"{url}/choice", data={"token": token, "option": "7"})
    assert "This offer was already settled" in text(settled.text)
    assert "We could not record your choice just now" in text(down.text)
    assert "Choose: a €15.00 voucher" in text(down.text)  # still offered: try again
    assert nonsense.status_code == 303
    assert [c[1] for c in decision.calls] == [1, 0]  # option 7 never reached decision


async def test_after_the_deadline_the_page_says_what_applies() -> None:
    f = Fulfilment.with_email()
    offer = waited()
    await f.deliver(offer)
    async with browser(f, FakeDecision()) as (app, client):
        token = token_for(app, f, "ana", offer.decision_id)
        f.clock.advance(timedelta(days=4))  # past the 3-day deadline, before the sweep
        lapsed = await client.get(f"/v1/customer/decisions/{offer.decision_id}",
                                  params={"token": token})
        await f.deliver(chosen(offer, 1, by="default"))
        applied = await client.get(f"/v1/customer/decisions/{offer.decision_id}",
                                   params={"token": token})
    assert "Choose:" not in text(lapsed.text)
    assert ("The time to choose ended on 26 November 2026: you get the option we suggested, "
            "500 loyalty points.") in text(lapsed.text)
    assert ("We did not hear from you by 26 November 2026, so you get the option we "
            "suggested: 500 loyalty points.") in text(applied.text)


async def test_a_rating_is_an_upstream_event_for_the_learning_loop() -> None:
    f = Fulfilment.with_email()
    given = decided(made_incident("support_wait_exceeded", customer_id="ana", paid=None,
                                  email="ana@example.org", wait_minutes=95),
                    APOLOGY, grant(RemedyKind.points, points=100))
    await f.deliver(given)
    async with browser(f, FakeDecision()) as (app, client):
        token = token_for(app, f, "ana", given.decision_id)
        url = f"/v1/customer/decisions/{given.decision_id}"
        thanked = await client.post(f"{url}/feedback", follow_redirects=True, data={
            "token": token, "rating": "4", "comment": "  Quick, thanks <3  "})
        await client.post(f"{url}/feedback", data={  # sent twice: one event id
            "token": token, "rating": "4", "comment": "Quick, thanks <3"})
        empty = await client.post(f"{url}/feedback", data={"token": token, "rating": "9"},
                                  follow_redirects=True)
        forged = await client.post(f"{url}/feedback", data={"token": token[:-3] + "xyz",
                                                              "rating": "1"})
    sent = f.publisher.on(topics.SUPPORT)
    assert len(sent) == 2
    assert sent[0].value == sent[1].value
    assert sent[0].key == "ana"
    event = upstream_event_adapter.validate_json(sent[0].value)
    assert isinstance(event, RemedyRatedEvent)
    assert (event.data.rating, event.data.comment) == (4, "Quick, thanks <3")
    assert event.data.decision_id == given.decision_id
    assert "ana@example.org" not in sent[0].value.decode()
    assert json.loads(sent[0].value)["type"] == "remedy.rated"
    assert "Thank you for telling us" in text(thanked.text)
    assert "How did we do?" not in text(thanked.text)
    assert "Please choose a rating or write a few words" in text(empty.text)
    assert forged.status_code == 403


@pytest.mark.parametrize(("change", "status", "says"), [
    ("expired", 410, "This link has expired"),
    ("tampered", 403, "This link does not open this page"),
    ("missing", 403, "This link does not open this page"),
    ("other decision", 403, "This link does not open this page"),
])
async def test_a_link_that_opens_nothing_gets_a_clear_page(change: str, status: int,
                                                            says: str) -> None:
    f = Fulfilment.with_email()
    offer, other = waited(), waited(customer="bob")
    await f.deliver(offer, other)
    async with browser(f, FakeDecision()) as (app, client):
        token = token_for(app, f, "ana", offer.decision_id)
        params: dict[str, Any] = {"token": token}
        path = f"/v1/customer/decisions/{offer.decision_id}"
        if change == "expired":
            f.clock.advance(timedelta(days=31))
        elif change == "tampered":
            params["token"] = token[:-2] + ("AA" if not token.endswith("AA") else "BB")
        elif change == "missing":
            params = {}
        else:
            path = f"/v1/customer/decisions/{other.decision_id}"
        page = await client.get(path, params=params)
    assert page.status_code == status
    assert page.headers["content-type"].startswith("text/html")
    assert says in text(page.text)
    assert "link_" not in page.text
    assert "Traceback" not in page.text


async def test_the_refusal_page_speaks_the_browsers_language() -> None:
    f = Fulfilment.with_email()
    async with browser(f, FakeDecision()) as (_, client):
        page = await client.get("/v1/customer/decisions/d-1", params={"token": "x.y.z"},
                                headers={"Accept-Language": "ro-RO,ro;q=0.9,en;q=0.5"})
    assert page.status_code == 403
    assert '<html lang="ro">' in page.text
    assert "Acest link nu deschide această pagină" in text(page.text)


@pytest.mark.parametrize(("status", "outcome"), [
    (200, "chosen"), (409, "settled"), (422, "settled"), (401, "unavailable"),
    (503, "unavailable"), (None, "unavailable")])
async def test_decisions_answer_to_a_choice_is_read_as_the_page_needs(
        status: int | None, outcome: str) -> None:
    seen: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if status is None:
            raise httpx.ConnectError("refused", request=request)
        return httpx.Response(status, json={})

    client = DecisionClient("http://decision", 1.0, transport=httpx.MockTransport(answer))
    try:
        got = await client.choose("d-1", 1, "tok.en.x")
    finally:
        await client.aclose()
    assert got == ChoiceAnswer(outcome)  # type: ignore[arg-type]
    [request] = seen
    assert request.url.path == "/v1/customer/decisions/d-1/choice"
    assert request.headers["X-Customer-Token"] == "tok.en.x"
    assert json.loads(request.content) == {"option": 1}
