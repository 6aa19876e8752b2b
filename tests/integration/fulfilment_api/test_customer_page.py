"""The customer's page, on the real services with e-mail through a real SMTP server
(aiosmtpd): the link in the apology opens it and shows what the customer got (points, a
voucher with its code, the open offer); a forged token, a token of another decision or
another customer, one signed with an unknown key, and an expired one are refused with a
problem body naming the check."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from services.common.access import PROBLEM_JSON, Role
from services.common.links import CustomerLinks
from tests import auth
from tests.clock import FakeClock
from tests.infra import Infra
from tests.integration.fulfilment_api.decisions import voucher_policy, waited
from tests.integration.fulfilment_api.test_follow_ups import mails, to
from tests.kafka_tools import collect, incident_events, produce
from tests.mail import Inbox, body
from tests.pipeline import running_pipeline

pytestmark = pytest.mark.integration

T0 = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
PAGE = re.compile(r"http://fulfilment(/v1/customer/decisions/[^\s?]+\?token=[\w.-]+)")


def refused(response: httpx.Response, status: int, check: str) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(PROBLEM_JSON)
    assert response.json()["check"] == check, response.json()


def tampered(token: str) -> str:
    head, claims, signature = token.split(".")
    return f"{head}.{claims}.{signature[:-2]}{'AA' if signature[-2:] != 'AA' else 'BB'}"


async def test_the_link_in_the_mail_opens_the_customers_page_and_only_that(
        infra: Infra, suffix: str, inbox: tuple[Inbox, int]) -> None:
    handler, smtp_port = inbox
    ana, bob = f"{suffix}-ana", f"{suffix}-bob"
    clock = FakeClock(T0 + timedelta(minutes=5))
    async with running_pipeline(infra, suffix, clock=clock, policy=voucher_policy("page"),
                                fulfilment={
            "smtp_host": "127.0.0.1", "smtp_port": smtp_port,
            "customer_page_url": "http://fulfilment/v1/customer/decisions/{decision_id}"
                                 "?token={token}"}) as pipeline, \
            httpx.AsyncClient(transport=httpx.ASGITransport(app=pipeline.fulfilment),
                              base_url="http://fulfilment") as api:
        await produce(infra.kafka_bootstrap, pipeline.topics.incidents, incident_events([
            waited(ana, f"a-{suffix}", at=T0), waited(bob, f"b-{suffix}", at=T0)]))
        made = await collect(infra.kafka_bootstrap, pipeline.topics.decisions,
                             lambda seen: len(seen) >= 2)
        ids = {d["data"]["incident"]["customer"]["id"]: d["data"]["decision_id"] for d in made}
        await collect(infra.kafka_bootstrap, pipeline.topics.outcomes, lambda s: len(s) >= 6)
        received = await mails(handler, 2)
        links: dict[str, str] = {}
        for customer in (ana, bob):
            [mail] = [m for m in received if to(customer)(m)]
            found = PAGE.search(body(mail, "plain"))
            assert found is not None, body(mail, "plain")
            links[customer] = found.group(1)
            assert found.group(1) in body(mail, "html")
        assert links[ana].startswith(f"/v1/customer/decisions/{ids[ana]}?")
        token = links[ana].partition("token=")[2]

        page = await api.get(links[ana])
        by_header = await api.get(f"/v1/customer/decisions/{ids[ana]}",
                                  headers={"X-Customer-Token": token})
        case = (await api.get(f"/v1/customers/{ana}/case",
                              headers=auth.headers(Role.viewer))).json()

        refused(await api.get(f"/v1/customer/decisions/{ids[ana]}"), 401, "link")
        refused(await api.get(f"/v1/customer/decisions/{ids[ana]}",
                              params={"token": tampered(token)}), 401, "link")
        refused(await api.get(f"/v1/customer/decisions/{ids[ana]}",
                              params={"token": "not-a-token"}), 401, "link")
        # Ana's link names her decision: it opens neither Bob's page nor any other.
        refused(await api.get(f"/v1/customer/decisions/{ids[bob]}", params={"token": token}),
                403, "link_decision")
        # A genuine link for Ana's decision, but issued to someone else.
        links_of = pipeline.fulfilment.state.runtime.links
        assert isinstance(links_of, CustomerLinks)
        stray = links_of.sign(bob, ids[ana], clock())
        refused(await api.get(f"/v1/customer/decisions/{ids[ana]}", params={"token": stray}),
                403, "link_customer")
        foreign = CustomerLinks({"elsewhere": SecretStr("a-key-of-another-service-not-this-one")},
                                "elsewhere", timedelta(days=30)).sign(ana, ids[ana], clock())
        refused(await api.get(f"/v1/customer/decisions/{ids[ana]}",
                              params={"token": foreign}), 401, "link")
        clock.advance(timedelta(days=31))  # the links last 30 days
        refused(await api.get(links[ana]), 401, "link_expired")

    assert page.status_code == 200, page.text
    assert page.headers["cache-control"] == "no-store"
    assert page.headers["referrer-policy"] == "no-referrer"
    assert by_header.json() == page.json()
    [voucher] = case["vouchers"]
    shows_what_ana_got(page.json(), ids[ana], voucher["code"])
    assert "example.org" not in page.text  # no contact details on the page


def shows_what_ana_got(shown: dict[str, Any], decision: str, code: str) -> None:
    assert shown["decision_id"] == decision
    assert shown["status"] == "awaiting_choice"
    assert shown["incident_type"] == "support_wait_exceeded"
    remedies = {r["kind"]: r for r in shown["remedies"]}
    assert sorted(remedies) == ["points", "voucher"]
    assert remedies["points"]["points"] == 100
    assert remedies["points"]["state"] == "done"
    assert remedies["voucher"]["voucher_code"] == code
    assert remedies["voucher"]["amount"] == {"amount": "10.00", "currency": "EUR"}
    assert remedies["voucher"]["voucher_status"] == "active"
    assert remedies["voucher"]["state"] == "done"
    offer = shown["offer"]
    assert [o["label"] for o in offer["options"]] == ["a 15.00 EUR voucher",
                                                      "500 loyalty points"]
    assert offer["default_option"] == 1
    assert datetime.fromisoformat(offer["deadline"]) == T0 + timedelta(minutes=5, hours=72)
    assert offer["options"][1]["remedies"][0]["points"] == 500
    assert offer["options"][1]["remedies"][0]["state"] is None  # not chosen
    assert datetime.fromisoformat(shown["link_expires_at"]) == T0 + timedelta(minutes=5,
                                                                              days=30)
