"""Fulfilment's view of an outage's progress (ADR 0015): how many of its decisions hold their
remedies for the abort window, how many were released or cancelled. In memory, per
instance: with several instances each answers for its own partitions."""

# No `from __future__ import annotations`: FastAPI must see the dependency alias as an object.

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Path
from pydantic import BaseModel, Field

from services.common.access import Authenticator, Principal, Role, operator
from services.fulfilment.holding import Held


class Progress(BaseModel):
    outage_id: str
    decisions: int = Field(description="decisions whose remedies were held, so far")
    held: int = Field(description="waiting for the window to end")
    released: int = Field(description="their remedies issued (at the providers' pace)")
    cancelled: int = Field(description="aborted or changed to nothing inside the window")
    window_ends: datetime | None = Field(description="when the next held remedies go out")


def router(held: Held, access: Authenticator) -> APIRouter:
    api = APIRouter(prefix="/v1/outages", tags=["outages"])
    Viewer = Annotated[Principal, Depends(operator(access, Role.viewer))]  # noqa: N806

    @api.get("/{outage_id}/progress", summary="How an outage's held remedies stand on this "
             "instance")
    async def progress(outage_id: Annotated[str, Path(min_length=1, max_length=200)],
                       principal: Viewer) -> Progress:
        del principal  # counts only: no customer's data
        return Progress(outage_id=outage_id, window_ends=held.ends(outage_id),
                        **held.progress(outage_id))

    return api
