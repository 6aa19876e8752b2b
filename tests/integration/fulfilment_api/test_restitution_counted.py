"""Fulfilment counts the restitution it carries out apart from goodwill: a refund marked
restitution on `amends_restitution_issued_total`, a voucher and a goodwill refund on
`amends_compensation_issued_total`. Through decision and fulfilment on the real broker and
database, with the payment gateway peer over real HTTP."""

from __future__ import annotations

import httpx
import pytest
from fastapi import FastAPI
from pydantic import SecretStr

from devtools.gateway_peer import DEFAULT_API_KEY, Behaviour, serving
from devtools.gateway_peer import create_app as gateway_app
from schemas.common import Money
from services.decision.domain.policy import parse_policy
from tests.factories import eur, incident
from tests.infra import Infra
from tests.kafka_tools import collect, incident_events, produce
from tests.pipeline import running_pipeline

pytestmark = pytest.mark.integration

POLICY = parse_policy("""
version: counted-apart
currency: EUR
values: {point: "0.01"}
guards: {incident_cap: 100, customer_cap: 100, daily_budget: 1000}
rules:
  - id: give-back
    when: {type: [double_charge]}
    grant:
      - refund: {percent: 100, of: charge, restitution: true}
      - voucher: {amount: 5, expires_days: 90}
  - id: make-up
    when: {type: [item_defective]}
    grant:
      - refund: {fixed: 7}
""")


async def samples(app: FastAPI, name: str) -> dict[str, float]:
    """The samples of one metric on the app's /metrics, by their labels."""
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                 base_url="http://fulfilment") as client:
        text = (await client.get("/metrics")).text
    found: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith(name + "{"):
            labels, value = line[len(name):].rsplit(" ", 1)
            found[labels] = float(value)
    return found


async def test_a_restitution_refund_is_counted_as_restitution_and_goodwill_as_goodwill(
        infra: Infra, suffix: str) -> None:
    charged, defective = f"{suffix}-charged", f"{suffix}-defective"
    peer_app = gateway_app(Behaviour(payments={"o-charged": Money.of("20.00", "EUR"),
                                               "o-defective": Money.of("80.00", "EUR")},
                                     settle_after_polls=0))
    incidents = [
        incident("double_charge", customer_id=charged, fact="o-charged",
                 charged_amount=eur("20.00"), order_value=eur("20.00")),
        incident("item_defective", customer_id=defective, fact="o-defective",
                 order_value=eur("80.00")),
    ]
    async with serving(peer_app) as gateway_url, running_pipeline(
            infra, suffix, policy=POLICY, fulfilment={
            "payment_gateway_url": gateway_url,
            "payment_gateway_api_key": SecretStr(DEFAULT_API_KEY)}) as pipeline:
        await produce(infra.kafka_bootstrap, pipeline.topics.incidents,
                      incident_events(incidents))
        outcomes = await collect(infra.kafka_bootstrap, pipeline.topics.outcomes,
                                 lambda seen: len(seen) >= 5, settle_s=1.0)
        restitution = await samples(pipeline.fulfilment, "amends_restitution_issued_total")
        goodwill = await samples(pipeline.fulfilment, "amends_compensation_issued_total")

    done = {(o["data"]["customer_id"], o["data"]["kind"]): o["data"] for o in outcomes}
    assert len(outcomes) == 5  # two apologies, two refunds, a voucher
    assert {key: (o["status"], o["value"]["amount"], o["restitution"])
            for key, o in done.items() if key[1] != "apology"} == {
        (charged, "refund"): ("succeeded", "20.00", True),
        (charged, "voucher"): ("succeeded", "5.00", False),
        (defective, "refund"): ("succeeded", "7.00", False),
    }
    assert restitution == {'{currency="EUR"}': 20.0}
    assert goodwill == {'{currency="EUR",kind="refund"}': 7.0,
                        '{currency="EUR",kind="voucher"}': 5.0}
