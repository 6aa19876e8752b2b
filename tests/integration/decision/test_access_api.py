"""Decision's API on the real broker and database, as operators and customers reach it: no
credentials answer 401, the wrong role or tenant 403 (each with a problem body naming the
check); reviewers are who is authenticated and large decisions need two of them; manual
vouchers are decisions under the caps and the budget; customers choose only through their
own decision's signed, unexpired link; every human action is on the audit topic once."""

from __future__ import annotations

import contextlib
import logging
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from pydantic import SecretStr

from schemas.incident import IncidentType
from services.common.access import Role
from services.common.links import CustomerLinks
from services.common.messaging import Record
from services.decision.app import create_app as decision_app
from services.decision.domain.policy import Policy, ReviewTrigger, When, load_policy
from services.decision.service import DecisionService
from services.decision.settings import DecisionSettings
from tests import auth
from tests.clock import FakeClock
from tests.factories import customer, incident
from tests.infra import Infra
from tests.kafka_tools import collect, incident_events
from tests.pipeline import Topics, lifespans, settings_for

pytestmark = pytest.mark.integration

T0 = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
DEFAULT = load_policy("deploy/policy/default.yaml")
# Late deliveries are held for review (a 10-hour delay is worth 14.90 EUR of goodwill); a
# defective item reported by the customer is an offer (a replacement or a refund).
POLICY = DEFAULT.model_copy(update={"guards": DEFAULT.guards.model_copy(update={"review": [
    ReviewTrigger(id="late-held", reason="late deliveries wait for a reviewer in these tests",
                  when=When(type=[IncidentType.delivery_delayed]), total_above=Decimal(0))]})})
PROBLEM = "application/problem+json"


@dataclass
class Decider:
    app: FastAPI
    topics: Topics
    clock: FakeClock
    infra: Infra

    @property
    def service(self) -> DecisionService:
        service: DecisionService = self.app.state.service
        return service

    @property
    def links(self) -> CustomerLinks:
        links: CustomerLinks = self.app.state.runtime.links
        return links

    def client(self, role: Role | None = None, tenant: str = "*", who: int = 1
               ) -> httpx.AsyncClient:
        headers = auth.headers(role, tenant, who) if role is not None else {}
        return httpx.AsyncClient(transport=httpx.ASGITransport(app=self.app),
                                 base_url="http://decision", headers=headers)

    async def decide(self, *incidents: dict[str, Any]) -> dict[str, str]:
        """Decide `incidents` now; their decision ids by customer."""
        records = [Record(self.topics.incidents, 0, n, key.encode(), value)
                   for n, (key, value) in enumerate(incident_events(list(incidents)))]
        made = await self.service.handle_incidents(records)
        return {d.incident.customer.id: d.decision_id for d in made}

    async def audit(self, count: int) -> list[dict[str, Any]]:
        """The audit topic once it holds `count` entries (and a while longer, to see more)."""
        events = await collect(self.infra.kafka_bootstrap, self.topics.audit,
                               lambda seen: len(seen) >= count, settle_s=1.5, timeout_s=30)
        return [e["data"] for e in events]


@contextlib.asynccontextmanager
async def decider(infra: Infra, suffix: str, *, policy: Policy = POLICY,
                  **overrides: Any) -> AsyncIterator[Decider]:
    topics = Topics.unique(suffix)
    _, settings, _ = settings_for(infra, topics, f"amends_test_{suffix}")
    if overrides:
        settings = DecisionSettings(**{**settings.model_dump(), **overrides})
    clock = FakeClock(T0)
    app = decision_app(settings, clock=clock, policy=policy)
    async with lifespans([app]):
        yield Decider(app, topics, clock, infra)


def late(customer_id: str, tenant: str | None = None) -> dict[str, Any]:
    extra = {"tenant": tenant} if tenant is not None else {}
    return incident("delivery_delayed", customer_id=customer_id, delay_minutes=600, at=T0,
                    fact=f"o-{customer_id}", **extra)


