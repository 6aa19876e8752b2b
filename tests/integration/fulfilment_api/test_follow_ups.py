"""A remedy settled after the apology reaches the customer: the decision and fulfilment
services on the real broker and database, e-mail through a real SMTP server (aiosmtpd). A
customer's choice, the default after the deadline, or a reviewer's approval each bring one
more message, in the customer's locale, saying what they now have (a voucher's code, the
points); a held offer approved after its deadline gets a new one, and its message states it."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from typing import Any

import httpx
import pytest

from amends import ops
from services.common.access import Role
from services.decision.domain.policy import parse_policy
from services.fulfilment.messages import format_date, format_duration
from tests import auth
from tests.clock import FakeClock
from tests.factories import incident
from tests.infra import Infra
from tests.kafka_tools import collect, incident_events, produce
from tests.mail import Inbox, body, parsed
from tests.pipeline import running_pipeline

pytestmark = pytest.mark.integration

T0 = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
POLICY = parse_policy("""
version: follow-up-test
currency: EUR
values: {point: "0.01"}
guards:
  incident_cap: 100
  customer_cap: 100
  daily_budget: 1000
  review:
    - id: agent-reported
      reason: an agent reported it
      when: {detection: [agent_reported]}
rules:
  - id: wait
    when: {type: [support_wait_exceeded]}
    because: for the wait
    grant:
      - points: 100
    offer:
      deadline_hours: 72
      default: 1
      options:
        - label: a 15.00 EUR voucher
          grant: [{voucher: {amount: 15, expires_days: 90}}]
        - label: 500 loyalty points
          grant: [{points: 500}]
""")


def waited(customer_id: str, locale: str, detection: str = "customer_reported"
           ) -> dict[str, Any]:
    made = incident("support_wait_exceeded", customer_id=customer_id, detection=detection,
                    fact=f"t-{customer_id}", wait_minutes=95, at=T0)
    made["customer"]["locale"] = locale
    return made


def client(app: Any, name: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=f"http://{name}")


async def mails(handler: Inbox, count: int, timeout_s: float = 30.0) -> list[EmailMessage]:
    """Wait until the relay has accepted `count` messages; the messages, parsed."""
    for _ in range(int(timeout_s * 10)):
        if len(handler.envelopes) >= count:
            break
        await asyncio.sleep(0.1)
    return [parsed(e) for e in handler.envelopes]


def to(customer: str) -> Callable[[EmailMessage], bool]:
    return lambda mail: mail["To"] == f"{customer}@example.org"


async def test_a_choice_its_default_and_an_approval_each_reach_the_customer(
        infra: Infra, suffix: str, inbox: tuple[Inbox, int]) -> None:
    handler, smtp_port = inbox
    chooser, silent, held = f"{suffix}-chooser", f"{suffix}-silent", f"{suffix}-held"
    clock = FakeClock(T0 + timedelta(minutes=5))
    async with running_pipeline(infra, suffix, clock=clock, policy=POLICY, fulfilment={
            "smtp_host": "127.0.0.1", "smtp_port": smtp_port,
            "smtp_from": "Care <care@shop.example>"}) as p, \
            client(p.decision, "decision") as decision, \
            client(p.fulfilment, "fulfilment") as fulfilment:
        await produce(infra.kafka_bootstrap, p.topics.incidents, incident_events([
            waited(chooser, "ru"), waited(silent, "ro"),
            waited(held, "en", detection="agent_reported")]))
        made = await collect(infra.kafka_bootstrap, p.topics.decisions,
                             lambda seen: len(seen) >= 3)
        ids = {d["data"]["incident"]["customer"]["id"]: d["data"]["decision_id"] for d in made}
        first = await mails(handler, 2)
        assert sorted(m["To"] for m in first) == [f"{chooser}@example.org",
                                                 f"{silent}@example.org"]

        # The customer picks the voucher: a second message brings its code, in Russian.
        token = p.decision.state.runtime.links.sign(chooser, ids[chooser], clock())
        chosen = await decision.post(f"/v1/customer/decisions/{ids[chooser]}/choice",
                                     json={"option": 0, "token": token})
        assert chosen.status_code == 200, chosen.text
        [confirmation] = [m for m in (await mails(handler, 3))[2:] if to(chooser)(m)]
        case = (await fulfilment.get(f"/v1/customers/{chooser}/case",
                                     headers=auth.headers(Role.viewer))).json()
        [voucher] = case["vouchers"]
        assert confirmation["Subject"] == "Ваш выбор подтверждён"
        text = body(confirmation, "plain")
        assert f"промокод {voucher['code']}" in text
        assert "15,00" in text
        assert "1" + "\u00a0" + "500" not in text  # the other option is not what they have
        # The confirmation links to the customer's page of that decision, as the apology did.
        for mail in (confirmation, *[m for m in first if to(chooser)(m)]):
            assert f"/v1/customer/decisions/{ids[chooser]}?token=" in body(mail, "plain")

        # Three days pass. The held decision is approved now, after its offer's deadline:
        # the customer gets the whole 72 hours from now, and the apology states the date.
        clock.advance(timedelta(hours=73))
        approved = await decision.post(f"/v1/review/{ids[held]}/approve", json={
            "reason": "the wait is confirmed"}, headers=auth.headers(Role.reviewer))
        assert approved.status_code == 200, approved.text
        deadline = datetime.fromisoformat(approved.json()["offer"]["deadline"])
        assert deadline == clock() + timedelta(hours=72)
        [apology] = [m for m in (await mails(handler, 4))[3:] if to(held)(m)]
        assert f"by {format_date(deadline, 'en')}" in body(apology, "plain")
        assert f"within {format_duration(72 * 60, 'en', within=True)}" in body(apology, "plain")

        # The silent customer's deadline passed: the default applies and is confirmed, in
        # Romanian; the approved offer still runs.
        assert (await decision.post("/v1/offers/apply-defaults", headers=auth.headers())
                ).json() == {"settled": 1}
        [defaulted] = [m for m in (await mails(handler, 5))[4:] if to(silent)(m)]
        assert defaulted["Subject"] == "Ce aveți acum de la noi"
        first_deadline = format_date(T0 + timedelta(minutes=5, hours=72), "ro")
        assert f"până la {first_deadline}" in body(defaulted, "plain")
        assert "500\u00a0de puncte de fidelitate" in body(defaulted, "plain")

        # A replay of every decision, revisions included, sends nothing again.
        await ops.replay(infra.kafka_bootstrap, p.topics.decisions,
                         start=ops.Position(edge="earliest"))
        await asyncio.sleep(3.0)
        outcomes = await collect(infra.kafka_bootstrap, p.topics.outcomes,
                                 lambda seen: len(seen) >= 8, settle_s=1.0)

    sent = Counter(parsed(e)["To"] for e in handler.envelopes)
    assert sent == {f"{chooser}@example.org": 2, f"{silent}@example.org": 2,
                    f"{held}@example.org": 1}
    assert len({parsed(e)["Message-ID"] for e in handler.envelopes}) == 5
    # Follow-ups are messages, not actions: each action has its one outcome.
    assert Counter(o["data"]["kind"] for o in outcomes) == {"apology": 3, "points": 4,
                                                            "voucher": 1}
