"""Decision's HTTP API: the review queue, customers' choices and today's budget."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Path, Query
from pydantic import BaseModel, Field

from schemas.decision import Decision
from services.common.mongo import stored
from services.decision.adapters.mongo import DecisionStore
from services.decision.service import (
    DecisionConflictError,
    DecisionNotFoundError,
    DecisionService,
)

DecisionId = Annotated[str, Path(min_length=1, max_length=200)]


class Verdict(BaseModel):
    reviewer: str = Field(min_length=1, max_length=200, description="who decided")
    reason: str = Field(min_length=1, max_length=1000, description="why, for the record")


class ChoiceRequest(BaseModel):
    option: int = Field(ge=0, description="the index of the chosen option")


class HeldDecision(BaseModel):
    decision_id: str
    customer_id: str
    incident_type: str
    value: str
    currency: str
    review_reason: str | None
    decided_at: str
    explanation: str


class Budget(BaseModel):
    day: str
    limit: str
    spent: str
    remaining: str
    currency: str


def _held(doc: dict[str, Any]) -> HeldDecision:
    decision = stored(doc["decision"])
    return HeldDecision(decision_id=doc["_id"], customer_id=doc["customer_id"],
                        incident_type=doc["type"], value=doc["value"],
                        currency=doc["currency"], review_reason=decision.get("review_reason"),
                        decided_at=doc["decided_at"].isoformat(),
                        explanation=decision["explanation"])


def router(service: DecisionService, store: DecisionStore) -> APIRouter:
    api = APIRouter(prefix="/v1", tags=["decision"])

    async def settle(call: Any) -> Decision:
        try:
            result: Decision = await call
        except DecisionNotFoundError as exc:
            raise HTTPException(404, detail=str(exc)) from None
        except DecisionConflictError as exc:
            raise HTTPException(409, detail=str(exc)) from None
        return result

    @api.get("/review", summary="Decisions held for review, oldest first")
    async def held(limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> list[HeldDecision]:
        return [_held(doc) for doc in await store.held(limit)]

    @api.get("/decisions/{decision_id}", summary="A decision as it stands now")
    async def get_decision(decision_id: DecisionId) -> Decision:
        doc = await store.get(decision_id)
        if doc is None:
            raise HTTPException(404, detail=f"no decision {decision_id}")
        return Decision.model_validate(stored(doc["decision"]))

    @api.post("/review/{decision_id}/approve", summary="Approve a held decision")
    async def approve(decision_id: DecisionId, verdict: Verdict) -> Decision:
        return await settle(service.review(decision_id, "approved", verdict.reviewer,
                                           verdict.reason))

    @api.post("/review/{decision_id}/reject",
              summary="Reject a held decision: only the apology is sent")
    async def reject(decision_id: DecisionId, verdict: Verdict) -> Decision:
        return await settle(service.review(decision_id, "rejected", verdict.reviewer,
                                           verdict.reason))

    @api.post("/offers/{decision_id}/choice", summary="Record the customer's choice")
    async def choose(decision_id: DecisionId, choice: ChoiceRequest) -> Decision:
        return await settle(service.choose(decision_id, choice.option, by="customer"))

    @api.post("/offers/apply-defaults",
              summary="Settle the offers whose deadline passed with their default")
    async def apply_defaults() -> dict[str, int]:
        return {"settled": await service.apply_due_defaults()}

    @api.get("/budget", summary="Today's budget")
    async def budget() -> Budget:
        now = service.clock()
        state = await service.budget.state(now.date(), service.limit)
        return Budget(day=state.day.isoformat(), limit=format(state.limit.amount, "f"),
                      spent=format(state.spent.amount, "f"),
                      remaining=format(state.remaining.amount, "f"),
                      currency=state.limit.currency)

    return api