def defective(customer_id: str, tenant: str | None = None) -> dict[str, Any]:
    extra = {"tenant": tenant} if tenant is not None else {}
    return incident("item_defective", customer_id=customer_id, detection="customer_reported",
                    item_value={"amount": "30.00", "currency": "EUR"}, at=T0,
                    fact=f"o-{customer_id}", **extra)


def voucher(request_id: str, customer_id: str, amount: str = "30.00",
            **fields: Any) -> dict[str, Any]:
    return {"request_id": request_id, "customer": customer(customer_id),
            "incident_type": "item_defective",
            "amount": {"amount": amount, "currency": "EUR"}, "expires_in_days": 90,
            "reason": "the parcel was left in the rain", **fields}


def refused(response: httpx.Response, status: int, check: str) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(PROBLEM), response.headers
    body = response.json()
    assert body["status"] == status
    assert body["check"] == check, body


async def test_every_endpoint_needs_credentials_and_the_role_it_names(
        infra: Infra, suffix: str) -> None:
    async with decider(infra, suffix) as d:
        ids = await d.decide(late(f"{suffix}-late"))
        held = ids[f"{suffix}-late"]
        endpoints: list[tuple[str, str, dict[str, Any] | None, Role]] = [
            ("GET", "/v1/whoami", None, Role.viewer),
            ("GET", "/v1/review", None, Role.viewer),
            ("GET", f"/v1/decisions/{held}", None, Role.viewer),
            ("GET", "/v1/budget", None, Role.viewer),
            ("POST", f"/v1/review/{held}/approve", {"reason": "checked"}, Role.reviewer),
            ("POST", f"/v1/review/{held}/reject", {"reason": "checked"}, Role.reviewer),
            ("POST", f"/v1/offers/{held}/choice", {"option": 0}, Role.support),
            ("POST", "/v1/manual-vouchers", voucher("r-1", f"{suffix}-m"), Role.support),
            ("POST", "/v1/offers/apply-defaults", None, Role.admin),
            ("POST", f"/v1/customers/{suffix}-gone/erasure", {"reason": "T-1"}, Role.admin),
            ("GET", f"/v1/outages/{suffix}-out", None, Role.viewer),
            ("GET", f"/v1/outages/{suffix}-out/window", None, Role.viewer),
            ("POST", f"/v1/outages/{suffix}-out/abort", {"reason": "checked"}, Role.admin),
            ("POST", f"/v1/outages/{suffix}-out/change",
             {"reason": "checked", "apology_only": True}, Role.admin),
            ("GET", "/v1/replies", None, Role.support),
            ("GET", f"/v1/replies/{suffix}-reply", None, Role.support),
            ("POST", f"/v1/replies/{suffix}-reply/edit", {"text": "We are sorry."},
             Role.reviewer),
            ("POST", f"/v1/replies/{suffix}-reply/approve", None, Role.reviewer),
            ("POST", f"/v1/replies/{suffix}-reply/posted",
             {"public_url": "https://reviews.example/r/1"}, Role.reviewer),
            ("GET", "/v1/status-posts", None, Role.viewer),
            ("POST", f"/v1/status-posts/{suffix}-post/approve", None, Role.reviewer),
        ]
        # Every operator route of the app is in the table: a new one cannot slip by.
        routes = {(method.upper(), path)
                  for path, operations in d.app.openapi()["paths"].items()
                  if path.startswith("/v1/") and not path.startswith("/v1/customer/")
                  for method in operations}
        named = {held: "{decision_id}", f"{suffix}-gone": "{customer_id}",
                 f"{suffix}-out": "{outage_id}", f"{suffix}-reply": "{reply_id}",
                 f"{suffix}-post": "{post_id}"}

        def template(path: str) -> str:
            for value, name in named.items():
                path = path.replace(value, name)
            return path

        assert routes == {(m, template(p)) for m, p, _, _ in endpoints}

        async with d.client() as anonymous:
            for method, path, body, _ in endpoints:
                response = await anonymous.request(method, path, json=body)
                refused(response, 401, "credentials")
                assert response.headers["www-authenticate"].startswith("Bearer")
                forged = await anonymous.request(method, path, json=body, headers={
                    "Authorization": "Bearer amk_not-a-key-anyone-was-given"})
                refused(forged, 401, "api_key")
            for path in ("/metrics", "/health", "/alive"):
                assert (await anonymous.get(path)).status_code == 200, path
        for method, path, body, role in endpoints:
            if role > Role.viewer:
                async with d.client(Role(role - 1)) as below:
                    refused(await below.request(method, path, json=body), 403, "role")
        async with d.client(Role.viewer, "shop-a", 2) as viewer:
            me = (await viewer.get("/v1/whoami")).json()
        assert me == {"subject": auth.subject(Role.viewer, "shop-a", 2), "roles": ["viewer"],
                      "tenant": "shop-a", "via": "api_key"}
        # Nothing the refused requests asked for happened.
        async with d.client(Role.viewer) as viewer:
            assert (await viewer.get(f"/v1/decisions/{held}")).json()["status"] == "held"
            assert [h["decision_id"] for h in (await viewer.get("/v1/review")).json()] == [held]
            assert (await viewer.get("/v1/budget")).status_code == 200


