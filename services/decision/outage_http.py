"""Decision's HTTP API for an outage's abort window (ADR 0015): where it stands, and an
admin's abort or change of its remedies while the window is open (refused after it, 409
`window`). Audited as one entry per command."""

# No `from __future__ import annotations`: FastAPI must see the dependency aliases made in
# `router()` as objects.

from datetime import datetime
from decimal import Decimal
from typing import Annotated

from fastapi import APIRouter, Depends, Path
from pydantic import BaseModel, Field

from services.common.access import Authenticator, Principal, Role, operator
from services.decision.domain.outage_window import ABORT, Change
from services.decision.outages import Amended, amend_outage, outage_decisions
from services.decision.service import DecisionService

OutageId = Annotated[str, Path(min_length=1, max_length=200)]


class AbortRequest(BaseModel):
    reason: str = Field(min_length=1, max_length=1000, description="why, for the record")


class ChangeRequest(BaseModel):
    reason: str = Field(min_length=1, max_length=1000, description="why, for the record")
    points: int | None = Field(default=None, ge=0,
                               description="points per customer (never more than decided)")
    amount: Decimal | None = Field(
        default=None, ge=0, description="the amount per customer of a voucher, store credit or "
        "gift, in the policy's currency (never more than decided)")
    apology_only: bool = False


class AmendResult(BaseModel):
    outage_id: str
    revised: int = Field(description="decisions whose remedies were aborted or changed")
    unchanged: int = Field(description="decisions amended so already")
    held_for_review: int = Field(description="decisions a reviewer still has to decide")
    released: str = Field(description="goodwill given back to the day's budget")
    currency: str

    @classmethod
    def of(cls, done: Amended) -> "AmendResult":
        return cls(outage_id=done.outage_id, revised=done.revised, unchanged=done.unchanged,
                   held_for_review=done.held_for_review,
                   released=format(done.released.amount, "f"),
                   currency=done.released.currency)


class Window(BaseModel):
    outage_id: str
    decisions: int = Field(description="the outage's decisions in or near their window")
    window_ends: datetime | None = Field(description="when the first remedies go out")
    open: bool = Field(description="whether an abort or change is still accepted")
    aborted: int
    changed: int


def router(service: DecisionService, access: Authenticator) -> APIRouter:
    api = APIRouter(prefix="/v1/outages", tags=["outages"])
    Viewer = Annotated[Principal, Depends(operator(access, Role.viewer))]  # noqa: N806
    Admin = Annotated[Principal, Depends(operator(access, Role.admin))]  # noqa: N806

    @api.get("/{outage_id}/window", summary="An outage's abort window: when its remedies go "
             "out, and whether it may still be aborted or changed")
    async def window(outage_id: OutageId, principal: Viewer) -> Window:
        decisions = await outage_decisions(service, outage_id, access.tenants(principal))
        ends = [d.hold.until for d in decisions if d.hold is not None]
        first = min(ends, default=None)
        margin = service.settings.outage_abort_margin_s
        return Window(
            outage_id=outage_id, decisions=len(decisions), window_ends=first,
            open=first is not None
            and (first - service.clock()).total_seconds() > margin,
            aborted=sum(1 for d in decisions if d.amended and d.amended.kind == "aborted"),
            changed=sum(1 for d in decisions if d.amended and d.amended.kind == "changed"))

    @api.post("/{outage_id}/abort", summary="Abort an outage's remedies inside its window: "
              "only the apology goes out (admin)")
    async def abort(outage_id: OutageId, body: AbortRequest, principal: Admin) -> AmendResult:
        return AmendResult.of(await amend_outage(
            service, outage_id, ABORT, kind="aborted", by=principal, reason=body.reason,
            tenants=access.tenants(principal)))

    @api.post("/{outage_id}/change", summary="Change an outage's remedies inside its window: "
              "fewer points, a lower amount, or the apology only (admin)")
    async def change(outage_id: OutageId, body: ChangeRequest,
                     principal: Admin) -> AmendResult:
        wanted = Change(points=body.points, amount=body.amount,
                        apology_only=body.apology_only)
        return AmendResult.of(await amend_outage(
            service, outage_id, wanted, kind="changed", by=principal, reason=body.reason,
            tenants=access.tenants(principal)))

    return api
