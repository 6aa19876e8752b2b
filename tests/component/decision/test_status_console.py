"""Status posts for people, in memory: the console page lists a held draft in every locale with
an approve button for reviewers only; approving needs the session's CSRF token, releases the
post once and is audited; the API lists and approves as the CLI calls it."""

from __future__ import annotations

import asyncio

import pytest
from prometheus_client import CollectorRegistry
from typer.testing import CliRunner

from amends.cli import app as cli
from schemas.incident import Incident
from schemas.status_post import StatusPost
from services.common.access import Authenticator, Role
from services.decision import status_console
from services.decision.console import create_console
from services.decision.domain.policy import PublicPosts
from services.decision.status_posts import StatusPostDesk
from tests import auth
from tests.component.decision.conftest import DEFAULT, T0, Decider, build
from tests.component.decision.test_console import browser, signed_in
from tests.factories import incident
from tests.fakes.decision import FakeStatusPosts
from tests.servers import served

pytestmark = pytest.mark.component

HELD = DEFAULT.model_copy(update={"public": PublicPosts(approval=True)})


def with_desk(decider: Decider) -> StatusPostDesk:
    desk = StatusPostDesk(store=FakeStatusPosts(), publisher=decider.publisher, policy=HELD,
                          clock=decider.clock, topic="status-posts")
    access = Authenticator(decider.settings.auth)
    console, routes, web = create_console(decider.service, access, decider.settings,
                                          CollectorRegistry(), brand=decider.settings.brand)
    decider.app.include_router(routes)
    decider.app.include_router(web.static_router())
    decider.app.include_router(status_console.console_router(console, desk, decider.audit))
    decider.app.include_router(status_console.api_router(desk, access, decider.audit))
    return desk


async def drafted(desk: StatusPostDesk) -> StatusPost:
    body = incident("service_outage", fact="out-1", at=T0, order_id=None, outage_id="out-1",
                    outage_service="Checkout")
    [post] = await desk.when_decided([Incident.model_validate(body)])
    return post


async def test_a_reviewer_approves_a_held_post_from_the_console() -> None:
    decider = build(HELD)
    desk = with_desk(decider)
    post = await drafted(desk)
    async with browser(decider.app) as client:
        csrf = await signed_in(client, Role.reviewer)
        page = await client.get("/console/status-posts")
        assert page.status_code == 200
        assert "Awaiting approval" in page.text
        assert "Checkout is unavailable" in page.text
        assert "Checkout не работает" in page.text
        action = f"/console/status-posts/{post.post_id}/approve"
        assert action in page.text
        refused = await client.post(action, data={"csrf": "forged"})
        assert refused.status_code == 403
        assert decider.publisher.bodies("status-posts") == []
        done = await client.post(action, data={"csrf": csrf})
        assert done.status_code == 303
        again = await client.post(action, data={"csrf": csrf})
        assert again.status_code == 303
        after = await client.get("/console/status-posts?notice=approved")
    assert "the post goes to the status page" in after.text
    [released] = decider.publisher.bodies("status-posts")
    assert released["data"]["approved_by"] == auth.subject(Role.reviewer, "*")
    [entry] = [e for e in decider.audit.entries.values()
               if e.action == "approve_status_post"]
    assert entry.target == f"status_post:{post.post_id}"


async def test_a_viewer_sees_the_drafts_but_cannot_approve() -> None:
    decider = build(HELD)
    desk = with_desk(decider)
    post = await drafted(desk)
    async with browser(decider.app) as client:
        csrf = await signed_in(client, Role.viewer)
        page = await client.get("/console/status-posts")
        assert "Awaiting approval" in page.text
        assert f"/console/status-posts/{post.post_id}/approve" not in page.text
        refused = await client.post(f"/console/status-posts/{post.post_id}/approve",
                                    data={"csrf": csrf})
    assert refused.status_code == 403
    assert decider.publisher.bodies("status-posts") == []


async def test_the_api_lists_held_posts_and_a_reviewer_approves_one() -> None:
    decider = build(HELD)
    desk = with_desk(decider)
    post = await drafted(desk)
    async with browser(decider.app) as client:
        viewer, reviewer = auth.headers(Role.viewer, "*"), auth.headers(Role.reviewer, "*")
        listed = await client.get("/v1/status-posts?awaiting=true", headers=viewer)
        assert [p["post_id"] for p in listed.json()["posts"]] == [post.post_id]
        assert (await client.post(f"/v1/status-posts/{post.post_id}/approve",
                                  headers=viewer)).status_code == 403
        approved = await client.post(f"/v1/status-posts/{post.post_id}/approve",
                                     headers=reviewer)
        assert approved.status_code == 200
        assert approved.json()["approved_by"] == auth.subject(Role.reviewer, "*")
        missing = await client.post("/v1/status-posts/nope/approve", headers=reviewer)
        assert missing.status_code == 404
        assert (await client.get("/v1/status-posts?awaiting=true",
                                 headers=viewer)).json()["posts"] == []
    assert len(decider.publisher.bodies("status-posts")) == 1


def test_the_cli_lists_held_posts_and_approves_one() -> None:
    decider = build(HELD)
    desk = with_desk(decider)
    post = asyncio.run(drafted(desk))
    token = auth.headers(Role.reviewer, "*")["Authorization"].removeprefix("Bearer ")
    with served(decider.app, "decision") as url:
        env = {"AMENDS_TOKEN": token, "AMENDS_DECISION_URL": url}
        listed = CliRunner().invoke(cli, ["status-post", "list", "--awaiting"], env=env)
        approved = CliRunner().invoke(cli, ["status-post", "approve", post.post_id], env=env)
        after = CliRunner().invoke(cli, ["status-post", "list", "--awaiting"], env=env)
    assert listed.exit_code == 0, listed.output
    assert "1 status post(s)" in listed.output
    assert "awaiting approval" in listed.output
    assert approved.exit_code == 0, approved.output
    assert "approved" in approved.output
    assert "0 status post(s)" in after.output
    assert len(decider.publisher.bodies("status-posts")) == 1
