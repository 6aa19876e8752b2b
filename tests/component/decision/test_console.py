"""The operations console in memory (its routes over decision's service with fakes, a case
reader and a dead-letter desk of its own): signing in with a key sets an HttpOnly,
SameSite=Strict session that expires; forms without the session's CSRF token are refused;
roles and tenants are the API's; the review queue, a case by order, dead letters, the budget
and outages as pages."""

from __future__ import annotations

import base64
import re
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from prometheus_client import CollectorRegistry

from amends import ops
from schemas.deadletter import DeadLetter
from schemas.decision import DecisionStatus
from services.common.access import Authenticator, Role
from services.decision.console import (
    SESSION_COOKIE,
    FulfilmentCases,
    Sessions,
    create_console,
    timeline,
)
from services.decision.domain.lifecycle import review_key
from services.decision.ports import BudgetMovement
from tests import auth
from tests.component.decision.conftest import HOLD_LATE, T0, Decider, build, did
from tests.factories import incident

pytestmark = pytest.mark.component

CSRF = re.compile(r'name="csrf" value="([^"]+)"')
KEYS = {(role, tenant): auth.headers(role, tenant)["Authorization"].split(" ", 1)[1]
        for role in Role for tenant in auth.TENANTS}


class FakeCases(FulfilmentCases):
    """Fulfilment's case API: one case per customer, and who asked with which credential."""

    def __init__(self, cases: dict[str, dict[str, Any]]) -> None:
        self.cases = cases
        self.asked: list[tuple[str, str]] = []

    async def case(self, customer_id: str, credential: str) -> dict[str, Any]:
        self.asked.append((customer_id, credential))
        return self.cases[customer_id]

    async def aclose(self) -> None:
        return None


class FakeDesk:
    def __init__(self, letters: list[ops.Letter]) -> None:
        self.letters_ = letters
        self.sent: list[str] = []
        self.settings = type("S", (), {"deadletter_topic": "deadletter"})()

    async def letters(self) -> list[ops.Letter]:
        return self.letters_

    async def redriven(self) -> set[str]:
        return set(self.sent)

    async def redrive(self, letter: ops.Letter, now: datetime) -> ops.RedriveSummary:
        del now
        self.sent.append(letter.letter.dead_letter_id)
        return ops.RedriveSummary(redriven=[letter])


def letter(letter_id: str, service: str = "fulfilment", reason: str = "invalid") -> ops.Letter:
    return ops.Letter(DeadLetter.model_validate({
        "dead_letter_id": letter_id, "service": service, "reason": reason,
        "error": "bad JSON", "topic": "amends.decisions.v1", "partition": 0, "offset": 7,
        "failed_at": T0.isoformat(), "key_b64": base64.b64encode(b"c-1").decode(),
        "value_b64": base64.b64encode(b'{"not": "a decision"}').decode(),
        "headers": []}), 3)


def console_of(decider: Decider, cases: FakeCases | None = None,
               desk: FakeDesk | None = None) -> FakeCases:
    """Mount the console on the decider's app, over its service and these fakes."""
    cases = cases or FakeCases({})
    _, routes, web = create_console(decider.service, Authenticator(decider.settings.auth),
                                    decider.settings, CollectorRegistry(),
                                    brand=decider.settings.brand, cases=cases,
                                    desk=desk)  # type: ignore[arg-type]
    decider.app.include_router(routes)
    decider.app.include_router(web.static_router())
    return cases


def browser(app: FastAPI) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                             base_url="http://decision", headers={"Accept": "text/html"})


async def signed_in(client: httpx.AsyncClient, role: Role = Role.reviewer,
                    tenant: str = "*") -> str:
    """Sign in as the operator with `role` in `tenant`; the CSRF token of the session."""
    form = await client.get("/console/login")
    found = CSRF.search(form.text)
    assert found, form.text
    done = await client.post("/console/login", data={"csrf": found.group(1),
                                                      "key": KEYS[(role, tenant)]})
    assert done.status_code == 303, done.text
    page = await client.get("/console/review")
    assert page.status_code == 200, page.text
    token = CSRF.search(page.text)
    assert token
    return token.group(1)


@pytest.fixture
def held() -> Decider:
    return build(HOLD_LATE)


def late(customer_id: str, tenant: str | None = None, **fields: Any) -> dict[str, Any]:
    extra: dict[str, Any] = {"tenant": tenant} if tenant is not None else {}
    return incident("delivery_delayed", customer_id=customer_id, delay_minutes=600, at=T0,
                    fact=f"o-{customer_id}", **extra, **fields)


