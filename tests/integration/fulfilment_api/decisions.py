"""Decisions as the decision service publishes them, for fulfilment's tests: a policy that
grants a voucher and offers a choice, and a manual voucher (a decision whose voucher action
no policy rule granted, its note the operator's reason)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from schemas.common import Money
from schemas.decision import (
    Action,
    Decision,
    DecisionMade,
    DecisionStatus,
    RemedyKind,
    action_key,
    decision_id,
)
from schemas.incident import Incident
from services.decision.domain.policy import Policy, parse_policy
from tests.factories import incident


def voucher_policy(version: str) -> Policy:
    """A long wait: 100 points and a 10.00 EUR voucher, and a choice of 15.00 EUR more in a
    voucher or 500 points (the points by default)."""
    return parse_policy(f"""
version: {version}
currency: EUR
values: {{point: "0.01"}}
guards:
  incident_cap: 100
  customer_cap: 200
  daily_budget: 1000
rules:
  - id: wait
    when: {{type: [support_wait_exceeded]}}
    because: for the wait
    grant:
      - points: 100
      - voucher: {{amount: 10, expires_days: 90}}
    offer:
      deadline_hours: 72
      default: 1
      options:
        - label: a 15.00 EUR voucher
          grant: [{{voucher: {{amount: 15, expires_days: 90}}}}]
        - label: 500 loyalty points
          grant: [{{points: 500}}]
""")


def waited(customer_id: str, fact: str, *, at: datetime, tenant: str | None = None,
           **fields: Any) -> dict[str, Any]:
    made = incident("support_wait_exceeded", customer_id=customer_id, detection="proactive",
                    fact=fact, wait_minutes=95, at=at, ticket_id=f"t-{fact}", **fields)
    if tenant is not None:
        made["tenant"] = tenant
    return made


def manual_voucher(customer_id: str, *, amount: str, reason: str, at: datetime,
                   tenant: str | None = None) -> tuple[str, bytes]:
    """The decision `POST /v1/manual-vouchers` publishes: one voucher action, with the reason."""
    made = Incident.model_validate(waited(customer_id, f"manual-{customer_id}", at=at,
                                          tenant=tenant))
    did = decision_id(made.incident_id)
    value = Money.of(amount, "EUR")
    action = Action(position=0, idempotency_key=action_key(did, 0), kind=RemedyKind.voucher,
                    amount=value, value=value, note=reason, expires_at=at + timedelta(days=90))
    decision = Decision(decision_id=did, incident=made, policy_version="manual",
                        decided_at=at, status=DecisionStatus.approved, actions=[action],
                        total_value=value, goodwill_value=value,
                        explanation=f"a manual voucher: {reason}")
    event = DecisionMade(id=did, source="amends/decision", time=at, subject=customer_id,
                         tenant=tenant, data=decision)
    return customer_id, event.model_dump_json().encode()
