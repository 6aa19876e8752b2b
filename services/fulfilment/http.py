"""Fulfilment's HTTP API: vouchers (look up, redeem), a customer's case, for operators with a
role in the record's tenant; and the customer's own page of one decision, reached only with
the signed link their messages carry.

Manual vouchers are not issued here: they are decisions (decision's `POST
/v1/manual-vouchers`), so they pass the policy's caps, the budget and review like any other.
"""

from collections.abc import Callable, Collection
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Header, HTTPException, Path, Query, Request, Response
from pydantic import AwareDatetime, BaseModel, Field

from schemas.common import DecimalText, Money
from schemas.decision import Action, Decision, DecisionStatus, RemedyKind
from services.common.access import AccessDeniedError, Principal, Role, operator
from services.common.app import Runtime
from services.common.clock import Clock
from services.common.web import wants_html
from services.fulfilment.domain.effects import Effect, EffectState
from services.fulfilment.domain.plan import POINTS
from services.fulfilment.page import CustomerPages
from services.fulfilment.ports import Stores
from services.fulfilment.service import LINK_MARK
from services.fulfilment.vouchers import Redemption, Voucher, VoucherError, VoucherStatus

CustomerId = Annotated[str, Path(min_length=1, max_length=128)]
DecisionId = Annotated[str, Path(min_length=1, max_length=128)]
Code = Annotated[str, Path(max_length=64)]
_STATUS = {"not_found": 404, "redeemed": 409, "expired": 410, "currency": 422, "value": 422}
# Where a message's link had its token, as operators see it: the token is a bearer secret
# (whoever holds it sees the customer's page) and is never stored (see `LINK_MARK`).
LINK_PLACEHOLDER = "<customer link>"


class RedeemRequest(BaseModel):
    order_id: str = Field(min_length=1, max_length=128)
    order_total: Money | None = None


class Case(BaseModel):
    customer_id: str
    points_balance: int
    incidents: list[dict[str, Any]]
    decisions: list[dict[str, Any]]
    actions: list[dict[str, Any]]
    vouchers: list[Voucher]
    messages: list[dict[str, Any]]


RemedyState = Literal["done", "under_way", "failed", "awaiting_review"]


class CustomerRemedy(BaseModel):
    """One remedy as the customer sees it: what it is and how it stands."""

    kind: RemedyKind
    amount: Money | None = None
    percent: DecimalText | None = None
    points: int | None = None
    quantity: int | None = None
    expires_at: AwareDatetime | None = None
    state: RemedyState | None = Field(default=None,
                                      description="none for an option not chosen yet")
    voucher_code: str | None = None
    voucher_status: VoucherStatus | None = None


class CustomerOption(BaseModel):
    label: str
    remedies: list[CustomerRemedy]


class CustomerOffer(BaseModel):
    options: list[CustomerOption]
    default_option: int
    deadline: AwareDatetime


class CustomerChoice(BaseModel):
    option: int
    label: str
    by: Literal["customer", "default", "support"]
    at: AwareDatetime


class CustomerPage(BaseModel):
    """What the customer got for one decision, as it stands; no contact details."""

    decision_id: str
    status: DecisionStatus
    incident_type: str
    order_id: str | None
    decided_at: AwareDatetime
    remedies: list[CustomerRemedy]
    offer: CustomerOffer | None = None
    choice: CustomerChoice | None = None
    link_expires_at: AwareDatetime


def _refused(exc: VoucherError) -> HTTPException:
    return HTTPException(_STATUS.get(exc.problem, 400),
                         detail={"problem": exc.problem, "message": str(exc)})