async def test_without_a_session_every_page_sends_to_the_sign_in(held: Decider) -> None:
    console_of(held)
    async with browser(held.app) as client:
        for path in ("/console/review", "/console/cases", "/console/budget",
                     "/console/dead-letters", "/console/outages"):
            response = await client.get(path)
            assert (response.status_code, response.headers["location"]) == (
                303, "/console/login"), path
        form = await client.get("/console/login")
    assert form.status_code == 200
    assert 'type="password"' in form.text
    assert "script-src" not in form.headers["content-security-policy"]  # none allowed
    assert "default-src 'none'" in form.headers["content-security-policy"]


async def test_signing_in_sets_a_strict_http_only_session_that_expires(held: Decider) -> None:
    console_of(held)
    async with browser(held.app) as client:
        form = await client.get("/console/login")
        login = form.headers["set-cookie"]
        assert "HttpOnly" in login
        assert "SameSite=strict" in login
        csrf = CSRF.search(form.text)
        assert csrf
        wrong = await client.post("/console/login", data={"csrf": csrf.group(1),
                                                          "key": "amk_not-a-key"})
        assert wrong.status_code == 401
        assert "not known" in wrong.text
        no_token = await client.post("/console/login", data={
            "key": KEYS[(Role.reviewer, "*")]})
        assert no_token.status_code == 303
        assert SESSION_COOKIE not in client.cookies  # a login without the form's token
        done = await client.post("/console/login", data={
            "csrf": csrf.group(1), "key": KEYS[(Role.reviewer, "*")]})
        assert done.status_code == 303
        cookie = done.headers["set-cookie"]
        assert cookie.startswith(f"{SESSION_COOKIE}=")
        assert "HttpOnly" in cookie
        assert "SameSite=strict" in cookie
        assert "Path=/console" in cookie
        assert "Max-Age=28800" in cookie
        assert KEYS[(Role.reviewer, "*")] not in cookie  # encrypted, not the key itself
        page = await client.get("/console/review")
        assert page.status_code == 200
        assert auth.subject(Role.reviewer) in page.text
        held.clock.advance(timedelta(hours=8, minutes=1))
        expired = await client.get("/console/review")
    assert (expired.status_code, expired.headers["location"]) == (303, "/console/login")


def test_a_session_opens_only_with_its_key_and_within_its_time() -> None:
    sessions = Sessions(b"one", timedelta(hours=1))
    sealed = sessions.seal("amk_x", T0)
    assert sessions.open(sealed, T0 + timedelta(minutes=59)) == "amk_x"
    assert sessions.open(sealed, T0 + timedelta(minutes=61)) is None
    assert Sessions(b"two", timedelta(hours=1)).open(sealed, T0) is None
    assert sessions.open(sealed[:-2] + "AA", T0) is None
    assert sessions.csrf_ok(sealed, sessions.csrf(sealed))
    assert not sessions.csrf_ok(sealed, Sessions(b"two", timedelta(hours=1)).csrf(sealed))
    assert not sessions.csrf_ok(None, "")


async def test_a_reviewer_approves_a_held_decision_from_the_queue(held: Decider) -> None:
    console_of(held)
    body = late("c-1")
    await held.decide(body)
    async with browser(held.app) as client:
        csrf = await signed_in(client)
        queue = await client.get("/console/review")
        assert did(body) in queue.text
        assert "late deliveries wait for a reviewer in these tests" in queue.text  # why held
        assert "14.90 EUR" in queue.text
        assert "Rules" in queue.text
        assert "matched" in queue.text.lower()
        forged = await client.post(f"/console/review/{did(body)}/approve",
                                   data={"reason": "ok", "csrf": "0" * 64})
        assert forged.status_code == 403
        stored = await held.store.get(did(body))
        assert stored is not None
        assert stored.status is DecisionStatus.held
        done = await client.post(f"/console/review/{did(body)}/approve",
                                 data={"reason": "checked the order", "csrf": csrf})
        assert (done.status_code, done.headers["location"]) == (
            303, "/console/review?notice=approved")
        after = await client.get(done.headers["location"])
    approved = await held.store.get(did(body))
    assert approved is not None
    assert approved.status is DecisionStatus.approved
    assert approved.review is not None
    assert approved.review.reviewer == auth.subject(Role.reviewer)
    assert "Approved: its remedies go out." in after.text
    assert "Nothing is held for review." in after.text
    assert [e.action for e in held.audit.of(did(body))] == ["approve"]