async def test_operators_act_only_in_their_tenant(infra: Infra, suffix: str) -> None:
    async with decider(infra, suffix) as d:
        a, b, plain = f"{suffix}-a", f"{suffix}-b", f"{suffix}-plain"
        ids = await d.decide(late(a, "shop-a"), late(b, "shop-b"), late(plain),
                             defective(f"{suffix}-offer-b", "shop-b"))
        offer_b = ids[f"{suffix}-offer-b"]
        for tenant, seen in (("shop-a", [a]), ("shop-b", [b]), ("default", [plain]),
                             ("*", [a, b, plain])):
            async with d.client(Role.viewer, tenant) as viewer:
                queue = (await viewer.get("/v1/review")).json()
            assert sorted(h["customer_id"] for h in queue) == sorted(seen), tenant
        async with d.client(Role.admin, "shop-a") as shop_a:
            refused(await shop_a.get(f"/v1/decisions/{ids[b]}"), 403, "tenant")
            refused(await shop_a.post(f"/v1/review/{ids[b]}/approve", json={"reason": "x"}),
                    403, "tenant")
            refused(await shop_a.post(f"/v1/review/{ids[b]}/reject", json={"reason": "x"}),
                    403, "tenant")
            refused(await shop_a.post(f"/v1/offers/{offer_b}/choice", json={"option": 0}),
                    403, "tenant")
            refused(await shop_a.post("/v1/manual-vouchers", json=voucher(
                "r-b", b, tenant="shop-b")), 403, "tenant")
            # The budget is every tenant's: an admin of one tenant does not read it.
            refused(await shop_a.get("/v1/budget"), 403, "tenant")
            mine = await shop_a.get(f"/v1/decisions/{ids[a]}")
            assert mine.status_code == 200
            assert mine.json()["incident"]["tenant"] == "shop-a"
        async with d.client(Role.viewer) as everyone:
            for customer_id in (a, b):
                decision = (await everyone.get(f"/v1/decisions/{ids[customer_id]}")).json()
                assert decision["status"] == "held"
                # A viewer does not see how to reach the customer; support does.
                assert decision["incident"]["customer"]["contact"]["email"] is None
        async with d.client(Role.support) as agent:
            decision = (await agent.get(f"/v1/decisions/{ids[a]}")).json()
            assert decision["incident"]["customer"]["contact"]["email"] == f"{a}@example.org"
        async with d.client(Role.viewer) as everyone:
            assert (await everyone.get(f"/v1/decisions/{offer_b}")).json()["choice"] is None
        async with d.client(Role.support, "shop-b") as shop_b:
            chosen = await shop_b.post(f"/v1/offers/{offer_b}/choice", json={"option": 1})
            assert chosen.status_code == 200, chosen.text
            choice = chosen.json()["choice"]
            assert choice["by"] == "support"
            assert choice["chosen_by"] == auth.subject(Role.support, "shop-b")
            retry = await shop_b.post(f"/v1/offers/{offer_b}/choice", json={"option": 1})
            assert retry.json()["revision"] == chosen.json()["revision"]
            # A manual voucher of a one-tenant operator is in their tenant.
            made = await shop_b.post("/v1/manual-vouchers", json=voucher("r-own", b))
            assert made.status_code == 201, made.text
            assert made.json()["incident"]["tenant"] == "shop-b"

        async with d.client(Role.admin) as admin:
            settled = await admin.post("/v1/offers/apply-defaults")
            assert settled.json() == {"settled": 0}

        audit = await d.audit(3)
    assert Counter((e["action"], e["actor"]) for e in audit) == {
        ("choose_on_behalf", auth.subject(Role.support, "shop-b")): 1,
        ("manual_voucher", auth.subject(Role.support, "shop-b")): 1,
        ("apply_defaults", auth.subject(Role.admin)): 1}
    behalf = next(e for e in audit if e["action"] == "choose_on_behalf")
    assert behalf["tenant"] == "shop-b"
    assert behalf["target"] == offer_b
    assert behalf["before"]["status"] == "awaiting_choice"
    assert behalf["after"]["status"] == "approved"