def router(stores_of: Callable[[], Stores], runtime: Runtime,
           pages: CustomerPages | None = None) -> APIRouter:
    """The API over the stores `stores_of()` gives (chosen when the app starts); with
    `pages`, the customer's page answers a browser in HTML and takes its forms."""
    api = APIRouter(prefix="/v1")
    access, clock = runtime.access, runtime.clock
    Viewer = Annotated[Principal, Depends(operator(access, Role.viewer))]  # noqa: N806
    Support = Annotated[Principal, Depends(operator(access, Role.support))]  # noqa: N806

    async def voucher_of(principal: Principal, code: str) -> Voucher:
        voucher = await stores_of().vouchers.get(code, clock())
        if voucher is None:
            raise HTTPException(404, detail={"problem": "not_found",
                                             "message": "no such voucher"})
        access.require_tenant(principal, voucher.tenant)
        return voucher

    @api.get("/vouchers/{code}", summary="Look up a voucher", tags=["vouchers"])
    async def get_voucher(principal: Viewer, code: Code) -> Voucher:
        return await voucher_of(principal, code)

    @api.post("/vouchers/{code}/redeem", summary="Redeem a voucher (once)", tags=["vouchers"])
    async def redeem_voucher(principal: Support, code: Code,
                             request: RedeemRequest) -> Redemption:
        await voucher_of(principal, code)
        try:
            return await stores_of().vouchers.redeem(code, request.order_id,
                                                     request.order_total, clock())
        except VoucherError as exc:
            raise _refused(exc) from None

    @api.get("/customers/{customer_id}/case", summary="Everything done for a customer",
             tags=["case"])
    async def case(principal: Viewer, customer_id: CustomerId) -> Case:
        return await customer_case(stores_of(), customer_id, clock,
                                   access.tenants(principal))

    # A browser gets the page as HTML (a response FastAPI passes on as it is); the model is
    # what API clients get.
    @api.get("/customer/decisions/{decision_id}", tags=["customer"], response_model=CustomerPage,
             summary="The customer's page of one decision (by the link in their messages)")
    async def customer_page(
            *, decision_id: DecisionId, request: Request, response: Response,
            token: Annotated[str | None, Query(max_length=4096, description=(
                "the signed token of the customer's link"))] = None,
            x_customer_token: Annotated[str | None, Header(max_length=4096)] = None,
            notice: Annotated[str | None, Query(max_length=32, include_in_schema=False)
                              ] = None,
    ) -> Any:
        if pages is not None and wants_html(request):
            # The same link opens the page in a browser (ADR 0011); API clients get JSON.
            return await pages.show(request, decision_id, x_customer_token or token, notice)
        # The token is a bearer secret in a URL: not cached, not passed on as a referrer.
        response.headers["Cache-Control"] = "no-store"
        response.headers["Referrer-Policy"] = "no-referrer"
        given = x_customer_token or token
        if not given:
            raise AccessDeniedError(401, "link", "this page needs the link from your message")
        grant = runtime.links.verify(given, decision_id, clock())
        decision = await stores_of().decisions.newest(decision_id)
        if decision is None:
            raise HTTPException(404, detail={"problem": "not_found",
                                             "message": "nothing recorded for this link yet"})
        if decision.incident.customer.id != grant.customer_id:
            raise AccessDeniedError(403, "link_customer",
                                    "the link was issued to another customer")
        return await customer_view(stores_of(), decision, clock(), grant.expires_at)

    if pages is not None:
        @api.post("/customer/decisions/{decision_id}/choice", include_in_schema=False)
        async def customer_choice_form(decision_id: DecisionId, request: Request) -> Response:
            """The page's choice form (urlencoded, the token a hidden field)."""
            return await pages.post_choice(request, decision_id)

        @api.post("/customer/decisions/{decision_id}/feedback", include_in_schema=False)
        async def customer_feedback_form(decision_id: DecisionId, request: Request
                                         ) -> Response:
            """The page's rating form."""
            return await pages.post_feedback(request, decision_id)

    return api


# What an operator sees of a message: not its delivery's bookkeeping, nor the HTML twin of
# the text.
CASE_MESSAGE_FIELDS = ("customer_id", "tenant", "decision_id", "position", "kind", "revision",
                       "created_at", "incident_type", "channel", "locale", "subject", "text",
                       "status", "detail", "settled_at", "sent_at", "message_id")


