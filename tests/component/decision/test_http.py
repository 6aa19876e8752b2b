"""Decision's HTTP API in memory (the routers over the service with fakes): the review queue,
approvals and rejections with the four-eyes rule, choices by support and by the customer's
link, manual vouchers, the defaults sweep by hand, and refusals of who may not act."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from typing import Any

import httpx
import pytest

from schemas.common import Money
from schemas.decision import Choice, DecisionStatus, Review
from services.common.access import Role
from tests import auth
from tests.component.decision.conftest import HOLD_LATE, T0, Decider, build, did, tight
from tests.factories import customer, incident

pytestmark = pytest.mark.component

PROBLEM = "application/problem+json"
LIMIT = Money.of("25000", "EUR")


def late(customer_id: str, tenant: str | None = None) -> dict[str, Any]:
    extra = {"tenant": tenant} if tenant is not None else {}
    return incident("delivery_delayed", customer_id=customer_id, delay_minutes=600, at=T0,
                    fact=f"o-{customer_id}", **extra)


def defective(customer_id: str) -> dict[str, Any]:
    return incident("item_defective", customer_id=customer_id, detection="customer_reported",
                    item_value={"amount": "30.00", "currency": "EUR"}, at=T0,
                    fact=f"o-{customer_id}")


def voucher(request_id: str, customer_id: str, amount: str = "30.00") -> dict[str, Any]:
    return {"request_id": request_id, "customer": customer(customer_id),
            "incident_type": "item_defective",
            "amount": {"amount": amount, "currency": "EUR"}, "expires_in_days": 90,
            "reason": "the parcel was left in the rain"}


def refused(response: httpx.Response, status: int, check: str) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(PROBLEM)
    assert response.json()["check"] == check, response.json()


@pytest.fixture
def held() -> Decider:
    return build(HOLD_LATE)


async def test_an_approval_lets_a_held_decision_out_and_reserves_its_goodwill(
        held: Decider) -> None:
    body = late("c-1")
    [decision] = await held.decide(body)
    assert decision.status is DecisionStatus.held
    assert (await held.budget.state(T0.date(), LIMIT)).spent.amount == 0  # booked on approval
    async with held.api(Role.viewer) as viewer:
        queue = (await viewer.get("/v1/review")).json()
    assert [(q["decision_id"], q["value"], q["approvals_needed"]) for q in queue] == [
        (did(body), "14.90", 1)]
    async with held.api(Role.reviewer) as reviewer:
        response = await reviewer.post(f"/v1/review/{did(body)}/approve",
                                       json={"reason": "checked"})
        again = await reviewer.post(f"/v1/review/{did(body)}/approve",
                                    json={"reason": "checked"})
        refused(await reviewer.post(f"/v1/review/{did(body)}/reject",
                                    json={"reason": "no"}), 409, "state")
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "approved"
    assert again.json() == response.json()
    assert (await held.budget.state(T0.date(), LIMIT)).spent.amount == Decimal("14.90")
    assert [e["id"] for e in held.published()] == [did(body), f"{did(body)}:1"]
    assert [e.action for e in held.audit.of(did(body))] == ["approve"]
    async with held.api(Role.viewer) as viewer:
        assert (await viewer.get("/v1/review")).json() == []


async def test_a_rejection_sends_only_the_apology(held: Decider) -> None:
    body = late("c-1")
    await held.decide(body)
    async with held.api(Role.reviewer) as reviewer:
        response = await reviewer.post(f"/v1/review/{did(body)}/reject",
                                       json={"reason": "a duplicate claim"})
    assert response.status_code == 200, response.text
    assert [a["kind"] for a in response.json()["actions"]] == ["apology"]
    assert (await held.budget.state(T0.date(), LIMIT)).spent.amount == 0


async def test_an_approval_the_budget_cannot_cover_is_refused() -> None:
    decider = build(tight("10", HOLD_LATE))
    first, body = late("c-0"), late("c-1")
    await decider.decide(first, body)  # both cut to the 10.00 left: held ones book nothing
    async with decider.api(Role.reviewer) as reviewer:
        taken = await reviewer.post(f"/v1/review/{did(first)}/approve",
                                    json={"reason": "checked"})
        assert taken.status_code == 200, taken.text
        refused(await reviewer.post(f"/v1/review/{did(body)}/approve",
                                    json={"reason": "checked"}), 409, "budget")
    current = await decider.store.get(did(body))
    assert current is not None
    assert current.status is DecisionStatus.held


async def test_above_the_four_eyes_limit_two_different_reviewers_approve() -> None:
    decider = build(HOLD_LATE, four_eyes_above=Decimal("10.00"))
    body = late("c-1")
    await decider.decide(body)
    url = f"/v1/review/{did(body)}/approve"
    async with decider.api(Role.reviewer, who=1) as first:
        waiting = await first.post(url, json={"reason": "fine by me"})
        assert waiting.status_code == 200, waiting.text
        assert waiting.json()["status"] == "held"
        refused(await first.post(url, json={"reason": "again"}), 403, "four_eyes")
    assert (await decider.budget.state(T0.date(), LIMIT)).spent.amount == 0
    async with decider.api(Role.reviewer, who=2) as second:
        approved = await second.post(url, json={"reason": "agreed"})
    assert approved.json()["status"] == "approved"
    assert [a["reviewer"] for a in approved.json()["approvals"]] == [
        auth.subject(Role.reviewer, who=1), auth.subject(Role.reviewer, who=2)]
    assert (await decider.budget.state(T0.date(), LIMIT)).spent.amount == Decimal("14.90")


async def test_support_chooses_on_the_customers_behalf(decider: Decider) -> None:
    body = defective("c-1")
    [offer] = await decider.decide(body)
    assert offer.status is DecisionStatus.awaiting_choice
    async with decider.api(Role.support) as support:
        response = await support.post(f"/v1/offers/{did(body)}/choice", json={"option": 1})
        assert response.status_code == 200, response.text
        assert response.json()["choice"]["by"] == "support"
        assert response.json()["choice"]["chosen_by"] == auth.subject(Role.support)
        refused(await support.post(f"/v1/offers/{did(body)}/choice", json={"option": 0}),
                409, "state")
    assert [e.action for e in decider.audit.of(did(body))] == ["choose_on_behalf"]


async def test_customers_choose_only_with_their_own_unexpired_link(decider: Decider) -> None:
    a, b = defective("c-a"), defective("c-b")
    await decider.decide(a, b)
    url = f"/v1/customer/decisions/{did(a)}/choice"
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=decider.app),
                                 base_url="http://decision") as anyone:
        refused(await anyone.post(url, json={"option": 1}), 401, "link")
        other = decider.links.sign("c-b", did(a), decider.clock())
        refused(await anyone.post(url, json={"option": 1, "token": other}), 403,
                "link_customer")
        old = decider.links.sign("c-a", did(a), decider.clock() - timedelta(days=400))
        refused(await anyone.post(url, json={"option": 1, "token": old}), 401,
                "link_expired")
        token = decider.links.sign("c-a", did(a), decider.clock())
        chosen = await anyone.post(url, json={"option": 1, "token": token})
    assert chosen.status_code == 200, chosen.text
    assert chosen.json()["option"] == 1
    assert chosen.json()["status"] == "approved"


async def test_a_manual_voucher_is_a_decision_once_within_the_caps(decider: Decider) -> None:
    async with decider.api(Role.support) as support:
        made = await support.post("/v1/manual-vouchers", json=voucher("r-1", "c-1"))
        again = await support.post("/v1/manual-vouchers", json=voucher("r-1", "c-1"))
        refused(await support.post("/v1/manual-vouchers",
                                   json=voucher("r-1", "c-1", amount="31.00")), 409,
                "request_id")
        too_much = await support.post("/v1/manual-vouchers",
                                      json=voucher("r-2", "c-1", amount="501.00"))
    assert made.status_code == 201, made.text
    assert made.json()["status"] == "approved"
    assert again.json() == made.json()
    assert too_much.status_code == 422
    assert len(decider.published()) == 1
    assert (await decider.budget.state(T0.date(), LIMIT)).spent.amount == Decimal("30.00")
    capped = build(decider.service.policy.model_copy(update={
        "guards": decider.service.policy.guards.model_copy(
            update={"incident_cap": Decimal(20)})}))
    async with capped.api(Role.support) as support:
        refused(await support.post("/v1/manual-vouchers", json=voucher("r-3", "c-2")), 409,
                "cap")


async def test_a_large_manual_voucher_waits_for_another_reviewer(decider: Decider) -> None:
    async with decider.api(Role.reviewer, who=1) as creator:
        made = await creator.post("/v1/manual-vouchers",
                                  json=voucher("r-9", "c-1", amount="80.00"))
        assert made.json()["status"] == "held", made.text
        url = f"/v1/review/{made.json()['decision_id']}/approve"
        refused(await creator.post(url, json={"reason": "mine"}), 403, "four_eyes")
    async with decider.api(Role.reviewer, who=2) as other:
        approved = await other.post(url, json={"reason": "seen"})
    assert approved.json()["status"] == "approved"


async def test_operators_act_only_with_their_role_and_in_their_tenant(held: Decider) -> None:
    mine, theirs = late("c-a", tenant="shop-a"), late("c-b", tenant="shop-b")
    await held.decide(mine, theirs)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=held.app),
                                 base_url="http://decision") as nobody:
        refused(await nobody.get("/v1/review"), 401, "credentials")
    async with held.api(Role.viewer) as viewer:
        refused(await viewer.post(f"/v1/review/{did(mine)}/approve",
                                  json={"reason": "x"}), 403, "role")
    async with held.api(Role.reviewer, tenant="shop-a") as reviewer:
        queue = (await reviewer.get("/v1/review")).json()
        assert [q["decision_id"] for q in queue] == [did(mine)]
        refused(await reviewer.post(f"/v1/review/{did(theirs)}/approve",
                                    json={"reason": "x"}), 403, "tenant")
        refused(await reviewer.get("/v1/budget"), 403, "tenant")
        missing = await reviewer.get("/v1/decisions/nothing-here")
        assert missing.status_code == 404
    async with held.api(Role.viewer) as viewer:
        budget = (await viewer.get("/v1/budget")).json()
        shown = (await viewer.get(f"/v1/decisions/{did(mine)}")).json()
    assert budget["limit"] == "25000.00"
    assert shown["incident"]["customer"]["contact"].get("email") is None


async def test_an_admin_applies_the_defaults_by_hand(decider: Decider) -> None:
    body = defective("c-1")
    [offer] = await decider.decide(body)
    assert offer.offer is not None
    decider.clock.now = offer.offer.deadline + timedelta(minutes=1)
    async with decider.api(Role.support) as support:
        refused(await support.post("/v1/offers/apply-defaults"), 403, "role")
    async with decider.api(Role.admin) as admin:
        assert (await admin.post("/v1/offers/apply-defaults")).json() == {"settled": 1}
    settled = await decider.store.get(did(body))
    assert settled is not None
    assert settled.choice is not None
    assert settled.choice.by == "default"


async def test_an_approval_that_loses_the_race_to_a_rejection_gives_its_budget_back(
        held: Decider) -> None:
    body = late("c-1")
    await held.decide(body)
    # Another reviewer's rejection was claimed between this reviewer's read and write.
    await held.store.claim_review(did(body), Review(
        verdict="rejected", reviewer="otto", reason="a duplicate", at=T0))
    async with held.api(Role.reviewer) as reviewer:
        refused(await reviewer.post(f"/v1/review/{did(body)}/approve",
                                    json={"reason": "checked"}), 409, "state")
    assert (await held.budget.state(T0.date(), LIMIT)).spent.amount == 0
    assert held.published() == [held.published()[0]]


async def test_a_customer_who_chooses_after_the_default_won_gets_the_default(
        decider: Decider) -> None:
    body = defective("c-1")
    [offer] = await decider.decide(body)
    assert offer.offer is not None
    won = Choice(option=0, label=offer.offer.options[0].label, by="default", at=T0)
    await decider.store.claim_choice(did(body), won)
    settled = await decider.service.choose(did(body), 1, by="customer")
    assert settled.choice == won
    assert settled.status is DecisionStatus.approved
