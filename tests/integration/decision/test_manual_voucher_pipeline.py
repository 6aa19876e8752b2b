"""A manual voucher goes the way of every decision: published, issued once by fulfilment,
the customer told, and it appears in the customer's case with its decision."""

from __future__ import annotations

import httpx
import pytest

from services.common.access import Role
from tests import auth
from tests.clock import FakeClock
from tests.infra import Infra
from tests.integration.decision.test_access_api import T0, voucher
from tests.kafka_tools import collect
from tests.pipeline import running_pipeline

pytestmark = pytest.mark.integration


async def test_a_manual_voucher_is_issued_and_in_the_customers_case(
        infra: Infra, suffix: str) -> None:
    customer_id = f"{suffix}-rain"
    async with running_pipeline(infra, suffix, clock=FakeClock(T0)) as p:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=p.decision),
                                     base_url="http://decision",
                                     headers=auth.headers(Role.support, "shop-a")) as api:
            made = await api.post("/v1/manual-vouchers", json=voucher(
                "r-rain", customer_id, amount="25.00"))
            assert made.status_code == 201, made.text
            decision_id = made.json()["decision_id"]
            # A retry while fulfilment works is the same decision.
            again = await api.post("/v1/manual-vouchers",
                                   json=voucher("r-rain", customer_id, amount="25.00"))
            assert again.json()["decision_id"] == decision_id
        outcomes = await collect(
            infra.kafka_bootstrap, p.topics.outcomes,
            lambda seen: len([o for o in seen if o["data"]["decision_id"] == decision_id]) >= 2,
            settle_s=1.0)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=p.fulfilment),
                                     base_url="http://fulfilment",
                                     headers=auth.headers(Role.viewer, "shop-a")) as ful:
            case = (await ful.get(f"/v1/customers/{customer_id}/case")).json()
    mine = sorted((o["data"]["kind"], o["data"]["status"]) for o in outcomes
                  if o["data"]["decision_id"] == decision_id)
    assert mine == [("apology", "succeeded"), ("voucher", "succeeded")]
    [issued] = case["vouchers"]
    assert issued["amount"] == {"amount": "25.00", "currency": "EUR"}
    [recorded] = case["decisions"]
    assert recorded["decision_id"] == decision_id
    assert recorded["requested_by"] == auth.subject(Role.support, "shop-a")
    assert "the parcel was left in the rain" in recorded["explanation"]


async def test_a_large_manual_voucher_is_carried_out_after_two_other_reviewers(
        infra: Infra, suffix: str) -> None:
    customer_id = f"{suffix}-large"
    async with running_pipeline(infra, suffix, clock=FakeClock(T0)) as p:
        def client(role: Role, who: int = 1) -> httpx.AsyncClient:
            return httpx.AsyncClient(transport=httpx.ASGITransport(app=p.decision),
                                     base_url="http://decision",
                                     headers=auth.headers(role, "*", who))

        async with client(Role.support) as agent, client(Role.reviewer, 1) as ana, \
                client(Role.reviewer, 2) as ben:
            # 300.00 EUR: above the manual-voucher limit (50.00) and the four-eyes one (250.00).
            made = await agent.post("/v1/manual-vouchers", json=voucher(
                "r-large", customer_id, amount="300.00"))
            assert made.json()["status"] == "held", made.text
            decision_id = made.json()["decision_id"]
            first = await ana.post(f"/v1/review/{decision_id}/approve",
                                   json={"reason": "the order was a wedding gift"})
            assert first.json()["status"] == "held", first.text
            nothing = await collect(infra.kafka_bootstrap, p.topics.outcomes,
                                    lambda _: False, timeout_s=2.0)
            assert not [o for o in nothing if o["data"]["decision_id"] == decision_id]
            second = await ben.post(f"/v1/review/{decision_id}/approve",
                                    json={"reason": "agreed"})
            assert second.json()["status"] == "approved", second.text
        outcomes = await collect(
            infra.kafka_bootstrap, p.topics.outcomes,
            lambda seen: len([o for o in seen if o["data"]["decision_id"] == decision_id]) >= 2,
            settle_s=1.5)
    mine = sorted((o["data"]["kind"], o["data"]["status"]) for o in outcomes
                  if o["data"]["decision_id"] == decision_id)
    assert mine == [("apology", "succeeded"), ("voucher", "succeeded")]
