"""An outage's budget, shared among its customers without coordination (ADR 0014).

Intake puts the outage's size on every incident it fans out (`outage_affected`, and
`outage_tiers`: how many customers of each tier). From those alone, every decider computes
the same shares: the most one customer of each tier may get from the outage budget, chosen
so that the shares of all affected customers together never pass the budget. Nobody is cut
for having been reached late.

What a customer of a tier "needs" is what the policy grants one of them with no history
(`engine.outage_need`); conditions beyond the tier (a repeat failure, the lifetime value)
can only be cut to the tier's share, never raise it. An outage's grant comes in stages: what
it grants while still going on (no duration) is shared first, and what its duration adds is
shared from what that leaves, so every customer ends at the same share whether the
resolution came before or after the fan-out, and a top-up never pushes the total over."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import ROUND_DOWN, Decimal

from schemas.common import Tier
from schemas.incident import Incident
from services.decision.domain.history import ZERO
from services.decision.domain.policy import Outages, Policy
from services.decision.domain.remedies import cent

Need = Callable[[Incident, Tier], Decimal]  # the policy's grant to one customer of a tier


@dataclass(frozen=True, slots=True)
class OutageShare:
    """An outage's budget and every tier's share of it at one stage."""

    outage_id: str
    budget: Decimal
    affected: int
    counts: Mapping[Tier, int]
    needs: Mapping[Tier, Decimal]  # the policy's full grant per customer of each tier
    shares: Mapping[Tier, Decimal]  # what one customer of each tier may get at most
    partial: str

    @property
    def full(self) -> Decimal:
        """What the policy would grant all affected customers."""
        return sum((self.needs[t] * n for t, n in self.counts.items()), ZERO)

    @property
    def granted(self) -> Decimal:
        """What the shares give all affected customers together (never above the budget)."""
        return sum((self.shares[t] * n for t, n in self.counts.items()), ZERO)

    @property
    def scaled(self) -> bool:
        return any(self.shares[t] < self.needs[t] for t, n in self.counts.items() if n)

    def words(self, currency: str) -> str:
        """Why a grant was scaled, for the decision's explanation."""
        text = (f"an outage budget of {self.budget} {currency} for {self.affected} customers, "
                f"whom the policy would give {self.full} {currency}")
        if self.partial == "even":
            return text + ": every grant scaled by the same factor"
        cut = [f"{t.value} to {self.shares[t]} {currency}" for t, n in self.counts.items()
               if n and self.shares[t] < self.needs[t]]
        return text + ": tiers covered in the policy's order, " + ", ".join(cut)


def applies(policy: Policy, incident: Incident) -> bool:
    """Whether `incident` draws on an outage budget (and not on the daily budget): the
    policy has one and intake told the outage's size."""
    return (policy.outages.budget is not None and incident.outage_id is not None
            and incident.outage_affected is not None)


def counts_of(incident: Incident) -> dict[Tier, int]:
    """The customers per tier, in the tiers' order (all of the customer's tier if intake did
    not count them)."""
    affected = incident.outage_affected or 1
    told = incident.outage_tiers or {incident.customer.tier: affected}
    return {t: told.get(t, 0) for t in Tier}


def share_out(needs: Mapping[Tier, Decimal], counts: Mapping[Tier, int], budget: Decimal,
              outages: Outages, unit: Decimal) -> dict[Tier, Decimal]:
    """Every tier's share: `needs` in full when the budget covers them all; else `even`
    scales each by budget / full cost, `tiers` covers whole tiers in `tier_order` and splits
    what is left evenly among the customers of the first tier it cannot cover (the tiers
    after it get nothing). Shares are rounded down to the currency's unit, so together they
    never pass the budget."""
    full = sum((needs[t] * counts[t] for t in Tier), ZERO)
    if full <= budget:
        return {t: needs[t] for t in Tier}
    if outages.partial == "even":
        return {t: (needs[t] * budget / full).quantize(unit, ROUND_DOWN) for t in Tier}
    shares: dict[Tier, Decimal] = {}
    left = max(budget, ZERO)
    for tier in outages.tier_order:
        cost = needs[tier] * counts[tier]
        if cost <= left:
            shares[tier] = needs[tier]
            left -= cost
        else:  # the first tier not covered in full: what is left, split evenly
            shares[tier] = min(needs[tier], (left / counts[tier]).quantize(unit, ROUND_DOWN))
            left = ZERO
    return shares


def outage_share(incident: Incident, policy: Policy, need: Need) -> OutageShare:
    """The shares of `incident`'s outage at its stage (see the module's docstring)."""
    outages = policy.outages
    assert outages.budget is not None, "see `applies`"
    assert incident.outage_id is not None, "see `applies`"
    counts = counts_of(incident)
    affected = incident.outage_affected or sum(counts.values())
    budget = outages.budget.of(affected).quantize(cent(policy.currency), ROUND_DOWN)
    unit = cent(policy.currency)
    going_on = incident if incident.outage_minutes is None else incident.model_copy(
        update={"outage_minutes": None})
    first = {t: need(going_on, t) for t in Tier}
    shares = share_out(first, counts, budget, outages, unit)
    needs = first
    if incident.outage_minutes is not None:
        needs = {t: max(first[t], need(incident, t)) for t in Tier}
        left = budget - sum((shares[t] * counts[t] for t in Tier), ZERO)
        more = share_out({t: needs[t] - shares[t] for t in Tier}, counts, left, outages, unit)
        shares = {t: shares[t] + more[t] for t in Tier}
    return OutageShare(incident.outage_id, budget, affected, counts, needs, shares,
                       outages.partial)
