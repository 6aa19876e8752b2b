"""Record, then publish: the idempotent step every service takes with what it produces.

A record is kept once under its deterministic id (a duplicate means "already done"), then
its message is published unless an earlier run already published it, then it is marked
published. A crash between the steps is repaired by the redelivery of the same input.

Only a redelivery asks whether a record was published: records that are new were not. So
"published" is written for a whole batch at once and read only for the records a batch
found already there.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, TypeVar

from services.common.messaging import Outgoing, Publisher

R = TypeVar("R")
R_contra = TypeVar("R_contra", contravariant=True)


class Outbox(Protocol[R_contra]):
    """Where a service keeps what it produces (records of type `R`, each under an id)."""

    async def add_new(self, records: Sequence[tuple[str, R_contra]]) -> set[str]:
        """Keep the records whose id is new; return the ids kept by this call."""

    async def published(self, ids: Sequence[str]) -> set[str]:
        """Which of these ids were published already."""

    async def mark_published(self, ids: Sequence[str]) -> None: ...


async def record_then_publish(outbox: Outbox[R], publisher: Publisher,
                              items: Sequence[tuple[str, R, Outgoing]]) -> set[str]:
    """Keep each record once and publish its message once; returns the ids that are new."""
    if not items:
        return set()
    # The same record twice in one batch (a duplicate upstream event) is one record.
    unique = list({key: (key, record, msg) for key, record, msg in items}.values())
    new = await outbox.add_new([(key, record) for key, record, _ in unique])
    done = await outbox.published([key for key, _, _ in unique if key not in new])
    to_publish = [(key, msg) for key, _, msg in unique if key not in done]
    await publisher.publish_all([msg for _, msg in to_publish])
    await outbox.mark_published([key for key, _ in to_publish])
    return new