async def test_above_the_four_eyes_limit_the_page_asks_for_a_second_reviewer() -> None:
    decider = build(HOLD_LATE, four_eyes_above=Decimal("10.00"))
    console_of(decider)
    body = late("c-4")
    await decider.decide(body)
    async with browser(decider.app) as client:
        csrf = await signed_in(client)
        queue = await client.get("/console/review")
        assert "0 of 2 (four eyes: two different reviewers)" in queue.text
        done = await client.post(f"/console/review/{did(body)}/approve",
                                 data={"reason": "looks right", "csrf": csrf})
        assert done.headers["location"] == "/console/review?notice=approval_recorded"
        again = await client.get("/console/review")
    assert "1 of 2" in again.text
    assert "You approved it already" in again.text


async def test_a_viewer_sees_the_queue_but_may_not_approve(held: Decider) -> None:
    console_of(held)
    body = late("c-2")
    await held.decide(body)
    async with browser(held.app) as client:
        csrf = await signed_in(client, Role.viewer)
        queue = await client.get("/console/review")
        assert did(body) in queue.text
        assert "/approve" not in queue.text  # no form
        refused = await client.post(f"/console/review/{did(body)}/approve",
                                    data={"reason": "ok", "csrf": csrf})
    assert refused.status_code == 403
    assert "needs the role reviewer" in refused.text
    stored = await held.store.get(did(body))
    assert stored is not None
    assert stored.status is DecisionStatus.held


async def test_an_operator_of_one_tenant_sees_and_acts_on_that_tenant_alone(
        held: Decider) -> None:
    console_of(held)
    ours, theirs = late("c-a", tenant="shop-a"), late("c-b", tenant="shop-b")
    await held.decide(ours, theirs)
    async with browser(held.app) as client:
        csrf = await signed_in(client, Role.reviewer, "shop-a")
        queue = await client.get("/console/review")
        assert did(ours) in queue.text
        assert did(theirs) not in queue.text
        refused = await client.post(f"/console/review/{did(theirs)}/approve",
                                    data={"reason": "ok", "csrf": csrf})
        budget = await client.get("/console/budget")
    assert refused.status_code == 403
    assert budget.status_code == 403
    assert "every tenant" in budget.text


async def test_signing_out_ends_the_session(held: Decider) -> None:
    console_of(held)
    async with browser(held.app) as client:
        csrf = await signed_in(client)
        out = await client.post("/console/logout", data={"csrf": csrf})
        assert out.headers["location"] == "/console/login?notice=signed_out"
        page = await client.get("/console/review")
    assert page.status_code == 303
    assert SESSION_COOKIE not in client.cookies


CASE = {
    "customer_id": "c-9", "points_balance": 200,
    "incidents": [{"incident_id": "i-1", "type": "delivery_delayed", "detection": "proactive",
                   "occurred_at": "2026-11-23T10:00:00+00:00", "summary": "late",
                   "order_id": "o-9"},
                  {"incident_id": "i-2", "type": "item_missing", "detection": "proactive",
                   "occurred_at": "2026-11-20T10:00:00+00:00", "summary": "missing",
                   "order_id": "o-8"}],
    "decisions": [{"decision_id": "d-1", "status": "approved",
                   "decided_at": "2026-11-23T10:01:00+00:00", "explanation": "sorry",
                   "total_value": {"amount": "10.00", "currency": "EUR"}},
                  {"decision_id": "d-2", "status": "approved",
                   "decided_at": "2026-11-20T10:01:00+00:00", "explanation": "sorry too",
                   "total_value": {"amount": "5.00", "currency": "EUR"}}],
    "actions": [{"idempotency_key": "d-1:1", "decision_id": "d-1", "kind": "voucher",
                 "status": "succeeded", "value": {"amount": "10.00", "currency": "EUR"},
                 "completed_at": "2026-11-23T10:01:02+00:00", "detail": "AMD-1"}],
    "vouchers": [],
    "messages": [{"idempotency_key": "d-1:0", "decision_id": "d-1", "channel": "email",
                  "locale": "en", "subject": "We're sorry", "created_at":
                  "2026-11-23T10:01:01+00:00", "status": "sent"}],
}


def test_a_case_timeline_is_in_time_order_and_an_order_keeps_its_own() -> None:
    everything = timeline(CASE)
    assert [r["what"] for r in everything] == [
        "incident", "decision", "incident", "decision", "message", "effect"]
    only = timeline(CASE, "o-9")
    assert [r["ref"] for r in only] == ["i-1", "d-1", "d-1:0", "d-1:1"]


