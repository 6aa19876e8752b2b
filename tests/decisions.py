"""Decisions as the decision service publishes them, built for fulfilment's tests at every
layer (the plan's unit tests, the component harness, the stores' round trips)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from schemas.common import Money
from schemas.decision import (
    Action,
    Choice,
    Decision,
    DecisionStatus,
    Offer,
    OfferOption,
    RemedyKind,
    Review,
    action_key,
    decision_id,
)
from schemas.incident import Incident
from tests.factories import incident

T0 = datetime(2026, 11, 23, 12, tzinfo=UTC)


def eur(amount: str) -> Money:
    return Money.of(amount, "EUR")


def made_incident(kind: str = "double_charge", *, customer_id: str = "c-1",
                  locale: str = "en", paid: str | None = "20.00", tenant: str | None = None,
                  email: str | None = None, preferred: str = "email", at: datetime = T0,
                  **fields: Any) -> Incident:
    data = incident(kind, customer_id=customer_id, at=at, fact=f"o-{customer_id}", **fields)
    data["customer"]["locale"] = locale
    if email is not None:
        data["customer"]["contact"]["email"] = email or None
    data["customer"]["contact"]["preferred_channel"] = preferred
    if paid is not None:
        data["charged_amount"] = data["order_value"] = {"amount": paid, "currency": "EUR"}
    if tenant is not None:
        data["tenant"] = tenant
    return Incident.model_validate(data)


def grant(kind: RemedyKind, **fields: Any) -> dict[str, Any]:
    """One remedy of a decision (its position and key are given by `decided`)."""
    return {"kind": kind, **fields}


APOLOGY = grant(RemedyKind.apology)
CREDIT = grant(RemedyKind.store_credit, amount=eur("10.00"), value=eur("10.00"))
# How each locale names store credit of an amount (`{}`), in the apology.
STORE_CREDIT_WORDS = {"en": "store credit of {}", "ru": "{} на ваш счёт в магазине",
                      "ro": "credit de {} în contul dumneavoastră"}


def _actions(did: str, grants: Sequence[dict[str, Any]], start: int,
             restitution: Sequence[int] = ()) -> list[Action]:
    actions = []
    for position, given in enumerate(grants, start=start):
        value = given.get("value") or given.get("amount") or eur("0")
        actions.append(Action(position=position, idempotency_key=action_key(did, position),
                              value=value, restitution=position in restitution,
                              rule_id=given.get("rule_id", "rule"),
                              **{k: v for k, v in given.items()
                                 if k not in {"value", "rule_id"}}))
    return actions


def decided(made: Incident, *grants: dict[str, Any], restitution: Sequence[int] = (),
            **fields: Any) -> Decision:
    """The decision on `made` granting `grants` in order (the positions in `restitution`
    are restitution)."""
    did = decision_id(made.incident_id)
    actions = _actions(did, grants, 0, restitution)
    total = sum((a.value.amount for a in actions), start=eur("0").amount)
    values: dict[str, Any] = {
        "decision_id": did, "incident": made, "policy_version": "component-test",
        "decided_at": T0 + timedelta(minutes=1), "status": DecisionStatus.approved,
        "actions": actions, "total_value": eur(str(total)), "goodwill_value": eur(str(total)),
        "explanation": "granted by the component tests' policy"}
    return Decision.model_validate(values | fields)


def offered(decision: Decision, *options: Sequence[dict[str, Any]], default: int = 0,
            ) -> Decision:
    """`decision` offering a choice between these options (each a list of grants), its
    actions numbered after the decision's own."""
    start = len(decision.actions)
    made: list[OfferOption] = []
    for i, grants in enumerate(options):
        made.append(OfferOption(label=f"option {i}",
                                actions=_actions(decision.decision_id, grants, start)))
        start += len(grants)
    offer = Offer(offer_id=f"{decision.decision_id}:offer", options=made,
                  default_option=default, deadline=T0 + timedelta(days=3))
    return decision.model_copy(update={"offer": offer,
                                       "status": DecisionStatus.awaiting_choice})


def chosen(decision: Decision, option: int,
           by: Literal["customer", "default", "support"] = "customer") -> Decision:
    """The next revision: the customer's choice, whose actions join the decision's."""
    assert decision.offer is not None
    picked = decision.offer.options[option]
    return decision.model_copy(update={
        "revision": decision.revision + 1, "status": DecisionStatus.approved,
        "actions": [*decision.actions, *picked.actions],
        "choice": Choice(option=option, label=picked.label, by=by,
                         at=T0 + timedelta(hours=1))})


def approved(decision: Decision) -> Decision:
    """The next revision of a held decision: a reviewer approved it."""
    return decision.model_copy(update={
        "revision": decision.revision + 1, "status": DecisionStatus.approved,
        "review": Review(verdict="approved", reviewer="reviewer-1", reason="checked",
                         at=T0 + timedelta(hours=2))})
