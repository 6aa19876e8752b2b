"""An outage's cost preview (pure): from the first of its incidents decision sees, which carry
the outage's size per tier, what the policy gives its customers, kind by kind, against the
outage's budget and the day's. Each tier is priced as one customer of it with no history
would be decided (the shares of `outages.py` included), times the tier's count."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from schemas.common import CustomerSnapshot, Money, Tier
from schemas.decision import Action, RemedyKind
from schemas.incident import Incident
from schemas.outage import OutageCostPreview, RemedyCost, preview_id
from services.decision.domain.engine import decide, outage_share_of
from services.decision.domain.history import ZERO, CustomerHistory
from services.decision.domain.policy import Policy
from services.decision.domain.remedies import cent


def cost_preview(incident: Incident, policy: Policy, now: datetime, *,
                 daily_limit: Decimal, daily_remaining: Decimal) -> OutageCostPreview | None:
    """The preview of `incident`'s outage, None when no outage budget pays for it."""
    share = outage_share_of(incident, policy)
    if share is None:
        return None
    currency = policy.currency
    customers: dict[RemedyKind, int] = {}
    values: dict[RemedyKind, Decimal] = {}
    for tier, count in share.counts.items():
        if not count:
            continue
        someone = incident.model_copy(update={"customer": CustomerSnapshot(
            id=f"outage-{tier.value}", tier=tier)})
        decision = decide(someone, CustomerHistory(), policy, now)
        actions: list[Action] = list(decision.actions)
        if decision.offer is not None:  # what the customer gets without choosing
            actions += decision.offer.options[decision.offer.default_option].actions
        for action in actions:
            customers[action.kind] = customers.get(action.kind, 0) + count
            values[action.kind] = values.get(action.kind, ZERO) + action.value.amount * count

    unit = cent(currency)

    def money(amount: Decimal) -> Money:
        return Money(amount=amount.quantize(unit), currency=currency)

    return OutageCostPreview(
        preview_id=preview_id(share.outage_id), outage_id=share.outage_id,
        tenant=incident.tenant, policy_version=policy.version, previewed_at=now,
        outage_minutes=incident.outage_minutes, affected_customers=share.affected,
        tiers={t: n for t, n in share.counts.items() if n},
        remedies=[RemedyCost(kind=kind, customers=customers[kind], value=money(values[kind]))
                  for kind in customers],
        full_cost=money(share.full), total=money(share.granted),
        outage_budget=money(share.budget),
        partial="even" if share.partial == "even" else "tiers",
        shares={t: money(share.shares[t]) for t in Tier if share.counts[t]},
        scaled=share.scaled, daily_budget=money(daily_limit),
        daily_remaining=money(daily_remaining))
