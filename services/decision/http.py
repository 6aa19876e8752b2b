"""Decision's HTTP API: the review queue, choices (the customer's own, through their signed
link, or support's on their behalf), manual vouchers, today's budget and who is calling.

Every endpoint but the customer's needs an operator (`services.common.access`); a decision
is acted on only by operators of its tenant. Refusals are problem bodies naming the check."""

# No `from __future__ import annotations`: FastAPI must see the dependency aliases made in
# `router()` as objects, which it cannot resolve from strings naming a function's locals.

import logging
from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any, Literal, Self

from fastapi import APIRouter, Depends, FastAPI, Header, Path, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field, field_validator, model_validator

from schemas.common import Contact, CustomerSnapshot, Money, money_problem
from schemas.decision import Decision
from schemas.incident import IncidentType
from services.common.access import (
    EVERY_TENANT,
    AccessDeniedError,
    Authenticator,
    Principal,
    Role,
    operator,
    problem,
)
from services.common.links import CustomerLinks
from services.decision import http_outages
from services.decision.adapters.mongo import STORE_ERRORS, without_documents
from services.decision.domain.lifecycle import DecisionRefusedError
from services.decision.service import DecisionNotFoundError, DecisionService, ManualVoucher

log = logging.getLogger(__name__)

DecisionId = Annotated[str, Path(min_length=1, max_length=200)]


class Verdict(BaseModel):
    """A reviewer's verdict; the reviewer is whoever is authenticated, never a field."""

    reason: str = Field(min_length=1, max_length=1000, description="why, for the record")


class ChoiceRequest(BaseModel):
    option: int = Field(ge=0, description="the index of the chosen option")


class CustomerChoiceRequest(BaseModel):
    option: int = Field(ge=0, description="the index of the chosen option")
    token: str | None = Field(default=None, min_length=1, max_length=4096,
                              description="the signed token of the customer's link (or send "
                                          "it in the X-Customer-Token header)")


class CustomerChoice(BaseModel):
    """What the customer sees of their settled offer (none of their details)."""

    decision_id: str
    status: str
    option: int
    label: str


class ManualVoucherRequest(BaseModel):
    """A voucher granted by hand. Exactly one of `amount` and `percent`."""

    request_id: str = Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9._:-]+$",
                            description="the caller's id of this request: a retry with the "
                                        "same id returns the same decision")
    tenant: str | None = Field(default=None, min_length=1, max_length=128,
                               description="only for operators of every tenant; others act "
                                           "in their own")
    customer: CustomerSnapshot = Field(description="at least id and locale; the tier if "
                                                   "known, contact channels to tell them")
    incident_type: IncidentType = Field(description="the failure the customer suffered, as "
                                                    "support learned of it")
    amount: Money | None = None
    percent: Decimal | None = Field(default=None, gt=0, le=100, decimal_places=2)
    expires_in_days: int = Field(default=90, ge=1, le=3650)
    reason: str = Field(min_length=3, max_length=500, description="why, for the record")

    @field_validator("amount")
    @classmethod
    def _amount(cls, amount: Money | None) -> Money | None:
        if amount is not None:
            if amount.amount <= 0:
                raise ValueError("the amount must be positive")
            wrong = money_problem(amount)
            if wrong:
                raise ValueError(wrong)
        return amount

    @model_validator(mode="after")
    def _one_kind(self) -> Self:
        if (self.amount is None) == (self.percent is None):
            raise ValueError("give exactly one of amount and percent")
        return self


class HeldDecision(BaseModel):
    decision_id: str
    customer_id: str
    incident_type: str
    value: str
    currency: str
    review_reason: str | None
    decided_at: str
    explanation: str
    tenant: str | None = None
    approvals: list[str] = Field(default_factory=list,
                                 description="who approved it so far (four-eyes)")
    approvals_needed: int = 1


class Budget(BaseModel):
    day: str
    limit: str
    spent: str
    remaining: str
    currency: str


class WhoAmI(BaseModel):
    subject: str
    roles: list[str]
    tenant: str
    via: Literal["jwt", "api_key", "cli"]