async def test_a_case_is_found_by_order_and_read_with_the_operators_credential(
        held: Decider) -> None:
    await held.decide(late("c-9"))  # order o-c-9
    cases = console_of(held, cases=FakeCases({"c-9": CASE}))
    async with browser(held.app) as client:
        await signed_in(client, Role.viewer)
        by_order = await client.get("/console/cases", params={"order": "o-c-9"})
        nothing = await client.get("/console/cases", params={"order": "o-none"})
    assert by_order.status_code == 200
    assert "Customer c-9" in by_order.text
    assert cases.asked == [("c-9", KEYS[(Role.viewer, "*")])]
    assert "Nothing recorded for that order." in nothing.text


async def test_dead_letters_by_service_and_reason_shown_and_redriven(held: Decider) -> None:
    desk = FakeDesk([letter("dl-1"), letter("dl-2", "intake", "processing_failed")])
    console_of(held, desk=desk)
    async with browser(held.app) as client:
        csrf = await signed_in(client, Role.admin)
        listed = await client.get("/console/dead-letters")
        shown = await client.get("/console/dead-letters/dl-1")
        sent = await client.post("/console/dead-letters/dl-1/redrive",
                                 data={"csrf": csrf, "why": "fixed the parser"})
        missing = await client.get("/console/dead-letters/dl-9")
    assert "processing_failed" in listed.text
    assert "dl-2" in listed.text
    assert "{&#34;not&#34;: &#34;a decision&#34;}" in shown.text  # the payload, escaped
    assert sent.headers["location"] == "/console/dead-letters?notice=redriven"
    assert desk.sent == ["dl-1"]
    assert [e.action for e in held.audit.of("deadletter: dl-1")] == ["redrive"]
    assert missing.status_code == 404


async def test_a_support_agent_reads_dead_letters_but_may_not_redrive(held: Decider) -> None:
    desk = FakeDesk([letter("dl-1")])
    console_of(held, desk=desk)
    async with browser(held.app) as client:
        csrf = await signed_in(client, Role.support)
        shown = await client.get("/console/dead-letters/dl-1")
        refused = await client.post("/console/dead-letters/dl-1/redrive",
                                    data={"csrf": csrf, "why": "x"})
    assert "A redrive needs the role admin." in shown.text
    assert refused.status_code == 403
    assert desk.sent == []


async def test_the_budget_page_keeps_reserved_released_and_restitution_apart(
        held: Decider) -> None:
    console_of(held)
    body = late("c-5")
    await held.decide(body)
    async with browser(held.app) as client:
        csrf = await signed_in(client)
        await client.post(f"/console/review/{did(body)}/approve",
                          data={"reason": "ok", "csrf": csrf})
        day = held.clock().date()
        limit = held.service.limit
        await held.budget.release(review_key(did(body)), "failed", type(limit).of("4.90", "EUR"),
                                  held.clock())
        page = await client.get("/console/budget")
    moves = await held.budget.movements(day, "EUR")
    assert [m.amount.amount for m in moves] == [Decimal("14.90"), Decimal("-4.90")]
    assert isinstance(moves[0], BudgetMovement)
    assert page.status_code == 200
    text = page.text
    assert "14.90 EUR" in text  # reserved
    assert "4.90 EUR" in text  # released
    assert "10.00 EUR" in text  # spent
    assert "Restitution" in text
    assert "<meter" in text


async def test_outages_group_their_customers_or_say_none(held: Decider) -> None:
    console_of(held)
    async with browser(held.app) as client:
        await signed_in(client, Role.viewer)
        none = await client.get("/console/outages")
        await held.decide(*[incident("service_outage", customer_id=f"c-o{n}", at=T0,
                                     fact=f"out-1-{n}", outage_id="out-1", order_id=None,
                                     outage_minutes=90) for n in range(3)])
        some = await client.get("/console/outages")
    assert "No outage in progress" in none.text
    assert "out-1" in some.text
    assert re.search(r'<td class="num">3</td>', some.text), some.text



async def test_the_outages_page_shows_each_outage_s_cost_preview(held: Decider) -> None:
    console_of(held)
    tiers = {"standard": 30, "gold": 10}
    async with browser(held.app) as client:
        await signed_in(client, Role.viewer)
        await held.decide(*[incident("service_outage", customer_id=f"c-o{n}", at=T0,
                                     fact="out-7", outage_id="out-7", order_id=None,
                                     outage_affected=40, outage_tiers=tiers)
                            for n in range(3)])
        page = await client.get("/console/outages")
    assert "Cost previews" in page.text
    # the default policy: 5.00 EUR per customer covers 100 points (1.00 EUR) for all 40
    assert re.search(r"<td class=\"num\">40 \(standard 30, gold 10\)</td>", page.text)
    assert "points to 40 (40.00 EUR)" in page.text
    assert "200.00 EUR" in page.text  # the outage budget
