"""Decision's logs carry no personal data: at DEBUG, across incidents, a manual voucher, a
review, a choice on a customer's behalf and a customer's own choice, no e-mail address,
phone number, name or link token appears in any log line of any logger."""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

import pytest

from services.common.access import Role
from tests import auth
from tests.factories import incident
from tests.infra import Infra
from tests.integration.decision.test_access_api import decider, voucher

pytestmark = pytest.mark.integration

EMAIL, PHONE, NAME = "ioana.popescu.7731@example.org", "+40 721 555 019", "Ioana Popescu"


def personal(customer_id: str) -> dict[str, Any]:
    return {"id": customer_id, "locale": "ro", "name": NAME,
            "contact": {"email": EMAIL, "phone": PHONE, "preferred_channel": "sms"}}


async def test_no_log_line_carries_personal_data_or_a_token(
        infra: Infra, suffix: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    held, offered = f"{suffix}-held", f"{suffix}-offered"
    async with decider(infra, suffix) as d:
        ids = await d.decide(
            incident("delivery_delayed", customer_id=held, delay_minutes=600, fact="o-1",
                     customer=personal(held), summary=f"{NAME} called twice"),
            incident("item_defective", customer_id=offered, detection="customer_reported",
                     item_value={"amount": "30.00", "currency": "EUR"}, fact="o-2",
                     customer=personal(offered)))
        token = d.links.sign(offered, ids[offered], d.clock())
        async with d.client(Role.reviewer) as ana:
            made = await ana.post("/v1/manual-vouchers", json=voucher(
                "r-1", f"{suffix}-manual", customer=personal(f"{suffix}-manual"),
                reason=f"{NAME} ({EMAIL}) waited in the rain"))
            assert made.status_code == 201, made.text
            approved = await ana.post(f"/v1/review/{ids[held]}/approve",
                                      json={"reason": f"{NAME} sent a photo"})
            assert approved.status_code == 200, approved.text
        async with d.client() as customer:
            chosen = await customer.post(f"/v1/customer/decisions/{ids[offered]}/choice",
                                         json={"option": 1, "token": token})
            assert chosen.status_code == 200, chosen.text
            again = await customer.post(f"/v1/customer/decisions/{ids[offered]}/choice",
                                        json={"option": 0, "token": token})
            assert again.status_code == 409
        d.clock.advance(timedelta(days=4))
        async with d.client(Role.admin) as admin:
            assert (await admin.post("/v1/offers/apply-defaults",
                                     headers=auth.headers())).status_code == 200
        await d.audit(3)
    lines = [r.getMessage() + (r.exc_text or "") for r in caplog.records]
    assert len(lines) > 10, "DEBUG logs were captured"
    for secret in (EMAIL, PHONE, NAME, token, "7731"):
        assert not [line for line in lines if secret in line], secret