def _message_view(message: Effect) -> dict[str, Any]:
    """A message as an operator sees it, its link's place marked."""
    view: dict[str, Any] = {"idempotency_key": message.key}
    for name in CASE_MESSAGE_FIELDS:
        value = getattr(message, name)
        if value is None and name != "tenant":
            continue
        view[name] = (value.replace(LINK_MARK, LINK_PLACEHOLDER) if isinstance(value, str)
                      else value)
    return view


async def customer_case(stores: Stores, customer_id: str, clock: Clock,
                        tenants: Collection[str | None] | None = None) -> Case:
    """The customer's case; with `tenants`, only the records of those tenants."""
    now = clock()

    def seen(tenant: str | None) -> bool:
        return tenants is None or tenant in tenants

    decisions = sorted((d for d in await stores.decisions.of_customer(customer_id)
                        if seen(d.incident.tenant)), key=lambda d: d.decided_at, reverse=True)
    bodies = [d.model_dump(mode="json") for d in decisions]
    outcomes = sorted((k.outcome for k in await stores.outcomes.of_customer(customer_id)
                       if seen(k.tenant)),
                      key=lambda o: (o.completed_at, o.position), reverse=True)
    messages = sorted((m for m in await stores.messages.of_customer(customer_id)
                       if seen(m.tenant)), key=lambda m: m.created_at, reverse=True)
    points = sum(int(e.quantity) for e in await stores.ledger.of_customer(customer_id, now)
                 if e.unit == POINTS and seen(e.tenant))
    return Case(
        customer_id=customer_id,
        points_balance=points,
        incidents=[body["incident"] for body in bodies],
        decisions=[{k: v for k, v in body.items() if k != "incident"} for body in bodies],
        actions=[o.model_dump(mode="json") for o in outcomes],
        vouchers=[v for v in await stores.vouchers.for_customer(customer_id, now)
                  if seen(v.tenant)],
        messages=[_message_view(m) for m in messages],
    )


async def customer_view(stores: Stores, decision: Decision, now: datetime,
                        link_expires_at: datetime) -> CustomerPage:
    keys = [a.idempotency_key for a in decision.actions]
    outcomes = await stores.outcomes.outcomes_of(keys)
    refunds = {e.key: e.status for e in await stores.refunds.get(keys)} if any(
        a.kind is RemedyKind.refund for a in decision.actions) else {}
    issued = {v.action_key: v for v in await stores.vouchers.for_customer(
        decision.incident.customer.id, now) if v.action_key in keys}

    def state(action: Action) -> RemedyState:
        if decision.status is DecisionStatus.held:
            return "awaiting_review"
        outcome = outcomes.get(action.idempotency_key)
        if outcome is not None:
            return "done" if outcome.status.value == "succeeded" else "failed"
        if refunds.get(action.idempotency_key) == EffectState.failed.value:
            return "failed"
        return "under_way"

    def remedy(action: Action, given: bool = True) -> CustomerRemedy:
        voucher = issued.get(action.idempotency_key) if given else None
        return CustomerRemedy(
            kind=action.kind, amount=action.amount, percent=action.percent,
            points=action.points, quantity=action.quantity, expires_at=action.expires_at,
            state=state(action) if given else None,
            voucher_code=voucher.code if voucher else None,
            voucher_status=voucher.status if voucher else None)

    offer = None
    if decision.offer is not None and decision.choice is None:
        offer = CustomerOffer(
            options=[CustomerOption(label=o.label,
                                    remedies=[remedy(a, given=False) for a in o.actions])
                     for o in decision.offer.options],
            default_option=decision.offer.default_option, deadline=decision.offer.deadline)
    choice = decision.choice
    incident = decision.incident
    return CustomerPage(
        decision_id=decision.decision_id, status=decision.status,
        incident_type=incident.type.value, order_id=incident.order_id,
        decided_at=decision.decided_at,
        remedies=[remedy(a) for a in sorted(decision.actions, key=lambda a: a.position)
                  if a.kind is not RemedyKind.apology],
        offer=offer,
        choice=CustomerChoice(option=choice.option, label=choice.label, by=choice.by,
                              at=choice.at) if choice is not None else None,
        link_expires_at=link_expires_at)
