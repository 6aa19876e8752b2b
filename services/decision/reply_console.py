"""The console's reply pages (ADR 0017): the public replies to negative reviews, in two
queues (replies, and the escalated ones past the SLA's target) and the posted ones; one
reply's page to edit its text, approve it and mark it posted with its public address.
Reading needs the role support (the review's address leads to the customer); every step
needs reviewer, goes through a CSRF-checked form and is audited. There is no form that
deletes, hides or reports a review: a reply answers it, and the review stays."""

# No `from __future__ import annotations`: FastAPI reads the routes' annotations as objects.

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import HTMLResponse, Response

from services.common.access import AccessDeniedError, Role
from services.decision.console import PREFIX, Console, Refused, Signed, _see
from services.decision.domain.replies import (
    ReplyQueue,
    ReplyRefusedError,
    ReplyStepKind,
    ReplyView,
)
from services.decision.replies import ReplyDesk, ReplyNotFoundError

# What a step's redirect says on the reply's page (fixed texts: nothing from the URL shown).
DONE = {"edited": "Your edit is saved; approve it when it reads right.",
        "approved": "Approved: post it on the review's page, then mark it posted here.",
        "posted": "Marked posted. The review stays as the customer wrote it."}
TABS = ("replies", "escalated", "posted")


async def _reply_of(console: Console, desk: ReplyDesk, me: Signed, reply_id: str
                    ) -> ReplyView:
    try:
        current = await desk.get(reply_id)
    except ReplyNotFoundError:
        raise Refused(404, "No such reply", f"No reply {reply_id}.") from None
    try:
        console.access.require_tenant(me.principal, current.reply.tenant)
    except AccessDeniedError as exc:
        raise Refused(403, "Not allowed", exc.detail) from None
    return current


def reply_router(console: Console, desk: ReplyDesk) -> APIRouter:
    api = APIRouter(prefix=f"{PREFIX}/replies", include_in_schema=False)
    ReplyId = Annotated[str, Path(min_length=1, max_length=200)]  # noqa: N806
    Tab = Annotated[str, Query(pattern="^(replies|escalated|posted)$")]  # noqa: N806
    Done = Annotated[str | None, Query(max_length=40)]  # noqa: N806

    guarded = console.guarded

    def page(me: Signed, template: str, **context: Any) -> HTMLResponse:
        return console.page(template, me, sla=desk.sla, tabs=TABS, done_texts=DONE,
                            can_act=me.principal.has(Role.reviewer), **context)

    @api.get("")
    async def queue(request: Request, tab: Tab = "replies") -> Response:
        async def run() -> Response:
            me = await console.signed(request, Role.support)
            tenants = console.access.tenants(me.principal)
            posted = tab == "posted"
            views = await desk.listing(tenants, None if posted else ReplyQueue(tab),
                                       posted=posted)
            counts = {q.value: len(await desk.listing(tenants, q)) for q in ReplyQueue}
            return page(me, "console_replies.html.j2", tab=tab, views=views, counts=counts,
                        now=console.service.clock())
        return await guarded("replies", request, run)

    @api.get("/{reply_id}")
    async def one(request: Request, reply_id: ReplyId, done: Done = None) -> Response:
        async def run() -> Response:
            me = await console.signed(request, Role.support)
            current = await _reply_of(console, desk, me, reply_id)
            return page(me, "console_reply.html.j2", view=current, done=done,
                        now=console.service.clock())
        return await guarded("reply", request, run)

    @api.post("/{reply_id}/{step}")
    async def act(request: Request, reply_id: ReplyId,
                  step: Annotated[str, Path(pattern="^(edited|approved|posted)$")]
                  ) -> Response:
        async def run() -> Response:
            me, form = await console.posted(request, Role.reviewer)
            current = await _reply_of(console, desk, me, reply_id)
            try:
                await desk.act(current, ReplyStepKind(step), me.principal,
                               text=form.get("text"), public_url=form.get("public_url"))
            except ReplyRefusedError as exc:
                raise Refused(exc.status, "Not done", exc.detail) from None
            return _see(f"{PREFIX}/replies/{reply_id}", done=step)
        return await guarded(f"reply_{step}", request, run)

    return api
