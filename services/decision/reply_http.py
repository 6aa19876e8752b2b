"""Decision's reply API (ADR 0017), what `amends replies` calls: the public replies to
negative reviews by queue, one reply, and a person's steps on it (edit, approve, mark
posted). Reading needs support, a step reviewer; a reply is acted on only by operators of
its tenant. There is no endpoint that deletes or hides a review."""

# No `from __future__ import annotations`: FastAPI reads the aliases made in `router()`.

from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, FastAPI, Path, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from services.common.access import Authenticator, Principal, Role, operator, problem
from services.decision.console import Console
from services.decision.domain.replies import (
    TEXT_MAX_CHARS,
    ReplyQueue,
    ReplyRefusedError,
    ReplyStepKind,
    ReplyView,
)
from services.decision.replies import ReplyDesk, ReplyNotFoundError
from services.decision.reply_console import reply_router

ReplyId = Annotated[str, Path(min_length=1, max_length=200)]


class ReplyOut(BaseModel):
    reply_id: str
    decision_id: str
    customer_id: str
    tenant: str | None
    platform: str
    review_url: str
    rating: int
    locale: str
    state: str
    queue: str
    overdue: bool
    breached: bool
    review_posted_at: datetime
    due_at: datetime
    limit_at: datetime
    text: str
    remedies: list[str]
    edits: int
    approved_by: str | None
    posted_by: str | None
    posted_at: datetime | None
    public_url: str | None


class EditRequest(BaseModel):
    text: str = Field(min_length=1, max_length=TEXT_MAX_CHARS)


class PostedRequest(BaseModel):
    public_url: str = Field(min_length=8, max_length=2048,
                            description="where the reply is public (http or https)")


def out(view: ReplyView) -> ReplyOut:
    r = view.reply
    return ReplyOut(reply_id=r.reply_id, decision_id=r.decision_id, customer_id=r.customer_id,
                    tenant=r.tenant, platform=r.platform, review_url=r.review_url,
                    rating=r.rating, locale=r.locale, state=view.state.value,
                    queue=view.queue.value, overdue=view.overdue, breached=view.breached,
                    review_posted_at=r.review_posted_at, due_at=view.due_at,
                    limit_at=view.limit_at, text=view.text, remedies=list(r.remedies),
                    edits=view.edits, approved_by=view.approved_by, posted_by=view.posted_by,
                    posted_at=view.posted_at, public_url=view.public_url)


def install_refusals(app: FastAPI) -> None:
    async def refused(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, ReplyRefusedError)
        return problem(exc.status, "reply_refused", exc.detail)

    async def missing(_: Request, exc: Exception) -> JSONResponse:
        return problem(404, "not_found", str(exc))

    app.add_exception_handler(ReplyRefusedError, refused)
    app.add_exception_handler(ReplyNotFoundError, missing)


def router(desk: ReplyDesk, access: Authenticator) -> APIRouter:
    api = APIRouter(prefix="/v1/replies", tags=["replies"])
    Support = Annotated[Principal, Depends(operator(access, Role.support))]  # noqa: N806
    Reviewer = Annotated[Principal, Depends(operator(access, Role.reviewer))]  # noqa: N806

    async def of_tenant(principal: Principal, reply_id: str) -> ReplyView:
        current = await desk.get(reply_id)
        access.require_tenant(principal, current.reply.tenant)
        return current

    @api.get("", summary="Public replies to negative reviews in the caller's tenants: a "
                         "queue's open ones oldest review first, or the posted ones")
    async def listing(principal: Support,
                      queue: Literal["all", "replies", "escalated", "posted"] = "all",
                      limit: Annotated[int, Query(ge=1, le=1000)] = 200) -> list[ReplyOut]:
        posted = queue == "posted"
        chosen = None if queue in {"all", "posted"} else ReplyQueue(queue)
        views = await desk.listing(access.tenants(principal), chosen, posted=posted,
                                   limit=limit)
        return [out(v) for v in views]

    @api.get("/{reply_id}", summary="One reply as it stands")
    async def one(reply_id: ReplyId, principal: Support) -> ReplyOut:
        return out(await of_tenant(principal, reply_id))

    @api.post("/{reply_id}/edit", summary="Save an edit of a reply not yet approved")
    async def edit(reply_id: ReplyId, body: EditRequest, principal: Reviewer) -> ReplyOut:
        return out(await desk.act(await of_tenant(principal, reply_id), ReplyStepKind.edited,
                                  principal, text=body.text))

    @api.post("/{reply_id}/approve", summary="Approve the reply's text as it stands (its tone "
                                             "is checked)")
    async def approve(reply_id: ReplyId, principal: Reviewer) -> ReplyOut:
        return out(await desk.act(await of_tenant(principal, reply_id),
                                  ReplyStepKind.approved, principal))

    @api.post("/{reply_id}/posted", summary="Mark an approved reply posted at its public "
                                            "address (records the time to reply)")
    async def posted(reply_id: ReplyId, body: PostedRequest, principal: Reviewer) -> ReplyOut:
        return out(await desk.act(await of_tenant(principal, reply_id), ReplyStepKind.posted,
                                  principal, public_url=body.public_url))

    return api


def mount(app: FastAPI, desk: ReplyDesk, access: Authenticator, console: Console) -> None:
    """The reply API and the console's reply pages on decision's app."""
    install_refusals(app)
    app.include_router(router(desk, access))
    app.include_router(reply_router(console, desk))
