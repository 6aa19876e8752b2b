"""The closed loop's hot path (ADR 0013): which incidents each customer has open, in memory,
and the facts each upstream event adds to them.

Loaded at start by one read of the incidents within the longest window (and their facts),
then fed by every incident this process records and every upstream event it handles. A
batch costs two bulk inserts at most (the incidents newly followed, the new facts) and no
read: the facts' ids are deterministic, so a fact already kept (a redelivery, a replay) is
refused by the store and skipped here.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import replace
from datetime import datetime, timedelta

from schemas.incident import Incident
from schemas.upstream import UpstreamEvent
from services.intake.domain.aftermath import Aftermath, Fact, Followed, Tally, facts_of
from services.intake.ports import Aftermaths


class AftermathView:
    def __init__(self, windows: Sequence[int]) -> None:
        self.windows = tuple(sorted(windows))
        self.span = timedelta(days=self.windows[-1])
        self.by_customer: dict[str, dict[str, Tally]] = {}
        self.by_incident: dict[str, Tally] = {}

    def __len__(self) -> int:
        return len(self.by_incident)

    async def load(self, store: Aftermaths, now: datetime) -> int:
        """Follow every incident whose longest window is still open at `now`, with the
        facts kept of it; returns how many."""
        loaded = await store.since(now - self.span)
        for followed, facts in loaded:
            self._tally(followed).add(facts)
        return len(loaded)

    def _tally(self, followed: Followed) -> Tally:
        open_ = self.by_customer.setdefault(followed.customer_id, {})
        tally = open_.get(followed.incident_id)
        if tally is None:
            tally = open_[followed.incident_id] = Tally(followed)
            self.by_incident[followed.incident_id] = tally
        return tally

    def unfollowed(self, incidents: Sequence[Incident]) -> list[Followed]:
        """The incidents not followed yet, to be stored and then `follow`ed. Memory changes
        only after the store took them: a write that fails leaves the batch to be retried
        from scratch."""
        new: dict[str, Followed] = {}
        for incident in incidents:
            if incident.incident_id not in self.by_customer.get(incident.customer.id, {}):
                new.setdefault(incident.incident_id, Followed.of(incident))
        return list(new.values())

    def follow(self, followed: Sequence[Followed]) -> None:
        for one in followed:
            self._tally(one)

    def facts(self, events: Sequence[UpstreamEvent]) -> list[Fact]:
        """The facts these events add to the incidents followed, not kept before (each
        once), to be stored and then `keep`t."""
        new: dict[str, Fact] = {}
        for event in events:
            customer = getattr(event.data, "customer", None)
            open_ = self.by_customer.get(customer.id) if customer is not None else None
            for tally in (open_ or {}).values():
                for fact in facts_of(tally.followed, event, self.span):
                    if fact.fact_id not in tally.facts:
                        new.setdefault(fact.fact_id, fact)
        return list(new.values())

    def keep(self, facts: Sequence[Fact]) -> None:
        for fact in facts:
            tally = self.by_incident.get(fact.incident_id)
            if tally is not None:
                tally.add([fact])

    def record(self, customer_id: str, incident_id: str) -> Aftermath | None:
        tally = self.by_customer.get(customer_id, {}).get(incident_id)
        return tally.record(self.windows) if tally is not None else None

    def followed(self) -> list[tuple[Followed, Iterable[Fact]]]:
        """Each incident followed with its facts as memory holds them (no record built): a
        list taken now, which later batches and prunes leave as it is."""
        return [(t.followed, t.facts.values()) for t in self.by_incident.values()]

    def records(self) -> list[Aftermath]:
        return [t.record(self.windows) for t in self.by_incident.values()]

    def prune(self, now: datetime) -> int:
        """Forget incidents whose longest window closed before `now`; how many went."""
        gone = 0
        for customer in list(self.by_customer):
            open_ = self.by_customer[customer]
            for incident_id in [i for i, t in open_.items()
                                if t.followed.occurred_at + self.span < now]:
                del open_[incident_id]
                del self.by_incident[incident_id]
                gone += 1
            if not open_:
                del self.by_customer[customer]
        return gone

    def rename_customer(self, customer_id: str, pseudonym: str) -> int:
        """An erased customer's incidents go under the pseudonym, as in the store."""
        open_ = self.by_customer.pop(customer_id, {})
        for tally in open_.values():
            tally.followed = replace(tally.followed, customer_id=pseudonym)
        if open_:
            self.by_customer.setdefault(pseudonym, {}).update(open_)
        return len(open_)
