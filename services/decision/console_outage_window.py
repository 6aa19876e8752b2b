"""The console's page of one outage's abort window (ADR 0015): when its remedies go out, how
far fulfilment has issued them, and an admin's abort or change while the window is open
(CSRF-checked forms, audited like the API's commands)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from decimal import Decimal, InvalidOperation
from typing import Annotated, Any
from urllib.parse import quote

import httpx
from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import HTMLResponse, Response

from services.common.access import Role
from services.decision.console import (
    PREFIX,
    SESSION_COOKIE,
    Console,
    Refused,
    Signed,
    _see,
)
from services.decision.domain.lifecycle import DecisionRefusedError
from services.decision.domain.outage_window import ABORT, Change
from services.decision.outages import amend_outage, outage_decisions

OutageId = Annotated[str, Path(min_length=1, max_length=200)]
Text = Annotated[str | None, Query(max_length=200)]


async def _progress(console: Console, outage_id: str, credential: str) -> dict[str, Any] | None:
    """Fulfilment's progress of the outage, with the operator's own credential; None when
    fulfilment does not answer (the page still shows the window)."""
    settings = console.service.settings
    try:
        async with httpx.AsyncClient(base_url=settings.fulfilment_url,
                                     timeout=settings.fulfilment_timeout_s) as client:
            answer = await client.get(f"/v1/outages/{quote(outage_id, safe='')}/progress",
                                      headers={"Authorization": f"Bearer {credential}"})
    except httpx.HTTPError:
        return None
    found: dict[str, Any] | None = answer.json() if answer.status_code == 200 else None
    return found


async def window_page(console: Console, me: Signed, outage_id: str, credential: str,
                      notice: str | None) -> HTMLResponse:
    service = console.service
    decisions = await outage_decisions(service, outage_id,
                                       console.access.tenants(me.principal))
    ends = min((d.hold.until for d in decisions if d.hold is not None), default=None)
    now = service.clock()
    margin = service.settings.outage_abort_margin_s
    is_open = ends is not None and (ends - now).total_seconds() > margin
    return console.page(
        "console_outage_window.html.j2", me, outage_id=outage_id, decisions=len(decisions),
        ends=ends.isoformat(timespec="seconds") if ends else None, is_open=is_open,
        left=int((ends - now).total_seconds()) if ends and is_open else 0,
        aborted=sum(1 for d in decisions if d.amended and d.amended.kind == "aborted"),
        changed=sum(1 for d in decisions if d.amended and d.amended.kind == "changed"),
        progress=await _progress(console, outage_id, credential),
        can_amend=me.principal.has(Role.admin), notice=notice)


def _change(form: dict[str, str]) -> Change:
    try:
        points = int(form["points"]) if form.get("points") else None
        amount = Decimal(form["amount"]) if form.get("amount") else None
    except (ValueError, InvalidOperation):
        raise Refused(422, "Change refused", "Points must be a whole number and the amount "
                      "a number.") from None
    if (points is not None and points < 0) or (amount is not None and amount < 0):
        raise Refused(422, "Change refused", "Points and amounts cannot be negative.")
    try:
        return Change(points=points, amount=amount,
                      apology_only=form.get("apology_only") == "on")
    except DecisionRefusedError as exc:
        raise Refused(422, "Change refused", exc.detail) from None


def router(console: Console) -> APIRouter:
    api = APIRouter(prefix="/outages", include_in_schema=False)  # under the console's

    async def guarded(request: Request, run: Callable[[], Awaitable[Response]]) -> Response:
        return await console.guarded("outage", request, run)

    @api.get("/{outage_id}")
    async def window(request: Request, outage_id: OutageId, notice: Text = None) -> Response:
        async def run() -> Response:
            me = await console.signed(request)
            credential = console.sessions.open(request.cookies.get(SESSION_COOKIE),
                                               console.service.clock())
            assert credential is not None  # `signed` opened it
            return await window_page(console, me, outage_id, credential, notice)
        return await guarded(request, run)

    @api.post("/{outage_id}/{what}")
    async def amend(request: Request, outage_id: OutageId,
                    what: Annotated[str, Path(pattern="^(abort|change)$")]) -> Response:
        async def run() -> Response:
            me, form = await console.posted(request, Role.admin)
            reason = form.get("reason", "").strip()
            if not reason:
                raise Refused(422, "Reason needed", "Say why, for the record.")
            change = ABORT if what == "abort" else _change(form)
            try:
                done = await amend_outage(
                    console.service, outage_id, change,
                    kind="aborted" if what == "abort" else "changed", by=me.principal,
                    reason=reason[:1000], tenants=console.access.tenants(me.principal))
            except DecisionRefusedError as exc:
                raise Refused(exc.status, "Too late" if exc.check == "window" else "Refused",
                              exc.detail) from None
            return _see(f"{PREFIX}/outages/{quote(outage_id, safe='')}",
                        notice=f"{what}:{done.revised}")
        return await guarded(request, run)

    return api