async def test_four_eyes_two_different_reviewers_approve_a_large_decision(
        infra: Infra, suffix: str) -> None:
    async with decider(infra, suffix, four_eyes_above=Decimal("10.00")) as d:
        first, second = f"{suffix}-first", f"{suffix}-second"
        ids = await d.decide(late(first), late(second))
        one, two = auth.subject(Role.reviewer, "*", 1), auth.subject(Role.reviewer, "*", 2)
        async with d.client(Role.reviewer, who=1) as ana, \
                d.client(Role.reviewer, who=2) as ben:
            # The verdict names no reviewer: a body that tries to is not believed.
            partial = await ana.post(f"/v1/review/{ids[first]}/approve",
                                     json={"reason": "the delay is confirmed",
                                           "reviewer": "someone-else"})
            assert partial.status_code == 200, partial.text
            body = partial.json()
            assert body["status"] == "held"
            assert [a["reviewer"] for a in body["approvals"]] == [one]
            assert body["review"] is None
            assert f"Approved by {one}" in body["explanation"]
            assert "second reviewer" in body["explanation"]
            queue = (await ana.get("/v1/review")).json()
            [listed] = [h for h in queue if h["decision_id"] == ids[first]]
            assert listed["approvals"] == [one]
            assert listed["approvals_needed"] == 2
            again = await ana.post(f"/v1/review/{ids[first]}/approve",
                                   json={"reason": "really"})
            refused(again, 403, "four_eyes")
            done = await ben.post(f"/v1/review/{ids[first]}/approve",
                                  json={"reason": "agreed"})
            assert done.status_code == 200, done.text
            assert done.json()["status"] == "approved"
            assert done.json()["review"]["reviewer"] == two
            assert [a["reviewer"] for a in done.json()["approvals"]] == [one, two]
            # A retry of the completing approval is the same revision.
            retry = await ben.post(f"/v1/review/{ids[first]}/approve",
                                   json={"reason": "agreed"})
            assert retry.json()["revision"] == done.json()["revision"]

            # One rejection ends it, even after a first approval.
            assert (await ana.post(f"/v1/review/{ids[second]}/approve",
                                   json={"reason": "fine"})).json()["status"] == "held"
            rejected = await ben.post(f"/v1/review/{ids[second]}/reject",
                                      json={"reason": "the parcel was on time"})
            assert rejected.json()["status"] == "rejected"
            refused(await ana.post(f"/v1/review/{ids[second]}/approve",
                                   json={"reason": "fine"}), 409, "state")

        published = await collect(infra.kafka_bootstrap, d.topics.decisions,
                                  lambda seen: len(seen) >= 6, settle_s=1.0)
        audit = await d.audit(5)
    first_revisions = [e["data"]["status"] for e in published
                       if e["data"]["decision_id"] == ids[first]]
    assert first_revisions == ["held", "held", "approved"]
    assert Counter((e["action"], e["actor"], e["target"], e["after"]["status"])
                   for e in audit) == {
        ("approve", one, ids[first], "held"): 1, ("approve", two, ids[first], "approved"): 1,
        ("approve", one, ids[second], "held"): 1, ("reject", two, ids[second], "rejected"): 1}
    entry = next(e for e in audit if e["action"] == "reject")
    assert entry["reason"] == "the parcel was on time"
    assert entry["before"]["status"] == "held"
    assert entry["customer_id"] == second
    assert entry["address"]


