"""An effect outside Amends (a refund at a gateway, a message through a channel) as fulfilment
keeps it: one record per idempotency key, moving through the states of `remote`'s
claim-then-call protocol, and the changes a call or the sweep makes to it."""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from datetime import datetime
from enum import StrEnum
from typing import TypedDict

from schemas.outcome import ActionStatus

FOLLOW_UP = "follow_up"


class EffectState(StrEnum):
    claimed = "claimed"
    retry = "retry"
    pending = "pending"
    paused = "paused"
    succeeded = "succeeded"
    failed = "failed"


FINAL = {EffectState.succeeded.value: ActionStatus.succeeded,
         EffectState.failed.value: ActionStatus.failed}
UNFINISHED = (EffectState.claimed.value, EffectState.retry.value, EffectState.pending.value,
              EffectState.paused.value)


@dataclass(frozen=True, slots=True)
class Effect:
    """One refund or message: where it comes from, what it carries, and how it stands.

    `status` is None until the effect is written (a record only, final at once, carries its
    final status from the start). A refund has `amount`..`gateway_key`; a message has
    `channel`..`message_id` (a follow-up's `kind` is `FOLLOW_UP`)."""

    key: str
    customer_id: str
    tenant: str | None
    decision_id: str
    decision_ref: str
    created_at: datetime
    position: int | None = None
    origin: tuple[str, int, int] | None = None
    kind: str | None = None
    revision: int | None = None
    # a refund
    amount: str | None = None
    currency: str | None = None
    order_id: str | None = None
    gateway: str | None = None
    gateway_id: str | None = None
    gateway_key: str | None = None
    # a message
    incident_type: str | None = None
    channel: str | None = None
    locale: str | None = None
    subject: str | None = None
    text: str | None = None
    html: str | None = None
    sent_at: datetime | None = None
    message_id: str | None = None
    # where it stands
    status: str | None = None
    detail: str | None = None
    settled_at: datetime | None = None
    next_attempt_at: datetime | None = None
    claimed_at: datetime | None = None
    claim: str | None = None
    attempts: int = 0
    paused: int = 0
    remote: str | None = None
    round: int = 0
    redriven_by: str | None = None

    def changed(self, change: Change) -> Effect:
        return replace(self, **change)

    def claimed_by(self, token: str, now: datetime) -> Effect:
        return replace(self, status=EffectState.claimed.value, claimed_at=now, claim=token)


class Change(TypedDict, total=False):
    """What a call, a claim or the sweep changes in an effect (fields of `Effect`)."""

    status: str
    detail: str
    settled_at: datetime
    next_attempt_at: datetime
    sent_at: datetime
    message_id: str
    gateway_id: str | None
    gateway_key: str
    claimed_at: datetime
    claim: str
    paused: int
    remote: str
    round: int
    redriven_by: str
    # a message rendered anew (its channel changed)
    channel: str
    locale: str
    subject: str
    text: str
    html: str
    incident_type: str


EFFECT_FIELDS = tuple(f.name for f in fields(Effect))
