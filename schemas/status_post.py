"""A public status post: one per outage (or per incident of a type the policy marks public),
drafted by decision in every locale, released once a person approved it where the policy
asks for that, and published once by fulfilment to the status page; updated once when the
outage is resolved (its `resolved` stage)."""

from __future__ import annotations

from enum import StrEnum
from typing import Literal

from pydantic import AwareDatetime, Field

from schemas.common import Contract, deterministic_id
from schemas.envelope import CloudEvent
from schemas.incident import IncidentType


class StatusPostStage(StrEnum):
    opened = "opened"  # the outage is declared: what happened, since when, who is affected
    resolved = "resolved"  # it is over: the same post updated with how long it lasted


class StatusPostDraft(Contract):
    locale: str = Field(min_length=2, max_length=16)
    title: str = Field(min_length=1, max_length=200)
    body: str = Field(min_length=1, max_length=4000)


class StatusPost(Contract):
    post_id: str = Field(description="deterministic: from the subject and the stage")
    subject_id: str = Field(description="the outage id, or the incident id of another "
                                        "public incident type: one post per subject")
    stage: StatusPostStage
    incident_type: IncidentType
    tenant: str | None = None
    started_at: AwareDatetime
    resolved_at: AwareDatetime | None = None
    minutes: int | None = Field(default=None, ge=0)
    service: str | None = Field(default=None, max_length=128)
    prevention: str | None = Field(
        default=None, max_length=500,
        description="what was done so it won't happen again, as the source said it")
    drafts: list[StatusPostDraft] = Field(min_length=1)
    url: str | None = Field(default=None, max_length=2048,
                            description="where the public reads it (linked from apologies)")
    drafted_at: AwareDatetime
    policy_version: str
    approval_required: bool = False
    approved_by: str | None = Field(default=None, max_length=200)
    approved_at: AwareDatetime | None = None


def status_post_id(subject_id: str, stage: StatusPostStage) -> str:
    return deterministic_id("status_post", subject_id, stage.value)


class StatusPostReleased(CloudEvent[StatusPost]):
    """A post cleared for publishing (approved, or needing no approval)."""

    type: Literal["amends.status_post.released"] = "amends.status_post.released"