def install_refusals(app: FastAPI) -> None:
    """The service's refusals as problem bodies; a database refusal or a validation error
    inside a request logged without the documents and values its text carries."""

    async def refused(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, DecisionRefusedError)
        return problem(exc.status, exc.check, exc.detail)

    async def missing(_: Request, exc: Exception) -> JSONResponse:
        return problem(404, "not_found", str(exc))

    async def failed(request: Request, exc: Exception) -> JSONResponse:
        log.error("%s %s failed: %s", request.method, request.url.path,
                  without_documents(exc))
        return problem(500, "internal", "the request could not be carried out")

    app.add_exception_handler(DecisionRefusedError, refused)
    app.add_exception_handler(DecisionNotFoundError, missing)
    for error in STORE_ERRORS:
        app.add_exception_handler(error, failed)


def router(service: DecisionService, access: Authenticator, links: CustomerLinks
           ) -> APIRouter:
    api = APIRouter(prefix="/v1", tags=["decision"])
    Viewer = Annotated[Principal, Depends(operator(access, Role.viewer))]  # noqa: N806
    Support = Annotated[Principal, Depends(operator(access, Role.support))]  # noqa: N806
    Reviewer = Annotated[Principal, Depends(operator(access, Role.reviewer))]  # noqa: N806
    Admin = Annotated[Principal, Depends(operator(access, Role.admin))]  # noqa: N806

    async def of_tenant(principal: Principal, decision_id: str) -> Decision:
        """The decision, if `principal` acts in its tenant (else 403 tenant)."""
        decision = await service.current(decision_id)
        access.require_tenant(principal, decision.incident.tenant)
        return decision

    def held(decision: Decision) -> HeldDecision:
        return HeldDecision(decision_id=decision.decision_id,
                            customer_id=decision.incident.customer.id,
                            incident_type=decision.incident.type.value,
                            value=format(decision.total_value.amount, "f"),
                            currency=decision.total_value.currency,
                            review_reason=decision.review_reason,
                            decided_at=decision.decided_at.isoformat(),
                            explanation=decision.explanation, tenant=decision.incident.tenant,
                            approvals=[a.reviewer for a in decision.approvals],
                            approvals_needed=service.approvals_needed(decision))

    @api.get("/whoami", summary="Who the credentials sent belong to")
    async def whoami(principal: Viewer) -> WhoAmI:
        return WhoAmI(subject=principal.subject,
                      roles=sorted((r.name for r in principal.roles),
                                   key=lambda n: Role[n]),
                      tenant=principal.tenant, via=principal.via)

    @api.get("/review", summary="Decisions held for review in the caller's tenants, oldest "
                                "first")
    async def review_queue(principal: Viewer,
                           limit: Annotated[int, Query(ge=1, le=1000)] = 100
                           ) -> list[HeldDecision]:
        return [held(d) for d in await service.store.held(limit, access.tenants(principal))]

    @api.get("/decisions/{decision_id}",
             summary="A decision as it stands now (the customer's contact details only for "
                     "support and above)")
    async def get_decision(decision_id: DecisionId, principal: Viewer) -> Decision:
        decision = await of_tenant(principal, decision_id)
        if principal.has(Role.support):
            return decision
        # A viewer has no use for how to reach the customer.
        customer = decision.incident.customer
        hidden = customer.model_copy(update={"contact": Contact(
            preferred_channel=customer.contact.preferred_channel)})
        return decision.model_copy(update={"incident": decision.incident.model_copy(
            update={"customer": hidden})})

    @api.post("/review/{decision_id}/approve",
              summary="Approve a held decision as the authenticated reviewer (above the "
                      "four-eyes limit, two different reviewers must)")
    async def approve(decision_id: DecisionId, verdict: Verdict,
                      principal: Reviewer) -> Decision:
        return await service.review(decision_id, "approved", principal, verdict.reason,
                                    loaded=await of_tenant(principal, decision_id))

    @api.post("/review/{decision_id}/reject",
              summary="Reject a held decision: only the apology is sent")
    async def reject(decision_id: DecisionId, verdict: Verdict,
                     principal: Reviewer) -> Decision:
        return await service.review(decision_id, "rejected", principal, verdict.reason,
                                    loaded=await of_tenant(principal, decision_id))

    @api.post("/offers/{decision_id}/choice",
              summary="Record a choice on the customer's behalf (support)")
    async def choose(decision_id: DecisionId, choice: ChoiceRequest,
                     principal: Support) -> Decision:
        return await service.choose(decision_id, choice.option, by="support",
                                    operator=principal,
                                    loaded=await of_tenant(principal, decision_id))

    @api.post("/customer/decisions/{decision_id}/choice",
              summary="The customer's own choice, with the token of their signed link")
    async def customer_choose(
            decision_id: DecisionId, choice: CustomerChoiceRequest,
            x_customer_token: Annotated[str | None, Header(max_length=4096)] = None
    ) -> CustomerChoice:
        token = choice.token or x_customer_token
        if not token:
            raise AccessDeniedError(401, "link", "the link's token is missing")
        now: datetime = service.clock()
        grant = links.verify(token, decision_id, now)
        decision = await service.customer_choice(decision_id, choice.option,
                                                 grant.customer_id)
        assert decision.choice is not None
        return CustomerChoice(decision_id=decision.decision_id,
                              status=decision.status.value, option=decision.choice.option,
                              label=decision.choice.label)

    @api.post("/manual-vouchers", status_code=201,
              summary="Grant a voucher by hand: a decision under the policy's caps and the "
                      "budget (held for another reviewer above the limit)")
    async def manual_voucher(body: ManualVoucherRequest, principal: Support) -> Decision:
        tenant = principal.tenant
        if tenant == EVERY_TENANT:
            tenant = body.tenant or access.settings.default_tenant
        elif body.tenant is not None:
            access.require_tenant(principal, body.tenant)
        value = service.manual_value(ManualVoucher(
            request_id=body.request_id, tenant=None, customer=body.customer,
            incident_type=body.incident_type, amount=body.amount, percent=body.percent,
            expires_in_days=body.expires_in_days, reason=body.reason))
        problems = _voucher_problems(body, value, service)
        if problems:
            raise RequestValidationError(problems)
        return await service.manual_voucher(ManualVoucher(
            request_id=body.request_id, tenant=tenant, customer=body.customer,
            incident_type=body.incident_type, amount=body.amount, percent=body.percent,
            expires_in_days=body.expires_in_days, reason=body.reason), principal)

    @api.post("/offers/apply-defaults",
              summary="Settle the offers whose deadline passed with their default")
    async def apply_defaults(principal: Admin) -> dict[str, int]:
        return {"settled": await service.apply_defaults_now(principal)}

    @api.get("/budget", summary="Today's budget (shared by every tenant)")
    async def budget(principal: Viewer) -> Budget:
        if principal.tenant != EVERY_TENANT:
            raise AccessDeniedError(403, "tenant", "the budget is shared by every tenant: "
                                    "only an operator of every tenant may read it")
        now = service.clock()
        state = await service.budget.state(now.date(), service.limit)
        return Budget(day=state.day.isoformat(), limit=format(state.limit.amount, "f"),
                      spent=format(state.spent.amount, "f"),
                      remaining=format(state.remaining.amount, "f"),
                      currency=state.limit.currency)

    http_outages.install(api, service, access)
    return api


def _voucher_problems(body: ManualVoucherRequest, value: Decimal,
                      service: DecisionService) -> list[dict[str, Any]]:
    settings, currency = service.settings, service.policy.currency
    found: list[dict[str, Any]] = []
    if body.amount is not None and body.amount.currency != currency:
        found.append({"loc": ["body", "amount", "currency"], "type": "currency",
                      "msg": f"the policy's currency is {currency}"})
    if value > settings.manual_voucher_max:
        field = "amount" if body.amount is not None else "percent"
        found.append({"loc": ["body", field], "type": "maximum",
                      "msg": f"a manual voucher may be worth at most "
                             f"{settings.manual_voucher_max} {currency}; this one {value}"})
    if body.expires_in_days > settings.manual_voucher_max_days:
        found.append({"loc": ["body", "expires_in_days"], "type": "maximum",
                      "msg": f"at most {settings.manual_voucher_max_days} days"})
    return found