async def test_manual_vouchers_are_decisions_under_the_caps_and_four_eyes(
        infra: Infra, suffix: str) -> None:
    tight = POLICY.model_copy(update={"guards": POLICY.guards.model_copy(
        update={"daily_budget": Decimal("200.00")})})
    # The service's own maximum is set above the policy's caps, to see the caps refuse.
    async with decider(infra, suffix, policy=tight, manual_voucher_max=Decimal(1000)) as d:
        small, large, capped = f"{suffix}-small", f"{suffix}-large", f"{suffix}-capped"
        creator = auth.subject(Role.reviewer, "*", 1)
        async with d.client(Role.reviewer, who=1) as ana, \
                d.client(Role.reviewer, who=2) as ben:
            made = await ana.post("/v1/manual-vouchers", json=voucher("r-small", small))
            assert made.status_code == 201, made.text
            decision = made.json()
            assert decision["status"] == "approved"
            assert decision["requested_by"] == creator
            assert decision["incident"]["detection"] == "agent_reported"
            [apology, given] = decision["actions"]
            assert apology["kind"] == "apology"
            assert given["kind"] == "voucher"
            assert given["amount"] == {"amount": "30.00", "currency": "EUR"}
            assert given["note"] == "the parcel was left in the rain"
            assert "the parcel was left in the rain" in decision["explanation"]
            # A retry is the same decision, decided once.
            again = await ana.post("/v1/manual-vouchers", json=voucher("r-small", small))
            assert again.json()["decision_id"] == decision["decision_id"]
            refused(await ana.post("/v1/manual-vouchers", json=voucher(
                "r-small", small, amount="31.00")), 409, "request_id")

            # Bad input names the field.
            for body, field in (
                    (voucher("r-bad", small, amount="10.005"), "amount"),
                    (voucher("r-bad", small, amount="-5.00"), "amount"),
                    (voucher("r-bad", small, amount="1000000.00"), "amount"),
                    (voucher("r-bad", small, reason=""), "reason"),
                    (voucher("r-bad", small, percent="10"), "body")):
                bad = await ana.post("/v1/manual-vouchers", json=body)
                assert bad.status_code == 422, (body, bad.text)
                assert any(field in e["loc"] for e in bad.json()["detail"]), bad.text

            # The policy's caps: 500.00 EUR per incident, 800.00 EUR per customer in 30 days.
            refused(await ana.post("/v1/manual-vouchers", json=voucher(
                "r-big", capped, amount="500.01")), 409, "cap")
            over = await ana.post("/v1/manual-vouchers", json=voucher(
                "r-small-2", small, amount="480.00"))
            assert over.status_code == 201, over.text  # held: above the four-eyes limit
            # Above 50.00 EUR it waits for a reviewer who is not its creator.
            held = await ana.post("/v1/manual-vouchers", json=voucher(
                "r-large", large, amount="120.00"))
            assert held.status_code == 201, held.text
            assert held.json()["status"] == "held"
            held_id = held.json()["decision_id"]
            refused(await ana.post(f"/v1/review/{held_id}/approve",
                                   json={"reason": "I checked it myself"}), 403, "four_eyes")
            assert (await ana.get(f"/v1/decisions/{held_id}")).json()["status"] == "held"
            approved = await ben.post(f"/v1/review/{held_id}/approve",
                                      json={"reason": "the photos show the damage"})
            assert approved.status_code == 200, approved.text
            assert approved.json()["status"] == "approved"

            # The day's budget: 200.00 EUR, 150.00 spent (30.00 and the approved 120.00).
            d.clock.advance(timedelta(minutes=1))
            cheap = [await ben.post("/v1/manual-vouchers", json=voucher(
                f"r-b-{n}", f"{capped}-{n}", amount="40.00")) for n in range(2)]
            assert cheap[0].status_code == 201, cheap[0].text
            refused(cheap[1], 409, "budget")
            assert "10.00 EUR is left" in cheap[1].json()["detail"]

        published = await collect(infra.kafka_bootstrap, d.topics.decisions,
                                  lambda seen: len(seen) >= 5, settle_s=1.0)
        audit = await d.audit(5)
    mine = [e["data"] for e in published if e["data"]["decision_id"] == decision["decision_id"]]
    assert len(mine) == 1, "a retried manual voucher is published once"
    assert len(published) == 5
    assert Counter((e["action"], e["actor"]) for e in audit) == {
        ("manual_voucher", creator): 3, ("manual_voucher", auth.subject(Role.reviewer, "*", 2)): 1,
        ("approve", auth.subject(Role.reviewer, "*", 2)): 1}
    assert len({e["audit_id"] for e in audit}) == len(audit)


