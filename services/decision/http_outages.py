"""`GET /v1/outages/{outage_id}`: an outage's cost preview and what its budget has paid so far
(an operator of the outage's tenant, viewer and above).

No `from __future__ import annotations`: FastAPI must see the dependency alias made in
`install` as a type, not as a string it cannot resolve."""

from typing import Annotated

from fastapi import APIRouter, Depends, Path
from pydantic import BaseModel, Field

from schemas.common import Money
from schemas.outage import OutageCostPreview
from services.common.access import Authenticator, Principal, Role, operator
from services.decision.service import DecisionNotFoundError, DecisionService

OutageId = Annotated[str, Path(min_length=1, max_length=128)]


class OutageCost(BaseModel):
    preview: OutageCostPreview
    decisions_paid: int = Field(description="decisions its budget paid so far")
    spent: Money = Field(description="the goodwill they granted, booked in its ledger")
    left: Money = Field(description="what is left of the outage budget")


def install(api: APIRouter, service: DecisionService, access: Authenticator) -> None:
    """Add the outage routes to decision's API router."""
    Viewer = Annotated[Principal, Depends(operator(access, Role.viewer))]  # noqa: N806

    @api.get("/outages/{outage_id}", summary="An outage's cost preview and its budget's use")
    async def get_outage(outage_id: OutageId, principal: Viewer) -> OutageCost:
        preview = await service.outage_preview(outage_id)
        if preview is None:
            raise DecisionNotFoundError(f"no cost preview of outage {outage_id}")
        access.require_tenant(principal, preview.tenant)
        paid, spent = await service.store.outages.booked(outage_id)
        currency = preview.outage_budget.currency
        return OutageCost(preview=preview, decisions_paid=paid,
                          spent=Money(amount=spent, currency=currency),
                          left=Money(amount=preview.outage_budget.amount - spent,
                                     currency=currency))
