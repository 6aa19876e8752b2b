"""An outage as decision sees it before any remedy goes out: what the policy's remedies for
all its customers would cost, against the outage's own budget and the day's budget. Published
once per outage on the outages topic, from the first of its incidents decision decides."""

from __future__ import annotations

from typing import Literal

from pydantic import AwareDatetime, Field

from schemas.common import Contract, Money, Tier, deterministic_id
from schemas.decision import RemedyKind
from schemas.envelope import CloudEvent


def preview_id(outage_id: str) -> str:
    """One preview per outage, whatever redelivery or instance makes it."""
    return deterministic_id("outage-cost-preview", outage_id)


class RemedyCost(Contract):
    kind: RemedyKind
    customers: int = Field(ge=0, description="how many customers get it")
    value: Money = Field(description="its money equivalent for all of them, as granted "
                                     "(after the outage budget's shares)")


class OutageCostPreview(Contract):
    preview_id: str = Field(description="deterministic: from the outage id")
    outage_id: str
    tenant: str | None = None
    policy_version: str
    previewed_at: AwareDatetime = Field(description="decision's clock when it was made")
    outage_minutes: int | None = Field(
        default=None, ge=0, description="the duration it was computed with; none while the "
        "outage was still going on")
    affected_customers: int = Field(ge=0)
    tiers: dict[Tier, int] = Field(description="affected customers per tier")
    remedies: list[RemedyCost] = Field(description="by kind, the apology included")
    full_cost: Money = Field(description="what the policy's amounts would give everyone")
    total: Money = Field(description="what everyone gets within the outage budget")
    outage_budget: Money
    partial: Literal["even", "tiers"] = Field(
        description="how the budget is shared when it cannot cover everyone")
    shares: dict[Tier, Money] = Field(
        description="the most one customer of each tier gets from the outage budget")
    scaled: bool = Field(description="whether some grant is below the policy's amount")
    daily_budget: Money = Field(description="today's goodwill budget (not drawn on)")
    daily_remaining: Money = Field(description="what was left of it when previewed")


class OutageCostPreviewed(CloudEvent[OutageCostPreview]):
    type: Literal["amends.outage.cost_previewed"] = "amends.outage.cost_previewed"
