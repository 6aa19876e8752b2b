"""What the fulfilment tests with refunds share: a small policy that refunds a double charge
and gives points, and the 20.00 EUR double charge it is tried on."""

from __future__ import annotations

from typing import Any

from schemas.common import Money
from services.decision.domain.policy import Policy, parse_policy
from tests.factories import incident

PAID = Money.of("20.00", "EUR")

_RULES = """
version: {version}
currency: EUR
values: {{point: "0.01"}}
guards: {{incident_cap: 100, customer_cap: 100, daily_budget: 1000}}
rules:
  - id: refund-the-charge
    when: {{type: [double_charge]}}
    grant:
      - refund: {{fixed: 20}}
      - points: 100
"""


def refund_policy(version: str, more_rules: str = "") -> Policy:
    """The policy under `version`; `more_rules` are YAML list items appended to its rules."""
    return parse_policy(_RULES.format(version=version) + more_rules)


def double_charge(customer_id: str, order_id: str) -> dict[str, Any]:
    return incident("double_charge", customer_id=customer_id, fact=order_id,
                    charged_amount={"amount": "20.00", "currency": "EUR"},
                    order_value={"amount": "20.00", "currency": "EUR"})
