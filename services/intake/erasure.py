"""Intake's memory of erased customers: nothing brings their data back.

An upstream event about an erased customer from before the erasure (a replay, a late
redelivery, a webhook retry) is dropped, and an outage's fan-out skips them, so no later
incident, decision or message holds their contact details again. An event from after the
erasure is a customer who came back, and is processed as any other.

The set is durable (in the store: one record per customer, under the pseudonym, never the id)
and held in memory: the hot path computes an HMAC per event only while the set is not
empty and reads nothing. It is read whole at start and every `erased_refresh_seconds` (it
grows by one record per erasure, and only the sweep reads it), so an erasure handled by
another instance of intake is known here within that time.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from prometheus_client import CollectorRegistry, Counter

from schemas.erasure import ErasureRequest
from services.common.erasure import Pseudonyms
from services.intake.ports import IntakeStore


class ErasedCustomers:
    def __init__(self, store: IntakeStore, pseudonyms: Pseudonyms,
                 registry: CollectorRegistry) -> None:
        self.store = store
        self.pseudonyms = pseudonyms
        self._since: dict[str, datetime] = {}  # pseudonym -> erased at
        self.dropped = Counter("amends_erased_events_dropped_total",
                               "Upstream events (or outage fan-out entries) about an erased "
                               "customer, from before the erasure, dropped", ["kind"],
                               registry=registry)

    async def load(self) -> None:
        """Read the erased set; what this instance added while it was read is kept."""
        read = await self.store.erased()
        for pseudonym, at in self._since.items():
            if pseudonym not in read or read[pseudonym] < at:
                read[pseudonym] = at
        self._since = read

    async def add(self, request: ErasureRequest, pseudonym: str) -> int:
        """Remember the erasure (durably first); returns 1 when it was new here."""
        await self.store.add_erased(pseudonym, request.requested_at)
        known = self._since.get(pseudonym)
        if known is None or known < request.requested_at:
            self._since[pseudonym] = request.requested_at
        return 0 if known is not None else 1

    def covers(self, customer_id: str, at: datetime) -> bool:
        """Whether something about `customer_id` that happened at `at` was erased."""
        if not self._since or self.pseudonyms.key is None:
            return False
        erased_at = self._since.get(self.pseudonyms.of(customer_id))
        return erased_at is not None and at <= erased_at

    def keep(self, customer_ids: Sequence[str], at: datetime, kind: str) -> list[bool]:
        """For each customer, whether an entry about them at `at` may be kept."""
        kept = [not self.covers(c, at) for c in customer_ids]
        dropped = kept.count(False)
        if dropped:
            self.dropped.labels(kind).inc(dropped)
        return kept
