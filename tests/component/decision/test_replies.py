"""The reply desk in memory, behind decision's API and console: a negative review's decision
drafts its public reply (as the app's consumer does: decide, then draft), support reads it in
its tenants only, a reviewer edits, approves and marks it posted through CSRF-checked forms,
the overdue one shows in the escalated queue, every step is audited, and no route anywhere
deletes or hides a review."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from schemas.audit import AuditAction
from services.common.access import Authenticator, Role
from services.decision import reply_http
from services.decision.console import create_console
from services.decision.replies import ReplyDesk, ReplyMetrics, sla_of
from tests import auth
from tests.component.decision.conftest import T0, Decider, build
from tests.component.decision.test_console import CSRF, browser, signed_in
from tests.factories import incident
from tests.fakes.decision import FakeReplies

pytestmark = pytest.mark.component


def poor_review(customer: str, tenant: str | None = None) -> dict[str, Any]:
    extra: dict[str, Any] = {"tenant": tenant} if tenant is not None else {}
    return incident("negative_review", customer_id=customer, at=T0, fact=f"r-{customer}",
                    rating=1, review_platform="trustpilot",
                    review_url=f"https://reviews.example/{customer}", **extra)


async def with_desk(decider: Decider, *reviews: dict[str, Any]) -> ReplyDesk:
    desk = ReplyDesk(store=FakeReplies(), decisions=decider.store,
                     sla=sla_of(decider.settings), clock=decider.clock,
                     metrics=ReplyMetrics(CollectorRegistry()), audit=decider.audit)
    console, routes, web = create_console(decider.service, Authenticator(decider.settings.auth),
                                          decider.settings, CollectorRegistry(),
                                          brand=decider.settings.brand)
    decider.app.include_router(routes)
    decider.app.include_router(web.static_router())
    reply_http.mount(decider.app, desk, Authenticator(decider.settings.auth), console)
    records = decider.records(reviews)
    await decider.service.handle_incidents(records)
    await desk.draft_for(records)
    return desk


@pytest.fixture
def decider() -> Decider:
    return build()


async def test_the_reply_and_the_private_remedy_come_from_one_decision(
        decider: Decider) -> None:
    desk = await with_desk(decider, poor_review("c-1"))
    [decision] = decider.store.all().values()
    assert [a.kind.value for a in decision.actions] == ["apology", "store_credit"]
    async with browser(decider.app) as client:
        listed = await client.get("/v1/replies", headers=auth.headers(Role.support))
    assert listed.status_code == 200, listed.text
    [reply] = listed.json()
    assert (reply["decision_id"], reply["state"], reply["queue"]) == (
        decision.decision_id, "drafted", "replies")
    assert reply["remedies"] == ["store_credit"]
    assert reply["text"].startswith("We're sorry.")
    assert (await desk.get(reply["reply_id"])).text == reply["text"]


async def test_readers_need_support_and_see_only_their_tenants(decider: Decider) -> None:
    await with_desk(decider, poor_review("c-a", "shop-a"), poor_review("c-b", "shop-b"))
    async with browser(decider.app) as client:
        viewer = await client.get("/v1/replies", headers=auth.headers(Role.viewer))
        shop_a = await client.get("/v1/replies", headers=auth.headers(Role.support, "shop-a"))
        [theirs] = (await client.get("/v1/replies", headers=auth.headers(
            Role.support, "shop-b"))).json()
        foreign = await client.get(f"/v1/replies/{theirs['reply_id']}",
                                   headers=auth.headers(Role.reviewer, "shop-a"))
        support_edit = await client.post(f"/v1/replies/{theirs['reply_id']}/edit",
                                         json={"text": "We're sorry."},
                                         headers=auth.headers(Role.support, "shop-b"))
    assert viewer.status_code == 403
    assert [r["customer_id"] for r in shop_a.json()] == ["c-a"]
    assert foreign.status_code == 403
    assert support_edit.status_code == 403


async def test_a_reviewer_edits_approves_and_posts_through_the_api(decider: Decider) -> None:
    await with_desk(decider, poor_review("c-1"))
    reviewer = auth.headers(Role.reviewer)
    async with browser(decider.app) as client:
        [reply] = (await client.get("/v1/replies", headers=reviewer)).json()
        rid = reply["reply_id"]
        early = await client.post(f"/v1/replies/{rid}/posted", headers=reviewer,
                                  json={"public_url": "https://reviews.example/c-1#r"})
        blame = await client.post(f"/v1/replies/{rid}/edit", headers=reviewer,
                                  json={"text": reply["text"] + " Our courier failed."})
        refused = await client.post(f"/v1/replies/{rid}/approve", headers=reviewer)
        await client.post(f"/v1/replies/{rid}/edit", headers=reviewer,
                          json={"text": reply["text"]})
        approved = await client.post(f"/v1/replies/{rid}/approve", headers=reviewer)
        decider.clock.advance(timedelta(hours=1))
        posted = await client.post(f"/v1/replies/{rid}/posted", headers=reviewer,
                                   json={"public_url": "https://reviews.example/c-1#r"})
        queue = (await client.get("/v1/replies?queue=all", headers=reviewer)).json()
        done = (await client.get("/v1/replies?queue=posted", headers=reviewer)).json()
    assert early.status_code == 409
    assert blame.status_code == 200  # an edit is a draft
    assert refused.status_code == 422
    assert "courier" in refused.json()["detail"]
    assert approved.json()["state"] == "approved"
    assert (posted.json()["state"], posted.json()["posted_by"]) == (
        "posted", auth.subject(Role.reviewer))
    assert queue == []
    assert [r["public_url"] for r in done] == ["https://reviews.example/c-1#r"]
    steps = sorted(e.action for e in decider.audit.of(rid))
    assert steps == sorted([AuditAction.reply_edit.value] * 2 + [
        AuditAction.reply_approve.value, AuditAction.reply_post.value])


async def test_the_console_shows_the_queues_and_takes_csrf_checked_steps(
        decider: Decider) -> None:
    desk = await with_desk(decider, poor_review("c-1"))
    [view] = await desk.listing(None, None)
    page_of = f"/console/replies/{view.reply.reply_id}"
    async with browser(decider.app) as client:
        csrf = await signed_in(client, Role.reviewer)
        queue = await client.get("/console/replies")
        page = await client.get(page_of)
        forged = await client.post(f"{page_of}/approved", data={"csrf": "not-the-token"})
        approved = await client.post(f"{page_of}/approved", data={"csrf": csrf})
        after = await client.get(approved.headers["location"])
        decider.clock.now = T0 + timedelta(hours=5)  # past the 4-hour target, unposted
        escalated = await client.get("/console/replies?tab=escalated")
        waiting = await client.get("/console/replies?tab=replies")
        posted = await client.post(f"{page_of}/posted", data={
            "csrf": csrf, "public_url": "https://reviews.example/c-1#reply"})
        done = await client.get("/console/replies?tab=posted")
    assert queue.status_code == 200
    assert "Review replies" in queue.text
    assert "customer c-1" in queue.text
    assert page.status_code == 200
    assert CSRF.search(page.text)
    assert "We&#39;re sorry." in page.text
    assert forged.status_code == 403
    assert approved.status_code == 303
    assert "Approved: post it" in after.text
    assert 'name="public_url"' in after.text
    assert "customer c-1" in escalated.text
    assert "(overdue)" in escalated.text
    assert "customer c-1" not in waiting.text
    assert posted.status_code == 303
    assert "https://reviews.example/c-1#reply" not in done.text  # the list links the reply
    assert "customer c-1" in done.text


async def test_support_reads_the_console_pages_but_takes_no_step(decider: Decider) -> None:
    desk = await with_desk(decider, poor_review("c-1"))
    [view] = await desk.listing(None, None)
    async with browser(decider.app) as client:
        csrf = await signed_in(client, Role.support)
        page = await client.get(f"/console/replies/{view.reply.reply_id}")
        step = await client.post(f"/console/replies/{view.reply.reply_id}/approved",
                                 data={"csrf": csrf})
    assert page.status_code == 200
    assert "<form method=\"post\" action=\"/console/replies" not in page.text
    assert step.status_code == 403


async def test_no_route_deletes_or_hides_a_review(decider: Decider) -> None:
    await with_desk(decider)
    for route in decider.app.routes:
        path = getattr(route, "path", "")
        methods: set[str] = getattr(route, "methods", None) or set()
        assert "DELETE" not in methods, path
        if "repl" in path:
            for word in ("delete", "remove", "hide", "takedown", "report"):
                assert word not in path.lower(), path
