"""A fairness finding (ADR 0019): similar incidents (one type and severity band) whose
customers of one locale, tier or tenant were granted, on average, more or less goodwill than
the others beyond the tolerance. Published by decision's nightly check on
`amends.findings.v1`; it names groups, never a customer."""

from __future__ import annotations

from datetime import date
from typing import Literal

from pydantic import Field

from schemas.common import Contract, DateTime, Money
from schemas.envelope import CloudEvent


class FairnessFinding(Contract):
    finding_id: str = Field(description="deterministic: the same check on the same day "
                                        "finds the same finding under the same id")
    checked_on: date = Field(description="the day of the check")
    since: DateTime = Field(description="the decisions compared: made since then")
    incident_type: str
    band: str = Field(description="the severity band: the incident's severity, and its "
                                  "delay band where it has one")
    dimension: Literal["locale", "tier", "tenant"]
    group: str = Field(max_length=128, description="the locale, tier or tenant treated "
                                                   "differently")
    n: int = Field(ge=1, description="decisions of the group")
    mean_grant: Money = Field(description="the group's mean goodwill per decision")
    others_n: int = Field(ge=1, description="decisions of the rest of the type and band")
    others_mean_grant: Money
    ratio: str = Field(description="the group's mean over the others', as a decimal string")
    tolerance: str = Field(description="the relative difference allowed, as a decimal string")


class FairnessFlagged(CloudEvent[FairnessFinding]):
    type: Literal["amends.fairness.flagged"] = "amends.fairness.flagged"
