"""The walking skeleton's policy: an apology and points by delay band and tier.

Replaced by the versioned YAML policy engine (`domain/`) when it lands.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from schemas.common import Money, Tier
from schemas.decision import Action, Decision, DecisionStatus, RemedyKind, action_key, decision_id
from schemas.incident import Incident

POLICY_VERSION = "skeleton-1"
POINT_VALUE = Decimal("0.01")
_BAND_POINTS = {"late": 100, "very_late": 300, "severely_late": 600, "lost": 1000}
_TIER_FACTOR: dict[Tier, Decimal] = {Tier.standard: Decimal(1), Tier.silver: Decimal("1.25"),
                                     Tier.gold: Decimal("1.5"), Tier.platinum: Decimal(2)}


def decide(incident: Incident, now: datetime, currency: str = "EUR") -> Decision:
    did = decision_id(incident.incident_id)
    points = int(_BAND_POINTS.get(incident.delay_band or "", 100)
                 * _TIER_FACTOR[incident.customer.tier])
    zero = Money(amount=Decimal("0.00"), currency=currency)
    value = Money(amount=(points * POINT_VALUE).quantize(Decimal("0.01")), currency=currency)
    actions = [
        Action(position=0, idempotency_key=action_key(did, 0), kind=RemedyKind.apology,
               value=zero, note="we are sorry"),
        Action(position=1, idempotency_key=action_key(did, 1), kind=RemedyKind.points,
               points=points, value=value, note=f"{points} points for the delay"),
    ]
    return Decision(
        decision_id=did, incident=incident, policy_version=POLICY_VERSION, decided_at=now,
        status=DecisionStatus.approved, actions=actions, total_value=value,
        explanation=(f"An apology and {points} loyalty points because the order arrived "
                     f"{incident.delay_minutes} minutes late ({incident.customer.tier} tier)."),
    )
