"""Status posts for people (ADR 0016): the console page listing the drafts, those awaiting
approval first, with an approve button for reviewers (the draft is published as written:
no editing, so what was approved is what the public reads), and the API `amends status-post`
calls. Every approval is audited."""

# No `from __future__ import annotations`: FastAPI reads the routes' annotations as objects.

from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel

from schemas.audit import AuditAction
from schemas.status_post import StatusPost
from services.common.access import Authenticator, Principal, Role, operator
from services.decision.console import PREFIX, Console, Refused, Signed, _see
from services.decision.service import Audit
from services.decision.status_posts import (
    StatusPostDesk,
    StatusPostNotFoundError,
    StatusPostSupersededError,
)

NOTICE = "Approved: the post goes to the status page."

PostId = Annotated[str, Path(min_length=1, max_length=200)]


class StatusPostList(BaseModel):
    posts: list[StatusPost]


async def _approve(desk: StatusPostDesk, audit: Audit | None, who: Principal,
                   post_id: str) -> StatusPost:
    before = await desk.store.get(post_id)
    post = await desk.approve(post_id, who)
    if audit is not None and before is not None and before.approved_by is None:
        await audit.record(who, AuditAction.approve_status_post, f"status_post:{post_id}",
                           reason="published as drafted", tenant=post.tenant,
                           before={"approved_by": None},
                           after={"approved_by": post.approved_by})
    return post


def console_router(console: Console, desk: StatusPostDesk,
                   audit: Audit | None) -> APIRouter:
    api = APIRouter(prefix=PREFIX, include_in_schema=False)

    guarded = console.guarded

    async def page(me: Signed, notice: str | None) -> Response:
        posts = await desk.listed(me.principal)
        held = await desk.awaiting(me.principal)
        rest = [p for p in posts if p not in held]
        rows: list[dict[str, Any]] = [{"post": p, "held": p in held} for p in held + rest]
        return console.page("console_status_posts.html.j2", me, rows=rows,
                            notice_text=NOTICE if notice == "approved" else None,
                            can_approve=me.principal.has(Role.reviewer))

    @api.get("/status-posts")
    async def status_posts(request: Request,
                           notice: Annotated[str | None, Query(max_length=20)] = None
                           ) -> Response:
        async def run() -> Response:
            return await page(await console.signed(request), notice)
        return await guarded("status_posts", request, run)

    @api.post("/status-posts/{post_id}/approve")
    async def approve(request: Request, post_id: PostId) -> Response:
        async def run() -> Response:
            me, _ = await console.posted(request, Role.reviewer)
            try:
                await _approve(desk, audit, me.principal, post_id)
            except StatusPostNotFoundError:
                raise Refused(404, "No such status post", f"No status post {post_id}."
                              ) from None
            except StatusPostSupersededError:
                raise Refused(409, "Superseded", "The outage is resolved: approve its "
                              "resolved post, which says all of it.") from None
            return _see(f"{PREFIX}/status-posts", notice="approved")
        return await guarded("approve_status_post", request, run)

    return api


def api_router(desk: StatusPostDesk, access: Authenticator, audit: Audit | None) -> APIRouter:
    api = APIRouter(prefix="/v1", tags=["status posts"])
    viewer = Annotated[Principal, Depends(operator(access, Role.viewer))]
    reviewer = Annotated[Principal, Depends(operator(access, Role.reviewer))]

    @api.get("/status-posts", summary="Status posts, newest first (those of your tenants)")
    async def listed(principal: viewer,
                     awaiting: Annotated[bool, Query(description="only those held for "
                                                     "approval")] = False) -> StatusPostList:
        posts = (await desk.awaiting(principal) if awaiting
                 else await desk.listed(principal))
        return StatusPostList(posts=posts)

    @api.post("/status-posts/{post_id}/approve",
              summary="Approve a held status post as drafted: it is published")
    async def approve(principal: reviewer, post_id: PostId) -> StatusPost:
        try:
            return await _approve(desk, audit, principal, post_id)
        except StatusPostNotFoundError:
            raise HTTPException(404, f"no status post {post_id}") from None
        except StatusPostSupersededError:
            raise HTTPException(409, "the outage is resolved: approve its resolved post"
                                ) from None

    return api
