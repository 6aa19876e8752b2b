"""A dead letter: a message a service could not process, kept whole so it can be redriven."""

from __future__ import annotations

from enum import StrEnum
from typing import Literal

from pydantic import AwareDatetime, Field

from schemas.common import Contract
from schemas.envelope import CloudEvent

# The header a redriven record carries: the id of the dead letter it came back from, so a
# consumer that finds its work done already (fulfilment's failed actions) tries it again.
REDRIVE_HEADER = "amends-redrive"


class DeadLetterReason(StrEnum):
    undecodable = "undecodable"
    invalid = "invalid"
    unknown_type = "unknown_type"
    processing_failed = "processing_failed"


class DeadLetterHeader(Contract):
    key: str
    value_b64: str


class DeadLetter(Contract):
    dead_letter_id: str
    service: str
    reason: DeadLetterReason
    error: str = Field(max_length=8000)
    topic: str
    partition: int
    offset: int
    key_b64: str | None = None
    value_b64: str = Field(description="the original message bytes, base64 (only their "
                                       "beginning when `truncated`)")
    headers: list[DeadLetterHeader] = Field(default_factory=list)
    truncated: bool = Field(
        default=False, description="the message was too large to carry whole: `value_b64` "
        "(and the key or headers) hold an excerpt; the original stays at topic, partition "
        "and offset")
    value_bytes: int | None = Field(default=None, ge=0,
                                    description="the size of the original value in bytes")
    failed_at: AwareDatetime
    erased: bool = Field(
        default=False, description="a customer's personal data was removed from this letter "
        "(it replaces the letter of the same id, which compaction then deletes); its "
        "original bytes are no longer whole, so it cannot be redriven")


class MessageDeadLettered(CloudEvent[DeadLetter]):
    type: Literal["amends.message.deadlettered"] = "amends.message.deadlettered"