async def test_customers_choose_only_with_their_own_unexpired_link(
        infra: Infra, suffix: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    async with decider(infra, suffix) as d:
        a, b = f"{suffix}-a", f"{suffix}-b"
        ids = await d.decide(defective(a), defective(b))
        token_a = d.links.sign(a, ids[a], d.clock())
        path = "/v1/customer/decisions/{}/choice"
        async with d.client() as customer_client:  # no operator credentials at all
            # A's link cannot choose for B, nor can a link naming another customer.
            refused(await customer_client.post(path.format(ids[b]), json={
                "option": 1, "token": token_a}), 403, "link_decision")
            refused(await customer_client.post(path.format(ids[b]), json={
                "option": 1, "token": d.links.sign(a, ids[b], d.clock())}), 403,
                "link_customer")
            other_key = SecretStr("a key the service never held, 32+ bytes")
            forged = CustomerLinks({auth.LINK_KEY_ID: other_key}, auth.LINK_KEY_ID,
                                   timedelta(days=1))
            refused(await customer_client.post(path.format(ids[a]), json={
                "option": 1, "token": forged.sign(a, ids[a], d.clock())}), 401, "link")
            refused(await customer_client.post(path.format(ids[a]), json={"option": 1}),
                    401, "link")
            expiring = d.links.sign(b, ids[b], d.clock() - timedelta(days=29, hours=23))
            d.clock.advance(timedelta(hours=2))
            refused(await customer_client.post(path.format(ids[b]), json={
                "option": 1, "token": expiring}), 401, "link_expired")
            # Through the header too; the customer sees their choice, none of their details.
            chosen = await customer_client.post(path.format(ids[a]), json={"option": 1},
                                                headers={"X-Customer-Token": token_a})
            assert chosen.status_code == 200, chosen.text
            assert chosen.json()["decision_id"] == ids[a]
            assert chosen.json()["option"] == 1
            assert "customer" not in chosen.json()
        async with d.client(Role.viewer) as viewer:
            for customer_id, by in ((a, "customer"), (b, None)):
                choice = (await viewer.get(f"/v1/decisions/{ids[customer_id]}")).json()[
                    "choice"]
                assert (choice or {}).get("by") == by
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert token_a not in logged
    assert expiring not in logged
