"""The audit trail: one entry per human action (a review, a choice made on a customer's
behalf, a manual voucher, a redrive, a replay, an erasure), append-only."""

from __future__ import annotations

from enum import StrEnum
from typing import Any, Literal

from pydantic import AwareDatetime, Field

from schemas.common import Contract
from schemas.envelope import CloudEvent


class AuditAction(StrEnum):
    approve = "approve"
    reject = "reject"
    choose_on_behalf = "choose_on_behalf"
    manual_voucher = "manual_voucher"
    apply_defaults = "apply_defaults"
    redrive = "redrive"
    replay = "replay"
    erasure = "erasure"
    reply_edit = "reply_edit"
    reply_approve = "reply_approve"
    reply_post = "reply_post"
    approve_status_post = "approve_status_post"
    outage_abort = "outage_abort"
    outage_change = "outage_change"


class AuditEntry(Contract):
    """Who did what, when, from where, to what, and the state before and after. `before`
    and `after` hold ids, statuses and amounts, never a customer's contact details."""

    audit_id: str = Field(description="deterministic: the same action recorded twice is one "
                                      "entry")
    action: AuditAction
    actor: str = Field(min_length=1, max_length=256,
                       description="the authenticated subject (a token's `sub`, an API key's "
                                   "name)")
    actor_via: Literal["jwt", "api_key", "cli"] = "jwt"
    roles: list[str] = Field(default_factory=list)
    tenant: str = Field(description="the tenant the actor acted in (`*`: every tenant)")
    address: str | None = Field(default=None, max_length=128,
                                description="where the request came from (IP address, or "
                                            "the host a command ran on)")
    at: AwareDatetime
    service: str = Field(description="the service or tool that carried the action out")
    target: str = Field(max_length=512, description="what was acted on: a decision id, a "
                                                    "topic slice, a dead letter, a customer")
    customer_id: str | None = Field(default=None, max_length=128)
    reason: str = Field(default="", max_length=1000)
    before: dict[str, Any] = Field(default_factory=dict)
    after: dict[str, Any] = Field(default_factory=dict)


class AuditRecorded(CloudEvent[AuditEntry]):
    type: Literal["amends.audit.recorded"] = "amends.audit.recorded"
