"""Fulfilment's HTTP API in memory: the app from `create_app` with the fake stores behind it
(no lifespan: nothing connects to Kafka or a database), called through httpx's ASGI
transport — operators' access by role and tenant, vouchers redeemed once, a customer's case,
and the customer's own page behind its signed link."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from pydantic import SecretStr

from schemas.decision import RemedyKind
from services.common.access import PROBLEM_JSON, Role
from services.common.links import CustomerLinks
from services.fulfilment.app import create_app
from services.fulfilment.gateway import RefundResult, RefundStatus
from services.fulfilment.http import LINK_PLACEHOLDER
from tests import auth
from tests.component.fulfilment.harness import Fulfilment
from tests.decisions import APOLOGY, decided, eur, grant, made_incident, offered

pytestmark = pytest.mark.component


@asynccontextmanager
async def api(f: Fulfilment) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    app = create_app(f.settings, stores=f.fakes.stores, publisher=f.publisher,
                     gateway=f.gateway, channels=f.service.channels, clock=f.clock)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://fulfilment") as client:
        yield app, client


def refused(response: httpx.Response, status: int, check: str) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(PROBLEM_JSON)
    assert response.json()["check"] == check, response.json()


async def _voucher(f: Fulfilment, tenant: str | None = "shop-a") -> tuple[str, Any]:
    decision = decided(made_incident("delivery_delayed", paid=None, tenant=tenant,
                                     delay_minutes=90),
                       APOLOGY, grant(RemedyKind.voucher, amount=eur("10.00")))
    await f.deliver(decision)
    [voucher] = f.fakes.vouchers.vouchers.values()
    return voucher.code, decision


async def test_every_operator_endpoint_needs_the_role_and_the_tenant() -> None:
    f = Fulfilment()
    code, _ = await _voucher(f)
    redeem = {"order_id": "o-9", "order_total": {"amount": "20.00", "currency": "EUR"}}
    async with api(f) as (_, client):
        endpoints = [("GET", f"/v1/vouchers/{code}"), ("POST", f"/v1/vouchers/{code}/redeem"),
                     ("GET", "/v1/customers/c-1/case")]
        for method, path in endpoints:
            body = redeem if method == "POST" else None
            refused(await client.request(method, path, json=body), 401, "credentials")
            refused(await client.request(method, path, json=body,
                                         headers={"X-API-Key": "amk_not-a-key"}),
                    401, "api_key")
        post = f"/v1/vouchers/{code}/redeem"
        refused(await client.post(post, json=redeem,
                                  headers=auth.headers(Role.viewer, "shop-a")), 403, "role")
        refused(await client.get(f"/v1/vouchers/{code}",
                                 headers=auth.headers(Role.admin, "shop-b")), 403, "tenant")
        refused(await client.post(post, json=redeem,
                                  headers=auth.headers(Role.support, "shop-b")), 403, "tenant")
        assert f.fakes.vouchers.redemptions == {}
        assert (await client.get(f"/v1/vouchers/{code}", headers=auth.headers(
            Role.viewer, "shop-a"))).status_code == 200
        done = await client.post(post, json=redeem, headers=auth.headers(Role.support, "shop-a"))
        assert done.status_code == 200, done.text
        assert done.json()["discount"] == {"amount": "10.00", "currency": "EUR"}


async def test_a_voucher_is_redeemed_once_and_looked_up_by_any_spelling() -> None:
    f = Fulfilment()
    code, _ = await _voucher(f, tenant=None)
    viewer, checkout = auth.headers(Role.viewer), auth.headers(Role.support)
    async with api(f) as (_, client):
        looked_up = await client.get(f"/v1/vouchers/{code.lower()}", headers=viewer)
        assert looked_up.json()["status"] == "active"
        attempts = await asyncio.gather(*(
            client.post(f"/v1/vouchers/{code}/redeem", headers=checkout,
                        json={"order_id": f"o-{i}",
                              "order_total": {"amount": "30.00", "currency": "EUR"}})
            for i in range(5)))
        assert sorted(r.status_code for r in attempts) == [200, 409, 409, 409, 409]
        after = (await client.get(f"/v1/vouchers/{code}", headers=viewer)).json()
        assert after["status"] == "redeemed"
        assert (await client.post(f"/v1/vouchers/{code}/redeem", headers=checkout,
                                  json={"order_id": ""})).status_code == 422
        assert (await client.get("/v1/vouchers/AMD-NOPE", headers=viewer)).status_code == 404
        # Vouchers are issued by decisions only: no such route.
        assert (await client.post("/v1/vouchers", headers=auth.headers(), json={}
                                  )).status_code in {404, 405}
        f.clock.advance(timedelta(days=91))
        code2 = (await _voucher_for(f, "c-2"))
        expired = await client.post(f"/v1/vouchers/{code2}/redeem", headers=checkout,
                                    json={"order_id": "o-late"})
        assert expired.status_code == 410


async def _voucher_for(f: Fulfilment, customer: str) -> str:
    decision = decided(made_incident("delivery_delayed", customer_id=customer, paid=None,
                                     delay_minutes=90),
                       grant(RemedyKind.voucher, amount=eur("5.00"),
                             expires_at=f.clock() - timedelta(days=1)))
    await f.deliver(decision)
    return next(v.code for v in f.fakes.vouchers.vouchers.values() if v.customer_id == customer)


async def test_the_case_shows_only_the_records_of_the_operators_tenants(f: Fulfilment) -> None:
    points = grant(RemedyKind.points, points=100, value=eur("1.00"))
    voucher = grant(RemedyKind.voucher, amount=eur("10.00"))
    a = decided(made_incident("support_wait_exceeded", paid=None, tenant="shop-a",
                              wait_minutes=95), APOLOGY, points, voucher)
    b = decided(made_incident("delivery_delayed", paid=None, tenant="shop-b",
                              delay_minutes=90), APOLOGY, points, voucher)
    await f.deliver(a, b)
    path = "/v1/customers/c-1/case"
    async with api(f) as (_, client):
        shop_a = (await client.get(path, headers=auth.headers(Role.viewer, "shop-a"))).json()
        every = (await client.get(path, headers=auth.headers(Role.viewer))).json()
        default = (await client.get(path, headers=auth.headers(Role.viewer, "default"))).json()
    assert [i["tenant"] for i in shop_a["incidents"]] == ["shop-a"]
    assert sorted(i["tenant"] for i in every["incidents"]) == ["shop-a", "shop-b"]
    assert default["incidents"] == default["vouchers"] == default["actions"] == []
    assert default["messages"] == []
    assert (shop_a["points_balance"], every["points_balance"], default["points_balance"]) == (
        100, 200, 0)
    assert len(shop_a["vouchers"]) == 1
    assert len(shop_a["actions"]) == 3
    assert {x["decision_id"] for x in shop_a["actions"]} == {a.decision_id}
    assert "incident" not in shop_a["decisions"][0]
    # Messages keep the page link's place, never its token, nor the delivery's bookkeeping.
    [message] = shop_a["messages"]
    assert LINK_PLACEHOLDER in message["text"]
    assert "token=eyJ" not in message["text"]
    assert message["idempotency_key"] == a.actions[0].idempotency_key
    assert message["status"] == "succeeded"
    assert not {"html", "claim", "attempts", "origin"} & message.keys()


def _token(app: FastAPI, customer: str, decision_id: str, f: Fulfilment) -> str:
    links = app.state.runtime.links
    assert isinstance(links, CustomerLinks)
    token: str = links.sign(customer, decision_id, f.clock())
    return token


async def test_the_customer_sees_their_page_with_their_link_only() -> None:
    f = Fulfilment()
    f.gateway.answers.append(RefundResult(RefundStatus.failed, "re_1", "declined"))
    ana = offered(decided(made_incident(customer_id="ana"), APOLOGY,
                          grant(RemedyKind.refund, amount=eur("20.00")),
                          grant(RemedyKind.points, points=100), restitution=[1]),
                  [grant(RemedyKind.voucher, amount=eur("15.00"))],
                  [grant(RemedyKind.points, points=500)], default=1)
    bob = decided(made_incident(customer_id="bob"), APOLOGY,
                  grant(RemedyKind.points, points=50), status="held")
    await f.deliver(ana, bob)
    async with api(f) as (app, client):
        token = _token(app, "ana", ana.decision_id, f)
        page = await client.get(f"/v1/customer/decisions/{ana.decision_id}",
                                params={"token": token})
        by_header = await client.get(f"/v1/customer/decisions/{ana.decision_id}",
                                     headers={"X-Customer-Token": token})
        refused(await client.get(f"/v1/customer/decisions/{ana.decision_id}"), 401, "link")
        refused(await client.get(f"/v1/customer/decisions/{ana.decision_id}",
                                 params={"token": "not-a-token"}), 401, "link")
        refused(await client.get(f"/v1/customer/decisions/{bob.decision_id}",
                                 params={"token": token}), 403, "link_decision")
        stray = _token(app, "bob", ana.decision_id, f)
        refused(await client.get(f"/v1/customer/decisions/{ana.decision_id}",
                                 params={"token": stray}), 403, "link_customer")
        foreign = CustomerLinks({"elsewhere": SecretStr("a-key-of-another-service-not-this")},
                                "elsewhere", timedelta(days=30)).sign("ana", ana.decision_id,
                                                                      f.clock())
        refused(await client.get(f"/v1/customer/decisions/{ana.decision_id}",
                                 params={"token": foreign}), 401, "link")
        held = await client.get(f"/v1/customer/decisions/{bob.decision_id}",
                                params={"token": _token(app, "bob", bob.decision_id, f)})
        unknown = await client.get("/v1/customer/decisions/d-none",
                                   params={"token": _token(app, "ana", "d-none", f)})
        f.clock.advance(timedelta(days=31))
        refused(await client.get(f"/v1/customer/decisions/{ana.decision_id}",
                                 params={"token": token}), 401, "link_expired")

    assert page.status_code == 200, page.text
    assert page.headers["cache-control"] == "no-store"
    assert page.headers["referrer-policy"] == "no-referrer"
    assert by_header.json() == page.json()
    assert "example.org" not in page.text  # no contact details on the page
    shown = page.json()
    assert (shown["status"], shown["incident_type"]) == ("awaiting_choice", "double_charge")
    remedies = {r["kind"]: r for r in shown["remedies"]}
    assert remedies["refund"]["state"] == "failed"
    assert remedies["points"]["state"] == "done"
    offer = shown["offer"]
    assert offer["default_option"] == 1
    assert offer["options"][1]["remedies"][0]["points"] == 500
    assert offer["options"][1]["remedies"][0]["state"] is None  # not chosen
    assert [r["state"] for r in held.json()["remedies"]] == ["awaiting_review"]
    assert held.json()["status"] == "held"
    assert unknown.status_code == 404
